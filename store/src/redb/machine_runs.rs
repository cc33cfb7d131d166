//! The machine index and the pair index in the redb file, each as sorted runs merged level
//! by level (a small log-structured merge tree inside redb's tables).
//!
//! Why not a redb table keyed by name: machine names arrive in no order, so each of a
//! batch's thousands of rows lands on a different B-tree leaf and every commit copies
//! thousands of 4 KiB pages (measured: half the write throughput at batch 1,000). Here a
//! batch's rows are one new sorted run, written at the right edge of the run table; once
//! `FANOUT` runs share a level they are merged into one run of the next level, so each row is
//! rewritten once per level, sequentially.
//!
//! An entry is two `u64`s. In the machine index, a [`crate::machines::MachineRow`] `(h, seq)`
//! (`h` the keyed hash of the name under `META["machine_hash_key"]`): lookups answer
//! candidate seqs and the caller keeps the events that do name the machine. In the pair index
//! (format 5), a [`crate::machines::PairRow`]: the two halves of a (key, machine) pair's
//! 128-bit keyed hash, so that "was this machine activated on this key" is one exact entry
//! (see `pair_lookup`).
//!
//! ```text
//! machine_runs          (run id u64, chunk u32) → up to CHUNK_ENTRIES entries, 16 bytes
//!                       each: u64 LE, u64 LE, ascending
//! machine_run_list      run id u64 → level u8, entries u64 LE, then the first u64 of each
//!                       chunk (u64 LE each)
//! machine_pair_runs     as machine_runs, for the pair index
//! machine_pair_run_list as machine_run_list, for the pair index
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::error::{Error, Result};
use crate::machines::{IndexRows, MachineHasher};

/// The tables of one index's runs.
#[derive(Clone, Copy)]
pub(super) struct Index {
    runs: TableDefinition<'static, (u64, u32), &'static [u8]>,
    list: TableDefinition<'static, u64, &'static [u8]>,
    /// The `meta` key of the id the next run gets.
    next_run: &'static str,
    /// The `meta` key naming the run a merge is writing (absent: none): an interrupted merge
    /// leaves chunks under that id, unlisted, which the next merge deletes.
    merging: &'static str,
    /// For messages.
    name: &'static str,
}

/// The machine index: `(h, seq)` entries.
pub(super) const MACHINES: Index = Index {
    runs: TableDefinition::new("machine_runs"),
    list: TableDefinition::new("machine_run_list"),
    next_run: "machine_run_next",
    merging: "machine_run_merging",
    name: "machine",
};

/// The pair index (format 5): `(hash high, hash low)` entries.
pub(super) const PAIRS: Index = Index {
    runs: TableDefinition::new("machine_pair_runs"),
    list: TableDefinition::new("machine_pair_run_list"),
    next_run: "machine_pair_run_next",
    merging: "machine_pair_run_merging",
    name: "machine pair",
};

const HASH_KEY: &str = "machine_hash_key";
/// The last seq whose rows are in runs (u64 LE; absent: 0). Rows after it are derived from
/// the blocks again when needed, so losing them (a crash, a reopen) loses nothing.
const THROUGH: &str = "machine_index_through";

pub(super) fn through(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    match table.get(THROUGH)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_le_bytes(v.value().try_into().map_err(|_| {
            Error::Storage("the machine index watermark is not 8 bytes".to_owned())
        })?)),
    }
}

/// Writes `rows` as one run of each index and moves the watermark to `to`, in `write`.
pub(super) fn flush(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    rows: &IndexRows,
    to: u64,
) -> Result<()> {
    add(write, meta, rows)?;
    write
        .open_table(meta)?
        .insert(THROUGH, &to.to_le_bytes()[..])?;
    Ok(())
}

/// Runs of one level merged into one of the next.
pub const FANOUT: usize = 16;
/// Entries per stored chunk: one chunk is read per run a lookup visits. Just under 64 KiB
/// with redb's own bytes (its allocator rounds a region up to a power of two).
const CHUNK_ENTRIES: usize = 4064;
const ENTRY_BYTES: usize = 16;

pub(super) type Entry = (u64, u64);

/// A run table, read.
pub(super) type Chunks = redb::ReadOnlyTable<(u64, u32), &'static [u8]>;

