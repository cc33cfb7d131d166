//! The redb store's write-ahead file (issue 16): its framing is locked by a golden fixture;
//! torn and corrupted frames (a proptest over every truncation point and flipped byte) are
//! read cleanly, reported at their byte offset and never applied; and a ledger whose redb
//! file lost its last batches (a crash between the write-ahead append and the checkpoint) gets
//! them back from the file on open, exactly up to the first damaged frame.

use crate::support;

use std::ops::ControlFlow;
use std::path::Path;

use keyledger_ledger::store::redb::wal::{self, frame, header, scan_bytes, HEADER_BYTES};
use keyledger_ledger::store::BatchWrite;
use keyledger_ledger::{verify, Head, Store};
use proptest::prelude::*;
use support::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/wal.hex");

fn sample_batches() -> Vec<BatchWrite> {
    let head = |seq: u64, byte: u8| Head {
        seq,
        hash: [byte; 32],
    };
    vec![
        BatchWrite {
            block: Some((5, b"block bytes, opaque here".to_vec())),
            start: head(4, 0x11),
            head: Some(head(7, 0x22)),
            secrets: vec![(3, "BCDFG-HJKMP-QRTVW-XY234-6789B".to_owned())],
            answers: vec![(
                "actor\u{1f}olga\u{1f}c-1".to_owned(),
                b"{\"ok\":true}".to_vec(),
            )],
            merkle: vec![(8, 0, [0x33; 32])],
            retired: vec![2],
            index: Default::default(),
        },
        BatchWrite {
            block: None,
            start: head(7, 0x22),
            head: None,
            secrets: vec![],
            answers: vec![("key\u{1f}ab\u{1f}c-2".to_owned(), vec![0; 3])],
            merkle: vec![],
            retired: vec![],
            index: Default::default(),
        },
    ]
}

/// The file a writer of generation 3 would hold after appending the sample batches.
fn sample_file() -> Vec<u8> {
    let mut bytes = header(3).to_vec();
    for batch in sample_batches() {
        bytes.extend(frame(3, &wal::encode(&batch).unwrap()));
    }
    bytes
}

#[test]
fn the_framing_is_the_golden_one_and_reads_back() {
    let bytes = sample_file();
    let text: String = bytes
        .chunks(32)
        .map(|line| hex::encode(line) + "\n")
        .collect();
    if std::env::var_os("KEYLEDGER_BLESS_WAL").is_some() {
        std::fs::write(FIXTURE, &text).unwrap();
    }
    let golden = std::fs::read_to_string(FIXTURE).expect("golden/wal.hex exists");
    assert_eq!(
        text, golden,
        "the write-ahead framing changed: bump WAL_FORMAT"
    );
    let (generation, scan) = scan_bytes(&bytes);
    assert_eq!(generation, 3);
    assert_eq!(scan.frames, sample_batches());
    assert_eq!(scan.stopped, None);
    // Preallocated zeros after the frames are the end, not damage.
    let mut padded = bytes.clone();
    padded.resize(bytes.len() + 4096, 0);
    assert_eq!(scan_bytes(&padded).1.frames, sample_batches());
    assert_eq!(scan_bytes(&padded).1.stopped, None);
    // Frames of an earlier generation (left from before a checkpoint) are not this file's.
    let mut restarted = bytes.clone();
    restarted[..HEADER_BYTES as usize].copy_from_slice(&header(4));
    assert_eq!(scan_bytes(&restarted).1.frames, vec![]);
    assert_eq!(scan_bytes(&restarted).1.stopped, None);
}

/// Byte offsets where each frame of the sample file starts, and where the last one ends.
fn frame_starts() -> Vec<usize> {
    let mut starts = vec![HEADER_BYTES as usize];
    for batch in sample_batches() {
        let len = frame(3, &wal::encode(&batch).unwrap()).len();
        starts.push(starts.last().unwrap() + len);
    }
    starts
}

proptest! {
    #[test]
    fn a_torn_file_yields_exactly_the_whole_frames_before_the_cut(cut in 0usize..400) {
        let bytes = sample_file();
        let cut = cut.min(bytes.len());
        let (_, scan) = scan_bytes(&bytes[..cut]);
        let starts = frame_starts();
        let whole = starts.iter().skip(1).filter(|end| **end <= cut).count();
        prop_assert_eq!(&scan.frames[..], &sample_batches()[..whole]);
        if cut == 0 {
            prop_assert_eq!(scan.stopped, None, "an empty file holds nothing, damaged or not");
        } else if cut < HEADER_BYTES as usize {
            prop_assert_eq!(scan.stopped.map(|s| s.0), Some(0));
        } else if starts.contains(&cut) || cut == bytes.len() {
            prop_assert_eq!(scan.stopped, None, "a cut between frames is a clean end");
        } else {
            prop_assert_eq!(scan.stopped.map(|s| s.0), Some(starts[whole] as u64));
        }
    }

    #[test]
    fn a_flipped_byte_stops_the_read_at_its_frame_and_nothing_after_is_applied(
        at in 0usize..400, bit in 0u8..8,
    ) {
        let mut bytes = sample_file();
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        let (_, scan) = scan_bytes(&bytes);
        let starts = frame_starts();
        if at < HEADER_BYTES as usize {
            prop_assert!(scan.frames.is_empty());
            prop_assert_eq!(scan.stopped.map(|s| s.0), Some(0));
        } else {
            let damaged = starts.iter().filter(|s| **s <= at).count() - 1;
            prop_assert_eq!(&scan.frames[..], &sample_batches()[..damaged]);
            // A flip in a frame's generation field reads as an older generation's frame:
            // the end of this one, as a checkpointed file would look.
            let in_generation = (4..12).contains(&(at - starts[damaged]));
            if !in_generation {
                prop_assert_eq!(scan.stopped.map(|s| s.0), Some(starts[damaged] as u64));
            }
        }
    }
}

