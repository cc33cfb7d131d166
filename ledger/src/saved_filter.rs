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
use crate::pair_filter::PIECE_BYTES;
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
/// the key of `hasher`, which hashed its pairs: the bytes of a [`SaveCursor`] taken at once.
pub fn encode(filter: &ActivatedFilter, at: Head, hasher: &MachineHasher) -> Vec<u8> {
    let mut cursor = SaveCursor::new(filter, at, hasher);
    let mut out = Vec::new();
    while let Some(piece) = cursor.next_piece(filter, usize::MAX) {
        out.extend_from_slice(&piece.expect("the filter did not change meanwhile"));
    }
    out
}

/// A save's bytes, produced a piece at a time from the filter as it is when each piece is
/// taken, so that no copy of the whole filter is ever held. A Bloom filter's bits are only
/// ever set, so every piece holds at least the bits the filter had when the save began: the
/// whole is bound to the head durable then. Only the parts the filter had then are saved
/// (pairs put in later are past that head); a filter whose parts were replaced meanwhile (a
/// rebuild swapped in) ends the save.
#[derive(Debug)]
pub struct SaveCursor {
    /// The filter the save reads ([`ActivatedFilter`]'s identity).
    filter: u64,
    segments: Vec<Segment>,
    segment: usize,
    offset: usize,
    checksum: blake3::Hasher,
    done: bool,
}

#[derive(Debug)]
enum Segment {
    Bytes(Vec<u8>),
    /// The bits of part `part`, whose capacity and size are as when the save began.
    Bits {
        part: usize,
        capacity: usize,
        len: usize,
    },
}

/// The filter's parts are not those a save began with.
#[derive(Debug, PartialEq, Eq)]
pub struct Replaced;

impl SaveCursor {
    pub fn new(filter: &ActivatedFilter, at: Head, hasher: &MachineHasher) -> SaveCursor {
        let parts = filter.raw_parts();
        let mut head = Vec::with_capacity(128);
        head.extend_from_slice(MAGIC);
        head.push(SAVED_FILTER_VERSION);
        head.extend_from_slice(&at.seq.to_le_bytes());
        head.extend_from_slice(&at.hash);
        head.extend_from_slice(&hasher.key_check());
        head.extend_from_slice(&(filter.first_part_pairs() as u64).to_le_bytes());
        head.extend_from_slice(&(parts.len() as u32).to_le_bytes());
        let mut segments = Vec::with_capacity(2 * parts.len() + 1);
        for (part, (bits, capacity, pairs)) in parts.into_iter().enumerate() {
            head.extend_from_slice(&(capacity as u64).to_le_bytes());
            head.extend_from_slice(&(pairs as u64).to_le_bytes());
            head.extend_from_slice(&(bits.len() as u64).to_le_bytes());
            segments.push(Segment::Bytes(std::mem::take(&mut head)));
            let len = bits.len();
            segments.push(Segment::Bits {
                part,
                capacity,
                len,
            });
        }
        segments.push(Segment::Bytes(head));
        SaveCursor {
            filter: filter.id(),
            segments,
            segment: 0,
            offset: 0,
            checksum: blake3::Hasher::new(),
            done: false,
        }
    }

    /// The next at most `max` bytes (the last piece also carries the checksum), read from
    /// `filter` now; `None` once all were given.
    pub fn next_piece(
        &mut self,
        filter: &ActivatedFilter,
        max: usize,
    ) -> Option<Result<Vec<u8>, Replaced>> {
        if self.done {
            return None;
        }
        if filter.id() != self.filter {
            return Some(Err(Replaced));
        }
        let mut piece = Vec::new();
        while piece.len() < max && self.segment < self.segments.len() {
            let bytes = match &self.segments[self.segment] {
                Segment::Bytes(bytes) => &bytes[..],
                Segment::Bits {
                    part,
                    capacity,
                    len,
                } => match filter.part_bits(*part) {
                    Some((bits, cap)) if cap == *capacity && bits.len() == *len => bits,
                    _ => return Some(Err(Replaced)),
                },
            };
            let take = (max - piece.len()).min(bytes.len() - self.offset);
            piece.extend_from_slice(&bytes[self.offset..self.offset + take]);
            self.offset += take;
            if self.offset == bytes.len() {
                (self.segment, self.offset) = (self.segment + 1, 0);
            }
        }
        self.checksum.update(&piece);
        if self.segment == self.segments.len() {
            piece.extend_from_slice(self.checksum.finalize().as_bytes());
            self.done = true;
        }
        Some(Ok(piece))
    }
}

