//! Walking the log: every read of events goes through here, and every walk checks what it
//! reads (block order, record decoding, the chain), so a reader never trusts bad bytes.

use std::ops::ControlFlow;

use keyledger_core::Event;

use crate::block::Block;
use crate::chain::{link, ChainHash};
use crate::codec::decode_record;
use crate::error::{Corruption, Result};
use crate::store::{Head, Store};

/// One record as the log holds it.
#[derive(Debug)]
pub struct LoggedRecord<'a> {
    pub seq: u64,
    pub prev: ChainHash,
    pub hash: ChainHash,
    pub bytes: &'a [u8],
    pub event: Event,
}

/// Visits every record with seq `>= from_seq` in order, checking each block it reads; at
/// the end of a full walk, also checks the stored head. Returns the head the walk reached.
pub fn walk(
    store: &Store,
    from_seq: u64,
    mut visit: impl FnMut(LoggedRecord<'_>) -> Result<ControlFlow<()>>,
) -> Result<Head> {
    let (start_key, mut prev) = match store.block_containing(from_seq.max(1))? {
        Some(found) => found,
        None => (1, crate::chain::GENESIS),
    };
    let mut expected = start_key;
    let mut stopped = false;
    let mut hashes: Vec<ChainHash> = Vec::new();
    // The head is read in the same read transaction as the blocks: a commit landing during
    // the walk must not look like a missing block.
    let stored = store.for_each_block_with_head(start_key, |key, bytes| {
        let block = placed_block(key, bytes, expected)?;
        // The block's records are handed out only once its head vouches for them: hash them
        // all first, then decode one at a time (no block's worth of events held at once).
        let before = prev;
        hashes.clear();
        for (i, bytes) in block.records().enumerate() {
            prev = link(&prev, key + i as u64, bytes);
            hashes.push(prev);
        }
        if block.head != prev {
            // Damage that also broke a record's encoding is named at that record.
            first_undecodable(&block)?;
            return Err(Corruption::BadHash {
                first_seq: block.first_seq,
                last_seq: block.last_seq(),
            }
            .into());
        }
        expected = block.last_seq() + 1;
        for (i, bytes) in block.records().enumerate() {
            let seq = key + i as u64;
            if seq < from_seq {
                continue;
            }
            let (record_prev, hash) = (if i == 0 { before } else { hashes[i - 1] }, hashes[i]);
            let event = decode_record(bytes).map_err(|e| Corruption::Undecodable {
                seq,
                why: e.to_string(),
            })?;
            let record = LoggedRecord {
                seq,
                prev: record_prev,
                hash,
                bytes,
                event,
            };
            if visit(record)?.is_break() {
                stopped = true;
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let reached = Head {
        seq: expected - 1,
        hash: prev,
    };
    if !stopped {
        check_head(stored, reached)?;
    }
    Ok(reached)
}

/// The block stored under `key`, parsed, where the walk expects the next one (`expected`).
fn placed_block(key: u64, bytes: &[u8], expected: u64) -> Result<Block<'_>> {
    let block = Block::parse(bytes).map_err(|e| Corruption::Undecodable {
        seq: key,
        why: format!("block: {e}"),
    })?;
    if block.first_seq != key {
        let found = block.first_seq;
        return Err(Corruption::Misplaced { key, found }.into());
    }
    if key != expected {
        return Err(Corruption::Gap {
            expected,
            found: key,
        }
        .into());
    }
    Ok(block)
}

/// The first record of a block that does not decode, as the error it is.
fn first_undecodable(block: &Block<'_>) -> Result<()> {
    for (i, bytes) in block.records().enumerate() {
        if let Err(e) = decode_record(bytes) {
            return Err(Corruption::Undecodable {
                seq: block.first_seq + i as u64,
                why: e.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// The stored head must name exactly where the blocks end.
fn check_head(stored: Head, reached: Head) -> Result<()> {
    if stored.seq > reached.seq {
        return Err(Corruption::MissingBlock {
            head_seq: stored.seq,
            blocks_end: reached.seq,
        }
        .into());
    }
    if stored != reached {
        return Err(Corruption::HeadMismatch {
            seq: stored.seq.min(reached.seq),
        }
        .into());
    }
    Ok(())
}

/// What a full verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    /// The `streams_committed` events checked against the streams of the events before them.
    pub commitments: u64,
    pub blocks: u64,
    pub head: Head,
    /// Stored key texts checked against their `key_issued` fingerprints.
    pub secrets: u64,
    /// Keys whose text was retired (and is, as verified, no longer stored).
    pub retired: u64,
}

/// Walks the whole chain: every block, every record decoded and rehashed, the head.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let mut events = 0u64;
    // Key id -> what its `key_issued` recorded: key ids are dense from 1.
    let mut issued: Vec<Issued> = Vec::new();
    // Every stream folded as the log goes: each commitment must record the tree of the
    // events before it (docs/format.md, "Streams").
    let mut streams = crate::streams::StreamTable::default();
    let mut commitments = 0u64;
    let head = walk(store, 1, |record| {
        events += 1;
        if matches!(
            record.event.body,
            keyledger_core::EventBody::StreamsCommitted { .. }
        ) {
            streams.check_commitment(record.seq, &record.event.body)?;
            commitments += 1;
        }
        streams.absorb(record.seq, record.bytes, &record.event);
        match &record.event.body {
            keyledger_core::EventBody::KeyIssued {
                fingerprint, last5, ..
            } => issued.push(Issued {
                fingerprint: *fingerprint,
                last5: *last5,
                seq: record.seq,
                retired_at: None,
            }),
            keyledger_core::EventBody::KeyTextRetired { key_id, .. } => {
                if let Some(key) = key_id
                    .0
                    .checked_sub(1)
                    .and_then(|i| issued.get_mut(i as usize))
                {
                    key.retired_at = Some(record.seq);
                }
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let secrets = verify_secrets(store, &issued)?;
    Ok(VerifyReport {
        secrets,
        retired: issued.iter().filter(|k| k.retired_at.is_some()).count() as u64,
        events,
        commitments,
        blocks: store.block_keys()?.len() as u64,
        head,
    })
}

/// What the log says of one key's text.
struct Issued {
    fingerprint: keyledger_core::Fingerprint,
    last5: keyledger_core::Last5,
    /// The seq of its `key_issued`.
    seq: u64,
    /// The seq of its `key_text_retired`, if its text was retired.
    retired_at: Option<u64>,
}

/// Every stored key text hashes to its `key_issued` fingerprint and ends in its last5; every
/// issued key has its text unless it was retired, and a retired key's text is gone; no text
/// belongs to a key never issued. Answers how many texts it checked.
fn verify_secrets(store: &Store, issued: &[Issued]) -> Result<u64> {
    let mut next = 1u64;
    let mut checked = 0u64;
    // Keys next..until have no stored text: each must have been retired.
    let gap = |next: u64, until: u64| -> Result<()> {
        for key_id in next..until {
            let key = &issued[key_id as usize - 1];
            if key.retired_at.is_none() {
                return Err(Corruption::Secret {
                    key_id,
                    seq: key.seq,
                    why: "its key text is missing from the secrets table".to_owned(),
                }
                .into());
            }
        }
        Ok(())
    };
    store.for_each_secret(|key_id, text| {
        let Some(key) = key_id
            .checked_sub(1)
            .and_then(|i| issued.get(usize::try_from(i).ok()?))
        else {
            return Err(Corruption::Secret {
                key_id,
                seq: 0,
                why: "key text is stored for a key the log never issued".to_owned(),
            }
            .into());
        };
        gap(next, key_id)?;
        next = key_id + 1;
        if let Some(retired) = key.retired_at {
            return Err(Corruption::Secret {
                key_id,
                seq: retired,
                why: "its text was retired but is still stored".to_owned(),
            }
            .into());
        }
        crate::secrets::check(text, &key.fingerprint, &key.last5).map_err(|why| {
            Corruption::Secret {
                key_id,
                seq: key.seq,
                why: why.to_string(),
            }
        })?;
        checked += 1;
        Ok(())
    })?;
    gap(next, issued.len() as u64 + 1)?;
    Ok(checked)
}
