//! Which machines are active on which key, as far as the decision at hand needs to know.
//!
//! The decision state does not keep every machine ever activated (that grew with history,
//! about 100 bytes a machine). The writer keeps those facts on disk (the machine index beside
//! the log) and, before a command is decided, looks up the ones it needs and hands them in
//! here ([`MachineFacts::looked_up`]); `decide` reads them through
//! [`crate::State::machine_active`]. What batches decided ahead of the disk activated is kept
//! here too ([`MachineFacts::recent`]) until their commit makes the disk say so, so the next
//! batch sees it exactly as before; once durable they move to a bounded cache of active pairs
//! ([`MachineFacts::cache`]), with those the writer found on disk, so that machines activated
//! again soon after cost no lookup. Activation is for good (no event takes a machine off a
//! key), so a cached "active" never goes stale. A fact that was neither looked up, recent nor
//! cached is a bug in the writer, which an assertion catches: never a silent "new machine".

use crate::ids::{KeyId, MachineId};
use crate::state::HashMap;

/// The machine facts of a decision state. Two are equal when they keep the same facts in the
/// same mode (the generation counter and the facts looked up for one command do not count).
#[derive(Clone, Debug)]
pub struct MachineFacts {
    /// Every activation folded is kept, and an unknown pair is inactive: the whole truth in
    /// memory, for a state folded from a small log (tests, tools, the reference model).
    /// The writer's state is [`MachineFacts::on_disk`].
    keep_all: bool,
    /// Pairs activated by batches not yet known durable, with the generation (batch) that
    /// activated them.
    recent: Pairs<u64>,
    /// `recent`'s pairs by the batch that activated them, oldest first: a batch made durable
    /// moves its own pairs to the cache, without a walk over every key's.
    recent_batches: std::collections::VecDeque<(u64, Vec<(KeyId, MachineId)>)>,
    /// Every pair folded, all in memory (`keep_all`): no generation to keep, so 8 bytes a
    /// pair fewer than `recent`.
    all: Pairs<()>,
    /// Pairs looked up for the command being decided, and whether each is active.
    looked_up: Pairs<bool>,
    /// Durable active pairs seen lately (on disk only).
    cache: ActiveCache,
    /// The batch being decided (0 while the state is folded from the log: nothing is kept).
    generation: u64,
}

impl PartialEq for MachineFacts {
    /// The same mode and the same recent pairs (whatever batch they came from).
    fn eq(&self, other: &MachineFacts) -> bool {
        self.keep_all == other.keep_all
            && self.recent.same_pairs(&other.recent)
            && self.all.same_pairs(&other.all)
    }
}

impl Eq for MachineFacts {}

impl Default for MachineFacts {
    /// All in memory (see `keep_all`).
    fn default() -> MachineFacts {
        MachineFacts {
            keep_all: true,
            recent: Pairs::default(),
            recent_batches: Default::default(),
            all: Pairs::default(),
            looked_up: Pairs::default(),
            cache: ActiveCache::new(0),
            generation: 0,
        }
    }
}

impl MachineFacts {
    /// Facts the writer looks up on disk: those of batches not yet durable are kept, and up
    /// to about `cache_pairs` durable active pairs seen lately.
    pub fn on_disk(cache_pairs: usize) -> MachineFacts {
        MachineFacts {
            keep_all: false,
            cache: ActiveCache::new(cache_pairs),
            ..MachineFacts::default()
        }
    }

    /// Whether `machine` is active on `key`. Panics, on disk, when the fact is unknown: the
    /// writer looks up every pair a command names before deciding it.
    pub fn active(&self, key: KeyId, machine: &MachineId) -> bool {
        if self.holds(key, machine) {
            return true;
        }
        match self.looked_up.get(key, machine) {
            Some(active) => *active,
            None if self.keep_all => false,
            None => panic!(
                "machine {machine} on key {} was not looked up before deciding",
                key.0
            ),
        }
    }

    /// Whether the fact for the pair must be looked up (on disk, neither recent nor known).
    pub fn unknown(&self, key: KeyId, machine: &MachineId) -> bool {
        !self.keep_all && !self.holds(key, machine) && self.looked_up.get(key, machine).is_none()
    }

    /// Settles an unknown pair from the cache of durable active pairs, if it holds it
    /// (answers whether it did). The fact is then the command's own: a cache that turns over
    /// while the command's other machines are looked up cannot lose it.
    pub fn from_cache(&mut self, key: KeyId, machine: &MachineId) -> bool {
        if !self.cache.contains(key, machine) {
            return false;
        }
        self.cache.insert(key, machine.clone());
        self.looked_up.insert(key, machine.clone(), true);
        true
    }

    /// Hands in a fact looked up on disk for the command about to be decided (an active
    /// one is durable, and is cached).
    pub fn looked_up(&mut self, key: KeyId, machine: MachineId, active: bool) {
        if active {
            self.cache.insert(key, machine.clone());
        }
        self.looked_up.insert(key, machine, active);
    }

    /// Forgets the looked-up facts (after each command: the disk may change under them).
    pub fn clear_looked_up(&mut self) {
        self.looked_up.clear();
    }

    /// Notes machines a folded event activated (kept only while deciding batches).
    pub(crate) fn activated(&mut self, key: KeyId, machines: &[MachineId]) {
        if !self.keep_all && self.generation == 0 {
            return;
        }
        for machine in machines {
            match self.keep_all {
                true => self.all.insert(key, machine.clone(), ()),
                false => {
                    self.recent.insert(key, machine.clone(), self.generation);
                    match self.recent_batches.back_mut() {
                        Some((g, pairs)) if *g == self.generation => {
                            pairs.push((key, machine.clone()))
                        }
                        _ => self
                            .recent_batches
                            .push_back((self.generation, vec![(key, machine.clone())])),
                    }
                }
            }
        }
    }

