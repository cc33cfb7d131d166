//! Issue 13, finding 2: a `command_id` is scoped (per principal; per presented key for
//! activations; per host for KMS client contacts) and bound to the command it first came
//! with. Each test reproduces one way the old global, body-blind table could be abused.

use crate::support;

use keyledger_ledger::{open, Engine, Writer};
use serde_json::json;
use support::*;

fn register_org(org: &str, id: &str) -> keyledger_core::Command {
    with_id(
        cmd(json!({"type": "register_org", "at": AT, "actor": OPERATOR, "org": org, "name": org})),
        id,
    )
}

fn unknown_key_activation(id: &str) -> keyledger_core::Command {
    with_id(
        cmd(
            json!({"type": "activate", "at": AT, "actor": "activation-client",
                   "product_key": "CCCCC-CCCCC-CCCCC-CCCCC-CCCCC", "org": "contoso",
                   "method": "online", "machines": ["x"]}),
        ),
        id,
    )
}

#[test]
fn finding2_a_tokenless_refusal_cannot_swallow_an_operators_command_id() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 10);
    let refused = run(&mut engine, vec![unknown_key_activation("op-42")]);
    assert_eq!(refused[0].code(), Some("unknown_key"));
    let registered = run(&mut engine, vec![register_org("fabrikam", "op-42")]);
    assert!(registered[0].ok, "{registered:?}");
    assert!(engine
        .state()
        .org(&keyledger_core::OrgId::new("fabrikam").unwrap())
        .is_some());
    // Both first answers stand, each in its own scope, across a restart.
    drop(engine);
    let mut engine = open(dir.location()).unwrap();
    let head = engine.head();
    assert_eq!(
        run(&mut engine, vec![unknown_key_activation("op-42")]),
        refused
    );
    assert_eq!(
        run(&mut engine, vec![register_org("fabrikam", "op-42")]),
        registered
    );
    assert_eq!(engine.head(), head, "resends append nothing");
}

#[test]
fn finding2_a_principal_without_roles_cannot_replay_an_operators_answer() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 10);
    let ok = run(&mut engine, vec![register_org("fabrikam", "op-7")]);
    assert!(ok[0].ok);
    let mut mallory = register_org("fabrikam", "op-7");
    mallory.actor = keyledger_core::Principal::new("mallory").unwrap();
    let answer = run(&mut engine, vec![mallory]);
    assert_eq!(answer[0].code(), Some("forbidden"), "{answer:?}");
}

#[test]
fn finding2_a_command_id_reused_with_another_body_is_refused_and_appends_nothing() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 10);
    let first = run(&mut engine, vec![with_id(activation("pc-1"), "a-1")]);
    assert!(first[0].ok);
    let head = engine.head();
    let reused = run(&mut engine, vec![with_id(activation("pc-2"), "a-1")]);
    assert_eq!(reused[0].code(), Some("command_id_reused"), "{reused:?}");
    assert_eq!(
        reused[0].message(),
        Some(
            "command_id \"a-1\" was first used for a different command (its type, actor or \
             fields differ); nothing was appended"
        )
    );
    assert_eq!(engine.head(), head);
    // The same body (at a later `at`, as the server stamps activations) is a resend.
    let mut again = with_id(activation("pc-1"), "a-1");
    again.at = keyledger_core::Timestamp::parse("2026-06-01T00:00:00Z").unwrap();
    assert_eq!(run(&mut engine, vec![again]), first);
    // Inside an atomic submission a reused id refuses the whole submission.
    let atomic = keyledger_ledger::Submission::atomic(vec![
        activation("pc-3"),
        with_id(activation("pc-9"), "a-1"),
    ]);
    let answers = engine.run_batch(&[atomic]).remove(0).unwrap();
    assert_eq!(answers[1].code(), Some("command_id_reused"));
    assert_eq!(engine.head(), head);
}

#[test]
fn finding2_concurrent_activations_sharing_a_command_id_activate_one_machine() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 100);
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let answers: Vec<_> = runtime.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let handle = handle.clone();
                let command = with_id(activation(&format!("m{i}")), "shared");
                tokio::spawn(async move { handle.submit(vec![command], false).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap().unwrap().remove(0));
        }
        answers
    });
    let ok = answers.iter().filter(|a| a.ok).count();
    let reused = answers
        .iter()
        .filter(|a| a.code() == Some("command_id_reused"))
        .count();
    assert_eq!((ok, reused), (1, 49), "{answers:?}");
    drop(handle);
    let engine: Engine = writer.stop().unwrap();
    let key = engine.state().key(keyledger_core::KeyId(1)).unwrap();
    assert_eq!(key.used(), 1);
}

/// Answers stored by format 2 (table `answers`, bare command ids) stay readable: a resend from
/// the scope that appended the event at the answer's seq gets it; another scope does not.
#[test]
fn finding2_first_answers_of_format_2_are_honoured_in_their_own_scope_only() {
    if skip_unless_redb("format 2's answers table") {
        return;
    }
    let dir = Place::new();
    let path = dir.dir.path().join("ledger.redb");
    let mut engine = new_ledger(&dir, 10);
    let first = run(&mut engine, vec![activation("pc-1")]);
    assert!(first[0].ok);
    drop(engine);
    {
        // What a format-2 build wrote for a command sent with command_id "old-1".
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("answers");
        write
            .open_table(table)
            .unwrap()
            .insert("old-1", first[0].to_json().as_bytes())
            .unwrap();
        write.commit().unwrap();
    }
    let mut engine = open(&path).unwrap();
    let head = engine.head();
    assert_eq!(
        run(&mut engine, vec![with_id(activation("pc-1"), "old-1")]),
        first
    );
    assert_eq!(engine.head(), head);
    // An operator's command with that id is decided: the answer belonged to the key's scope.
    let registered = run(&mut engine, vec![register_org("fabrikam", "old-1")]);
    assert!(registered[0].ok, "{registered:?}");
    assert_eq!(engine.head().seq, head.seq + 1);
}

/// Found by the simulator (seed 35): a command repeated inside one atomic submission was
/// decided twice (activated, then "already active" with an event of its own), because the
/// submission's answers are remembered only once all of it is accepted.
#[test]
fn a_command_repeated_inside_one_atomic_submission_is_decided_once() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 10);
    let head = engine.head();
    let twice = keyledger_ledger::Submission::atomic(vec![
        with_id(activation("pc-1"), "a-1"),
        activation("pc-2"),
        with_id(activation("pc-1"), "a-1"),
    ]);
    let answers = engine.run_batch(&[twice]).remove(0).unwrap();
    assert!(answers.iter().all(|a| a.ok), "{answers:?}");
    assert_eq!(answers[2], answers[0], "the repeat gets the first answer");
    assert_eq!(answers[0].consumed, Some(1));
    assert_eq!(
        engine.head().seq,
        head.seq + 2,
        "two activations, no third event"
    );
    // And a reused id with another body inside the same submission is refused.
    let reused = keyledger_ledger::Submission::atomic(vec![
        with_id(activation("pc-3"), "a-2"),
        with_id(activation("pc-4"), "a-2"),
    ]);
    let answers = engine.run_batch(&[reused]).remove(0).unwrap();
    assert_eq!(answers[1].code(), Some("command_id_reused"), "{answers:?}");
    assert_eq!(engine.head().seq, head.seq + 2);
}
