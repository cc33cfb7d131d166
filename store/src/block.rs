//! A block: the records of one committed batch, stored as one redb value.
//!
//! ```text
//! u8        block format: 1 = records stored as they are, 2 = records LZ4-compressed
//! u64 LE    first seq
//! u32 LE    record count (n >= 1)
//! format 1: n times: u32 LE record length, record bytes
//! format 2: u32 LE length of the format-1 body, then that body as one LZ4 block, then
//!           [u8; 32] BLAKE3 of every byte of the block before it
//! [u8; 32]  chain hash after the last record
//! ```
//!
//! One value per batch rather than one row per event: a redb insert costs about the same
//! for 100 bytes as for 100 KB, so per-batch values approach the raw append rate.
//! Compression is only a container: the chain is over the exact record bytes, which are
//! the same in either format, so a block can change format without touching the chain.
//! The writer picks whichever is smaller; both formats are read forever. LZ4 is malleable
//! (in repetitive data, another match offset can decompress to the same bytes), so format 2
//! carries a digest of its container: any changed byte is reported, even one that would
//! leave the records as they were.

use std::borrow::Cow;

use crate::chain::ChainHash;

/// Records stored as they are (what a 1-record block usually is).
pub const BLOCK_FORMAT_STORED: u8 = 1;
/// Records as one LZ4 block (`lz4_flex::block`, no frame) of the format-1 body.
pub const BLOCK_FORMAT_LZ4: u8 = 2;
const HEADER_BYTES: usize = 1 + 8 + 4;
/// LZ4 cannot expand data by more than this factor: a larger claimed body is damage, and
/// is refused before anything is allocated for it.
const LZ4_MAX_RATIO: usize = 255;

/// Why block bytes do not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block format {0}; this build reads formats 1 (stored) and 2 (LZ4)")]
    Version(u8),
    #[error("block truncated at byte {0}")]
    Truncated(usize),
    #[error("block holds no records")]
    Empty,
    #[error("{0} trailing bytes after the records")]
    Trailing(usize),
    #[error("compressed records do not decompress: {0}")]
    Compression(String),
    #[error("the compressed block's digest does not match its bytes")]
    Digest,
}

/// Builds a block's bytes.
#[derive(Debug)]
pub struct BlockWriter {
    first_seq: u64,
    /// The format-1 body: length-prefixed records.
    body: Vec<u8>,
    count: u32,
}

impl BlockWriter {
    pub fn new(first_seq: u64) -> BlockWriter {
        BlockWriter {
            first_seq,
            // Grows with the batch: an HTTP batch is often a few records.
            body: Vec::with_capacity(1024),
            count: 0,
        }
    }

    pub fn push(&mut self, record: &[u8]) {
        let len = u32::try_from(record.len()).expect("records are bounded by RECORD_BYTES_MAX");
        self.body.extend_from_slice(&len.to_le_bytes());
        self.body.extend_from_slice(record);
        self.count += 1;
    }

    /// Appends the record that `encode` writes at the end of the body (returning its
    /// length), without a copy through another buffer.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> usize) -> usize {
        let at = self.body.len();
        self.body.extend_from_slice(&[0; 4]);
        let len = encode(&mut self.body);
        assert_eq!(
            self.body.len(),
            at + 4 + len,
            "the record is what was written"
        );
        // Over u32 it is far over the record limit: the caller refuses and rolls it back.
        let prefix = u32::try_from(len).unwrap_or(u32::MAX);
        self.body[at..at + 4].copy_from_slice(&prefix.to_le_bytes());
        self.count += 1;
        len
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The records pushed so far, in order.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        body_records(&self.body)
    }

    /// The format-1 body so far: length-prefixed records.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A mark to [`rollback`](Self::rollback) to (an atomic submission that was refused).
    pub fn checkpoint(&self) -> (usize, u32) {
        (self.body.len(), self.count)
    }

    pub fn rollback(&mut self, (len, count): (usize, u32)) {
        self.body.truncate(len);
        self.count = count;
    }

    /// The block's bytes, compressed when that makes them smaller.
    pub fn finish(self, head: &ChainHash) -> Vec<u8> {
        assert!(self.count > 0, "a block holds at least one record");
        let compressed = lz4_flex::block::compress(&self.body);
        let stored = compressed.len() + 4 >= self.body.len();
        let mut bytes =
            Vec::with_capacity(HEADER_BYTES + 4 + compressed.len().min(self.body.len()) + 32);
        bytes.push(if stored {
            BLOCK_FORMAT_STORED
        } else {
            BLOCK_FORMAT_LZ4
        });
        bytes.extend_from_slice(&self.first_seq.to_le_bytes());
        bytes.extend_from_slice(&self.count.to_le_bytes());
        if stored {
            bytes.extend_from_slice(&self.body);
        } else {
            let body_len = u32::try_from(self.body.len()).expect("a block body fits in u32");
            bytes.extend_from_slice(&body_len.to_le_bytes());
            bytes.extend_from_slice(&compressed);
            let digest = blake3::hash(&bytes);
            bytes.extend_from_slice(digest.as_bytes());
        }
        bytes.extend_from_slice(head);
        bytes
    }
}

