//! The engine and the single writer over a real redb file: what is acknowledged is durable
//! and replays to the same state; refused or failed work leaves no trace; resends are
//! idempotent; limits are typed errors; concurrent submissions are group-committed without
//! over-activating; exports verify offline and edits are caught.
//! Method: real temporary ledgers, commands written as client JSON, assertions on answers,
//! on the state after reopening, and on the file bytes.

use crate::support;

use std::io::BufReader;
use std::sync::Arc;

use keyledger_core::{KeyId, State};
use keyledger_ledger::{export, open, verify, Engine, Error, Limits, Store, Submission, Writer};
use serde_json::json;
use support::*;

fn replayed(engine: &Engine) -> State {
    keyledger_ledger::engine::decision_state(engine.store(), engine.limits()).unwrap()
}

#[test]
fn acknowledged_events_survive_reopen_and_replay_to_the_same_state() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 10);
    let answers = run(
        &mut engine,
        (0..12).map(|i| activation(&format!("pc-{i}"))).collect(),
    );
    assert_eq!(answers.iter().filter(|a| a.ok).count(), 10);
    assert_eq!(answers[10].code(), Some("insufficient_activations"));
    assert_eq!(
        answers[10].seq,
        Some(16),
        "R10: the refusal is recorded at its own seq"
    );
    assert_eq!(answers[9].remaining, Some(0));
    let head = engine.head();
    assert_eq!(
        head.seq, 17,
        "1 operator + 4 catalog + 10 activations + 2 refusals"
    );
    let state = engine.state().clone();
    drop(engine);
    let engine = open(dir.location()).unwrap();
    assert_eq!(engine.head(), head);
    assert_eq!(engine.state(), &state);
    assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 10);
    assert_eq!(verify(engine.store()).unwrap().events, 17);
}

#[test]
fn a_refused_atomic_batch_leaves_the_ledger_byte_for_byte_as_it_was() {
    let dir = Place::new();
    let path = dir.location().clone();
    drop(new_ledger(&dir, 2));
    let digest_before = open(&path).unwrap().store().content_digest().unwrap();
    let mut engine = open(&path).unwrap();
    let state = engine.state().clone();
    let commands = (0..3).map(|i| activation(&format!("pc-{i}"))).collect();
    let answers = engine
        .run_batch(&[Submission::atomic(commands)])
        .remove(0)
        .unwrap();
    assert!(answers.iter().all(|a| !a.ok));
    assert_eq!(answers[2].code(), Some("insufficient_activations"));
    assert_eq!(
        answers[2].seq, None,
        "nothing recorded inside an atomic batch"
    );
    assert_eq!(answers[0].code(), Some("atomic_batch_refused"));
    assert_eq!(engine.state(), &state);
    assert_eq!(engine.store().content_digest().unwrap(), digest_before);
    drop(engine);
    assert_eq!(
        open(&path).unwrap().store().content_digest().unwrap(),
        digest_before
    );
}

#[test]
fn an_accepted_atomic_batch_is_one_block() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 5);
    let blocks_before = engine.store().block_keys().unwrap().len();
    let commands = (0..3).map(|i| activation(&format!("pc-{i}"))).collect();
    let answers = engine
        .run_batch(&[Submission::atomic(commands)])
        .remove(0)
        .unwrap();
    assert_eq!(
        answers.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![Some(6), Some(7), Some(8)]
    );
    assert_eq!(
        engine.store().block_keys().unwrap().len(),
        blocks_before + 1
    );
    assert_eq!(engine.state(), &replayed(&engine));
}

#[test]
fn a_resent_command_id_gets_the_first_answer_and_appends_nothing_even_after_restart() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 5);
    let first = run(&mut engine, vec![with_id(activation("pc-1"), "retry-1")]).remove(0);
    assert!(first.ok);
    let head = engine.head();
    // Same id, same command: the first answer, nothing appended.
    let again = run(&mut engine, vec![with_id(activation("pc-1"), "retry-1")]).remove(0);
    assert_eq!(again, first);
    assert_eq!(engine.head(), head);
    // Same id, another command: refused as a reuse, nothing appended (issue 13, finding 2).
    let reused = run(&mut engine, vec![with_id(activation("pc-2"), "retry-1")]).remove(0);
    assert_eq!(reused.code(), Some("command_id_reused"));
    assert_eq!(engine.head(), head);
    // Twice inside one batch.
    let both = run(
        &mut engine,
        vec![
            with_id(activation("pc-3"), "retry-2"),
            with_id(activation("pc-3"), "retry-2"),
        ],
    );
    assert_eq!(both[0], both[1]);
    assert_eq!(engine.head().seq, head.seq + 1);
    drop(engine);
    let mut engine = open(dir.location()).unwrap();
    let after_restart = run(&mut engine, vec![with_id(activation("pc-1"), "retry-1")]).remove(0);
    assert_eq!(after_restart, first);
    let reused = run(&mut engine, vec![with_id(activation("pc-9"), "retry-1")]).remove(0);
    assert_eq!(reused.code(), Some("command_id_reused"));
    assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 2);
}

