//! The log is forever: a database written by an earlier build must open, verify and take
//! new events in this one. `golden/format1-demo.redb` is `keyledger demo --machines 300
//! --seed 7` as written by the first build (database format 1, format-1 blocks only, 19 of
//! the 20 event types); it is never regenerated.

use crate::support;

use std::ops::ControlFlow;

use keyledger_ledger::block::{Block, BLOCK_FORMAT_LZ4, BLOCK_FORMAT_STORED};
use keyledger_ledger::store::DB_FORMAT_VERSION;
use keyledger_ledger::{verify, Engine, Store};
use serde_json::json;
use support::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/format1-demo.redb"
);
const EVENTS: u64 = 146;
const HEAD: &str = "3a5d03fdb8594964573afe06885275d4c05bcfed686a092e85f3c8ee13025321";

fn fixture_copy(dir: &std::path::Path) -> std::path::PathBuf {
    copy_of(FIXTURE, dir)
}

/// A golden database copied into `dir` (a test writes to its copy, never to the golden).
fn copy_of(golden: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("old.redb");
    std::fs::copy(golden, &path).unwrap();
    path
}

fn block_formats(store: &Store) -> Vec<u8> {
    let mut formats = Vec::new();
    store
        .for_each_block(0, |_, bytes| {
            formats.push(bytes[0]);
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
    formats
}

#[test]
fn a_format_1_database_reads_and_verifies_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(fixture_copy(dir.path())).unwrap();
    assert_eq!(store.format_version().unwrap(), 1);
    let report = verify(&store).unwrap();
    assert_eq!(report.events, EVENTS);
    assert_eq!(hex::encode(report.head.hash), HEAD);
    assert!(block_formats(&store)
        .iter()
        .all(|f| *f == BLOCK_FORMAT_STORED));
    // Reading is not writing: the file still says format 1.
    assert_eq!(store.format_version().unwrap(), 1);
}

#[test]
fn a_format_1_database_is_upgraded_in_place_when_written_and_keeps_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(fixture_copy(dir.path())).unwrap();
    let mut engine = Engine::open(store, Default::default()).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), DB_FORMAT_VERSION);
    // Format 4: the machine index was built from the old blocks before the file was marked.
    let mut named = std::collections::BTreeMap::<String, Vec<u64>>::new();
    keyledger_ledger::walk(engine.store(), 1, |r| {
        for name in r.event.body.machine_names() {
            named.entry(name.to_owned()).or_default().push(r.seq);
        }
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    assert!(
        named.len() > 300,
        "the demo's machines, hosts and clients: {}",
        named.len()
    );
    for (name, seqs) in &named {
        assert_eq!(
            &engine.store().machine_seqs(name, 0, 100).unwrap(),
            seqs,
            "{name}"
        );
    }
    let orgs = (0..300)
        .map(|i| {
            cmd(
                json!({"type": "register_org", "at": "2026-11-01T00:00:00Z", "actor": "olga",
                       "org": format!("upgraded-{i:03}"), "name": format!("Upgraded {i}")}),
            )
        })
        .collect();
    let answers = run(&mut engine, orgs);
    assert!(answers.iter().all(|a| a.ok), "{:?}", answers[0]);
    let store = engine.store().clone();
    let report = verify(&store).unwrap();
    assert_eq!(report.events, EVENTS + 300);
    assert_eq!(
        *block_formats(&store).last().unwrap(),
        BLOCK_FORMAT_LZ4,
        "a large new block is compressed"
    );
    // The old events keep their links: seq 146 still ends in the old head.
    let mut old_head = None;
    keyledger_ledger::walk(&store, EVENTS, |r| {
        old_head = Some(hex::encode(r.hash));
        Ok(ControlFlow::Break(()))
    })
    .unwrap();
    assert_eq!(old_head.as_deref(), Some(HEAD));
    let mut last = None;
    store
        .for_each_block(EVENTS + 1, |_, bytes| {
            last = Some(Block::parse(bytes).unwrap().last_seq());
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(last, Some(EVENTS + 300));
}

/// `golden/format4-demo.redb`: `keyledger demo --machines 300 --seed 7`, then 20 orgs
/// registered by 20 `apply` runs (so that the machine index holds runs, not only rows derived
/// at open), compacted, as written by the last build of database format 4 (machine index, no
/// pair index); never regenerated.
const FORMAT4: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/format4-demo.redb"
);

/// Every (key, machine) pair the log activated.
fn activated_pairs(store: &Store) -> Vec<(keyledger_core::KeyId, keyledger_core::MachineId)> {
    let mut pairs = Vec::new();
    keyledger_ledger::walk(store, 1, |r| {
        if let keyledger_core::EventBody::MachinesActivated {
            key_id, machines, ..
        } = &r.event.body
        {
            pairs.extend(machines.iter().map(|m| (*key_id, m.clone())));
        }
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    pairs
}

#[test]
fn a_format_4_database_gets_its_pair_index_when_written_and_answers_every_pair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(copy_of(FORMAT4, dir.path())).unwrap();
    assert_eq!(store.format_version().unwrap(), 4);
    let pairs = activated_pairs(&store);
    assert!(pairs.len() > 250, "{}", pairs.len());
    let limits = keyledger_ledger::Limits {
        machine_facts_on_disk: true,
        ..Default::default()
    };
    let engine = Engine::open(store, limits).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), DB_FORMAT_VERSION);
    assert_histories_match(engine.store());
    for (key, machine) in &pairs {
        assert!(engine.machine_active(*key, machine).unwrap(), "{machine}");
        // The same machine on another key was never activated there.
        let other = keyledger_core::KeyId(key.0 + 1000);
        assert!(!engine.machine_active(other, machine).unwrap(), "{machine}");
    }
    let report = verify(engine.store()).unwrap();
    assert_eq!(report.events, 167);
    assert_eq!(
        hex::encode(report.head.hash),
        "7ab92ea9793d57c6648f7ab7d0d410f3b5c38851448c4df0e5eb7414b0b4c7b5"
    );
}

/// `golden/format5-demo.redb`: `keyledger demo --machines 300 --seed 7`, a disclosure
/// (`keys --as rita`), then 20 activations by 20 `apply` runs (so that the machine index
/// holds runs up to a watermark), compacted, as written by the last build of database format
/// 5 (no history rows; its projection snapshot is format 8); never regenerated.
const FORMAT5: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/format5-demo.redb"
);

#[test]
fn a_format_5_database_gets_its_history_rows_and_answers_every_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(copy_of(FORMAT5, dir.path())).unwrap();
    assert_eq!(store.format_version().unwrap(), 5);
    let engine = Engine::open(store, keyledger_ledger::Limits::default()).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), DB_FORMAT_VERSION);
    assert_eq!(DB_FORMAT_VERSION, 7);
    assert_histories_match(engine.store());
    let report = verify(engine.store()).unwrap();
    assert_eq!(report.events, 168);
    assert_eq!(
        hex::encode(report.head.hash),
        "5abbaa326916b5d3aac988485704b1c03d87f69648d5adf26b2b55df666e82c2"
    );
}