/// Builds a ledger whose redb file holds the catalog only, beside a write-ahead file that
/// also holds `batches` more activation batches: what a crash right after their appends (and
/// before any checkpoint) leaves. Answers the head those batches reach.
fn crashed_ledger(dir: &Path, batches: usize) -> Head {
    let base = dir.join("base");
    std::fs::create_dir(&base).unwrap();
    drop(new_ledger_file(&base, 1_000));
    let grown = dir.join("grown");
    std::fs::create_dir(&grown).unwrap();
    std::fs::copy(base.join("ledger.redb"), grown.join("ledger.redb")).unwrap();
    let mut engine = keyledger_ledger::open(grown.join("ledger.redb")).unwrap();
    for b in 0..batches {
        run(
            &mut engine,
            vec![
                activation(&format!("w-{b}-a")),
                activation(&format!("w-{b}-b")),
            ],
        );
    }
    let head = engine.head();
    drop(engine); // checkpoints: the frames stay in the file under the old generation
    let wal_path = wal::path_for(&grown.join("ledger.redb"));
    let mut bytes = std::fs::read(&wal_path).unwrap();
    let (generation, _) = scan_bytes(&bytes);
    bytes[..HEADER_BYTES as usize].copy_from_slice(&header(generation - 1));
    std::fs::write(wal::path_for(&base.join("ledger.redb")), &bytes).unwrap();
    head
}

fn machines(store: &Store) -> Vec<String> {
    let mut found = Vec::new();
    keyledger_ledger::walk(store, 1, |r| {
        if let keyledger_core::EventBody::MachinesActivated { machines, .. } = &r.event.body {
            found.extend(machines.iter().map(|m| m.as_str().to_owned()));
        }
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    found
}

#[test]
fn opening_replays_the_frames_redb_lost() {
    let dir = tempfile::tempdir().unwrap();
    let head = crashed_ledger(dir.path(), 3);
    let store = Store::open(dir.path().join("base/ledger.redb")).unwrap();
    assert_eq!(store.recovery().applied, 3);
    assert_eq!(store.recovery().problem, None);
    assert_eq!(store.head().unwrap(), head);
    assert_eq!(machines(&store).len(), 6);
    // The frames carry blocks only: the machine index rows were derived again on replay.
    for machine in machines(&store) {
        assert_eq!(
            store.machine_seqs(&machine, 0, 10).unwrap().len(),
            1,
            "{machine}"
        );
    }
    assert!(verify(&store).is_ok());
    drop(store);
    // Once applied, durably: opening again replays nothing.
    let again = Store::open(dir.path().join("base/ledger.redb")).unwrap();
    assert_eq!((again.recovery().applied, again.head().unwrap()), (0, head));
}

#[test]
fn a_corrupt_frame_is_reported_at_its_offset_and_neither_it_nor_any_later_one_applied() {
    let dir = tempfile::tempdir().unwrap();
    crashed_ledger(dir.path(), 3);
    let wal_path = wal::path_for(&dir.path().join("base/ledger.redb"));
    let mut bytes = std::fs::read(&wal_path).unwrap();
    let (_, scan) = scan_bytes(&bytes);
    assert_eq!(scan.frames.len(), 3);
    // The second frame's payload gets one flipped bit.
    let second = HEADER_BYTES as usize
        + wal::FRAME_HEADER_BYTES
        + wal::encode(&scan.frames[0]).unwrap().len();
    bytes[second + wal::FRAME_HEADER_BYTES + 10] ^= 0x04;
    std::fs::write(&wal_path, &bytes).unwrap();
    let store = Store::open(dir.path().join("base/ledger.redb")).unwrap();
    let recovery = store.recovery();
    assert_eq!(recovery.applied, 1, "only the frame before the damage");
    let problem = recovery.problem.expect("the damage is reported");
    assert!(
        problem.contains(&format!("byte {second}: a frame's checksum does not match")),
        "{problem}"
    );
    assert!(problem.contains("ledger.redb-wal.damaged"), "{problem}");
    assert_eq!(
        std::fs::read(wal_path.with_extension("redb-wal.damaged")).unwrap(),
        bytes
    );
    assert_eq!(machines(&store), ["w-0-a", "w-0-b"]);
    assert!(verify(&store).is_ok());
}