/// The writer decides a batch while the one before it commits: a command resent while its
/// first copy is still committing must get that first answer too, not a second decision.
#[test]
fn a_command_resent_while_its_first_copy_commits_gets_the_first_answer() {
    // Pipelined (the in-flight answers answer the resends) and committed on the writer
    // thread (the stored answer does).
    for pipeline_from_commands in [1, usize::MAX] {
        let dir = Place::new();
        let engine = new_ledger(&dir, 5);
        let head = engine.head();
        let path = dir.location().clone();
        drop(engine);
        // One command a batch: each copy is its own batch, decided while the previous commits.
        let limits = Limits {
            batch_commands_max: 1,
            pipeline_from_commands,
            ..Default::default()
        };
        let writer = Writer::spawn(Engine::open(Store::open(&path).unwrap(), limits).unwrap());
        let handle = writer.handle();
        let copies: Vec<_> = (0..6)
            .map(|i| {
                // Every other copy has another body: a reuse, refused.
                let command = with_id(activation(&format!("pc-{}", i % 2)), "resent");
                handle.send_blocking(vec![command], false).unwrap()
            })
            .collect();
        let answers: Vec<keyledger_ledger::Answer> = copies
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap().unwrap().remove(0))
            .collect();
        assert!(answers[0].ok, "{:?}", answers[0]);
        for (i, answer) in answers.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(*answer, answers[0], "copy {i}");
            } else {
                assert_eq!(answer.code(), Some("command_id_reused"), "copy {i}");
            }
        }
        drop(handle);
        let engine = writer.stop().unwrap();
        assert_eq!(engine.head().seq, head.seq + 1, "one activation appended");
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 1);
    }
}

#[test]
fn refusals_are_remembered_under_their_command_id_too() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 1);
    run(&mut engine, vec![activation("pc-1")]);
    let refused = run(&mut engine, vec![with_id(activation("pc-2"), "r")]).remove(0);
    assert_eq!(refused.code(), Some("insufficient_activations"));
    let head = engine.head();
    assert_eq!(
        run(&mut engine, vec![with_id(activation("pc-2"), "r")]).remove(0),
        refused
    );
    assert_eq!(engine.head(), head, "the resend is not recorded again");
}

#[test]
fn an_event_over_the_record_limit_is_a_typed_error_and_appends_nothing() {
    let dir = Place::new();
    drop(new_ledger(&dir, 20_000));
    let limits = Limits {
        record_bytes_max: 2_000,
        ..Limits::default()
    };
    let store = Store::open(dir.location()).unwrap();
    let mut engine = Engine::open(store, limits).unwrap();
    let head = engine.head();
    let machines: Vec<String> = (0..500).map(|i| format!("machine-{i:04}")).collect();
    let proxy = cmd(
        json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK_TEXT,
                           "org": "contoso", "method": "proxy", "machines": machines}),
    );
    let answer = run(&mut engine, vec![proxy.clone()]).remove(0);
    assert_eq!(answer.code(), Some("record_too_large"));
    assert_eq!(engine.head(), head);
    assert_eq!(
        engine.state().key(KeyId(1)).unwrap().used(),
        0,
        "state did not run ahead"
    );
    // Between two accepted commands of one batch, the oversized one leaves no trace: the
    // block holds exactly the other two records, and the chain verifies.
    let answers = run(
        &mut engine,
        vec![activation("before"), proxy, activation("after")],
    );
    assert!(answers[0].ok && answers[2].ok, "{answers:?}");
    assert_eq!(answers[1].code(), Some("record_too_large"));
    assert_eq!(
        (answers[0].seq, answers[2].seq),
        (Some(head.seq + 1), Some(head.seq + 2))
    );
    assert_eq!(engine.head().seq, head.seq + 2);
    assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 2);
    assert_eq!(verify(engine.store()).unwrap().events, head.seq + 2);
}

#[test]
fn a_submission_over_the_batch_limit_is_refused_whole() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 5);
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let commands = (0..4097).map(|i| activation(&format!("pc-{i}"))).collect();
    let err = handle.submit_blocking(commands, false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BatchTooLarge {
                count: 4097,
                limit: 4096
            }
        ),
        "{err}"
    );
    drop(handle);
    assert_eq!(writer.stop().unwrap().head().seq, 5);
}

