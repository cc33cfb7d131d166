//! The pair index's runs as the writer looks pairs up ("was machine M activated on key K").
//!
//! The writer asks only after its filter of every activated pair said "maybe" (a repeat, or
//! about 1% false positives: `keyledger_ledger::prefetch`), so a lookup here is rare but should not
//! read every run: there are up to `FANOUT - 1` a level. The runs of the lower levels, small
//! and many, each get a split-block Bloom filter over their entries' first halves (10 bits
//! an entry, about 1%), and are visited only when it says "maybe". The runs of the upper
//! levels, few and holding almost every pair, get none: a filter there would be a second
//! copy of the writer's over the same pairs (1.25 bytes a pair: 190 MB at 154 M pairs), and
//! a visit is one chunk read found by the run's fences. They are visited largest first, where
//! an old machine most likely is. So the filters' memory is bounded by the small runs
//! (`FILTERED_RUN_ENTRIES`), whatever the history.
//!
//! The filters are derived data, built from the runs when the view first syncs and for each
//! run as it appears (a flush's small run read back; a merge's run by the merge thread as it
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

/// Runs of at most this many entries get a filter (1.25 MiB at most each). Those are the runs
/// of the levels below this size: at most `FANOUT - 1` a level, each level 16 times smaller
/// than the next, so at most about 16 M entries and 20 MiB of filters, whatever the history.
pub(super) const FILTERED_RUN_ENTRIES: u64 = 1 << 20;

/// The pair runs, each with its filter if it is small; the unfiltered ones largest first.
#[derive(Debug)]
pub(super) struct PairView {
    runs: Vec<(Run, Option<Filter>)>,
    /// Runs may have been added or removed since the last sync.
    synced: bool,
    /// Runs of at most this many entries get a filter ([`FILTERED_RUN_ENTRIES`]).
    filtered_up_to: u64,
}

impl Default for PairView {
    fn default() -> PairView {
        PairView {
            runs: Vec::new(),
            synced: false,
            filtered_up_to: FILTERED_RUN_ENTRIES,
        }
    }
}

/// An empty filter for a run of `entries` entries, if the run gets one (at most `up_to`).
pub(super) fn filter_for(entries: u64, up_to: u64) -> Option<Filter> {
    let small = usize::try_from(entries).ok().filter(|_| entries <= up_to)?;
    Some(Filter::new(crate::pair_filter::BITS_PER_PAIR, small.max(1)))
}

/// `run`'s filter if it gets one, read a chunk at a time (a run that gets none is not read).
fn filter_of_run(read: &redb::ReadTransaction, run: &Run, up_to: u64) -> Result<Option<Filter>> {
    let Some(mut filter) = filter_for(run.entries, up_to) else {
        return Ok(None);
    };
    machine_runs::for_each_entry(PAIRS, read, run, |entry| {
        filter.insert_hash(entry.0);
    })?;
    Ok(Some(filter))
}

/// Filtered runs first, then the others largest first (the order lookups visit them in).
fn in_visit_order(runs: &mut [(Run, Option<Filter>)]) {
    runs.sort_by_key(|(run, filter)| (filter.is_none(), std::cmp::Reverse(run.entries)));
}

impl PairView {
    /// An empty filter for a merged run of `entries` entries, if it gets one.
    pub fn filter_for(&self, entries: u64) -> Option<Filter> {
        filter_for(entries, self.filtered_up_to)
    }

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
    pub fn merged(&mut self, merged: Merged, filter: Option<Filter>) {
        self.runs.retain(|(run, _)| !merged.gone.contains(&run.id));
        self.runs.push((merged.run, filter));
        in_visit_order(&mut self.runs);
    }

    /// Brings the view to the runs `read` sees: runs it does not know are listed (the small
    /// ones read for their filters), runs gone are dropped.
    pub fn sync(&mut self, read: &redb::ReadTransaction) -> Result<()> {
        let listed = machine_runs::list(PAIRS, read)?;
        self.runs
            .retain(|(run, _)| listed.iter().any(|l| l.id == run.id));
        for run in listed {
            if self.runs.iter().all(|(known, _)| known.id != run.id) {
                let filter = filter_of_run(read, &run, self.filtered_up_to)?;
                self.runs.push((run, filter));
            }
        }
        in_visit_order(&mut self.runs);
        self.synced = true;
        Ok(())
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
            let maybe = filter.as_ref().is_none_or(|f| f.contains_hash(pair.0));
            if maybe && machine_runs::run_holds(PAIRS, &chunks, run, pair)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::backends::InMemoryBackend;
    use redb::{ReadableDatabase, TableDefinition};

    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

    /// Runs over the filter's size get none and are visited by their fences, largest first,
    /// after the filtered ones; every entry of every run is found, and no stranger is.
    #[test]
    fn large_runs_have_no_filter_and_still_answer_exactly() {
        let db = redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .unwrap();
        let sizes = [3_000u64, 50, 9_000];
        for (r, size) in sizes.iter().enumerate() {
            let entries: Vec<PairRow> =
                (0..*size).map(|i| (i * 7 + r as u64, i ^ 0x5555)).collect();
            let write = db.begin_write().unwrap();
            machine_runs::add_run(&write, META, PAIRS, &entries).unwrap();
            write.commit().unwrap();
        }
        let mut view = PairView {
            filtered_up_to: 1_000,
            ..PairView::default()
        };
        let read = db.begin_read().unwrap();
        for (r, size) in sizes.iter().enumerate() {
            for i in (0..*size).step_by(13) {
                let pair = (i * 7 + r as u64, i ^ 0x5555);
                assert!(view.holds(&read, pair).unwrap(), "run {r}, entry {i}");
                assert!(!view.holds(&read, (pair.0, pair.1 + 1)).unwrap());
            }
        }
        let order: Vec<(u64, bool)> = view
            .runs
            .iter()
            .map(|(run, filter)| (run.entries, filter.is_some()))
            .collect();
        assert_eq!(order, vec![(50, true), (9_000, false), (3_000, false)]);
    }
}