    /// Starts deciding batch `generation` (≥ 1, increasing): what it activates is kept.
    pub fn begin(&mut self, generation: u64) {
        assert!(generation > self.generation, "generations increase");
        self.generation = generation;
    }

    /// Batches up to `generation` are durable: the disk answers for their machines now.
    pub fn durable_through(&mut self, generation: u64) {
        if self.keep_all {
            return;
        }
        while let Some((g, _)) = self.recent_batches.front() {
            if *g > generation {
                break;
            }
            let (_, pairs) = self.recent_batches.pop_front().expect("a front batch");
            for (key, machine) in pairs {
                if self.recent.remove(key, &machine).is_some() {
                    self.cache.insert(key, machine);
                }
            }
        }
    }

    /// Whether `machine` is active on `key` by what is kept here (all in memory: the truth;
    /// on disk: only batches not yet durable).
    pub fn kept_active(&self, key: KeyId, machine: &MachineId) -> bool {
        self.holds(key, machine) || self.cache.contains(key, machine)
    }

    /// Whether the pair is kept active: folded all in memory, or by a batch not yet durable.
    fn holds(&self, key: KeyId, machine: &MachineId) -> bool {
        self.all.get(key, machine).is_some() || self.recent.get(key, machine).is_some()
    }

    /// How many machines are kept active on `key` (all in memory: the key's activated
    /// machines, counted independently of its `used` count).
    pub fn kept_on(&self, key: KeyId) -> usize {
        self.all.0.get(&key).map_or(0, HashMap::len)
            + self.recent.0.get(&key).map_or(0, HashMap::len)
    }

    /// Pairs kept for batches not yet durable (a gauge: it stays at a few batches' worth).
    pub fn recent_len(&self) -> usize {
        self.recent.len()
    }

    /// Durable active pairs cached (at most the capacity given to [`MachineFacts::on_disk`]).
    pub fn cached_len(&self) -> usize {
        self.cache.len()
    }
}

/// Machines by key (looked up without building a pair: no allocation per probe).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pairs<V>(HashMap<KeyId, HashMap<MachineId, V>>);

impl<V> Default for Pairs<V> {
    fn default() -> Pairs<V> {
        Pairs(HashMap::default())
    }
}

impl<V> Pairs<V> {
    fn get(&self, key: KeyId, machine: &MachineId) -> Option<&V> {
        self.0.get(&key)?.get(machine)
    }

    fn insert(&mut self, key: KeyId, machine: MachineId, value: V) {
        self.0.entry(key).or_default().insert(machine, value);
    }

    fn remove(&mut self, key: KeyId, machine: &MachineId) -> Option<V> {
        let machines = self.0.get_mut(&key)?;
        let value = machines.remove(machine);
        if machines.is_empty() {
            self.0.remove(&key);
        }
        value
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn len(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }

    /// The same pairs, whatever their values.
    fn same_pairs<W>(&self, other: &Pairs<W>) -> bool {
        self.len() == other.len()
            && self.0.iter().all(|(key, machines)| {
                machines
                    .keys()
                    .all(|machine| other.get(*key, machine).is_some())
            })
    }
}

/// A bounded set of durable active pairs: two generations, the newer taking inserts; when it
/// holds half the capacity it becomes the older and the older is dropped. A pair inserted
/// again while in the older one moves to the newer, so what is used stays. At most
/// `capacity` pairs.
#[derive(Clone, Debug, Default)]
struct ActiveCache {
    newer: Pairs<()>,
    older: Pairs<()>,
    newer_len: usize,
    half: usize,
}

impl ActiveCache {
    fn new(capacity: usize) -> ActiveCache {
        ActiveCache {
            half: capacity / 2,
            ..ActiveCache::default()
        }
    }

    fn contains(&self, key: KeyId, machine: &MachineId) -> bool {
        self.newer.get(key, machine).is_some() || self.older.get(key, machine).is_some()
    }

    fn insert(&mut self, key: KeyId, machine: MachineId) {
        if self.half == 0 || self.newer.get(key, &machine).is_some() {
            return;
        }
        if self.newer_len >= self.half {
            self.older = std::mem::take(&mut self.newer);
            self.newer_len = 0;
        }
        self.newer.insert(key, machine, ());
        self.newer_len += 1;
    }

    fn len(&self) -> usize {
        self.newer_len + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(i: usize) -> (KeyId, MachineId) {
        (KeyId(1), MachineId::new(format!("m{i}")).unwrap())
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_keeps_the_newest() {
        let mut cache = ActiveCache::new(100);
        for i in 0..1000 {
            let (key, machine) = pair(i);
            cache.insert(key, machine);
            assert!(cache.len() <= 100);
        }
        assert!(cache.contains(KeyId(1), &pair(999).1) && !cache.contains(KeyId(1), &pair(0).1));
        assert!(!ActiveCache::new(0).contains(KeyId(1), &pair(1).1));
    }

    #[test]
    fn durable_pairs_move_from_recent_to_the_cache() {
        let mut facts = MachineFacts::on_disk(10);
        facts.begin(1);
        facts.activated(KeyId(1), &[pair(1).1]);
        facts.durable_through(1);
        assert_eq!(facts.recent_len(), 0);
        assert!(facts.kept_active(KeyId(1), &pair(1).1));
        assert!(
            facts.unknown(KeyId(1), &pair(1).1),
            "the cache is asked by the writer"
        );
        assert!(facts.from_cache(KeyId(1), &pair(1).1));
        assert!(facts.active(KeyId(1), &pair(1).1), "from the cache");
        assert!(!facts.from_cache(KeyId(1), &pair(2).1));
    }
}