#[test]
fn key_text_lives_in_the_secrets_table_not_in_the_log_or_answers() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 5);
    let generated = cmd(
        json!({"type": "issue_key", "at": AT, "actor": OPERATOR, "license_id": "V100",
                               "product": "win11-pro", "kind": "mak", "limit": 3}),
    );
    let answer = run(&mut engine, vec![generated]).remove(0);
    assert_eq!(answer.key_id, Some(2));
    let text = engine
        .store()
        .secret(2)
        .unwrap()
        .expect("generated text is stored");
    let parsed = keyledger_core::ProductKeyText::parse(&text).unwrap();
    assert_eq!(answer.last5(), Some(parsed.last5().as_str()));
    assert!(!answer.to_json().contains(&text[..5]));
    assert_eq!(engine.store().secret(1).unwrap().as_deref(), Some(MAK_TEXT));
    let mut exported = Vec::new();
    export::export(engine.store(), &mut exported, |_| {}).unwrap();
    let exported = String::from_utf8(exported).unwrap();
    assert!(!exported.contains(MAK_TEXT) && !exported.contains(&text));
    // Erasing a secret keeps the chain intact; `verify` names the key whose text is gone.
    assert!(engine.store().erase_secret(1).unwrap());
    assert_eq!(engine.store().secret(1).unwrap(), None);
    assert!(
        keyledger_ledger::walk(engine.store(), 1, |_| Ok(std::ops::ControlFlow::Continue(
            ()
        )))
        .is_ok()
    );
    let missing = verify(engine.store()).unwrap_err().to_string();
    assert_eq!(
        missing,
        "corrupt log: key 1: its key text is missing from the secrets table"
    );
}

/// Group commit stops taking submissions once a batch holds `BATCH_BYTES_TARGET` of
/// records: a block is read whole by every walk, so big proxy activations queued together
/// must not make one block of all of them.
#[test]
fn a_batch_is_sealed_once_it_holds_the_bytes_target() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 2_000_000);
    let head = engine.head().seq;
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let replies: Vec<_> = (0..100)
        .map(|b| {
            let machines: Vec<String> = (0..10_000).map(|m| format!("b{b}-m{m}")).collect();
            let proxy = cmd(json!({"type": "activate", "at": AT, "actor": "vamt",
                "product_key": MAK_TEXT, "org": "contoso", "method": "proxy", "machines": machines}));
            handle.send_blocking(vec![proxy], false).unwrap()
        })
        .collect();
    for reply in replies {
        assert!(reply.blocking_recv().unwrap().unwrap()[0].ok);
    }
    drop(handle);
    let engine = writer.stop().unwrap();
    let blocks = engine.store().block_keys().unwrap();
    let mut bytes_by_block = std::collections::BTreeMap::<u64, (usize, usize)>::new();
    let mut largest_record = 0;
    keyledger_ledger::walk(engine.store(), head + 1, |record| {
        let block = blocks.iter().rev().find(|k| **k <= record.seq).unwrap();
        let entry = bytes_by_block.entry(*block).or_default();
        entry.0 += record.bytes.len();
        entry.1 += 1;
        largest_record = largest_record.max(record.bytes.len());
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap();
    let records: usize = bytes_by_block.values().map(|(_, n)| n).sum();
    assert_eq!(records, 100);
    let bound = keyledger_ledger::writer::BATCH_BYTES_TARGET + largest_record;
    for (block, (bytes, _)) in &bytes_by_block {
        assert!(
            *bytes <= bound,
            "block {block}: {bytes} bytes of records > {bound}"
        );
    }
    assert!(bytes_by_block.len() >= 3, "{bytes_by_block:?}");
}

#[test]
fn concurrent_submissions_are_group_committed_and_never_over_activate() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 50);
    let blocks_before = engine.store().block_keys().unwrap().len();
    let writer = Writer::spawn(engine);
    let handle = Arc::new(writer.handle());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || {
                // Pipelined: send 25 submissions, then collect the answers.
                let pending: Vec<_> = (0..25)
                    .map(|i| {
                        handle
                            .send_blocking(vec![activation(&format!("t{t}-pc{i}"))], false)
                            .unwrap()
                    })
                    .collect();
                pending
                    .into_iter()
                    .map(|rx| rx.blocking_recv().unwrap().unwrap().remove(0))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    drop(handle);
    let engine = writer.stop().unwrap();
    assert_eq!(answers.iter().filter(|a| a.ok).count(), 50);
    let refused: Vec<_> = answers.iter().filter(|a| !a.ok).collect();
    assert_eq!(refused.len(), 150);
    assert!(refused
        .iter()
        .all(|a| a.code() == Some("insufficient_activations")));
    assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 50);
    let blocks = engine.store().block_keys().unwrap().len() - blocks_before;
    assert!(
        blocks < 200,
        "200 submissions were grouped into {blocks} blocks"
    );
    assert_eq!(verify(engine.store()).unwrap().events, 5 + 200);
    assert_eq!(engine.state(), &replayed(&engine));
}

