//! The machine index in the redb file, as sorted runs merged level by level (a small
//! log-structured merge tree inside redb's tables).
//!
//! Why not a redb table keyed by name: machine names arrive in no order, so each of a
//! batch's thousands of rows lands on a different B-tree leaf and every commit copies
//! thousands of 4 KiB pages (measured: half the write throughput at batch 1,000). Here a
//! batch's rows are one new sorted run, written at the right edge of the run table; once
//! `FANOUT` runs share a level they are merged into one run of the next level, so each row is
//! rewritten once per level, sequentially.
//!
//! An entry is a [`MachineRow`] `(h, seq)` (`crate::machines`: `h` the keyed hash of the
//! name under `META["machine_hash_key"]`). Lookups answer candidate seqs; the caller keeps
//! the events that do name the machine.
//!
//! ```text
//! machine_runs     (run id u64, chunk u32) → up to CHUNK_ENTRIES entries, 16 bytes each:
//!                  h u64 LE, seq u64 LE, ascending by (h, seq)
//! machine_run_list run id u64 → level u8, entries u64 LE, then the first h of each chunk
//!                  (u64 LE each)
//! ```

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::error::{Error, Result};
use crate::machines::{MachineHasher, MachineRow};

const RUNS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("machine_runs");
const RUN_LIST: TableDefinition<u64, &[u8]> = TableDefinition::new("machine_run_list");
const HASH_KEY: &str = "machine_hash_key";
const NEXT_RUN: &str = "machine_run_next";
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

/// Writes `rows` as one run and moves the watermark to `to`, in `write`.
pub(super) fn flush(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    rows: &[MachineRow],
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

type Entry = (u64, u64);

fn parse_key(bytes: &[u8]) -> Result<MachineHasher> {
    bytes
        .try_into()
        .map(MachineHasher)
        .map_err(|_| Error::Storage("the machine hash key is not 16 bytes".to_owned()))
}

/// The ledger's hash key, made (from the operating system's CSPRNG) the first time.
pub(super) fn hash_key(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
) -> Result<MachineHasher> {
    let mut table = write.open_table(meta)?;
    if let Some(key) = table.get(HASH_KEY)? {
        return parse_key(key.value());
    }
    let key: [u8; 16] = rand::random();
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

/// Adds a batch's rows as a new level-0 run, then merges full levels.
pub(super) fn add(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    rows: &[MachineRow],
) -> Result<()> {
    let mut entries: Vec<Entry> = rows.to_vec();
    entries.sort_unstable();
    entries.dedup();
    if entries.is_empty() {
        return Ok(());
    }
    write_run(write, meta, 0, &entries)
}

/// Whether some level holds `FANOUT` runs (a merge is due).
pub(super) fn merge_due(read: &redb::ReadTransaction) -> Result<bool> {
    let Ok(list) = read.open_table(RUN_LIST) else {
        return Ok(false);
    };
    Ok(full_level(&runs_of(&list)?).is_some())
}

fn full_level(runs: &[Run]) -> Option<u8> {
    (0..=u8::MAX).find(|l| runs.iter().filter(|r| r.level == *l).count() >= FANOUT)
}

fn next_run_id(write: &WriteTransaction, meta: TableDefinition<&str, &[u8]>) -> Result<u64> {
    let mut table = write.open_table(meta)?;
    let next =
        match table.get(NEXT_RUN)? {
            Some(v) => u64::from_le_bytes(v.value().try_into().map_err(|_| {
                Error::Storage("the next machine run id is not 8 bytes".to_owned())
            })?),
            None => 1,
        };
    table.insert(NEXT_RUN, &(next + 1).to_le_bytes()[..])?;
    Ok(next)
}

fn write_run(
    write: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    level: u8,
    entries: &[Entry],
) -> Result<()> {
    let id = next_run_id(write, meta)?;
    let mut runs = write.open_table(RUNS)?;
    let mut descriptor = Vec::with_capacity(9 + entries.len() / CHUNK_ENTRIES * 8 + 8);
    descriptor.push(level);
    descriptor.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let mut bytes = Vec::with_capacity(CHUNK_ENTRIES * ENTRY_BYTES);
    for (i, chunk) in entries.chunks(CHUNK_ENTRIES).enumerate() {
        descriptor.extend_from_slice(&chunk[0].0.to_le_bytes());
        bytes.clear();
        for (h, seq) in chunk {
            bytes.extend_from_slice(&h.to_le_bytes());
            bytes.extend_from_slice(&seq.to_le_bytes());
        }
        let index =
            u32::try_from(i).map_err(|_| Error::Storage("a run of over 2^32 chunks".into()))?;
        runs.insert((id, index), bytes.as_slice())?;
    }
    write
        .open_table(RUN_LIST)?
        .insert(id, descriptor.as_slice())?;
    Ok(())
}

/// A run as its descriptor says.
struct Run {
    id: u64,
    level: u8,
    entries: u64,
    fences: Vec<u64>,
}

fn parse_run(id: u64, bytes: &[u8]) -> Result<Run> {
    let bad = || Error::Storage(format!("machine run {id}: its descriptor is damaged"));
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

fn runs_of(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        runs.push(parse_run(id.value(), bytes.value())?);
    }
    Ok(runs)
}

fn chunk_entries(id: u64, bytes: &[u8]) -> Result<impl Iterator<Item = Entry> + '_> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return Err(Error::Storage(format!(
            "machine run {id}: a chunk is damaged"
        )));
    }
    Ok(bytes.chunks_exact(ENTRY_BYTES).map(|e| {
        let h = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
        (h, seq)
    }))
}

