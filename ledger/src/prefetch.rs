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
//! full (a scalable Bloom filter), so it needs no count up front and stays near 1.2 bytes a
//! pair at a 1% false-positive rate.

use fastbloom::BloomFilter;
use keyledger_core::command::CommandBody;
use keyledger_core::{EventBody, KeyId, MachineId, State};

use crate::error::Result;
use crate::machines::MachineHasher;
use crate::Store;

/// The false-positive rate of each filter part.
const FALSE_POSITIVES: f64 = 0.01;
/// The pairs the first part holds; each next one holds twice the last.
const FIRST_PART: usize = 1 << 20;
/// Seqs read a page while looking for a machine's activation.
const PAGE: usize = 64;

/// Every (key, machine) pair ever activated, as a filter.
#[derive(Debug)]
pub struct ActivatedFilter {
    parts: Vec<(BloomFilter, usize, usize)>,
    seed: u128,
}

impl ActivatedFilter {
    /// An empty filter hashing with `seed`: drawn at random by the writer, so a client
    /// cannot choose names that are false positives (each costs a lookup, never a wrong
    /// answer).
    pub fn new(seed: u128) -> ActivatedFilter {
        ActivatedFilter {
            parts: Vec::new(),
            seed,
        }
    }

    pub fn insert(&mut self, key: KeyId, machine: &MachineId) {
        let full = self.parts.last().is_none_or(|(_, cap, len)| len >= cap);
        if full {
            let capacity = self.parts.last().map_or(FIRST_PART, |(_, cap, _)| cap * 2);
            let part = BloomFilter::with_false_pos(FALSE_POSITIVES)
                .seed(&self.seed)
                .expected_items(capacity);
            self.parts.push((part, capacity, 0));
        }
        let hash = self.hash(key, machine);
        let (part, _, len) = self.parts.last_mut().expect("a part was just made");
        part.insert_hash(hash);
        *len += 1;
    }

    /// Whether the pair may have been activated (false: it surely was not).
    pub fn may_contain(&self, key: KeyId, machine: &MachineId) -> bool {
        let hash = self.hash(key, machine);
        self.parts
            .iter()
            .any(|(part, _, _)| part.contains_hash(hash))
    }

    /// The pair's hash, once for every part (each derives its probes from it).
    fn hash(&self, key: KeyId, machine: &MachineId) -> u64 {
        use std::hash::Hasher;
        let mut hasher =
            siphasher::sip::SipHasher13::new_with_keys(self.seed as u64, (self.seed >> 64) as u64);
        hasher.write_u64(key.0);
        hasher.write(machine.as_str().as_bytes());
        hasher.finish()
    }

    /// Bytes the filter's bits take.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|(p, _, _)| p.num_bits() / 8).sum()
    }

    /// Notes what an event activated.
    pub fn note(&mut self, body: &EventBody) {
        if let EventBody::MachinesActivated {
            key_id, machines, ..
        } = body
        {
            for machine in machines {
                self.insert(*key_id, machine);
            }
        }
    }
}

/// Hands `state` every fact `body` needs: for an activation of a known key, whether each
/// machine it names is active on that key.
pub fn look_up(
    store: &Store,
    hasher: &MachineHasher,
    filter: &ActivatedFilter,
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
        if !state.machine_facts.unknown(key, machine)
            || state.machine_facts.from_cache(key, machine)
        {
            continue;
        }
        let active = filter.may_contain(key, machine) && store.activated(hasher, key, machine)?;
        state.machine_facts.looked_up(key, machine.clone(), active);
    }
    Ok(())
}

impl Store {
    /// Whether the log holds the activation of `machine` on `key`: one exact lookup in the
    /// pair index where the store keeps one (redb), else the events naming the machine (its
    /// index's candidates), in seq order, until that activation is found. The store must be
    /// indexed (a writer's is, from its open on).
    pub fn activated(
        &self,
        hasher: &MachineHasher,
        key: KeyId,
        machine: &MachineId,
    ) -> Result<bool> {
        if let Some(active) = self.pair_active(hasher.pair(key, machine))? {
            return Ok(active);
        }
        self.activated_by_events(key, machine)
    }

    /// [`Store::activated`] from the machine index and the events it names.
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
        let mut filter = ActivatedFilter::new(7);
        let names: Vec<MachineId> = (0..(FIRST_PART + 10))
            .map(|i| MachineId::new(format!("m{i}")).unwrap())
            .collect();
        for name in &names {
            filter.insert(KeyId(1), name);
        }
        assert_eq!(filter.parts.len(), 2);
        assert!(names.iter().all(|n| filter.may_contain(KeyId(1), n)));
        let strangers = (0..10_000)
            .filter(|i| filter.may_contain(KeyId(2), &MachineId::new(format!("m{i}")).unwrap()))
            .count();
        assert!(
            strangers < 300,
            "about 1% of another key's names: {strangers}"
        );
    }
}
