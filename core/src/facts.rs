//! Which machines are active on which key, as far as the decision at hand needs to know.
//!
//! The decision state does not keep every machine ever activated (that grew with history,
//! about 100 bytes a machine). The writer keeps those facts on disk (the machine index beside
//! the log) and, before a command is decided, looks up the ones it needs and hands them in
//! here ([`MachineFacts::looked_up`]); `decide` reads them through
//! [`crate::State::machine_active`]. What batches decided ahead of the disk activated, and a
//! cache of durable pairs, the writer keeps itself (`keyledger_ledger`'s `pair_facts`) and
//! hands in the same way. A fact that was not looked up is a bug in the writer, which an
//! assertion catches: never a silent "new machine".

use crate::ids::{KeyId, MachineId};
use crate::maps::HashMap;

/// The machine facts of a decision state. Two are equal when they keep the same facts in the
/// same mode (the facts looked up for one command do not count).
#[derive(Clone, Debug)]
pub struct MachineFacts {
    /// Every activation folded is kept, and an unknown pair is inactive: the whole truth in
    /// memory, for a state folded from a small log (tests, tools, the reference model).
    /// The writer's state is [`MachineFacts::on_disk`].
    keep_all: bool,
    /// Every pair folded, all in memory (`keep_all`).
    all: Pairs<()>,
    /// Pairs looked up for the command being decided, and whether each is active.
    looked_up: Pairs<bool>,
}

impl PartialEq for MachineFacts {
    /// The same mode and the same pairs kept.
    fn eq(&self, other: &MachineFacts) -> bool {
        self.keep_all == other.keep_all && self.all.same_pairs(&other.all)
    }
}

impl Eq for MachineFacts {}

impl Default for MachineFacts {
    /// All in memory (see `keep_all`).
    fn default() -> MachineFacts {
        MachineFacts {
            keep_all: true,
            all: Pairs::default(),
            looked_up: Pairs::default(),
        }
    }
}

impl MachineFacts {
    /// Facts the writer looks up on disk, one command at a time: none kept.
    pub fn on_disk() -> MachineFacts {
        MachineFacts {
            keep_all: false,
            ..MachineFacts::default()
        }
    }

    /// Whether `machine` is active on `key`. Panics, on disk, when the fact is unknown: the
    /// writer looks up every pair a command names before deciding it.
    pub fn active(&self, key: KeyId, machine: &MachineId) -> bool {
        if self.all.get(key, machine).is_some() {
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

    /// Whether the fact for the pair must be looked up (on disk, and not yet for this
    /// command).
    pub fn unknown(&self, key: KeyId, machine: &MachineId) -> bool {
        !self.keep_all && self.looked_up.get(key, machine).is_none()
    }

    /// Hands in a fact for the command about to be decided.
    pub fn looked_up(&mut self, key: KeyId, machine: MachineId, active: bool) {
        self.looked_up.insert(key, machine, active);
    }

    /// Forgets the looked-up facts (after each command: the next batch may change them).
    pub fn clear_looked_up(&mut self) {
        self.looked_up.clear();
    }

    /// Notes machines a folded event activated (kept only all in memory).
    pub(crate) fn activated(&mut self, key: KeyId, machines: &[MachineId]) {
        if !self.keep_all {
            return;
        }
        for machine in machines {
            self.all.insert(key, machine.clone(), ());
        }
    }

    /// Whether `machine` is active on `key` by what is kept here (all in memory: the truth;
    /// on disk: nothing).
    pub fn kept_active(&self, key: KeyId, machine: &MachineId) -> bool {
        self.all.get(key, machine).is_some()
    }

    /// How many machines are kept active on `key` (all in memory: the key's activated
    /// machines, counted independently of its `used` count).
    pub fn kept_on(&self, key: KeyId) -> usize {
        self.all.0.get(&key).map_or(0, HashMap::len)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(i: usize) -> MachineId {
        MachineId::new(format!("m{i}")).unwrap()
    }

    #[test]
    fn on_disk_nothing_is_kept_and_only_looked_up_facts_answer() {
        let mut facts = MachineFacts::on_disk();
        facts.activated(KeyId(1), &[machine(1)]);
        assert!(!facts.kept_active(KeyId(1), &machine(1)));
        assert!(facts.unknown(KeyId(1), &machine(1)));
        facts.looked_up(KeyId(1), machine(1), true);
        assert!(facts.active(KeyId(1), &machine(1)) && !facts.unknown(KeyId(1), &machine(1)));
        facts.clear_looked_up();
        assert!(facts.unknown(KeyId(1), &machine(1)));
    }

    #[test]
    #[should_panic(expected = "was not looked up")]
    fn on_disk_a_fact_not_looked_up_is_a_bug() {
        MachineFacts::on_disk().active(KeyId(1), &machine(1));
    }

    #[test]
    fn all_in_memory_every_activation_is_kept() {
        let mut facts = MachineFacts::default();
        facts.activated(KeyId(1), &[machine(1), machine(2)]);
        assert!(facts.active(KeyId(1), &machine(2)) && !facts.active(KeyId(2), &machine(2)));
        assert_eq!(facts.kept_on(KeyId(1)), 2);
    }
}