fn parse_key(bytes: &[u8]) -> Result<MachineHasher> {
    bytes
        .try_into()
        .map(MachineHasher)
        .map_err(|_| Error::Storage("the machine hash key is not 16 bytes".to_owned()))
}

/// The ledger's hash key, made (from the operating system's CSPRNG) the first time.
/// The stored key, or `fresh` (random unless a simulation fixes it) stored as the key.
pub(super) fn hash_key(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    fresh: Option<[u8; 16]>,
) -> Result<MachineHasher> {
    let mut table = write.open_table(meta)?;
    if let Some(key) = table.get(HASH_KEY)? {
        return parse_key(key.value());
    }
    let key: [u8; 16] = fresh.unwrap_or_else(rand::random);
    table.insert(HASH_KEY, &key[..])?;
    Ok(MachineHasher(key))
}

pub(super) fn read_hash_key(
    read: &redb::ReadTransaction,
    meta: TableDefinition<&str, &[u8]>,
) -> Result<Option<MachineHasher>> {
    let table = read.open_table(meta)?;
    let key = table.get(HASH_KEY)?;
    key.map(|k| parse_key(k.value())).transpose()
}

/// Adds rows as a new level-0 run of each index (a merge thread merges full levels later).
pub(super) fn add(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    rows: &IndexRows,
) -> Result<()> {
    add_run(write, meta, MACHINES, &rows.machines)?;
    add_run(write, meta, PAIRS, &rows.pairs)
}

/// Adds entries as a new level-0 run of `index`.
pub(super) fn add_run(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    index: Index,
    entries: &[Entry],
) -> Result<()> {
    let mut entries = entries.to_vec();
    entries.sort_unstable();
    entries.dedup();
    if entries.is_empty() {
        return Ok(());
    }
    write_run(write, meta, index, 0, &entries).map(drop)
}

/// Whether some level of either index holds `FANOUT` runs (a merge is due).
pub(super) fn merge_due(read: &redb::ReadTransaction) -> Result<bool> {
    for index in [MACHINES, PAIRS] {
        let Ok(list) = read.open_table(index.list) else {
            continue;
        };
        if full_level(&runs_of(index, &list)?).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn full_level(runs: &[Run]) -> Option<u8> {
    (0..=u8::MAX).find(|l| runs.iter().filter(|r| r.level == *l).count() >= FANOUT)
}

fn next_run_id(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    index: Index,
) -> Result<u64> {
    let mut table = write.open_table(meta)?;
    let next = match table.get(index.next_run)? {
        Some(v) => u64::from_le_bytes(v.value().try_into().map_err(|_| {
            Error::Storage(format!("the next {} run id is not 8 bytes", index.name))
        })?),
        None => 1,
    };
    table.insert(index.next_run, &(next + 1).to_le_bytes()[..])?;
    Ok(next)
}

fn write_run(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    index: Index,
    level: u8,
    entries: &[Entry],
) -> Result<Run> {
    let id = next_run_id(write, meta, index)?;
    let mut runs = write.open_table(index.runs)?;
    let mut fences = Vec::with_capacity(entries.len() / CHUNK_ENTRIES + 1);
    let mut bytes = Vec::with_capacity(CHUNK_ENTRIES * ENTRY_BYTES);
    for (i, chunk) in entries.chunks(CHUNK_ENTRIES).enumerate() {
        fences.push(chunk[0].0);
        bytes.clear();
        for entry in chunk {
            encode(*entry, &mut bytes);
        }
        let index =
            u32::try_from(i).map_err(|_| Error::Storage("a run of over 2^32 chunks".into()))?;
        runs.insert((id, index), bytes.as_slice())?;
    }
    let run = Run {
        id,
        level,
        entries: entries.len() as u64,
        fences,
    };
    write
        .open_table(index.list)?
        .insert(id, descriptor_of(&run).as_slice())?;
    Ok(run)
}

/// A run as its descriptor says.
#[derive(Debug)]
pub(super) struct Run {
    pub id: u64,
    level: u8,
    pub entries: u64,
    /// The first entry's first half, of each chunk.
    fences: Vec<u64>,
}

fn parse_run(index: Index, id: u64, bytes: &[u8]) -> Result<Run> {
    let bad = || {
        Error::Storage(format!(
            "{} run {id}: its descriptor is damaged",
            index.name
        ))
    };
    let (&level, rest) = bytes.split_first().ok_or_else(bad)?;
    let (entries, fences) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
    if !fences.len().is_multiple_of(8) {
        return Err(bad());
    }
    Ok(Run {
        id,
        level,
        entries: u64::from_le_bytes(*entries),
        fences: fences
            .chunks_exact(8)
            .map(|f| u64::from_le_bytes(f.try_into().expect("8 bytes")))
            .collect(),
    })
}

fn runs_of(index: Index, table: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        runs.push(parse_run(index, id.value(), bytes.value())?);
    }
    Ok(runs)
}

/// The runs of `index` as the transaction sees them (none before the index's first run).
pub(super) fn list(index: Index, read: &redb::ReadTransaction) -> Result<Vec<Run>> {
    match read.open_table(index.list) {
        Ok(list) => runs_of(index, &list),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(err) => Err(err.into()),
    }
}

/// An entry's 16 bytes, appended to a chunk.
fn encode((first, second): Entry, chunk: &mut Vec<u8>) {
    chunk.extend_from_slice(&first.to_le_bytes());
    chunk.extend_from_slice(&second.to_le_bytes());
}

fn entry_at(e: &[u8]) -> Entry {
    let h = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
    (h, seq)
}

fn checked_chunk(index: Index, id: u64, bytes: &[u8]) -> Result<&[u8]> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return Err(Error::Storage(format!(
            "{} run {id}: a chunk is damaged",
            index.name
        )));
    }
    Ok(bytes)
}

