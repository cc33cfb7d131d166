//! The machine facts a command needs, looked up before it is decided (keyledger_core's
//! `facts`): which of the machines an activation names are active on its key.
//!
//! Most activations name a machine the key has never seen, so a filter answers first: a
//! Bloom filter over every (key, machine) pair ever activated says "surely new" for almost
//! all of them at no I/O. "Maybe" is settled from the pair index beside the log (one exact
//! entry per pair activated; redb) or from the machine index (the events that name the
//! machine, read in seq order until the key's activation is found; PostgreSQL).
//! The filter is derived data ([`crate::activated`]), never trusted for "active".

use keyledger_core::command::CommandBody;
use keyledger_core::state::HashSet;
use keyledger_core::State;

use crate::activated::ActivatedFilter;
use crate::error::Result;
use crate::machines::{MachineHasher, PairRow};
use crate::pair_facts::PairFacts;
use crate::Store;

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
