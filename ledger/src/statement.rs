//! Statements (docs/proofs.md, "Statements"): one license ID's complete history, proven
//! against a signed checkpoint that sits at a streams commitment. The file holds the
//! checkpoint, the commitment's record, the entries of every stream the license ID's stream
//! reaches ([`EventBody::depends_on`]) with one multi-proof against the commitment's root,
//! and every event of those streams with one multi-proof against the checkpoint's root.
//! Checking it needs the ledger's verifier key alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keyledger_core::{Event, EventBody, LicenseId, Stream};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointError, LedgerKey};
use crate::codec::decode_record;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash};
use crate::store::Store;
use crate::streams::{next_hash, StreamEntry, StreamTable, START};
use crate::tree::LedgerTree;
use crate::wire::event_to_json;

/// The statement format this build writes and reads.
pub const FORMAT: &str = "keyledger-statement/1";

/// A statement file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// [`FORMAT`].
    pub format: String,
    /// The license ID whose history it proves.
    pub license_id: String,
    /// The signed checkpoint (with any witnesses' cosignatures), of `commitment.seq` records.
    pub checkpoint: String,
    /// The `streams_committed` record the checkpoint ends with.
    pub commitment: StatementRecord,
    /// Every stream the statement proves complete, sorted by id.
    pub streams: Vec<StreamEntry>,
    /// Where those entries are in the streams tree, and the hashes that prove them there.
    pub streams_proof: MultiProof,
    /// Every event of those streams, by seq.
    pub events: Vec<StatementRecord>,
    /// The hashes proving the events and the commitment in the checkpoint's tree.
    pub events_proof: Vec<String>,
}

/// One record: its seq, exact bytes, and (for people) what it says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementRecord {
    pub seq: u64,
    /// base64 of the exact record bytes.
    pub record: String,
    /// The decoded record; the verifier checks it says what `record` says.
    pub event: serde_json::Value,
}

/// Leaves of a tree at `indices`, proven together by `path` (hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiProof {
    pub indices: Vec<u64>,
    pub path: Vec<String>,
}

/// The streams a statement of `license` holds: its license ID's stream and every stream
/// the included events reach through [`EventBody::depends_on`], given which streams each
/// stream's events depend on.
fn reach(license: &LicenseId, needs: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    let mut next = vec![Stream::License(license.clone()).id()];
    while let Some(stream) = next.pop() {
        if held.insert(stream.clone()) {
            next.extend(needs.get(&stream).into_iter().flatten().cloned());
        }
    }
    held
}

fn note_needs(needs: &mut BTreeMap<String, BTreeSet<String>>, body: &EventBody) {
    let depends: Vec<String> = body.depends_on().iter().map(Stream::id).collect();
    for stream in body.streams() {
        needs
            .entry(stream.id())
            .or_default()
            .extend(depends.iter().cloned());
    }
}