fn chunk_entries(index: Index, id: u64, bytes: &[u8]) -> Result<impl Iterator<Item = Entry> + '_> {
    Ok(checked_chunk(index, id, bytes)?
        .chunks_exact(ENTRY_BYTES)
        .map(entry_at))
}

/// Chunk `i` of `run`, as stored (an error names a missing one).
fn chunk_bytes<'t>(
    index: Index,
    chunks: &'t Chunks,
    run: &Run,
    i: usize,
) -> Result<redb::AccessGuard<'t, &'static [u8]>> {
    chunks.get((run.id, i as u32))?.ok_or_else(|| {
        Error::Storage(format!(
            "{} run {}: chunk {i} is missing",
            index.name, run.id
        ))
    })
}

/// The chunks of `run` that may hold entries whose first half is `first`: from the last one
/// starting below it (an equal first half may run over a chunk's end) to the last one
/// starting at or below it.
fn chunks_for(run: &Run, first: u64) -> std::ops::Range<usize> {
    let start = run.fences.partition_point(|f| *f < first).saturating_sub(1);
    start..run.fences.partition_point(|f| *f <= first)
}

/// Every entry of `run`, ascending, read a chunk at a time (a run of the last level may hold
/// every pair of the ledger: it is never held in memory whole).
pub(super) fn for_each_entry(
    index: Index,
    read: &redb::ReadTransaction,
    run: &Run,
    mut visit: impl FnMut(Entry),
) -> Result<()> {
    let chunks = read.open_table(index.runs)?;
    for i in 0..run.fences.len() {
        let bytes = chunk_bytes(index, &chunks, run, i)?;
        chunk_entries(index, run.id, bytes.value())?.for_each(&mut visit);
    }
    Ok(())
}

