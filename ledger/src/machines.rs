//! The machine index: every `(machine name, seq)` of an event that names a machine (or a
//! KMS host or client), kept by the store beside the log and written in the same commit, so
//! "what happened to machine X" is one range read, not a scan of the log. The rows are
//! derived from events by one function ([`EventBody::machine_names`]); the index can
//! always be rebuilt from the log, and is on an upgrade.

use keyledger_core::{Event, EventBody};

use crate::block::Block;
use crate::codec::decode_record;

/// One row of the index.
pub type MachineRow = (String, u64);

/// The rows of the event at `seq`.
pub fn rows_of(seq: u64, body: &EventBody, rows: &mut Vec<MachineRow>) {
    let mut names = body.machine_names();
    if names.len() > 1 {
        // A refused request may name a machine twice; the index holds it once.
        names.sort_unstable();
        names.dedup();
    }
    rows.extend(names.into_iter().map(|m| (m.to_owned(), seq)));
}

/// The rows of a stored block (a write-ahead frame carries only the block: its rows are
/// derived again on replay).
pub fn rows_of_block(bytes: &[u8]) -> Result<Vec<MachineRow>, String> {
    let block = Block::parse(bytes).map_err(|e| format!("block: {e}"))?;
    let mut rows = Vec::new();
    for (i, record) in block.records().enumerate() {
        let seq = block.first_seq + i as u64;
        let event: Event = decode_record(record).map_err(|e| format!("seq {seq}: {e}"))?;
        rows_of(seq, &event.body, &mut rows);
    }
    Ok(rows)
}

/// The events at `seqs` (ascending), read from their blocks without checking the chain
/// (verification and proofs do that): each block touched is read and decompressed once.
pub fn events_at(store: &crate::Store, seqs: &[u64]) -> crate::Result<Vec<(u64, Event)>> {
    let mut out = Vec::with_capacity(seqs.len());
    let mut rest = seqs;
    while let Some(&seq) = rest.first() {
        let undecodable = |seq, why: String| crate::error::Corruption::Undecodable { seq, why };
        let key = store
            .block_containing(seq)?
            .map(|(key, _)| key)
            .ok_or_else(|| crate::Error::Storage(format!("no block holds seq {seq}")))?;
        let bytes = store
            .block_bytes(key)?
            .ok_or_else(|| crate::Error::Storage(format!("block {key} is gone")))?;
        let block = Block::parse(&bytes).map_err(|e| undecodable(seq, e.to_string()))?;
        let inside = rest.partition_point(|s| *s <= block.last_seq());
        if inside == 0 || seq < block.first_seq {
            return Err(undecodable(seq, format!("not in block {key}")).into());
        }
        for &seq in &rest[..inside] {
            let record = usize::try_from(seq - block.first_seq)
                .ok()
                .filter(|i| *i < block.len())
                .map(|i| block.record(i))
                .ok_or_else(|| undecodable(seq, format!("not in block {key}")))?;
            let event = decode_record(record).map_err(|e| undecodable(seq, e.to_string()))?;
            out.push((seq, event));
        }
        rest = &rest[inside..];
    }
    Ok(out)
}
