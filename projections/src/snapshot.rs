//! Snapshots: a projection's bytes with its digest, so startup can skip replaying the log.
//!
//! ```text
//! u8        snapshot format version (7)
//! u64 LE    last seq folded
//! [u8; 32]  BLAKE3 of the payload
//! payload   bincode 2.0.1 (standard, little endian, varint) of `Projections`
//! ```
//! A snapshot whose version, digest or payload does not check out is not used: the caller
//! rebuilds from zero and says so.

use crate::model::Projections;

/// 2: history indexes moved into the key and license views. 3: keys in a dense table.
/// 4: the books (`keyledger_core::books`), shared with the decision state, plus the read
/// models' own views; keys carry their fingerprint (exports check stored key text against it).
/// 5: a key's terms say whether its text was retired (`key_text_retired`).
/// 6: a key's day buckets (usage over time) and its last outside count (reconciliation).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 7;
const HEADER_BYTES: usize = 1 + 8 + 32;

/// Why a snapshot cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("snapshot format version {0}; this build reads version {SNAPSHOT_FORMAT_VERSION}")]
    Version(u8),
    #[error("snapshot digest does not match its payload")]
    Digest,
    #[error("snapshot payload does not decode: {0}")]
    Payload(String),
    #[error("snapshot says seq {header} but holds seq {payload}")]
    Seq { header: u64, payload: u64 },
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

pub fn encode(projections: &Projections) -> Vec<u8> {
    let payload = payload(projections);
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.push(SNAPSHOT_FORMAT_VERSION);
    bytes.extend_from_slice(&projections.last_seq.to_le_bytes());
    bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// The seq a snapshot was taken at, read from its header alone.
pub fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?))
}

pub fn decode(bytes: &[u8]) -> Result<Projections, SnapshotError> {
    if bytes.len() < HEADER_BYTES {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    if bytes[0] != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::Version(bytes[0]));
    }
    let header_seq = seq_of(bytes).expect("header is long enough");
    let payload = &bytes[HEADER_BYTES..];
    if blake3::hash(payload).as_bytes() != &bytes[9..41] {
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
    Ok(projections)
}
