//! The writer's filter of every (key, machine) pair ever activated: "surely new" at no I/O
//! for almost every activation (see [`crate::prefetch`]).
//!
//! A split-block Bloom filter (`sbbf-rs-safe`: one cache line a lookup) at 10 bits a pair,
//! about 1% false positives; a false positive costs one lookup in the pair index, never a
//! wrong answer. It is derived data: a writer saves it in the store now and then and when it
//! stops ([`crate::saved_filter`], bound to a durable head), and at open reads it back and
//! adds the pairs the log has after that head; without a usable saved filter it is built
//! from the pair index (redb: one pass over the runs, sized from their count) or the log.
//!
//! It must not stop taking pairs, so when its part is full it adds one twice the size (a
//! scalable Bloom filter). But each full part adds its own 1% of false positives, and a
//! growing ledger would pile up parts (eight at 154 M pairs: 8% of activations looked up).
//! So when a second part appears, the writer has one part for its pairs and a quarter more
//! built in the background from the pair index ([`Rebuild`]), and swaps it in with the pairs
//! activated meanwhile: at most two or three parts at a time, 1.4 to 1.8 bytes a pair.

use std::sync::mpsc;

use keyledger_core::EventBody;
use sbbf_rs_safe::Filter;

use crate::error::{Error, Result};
use crate::machines::{MachineHasher, PairRow};
use crate::pair_filter::BITS_PER_PAIR;
use crate::Store;

/// The pairs the first part holds by default ([`crate::Limits::filter_first_pairs`]).
pub const FIRST_PART: usize = 1 << 20;

/// Every (key, machine) pair ever activated, as a filter over the pairs' rows
/// ([`MachineHasher::pair`]: keyed by the ledger's secret, so a client cannot choose names
/// that are false positives; each would cost a lookup, never a wrong answer).
#[derive(Debug)]
pub struct ActivatedFilter {
    /// Each part with its capacity and the pairs put in it.
    parts: Vec<(Filter, usize, usize)>,
    /// The capacity of a first part.
    first: usize,
    /// This filter's identity in the process (a rebuilt one swapped in is another): a save
    /// taken a piece at a time reads one filter only.
    id: u64,
}

/// Hands out [`ActivatedFilter`] identities.
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Default for ActivatedFilter {
    fn default() -> ActivatedFilter {
        ActivatedFilter::new(FIRST_PART)
    }
}

impl ActivatedFilter {
    /// An empty filter whose first part will hold `first` pairs.
    pub fn new(first: usize) -> ActivatedFilter {
        ActivatedFilter {
            parts: Vec::new(),
            first: first.max(1),
            id: next_id(),
        }
    }

    /// A filter whose one part holds `pairs` and an eighth more, at least `first` (a start
    /// that knows how many pairs the index holds: no part sized by doubling).
    pub fn with_capacity(pairs: u64, first: usize) -> ActivatedFilter {
        let capacity = usize::try_from(pairs.saturating_add(pairs / 8))
            .unwrap_or(usize::MAX)
            .max(first.max(1));
        let part = (Filter::new(BITS_PER_PAIR, capacity), capacity, 0);
        ActivatedFilter {
            parts: vec![part],
            first,
            id: next_id(),
        }
    }

    pub fn insert(&mut self, pair: PairRow) {
        let full = self.parts.last().is_none_or(|(_, cap, len)| len >= cap);
        if full {
            let capacity = self.parts.last().map_or(self.first, |(_, cap, _)| cap * 2);
            self.parts
                .push((Filter::new(BITS_PER_PAIR, capacity), capacity, 0));
        }
        let (part, _, len) = self.parts.last_mut().expect("a part was just made");
        part.insert_hash(pair.0);
        *len += 1;
    }

    /// Whether the pair may have been activated (false: it surely was not).
    pub fn may_contain(&self, pair: PairRow) -> bool {
        self.parts
            .iter()
            .any(|(part, _, _)| part.contains_hash(pair.0))
    }

