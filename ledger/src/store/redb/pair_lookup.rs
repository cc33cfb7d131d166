//! The pair index's runs as the writer looks pairs up ("was machine M activated on key K").
//!
//! A lookup must not visit every run: there are up to `FANOUT - 1` a level, and each visit
//! is a chunk read. So the view keeps, per run, a split-block Bloom filter over its entries'
//! first halves (10 bits an entry, about 1%), and visits only the runs whose filter says
//! "maybe": about one run for a pair that is there, almost none for one that is not. The
//! filters are derived data, built from the runs when the view first syncs and for each run
//! as it appears (a flush's small run read back; a merge's run by the merge thread as it
//! writes it), never stored.
//!
//! The view must describe the runs the reading transaction sees. Runs are added by the
//! writer's flushes: once the flush has committed, the view is marked stale *before* the
//! pending rows are let go, so a lookup finds a pair in the pending rows or, resyncing, in
//! the new run. Runs are replaced by merges, whose swap commits and updates the view under
//! the view's own lock, which lookups hold while they read.

use sbbf_rs_safe::Filter;

use super::machine_runs::{self, Merged, Run, PAIRS};
use crate::error::Result;
use crate::machines::PairRow;

/// The pair runs, each with its filter.
#[derive(Debug, Default)]
pub(super) struct PairView {
    runs: Vec<(Run, Filter)>,
    /// Runs may have been added or removed since the last sync.
    synced: bool,
}

/// An empty filter for `entries` entries.
pub(super) fn filter_for(entries: u64) -> Filter {
    let entries = usize::try_from(entries).unwrap_or(usize::MAX).max(1);
    Filter::new(crate::prefetch::BITS_PER_PAIR, entries)
}

/// `run`'s filter, read a chunk at a time; each entry is also handed to `visit`.
fn filter_of_run(
    read: &redb::ReadTransaction,
    run: &Run,
    visit: &mut dyn FnMut(PairRow),
) -> Result<Filter> {
    let mut filter = filter_for(run.entries);
    machine_runs::for_each_entry(PAIRS, read, run, |entry| {
        filter.insert_hash(entry.0);
        visit(entry);
    })?;
    Ok(filter)
}

impl PairView {
    /// Runs were added (or the file reopened): the next lookup lists them again.
    pub fn stale(&mut self) {
        self.synced = false;
    }

    /// The file was reopened: what it holds may be older than what the view saw (commits
    /// not yet durable are gone), and a run id the view knows may now name another run (ids
    /// are handed out again). So no run or filter is kept: the next lookup reads them all.
    pub fn forget(&mut self) {
        self.runs.clear();
        self.synced = false;
    }

    /// A merge's swap committed: its inputs are gone, its run (with `filter`, built from
    /// its entries) is there.
    pub fn merged(&mut self, merged: Merged, filter: Filter) {
        self.runs.retain(|(run, _)| !merged.gone.contains(&run.id));
        self.runs.push((merged.run, filter));
    }

    /// Brings the view to the runs `read` sees: runs it does not know are read and filtered,
    /// runs gone are dropped.
    fn sync(&mut self, read: &redb::ReadTransaction) -> Result<()> {
        self.sync_visiting(read, &mut |_| {})
    }

    /// [`PairView::sync`], handing every entry of a run it reads to `visit`.
    fn sync_visiting(
        &mut self,
        read: &redb::ReadTransaction,
        visit: &mut dyn FnMut(PairRow),
    ) -> Result<()> {
        let listed = machine_runs::list(PAIRS, read)?;
        self.runs
            .retain(|(run, _)| listed.iter().any(|l| l.id == run.id));
        for run in listed {
            if self.runs.iter().all(|(known, _)| known.id != run.id) {
                let filter = filter_of_run(read, &run, visit)?;
                self.runs.push((run, filter));
            }
        }
        self.synced = true;
        Ok(())
    }

    /// Reads every run again, handing each entry to `visit` (its filters rebuilt on the
    /// way): every pair the runs `read` sees, in one pass over them.
    pub fn read_all(
        &mut self,
        read: &redb::ReadTransaction,
        visit: &mut dyn FnMut(PairRow),
    ) -> Result<()> {
        self.runs.clear();
        self.sync_visiting(read, visit)
    }

    /// Entries of the runs `read` sees (a pair in two runs counted twice).
    pub fn entries(read: &redb::ReadTransaction) -> Result<u64> {
        Ok(machine_runs::list(PAIRS, read)?
            .iter()
            .map(|run| run.entries)
            .sum())
    }

    /// Whether the pair runs `read` sees hold `pair`.
    pub fn holds(&mut self, read: &redb::ReadTransaction, pair: PairRow) -> Result<bool> {
        if !self.synced {
            self.sync(read)?;
        }
        let Some(chunks) = machine_runs::chunks(PAIRS, read)? else {
            return Ok(false);
        };
        for (run, filter) in &self.runs {
            if filter.contains_hash(pair.0) && machine_runs::run_holds(PAIRS, &chunks, run, pair)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
