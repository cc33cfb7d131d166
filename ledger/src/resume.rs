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
//! again, is refused), and the filter of activated pairs is the saved filter bound the same
//! way (see [`crate::saved_filter`]), else read from the pair index or the log, never from the
//! snapshot. A refused resume point costs a full fold, as before, and says why
//! ([`Start::Refused`]). `keyledger verify` still folds everything and compares, and `serve`
//! does the same in the background after it starts.

use std::ops::ControlFlow;
use std::sync::Arc;

use keyledger_core::state::{Books, Key, MachineFacts};
use keyledger_core::State;

use crate::activated::ActivatedFilter;
use crate::chain::{ChainHash, GENESIS};
use crate::error::Result;
use crate::limits::Limits;
use crate::machines::MachineHasher;
use crate::store::{Head, Store};
use crate::walk::walk;

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

/// The decision state `resume` holds (else the empty one) and the seq it was folded through.
fn resumed(limits: &Limits, resume: Option<Resume>) -> (State, u64) {
    let facts = machine_facts(limits);
    match resume {
        Some(r) => (State::from_books(r.books, facts), r.head.seq),
        None => {
            let mut state = State::default();
            state.machine_facts = facts;
            (state, 0)
        }
    }
}

/// The decision state through the head: from the resume point when there is a usable one,
/// else from the first event.
fn fold(store: &Store, limits: &Limits, resume: Option<Resume>) -> Result<(State, Head)> {
    let (mut state, folded_through) = resumed(limits, resume);
    let head = walk(store, folded_through + 1, |record| {
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
    fold(store, limits, resume)
}

/// How the writer's filter of activated pairs was made at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterStart {
    /// None is kept: machine facts are in memory.
    NotKept,
    /// The saved filter bound to `seq` (see [`crate::saved_filter`]), then the log after it.
    Saved { seq: u64 },
    /// From the pair index (redb); `refused` says why a saved filter was not used, if one was
    /// there.
    PairIndex { refused: Option<String> },
    /// From every event of the log (a store without a pair index, or a fold from the first
    /// event anyway); `refused` as above.
    Log { refused: Option<String> },
}

/// What a writer opens with: its decision state, the head, the filter of every pair the log
/// activated (machine facts on disk), how the state was made and how the filter was.
pub(crate) fn opened_state(
    store: &Store,
    limits: &Limits,
    hasher: &MachineHasher,
    resumer: Option<&Resumer>,
) -> Result<(State, Head, ActivatedFilter, Start, FilterStart)> {
    let (resume, start) = checked(store, limits, resumer)?;
    if !limits.machine_facts_on_disk {
        let (state, head) = fold(store, limits, None)?;
        return Ok((
            state,
            head,
            ActivatedFilter::default(),
            start,
            FilterStart::NotKept,
        ));
    }
    let refused = match saved_filter(store, hasher) {
        Ok((mut filter, seq)) => {
            let (state, head) = fold_noting(store, limits, resume, hasher, &mut filter, seq)?;
            return Ok((state, head, filter, start, FilterStart::Saved { seq }));
        }
        Err(refused) => refused,
    };
    // The pair index holds every pair through the head: read it rather than the log (unless
    // the whole log is folded anyway).
    let count = match &resume {
        Some(_) => store.pair_count()?,
        None => None,
    };
    let mut filter = ActivatedFilter::with_capacity(count.unwrap_or(0), limits.filter_first_pairs);
    let (noted_through, how) = match count {
        Some(_) if store.for_each_pair(&mut |pair| filter.insert(pair))? => {
            (u64::MAX, FilterStart::PairIndex { refused })
        }
        _ => (0, FilterStart::Log { refused }),
    };
    let (state, head) = fold_noting(store, limits, resume, hasher, &mut filter, noted_through)?;
    Ok((state, head, filter, start, how))
}

/// The saved filter and the seq it is bound to, if there is one this log can use; else why
/// not (`None`: none was saved).
fn saved_filter(
    store: &Store,
    hasher: &MachineHasher,
) -> std::result::Result<(ActivatedFilter, u64), Option<String>> {
    let refused = |why: String| Some(format!("the saved filter of activated pairs {why}"));
    let (generation, chunks) = match store.saved_filter_whole() {
        Ok(Some(whole)) => whole,
        Ok(None) => return Err(None),
        Err(err) => return Err(refused(format!("could not be read: {err}"))),
    };
    // A chunk at a time: only one is held besides the filter.
    let mut index = 0;
    let mut next = || {
        if index == chunks {
            return Ok(None);
        }
        let chunk = store.saved_filter_chunk(generation, index);
        index += 1;
        match chunk {
            Ok(Some(chunk)) => Ok(Some(chunk)),
            Ok(None) => Err(format!("its chunk {} is missing", index - 1)),
            Err(err) => Err(format!("could not be read: {err}")),
        }
    };
    let bound = chunks as usize * crate::pair_filter::PIECE_BYTES;
    let (filter, bound) = crate::saved_filter::decode_from(&mut next, bound)
        .map_err(|why| refused(format!("is unusable: {why}")))?;
    if bound.key_check != hasher.key_check() {
        return Err(refused("was made under another machine hash key".into()));
    }
    let at = bound.head;
    match chain_hash_at(store, at.seq) {
        Ok(Some(hash)) if hash == at.hash => Ok((filter, at.seq)),
        Ok(Some(_)) => Err(refused(format!(
            "was saved at seq {} of another history (its chain hash is not the log's)",
            at.seq
        ))),
        Ok(None) => Err(refused(format!(
            "was saved at seq {}, past the log's end",
            at.seq
        ))),
        Err(err) => Err(refused(format!("could not be checked: {err}"))),
    }
}

/// The decision state from `resume` (else from the first event), and into `filter` the pairs
/// of every event after `noted_through` (the filter holds those up to it): one walk, from
/// the earlier of the two.
fn fold_noting(
    store: &Store,
    limits: &Limits,
    resume: Option<Resume>,
    hasher: &MachineHasher,
    filter: &mut ActivatedFilter,
    noted_through: u64,
) -> Result<(State, Head)> {
    let (mut state, folded_through) = resumed(limits, resume);
    let from = folded_through.min(noted_through) + 1;
    let head = walk(store, from, |record| {
        if record.seq > noted_through {
            filter.note(hasher, &record.event.body);
        }
        if record.seq > folded_through {
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