    /// Bytes the filter's bits take.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|(p, _, _)| p.as_bytes().len()).sum()
    }

    /// The parts it has (each adds its share of false positives).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Pairs put in (a pair put in twice counted twice).
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|(_, _, len)| *len as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each part's bits, capacity and pairs put in (see [`crate::saved_filter`]).
    pub(crate) fn raw_parts(&self) -> Vec<(&[u8], usize, usize)> {
        let raw = self.parts.iter();
        raw.map(|(part, cap, len)| (part.as_bytes(), *cap, *len))
            .collect()
    }

    /// Part `part`'s bits and capacity, if it has that part.
    pub(crate) fn part_bits(&self, part: usize) -> Option<(&[u8], usize)> {
        let (bits, capacity, _) = self.parts.get(part)?;
        Some((bits.as_bytes(), *capacity))
    }

    /// This filter's identity in the process (see the field).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The pairs a first part holds.
    pub(crate) fn first_part_pairs(&self) -> usize {
        self.first
    }

    /// An empty part of `capacity` pairs whose bits take exactly `bytes`, to be filled with
    /// saved bits; `None` when a part of that capacity has another size (checked before
    /// anything is allocated: the sizes come from a file).
    pub(crate) fn part_of_size(capacity: usize, bytes: usize) -> Option<Filter> {
        // `sbbf-rs-safe`'s sizing: bits a pair times pairs, in whole 32-byte blocks, one at least.
        let raw = capacity.checked_mul(BITS_PER_PAIR)? / 8;
        let blocks = raw.div_ceil(32).max(1);
        (blocks.checked_mul(32)? == bytes).then(|| Filter::new(BITS_PER_PAIR, capacity))
    }

    /// A filter of these parts (each: bits, capacity, pairs put in).
    pub(crate) fn from_parts(parts: Vec<(Filter, usize, usize)>, first: usize) -> ActivatedFilter {
        ActivatedFilter {
            parts,
            first: first.max(1),
            id: next_id(),
        }
    }

    /// Notes what an event activated.
    pub fn note(&mut self, hasher: &MachineHasher, body: &EventBody) {
        if let EventBody::MachinesActivated {
            key_id, machines, ..
        } = body
        {
            for machine in machines {
                self.insert(hasher.pair(*key_id, machine));
            }
        }
    }
}

/// A one-part filter being built in the background from the pair index, and the pairs the
/// writer put in its own filter since it began (which the index may not show yet).
/// Dropped before it is done, it waits for the build (the thread reads the store, which a
/// reopen of the file must find closed).
#[derive(Debug)]
pub struct Rebuild {
    done: mpsc::Receiver<Result<ActivatedFilter>>,
    since: Vec<PairRow>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Rebuild {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Rebuild {
    /// Starts building a filter of one part for `pairs`, from every pair `store`'s index
    /// holds; `undurable` are the pairs of batches sealed but not yet durable (the index
    /// shows them only once they are). `None`: the store keeps no pair index (PostgreSQL),
    /// or no thread could be started; the filter keeps its parts.
    pub fn start(
        store: &Store,
        pairs: u64,
        first: usize,
        undurable: impl Iterator<Item = PairRow>,
    ) -> Option<Rebuild> {
        store.pair_count().ok()??;
        let (tell, done) = mpsc::sync_channel(1);
        let store = store.clone();
        let thread = std::thread::Builder::new().name("keyledger-filter".into());
        let spawned = thread.spawn(move || {
            let mut filter = ActivatedFilter::with_capacity(pairs, first);
            let built = match store.for_each_pair(&mut |pair| filter.insert(pair)) {
                Ok(true) => Ok(filter),
                Ok(false) => Err(Error::Storage("the store has no pair index".into())),
                Err(err) => Err(err),
            };
            let _ = tell.send(built);
        });
        Some(Rebuild {
            done,
            since: undurable.collect(),
            thread: Some(spawned.ok()?),
        })
    }

    /// Notes a pair the writer put in its own filter meanwhile.
    pub fn note(&mut self, pair: PairRow) {
        self.since.push(pair);
    }

    /// The built filter with every pair noted since put in, once the build is done
    /// (`Err(self)`: not yet). A build that failed answers `Ok(None)`.
    pub fn finished(mut self) -> std::result::Result<Option<ActivatedFilter>, Rebuild> {
        match self.done.try_recv() {
            Ok(Ok(mut filter)) => {
                std::mem::take(&mut self.since)
                    .into_iter()
                    .for_each(|pair| filter.insert(pair));
                Ok(Some(filter))
            }
            Ok(Err(_)) | Err(mpsc::TryRecvError::Disconnected) => Ok(None),
            Err(mpsc::TryRecvError::Empty) => Err(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyledger_core::{KeyId, MachineId};

    #[test]
    fn the_filter_has_no_false_negatives_and_grows_by_parts() {
        let hasher = MachineHasher([7; 16]);
        let mut filter = ActivatedFilter::default();
        let names: Vec<MachineId> = (0..(FIRST_PART + 10))
            .map(|i| MachineId::new(format!("m{i}")).unwrap())
            .collect();
        for name in &names {
            filter.insert(hasher.pair(KeyId(1), name));
        }
        assert_eq!(filter.parts(), 2);
        assert_eq!(filter.len(), FIRST_PART as u64 + 10);
        assert!(names
            .iter()
            .all(|n| filter.may_contain(hasher.pair(KeyId(1), n))));
        let strangers = (0..10_000)
            .filter(|i| {
                let name = MachineId::new(format!("m{i}")).unwrap();
                filter.may_contain(hasher.pair(KeyId(2), &name))
            })
            .count();
        assert!(
            strangers < 400,
            "about 1% of another key's names, for each of two parts: {strangers}"
        );
    }
}
