//! Tamper detection: whatever is done to the stored blocks — a flipped bit anywhere, a block
//! deleted, two blocks swapped, the tail truncated — `verify()` fails, and the seq it names
//! lies in the damaged block (the chain stores one head per block, so the block is the
//! finest grain a hash mismatch can name; an undecodable record is named exactly).
//! Method: one ledger of several blocks is built once; each proptest case copies it
//! (`Store::copy_to`), damages the copy through the store (as an attacker with write access
//! would: on PostgreSQL that means switching the append-only trigger off), and verifies it.

use crate::support;

use std::ops::ControlFlow;
use std::sync::OnceLock;

use keyledger_ledger::{verify, Corruption, Error, Store};
use proptest::prelude::*;
use support::*;

struct Fixture {
    _place: Place,
    store: Store,
    /// `(first seq, last seq, bytes)` of every block.
    blocks: Vec<(u64, u64, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Place::new();
        let mut engine = new_ledger(&dir, 100);
        for batch in 0..6 {
            let size = 1 + batch * 2;
            let commands = (0..size)
                .map(|i| activation(&format!("b{batch}-pc{i}")))
                .collect();
            run(&mut engine, commands);
        }
        let mut blocks = Vec::new();
        engine
            .store()
            .for_each_block(0, |key, bytes| {
                let block = keyledger_ledger::block::Block::parse(bytes).unwrap();
                blocks.push((key, block.last_seq(), bytes.to_vec()));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert_eq!(blocks.len(), 8);
        let store = engine.store().clone();
        drop(engine);
        Fixture {
            _place: dir,
            store,
            blocks,
        }
    })
}

/// A private copy of the fixture ledger, at `place`.
fn copy(place: &Place) -> Store {
    let store = Store::create(place.location()).unwrap();
    let head = fixture().store.copy_to(&store, |_| {}).unwrap();
    assert_eq!(store.head().unwrap(), head);
    store
}

/// Cases a property runs: fewer on PostgreSQL, where each is a new database.
fn cases(redb: u32) -> u32 {
    if on_postgres() {
        redb / 4
    } else {
        redb
    }
}

fn corruption(store: &Store) -> Corruption {
    match verify(store) {
        Err(Error::Corrupt(c)) => c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn the_untouched_fixture_verifies() {
    let dir = Place::new();
    let report = verify(&copy(&dir)).unwrap();
    assert_eq!(report.events, fixture().blocks.last().unwrap().1);
    assert_eq!(report.blocks, 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    #[test]
    fn a_flipped_bit_anywhere_in_a_block_is_found_in_that_block(
        block in 0..8usize, position in any::<prop::sample::Index>(), bit in 0..8u8,
    ) {
        let dir = Place::new();
        let store = copy(&dir);
        let (first, last, bytes) = &fixture().blocks[block];
        let mut damaged = bytes.clone();
        let at = position.index(damaged.len());
        damaged[at] ^= 1 << bit;
        store.tamper_block(*first, Some(&damaged)).unwrap();
        let found = corruption(&store);
        prop_assert!((*first..=*last).contains(&found.seq()), "{found} not in {first}..={last}");
    }

    #[test]
    fn a_deleted_block_is_found_at_its_first_seq(block in 0..8usize) {
        let dir = Place::new();
        let store = copy(&dir);
        let (first, _, _) = fixture().blocks[block];
        store.tamper_block(first, None).unwrap();
        let found = corruption(&store);
        prop_assert_eq!(found.seq(), first, "{}", found);
    }

    #[test]
    fn two_swapped_blocks_are_found_at_the_earlier(a in 0..8usize, b in 0..8usize) {
        prop_assume!(a != b);
        let (a, b) = (a.min(b), a.max(b));
        let dir = Place::new();
        let store = copy(&dir);
        let blocks = &fixture().blocks;
        store.tamper_block(blocks[a].0, Some(&blocks[b].2)).unwrap();
        store.tamper_block(blocks[b].0, Some(&blocks[a].2)).unwrap();
        let found = corruption(&store);
        prop_assert_eq!(found.seq(), blocks[a].0, "{}", found);
    }

    #[test]
    fn a_truncated_tail_is_found_where_it_was_cut(keep in 1..8usize) {
        let dir = Place::new();
        let store = copy(&dir);
        for (first, _, _) in &fixture().blocks[keep..] {
            store.tamper_block(*first, None).unwrap();
        }
        let found = corruption(&store);
        prop_assert!(matches!(found, Corruption::MissingBlock { .. }), "{}", found);
        prop_assert_eq!(found.seq(), fixture().blocks[keep].0);
    }
}

#[test]
fn opening_a_tampered_ledger_fails_with_the_seq() {
    let dir = Place::new();
    let store = copy(&dir);
    let (first, _, bytes) = &fixture().blocks[3];
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x80;
    store.tamper_block(*first, Some(&damaged)).unwrap();
    let err = keyledger_ledger::Engine::open(store, Default::default()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(Corruption::BadHash { first_seq, .. }) if first_seq == *first),
        "{err}"
    );
}

/// An attacker who rewrites a record *and* recomputes the chain defeats the hashes, but a
/// record that no longer decodes is still named exactly, not as its whole block.
#[test]
fn a_rechained_undecodable_record_is_named_at_its_seq() {
    use keyledger_ledger::block::{Block, BlockWriter};
    let dir = Place::new();
    let store = copy(&dir);
    let (first, _, bytes) = &fixture().blocks[5];
    let block = Block::parse(bytes).unwrap();
    let prev = Block::parse(&fixture().blocks[4].2).unwrap().head;
    let damaged_index = block.len() - 1;
    let mut writer = BlockWriter::new(*first);
    let mut head = prev;
    for (i, record) in block.records().enumerate() {
        let record: Vec<u8> = if i == damaged_index {
            vec![0xff; 3]
        } else {
            record.to_vec()
        };
        head = keyledger_ledger::chain::link(&head, first + i as u64, &record);
        writer.push(&record);
    }
    store
        .tamper_block(*first, Some(&writer.finish(&head)))
        .unwrap();
    let found = corruption(&store);
    assert!(
        matches!(found, Corruption::Undecodable { seq, .. } if seq == first + damaged_index as u64),
        "{found}"
    );
}

/// A walk that starts inside a block hands out the same links as a walk from the start.
#[test]
fn a_walk_from_inside_a_block_agrees_with_a_full_walk() {
    let dir = Place::new();
    let store = copy(&dir);
    let mut full = Vec::new();
    keyledger_ledger::walk(&store, 1, |r| {
        full.push((r.seq, r.prev, r.hash));
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    let (first, last, _) = fixture().blocks[6];
    assert!(last > first, "block 6 holds several records");
    let mut partial = Vec::new();
    keyledger_ledger::walk(&store, first + 1, |r| {
        partial.push((r.seq, r.prev, r.hash));
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    assert_eq!(partial.as_slice(), &full[first as usize..]);
    assert_eq!(partial[0].0, first + 1);
}

/// Issue 13, finding 3: the secrets table lies outside the chain, so a changed character of a
/// stored key text used to pass `verify`. Now every stored text is checked against the
/// fingerprint and last5 of its `key_issued` event, and the failure names the key.
#[test]
fn finding3_an_altered_missing_or_stray_secret_fails_verify_naming_the_key() {
    let dir = Place::new();
    let engine = new_ledger(&dir, 10);
    let store = engine.store().clone();
    assert_eq!(verify(&store).unwrap().secrets, 1);
    let issued_at = 5; // the catalog's fourth command, after init
    let cases: [(u64, Option<&str>, &str); 4] = [
        // One character changed in the middle: same last5, another fingerprint.
        (
            1,
            Some("BCDFG-HJKMP-QRTVV-XY234-6789B"),
            "the stored key text does not hash to the fingerprint the log recorded",
        ),
        (
            1,
            Some("BCDFG-HJKMP-QRTVW-XY234-6789C"),
            "the stored key text ends in 6789C, the issued key in 6789B",
        ),
        (1, None, "its key text is missing from the secrets table"),
        (
            2,
            Some("BCDFG-HJKMP-QRTVW-XY234-6789C"),
            "key text is stored for a key the log never issued",
        ),
    ];
    for (key_id, text, why) in cases {
        store.tamper_secret(key_id, text).unwrap();
        match verify(&store) {
            Err(Error::Corrupt(Corruption::Secret {
                key_id: named,
                seq,
                why: found,
            })) => {
                assert_eq!((named, found.as_str()), (key_id, why));
                let expected_seq = if key_id == 1 { issued_at } else { 0 };
                assert_eq!(seq, expected_seq);
            }
            other => panic!("{key_id} {text:?}: {other:?}"),
        }
        // Put it back as it was.
        store.tamper_secret(2, None).unwrap();
        store.tamper_secret(1, Some(MAK_TEXT)).unwrap();
        assert!(verify(&store).is_ok());
    }
    // An export never hands out an altered text: the checked read refuses it.
    let fingerprint = engine
        .state()
        .key(keyledger_core::KeyId(1))
        .unwrap()
        .fingerprint;
    assert_eq!(
        store.checked_secret(1, &fingerprint).unwrap().as_deref(),
        Some(MAK_TEXT)
    );
    store
        .tamper_secret(1, Some("BCDFG-HJKMP-QRTVV-XY234-6789B"))
        .unwrap();
    let refused = store.checked_secret(1, &fingerprint).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "corrupt log: key 1: the stored key text does not hash to the fingerprint the log recorded"
    );
}