/// Merges the runs of one full level into one run of the level above; `false` when no level
/// is full. The reading and sorting happen in a read transaction, beside the writer's
/// commits; only the swap (the merged run written, its inputs deleted) takes the write lock.
/// Only merges delete runs, and one thread merges, so the inputs are still there to delete.
pub(super) fn merge_one_level(
    db: &redb::Database,
    meta: TableDefinition<&str, &[u8]>,
) -> Result<bool> {
    let read = db.begin_read()?;
    let runs = runs_of(&read.open_table(RUN_LIST)?)?;
    let Some(level) = full_level(&runs) else {
        return Ok(false);
    };
    let merging: Vec<&Run> = runs.iter().filter(|r| r.level == level).collect();
    let total: u64 = merging.iter().map(|r| r.entries).sum();
    let mut entries: Vec<Entry> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let chunks = read.open_table(RUNS)?;
    for run in &merging {
        for i in 0..run.fences.len() as u32 {
            let bytes = chunks.get((run.id, i))?.ok_or_else(|| {
                Error::Storage(format!("machine run {}: chunk {i} is missing", run.id))
            })?;
            entries.extend(chunk_entries(run.id, bytes.value())?);
        }
    }
    drop(chunks);
    drop(read);
    // Each run is sorted: a merge sort of sorted runs is close to linear.
    entries.sort();
    entries.dedup();
    let mut write = db.begin_write()?;
    write
        .set_durability(redb::Durability::Immediate)
        .map_err(Error::storage)?;
    {
        let mut chunks = write.open_table(RUNS)?;
        let mut list = write.open_table(RUN_LIST)?;
        for run in &merging {
            for i in 0..run.fences.len() as u32 {
                chunks.remove((run.id, i))?;
            }
            list.remove(run.id)?;
        }
    }
    write_run(&write, meta, level.saturating_add(1), &entries)?;
    write.commit()?;
    Ok(true)
}

/// The seqs of entries of hash `h` after `after`, in no order, possibly repeated.
pub(super) fn candidates(read: &redb::ReadTransaction, h: u64, after: u64) -> Result<Vec<u64>> {
    let (Ok(list), Ok(chunks)) = (read.open_table(RUN_LIST), read.open_table(RUNS)) else {
        return Ok(Vec::new());
    };
    let mut seqs = Vec::new();
    for run in runs_of(&list)? {
        // The chunks that may hold `h`: from the last one starting below it (an equal hash
        // may run over a chunk's end) to the last one starting at or below it.
        let first = run.fences.partition_point(|f| *f < h).saturating_sub(1);
        let end = run.fences.partition_point(|f| *f <= h);
        for i in first..end {
            let Some(bytes) = chunks.get((run.id, i as u32))? else {
                return Err(Error::Storage(format!(
                    "machine run {}: chunk {i} is missing",
                    run.id
                )));
            };
            seqs.extend(
                chunk_entries(run.id, bytes.value())?
                    .filter(|(eh, seq)| *eh == h && *seq > after)
                    .map(|(_, seq)| seq),
            );
        }
    }
    Ok(seqs)
}
