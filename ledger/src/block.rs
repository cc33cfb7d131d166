//! A block: the records of one committed batch, stored as one redb value.
//!
//! ```text
//! u8        block format version (1)
//! u64 LE    first seq
//! u32 LE    record count (n >= 1)
//! n times:  u32 LE record length, record bytes
//! [u8; 32]  chain hash after the last record
//! ```
//!
//! One value per batch rather than one row per event: a redb insert costs about the same
//! for 100 bytes as for 100 KB, so per-batch values approach the raw append rate.

use crate::chain::ChainHash;

pub const BLOCK_FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 4;

/// Why block bytes do not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block format version {0}; this build reads version {BLOCK_FORMAT_VERSION}")]
    Version(u8),
    #[error("block truncated at byte {0}")]
    Truncated(usize),
    #[error("block holds no records")]
    Empty,
    #[error("{0} trailing bytes after the chain head")]
    Trailing(usize),
}

/// Builds a block's bytes.
#[derive(Debug)]
pub struct BlockWriter {
    bytes: Vec<u8>,
    count: u32,
}

impl BlockWriter {
    pub fn new(first_seq: u64) -> BlockWriter {
        let mut bytes = Vec::with_capacity(64 * 1024);
        bytes.push(BLOCK_FORMAT_VERSION);
        bytes.extend_from_slice(&first_seq.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        BlockWriter { bytes, count: 0 }
    }

    pub fn push(&mut self, record: &[u8]) {
        let len = u32::try_from(record.len()).expect("records are bounded by RECORD_BYTES_MAX");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// A mark to [`rollback`](Self::rollback) to (an atomic submission that was refused).
    pub fn checkpoint(&self) -> (usize, u32) {
        (self.bytes.len(), self.count)
    }

    pub fn rollback(&mut self, (len, count): (usize, u32)) {
        self.bytes.truncate(len);
        self.count = count;
    }

    pub fn finish(mut self, head: &ChainHash) -> Vec<u8> {
        assert!(self.count > 0, "a block holds at least one record");
        self.bytes[9..13].copy_from_slice(&self.count.to_le_bytes());
        self.bytes.extend_from_slice(head);
        self.bytes
    }
}

/// A parsed block borrowing its bytes.
#[derive(Debug)]
pub struct Block<'a> {
    pub first_seq: u64,
    pub records: Vec<&'a [u8]>,
    pub head: ChainHash,
}

impl<'a> Block<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Block<'a>, BlockError> {
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or(BlockError::Truncated(bytes.len()))?;
        if header[0] != BLOCK_FORMAT_VERSION {
            return Err(BlockError::Version(header[0]));
        }
        let first_seq = u64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        if count == 0 {
            return Err(BlockError::Empty);
        }
        let mut at = HEADER_BYTES;
        // The count comes from disk: cap the preallocation by what the bytes can hold.
        let mut records = Vec::with_capacity((count as usize).min(bytes.len() / 4));
        for _ in 0..count {
            let len_bytes = bytes.get(at..at + 4).ok_or(BlockError::Truncated(at))?;
            let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            at += 4;
            let end = at.checked_add(len).ok_or(BlockError::Truncated(at))?;
            records.push(bytes.get(at..end).ok_or(BlockError::Truncated(at))?);
            at = end;
        }
        let head: ChainHash = bytes
            .get(at..at + 32)
            .ok_or(BlockError::Truncated(at))?
            .try_into()
            .expect("32 bytes");
        at += 32;
        if at != bytes.len() {
            return Err(BlockError::Trailing(bytes.len() - at));
        }
        Ok(Block {
            first_seq,
            records,
            head,
        })
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.records.len() as u64 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_reject_damage() {
        let mut writer = BlockWriter::new(7);
        writer.push(b"first");
        writer.push(b"");
        writer.push(b"third record");
        let bytes = writer.finish(&[9; 32]);
        let block = Block::parse(&bytes).unwrap();
        assert_eq!(block.first_seq, 7);
        assert_eq!(block.last_seq(), 9);
        assert_eq!(block.records, vec![&b"first"[..], b"", b"third record"]);
        assert_eq!(block.head, [9; 32]);
        assert_eq!(
            Block::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            BlockError::Truncated(42)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Block::parse(&longer).unwrap_err(), BlockError::Trailing(1));
        let mut version = bytes;
        version[0] = 2;
        assert_eq!(Block::parse(&version).unwrap_err(), BlockError::Version(2));
    }
}