/// Whether `run` holds `entry` exactly: one chunk read (or two, when the entry's first half
/// runs over a chunk's end), searched by halving.
pub(super) fn run_holds(index: Index, chunks: &Chunks, run: &Run, entry: Entry) -> Result<bool> {
    for i in chunks_for(run, entry.0) {
        let bytes = chunk_bytes(index, chunks, run, i)?;
        let bytes = checked_chunk(index, run.id, bytes.value())?;
        let n = bytes.len() / ENTRY_BYTES;
        let at = |k: usize| entry_at(&bytes[k * ENTRY_BYTES..(k + 1) * ENTRY_BYTES]);
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid) < entry {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < n && at(lo) == entry {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The chunk table of `index`, for [`run_holds`] (`None` before its first run).
pub(super) fn chunks(index: Index, read: &redb::ReadTransaction) -> Result<Option<Chunks>> {
    match read.open_table(index.runs) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Output chunks a merge writes in one write transaction (4 MiB): a level is merged in many
/// short transactions beside the writer's commits, and never held in memory whole.
const MERGE_CHUNKS_PER_COMMIT: usize = 64;

/// A full level to merge: its runs.
pub(super) struct Merge {
    pub index: Index,
    level: u8,
    inputs: Vec<Run>,
    /// The inputs' entries, duplicates counted.
    pub entries: u64,
}

/// A merge committed: the runs it replaced, and the run that replaced them.
pub(super) struct Merged {
    pub gone: Vec<u64>,
    pub run: Run,
}

/// The runs of one full level of `index` (`None` when no level is full). Only merges delete
/// runs, and one thread merges, so they are still there when [`write_merge`] reads them.
pub(super) fn prepare_merge(db: &redb::Database, index: Index) -> Result<Option<Merge>> {
    let read = db.begin_read()?;
    let mut runs = list(index, &read)?;
    let Some(level) = full_level(&runs) else {
        return Ok(None);
    };
    runs.retain(|r| r.level == level);
    Ok(Some(Merge {
        index,
        level,
        entries: runs.iter().map(|r| r.entries).sum(),
        inputs: runs,
    }))
}

/// One input of a merge: its current chunk and the place in it.
struct Cursor<'a> {
    run: &'a Run,
    chunk: usize,
    entries: Vec<Entry>,
    at: usize,
}

impl Cursor<'_> {
    fn head(&self) -> Option<Entry> {
        self.entries.get(self.at).copied()
    }

    /// Moves past the head, reading the run's next chunk when this one is done.
    fn advance(&mut self, index: Index, chunks: &Chunks) -> Result<()> {
        self.at += 1;
        if self.at == self.entries.len() && self.chunk + 1 < self.run.fences.len() {
            self.chunk += 1;
            self.entries = chunk_at(index, chunks, self.run, self.chunk)?;
            self.at = 0;
        }
        Ok(())
    }
}

fn chunk_at(index: Index, chunks: &Chunks, run: &Run, i: usize) -> Result<Vec<Entry>> {
    let bytes = chunk_bytes(index, chunks, run, i)?;
    let entries = chunk_entries(index, run.id, bytes.value())?.collect();
    Ok(entries)
}

/// Writes the merged run of `merge`'s inputs, unlisted, under a new id: a k-way merge that
/// reads one chunk of each input at a time and writes [`MERGE_CHUNKS_PER_COMMIT`] chunks a
/// transaction, so its memory is a few MiB whatever the level's size. `each` sees every
/// entry of the merged run, in order (the pair view builds its filter from them).
/// [`commit_merge`] lists the run and deletes its inputs.
pub(super) fn write_merge(
    db: &redb::Database,
    meta: TableDefinition<&str, &[u8]>,
    merge: &Merge,
    each: &mut dyn FnMut(Entry),
) -> Result<Run> {
    let index = merge.index;
    clear_interrupted(db, meta, index)?;
    let write = db.begin_write()?;
    let id = next_run_id(&write, meta, index)?;
    write
        .open_table(meta)?
        .insert(index.merging, &id.to_le_bytes()[..])?;
    write.commit()?;
    let read = db.begin_read()?;
    let chunks = read.open_table(index.runs)?;
    let mut cursors = Vec::with_capacity(merge.inputs.len());
    for run in &merge.inputs {
        let entries = match run.fences.is_empty() {
            true => Vec::new(),
            false => chunk_at(index, &chunks, run, 0)?,
        };
        cursors.push(Cursor {
            run,
            chunk: 0,
            entries,
            at: 0,
        });
    }
    let mut out = RunWriter::new(db, index, id);
    let mut last = None;
    // The inputs' heads in a min-heap: log2(16) = 4 comparisons an entry instead of 16 for
    // a look at every head (the merge thread's largest cost under a bulk load). Ties go to
    // the lower input, as before; equal entries come out together and are written once.
    let mut heads: BinaryHeap<Reverse<(Entry, usize)>> = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.head().map(|e| Reverse((e, i))))
        .collect();
    while let Some(Reverse((entry, i))) = heads.pop() {
        if last != Some(entry) {
            each(entry);
            out.push(entry)?;
            last = Some(entry);
        }
        cursors[i].advance(index, &chunks)?;
        if let Some(next) = cursors[i].head() {
            heads.push(Reverse((next, i)));
        }
    }
    out.finish(merge.level.saturating_add(1))
}

/// Chunks of a run being merged, written a few at a time.
struct RunWriter<'a> {
    db: &'a redb::Database,
    index: Index,
    id: u64,
    chunk: Vec<u8>,
    ready: Vec<Vec<u8>>,
    written: u32,
    fences: Vec<u64>,
    entries: u64,
}

