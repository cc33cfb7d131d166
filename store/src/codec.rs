//! The record codec: how one event becomes the bytes the chain hashes and the log stores.
//!
//! A record is one format-version byte followed by the bincode 2.0.1 encoding of the
//! `Event` with the configuration below, spelled out option by option. bincode is
//! unmaintained (3.0.0 is an empty tombstone), so these bytes are locked by golden vectors
//! in `ledger/tests/golden.rs`; docs/format.md specifies them for other languages.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use keyledger_core::Event;

/// The version byte every record starts with.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// The most bytes one record may take (a proxy activation of 10,000 machines with 128-byte
/// names fits in 1.3 MB).
pub const RECORD_BYTES_MAX: usize = 2 * 1024 * 1024;

type RecordConfig = Configuration<LittleEndian, Varint, Limit<RECORD_BYTES_MAX>>;

/// The one bincode configuration of the log.
pub const fn bincode_config() -> RecordConfig {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<RECORD_BYTES_MAX>()
}

/// Why record bytes do not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record format version {0}; this build reads version {RECORD_FORMAT_VERSION}")]
    Version(u8),
    #[error("{0}")]
    Bincode(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the event")]
    Trailing(usize),
}

/// Encodes an event as record bytes.
pub fn encode_record(event: &Event) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    encode_record_into(event, &mut bytes);
    bytes
}

/// Appends an event's record bytes to `out` (the writer reuses one buffer); returns their
/// length.
pub fn encode_record_into(event: &Event, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.push(RECORD_FORMAT_VERSION);
    bincode::serde::encode_into_std_write(event, out, bincode_config())
        .expect("events always encode: every field is a plain serde type");
    out.len() - start
}

/// Decodes record bytes; every byte must belong to the event.
pub fn decode_record(bytes: &[u8]) -> Result<Event, DecodeError> {
    let (&version, payload) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != RECORD_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (event, used) = bincode::serde::decode_from_slice(payload, bincode_config())?;
    if used != payload.len() {
        return Err(DecodeError::Trailing(payload.len() - used));
    }
    Ok(event)
}
