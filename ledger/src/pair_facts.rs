//! What the writer knows about (key, machine) pairs beyond the log on disk, when its machine
//! facts live there (`Limits::machine_facts_on_disk`): the pairs that batches decided ahead of
//! the disk activated, and a bounded cache of durable active pairs seen lately.
//!
//! Pairs are their rows of the pair index ([`crate::machines::MachineHasher::pair`], 128 bits
//! keyed by the ledger's secret), as the pair index itself keeps them: 16 bytes and one hash
//! a pair instead of a key and a name, and nothing to free but the table when the cache turns
//! over. Activation is for good (no event takes a machine off a key), so a cached "active"
//! never goes stale.

use std::collections::VecDeque;

use keyledger_core::state::HashSet;

use crate::machines::PairRow;

/// The pairs of the batch being decided and of the batches sealed but not yet durable, and
/// the cache of durable active ones.
#[derive(Debug, Default)]
pub struct PairFacts {
    /// Sealed batches' pairs by the batch (generation) that activated them, oldest first.
    recent: VecDeque<(u64, HashSet<PairRow>)>,
    cache: ActiveCache,
}

impl PairFacts {
    /// Facts with room for about `cache_pairs` durable active pairs.
    pub fn new(cache_pairs: usize) -> PairFacts {
        PairFacts {
            recent: VecDeque::new(),
            cache: ActiveCache::new(cache_pairs),
        }
    }

    /// Whether the pair is known active without asking the disk: a sealed batch activated
    /// it, or it is cached.
    pub fn active(&self, pair: &PairRow) -> bool {
        self.recently_sealed(pair) || self.cache.contains(pair)
    }

    fn recently_sealed(&self, pair: &PairRow) -> bool {
        self.recent.iter().any(|(_, pairs)| pairs.contains(pair))
    }

    /// [`PairFacts::active`], and a cached pair stays cached the longer for being used.
    pub fn recall(&mut self, pair: PairRow) -> bool {
        if self.recently_sealed(&pair) {
            return true;
        }
        let cached = self.cache.contains(&pair);
        if cached {
            self.cache.insert(pair);
        }
        cached
    }

    /// Notes a pair the disk said is active (it is durable).
    pub fn found_on_disk(&mut self, pair: PairRow) {
        self.cache.insert(pair);
    }

    /// Batch `generation` was sealed with these pairs activated (generations increase).
    pub fn sealed(&mut self, generation: u64, pairs: HashSet<PairRow>) {
        if let Some((last, _)) = self.recent.back() {
            assert!(generation > *last, "batches are sealed in order");
        }
        if !pairs.is_empty() {
            self.recent.push_back((generation, pairs));
        }
    }

    /// Batches up to `generation` are durable: the disk answers for their pairs now, and
    /// they are the freshest durable pairs, so they are cached.
    pub fn durable_through(&mut self, generation: u64) {
        while self.recent.front().is_some_and(|(g, _)| *g <= generation) {
            let (_, pairs) = self.recent.pop_front().expect("a front batch");
            for pair in pairs {
                self.cache.insert(pair);
            }
        }
    }

    /// Forgets every batch not known durable (their commits failed or were abandoned). The
    /// cache holds only durable pairs and stays.
    pub fn forget_undurable(&mut self) {
        self.recent.clear();
    }

    /// The pairs of sealed batches not yet durable.
    pub fn undurable(&self) -> impl Iterator<Item = PairRow> + '_ {
        self.recent
            .iter()
            .flat_map(|(_, pairs)| pairs.iter().copied())
    }

    /// Pairs of sealed batches not yet durable (a gauge: a few batches' worth).
    pub fn recent_len(&self) -> usize {
        self.recent.iter().map(|(_, pairs)| pairs.len()).sum()
    }

    /// Durable active pairs cached (at most the capacity given to [`PairFacts::new`]).
    pub fn cached_len(&self) -> usize {
        self.cache.len()
    }
}

/// A bounded set of durable active pairs: two generations, the newer taking inserts; when it
/// holds half the capacity it becomes the older and the older is dropped. A pair inserted
/// again while in the older one moves to the newer, so what is used stays. At most
/// `capacity` pairs.
#[derive(Debug, Default)]
struct ActiveCache {
    newer: HashSet<PairRow>,
    older: HashSet<PairRow>,
    half: usize,
}

impl ActiveCache {
    fn new(capacity: usize) -> ActiveCache {
        ActiveCache {
            half: capacity / 2,
            ..ActiveCache::default()
        }
    }

    fn contains(&self, pair: &PairRow) -> bool {
        self.newer.contains(pair) || self.older.contains(pair)
    }

    fn insert(&mut self, pair: PairRow) {
        if self.half == 0 || self.newer.contains(&pair) {
            return;
        }
        if self.newer.len() >= self.half {
            // Reuse the older table's allocation for the next generation.
            std::mem::swap(&mut self.older, &mut self.newer);
            self.newer.clear();
        }
        self.newer.insert(pair);
    }

    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_keeps_the_newest() {
        let mut cache = ActiveCache::new(100);
        for i in 0..1000 {
            cache.insert((i, 0));
            assert!(cache.len() <= 100);
        }
        assert!(cache.contains(&(999, 0)) && !cache.contains(&(0, 0)));
        assert!(!ActiveCache::new(0).contains(&(1, 0)));
    }

    #[test]
    fn a_sealed_batch_is_active_until_durable_then_cached() {
        let mut facts = PairFacts::new(10);
        facts.sealed(1, [(1, 1)].into_iter().collect());
        facts.sealed(2, [(2, 2)].into_iter().collect());
        assert!(facts.active(&(1, 1)) && facts.active(&(2, 2)));
        assert_eq!(facts.recent_len(), 2);
        facts.durable_through(1);
        assert_eq!((facts.recent_len(), facts.cached_len()), (1, 1));
        assert!(facts.active(&(1, 1)), "cached");
        facts.forget_undurable();
        assert!(!facts.active(&(2, 2)), "batch 2 never became durable");
        assert!(facts.active(&(1, 1)), "the cache keeps durable pairs");
    }
}