#[test]
fn an_export_verifies_offline_and_any_edit_is_caught_at_its_line() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 3);
    run(
        &mut engine,
        (0..5).map(|i| activation(&format!("pc-{i}"))).collect(),
    );
    let mut out = Vec::new();
    let head = export::export(engine.store(), &mut out, |_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        export::verify_export(BufReader::new(text.as_bytes())).unwrap(),
        head
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["prev"], export::genesis_hex());
    assert_eq!(first["event"]["type"], "operator_added");

    let edit = |line: usize, f: &dyn Fn(&mut serde_json::Value)| {
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut value: serde_json::Value = serde_json::from_str(&edited[line]).unwrap();
        f(&mut value);
        edited[line] = value.to_string();
        export::verify_export(BufReader::new(edited.join("\n").as_bytes())).unwrap_err()
    };
    let err = edit(6, &|v| v["event"]["machines"] = json!(["someone-else"]));
    assert_eq!(err.line, 7);
    assert!(err.why.contains("differs from its record"), "{}", err.why);
    let err = edit(3, &|v| v["hash"] = json!("00".repeat(32)));
    assert_eq!(err.line, 4);
    let err = edit(8, &|v| v["seq"] = json!(42));
    assert_eq!(err.line, 9);
    let dropped: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, l)| *l)
        .collect();
    let err = export::verify_export(BufReader::new(dropped.join("\n").as_bytes())).unwrap_err();
    assert_eq!(err.line, 5);
}

#[test]
fn a_database_of_another_format_version_is_refused_with_a_clear_message() {
    let dir = Place::new();
    let missing = open(dir.missing()).unwrap_err();
    assert!(matches!(missing, Error::Missing(_)), "{missing}");
    assert!(missing.to_string().contains("keyledger init"), "{missing}");
    if on_postgres() {
        drop(new_ledger(&dir, 3));
        dir.sql("UPDATE keyledger.meta SET value = '\\x09' WHERE key = 'format_version'");
        let err = open(dir.location()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 9,
                    expected: keyledger_ledger::store::postgres::PG_SCHEMA_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        return;
    }
    let path = dir.dir.path().join("ledger.redb");
    drop(new_ledger(&dir, 3));
    {
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("format_version", &[9u8][..]).unwrap();
        }
        write.commit().unwrap();
    }
    let err = open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FormatVersion {
                found: 9,
                expected: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("format version 9"), "{err}");
}

/// A walk reads its blocks and the head in one read transaction: commits landing while it
/// runs must not look like a missing block (found under load by the event stream, whose
/// reader walks to the end of the log while the writer commits).
#[test]
fn walking_the_log_while_batches_commit_never_reports_damage() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 1_000_000);
    let store = engine.store().clone();
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut walks = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                keyledger_ledger::walk(&store, 1, |_| Ok(std::ops::ControlFlow::Continue(())))
                    .unwrap();
                walks += 1;
            }
            walks
        })
    };
    for batch in 0..300 {
        let commands = (0..3)
            .map(|i| activation(&format!("w{batch}-{i}")))
            .collect();
        handle.submit_blocking(commands, false).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let walks = reader.join().expect("no walk saw damage");
    assert!(
        walks > 10,
        "the reader walked while batches committed ({walks} walks)"
    );
    drop(handle);
    writer.stop().unwrap();
}

mod machine_facts {
    //! Machine facts looked up on disk decide exactly as a state holding every machine in
    //! memory did (the reference model: `State::default()`, fed the same commands through
    //! the pure `handle`): random histories of online and proxy activations, with machines
    //! repeated inside one proxy command, inside one batch, in a batch decided while the one
    //! before it is not yet committed, and after the engine is reopened.

    use super::*;
    use keyledger_core::books::KeyRecord;
    use keyledger_core::{handle, Command, Context, Outcome};
    use keyledger_ledger::resume::{Resume, Resumer, Start};

    /// The writer with its machine facts on disk.
    fn on_disk() -> Limits {
        Limits {
            machine_facts_on_disk: true,
            machine_cache_pairs: 4,
            ..Limits::default()
        }
    }

