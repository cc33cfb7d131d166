//! Export for auditors: JSON Lines, one event a line, checkable without the database.
//!
//! ```json
//! {"seq":1,"prev":"00…00","hash":"…","record":"AQ…","event":{"at":"…","actor":"…","type":"…",…}}
//! ```
//! `record` is base64 (standard alphabet, padded) of the exact stored record bytes; `prev`
//! and `hash` are hex. An auditor recomputes `hash = blake3(prev || le_u64(seq) || record)`
//! in any language (docs/format.md). `event` is the decoded record for people to read; the
//! verifier checks that it says what the record says.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::chain::{link, ChainHash, GENESIS};
use crate::checkpoint::Checkpoint;
use crate::codec::decode_record;
use crate::error::Result;
use crate::store::{Head, Store};
use crate::walk::walk;
use crate::wire::event_to_json;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportLine {
    seq: u64,
    prev: String,
    hash: String,
    record: String,
    event: serde_json::Value,
}

/// Writes every event from seq 1, in order; returns the head written.
pub fn export(store: &Store, out: &mut impl Write, mut progress: impl FnMut(u64)) -> Result<Head> {
    walk(store, 1, |record| {
        let line = ExportLine {
            seq: record.seq,
            prev: hex::encode(record.prev),
            hash: hex::encode(record.hash),
            record: BASE64.encode(record.bytes),
            event: event_to_json(&record.event),
        };
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        progress(record.seq);
        Ok(ControlFlow::Continue(()))
    })
}

/// Why an export does not verify: the line (1-based) and what is wrong there.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{why}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct ExportError {
    pub line: u64,
    pub why: String,
}

/// Checks an export on its own: consecutive seqs from 1, each `prev` the hash before it,
/// each `hash` recomputed from the record bytes, and each `event` the decoded record. On its
/// own an export cannot show that it is whole: a truncated or wholly rewritten log is
/// consistent with itself. [`verify_export_against`] closes that gap.
pub fn verify_export(input: impl BufRead) -> std::result::Result<Head, ExportError> {
    verify_lines(input, |_, _, _| Ok(()))
}

/// What a checkpointed export check showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointedExport {
    pub head: Head,
    /// The signed checkpoint the export's first `checkpoint.size` records match.
    pub checkpoint: Checkpoint,
}

/// [`verify_export`], and the export's first `size` records must be the log a signed
/// checkpoint names: the same origin, Merkle root and chain head at that size. So an export
/// cut short of the checkpoint, an empty file, or a log rewritten with recomputed hashes all
/// fail, without the database. `note` is the checkpoint text, `verifier_key` the ledger's
/// public key (`keyledger pubkey`).
pub fn verify_export_against(
    input: impl BufRead,
    note: &str,
    verifier_key: &str,
) -> std::result::Result<CheckpointedExport, ExportError> {
    let whole = |why: String| ExportError { line: 0, why };
    let checkpoint = crate::checkpoint::verify(note, verifier_key)
        .map_err(|e| whole(format!("checkpoint: {e}")))?;
    let mut tree = crate::merkle::RootAccumulator::default();
    let mut origin = None;
    let head = verify_lines(input, |seq, record, hash| {
        if seq == 1 {
            origin = Some(format!("keyledger/{}", hex::encode(&hash[..8])));
        }
        if seq > checkpoint.size {
            return Ok(());
        }
        tree.push(record);
        if seq == checkpoint.size && *hash != checkpoint.chain_head {
            return Err(format!(
                "the chain hash at seq {seq} is not the checkpoint's: this is another log"
            ));
        }
        Ok(())
    })?;
    if head.seq < checkpoint.size {
        return Err(whole(format!(
            "the export ends at seq {} but the checkpoint covers {} records: it is truncated",
            head.seq, checkpoint.size
        )));
    }
    if checkpoint.size > 0 && origin.as_deref() != Some(checkpoint.origin.as_str()) {
        return Err(whole(format!(
            "the export's origin is not the checkpoint's {}: this is another log",
            checkpoint.origin
        )));
    }
    if tree.root() != checkpoint.root {
        return Err(whole(format!(
            "the Merkle root of the first {} records is not the checkpoint's",
            checkpoint.size
        )));
    }
    Ok(CheckpointedExport { head, checkpoint })
}

/// Checks every line; `also(seq, record, hash)` sees each checked record.
fn verify_lines(
    input: impl BufRead,
    mut also: impl FnMut(u64, &[u8], &ChainHash) -> std::result::Result<(), String>,
) -> std::result::Result<Head, ExportError> {
    let mut head = Head::EMPTY;
    for (index, line) in input.lines().enumerate() {
        let number = index as u64 + 1;
        let fail = |why: String| ExportError { line: number, why };
        let line = line.map_err(|e| fail(format!("unreadable: {e}")))?;
        let parsed: ExportLine =
            serde_json::from_str(&line).map_err(|e| fail(format!("not an export line: {e}")))?;
        let (next, record) = check_line(&parsed, head).map_err(fail)?;
        also(next.seq, &record, &next.hash).map_err(fail)?;
        head = next;
    }
    Ok(head)
}

fn check_line(line: &ExportLine, before: Head) -> std::result::Result<(Head, Vec<u8>), String> {
    let expected_seq = before.seq + 1;
    if line.seq != expected_seq {
        return Err(format!(
            "seq {} where {expected_seq} was expected",
            line.seq
        ));
    }
    let prev = hash_from_hex("prev", &line.prev)?;
    if prev != before.hash {
        return Err(format!(
            "prev does not match the hash of seq {}",
            before.seq
        ));
    }
    let record = BASE64
        .decode(&line.record)
        .map_err(|e| format!("record is not base64: {e}"))?;
    let hash = hash_from_hex("hash", &line.hash)?;
    if link(&prev, line.seq, &record) != hash {
        return Err(format!(
            "hash of seq {} does not match its record",
            line.seq
        ));
    }
    let event = decode_record(&record).map_err(|e| format!("record does not decode: {e}"))?;
    if event_to_json(&event) != line.event {
        return Err(format!("event of seq {} differs from its record", line.seq));
    }
    let head = Head {
        seq: line.seq,
        hash,
    };
    Ok((head, record))
}

fn hash_from_hex(field: &str, text: &str) -> std::result::Result<ChainHash, String> {
    let bytes = hex::decode(text).map_err(|e| format!("{field} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{field} is not 32 bytes"))
}

/// The genesis hash in hex, as the first export line's `prev` shows it.
pub fn genesis_hex() -> String {
    hex::encode(GENESIS)
}
