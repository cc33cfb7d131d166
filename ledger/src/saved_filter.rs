//! The writer's filter of activated pairs ([`ActivatedFilter`]), saved in the store so that a
//! start reads it (about 1.3 bytes a pair) instead of the pair index (16 bytes a pair, redb)
//! or the whole log (PostgreSQL, which keeps no pair index).
//!
//! Derived data, never trusted as it is: it is bound to the seq and chain hash of a head the
//! writer knew durable when it took the copy (every pair the log activated through that seq
//! is in it; pairs of later batches may be too, which only costs lookups) and to the ledger's
//! machine hash key (a copy of the same log under another key hashes its pairs elsewhere),
//! covered by a BLAKE3 checksum, and refused when it does not decode, is of another version,
//! its chain hash is not the log's at its seq (a filter of another history, or of a log since
//! cut back), or its key check is not the ledger's. A refused or missing filter is built as
//! before, from the pair index or the log.
//!
//! Layout, version 1 (integers little-endian; docs/format.md, "Saved filter"):
//! `b"KLAF"`, version (1 byte), seq (u64), chain hash (32), key check (16,
//! [`MachineHasher::key_check`]), first-part pairs (u64), parts
//! (u32), then each part: capacity (u64), pairs put in (u64), bit bytes (u64) and the bits;
//! then BLAKE3 of every byte before it (32).

use crate::activated::ActivatedFilter;
use crate::machines::MachineHasher;
use crate::store::Head;

/// What a saved filter says of itself besides its pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Every pair activated through `head.seq` is in the filter.
    pub head: Head,
    /// The [`MachineHasher::key_check`] of the key its pairs were hashed under.
    pub key_check: [u8; 16],
}

/// The saved filter's version this build writes and reads.
pub const SAVED_FILTER_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"KLAF";
const CHECKSUM_BYTES: usize = 32;

/// `filter` saved as bound to `at` (every pair activated through `at.seq` is in it) and to
/// the key of `hasher`, which hashed its pairs.
pub fn encode(filter: &ActivatedFilter, at: Head, hasher: &MachineHasher) -> Vec<u8> {
    seal(encode_body(filter, at, hasher))
}

/// What [`encode`] writes before the checksum: one copy of the bits, the writer's share of a
/// save in the background (the checksum, a pass over them, is the thread's).
pub fn encode_body(filter: &ActivatedFilter, at: Head, hasher: &MachineHasher) -> Vec<u8> {
    let parts = filter.raw_parts();
    let bits: usize = parts.iter().map(|(bits, _, _)| bits.len()).sum();
    let mut out = Vec::with_capacity(bits + 64 + 24 * parts.len() + CHECKSUM_BYTES);
    out.extend_from_slice(MAGIC);
    out.push(SAVED_FILTER_VERSION);
    out.extend_from_slice(&at.seq.to_le_bytes());
    out.extend_from_slice(&at.hash);
    out.extend_from_slice(&hasher.key_check());
    out.extend_from_slice(&(filter.first_part_pairs() as u64).to_le_bytes());
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for (bits, capacity, pairs) in parts {
        out.extend_from_slice(&(capacity as u64).to_le_bytes());
        out.extend_from_slice(&(pairs as u64).to_le_bytes());
        out.extend_from_slice(&(bits.len() as u64).to_le_bytes());
        out.extend_from_slice(bits);
    }
    out
}

/// [`encode_body`]'s bytes with their checksum after them.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let checksum = blake3::hash(&body);
    body.extend_from_slice(checksum.as_bytes());
    body
}

/// The filter and what it is bound to, from its bytes as the store holds them (in chunks,
/// read in place: the bits are copied once, into the filter); the error says what is wrong.
pub fn decode<C: AsRef<[u8]>>(chunks: &[C]) -> Result<(ActivatedFilter, Bound), String> {
    let total: usize = chunks.iter().map(|c| c.as_ref().len()).sum();
    let body_len = total
        .checked_sub(CHECKSUM_BYTES)
        .ok_or_else(|| format!("{total} bytes: shorter than a checksum"))?;
    let mut r = Reader::new(chunks, body_len);
    let mut hasher = blake3::Hasher::new();
    r.for_each_slice(body_len, |slice| {
        hasher.update(slice);
    });
    let mut checksum = [0; CHECKSUM_BYTES];
    r.copy_to(&mut checksum)?;
    if *hasher.finalize().as_bytes() != checksum {
        return Err("its checksum does not match its bytes".into());
    }
    let mut r = Reader::new(chunks, body_len);
    if r.array::<4>()? != *MAGIC {
        return Err("it does not start with the saved filter's magic".into());
    }
    let [version] = r.array::<1>()?;
    if version != SAVED_FILTER_VERSION {
        return Err(format!(
            "version {version}; this build reads {SAVED_FILTER_VERSION}"
        ));
    }
    let seq = r.u64()?;
    let hash = r.array::<32>()?;
    let key_check = r.array::<16>()?;
    let first = r.usize()?;
    let count = u32::from_le_bytes(r.array::<4>()?);
    let mut parts = Vec::new();
    for part in 0..count {
        let (capacity, pairs, len) = (r.usize()?, r.usize()?, r.usize()?);
        if len > r.left() {
            return Err(format!("part {part}: {len} bytes, past the end"));
        }
        let mut bits = ActivatedFilter::part_of_size(capacity, len)
            .ok_or_else(|| format!("part {part}: {len} bytes do not fit {capacity} pairs"))?;
        r.copy_to(bits.as_bytes_mut())?;
        parts.push((bits, capacity, pairs));
    }
    if r.left() != 0 {
        return Err(format!("{} bytes after the last part", r.left()));
    }
    let head = Head { seq, hash };
    Ok((
        ActivatedFilter::from_parts(parts, first),
        Bound { head, key_check },
    ))
}