/// A save under way beside the writer: the writer hands it a piece between two batches
/// ([`Saving::step`]), and a thread of its own writes each to the store as a chunk, then
/// names the save whole. At most two pieces wait for the thread; the writer never waits for
/// it. Dropped, it waits for the thread (a reopen of the file must find it closed); a save
/// given up leaves the one before it, which is still good: the next start reads more log.
#[derive(Debug)]
pub struct Saving {
    cursor: SaveCursor,
    pending: Option<Message>,
    pieces: u32,
    /// Every piece was given and the thread told to name the save whole.
    given: bool,
    tell: Option<std::sync::mpsc::SyncSender<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
enum Message {
    Piece(Vec<u8>),
    /// All `n` pieces were given: name the save whole.
    Whole(u32),
}

/// How a save stands after a [`Saving::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Going,
    /// Every piece given, and the save named whole (or about to be, by the thread).
    Done,
    /// The filter's parts were replaced, or the thread stopped (a store error).
    GivenUp,
}

impl Drop for Saving {
    fn drop(&mut self) {
        drop(self.tell.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Saving {
    /// Starts the thread of a save whose bytes `cursor` gives (`None`: no thread could be
    /// started; the filter is saved when the writer stops).
    pub fn start(store: &crate::Store, cursor: SaveCursor) -> Option<Saving> {
        let (tell, hear) = std::sync::mpsc::sync_channel(2);
        let store = store.clone();
        let thread = std::thread::Builder::new().name("keyledger-filter-save".into());
        let thread = thread.spawn(move || write_pieces(&store, &hear)).ok()?;
        Some(Saving {
            cursor,
            pending: None,
            pieces: 0,
            given: false,
            tell: Some(tell),
            thread: Some(thread),
        })
    }

    /// Whether its thread is done (the save named whole, or given up).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Hands the thread the next piece, read from `filter` now, if it has room (and, after
    /// the last piece, at once the word that the save is whole).
    pub fn step(&mut self, filter: &ActivatedFilter) -> Step {
        for _ in 0..2 {
            if self.given {
                return Step::Done;
            }
            let message = match self.pending.take() {
                Some(message) => message,
                None if self.cursor.done => Message::Whole(self.pieces),
                None => match self.cursor.next_piece(filter, PIECE_BYTES) {
                    Some(Ok(piece)) => {
                        self.pieces += 1;
                        Message::Piece(piece)
                    }
                    Some(Err(Replaced)) => return Step::GivenUp,
                    None => Message::Whole(self.pieces),
                },
            };
            let whole = matches!(message, Message::Whole(_));
            let Some(tell) = &self.tell else {
                return Step::GivenUp;
            };
            match tell.try_send(message) {
                Ok(()) => self.given = whole,
                Err(std::sync::mpsc::TrySendError::Full(message)) => {
                    self.pending = Some(message);
                    return Step::Going;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Step::GivenUp,
            }
            if !self.cursor.done {
                return Step::Going;
            }
        }
        if self.given {
            Step::Done
        } else {
            Step::Going
        }
    }
}

/// The thread of a [`Saving`]: each piece a chunk of a new generation, then the generation
/// named whole. A store error ends it (the writer then sees the save given up).
fn write_pieces(store: &crate::Store, hear: &std::sync::mpsc::Receiver<Message>) {
    let Ok(generation) = store.saved_filter_generation().map(|g| g + 1) else {
        return;
    };
    let mut index = 0;
    while let Ok(message) = hear.recv() {
        let written = match message {
            Message::Piece(bytes) => store.put_saved_filter_chunk(generation, index, &bytes),
            Message::Whole(chunks) => {
                let _ = store.finish_saved_filter(generation, chunks);
                return;
            }
        };
        if written.is_err() {
            return;
        }
        index += 1;
    }
}

/// Where a decode reads a saved filter's chunks, in order (`Ok(None)`: past the last).
pub type ChunkSource<'a> = dyn FnMut() -> Result<Option<Vec<u8>>, String> + 'a;

/// The filter and what it is bound to, from its bytes held whole (tests, goldens).
pub fn decode<C: AsRef<[u8]>>(chunks: &[C]) -> Result<(ActivatedFilter, Bound), String> {
    let bound = chunks.iter().map(|c| c.as_ref().len()).sum();
    let mut chunks = chunks.iter();
    decode_from(
        &mut || Ok(chunks.next().map(|c| c.as_ref().to_vec())),
        bound,
    )
}

/// The filter and what it is bound to, read a chunk at a time from `next` as the store keeps
/// it (only one chunk is held besides the filter; the bits are copied once, into it). The
/// chunks hold at most `bound` bytes: no part may claim more, so nothing a damaged file says
/// allocates past that. The error says what is wrong.
pub fn decode_from(
    next: &mut ChunkSource<'_>,
    bound: usize,
) -> Result<(ActivatedFilter, Bound), String> {
    let mut r = Reader {
        next,
        chunk: Vec::new(),
        within: 0,
        at: 0,
        bound,
        checksum: blake3::Hasher::new(),
    };
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
        if len > r.bound.saturating_sub(r.at) {
            return Err(format!("part {part}: {len} bytes, past the end"));
        }
        let mut bits = ActivatedFilter::part_of_size(capacity, len)
            .ok_or_else(|| format!("part {part}: {len} bytes do not fit {capacity} pairs"))?;
        r.fill(bits.as_bytes_mut(), true)?;
        parts.push((bits, capacity, pairs));
    }
    let computed = *r.checksum.finalize().as_bytes();
    let mut checksum = [0; CHECKSUM_BYTES];
    r.fill(&mut checksum, false)?;
    if computed != checksum {
        return Err("its checksum does not match its bytes".into());
    }
    if !r.at_end()? {
        return Err(format!("bytes after the checksum at byte {}", r.at));
    }
    let head = Head { seq, hash };
    Ok((
        ActivatedFilter::from_parts(parts, first),
        Bound { head, key_check },
    ))
}

/// Reads a saved filter's fields in order across its chunks, hashing what it reads; every
/// read says where it ran out.
struct Reader<'s, 'a> {
    next: &'s mut ChunkSource<'a>,
    chunk: Vec<u8>,
    within: usize,
    at: usize,
    bound: usize,
    checksum: blake3::Hasher,
}

impl Reader<'_, '_> {
    /// Fills `out` with the next bytes (into the checksum when `hash`).
    fn fill(&mut self, out: &mut [u8], hash: bool) -> Result<(), String> {
        let mut filled = 0;
        while filled < out.len() {
            if self.at_end()? {
                return Err(format!("it ends inside a field at byte {}", self.at));
            }
            let take = (out.len() - filled).min(self.chunk.len() - self.within);
            let read = &self.chunk[self.within..self.within + take];
            out[filled..filled + take].copy_from_slice(read);
            if hash {
                self.checksum.update(read);
            }
            (filled, self.within, self.at) = (filled + take, self.within + take, self.at + take);
        }
        Ok(())
    }

    /// Whether every chunk has been read (fetching the next when this one is).
    fn at_end(&mut self) -> Result<bool, String> {
        while self.within == self.chunk.len() {
            match (self.next)()? {
                Some(chunk) => (self.chunk, self.within) = (chunk, 0),
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        self.fill(&mut out, true)?;
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

    /// A save taken a piece at a time while pairs keep coming holds every pair put in before
    /// it began (bits are only ever set), reads back whole, and stops when the filter's parts
    /// are replaced.
    #[test]
    fn a_save_taken_in_pieces_while_the_filter_grows_holds_what_it_began_with() {
        let (mut filter, hasher) = filter_of(300);
        let at = Head {
            seq: 9,
            hash: [5; 32],
        };
        let whole = encode(&filter, at, &hasher);
        let mut cursor = SaveCursor::new(&filter, at, &hasher);
        let mut pieces = Vec::new();
        let mut later = 0u64;
        while let Some(piece) = cursor.next_piece(&filter, 40) {
            pieces.push(piece.unwrap());
            for _ in 0..20 {
                later += 1;
                filter.insert(
                    hasher.pair(KeyId(99), &MachineId::new(format!("later{later}")).unwrap()),
                );
            }
        }
        assert!(
            filter.parts() > 3,
            "the pairs after it went into new parts too"
        );
        let (back, bound) = decode(&pieces).unwrap();
        assert_eq!(bound.head, at);
        assert_eq!(back.parts(), 3, "only the parts it began with");
        for i in 0..300u64 {
            let pair = hasher.pair(KeyId(i % 7), &MachineId::new(format!("m{i}")).unwrap());
            assert!(back.may_contain(pair), "pair {i}");
        }
        assert_eq!(pieces.concat().len(), whole.len());
        let mut cursor = SaveCursor::new(&filter, at, &hasher);
        cursor.next_piece(&filter, 40).unwrap().unwrap();
        let (rebuilt, _) = filter_of(10);
        let mut replaced = cursor.next_piece(&rebuilt, 1 << 20);
        while let Some(Ok(_)) = replaced {
            replaced = cursor.next_piece(&rebuilt, 1 << 20);
        }
        assert_eq!(replaced, Some(Err(Replaced)));
    }

    /// The store keeps a filter in chunks (1 MiB): read across any split, it is the same.
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
