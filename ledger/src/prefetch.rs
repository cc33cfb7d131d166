//! The machine facts a command needs, looked up before it is decided (keyledger_core's
//! `facts`): which of the machines an activation names are active on its key.
//!
//! Most activations name a machine the key has never seen, so a filter answers first: a
//! Bloom filter over every (key, machine) pair ever activated says "surely new" for almost
//! all of them at no I/O. "Maybe" is settled from the pair index beside the log (one exact
//! entry per pair activated; redb) or from the machine index (the events that name the
//! machine, read in seq order until the key's activation is found; PostgreSQL).
//! The filter is derived data, rebuilt as the log is folded at start; it is never trusted
//! for "active". It grows by adding a filter twice the size of the last when the last is
//! full (a scalable Bloom filter), so it needs no count up front: 1.25 bytes a pair at about
//! 1% false positives per part, split-block (`sbbf-rs-safe`: one cache line a lookup).

use keyledger_core::command::CommandBody;
use keyledger_core::state::HashSet;
use keyledger_core::{EventBody, KeyId, MachineId, State};
use sbbf_rs_safe::Filter;

use crate::error::Result;
use crate::machines::{MachineHasher, PairRow};
use crate::pair_facts::PairFacts;
use crate::Store;

/// Bits a pair in each filter part: about a 1% false-positive rate for a split-block Bloom
/// filter (one 32-byte block a pair, so a lookup is one cache line, not one per probe).
pub(crate) const BITS_PER_PAIR: usize = 10;
/// The pairs the first part holds; each next one holds twice the last.
const FIRST_PART: usize = 1 << 20;
/// Seqs read a page while looking for a machine's activation.
const PAGE: usize = 64;

/// Every (key, machine) pair ever activated, as a filter over the pairs' rows
/// ([`MachineHasher::pair`]: keyed by the ledger's secret, so a client cannot choose names
/// that are false positives; each would cost a lookup, never a wrong answer).
#[derive(Debug, Default)]
pub struct ActivatedFilter {
    parts: Vec<(Filter, usize, usize)>,
}

impl ActivatedFilter {
    pub fn new() -> ActivatedFilter {
        ActivatedFilter::default()
    }

    /// A filter whose first part holds `pairs` and an eighth more (a start that knows how
    /// many pairs the index holds: no part sized by doubling, no bits to spare).
    pub fn with_capacity(pairs: u64) -> ActivatedFilter {
        let capacity = usize::try_from(pairs.saturating_add(pairs / 8))
            .unwrap_or(usize::MAX)
            .max(FIRST_PART);
        let part = (Filter::new(BITS_PER_PAIR, capacity), capacity, 0);
        ActivatedFilter { parts: vec![part] }
    }

    pub fn insert(&mut self, pair: PairRow) {
        let full = self.parts.last().is_none_or(|(_, cap, len)| len >= cap);
        if full {
            let capacity = self.parts.last().map_or(FIRST_PART, |(_, cap, _)| cap * 2);
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

/// What the writer knows of pairs before it asks the disk.
#[derive(Debug)]
pub struct Known<'a> {
    /// Pairs the batch being decided activated so far.
    pub batch: &'a HashSet<PairRow>,
    /// Pairs of sealed batches not yet durable, and durable ones cached (which a pair found
    /// on disk joins).
    pub before: &'a mut PairFacts,
    /// Every pair ever activated, as a filter ("surely not" or "maybe").
    pub filter: &'a ActivatedFilter,
}

/// Hands `state` every fact `body` needs: for an activation of a known key, whether each
/// machine it names is active on that key.
pub fn look_up(
    store: &Store,
    hasher: &MachineHasher,
    known: Known<'_>,
    state: &mut State,
    body: &CommandBody,
    presented: Option<&keyledger_core::Fingerprint>,
) -> Result<()> {
    let CommandBody::Activate(activate) = body else {
        return Ok(());
    };
    let Some(key) = presented
        .and_then(|f| state.key_by_fingerprint(f))
        .map(|k| k.id)
    else {
        return Ok(());
    };
    for machine in &activate.machines {
        if !state.machine_facts.unknown(key, machine) {
            continue;
        }
        let pair = hasher.pair(key, machine);
        let active = known.batch.contains(&pair) || known.before.recall(pair) || {
            let on_disk =
                known.filter.may_contain(pair) && store.activated_pair(pair, key, machine)?;
            if on_disk {
                known.before.found_on_disk(pair);
            }
            on_disk
        };
        state.machine_facts.looked_up(key, machine.clone(), active);
    }
    Ok(())
}

impl Store {
    /// Whether the log holds the activation of `machine` on `key` (`pair`, its row): one
    /// exact lookup in the pair index where the store keeps one (redb), else the events
    /// naming the machine (its index's candidates), in seq order, until that activation is
    /// found. The store must be indexed (a writer's is, from its open on).
    pub fn activated_pair(&self, pair: PairRow, key: KeyId, machine: &MachineId) -> Result<bool> {
        if let Some(active) = self.pair_active(pair)? {
            return Ok(active);
        }
        self.activated_by_events(key, machine)
    }

    /// [`Store::activated_pair`] from the machine index and the events it names.
    pub fn activated_by_events(&self, key: KeyId, machine: &MachineId) -> Result<bool> {
        let mut after = 0;
        loop {
            let (events, next) = self.indexed_machine_events(machine.as_str(), after, PAGE)?;
            let found = events.iter().any(|(_, event)| match &event.body {
                EventBody::MachinesActivated {
                    key_id, machines, ..
                } => *key_id == key && machines.contains(machine),
                _ => false,
            });
            match (found, next) {
                (true, _) => return Ok(true),
                (false, Some(last)) => after = last,
                (false, None) => return Ok(false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_has_no_false_negatives_and_grows_by_parts() {
        let hasher = MachineHasher([7; 16]);
        let mut filter = ActivatedFilter::new();
        let names: Vec<MachineId> = (0..(FIRST_PART + 10))
            .map(|i| MachineId::new(format!("m{i}")).unwrap())
            .collect();
        for name in &names {
            filter.insert(hasher.pair(KeyId(1), name));
        }
        assert_eq!(filter.parts.len(), 2);
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