    /// A new ledger (limit 10), reopened with its machine facts on disk.
    fn ledger_on_disk(place: &Place) -> Engine {
        drop(new_ledger(place, 10));
        keyledger_ledger::open_with(place.location(), on_disk()).unwrap()
    }
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn activation_of(proxy: bool, names: &[u8]) -> Command {
        let machines: Vec<String> = names.iter().map(|n| format!("m{n}")).collect();
        let (method, machines) = match proxy {
            true => ("proxy", machines),
            false => ("online", machines[..1].to_vec()),
        };
        cmd(
            json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK_TEXT,
                   "org": "contoso", "method": method, "machines": machines}),
        )
    }

    /// The reference's answer to `command`: accepted, or the refusal's code.
    fn reference_answer(reference: &mut State, command: &Command) -> Option<String> {
        let text = keyledger_core::ProductKeyText::parse(MAK_TEXT).unwrap();
        let ctx = Context {
            presented: Some(keyledger_ledger::secrets::fingerprint(&text)),
            new_key: None,
            ..Context::default()
        };
        match handle(reference, command, &ctx) {
            Outcome::Accepted(events) => {
                events.iter().for_each(|e| reference.apply(e));
                None
            }
            Outcome::Refused { refusal, recorded } => {
                if let Some(event) = recorded {
                    reference.apply(&event);
                }
                Some(refusal.code().to_string())
            }
        }
    }

    fn code_of(answer: &keyledger_ledger::Answer) -> Option<String> {
        (!answer.ok).then(|| answer.code().unwrap_or("").to_owned())
    }

    /// How a round ends: the engine kept, reopened folding the log, or reopened from a
    /// resume point at the head or halfway.
    #[derive(Clone, Copy, Debug)]
    enum Reopen {
        No,
        FromLog,
        ResumeAtHead,
        ResumeHalfway,
    }

    type Round = (Vec<(bool, Vec<u8>)>, bool, Reopen);

    fn round() -> impl Strategy<Value = Round> {
        let command = (any::<bool>(), vec(0u8..14, 1..4));
        let reopen = prop_oneof![
            Just(Reopen::No),
            Just(Reopen::FromLog),
            Just(Reopen::ResumeAtHead),
            Just(Reopen::ResumeHalfway)
        ];
        (vec(command, 1..6), any::<bool>(), reopen)
    }

    /// The books the log folds to through `seq`, and its chain hash there: a resume point
    /// as a snapshot would give it.
    fn resume_at(store: &keyledger_ledger::Store, seq: u64) -> Resume {
        let mut state = State::default();
        let mut head = keyledger_ledger::Head::default();
        keyledger_ledger::walk(store, 1, |r| {
            if r.seq > seq {
                return Ok(std::ops::ControlFlow::Break(()));
            }
            state.apply(&r.event);
            head = keyledger_ledger::Head {
                seq: r.seq,
                hash: r.hash,
            };
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        Resume {
            head,
            books: state.books().clone(),
        }
    }

    fn resumer(resume: Resume) -> Resumer {
        Resumer(std::sync::Arc::new(move |_| Ok(Some(resume.clone()))))
    }

    /// Reopens the ledger as `how` says; a resumed writer says it resumed.
    fn reopened(place: &Place, engine: Engine, how: Reopen) -> Engine {
        let head = engine.head().seq;
        let resume = match how {
            Reopen::No => return engine,
            Reopen::FromLog => None,
            Reopen::ResumeAtHead => Some(resume_at(engine.store(), head)),
            Reopen::ResumeHalfway => Some(resume_at(engine.store(), head / 2)),
        };
        drop(engine);
        let store = keyledger_ledger::Store::open(place.location()).unwrap();
        let seq = resume.as_ref().map(|r| r.head.seq);
        let engine = Engine::open_resuming(store, on_disk(), resume.map(resumer)).unwrap();
        let expected = seq.map_or(Start::Log, |seq| Start::Resumed { seq });
        assert_eq!(engine.start(), &expected);
        engine
    }

    /// A resume point is checked against the chain: one of another history (its hash is not
    /// the log's at its seq) or past the head is refused, and the log is folded instead.
    #[test]
    fn a_resume_point_that_is_not_this_log_is_refused() {
        let place = Place::new();
        let mut engine = ledger_on_disk(&place);
        run(
            &mut engine,
            (0..4).map(|i| activation(&format!("pc-{i}"))).collect(),
        );
        let head = engine.head().seq;
        let mut forged = resume_at(engine.store(), head);
        forged
            .books
            .keys
            .get_mut(KeyId(1))
            .unwrap()
            .terms_mut()
            .used = 0;
        let mut other = forged.clone();
        other.head.hash[0] ^= 1;
        let mut ahead = resume_at(engine.store(), head);
        ahead.head.seq = head + 100;
        drop(engine);
        for (resume, why) in [(other, "another history"), (ahead, "ends before")] {
            let store = keyledger_ledger::Store::open(place.location()).unwrap();
            let seq = resume.head.seq;
            let mut engine =
                Engine::open_resuming(store, on_disk(), Some(resumer(resume))).unwrap();
            match engine.start() {
                Start::Refused {
                    seq: refused,
                    why: said,
                } => {
                    assert_eq!(*refused, seq);
                    assert!(said.contains(why), "{said}");
                }
                start => panic!("{start:?}: a forged resume point was used"),
            }
            assert_eq!(
                engine.state().key(KeyId(1)).unwrap().used(),
                4,
                "from the log"
            );
            assert_eq!(engine.state(), &replayed(&engine));
            let again = run(&mut engine, vec![activation("pc-0")]);
            assert!(again[0].ok);
            assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 4, "a repeat");
        }
    }

    /// The filter only ever says "maybe": a pair it holds that the log never activated (a
    /// false positive) is looked up in the log and activated as new; one the log holds is
    /// found there after a reopen, when nothing of it is kept in memory.
    #[test]
    fn a_false_positive_of_the_filter_is_settled_by_the_log() {
        let place = Place::new();
        let mut engine = ledger_on_disk(&place);
        let ghost = keyledger_core::MachineId::new("ghost").unwrap();
        engine.force_filter_positive(KeyId(1), &ghost);
        let answers = run(&mut engine, vec![activation("ghost")]);
        assert!(answers[0].ok, "{answers:?}");
        assert_eq!(
            engine.state().key(KeyId(1)).unwrap().used(),
            1,
            "activated as new"
        );
        drop(engine);
        let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
        assert_eq!(
            engine.pair_facts().recent_len(),
            0,
            "nothing kept in memory"
        );
        let again = run(&mut engine, vec![activation("ghost")]);
        assert_eq!(
            engine.state().key(KeyId(1)).unwrap().used(),
            1,
            "{again:?}: a repeat"
        );
    }

    /// Pairs far behind the writer live in the store's pair index (redb: flushed every 16
    /// batches as runs, 16 runs merged a level up by another thread while batches go on):
    /// 300 batches, each with a new machine and a machine of a third as many batches ago,
    /// decide as the reference does; after a reopen, every machine is a repeat.
    #[test]
    fn pairs_far_behind_the_writer_decide_as_the_reference() {
        let place = Place::new();
        drop(new_ledger(&place, 1_000));
        let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
        let mut reference = State::default();
        keyledger_ledger::walk(engine.store(), 1, |r| {
            reference.apply(&r.event);
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        for b in 0..300u32 {
            let commands = vec![
                activation(&format!("n{b}")),
                activation(&format!("n{}", b / 3)),
            ];
            let expected: Vec<Option<String>> = commands
                .iter()
                .map(|c| reference_answer(&mut reference, c))
                .collect();
            let got: Vec<Option<String>> = run(&mut engine, commands).iter().map(code_of).collect();
            assert_eq!(got, expected, "batch {b}");
        }
        let used = reference.key(KeyId(1)).unwrap().used();
        assert_eq!(used, 300);
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), used);
        drop(engine);
        let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
        assert_all_repeats(&mut engine, 7, used, "all repeats");
        // Resumed halfway, the filter comes from the pair index (its runs), not the log.
        let mut engine = reopened(&place, engine, Reopen::ResumeHalfway);
        assert_all_repeats(&mut engine, 5, used, "all repeats after resuming");
    }

    /// A filter outgrowing its first part (64 pairs here) is rebuilt in the background from
    /// the pair index as one part, with the pairs activated meanwhile (batches keep coming
    /// while it builds): every machine ever activated still passes it and is a repeat, and
    /// it is back to one part. PostgreSQL keeps no pair index: its filter keeps its parts.
    #[test]
    fn an_outgrown_filter_is_rebuilt_as_one_part_and_keeps_every_pair() {
        let place = Place::new();
        drop(new_ledger(&place, 10_000));
        let limits = Limits {
            filter_first_pairs: 64,
            ..on_disk()
        };
        let mut engine = keyledger_ledger::open_with(place.location(), limits).unwrap();
        let names = |b: u32| (0..20).map(move |i| format!("m{b}-{i}"));
        let mut most_parts = 0;
        for b in 0..100u32 {
            let answers = run(&mut engine, names(b).map(|n| activation(&n)).collect());
            assert!(answers.iter().all(|a| a.ok), "{answers:?}");
            most_parts = most_parts.max(engine.filter_parts());
        }
        assert!(most_parts >= 2, "the filter outgrew its first part");
        if !on_postgres() {
            // Batches (empty ones append nothing) until the last rebuild is swapped in.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while engine.filter_parts() > 1 && std::time::Instant::now() < deadline {
                engine.run_batch(&[]);
            }
            assert_eq!(engine.filter_parts(), 1, "rebuilt as one part");
        }
        for b in 0..100u32 {
            for name in names(b) {
                let machine = keyledger_core::MachineId::new(name).unwrap();
                assert!(engine.filter_admits(KeyId(1), &machine), "{machine:?}");
            }
        }
        for b in (0..100u32).step_by(9) {
            run(&mut engine, names(b).map(|n| activation(&n)).collect());
        }
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 2_000);
        assert_eq!(engine.state(), &replayed(&engine));
    }

    /// R9 across a start from a saved filter: a writer saves its filter (as `Writer::stop`
    /// does), activates 20 more machines and dies without saving again. The next open reads
    /// the saved filter and puts in the pairs of the log after it: every one of the 70
    /// machines is a repeat (without the log's tail, the last 20 would count again: 90).
    #[test]
    fn a_start_reads_the_saved_filter_and_the_log_after_it() {
        use keyledger_ledger::resume::FilterStart;
        let place = Place::new();
        drop(new_ledger(&place, 100));
        let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
        let names = |from: u32, to: u32| (from..to).map(|i| activation(&format!("s{i}")));
        run(&mut engine, names(0, 50).collect());
        engine.save_filter().unwrap();
        let saved_at = engine.head().seq;
        let answers = run(&mut engine, names(50, 70).collect());
        assert!(answers.iter().all(|a| a.ok), "{answers:?}");
        drop(engine);
        let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
        assert_eq!(engine.filter_start(), &FilterStart::Saved { seq: saved_at });
        run(&mut engine, names(0, 70).collect());
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 70);
        assert_eq!(engine.state(), &replayed(&engine));
    }

    /// A saved filter that is damaged, of another ledger (another hash key), past the log's
    /// end or of another history at its seq is refused with the reason, and the filter is
    /// built as without one: decisions are unchanged.
    #[test]
    fn a_damaged_or_foreign_saved_filter_is_refused_and_decisions_are_unchanged() {
        use keyledger_ledger::resume::FilterStart;
        let other = Place::named("other");
        let mut foreign = ledger_on_disk(&other);
        run(&mut foreign, vec![activation("f1")]);
        foreign.save_filter().unwrap();
        let foreign_bytes = foreign.store().saved_filter().unwrap().unwrap().concat();
        drop(foreign);

        let place = Place::new();
        let mut engine = ledger_on_disk(&place);
        run(
            &mut engine,
            (0..8).map(|i| activation(&format!("d{i}"))).collect(),
        );
        engine.save_filter().unwrap();
        let good = engine.store().saved_filter().unwrap().unwrap().concat();
        let mut damaged = good.clone();
        damaged[100] ^= 1;
        let mut past_end = good.clone();
        past_end[5] = 200; // seq 200: the log ends at 10
        let mut other_history = good.clone();
        other_history[13] ^= 1; // the chain hash at its seq
        let cases = [
            (damaged, "is unusable: its checksum"),
            (foreign_bytes, "made under another machine hash key"),
            (resealed(&past_end), "past the log's end"),
            (resealed(&other_history), "of another history"),
        ];
        drop(engine);
        for (bytes, why) in cases {
            Store::open(place.location().clone())
                .unwrap()
                .put_saved_filter(&bytes)
                .unwrap();
            let mut engine = keyledger_ledger::open_with(place.location(), on_disk()).unwrap();
            let refused = match engine.filter_start() {
                FilterStart::PairIndex { refused } | FilterStart::Log { refused } => refused,
                other => panic!("{why}: started as {other:?}"),
            };
            let refused = refused.clone().unwrap_or_default();
            assert!(refused.contains(why), "{why}: {refused}");
            run(
                &mut engine,
                (0..8).map(|i| activation(&format!("d{i}"))).collect(),
            );
            assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 8, "{why}");
            assert_eq!(engine.state(), &replayed(&engine), "{why}");
        }
    }

    /// The writer saves a copy of its filter in the background once `filter_save_events`
    /// events are durable after the last save, and again when it stops; the next start
    /// reads the one saved at the head, and every machine is still a repeat (R9).
    #[test]
    fn a_writer_saves_its_filter_every_so_many_events_and_when_it_stops() {
        use keyledger_ledger::resume::FilterStart;
        use keyledger_ledger::saved_filter::decode;
        let place = Place::new();
        drop(new_ledger(&place, 1_000));
        let limits = Limits {
            filter_save_events: 256,
            // A small filter: one save every 256 events (a large one is saved at most one
            // byte in 8 events).
            filter_first_pairs: 64,
            ..on_disk()
        };
        let engine = keyledger_ledger::open_with(place.location(), limits).unwrap();
        let store = engine.store().clone();
        let writer = Writer::spawn(engine);
        let handle = writer.handle();
        for b in 0..30 {
            let batch = (0..10).map(|i| activation(&format!("w{b}-{i}"))).collect();
            let answers = handle.submit_blocking(batch, false).unwrap();
            assert!(answers.iter().all(|a| a.ok), "{answers:?}");
        }
        // One more batch: the save is begun between batches, once 256 events are durable.
        handle
            .submit_blocking(vec![activation("w-last")], false)
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let periodic = loop {
            if let Some(bytes) = store.saved_filter().unwrap() {
                break decode(&bytes).unwrap().1.head.seq;
            }
            assert!(std::time::Instant::now() < deadline, "no filter was saved");
            std::thread::yield_now();
        };
        assert!(periodic >= 256, "saved at {periodic}");
        drop((handle, store));
        let engine = writer.stop().unwrap();
        let head = engine.head().seq;
        drop(engine);
        let mut engine = keyledger_ledger::open_with(place.location(), limits).unwrap();
        assert_eq!(engine.filter_start(), &FilterStart::Saved { seq: head });
        run(
            &mut engine,
            (0..30).map(|b| activation(&format!("w{b}-3"))).collect(),
        );
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 301);
        assert_eq!(engine.state(), &replayed(&engine));
    }

    /// A saved filter's bytes with the checksum made again over a changed body.
    fn resealed(bytes: &[u8]) -> Vec<u8> {
        let body = &bytes[..bytes.len() - 32];
        let mut out = body.to_vec();
        out.extend_from_slice(blake3::hash(body).as_bytes());
        out
    }

    /// Activates every `step`th of the machines `n0..n299` again: nothing is consumed (the
    /// key stays at `used`), and the state is the log's.
    fn assert_all_repeats(engine: &mut Engine, step: usize, used: u64, what: &str) {
        for b in (0..300u32).step_by(step) {
            run(engine, vec![activation(&format!("n{b}"))]);
        }
        assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), used, "{what}");
        assert_eq!(engine.state(), &replayed(engine));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn facts_on_disk_decide_as_the_all_in_memory_state(rounds in vec(round(), 1..8)) {
            let place = Place::new();
            let mut engine = ledger_on_disk(&place);
            let mut reference = State::default();
            keyledger_ledger::walk(engine.store(), 1, |r| {
                reference.apply(&r.event);
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
            for (commands, split, reopen) in rounds {
                let commands: Vec<Command> =
                    commands.iter().map(|(proxy, names)| activation_of(*proxy, names)).collect();
                let expected: Vec<Option<String>> =
                    commands.iter().map(|c| reference_answer(&mut reference, c)).collect();
                // Two batches, the second decided before the first commits (the writer's
                // pipeline), or one.
                let half = if split { commands.len() / 2 } else { commands.len() };
                let (first, second) = commands.split_at(half);
                let mut batch = engine.begin();
                let mut answers = engine.add(&mut batch, &Submission::new(first.to_vec())).unwrap();
                let sealed = engine.seal(batch);
                let mut batch = engine.begin();
                answers.extend(engine.add(&mut batch, &Submission::new(second.to_vec())).unwrap());
                let later = engine.seal(batch);
                for prepared in [sealed, later].into_iter().flatten() {
                    let outcome = prepared.commit(engine.store());
                    engine.settle(prepared, outcome, 0).unwrap();
                }
                let got: Vec<Option<String>> = answers.iter().map(code_of).collect();
                prop_assert_eq!(&got, &expected);
                engine = reopened(&place, engine, reopen);
            }
            prop_assert_eq!(
                engine.state().key(KeyId(1)).unwrap().used(),
                reference.key(KeyId(1)).unwrap().used()
            );
            prop_assert_eq!(engine.state(), &replayed(&engine));
        }
    }
}

/// The content digest is read through the store's API: a ledger copied from a redb file into
/// the store under test (PostgreSQL under `KEYLEDGER_TEST_STORE=postgres`) has the same one,
/// Merkle nodes, key texts and first answers included; one more event changes it.
#[test]
fn a_copy_into_either_store_has_the_same_content_digest() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = new_ledger_file(dir.path(), 10);
    // 300 events (refusals past the limit are events too): stored Merkle nodes at level 8.
    let machines = (0..300).map(|i| with_id(activation(&format!("d{i}")), &format!("id{i}")));
    run(&mut engine, machines.collect());
    let source = engine.store().clone();
    let place = Place::new();
    let target = Store::create(place.location()).unwrap();
    source.copy_to(&target, |_| {}).unwrap();
    let digest = source.content_digest().unwrap();
    assert_eq!(target.content_digest().unwrap(), digest);
    run(&mut engine, vec![activation("one-more")]);
    assert_ne!(source.content_digest().unwrap(), digest);
}