impl<'a> RunWriter<'a> {
    fn new(db: &'a redb::Database, index: Index, id: u64) -> RunWriter<'a> {
        RunWriter {
            db,
            index,
            id,
            chunk: Vec::with_capacity(CHUNK_ENTRIES * ENTRY_BYTES),
            ready: Vec::new(),
            written: 0,
            fences: Vec::new(),
            entries: 0,
        }
    }

    fn push(&mut self, (high, low): Entry) -> Result<()> {
        if self.chunk.is_empty() {
            self.fences.push(high);
        }
        encode((high, low), &mut self.chunk);
        self.entries += 1;
        if self.chunk.len() == CHUNK_ENTRIES * ENTRY_BYTES {
            self.ready.push(std::mem::take(&mut self.chunk));
            if self.ready.len() == MERGE_CHUNKS_PER_COMMIT {
                self.write()?;
            }
        }
        Ok(())
    }

    /// The ready chunks, in one transaction without an fsync of its own (lost in a crash,
    /// they are the interrupted merge's leftovers; the swap is durable).
    fn write(&mut self) -> Result<()> {
        let mut write = self.db.begin_write()?;
        write
            .set_durability(redb::Durability::None)
            .map_err(Error::storage)?;
        {
            let mut runs = write.open_table(self.index.runs)?;
            for bytes in self.ready.drain(..) {
                runs.insert((self.id, self.written), bytes.as_slice())?;
                self.written = self
                    .written
                    .checked_add(1)
                    .ok_or_else(|| Error::Storage("a run of over 2^32 chunks".into()))?;
            }
        }
        write.commit()?;
        Ok(())
    }

    fn finish(mut self, level: u8) -> Result<Run> {
        if !self.chunk.is_empty() {
            self.ready.push(std::mem::take(&mut self.chunk));
        }
        self.write()?;
        Ok(Run {
            id: self.id,
            level,
            entries: self.entries,
            fences: self.fences,
        })
    }
}

fn descriptor_of(run: &Run) -> Vec<u8> {
    let mut descriptor = Vec::with_capacity(9 + run.fences.len() * 8);
    descriptor.push(run.level);
    descriptor.extend_from_slice(&run.entries.to_le_bytes());
    for fence in &run.fences {
        descriptor.extend_from_slice(&fence.to_le_bytes());
    }
    descriptor
}

/// Deletes the chunks an interrupted merge of `index` left (named by its `meta` key).
pub(super) fn clear_interrupted(
    db: &redb::Database,
    meta: TableDefinition<&str, &[u8]>,
    index: Index,
) -> Result<()> {
    let write = db.begin_write()?;
    let merging = match write.open_table(meta)?.get(index.merging)? {
        Some(v) => Some(u64::from_le_bytes(v.value().try_into().map_err(|_| {
            Error::Storage(format!("the {} merge marker is not 8 bytes", index.name))
        })?)),
        None => None,
    };
    let Some(id) = merging else {
        return Ok(());
    };
    write
        .open_table(index.runs)?
        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    write.open_table(meta)?.remove(index.merging)?;
    write.commit()?;
    Ok(())
}

/// Lists the merged run and deletes its inputs, durably, in one transaction.
pub(super) fn commit_merge(
    db: &redb::Database,
    meta: TableDefinition<&str, &[u8]>,
    merge: &Merge,
    run: Run,
) -> Result<Merged> {
    let index = merge.index;
    let mut write = db.begin_write()?;
    write
        .set_durability(redb::Durability::Immediate)
        .map_err(Error::storage)?;
    {
        let mut chunks = write.open_table(index.runs)?;
        let mut list = write.open_table(index.list)?;
        for input in &merge.inputs {
            for i in 0..input.fences.len() as u32 {
                chunks.remove((input.id, i))?;
            }
            list.remove(input.id)?;
        }
        list.insert(run.id, descriptor_of(&run).as_slice())?;
        write.open_table(meta)?.remove(index.merging)?;
    }
    write.commit()?;
    Ok(Merged {
        gone: merge.inputs.iter().map(|r| r.id).collect(),
        run,
    })
}

/// The seqs of entries of hash `h` after `after`: the first `limit` of each run (so the
/// first `limit` of all are among them), in no order, possibly repeated. A hash with many
/// entries (a key's history) spans many chunks of a run: the first chunk to read is found
/// by halving over them, so a page costs a few chunk reads, not the whole history.
pub(super) fn candidates(
    read: &redb::ReadTransaction,
    h: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<u64>> {
    let index = MACHINES;
    let (Ok(list), Ok(chunks)) = (read.open_table(index.list), read.open_table(index.runs)) else {
        return Ok(Vec::new());
    };
    let mut seqs = Vec::new();
    for run in runs_of(index, &list)? {
        let range = chunks_for(&run, h);
        let first = first_chunk_after(index, &chunks, &run, range.clone(), (h, after))?;
        let mut taken = 0;
        'chunks: for i in first..range.end {
            let bytes = chunk_bytes(index, &chunks, &run, i)?;
            for (eh, seq) in chunk_entries(index, run.id, bytes.value())? {
                if eh > h || taken == limit {
                    break 'chunks;
                }
                if eh == h && seq > after {
                    seqs.push(seq);
                    taken += 1;
                }
            }
        }
    }
    Ok(seqs)
}

/// The chunk of `range` where entries after `entry` start: the last whose first entry is
/// at or below it (chunks are in entry order), found by reading first entries by halving.
fn first_chunk_after(
    index: Index,
    chunks: &Chunks,
    run: &Run,
    range: std::ops::Range<usize>,
    entry: Entry,
) -> Result<usize> {
    let (mut low, mut high) = (range.start, range.end);
    // Invariant: chunks before `low` start at or below `entry`, from `high` on above it.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        let bytes = chunk_bytes(index, chunks, run, mid)?;
        let starts = chunk_entries(index, run.id, bytes.value())?.next();
        if starts.is_some_and(|start| start <= entry) {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::backends::InMemoryBackend;

    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

    fn run_entries(index: Index, read: &redb::ReadTransaction, run: &Run) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for_each_entry(index, read, run, |e| entries.push(e))?;
        Ok(entries)
    }

    fn database() -> redb::Database {
        redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .unwrap()
    }

    /// Pair entries over three chunks, a first half shared across a chunk's end (the second
    /// chunk starts in the middle of it), found exactly; neighbours that differ in either
    /// half are not.
    #[test]
    fn a_run_holds_exactly_its_entries_across_chunk_ends() {
        let db = database();
        let mut entries: Vec<Entry> = (0..(2 * CHUNK_ENTRIES as u64 + 100))
            .map(|i| (i * 10, i))
            .collect();
        let shared = entries[CHUNK_ENTRIES - 2].0;
        for (k, entry) in entries[CHUNK_ENTRIES - 2..CHUNK_ENTRIES + 3]
            .iter_mut()
            .enumerate()
        {
            *entry = (shared, 1_000_000 + k as u64);
        }
        let write = db.begin_write().unwrap();
        add_run(&write, META, PAIRS, &entries).unwrap();
        write.commit().unwrap();
        let read = db.begin_read().unwrap();
        let runs = list(PAIRS, &read).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].fences.len(), 3);
        let chunks = chunks(PAIRS, &read).unwrap().unwrap();
        for entry in &entries {
            assert!(
                run_holds(PAIRS, &chunks, &runs[0], *entry).unwrap(),
                "{entry:?}"
            );
        }
        for (high, low) in entries.iter().step_by(97) {
            assert!(!run_holds(PAIRS, &chunks, &runs[0], (*high, low + 7)).unwrap());
            assert!(!run_holds(PAIRS, &chunks, &runs[0], (high + 1, *low)).unwrap());
        }
        assert!(!run_holds(PAIRS, &chunks, &runs[0], (u64::MAX, 0)).unwrap());
        assert_eq!(run_entries(PAIRS, &read, &runs[0]).unwrap(), {
            let mut sorted = entries.clone();
            sorted.sort();
            sorted
        });
        // The machine index's tables are another index's: they are untouched.
        assert!(list(MACHINES, &read).unwrap().is_empty());
    }

    /// A full level merges into one run a level up, holding every entry once.
    #[test]
    fn a_full_level_merges_into_one_run_of_every_entry() {
        let db = database();
        for r in 0..FANOUT as u64 {
            let write = db.begin_write().unwrap();
            // Each run repeats one entry of the one before it.
            add_run(&write, META, PAIRS, &[(r, r), (r + 1, r + 1)]).unwrap();
            write.commit().unwrap();
        }
        let merge = prepare_merge(&db, PAIRS).unwrap().expect("a level is full");
        let mut seen = Vec::new();
        let run = write_merge(&db, META, &merge, &mut |e| seen.push(e)).unwrap();
        let merged = commit_merge(&db, META, &merge, run).unwrap();
        assert_eq!(merged.gone.len(), FANOUT);
        let read = db.begin_read().unwrap();
        let runs = list(PAIRS, &read).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].id, runs[0].level), (merged.run.id, 1));
        let expected: Vec<Entry> = (0..=FANOUT as u64).map(|i| (i, i)).collect();
        assert_eq!(run_entries(PAIRS, &read, &runs[0]).unwrap(), expected);
        assert_eq!(seen, expected, "the merged entries, in order, once each");
        assert!(prepare_merge(&db, PAIRS).unwrap().is_none());
    }

    /// A level bigger than one merge transaction (over 64 chunks of output), its inputs
    /// interleaved, merges into one run of every entry once, in order, with
    /// fences that find each entry; the chunks of an interrupted merge before it are gone.
    #[test]
    fn a_large_level_merges_in_many_transactions_and_clears_an_interrupted_merge() {
        let db = database();
        // An interrupted merge: its marker and two chunks under an unlisted id.
        let write = db.begin_write().unwrap();
        let orphan = next_run_id(&write, META, MACHINES).unwrap();
        write
            .open_table(META)
            .unwrap()
            .insert(MACHINES.merging, &orphan.to_le_bytes()[..])
            .unwrap();
        for i in 0..2u32 {
            write
                .open_table(MACHINES.runs)
                .unwrap()
                .insert((orphan, i), &[0u8; 16][..])
                .unwrap();
        }
        write.commit().unwrap();
        let per_run = 17_000u64;
        for r in 0..FANOUT as u64 {
            let entries: Vec<Entry> = (0..per_run).map(|i| (i * 16 + r, i % 3)).collect();
            let write = db.begin_write().unwrap();
            add_run(&write, META, MACHINES, &entries).unwrap();
            write.commit().unwrap();
        }
        let merge = prepare_merge(&db, MACHINES)
            .unwrap()
            .expect("a level is full");
        assert_eq!(merge.entries, per_run * FANOUT as u64);
        let mut count = 0u64;
        let mut previous = None;
        let run = write_merge(&db, META, &merge, &mut |e| {
            assert!(previous < Some(e), "ascending, once each");
            previous = Some(e);
            count += 1;
        })
        .unwrap();
        assert!(
            run.fences.len() > MERGE_CHUNKS_PER_COMMIT,
            "{}",
            run.fences.len()
        );
        commit_merge(&db, META, &merge, run).unwrap();
        assert_eq!(count, per_run * FANOUT as u64);
        let read = db.begin_read().unwrap();
        let runs = list(MACHINES, &read).unwrap();
        assert_eq!(runs.len(), 1);
        let chunks = chunks(MACHINES, &read).unwrap().unwrap();
        for probe in [
            (0, 0),
            (15, 0),
            (16 * 16_999 + 15, 16_999 % 3),
            (16 * 8_000 + 7, 8_000 % 3),
        ] {
            assert!(
                run_holds(MACHINES, &chunks, &runs[0], probe).unwrap(),
                "{probe:?}"
            );
        }
        assert!(!run_holds(MACHINES, &chunks, &runs[0], (16, 2)).unwrap());
        assert!(
            chunks.get((orphan, 0)).unwrap().is_none(),
            "the orphan chunks are gone"
        );
        let meta = read.open_table(META).unwrap();
        assert!(meta.get(MACHINES.merging).unwrap().is_none());
    }
}