/// A parsed block; its records borrow the stored bytes, or own their decompressed body.
#[derive(Debug)]
pub struct Block<'a> {
    pub first_seq: u64,
    pub head: ChainHash,
    body: Cow<'a, [u8]>,
    /// `(offset, length)` of each record in `body`.
    spans: Vec<(u32, u32)>,
}

impl<'a> Block<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Block<'a>, BlockError> {
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or(BlockError::Truncated(bytes.len()))?;
        let first_seq = u64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        if count == 0 {
            return Err(BlockError::Empty);
        }
        let tail = bytes
            .len()
            .checked_sub(32)
            .filter(|t| *t >= HEADER_BYTES)
            .ok_or(BlockError::Truncated(bytes.len()))?;
        let head: ChainHash = bytes[tail..].try_into().expect("32 bytes");
        let (body, offset) = match header[0] {
            BLOCK_FORMAT_STORED => (Cow::Borrowed(&bytes[HEADER_BYTES..tail]), HEADER_BYTES),
            BLOCK_FORMAT_LZ4 => (Cow::Owned(decompress(&bytes[..tail])?), 0),
            other => return Err(BlockError::Version(other)),
        };
        let spans = spans(&body, count).map_err(|e| match e {
            // Positions in a stored body are positions in the block.
            BlockError::Truncated(at) => BlockError::Truncated(at + offset),
            other => other,
        })?;
        Ok(Block {
            first_seq,
            head,
            body,
            spans,
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn record(&self, index: usize) -> &[u8] {
        let (at, len) = self.spans[index];
        &self.body[at as usize..(at + len) as usize]
    }

    pub fn records(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.spans.len()).map(|i| self.record(i))
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.spans.len() as u64 - 1
    }
}

/// The body of a format-2 block, given its bytes up to the chain hash.
fn decompress(container: &[u8]) -> Result<Vec<u8>, BlockError> {
    let digest_at = container
        .len()
        .checked_sub(32)
        .filter(|at| *at >= HEADER_BYTES + 4)
        .ok_or(BlockError::Truncated(container.len()))?;
    if blake3::hash(&container[..digest_at]).as_bytes() != &container[digest_at..] {
        return Err(BlockError::Digest);
    }
    let compressed = &container[HEADER_BYTES..digest_at];
    let body_len = u32::from_le_bytes(compressed[..4].try_into().expect("4 bytes")) as usize;
    if body_len > compressed.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(BlockError::Compression(format!(
            "claims {body_len} bytes from {} compressed",
            compressed.len()
        )));
    }
    lz4_flex::block::decompress(&compressed[4..], body_len)
        .map_err(|e| BlockError::Compression(e.to_string()))
}

/// Where each of `count` length-prefixed records lies in `body`, which they must fill.
fn spans(body: &[u8], count: u32) -> Result<Vec<(u32, u32)>, BlockError> {
    // The count comes from disk: cap the preallocation by what the bytes can hold.
    let mut spans = Vec::with_capacity((count as usize).min(body.len() / 4));
    let mut at = 0usize;
    for _ in 0..count {
        let len_bytes = body.get(at..at + 4).ok_or(BlockError::Truncated(at))?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        at += 4;
        let end = at.checked_add(len).filter(|end| *end <= body.len());
        let end = end.ok_or(BlockError::Truncated(at))?;
        spans.push((at as u32, len as u32));
        at = end;
    }
    if at != body.len() {
        return Err(BlockError::Trailing(body.len() - at));
    }
    Ok(spans)
}

/// The records of a format-1 body this build wrote, in order.
pub fn body_records(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    Records { body, at: 0 }
}

