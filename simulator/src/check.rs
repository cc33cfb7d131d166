//! The invariants, and what each protects (docs/testing.md):
//!
//! - **Same answers as the reference**: a batch the engine acknowledged is decided again by
//!   a reference engine that never saw a fault; every answer must be equal (a fault, a
//!   crash or a recovery changed nothing the rules decide).
//! - **First answers stand**: a resent command gets the answer it got first (`World::remember`).
//! - **No count passes its limit** (R9): every MAK's activated machines ≤ its limit + grants.
//! - **The log is what was acknowledged**: after every step the engine's head is the
//!   reference's — nothing acknowledged is missing, nothing failed was written.
//! - **The filter never rules out an active pair**: every machine active on a key by the
//!   reference passes the engine's filter of activated pairs.
//! - **After a recovery**: the chain verifies record by record; the Merkle root over the
//!   records equals the stored tree's; the read models folded afresh from the log equal
//!   the ones folded from what the engine reported committed; the decision state equals a
//!   replay of the log.

use keyledger_ledger::merkle::{self, RootAccumulator};
use keyledger_ledger::tree::LedgerTree;
use keyledger_ledger::{Answer, Result as LedgerResult, Submission};
use keyledger_projections::Projections;

use keyledger_ledger::Engine;

/// The engine's answers to acknowledged submissions equal the reference's.
pub fn same_answers(
    submissions: &[Submission],
    given: &[Vec<Answer>],
    expected: Vec<LedgerResult<Vec<Answer>>>,
) -> Result<(), String> {
    for ((submission, given), expected) in submissions.iter().zip(given).zip(expected) {
        let expected = expected.map_err(|e| format!("the reference failed a batch: {e}"))?;
        for ((command, given), expected) in submission.commands.iter().zip(given).zip(&expected) {
            if given != expected {
                return Err(format!(
                    "command {:?} ({}) was answered {given:?}; the rules say {expected:?}",
                    command.command_id,
                    command.body.type_name()
                ));
            }
        }
    }
    Ok(())
}

/// What every step must keep.
pub(crate) fn every_step(engine: &Engine, reference: &Engine) -> Result<(), String> {
    let head = engine.head();
    let reference_head = reference.head();
    if head != reference_head {
        return Err(format!(
            "the log ends at seq {} but what was acknowledged ends at seq {} (or the chains differ)",
            head.seq, reference_head.seq
        ));
    }
    for key in engine.state().keys() {
        if key.kind.is_mak() && key.used() > key.total() {
            return Err(format!(
                "key {} has {} machines activated, over its limit {} + {} granted (R9)",
                key.id.0,
                key.used(),
                key.limit,
                key.granted
            ));
        }
    }
    filter_admits_active_pairs(engine, reference)
}

/// Every (key, machine) pair active by the reference's log passes the engine's filter (a
/// filter that rules one out makes a machine activated again count twice). Only the filter
/// is asked: a lookup in the engine's store would sync its pair view as a side effect and
/// hide the bugs that leave the view stale (see docs/testing.md).
fn filter_admits_active_pairs(engine: &Engine, reference: &Engine) -> Result<(), String> {
    let keys: Vec<_> = reference.state().keys().map(|k| k.id).collect();
    for machine in crate::clients::machine_pool() {
        for &key in &keys {
            let active = reference.machine_active(key, &machine);
            let active = active.map_err(|e| format!("the reference's lookup: {e}"))?;
            if active && !engine.filter_admits(key, &machine) {
                return Err(format!(
                    "machine {} on key {} is active but the filter rules it out",
                    machine.as_str(),
                    key.0
                ));
            }
        }
    }
    Ok(())
}

/// What an engine opened on a recovered disk must hold.
pub(crate) fn after_recovery(
    engine: &Engine,
    reference: &Engine,
    live: &Projections,
) -> Result<(), String> {
    every_step(engine, reference)?;
    let store = engine.store().clone();
    let report = keyledger_ledger::verify(&store).map_err(|e| format!("verify: {e}"))?;
    let mut roots = RootAccumulator::default();
    let mut fresh = Projections::default();
    keyledger_ledger::walk(&store, 1, |record| {
        roots.push(record.bytes);
        fresh.apply(record.seq, &record.event);
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .map_err(|e| format!("walk: {e}"))?;
    let size = report.head.seq;
    let stored = merkle::root(&LedgerTree::new(&store, size), size)
        .map_err(|e| format!("the stored Merkle tree: {e:?}"))?;
    if stored != roots.root() {
        return Err(format!(
            "the stored Merkle root at size {size} is not the records' root"
        ));
    }
    if fresh != *live {
        return Err("the read models folded from the log differ from the live ones".to_owned());
    }
    let limits = *engine.limits();
    let replayed = keyledger_ledger::engine::decision_state(&store, &limits)
        .map_err(|e| format!("replay: {e}"))?;
    if &replayed != engine.state() {
        return Err("the decision state differs from a replay of the log".to_owned());
    }
    Ok(())
}
