//! Starting the writer's decision state from a snapshot instead of the log's first event.
//!
//! Folding the whole log at every start made the time to start grow with history (about
//! 2 M events/s: a decade at a million activations a day is half an hour). With machine facts
//! on disk, the decision state is small (keys, orgs, licenses, requests, KMS windows), and its
//! facts are exactly the read models' books: a [`Resume`] hands them over with the head they
//! were folded to, and the writer folds only the events after it.
//!
//! A resume point is never trusted: its seq must be in the log and its chain hash must be the
//! log's at that seq (so a snapshot of another history, or of a log since cut back and written
//! again, is refused), and the filter of activated pairs is read from the pair index, never
//! from the snapshot. A refused resume point costs a full fold, as before, and says why
//! ([`Start::Refused`]). `keyledger verify` still folds everything and compares, and `serve`
//! does the same in the background after it starts.

use std::ops::ControlFlow;
use std::sync::Arc;

use keyledger_core::state::{Books, Key, MachineFacts};
use keyledger_core::State;

use crate::activated::ActivatedFilter;
use crate::chain::{ChainHash, GENESIS};
use crate::error::Result;
use crate::machines::MachineHasher;
use crate::store::{Head, Store};
use crate::walk::walk;
use crate::Limits;

/// Books folded through `head.seq`, whose chain hash there was `head.hash`.
#[derive(Clone, Debug)]
pub struct Resume {
    pub head: Head,
    pub books: Books<Key>,
}

/// Where a writer finds its newest resume point (the binary reads the projections' newest
/// snapshot); asked at every open and every recovery.
#[derive(Clone)]
pub struct Resumer(pub Arc<FindResume>);

/// What a [`Resumer`] calls.
pub type FindResume = dyn Fn(&Store) -> Result<Option<Resume>> + Send + Sync;

impl std::fmt::Debug for Resumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resumer")
    }
}

/// How a writer's decision state was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Folded from the log's first event (no resume point, or machine facts in memory).
    Log,
    /// From a resume point at `seq`, then the log after it.
    Resumed { seq: u64 },
    /// The resume point at `seq` was refused (`why`); folded from the first event.
    Refused { seq: u64, why: String },
}

/// The chain hash the log has at `seq` (the genesis hash at 0), read from the block holding
/// it and checked as every walk checks (`None`: the log ends before `seq`).
pub fn chain_hash_at(store: &Store, seq: u64) -> Result<Option<ChainHash>> {
    if seq == 0 {
        return Ok(Some(GENESIS));
    }
    let mut found = None;
    walk(store, seq, |record| {
        if record.seq == seq {
            found = Some(record.hash);
        }
        Ok(ControlFlow::Break(()))
    })?;
    Ok(found)
}

/// Why `resume` cannot be used on `store`, if it cannot.
fn refusal(store: &Store, resume: &Resume) -> Result<Option<String>> {
    let seq = resume.head.seq;
    Ok(match chain_hash_at(store, seq)? {
        None => Some(format!("the log ends before seq {seq}")),
        Some(hash) if hash != resume.head.hash => Some(format!(
            "its chain hash at seq {seq} is not the log's (a snapshot of another history)"
        )),
        Some(_) => None,
    })
}

/// The resume point to start from, checked, and how the state will be made.
fn checked(
    store: &Store,
    limits: &Limits,
    resumer: Option<&Resumer>,
) -> Result<(Option<Resume>, Start)> {
    // All machines in memory come from the log alone: a snapshot does not hold them.
    let Some(resumer) = resumer.filter(|_| limits.machine_facts_on_disk) else {
        return Ok((None, Start::Log));
    };
    let resume = match (resumer.0)(store) {
        Ok(Some(resume)) if resume.head.seq > 0 => resume,
        Ok(_) => return Ok((None, Start::Log)),
        Err(err) => {
            let why = format!("it could not be read: {err}");
            return Ok((None, Start::Refused { seq: 0, why }));
        }
    };
    let seq = resume.head.seq;
    Ok(match refusal(store, &resume)? {
        Some(why) => (None, Start::Refused { seq, why }),
        None => (Some(resume), Start::Resumed { seq }),
    })
}