/// Reads a saved filter's fields in order across its chunks, up to `end` (the checksum's
/// start, or the whole); every read says where it ran out.
struct Reader<'a, C> {
    chunks: &'a [C],
    chunk: usize,
    within: usize,
    at: usize,
    end: usize,
}

impl<'a, C: AsRef<[u8]>> Reader<'a, C> {
    fn new(chunks: &'a [C], end: usize) -> Reader<'a, C> {
        Reader {
            chunks,
            chunk: 0,
            within: 0,
            at: 0,
            end,
        }
    }

    fn left(&self) -> usize {
        self.end - self.at
    }

    /// Hands the next `n` bytes (all there, `n` <= what is left in the chunks) to `visit`,
    /// a slice of a chunk at a time.
    fn for_each_slice(&mut self, mut n: usize, mut visit: impl FnMut(&[u8])) {
        while n > 0 {
            let chunk = self.chunks[self.chunk].as_ref();
            let take = n.min(chunk.len() - self.within);
            visit(&chunk[self.within..self.within + take]);
            (self.within, self.at, n) = (self.within + take, self.at + take, n - take);
            if self.within == chunk.len() {
                (self.chunk, self.within) = (self.chunk + 1, 0);
            }
        }
    }

    fn copy_to(&mut self, out: &mut [u8]) -> Result<(), String> {
        let total: usize = self.chunks.iter().map(|c| c.as_ref().len()).sum();
        if out.len() > total - self.at {
            return Err(format!("it ends inside a field at byte {}", self.at));
        }
        let mut filled = 0;
        self.for_each_slice(out.len(), |slice| {
            out[filled..filled + slice.len()].copy_from_slice(slice);
            filled += slice.len();
        });
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if N > self.left() {
            return Err(format!("it ends inside a field at byte {}", self.at));
        }
        let mut out = [0; N];
        self.copy_to(&mut out)?;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }

    fn usize(&mut self) -> Result<usize, String> {
        let at = self.at;
        let value = self.u64()?;
        usize::try_from(value).map_err(|_| format!("{value} at byte {at} is too large here"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::MachineHasher;
    use keyledger_core::{KeyId, MachineId};

    fn filter_of(pairs: u64) -> (ActivatedFilter, MachineHasher) {
        let hasher = MachineHasher([3; 16]);
        let mut filter = ActivatedFilter::new(64);
        for i in 0..pairs {
            filter.insert(hasher.pair(KeyId(i % 7), &MachineId::new(format!("m{i}")).unwrap()));
        }
        (filter, hasher)
    }

    #[test]
    fn a_saved_filter_decodes_to_the_same_answers_and_head() {
        let (filter, hasher) = filter_of(300);
        assert_eq!(filter.parts(), 3, "64 + 128 + 256 pairs");
        let at = Head {
            seq: 41,
            hash: [9; 32],
        };
        let (back, bound) = decode(&[encode(&filter, at, &hasher)]).unwrap();
        assert_eq!(bound.head, at);
        assert_eq!(bound.key_check, hasher.key_check());
        assert_ne!(bound.key_check, MachineHasher([4; 16]).key_check());
        assert_eq!((back.parts(), back.len()), (3, 300));
        for i in 0..2_000u64 {
            let pair = hasher.pair(KeyId(i % 7), &MachineId::new(format!("m{i}")).unwrap());
            assert_eq!(back.may_contain(pair), filter.may_contain(pair), "pair {i}");
        }
        assert_eq!(back.bytes(), filter.bytes());
    }

    /// The store keeps a filter in chunks (16 MiB): read across any split, it is the same.
    #[test]
    fn a_saved_filter_reads_the_same_across_any_chunks() {
        let (filter, hasher) = filter_of(300);
        let at = Head {
            seq: 3,
            hash: [2; 32],
        };
        let bytes = encode(&filter, at, &hasher);
        let whole = decode(&[&bytes]).unwrap();
        for size in [1, 7, 32, 33, 100, bytes.len() - 1] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            let (back, bound) = decode(&chunks).unwrap();
            assert_eq!(bound, whole.1, "chunks of {size}");
            assert_eq!(back.raw_parts(), whole.0.raw_parts(), "chunks of {size}");
        }
        let mut with_empty: Vec<&[u8]> = vec![&[], &bytes[..50], &[], &bytes[50..]];
        assert!(decode(&with_empty).is_ok());
        with_empty.pop();
        assert!(decode(&with_empty).is_err());
    }

    #[test]
    fn every_damaged_or_cut_byte_is_refused_with_a_reason() {
        let (filter, hasher) = filter_of(100);
        let at = Head {
            seq: 7,
            hash: [1; 32],
        };
        let bytes = encode(&filter, at, &hasher);
        for at in (0..bytes.len()).step_by(13) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(decode(&[&bad]).is_err(), "a flipped byte {at} was accepted");
        }
        for len in [0, 5, 31, 32, 40, bytes.len() - 1] {
            let err = decode(&[&bytes[..len]]).expect_err("a cut filter was accepted");
            assert!(!err.is_empty());
        }
    }
}
