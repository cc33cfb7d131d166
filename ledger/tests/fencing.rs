//! One writer per ledger, on either store (issue 15). A redb file is locked by the process
//! that opened it. On PostgreSQL a writer holds the ledger's advisory lock and an epoch; a
//! second writer is refused while the first runs; a writer whose epoch is over, or whose
//! session was lost while another took over, appends nothing and says why.

use crate::support;

use keyledger_ledger::{Engine, Error, Limits, Store};
use support::*;

fn blocks(place: &Place) -> usize {
    Store::open(place.location())
        .unwrap()
        .block_keys()
        .unwrap()
        .len()
}

#[test]
fn a_second_writer_is_refused_while_the_first_runs() {
    let place = Place::new();
    let first = new_ledger(&place, 10);
    let second =
        Store::open(place.location()).and_then(|store| Engine::open(store, Limits::default()));
    match (on_postgres(), second) {
        (true, Err(Error::WriterBusy(why))) => {
            assert!(
                why.contains("another keyledger writer holds this ledger"),
                "{why}"
            );
            assert!(
                why.contains(&format!("pid {}", std::process::id())),
                "{why}"
            );
        }
        // redb's own lock: the file cannot be opened twice.
        (false, Err(Error::WriterBusy(why))) => assert!(
            why.contains(&format!("is held by this process ({})", std::process::id())),
            "{why}"
        ),
        (_, other) => panic!("a second writer was let in: {other:?}"),
    }
    drop(first);
    // Once the first is gone, another may write.
    let mut next = keyledger_ledger::open(place.location()).unwrap();
    assert!(run(&mut next, vec![activation("after")])[0].ok);
}

#[test]
fn a_writer_whose_epoch_is_over_appends_nothing() {
    if skip_unless_postgres("the epoch fence") {
        return;
    }
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    let before = blocks(&place);
    let head = Store::open(place.location()).unwrap().head().unwrap();
    // What a writer taking over does first.
    place.sql("UPDATE keyledger.head SET epoch = epoch + 1");
    let failed = engine
        .run_batch(&[keyledger_ledger::Submission::new(vec![activation("late")])])
        .remove(0)
        .unwrap_err();
    assert!(
        matches!(&failed, Error::CommitFailed(why) if why.contains("fenced") && why.contains("another writer took over")),
        "{failed}"
    );
    assert_eq!(blocks(&place), before, "nothing of the batch was written");
    assert_eq!(Store::open(place.location()).unwrap().head().unwrap(), head);
}

#[test]
fn a_writer_that_lost_its_session_to_a_successor_stops_writing() {
    if skip_unless_postgres("the writer lock") {
        return;
    }
    let place = Place::new();
    let mut old = new_ledger(&place, 10);
    // Its session dies (a network cut); a successor claims the ledger meanwhile.
    place.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    let mut successor = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match keyledger_ledger::open(place.location()) {
                Ok(engine) => break engine,
                Err(Error::WriterBusy(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(err) => panic!("{err}"),
            }
        }
    };
    let answers = run(&mut successor, vec![activation("by-the-successor")]);
    assert!(answers[0].ok, "{answers:?}");
    let before = blocks(&place);
    let failed = old
        .run_batch(&[keyledger_ledger::Submission::new(vec![activation(
            "by-the-old",
        )])])
        .remove(0)
        .unwrap_err();
    assert!(matches!(failed, Error::CommitFailed(_)), "{failed}");
    assert_eq!(blocks(&place), before, "the old writer appended nothing");
    assert!(
        old.poisoned()
            .is_some_and(|why| why.contains("another keyledger writer")),
        "the old writer refuses work: {:?}",
        old.poisoned()
    );
    // The successor goes on.
    assert!(run(&mut successor, vec![activation("still-by-the-successor")])[0].ok);
}

/// The log is append-only in the database too: an UPDATE, DELETE or TRUNCATE of a block or
/// a Merkle node is refused by PostgreSQL itself, whoever sends it.
#[test]
fn blocks_and_merkle_nodes_cannot_be_changed_in_sql() {
    if skip_unless_postgres("the append-only triggers") {
        return;
    }
    let place = Place::new();
    drop(new_ledger(&place, 10));
    for sql in [
        "UPDATE keyledger.blocks SET bytes = '\\x00' WHERE first_seq = 1",
        "DELETE FROM keyledger.blocks WHERE first_seq = 1",
        "TRUNCATE keyledger.blocks",
        "TRUNCATE keyledger.merkle",
    ] {
        let refused = place.try_sql(sql).unwrap_err();
        assert!(
            refused.contains("the log is append-only"),
            "{sql}: {refused}"
        );
    }
    assert!(keyledger_ledger::verify(&Store::open(place.location()).unwrap()).is_ok());
}