/// Builds the statement of `license` at the streams commitment at seq `at` (the latest one
/// when `None`), signed with `key`; `checkpoint` is a note of that size to use instead (one
/// with witnesses' cosignatures, say).
pub fn build(
    store: &Store,
    key: &LedgerKey,
    license: &LicenseId,
    at: Option<u64>,
    checkpoint: Option<String>,
    time: keyledger_core::Timestamp,
) -> Result<Statement> {
    let commitment = match at {
        Some(seq) => seq,
        None => latest_commitment(store)?.ok_or_else(|| {
            Error::Storage(
                "the ledger has no streams commitment yet (`keyledger commit-streams`, or \
                 `serve` commits every --streams-every seconds)"
                    .to_owned(),
            )
        })?,
    };
    let (commitment_record, commitment_event, size) = commitment_at(store, commitment)?;
    // Pass 1: the streams table and which streams each stream's events need.
    let mut table = StreamTable::default();
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    crate::walk::walk(store, 1, |record| {
        if record.seq > size {
            return Ok(ControlFlow::Break(()));
        }
        table.absorb(record.seq, record.bytes, &record.event);
        note_needs(&mut needs, &record.event.body);
        Ok(ControlFlow::Continue(()))
    })?;
    let held = reach(license, &needs);
    if table
        .entry(&Stream::License(license.clone()).id())
        .is_none()
    {
        return Err(Error::Storage(format!(
            "no license ID {license} in the ledger through seq {size}"
        )));
    }
    // Pass 2: every event of a held stream.
    let mut events = Vec::new();
    crate::walk::walk(store, 1, |record| {
        if record.seq > size {
            return Ok(ControlFlow::Break(()));
        }
        let body = &record.event.body;
        if body.streams().iter().any(|s| held.contains(&s.id())) {
            events.push(statement_record(record.seq, record.bytes, &record.event));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let held: Vec<String> = held.into_iter().collect();
    let (entries, indices, path) = table.prove(&held)?;
    let mut leaves: Vec<u64> = events.iter().map(|e| e.seq - 1).collect();
    leaves.push(commitment - 1);
    let tree = LedgerTree::new(store, commitment);
    let events_path = merkle::multi_inclusion_path(&tree, &leaves, commitment)
        .map_err(|e| Error::Storage(e.to_string()))?;
    let checkpoint = match checkpoint {
        Some(note) => note,
        None => crate::proof::checkpoint(store, key, commitment, time)?,
    };
    Ok(Statement {
        format: FORMAT.to_owned(),
        license_id: license.to_string(),
        checkpoint,
        commitment: statement_record(commitment, &commitment_record, &commitment_event),
        streams: entries,
        streams_proof: MultiProof {
            indices,
            path: path.iter().map(hex::encode).collect(),
        },
        events,
        events_proof: events_path.iter().map(hex::encode).collect(),
    })
}

/// The record at `seq`, which must be a `streams_committed`, and the size it covers.
fn commitment_at(store: &Store, seq: u64) -> Result<(Vec<u8>, Event, u64)> {
    let record = record_at(store, seq)?;
    match decode_record(&record) {
        Ok(event) => match event.body {
            EventBody::StreamsCommitted { size, .. } => Ok((record, event, size)),
            _ => Err(Error::Storage(format!(
                "seq {seq} is not a streams commitment"
            ))),
        },
        Err(e) => Err(Error::Storage(format!("seq {seq}: {e}"))),
    }
}

fn statement_record(seq: u64, bytes: &[u8], event: &Event) -> StatementRecord {
    StatementRecord {
        seq,
        record: BASE64.encode(bytes),
        event: event_to_json(event),
    }
}

fn record_at(store: &Store, seq: u64) -> Result<Vec<u8>> {
    store
        .records(seq, 1)?
        .pop()
        .ok_or_else(|| Error::Storage(format!("the log has no seq {seq}")))
}

/// The seq of the log's latest `streams_committed`, if any.
pub fn latest_commitment(store: &Store) -> Result<Option<u64>> {
    let mut found = None;
    crate::walk::walk(store, 1, |record| {
        if matches!(record.event.body, EventBody::StreamsCommitted { .. }) {
            found = Some(record.seq);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

/// Why a statement does not verify. Each names what it found.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("not a statement: {0}")]
    Format(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the checkpoint is of {size} records but the streams commitment is seq {seq}: a statement's checkpoint sits at its commitment")]
    NotAtCommitment { size: u64, seq: u64 },
    #[error("seq {seq}: {why}")]
    Record { seq: u64, why: String },
    #[error("the events are not in the checkpoint's tree: {0}")]
    Events(String),
    #[error("the stream entries are not in the commitment's streams tree: {0}")]
    Entries(String),
    #[error("stream {0} is missing: the statement's events need it")]
    MissingStream(String),
    #[error("stream {0} is not one the license ID's history needs")]
    ExtraStream(String),
    #[error("stream {stream}: {why}")]
    Stream { stream: String, why: String },
}

/// What a verified statement proves: the license ID, the checkpoint, and every event of its
/// streams (the commitment last), each with its seq.
#[derive(Debug)]
pub struct VerifiedStatement {
    pub license_id: LicenseId,
    pub checkpoint: Checkpoint,
    pub events: Vec<(u64, Event)>,
    pub streams: Vec<StreamEntry>,
}

type Checked<T> = std::result::Result<T, StatementError>;

/// Checks every signature, proof and running hash of `statement` with the ledger's
/// verifier key (docs/proofs.md, "What each check guarantees").
pub fn verify(statement: &Statement, verifier_key: &str) -> Checked<VerifiedStatement> {
    if statement.format != FORMAT {
        return Err(StatementError::Format(format!(
            "format {:?}, this build reads {FORMAT:?}",
            statement.format
        )));
    }
    let license_id = LicenseId::new(&statement.license_id)
        .map_err(|e| StatementError::Format(format!("license_id: {e}")))?;
    let checkpoint = checkpoint::verify(&statement.checkpoint, verifier_key)?;
    let commitment = &statement.commitment;
    if checkpoint.size != commitment.seq {
        return Err(StatementError::NotAtCommitment {
            size: checkpoint.size,
            seq: commitment.seq,
        });
    }
    let (commitment_event, commitment_leaf) = decode(commitment)?;
    let EventBody::StreamsCommitted {
        size,
        streams: stream_count,
        root,
    } = commitment_event.body
    else {
        return Err(StatementError::Record {
            seq: commitment.seq,
            why: "is not a streams_committed event".to_owned(),
        });
    };
    let mut events = Vec::with_capacity(statement.events.len() + 1);
    let mut leaves = Vec::with_capacity(statement.events.len() + 1);
    for record in &statement.events {
        if record.seq > size || events.last().is_some_and(|(seq, _)| *seq >= record.seq) {
            return Err(StatementError::Record {
                seq: record.seq,
                why: format!("out of order or past the commitment's size {size}"),
            });
        }
        let (event, leaf) = decode(record)?;
        events.push((record.seq, event));
        leaves.push(leaf);
    }
    let mut indices: Vec<u64> = events.iter().map(|(seq, _)| seq - 1).collect();
    indices.push(commitment.seq - 1);
    leaves.push(commitment_leaf);
    let path = hashes(&statement.events_proof).map_err(StatementError::Events)?;
    if !merkle::verify_multi_inclusion(&indices, &leaves, checkpoint.size, &path, &checkpoint.root)
    {
        return Err(StatementError::Events(format!(
            "the {} records and the proof do not make the checkpoint's root",
            leaves.len()
        )));
    }
    check_entries(statement, stream_count, &root.0)?;
    check_streams(&license_id, &statement.streams, &events, &leaves)?;
    events.push((commitment.seq, commitment_event));
    Ok(VerifiedStatement {
        license_id,
        checkpoint,
        events,
        streams: statement.streams.clone(),
    })
}

fn decode(record: &StatementRecord) -> Checked<(Event, Hash)> {
    let bad = |why: String| StatementError::Record {
        seq: record.seq,
        why,
    };
    let bytes = BASE64
        .decode(&record.record)
        .map_err(|e| bad(format!("record: {e}")))?;
    let event = decode_record(&bytes).map_err(|e| bad(e.to_string()))?;
    if event_to_json(&event) != record.event {
        return Err(bad("`event` does not say what `record` says".to_owned()));
    }
    if record.seq == 0 {
        return Err(bad("seqs start at 1".to_owned()));
    }
    Ok((event, merkle::leaf_hash(&bytes)))
}

fn hashes(hex_hashes: &[String]) -> std::result::Result<Vec<Hash>, String> {
    hex_hashes
        .iter()
        .map(|text| {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(text, &mut hash).map_err(|e| format!("{text:?}: {e}"))?;
            Ok(hash)
        })
        .collect()
}

/// The entries are leaves of the streams tree whose root the commitment records.
fn check_entries(statement: &Statement, stream_count: u64, root: &Hash) -> Checked<()> {
    let proof = &statement.streams_proof;
    let sorted = statement
        .streams
        .windows(2)
        .all(|w| w[0].stream < w[1].stream);
    if !sorted {
        return Err(StatementError::Entries(
            "the entries are not sorted by stream id".to_owned(),
        ));
    }
    let leaves: Vec<Hash> = statement.streams.iter().map(StreamEntry::leaf).collect();
    let path = hashes(&proof.path).map_err(StatementError::Entries)?;
    if !merkle::verify_multi_inclusion(&proof.indices, &leaves, stream_count, &path, root) {
        return Err(StatementError::Entries(format!(
            "{} entries and the proof do not make the root the commitment records",
            leaves.len()
        )));
    }
    Ok(())
}

/// The statement holds exactly the streams its events reach, and each stream's events are
/// exactly those its entry counts and hashes: none left out, none added, none reordered.
fn check_streams(
    license: &LicenseId,
    entries: &[StreamEntry],
    events: &[(u64, Event)],
    leaves: &[Hash],
) -> Checked<()> {
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, event) in events {
        note_needs(&mut needs, &event.body);
    }
    let held = reach(license, &needs);
    let given: BTreeSet<String> = entries.iter().map(|e| e.stream.clone()).collect();
    if let Some(missing) = held.difference(&given).next() {
        return Err(StatementError::MissingStream(missing.clone()));
    }
    if let Some(extra) = given.difference(&held).next() {
        return Err(StatementError::ExtraStream(extra.clone()));
    }
    let mut folded: BTreeMap<&str, (u64, u64, Hash)> = entries
        .iter()
        .map(|e| (e.stream.as_str(), (0, 0, START)))
        .collect();
    for ((seq, event), leaf) in events.iter().zip(leaves) {
        let mut in_any = false;
        for stream in event.body.streams() {
            if let Some(standing) = folded.get_mut(stream.id().as_str()) {
                *standing = (standing.0 + 1, *seq, next_hash(&standing.2, leaf));
                in_any = true;
            }
        }
        if !in_any {
            return Err(StatementError::Record {
                seq: *seq,
                why: "belongs to none of the statement's streams".to_owned(),
            });
        }
    }
    for entry in entries {
        let (count, last_seq, hash) = folded[entry.stream.as_str()];
        let why = if count != entry.count || last_seq != entry.last_seq {
            Some(format!(
                "the statement holds {count} events (last seq {last_seq}) but the commitment \
                 records {} (last seq {}): an event was left out or added",
                entry.count, entry.last_seq
            ))
        } else if hash != entry.hash {
            Some(format!(
                "its {count} events do not hash to the committed running hash: an event was \
                 replaced or two were swapped"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(StatementError::Stream {
                stream: entry.stream.clone(),
                why,
            });
        }
    }
    Ok(())
}