/// The machine facts a writer's state starts with (see [`Limits::machine_facts_on_disk`]).
pub(crate) fn machine_facts(limits: &Limits) -> MachineFacts {
    match limits.machine_facts_on_disk {
        true => MachineFacts::on_disk(),
        false => MachineFacts::default(),
    }
}

/// The decision state through the head: from the resume point when there is a usable one,
/// else from the first event. `note` sees every event folded.
fn fold(
    store: &Store,
    limits: &Limits,
    resume: Option<Resume>,
    mut note: impl FnMut(&keyledger_core::EventBody),
) -> Result<(State, Head)> {
    let facts = machine_facts(limits);
    let (mut state, from) = match resume {
        Some(r) => (State::from_books(r.books, facts), r.head.seq + 1),
        None => {
            let mut state = State::default();
            state.machine_facts = facts;
            (state, 1)
        }
    };
    let head = walk(store, from, |record| {
        note(&record.event.body);
        state.apply(&record.event);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((state, head))
}

/// The decision state a writer recovers to: [`fold`], without the filter (which keeps what
/// it has: it only ever answers "maybe").
pub(crate) fn recovered_state(
    store: &Store,
    limits: &Limits,
    resumer: Option<&Resumer>,
) -> Result<(State, Head)> {
    let (resume, _) = checked(store, limits, resumer)?;
    fold(store, limits, resume, |_| {})
}

/// What a writer opens with: its decision state, the head, the filter of every pair the log
/// activated (machine facts on disk), and how the state was made.
pub(crate) fn opened_state(
    store: &Store,
    limits: &Limits,
    hasher: &MachineHasher,
    resumer: Option<&Resumer>,
) -> Result<(State, Head, ActivatedFilter, Start)> {
    let (resume, start) = checked(store, limits, resumer)?;
    if !limits.machine_facts_on_disk {
        let (state, head) = fold(store, limits, None, |_| {})?;
        return Ok((state, head, ActivatedFilter::default(), start));
    }
    // The pair index holds every pair through the head: read it rather than the log.
    let count = match &resume {
        Some(_) => store.pair_count()?,
        None => None,
    };
    let mut filter = ActivatedFilter::with_capacity(count.unwrap_or(0), limits.filter_first_pairs);
    let (state, head) = match (resume, count) {
        (Some(resume), Some(_)) => {
            store.for_each_pair(&mut |pair| filter.insert(pair))?;
            fold(store, limits, Some(resume), |_| {})?
        }
        // The pairs come from the log: walk it all, fold only past the resume point.
        (Some(resume), None) => fold_noting_all(store, limits, resume, hasher, &mut filter)?,
        (None, _) => fold(store, limits, None, |body| filter.note(hasher, body))?,
    };
    Ok((state, head, filter, start))
}

/// The state from `resume`, the filter from every event of the log (a store without a pair
/// index).
fn fold_noting_all(
    store: &Store,
    limits: &Limits,
    resume: Resume,
    hasher: &MachineHasher,
    filter: &mut ActivatedFilter,
) -> Result<(State, Head)> {
    let seq = resume.head.seq;
    let mut state = State::from_books(resume.books, machine_facts(limits));
    let head = walk(store, 1, |record| {
        filter.note(hasher, &record.event.body);
        if record.seq > seq {
            state.apply(&record.event);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((state, head))
}

/// Checks, after a start from a resume point, what the start trusted: walks the whole chain
/// (every block and hash, as `verify` does) and folds it through `start.seq`, whose books must
/// be `books` (the writer's at start). The error says what did not hold.
pub fn verify_start(store: &Store, start: Head, books: &Books<Key>) -> Result<(), String> {
    let mut state = State::default();
    state.machine_facts = MachineFacts::on_disk();
    let (mut folded_to, mut hash) = (0, GENESIS);
    walk(store, 1, |record| {
        if record.seq <= start.seq {
            state.apply(&record.event);
            (folded_to, hash) = (record.seq, record.hash);
        }
        Ok(ControlFlow::Continue(()))
    })
    .map_err(|err| format!("the log failed verification: {err}"))?;
    if folded_to != start.seq || hash != start.hash || state.books() != books {
        return Err(format!(
            "the state the writer resumed at seq {} is not the fold of the log (the snapshot \
             was wrong); run `keyledger verify`",
            start.seq
        ));
    }
    Ok(())
}
