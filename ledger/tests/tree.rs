//! The persisted Merkle tree: for every size its root and proofs equal those of the
//! in-memory tree over the same records; proofs stay valid across restarts and later
//! appends; a tampered block cannot produce a proof that verifies against an earlier root.
//! Method: a real ledger filled in batches of uneven sizes (so chunks straddle blocks).

use crate::support;

use keyledger_ledger::merkle::{self, leaf_hash, MemoryTree};
use keyledger_ledger::tree::LedgerTree;
use keyledger_ledger::{open, Store};
use support::*;

fn fill(engine: &mut keyledger_ledger::Engine, from: usize, batches: &[usize]) -> usize {
    let mut next = from;
    for size in batches {
        run(
            engine,
            (next..next + size)
                .map(|i| activation(&format!("m-{i}")))
                .collect(),
        );
        next += size;
    }
    next
}

fn memory_tree(store: &Store, size: u64) -> MemoryTree {
    let records = store.records(1, size).unwrap();
    MemoryTree {
        leaves: records.iter().map(|r| leaf_hash(r)).collect(),
    }
}

#[test]
fn stored_roots_and_proofs_equal_the_in_memory_tree_for_every_size() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 100_000);
    fill(&mut engine, 0, &[1, 7, 300, 2, 255, 1, 256, 90, 3, 200]);
    let size = engine.head().seq;
    assert!(size > 1024, "several stored levels: {size}");
    let store = engine.store();
    let memory = memory_tree(store, size);
    for n in 1..=size {
        let tree = LedgerTree::new(store, n);
        assert_eq!(
            merkle::root(&tree, n).unwrap(),
            merkle::root(&memory, n).unwrap(),
            "root {n}"
        );
    }
    let tree = LedgerTree::new(store, size);
    for index in [0, 1, 255, 256, 257, 511, 777, size - 1] {
        assert_eq!(
            merkle::inclusion_path(&tree, index, size).unwrap(),
            merkle::inclusion_path(&memory, index, size).unwrap(),
            "inclusion {index}"
        );
    }
    for from in [1, 5, 256, 300, 512, 1000, size] {
        assert_eq!(
            merkle::consistency_path(&tree, from, size).unwrap(),
            merkle::consistency_path(&memory, from, size).unwrap(),
            "consistency {from}"
        );
    }
}

#[test]
fn proofs_stay_valid_across_restarts_and_later_appends() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 100_000);
    let next = fill(&mut engine, 0, &[600]);
    let old_size = engine.head().seq;
    let old_root = merkle::root(&LedgerTree::new(engine.store(), old_size), old_size).unwrap();
    drop(engine);
    let mut engine = open(dir.location()).unwrap();
    fill(&mut engine, next, &[3, 400, 1]);
    let size = engine.head().seq;
    let tree = LedgerTree::new(engine.store(), size);
    let new_root = merkle::root(&tree, size).unwrap();
    let proof = merkle::consistency_path(&tree, old_size, size).unwrap();
    assert!(merkle::verify_consistency(
        old_size, size, &old_root, &new_root, &proof
    ));
    assert_eq!(
        merkle::root(&LedgerTree::new(engine.store(), old_size), old_size).unwrap(),
        old_root,
        "the old tree is still there"
    );
    let leaf = leaf_hash(&engine.store().records(300, 1).unwrap()[0]);
    let path = merkle::inclusion_path(&tree, 299, size).unwrap();
    assert!(merkle::verify_inclusion(299, size, &leaf, &path, &new_root));
}

#[test]
fn a_tampered_block_cannot_prove_against_an_earlier_root() {
    let dir = Place::new();
    let mut engine = new_ledger(&dir, 100_000);
    fill(&mut engine, 0, &[700]);
    let size = engine.head().seq;
    let store = engine.store().clone();
    let root = merkle::root(&LedgerTree::new(&store, size), size).unwrap();
    // Change one record's bytes inside its block (an attacker with write access).
    let keys = store.block_keys().unwrap();
    let key = keys[2];
    let bytes = store.block_bytes(key).unwrap().unwrap();
    let block = keyledger_ledger::block::Block::parse(&bytes).unwrap();
    let mut writer = keyledger_ledger::block::BlockWriter::new(key);
    for (i, record) in block.records().enumerate() {
        let mut record = record.to_vec();
        if i == block.len() / 2 {
            let at = record.len() / 2;
            record[at] ^= 0x20;
        }
        writer.push(&record);
    }
    store
        .tamper_block(key, Some(&writer.finish(&block.head)))
        .unwrap();
    let tree = LedgerTree::new(&store, size);
    let mut caught = 0;
    for seq in key..=size {
        let leaf = leaf_hash(&store.records(seq, 1).unwrap()[0]);
        let path = merkle::inclusion_path(&tree, seq - 1, size).unwrap();
        if !merkle::verify_inclusion(seq - 1, size, &leaf, &path, &root) {
            caught += 1;
        }
    }
    // The altered record, and the leaves of its 256-leaf chunk whose proofs hash over it,
    // no longer prove; every other leaf still does.
    assert_eq!(caught, 256, "one chunk fails to prove");
}
