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
#[error("line {line}: {why}")]
pub struct ExportError {
    pub line: u64,
    pub why: String,
}

/// Checks an export on its own: consecutive seqs from 1, each `prev` the hash before it,
/// each `hash` recomputed from the record bytes, and each `event` the decoded record.
pub fn verify_export(input: impl BufRead) -> std::result::Result<Head, ExportError> {
    let mut head = Head::EMPTY;
    for (index, line) in input.lines().enumerate() {
        let number = index as u64 + 1;
        let fail = |why: String| ExportError { line: number, why };
        let line = line.map_err(|e| fail(format!("unreadable: {e}")))?;
        let parsed: ExportLine =
            serde_json::from_str(&line).map_err(|e| fail(format!("not an export line: {e}")))?;
        head = check_line(&parsed, head).map_err(fail)?;
    }
    Ok(head)
}

fn check_line(line: &ExportLine, before: Head) -> std::result::Result<Head, String> {
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
    Ok(Head {
        seq: line.seq,
        hash,
    })
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
