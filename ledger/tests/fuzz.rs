//! Fuzz targets that run on the stable toolchain, bounded, in every test run: each reader of
//! untrusted bytes gets random bytes and real inputs mangled (bytes flipped, set, inserted,
//! removed, the end cut off) and must answer a value or an error, never panic; what it
//! accepts must read back the same. The readers: a command's JSON (what any client sends),
//! a stored block and one record (what a damaged or hostile file holds), a write-ahead file's
//! frames (what a crash leaves), and a proof file (what an auditor is handed).
//!
//! Cases a target: `KEYLEDGER_FUZZ_CASES` (default 256; `.ci/run` runs more). A failure is
//! kept by proptest in `fuzz.proptest-regressions` and replayed first from then on. The
//! cargo-fuzz targets in `fuzz/` (nightly) search the first two without a bound.

use crate::support;

use std::sync::OnceLock;

use keyledger_ledger::block::Block;
use keyledger_ledger::checkpoint::LedgerKey;
use keyledger_ledger::codec::{decode_record, encode_record};
use keyledger_ledger::store::redb::wal::scan_bytes;
use keyledger_ledger::wire::{command_to_json, parse_command};
use proptest::prelude::*;
use proptest::sample::Index;
use support::*;

const WAL_FIXTURE: &str = include_str!("golden/wal.hex");

fn cases() -> u32 {
    std::env::var("KEYLEDGER_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// Real inputs of each kind, from a small ledger made once.
struct Seeds {
    commands: Vec<Vec<u8>>,
    blocks: Vec<Vec<u8>>,
    records: Vec<Vec<u8>>,
    wal: Vec<Vec<u8>>,
    proofs: Vec<Vec<u8>>,
    verifier_key: String,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = new_ledger_file(dir.path(), 5);
        let mut commands = catalog(5);
        commands.extend(["pc-1", "pc-2", "pc-1"].map(activation));
        run(&mut engine, commands[commands.len() - 3..].to_vec());
        let store = engine.store().clone();
        let mut blocks = Vec::new();
        store
            .for_each_block(0, |_, bytes| {
                blocks.push(bytes.to_vec());
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
        let head = store.head().unwrap().seq;
        let key = LedgerKey::from_seed(&[7; 32]);
        let at = keyledger_core::Timestamp::parse(AT).unwrap();
        let proof = keyledger_ledger::proof::prove_inclusion(&store, &key, 3, head, at).unwrap();
        Seeds {
            commands: commands
                .iter()
                .map(|c| command_to_json(c).to_string().into_bytes())
                .collect(),
            blocks,
            records: store.records(1, head).unwrap(),
            wal: vec![hex::decode(WAL_FIXTURE.split_whitespace().collect::<String>()).unwrap()],
            proofs: vec![serde_json::to_vec(&proof).unwrap()],
            verifier_key: key.verifier_key(),
        }
    })
}

/// One edit: at a place, a byte, and what to do there.
type Edit = (Index, u8, u8);

/// `seed` with `edits` made in order and, if `cut`, its end cut off there.
fn mangled(seed: &[u8], edits: &[Edit], cut: Option<Index>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for (at, byte, kind) in edits {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let i = at.index(bytes.len());
        match kind % 4 {
            0 => bytes[i] ^= byte | 1,
            1 => bytes[i] = *byte,
            2 => bytes.insert(i, *byte),
            _ => drop(bytes.remove(i)),
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
}

/// Random bytes, or one of `seeds` mangled (most cases: random bytes rarely get past the
/// first check of a framed format).
fn input(seeds: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<Index>(), any::<u8>(), 0..4u8), 0..6);
    let real = (
        proptest::sample::select(seeds),
        edits,
        proptest::option::weighted(0.2, any::<Index>()),
    )
        .prop_map(|(seed, edits, cut)| mangled(&seed, &edits, cut));
    prop_oneof![1 => proptest::collection::vec(any::<u8>(), 0..512), 4 => real]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A command's JSON: a command or an error naming what is wrong; an accepted command
    /// reads back the same from its own JSON.
    #[test]
    fn command_json(bytes in input(&seeds().commands)) {
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()); };
        if let Ok(command) = parse_command(text) {
            let again = parse_command(&command_to_json(&command).to_string());
            prop_assert_eq!(again.as_ref(), Ok(&command));
        }
    }

    /// A stored block: parsed and its records decoded to events or errors.
    #[test]
    fn block_decode(bytes in input(&seeds().blocks)) {
        if let Ok(block) = Block::parse(&bytes) {
            for record in block.records() {
                let _ = decode_record(record);
            }
        }
    }

    /// One record: an event or an error; an event re-encodes to a record that decodes to it.
    #[test]
    fn record_decode(bytes in input(&seeds().records)) {
        if let Ok(event) = decode_record(&bytes) {
            prop_assert_eq!(decode_record(&encode_record(&event)).ok(), Some(event));
        }
    }

    /// A write-ahead file's bytes: the frames before the first damaged one, never a panic.
    #[test]
    fn wal_frames(bytes in input(&seeds().wal)) {
        let _ = scan_bytes(&bytes);
    }

    /// A proof file: verified or refused with a reason; never a panic.
    #[test]
    fn proof_verify(bytes in input(&seeds().proofs)) {
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()); };
        let _ = keyledger_ledger::proof::verify_proof(text, &seeds().verifier_key, None);
    }
}

/// The seeds are what the targets claim: each real input is accepted as it is (so the
/// mangled ones start from inputs that get past the first checks).
#[test]
fn the_seeds_are_accepted_unmangled() {
    let seeds = seeds();
    for text in &seeds.commands {
        parse_command(std::str::from_utf8(text).unwrap()).unwrap();
    }
    assert!(!seeds.blocks.is_empty());
    for block in &seeds.blocks {
        let block = Block::parse(block).unwrap();
        assert!(block.records().all(|r| decode_record(r).is_ok()));
    }
    assert!(seeds.records.iter().all(|r| decode_record(r).is_ok()));
    let text = std::str::from_utf8(&seeds.proofs[0]).unwrap();
    keyledger_ledger::proof::verify_proof(text, &seeds.verifier_key, None).unwrap();
    let (_, scan) = scan_bytes(&seeds.wal[0]);
    assert!(!scan.frames.is_empty(), "the fixture's frames are read");
}