struct Records<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len_bytes = self.body.get(self.at..self.at + 4)?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let record = &self.body[self.at + 4..self.at + 4 + len];
        self.at += 4 + len;
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(block: &Block<'_>) -> Vec<Vec<u8>> {
        block.records().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn a_small_block_is_stored_and_round_trips_and_rejects_damage() {
        let mut writer = BlockWriter::new(7);
        writer.push(b"first");
        writer.push(b"");
        writer.push(b"third record");
        let bytes = writer.finish(&[9; 32]);
        assert_eq!(bytes[0], BLOCK_FORMAT_STORED);
        let block = Block::parse(&bytes).unwrap();
        assert_eq!(block.first_seq, 7);
        assert_eq!(block.last_seq(), 9);
        assert_eq!(
            records(&block),
            vec![b"first".to_vec(), vec![], b"third record".to_vec()]
        );
        assert_eq!(block.head, [9; 32]);
        assert_eq!(
            Block::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            BlockError::Truncated(30)
        );
        let mut longer = bytes.clone();
        longer.insert(longer.len() - 32, 0);
        assert_eq!(Block::parse(&longer).unwrap_err(), BlockError::Trailing(1));
        let mut version = bytes;
        version[0] = 3;
        assert_eq!(Block::parse(&version).unwrap_err(), BlockError::Version(3));
    }

    #[test]
    fn records_encoded_in_place_equal_records_pushed() {
        let mut pushed = BlockWriter::new(3);
        let mut encoded = BlockWriter::new(3);
        for record in [&b"one"[..], b"", b"three"] {
            pushed.push(record);
            let len = encoded.push_with(|body| {
                body.extend_from_slice(record);
                record.len()
            });
            assert_eq!(len, record.len());
        }
        let mark = encoded.checkpoint();
        encoded.push_with(|body| {
            body.extend_from_slice(b"taken back");
            10
        });
        encoded.rollback(mark);
        assert_eq!(encoded.body(), pushed.body());
        assert_eq!(encoded.finish(&[5; 32]), pushed.finish(&[5; 32]));
    }

    #[test]
    fn a_repetitive_block_is_compressed_and_reads_back_the_same_records() {
        let mut writer = BlockWriter::new(1);
        let pushed: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("machines_activated contoso machine-{i:06}").into_bytes())
            .collect();
        for record in &pushed {
            writer.push(record);
        }
        assert_eq!(writer.records().collect::<Vec<_>>(), pushed);
        let bytes = writer.finish(&[1; 32]);
        assert_eq!(bytes[0], BLOCK_FORMAT_LZ4);
        let raw: usize = pushed.iter().map(|r| r.len() + 4).sum();
        assert!(bytes.len() * 4 < raw, "{} bytes for {raw}", bytes.len());
        let block = Block::parse(&bytes).unwrap();
        assert_eq!(records(&block), pushed);
        assert_eq!(
            (block.first_seq, block.last_seq(), block.head),
            (1, 500, [1; 32])
        );
    }

    #[test]
    fn any_damage_to_a_compressed_block_is_an_error_not_a_panic() {
        let mut writer = BlockWriter::new(1);
        for i in 0..100 {
            writer.push(format!("record {i:04} of a compressible block").as_bytes());
        }
        let bytes = writer.finish(&[0; 32]);
        assert_eq!(bytes[0], BLOCK_FORMAT_LZ4);
        // Every byte before the chain hash is covered by the container digest.
        for at in 0..bytes.len() - 32 {
            for bit in [0x01, 0x04, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                assert!(
                    Block::parse(&damaged).is_err(),
                    "a flip at byte {at} went unseen"
                );
            }
        }
        // A body length past what LZ4 can produce is refused before anything is allocated
        // (even with a digest made to match).
        let mut huge = bytes.clone();
        huge[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let digest_at = huge.len() - 64;
        let digest = blake3::hash(&huge[..digest_at]);
        huge[digest_at..digest_at + 32].copy_from_slice(digest.as_bytes());
        assert!(matches!(
            Block::parse(&huge).unwrap_err(),
            BlockError::Compression(_)
        ));
    }

    proptest::proptest! {
        /// Block bytes come from disk: whatever they are, reading them is an answer (the
        /// records, or why not), never a panic or an allocation the bytes cannot justify.
        #[test]
        fn arbitrary_and_mangled_block_bytes_never_panic(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            records in 1..200usize,
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..4),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            redigest in proptest::prelude::any::<bool>(),
        ) {
            let read = |bytes: &[u8]| {
                if let Ok(block) = Block::parse(bytes) {
                    let total: usize = block.records().map(<[u8]>::len).sum();
                    proptest::prop_assert!(total <= bytes.len() * LZ4_MAX_RATIO);
                    proptest::prop_assert_eq!(block.records().len(), block.len());
                }
                Ok(())
            };
            read(&noise)?;
            for format in [BLOCK_FORMAT_STORED, BLOCK_FORMAT_LZ4] {
                let mut with_header = vec![format];
                with_header.extend_from_slice(&noise);
                read(&with_header)?;
            }
            let mut writer = BlockWriter::new(1);
            for i in 0..records {
                writer.push(format!("activation {i} of pc-{}", i % 7).as_bytes());
            }
            let mut bytes = writer.finish(&[7; 32]);
            for (at, value) in &edits {
                let at = at.index(bytes.len());
                bytes[at] = *value;
            }
            if redigest && bytes[0] == BLOCK_FORMAT_LZ4 && bytes.len() >= 64 + HEADER_BYTES {
                // An attacker who also rewrites the digest reaches the decompressor itself.
                let at = bytes.len() - 64;
                let digest = blake3::hash(&bytes[..at]);
                bytes[at..at + 32].copy_from_slice(digest.as_bytes());
            }
            read(&bytes)?;
            read(&bytes[..cut.index(bytes.len() + 1)])?;
        }
    }
}
