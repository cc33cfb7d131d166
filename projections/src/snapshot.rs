//! Snapshots: a projection's bytes with its digest, bound to the chain, so startup can skip
//! replaying the log (the read models, and the writer's decision state, which is their books).
//!
//! ```text
//! u8        snapshot format version (9)
//! u64 LE    last seq folded
//! [u8; 32]  the chain hash at that seq (h(seq); 32 zero bytes at seq 0)
//! [u8; 32]  BLAKE3 of the payload
//! payload   bincode 2.0.1 (standard, little endian, varint) of `Projections`
//! ```
//! A snapshot whose version, digest or payload does not check out is not used: the caller
//! rebuilds from zero and says so. The chain hash binds the snapshot to the history it was
//! folded from: a reader uses it only where the log has that hash at that seq.

use crate::model::Projections;

/// 2: history indexes moved into the key and license views. 3: keys in a dense table.
/// 4: the books (`keyledger_core::books`), shared with the decision state, plus the read
/// models' own views; keys carry their fingerprint (exports check stored key text against it).
/// 5: a key's terms say whether its text was retired (`key_text_retired`).
/// 6: a key's day buckets (usage over time) and its last outside count (reconciliation).
/// 7: a disclosure is in the history of every license ID whose keys it showed.
/// 8: the header carries the chain hash at the snapshot's seq (the writer resumes from it).
/// 9: no history indexes (histories are read from the log's index: `crate::history`); which
/// key each KMS host served from which seq (`kms_served`).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 9;
const HEADER_BYTES: usize = 1 + 8 + 32 + 32;

/// A chain hash (`keyledger_ledger::chain`), as the header carries it.
pub type ChainHash = [u8; 32];

/// Why a snapshot cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Fewer bytes than the header says (the count read).
    #[error("snapshot is {0} bytes, shorter than its header")]
    Truncated(usize),
    /// A snapshot version this build does not read.
    #[error("snapshot format version {0}; this build reads version {SNAPSHOT_FORMAT_VERSION}")]
    Version(u8),
    /// The digest does not match the payload.
    #[error("snapshot digest does not match its payload")]
    Digest,
    /// The payload does not decode.
    #[error("snapshot payload does not decode: {0}")]
    Payload(String),
    /// The header's seq is not the payload's.
    #[error("snapshot says seq {header} but holds seq {payload}")]
    Seq {
        /// The seq the snapshot's header names.
        header: u64,
        /// The last seq of the projections it holds.
        payload: u64,
    },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_no_limit()
}

fn payload(projections: &Projections) -> Vec<u8> {
    bincode::serde::encode_to_vec(projections, config()).expect("projections encode")
}

/// BLAKE3 of the projection's canonical bytes: equal digests, equal projections.
pub fn digest(projections: &Projections) -> [u8; 32] {
    *blake3::hash(&payload(projections)).as_bytes()
}

/// The snapshot of `projections`, folded through a log whose chain hash at their last seq
/// is `chain`.
pub fn encode(projections: &Projections, chain: &ChainHash) -> Vec<u8> {
    let payload = payload(projections);
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.push(SNAPSHOT_FORMAT_VERSION);
    bytes.extend_from_slice(&projections.last_seq.to_le_bytes());
    bytes.extend_from_slice(chain);
    bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// The seq a snapshot was taken at, read from its header alone.
pub fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?))
}

/// The projections a snapshot's bytes hold, checked (version, digest, seq).
pub fn decode(bytes: &[u8]) -> Result<Projections, SnapshotError> {
    decode_bound(bytes).map(|(projections, _)| projections)
}

/// The projections of a snapshot and the chain hash it says the log had at their last seq
/// (the caller checks it against the log before trusting them).
pub fn decode_bound(bytes: &[u8]) -> Result<(Projections, ChainHash), SnapshotError> {
    if bytes.len() < HEADER_BYTES {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    if bytes[0] != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::Version(bytes[0]));
    }
    let header_seq = seq_of(bytes).expect("header is long enough");
    let chain: ChainHash = bytes[9..41].try_into().expect("header is long enough");
    let payload = &bytes[HEADER_BYTES..];
    if blake3::hash(payload).as_bytes() != &bytes[41..73] {
        return Err(SnapshotError::Digest);
    }
    let (projections, _): (Projections, usize) =
        bincode::serde::decode_from_slice(payload, config())
            .map_err(|e| SnapshotError::Payload(e.to_string()))?;
    if projections.last_seq != header_seq {
        return Err(SnapshotError::Seq {
            header: header_seq,
            payload: projections.last_seq,
        });
    }
    Ok((projections, chain))
}
