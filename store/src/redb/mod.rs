//! The redb file: tables, format check, one write transaction per batch, block reads.
//!
//! Tables:
//! - `blocks`  u64 (first seq) → block bytes (see [`crate::block`]); O(log n) to any seq.
//! - `meta`    str → bytes: `format_version` (1 byte) and `head` (u64 LE seq, 32-byte hash).
//! - `secrets` u64 (key id) → key text. Apart from the chain, so it can be erased.
//! - `first_answers` str (scope `\x1f` command id) → 32-byte command digest + the first
//!   answer's JSON, for idempotent resends (see `keyledger_ledger::idempotency`).
//! - `answers` str (command id) → the first answer's JSON: format 2's unscoped table, read
//!   for answers written before format 3, never written.
//! - `snapshots` u64 (last seq folded) → projection snapshot bytes, opaque to the ledger.
//! - `tokens`  str (BLAKE3 hex of an API token) → principal. The token itself is never kept.
//! - `consumers` str (name) → a durable consumer's JSON record (`crate::consumer`).
//! - `merkle`  (level, index) → 32-byte hash of the perfect subtree of leaves
//!   `[index << level, (index + 1) << level)`, for levels >= 8 (see `crate::tree`).
//! - `saved_filter` (generation, chunk) → up to 1 MiB of the writer's saved filter of
//!   activated pairs (`keyledger_ledger::saved_filter`); `meta` key `saved_filter` names the generation
//!   that is whole (u64 LE generation, u32 LE chunks).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::chain::{ChainHash, GENESIS};
use crate::error::{Error, Result};
mod machine_runs;
mod pair_lookup;
pub mod wal;

use crate::backend::{
    Backend, BatchWrite, BlockVisitor, Head, Recovery, Row, StoredAnswer, SNAPSHOTS_KEPT,
};
use crate::machines::{IndexRows, PairRow};
use wal::Wal;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SECRETS: TableDefinition<u64, &str> = TableDefinition::new("secrets");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("answers");
const FIRST_ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("first_answers");
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
const CONSUMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("consumers");
const MERKLE: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("merkle");
const SAVED_FILTER: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("saved_filter");
const SAVED_FILTER_KEY: &str = "saved_filter";

const FORMAT_VERSION_KEY: &str = "format_version";
const HEAD_KEY: &str = "head";

/// The database format this build writes. A change of any table's layout, the block layout
/// or the record layout bumps it and adds an upgrade path.
///
/// - 1: blocks of format 1 only.
/// - 2: blocks may also be of format 2 (LZ4). A format-1 database is read as it is and
///   marked 2 when an engine first opens it for writing (no block is rewritten), so that an
///   older build refuses it with a clear message instead of calling LZ4 blocks corrupt.
/// - 3: first answers are written to `first_answers`, scoped and with the command's digest;
///   `answers` is only read. Older databases are marked 3 the same way; their `answers`
///   stay as they are.
/// - 4: the machine index (`machine_runs`, `machine_run_list`, `meta` keys
///   `machine_hash_key`, `machine_index_through` and `machine_run_next`; see
///   `machine_runs.rs`). An older database
///   gets it built from its blocks when an engine first opens it for writing (or a machine
///   is first looked up), then is marked 4.
/// - 5: the pair index (`machine_pair_runs`, `machine_pair_run_list`, `meta` key
///   `machine_pair_run_next`): one entry per (key, machine) pair an event activated, covered
///   by the same watermark. A format-4 database gets the pairs of the blocks up to its
///   watermark built when an engine first opens it for writing, then is marked 5.
/// - 6: the history index: the machine runs also hold one row for every license ID, key,
///   request and contacted KMS host an event names (`EventBody::named`), so histories are
///   read from disk, not kept in memory. A format-4 or -5 database gets the rows of the
///   blocks up to its watermark built when an engine first opens it for writing (or a
///   history is first read), then is marked 6.
/// - 7: the saved filter of activated pairs (`saved_filter`, `meta` key `saved_filter`):
///   derived data a writer saves now and then and reads at open. An older database is
///   marked 7 with none; the writer builds its filter as before and saves it.
pub const DB_FORMAT_VERSION: u8 = 7;
/// The oldest database format this build still reads.
pub const DB_FORMAT_OLDEST: u8 = 1;

/// The open redb database of one ledger, shared by every clone of its [`crate::Store`].
///
/// After an I/O error redb refuses every later operation ("Previous I/O error occurred"),
/// so a failed commit is followed by [`Backend::reopen`]: the database is closed and opened
/// again from its file, in place, for every clone. Between the two, reads fail with a
/// storage error rather than block.
pub struct RedbStore {
    db: RwLock<Option<Arc<Database>>>,
    label: String,
    /// The file, `None` on a one-off backend.
    path: Option<PathBuf>,
    /// The write-ahead file, once this store is the writer (see [`wal`]).
    wal: std::sync::Mutex<Option<Wal>>,
    /// Frames between checkpoints (`KEYLEDGER_WAL_CHECKPOINT_FRAMES`, default 1024).
    checkpoint_every: u64,
    /// What the last open found in the write-ahead file.
    recovery: std::sync::Mutex<Recovery>,
    /// Failures to inject into the write-ahead file (fault-injection tests only).
    wal_faults: Option<wal::WalFaults>,
    /// How to open the database again; `None` when it cannot be (a one-off backend).
    reopen: Option<Box<Reopen>>,
    /// Machine index rows of the last committed batches, not yet in a run.
    machines: std::sync::Mutex<crate::machines::Pending>,
    /// The pair index's runs with their filters, for the writer's lookups (shared with the
    /// merge thread, which replaces runs).
    pairs: Arc<std::sync::Mutex<pair_lookup::PairView>>,
    /// The thread that merges full levels of machine index runs, started by the first
    /// commit that makes one due.
    merger: std::sync::Mutex<Option<Merger>>,
    /// Merge on the committing thread instead (fault injection and the simulator: every
    /// write then happens in the caller's order, so a fault countdown replays exactly).
    merge_inline: bool,
    /// A batch retired key text but wiping the write-ahead file's old frames failed: the
    /// next commit tries again.
    scrub_owed: std::sync::atomic::AtomicBool,
    /// A consumer's change was committed without durability since the last checkpoint: a
    /// clean close makes it durable.
    unsynced: std::sync::atomic::AtomicBool,
}

/// Why a ledger file cannot be opened while another process has it open (redb takes an
/// exclusive lock on the file): who holds it, when the process table says, and what to do.
fn held(path: &Path) -> String {
    let holder = match holder_of(path) {
        Some((pid, _)) if pid == std::process::id() => format!(" by this process ({pid})"),
        Some((pid, command)) => format!(" by process {pid} ({command})"),
        None => String::new(),
    };
    format!(
        "{} is held{holder}: a redb ledger has one user at a time. While `keyledger serve` \
         holds it, ask the server over HTTP (docs/api.md: reports, log, proofs, export), or \
         stop it first; for a second reader at all times use PostgreSQL",
        path.display()
    )
}

/// The process that has `path` open, from `/proc` (Linux): its pid and command line (the
/// first one found; it may be this one).
fn holder_of(path: &Path) -> Option<(u32, String)> {
    let target = std::fs::canonicalize(path).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link == target));
        if holds {
            let command = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            return Some((pid, command.trim().to_owned()));
        }
    }
    None
}

/// The merge thread: it is handed the database whenever a merge is due, and lets go of it
/// between merges (a reopen closes the database).
struct Merger {
    due: std::sync::mpsc::SyncSender<Arc<Database>>,
    thread: std::thread::JoinHandle<()>,
}

type SharedPairs = Arc<std::sync::Mutex<pair_lookup::PairView>>;

impl Merger {
    fn start(pairs: SharedPairs) -> std::io::Result<Merger> {
        let (due, jobs) = std::sync::mpsc::sync_channel::<Arc<Database>>(1);
        let thread = std::thread::Builder::new()
            .name("keyledger-machine-merge".to_owned())
            .spawn(move || {
                while let Ok(db) = jobs.recv() {
                    // Derived data: a merge that fails leaves the runs as they were, and
                    // the next commit that finds a level full asks again.
                    while let Ok(true) = merge_one_level(&db, &pairs) {}
                }
            })?;
        Ok(Merger { due, thread })
    }

    /// Lets a merge in progress finish, and the thread end.
    fn stop(self) {
        drop(self.due);
        let _ = self.thread.join();
    }
}

/// Merges one full level of either index (`false`: none is full). A pair merge builds its
/// run's filter (if the run is small enough to get one) as it writes, and the swap commits
/// under the pair view's lock, so a lookup never sees runs the view does not describe.
fn merge_one_level(db: &Database, pairs: &SharedPairs) -> Result<bool> {
    if let Some(merge) = machine_runs::prepare_merge(db, machine_runs::MACHINES)? {
        let run = machine_runs::write_merge(db, META, &merge, &mut |_| {})?;
        machine_runs::commit_merge(db, META, &merge, run)?;
        return Ok(true);
    }
    let Some(merge) = machine_runs::prepare_merge(db, machine_runs::PAIRS)? else {
        return Ok(false);
    };
    let mut filter = {
        let view = pairs.lock().unwrap_or_else(|e| e.into_inner());
        view.filter_for(merge.entries)
    };
    let run = machine_runs::write_merge(db, META, &merge, &mut |(high, _)| {
        if let Some(filter) = &mut filter {
            filter.insert_hash(high);
        }
    })?;
    let mut view = pairs.lock().unwrap_or_else(|e| e.into_inner());
    match machine_runs::commit_merge(db, META, &merge, run) {
        Ok(merged) => view.merged(merged, filter),
        Err(err) => {
            view.stale();
            return Err(err);
        }
    }
    Ok(true)
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

type Reopen = dyn Fn() -> std::result::Result<Database, redb::DatabaseError> + Send + Sync;

/// Bytes of redb's page cache for each database this process opens from now on (see
/// [`set_cache_bytes`]).
static CACHE_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_CACHE_BYTES);

/// redb's page cache holds the pages the writer and readers touched lately, up to this many
/// bytes: resident memory that does not grow with history. (redb's own default, 1 GiB,
/// fills with the pages of years of history on a busy ledger.)
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// Sets the page cache of the redb databases this process opens next (`--cache-mib`).
pub fn set_cache_bytes(bytes: usize) {
    CACHE_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The page cache's bound for redb ledgers opened from now on (see [`set_cache_bytes`]).
pub fn cache_bytes() -> usize {
    CACHE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_bytes());
    builder
}

/// A write transaction whose commit is durable itself (with an fsync of its own).
/// The generation of the saved filter that is whole, and its chunks (`meta` `saved_filter`).
fn saved_filter_marker(read: &redb::ReadTransaction) -> Result<Option<(u64, u32)>> {
    let meta = read.open_table(META)?;
    let Some(marker) = meta.get(SAVED_FILTER_KEY)? else {
        return Ok(None);
    };
    Ok(crate::pair_filter::parse_marker(marker.value()))
}

fn durable_write(db: &Database) -> Result<redb::WriteTransaction> {
    let mut write = db.begin_write()?;
    write
        .set_durability(Durability::Immediate)
        .map_err(Error::storage)?;
    Ok(write)
}

/// Frames between checkpoints: `KEYLEDGER_WAL_CHECKPOINT_FRAMES` (at least 1), else 1024.
/// Fewer make opening after a crash replay less and cost a durable redb commit more often.
fn checkpoint_every() -> u64 {
    std::env::var("KEYLEDGER_WAL_CHECKPOINT_FRAMES")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1024)
}

/// How long [`Backend::reopen`] waits for readers of the old database to finish.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl RedbStore {
    /// Creates a new ledger file; refuses to touch an existing one.
    pub fn create(path: &Path) -> Result<RedbStore> {
        if path.exists() {
            return Err(Error::Exists(path.display().to_string()));
        }
        let db = create_private(path)?;
        let store = RedbStore::initialize(db, path.display().to_string(), None)?;
        Ok(store.reopening_from(path.to_owned()))
    }

    /// Opens an existing ledger file and checks its format version.
    pub fn open(path: &Path) -> Result<RedbStore> {
        if !path.exists() {
            return Err(Error::Missing(path.display().to_string()));
        }
        let db = builder().open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::WriterBusy(held(path)),
            other => other.into(),
        })?;
        let store = RedbStore::checked(db, path.display().to_string())?;
        let store = store.reopening_from(path.to_owned());
        store.recover()?;
        Ok(store)
    }

    /// Replays the write-ahead file into the open database (see [`recover`]) and keeps what
    /// it found.
    fn recover(&self) -> Result<Recovery> {
        self.recover_into(&*self.db()?)
    }

    /// [`RedbStore::recover`] into `db`, which a reopen has not published yet.
    fn recover_into(&self, db: &Database) -> Result<Recovery> {
        let Some(path) = &self.path else {
            return Ok(Recovery::default());
        };
        let found = recover(db, &wal::path_for(path))?;
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner()) = found.clone();
        Ok(found)
    }

    fn reopening_from(mut self, path: PathBuf) -> RedbStore {
        let file = path.clone();
        self.reopen = Some(Box::new(move || builder().open(&file)));
        self.path = Some(path);
        self
    }

    /// Opens (creating if empty) a ledger on any redb backend; used by fault-injection tests.
    /// `backend` is called again by [`Backend::reopen`] for a fresh backend on the same file.
    pub fn with_backend<B: redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        label: &str,
    ) -> Result<RedbStore> {
        RedbStore::with_backend_keyed(backend, label, None)
    }

    fn with_backend_keyed<B: redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        label: &str,
        hash_key: Option<[u8; 16]>,
    ) -> Result<RedbStore> {
        let db = redb::Builder::new().create_with_backend(backend())?;
        let fresh = {
            let read = db.begin_read()?;
            match read.open_table(META) {
                Ok(_) => false,
                Err(redb::TableError::TableDoesNotExist(_)) => true,
                Err(err) => return Err(err.into()),
            }
        };
        let store = if fresh {
            RedbStore::initialize(db, label.to_owned(), hash_key)?
        } else {
            RedbStore::checked(db, label.to_owned())?
        };
        let mut store = store;
        store.reopen = Some(Box::new(move || {
            redb::Builder::new().create_with_backend(backend())
        }));
        Ok(store)
    }

    /// [`RedbStore::with_backend`] with a write-ahead file beside `ledger` (the file the
    /// backend works on), checkpointed every `checkpoint_every` frames, whose steps fail
    /// when `faults` says so: fault-injection tests of the whole commit path. Index merges
    /// run on the committing thread, so every write comes in the caller's order; a new
    /// ledger's machine hash key is `hash_key` when given (the same run writes the same bytes).
    pub fn with_backend_and_wal<B: redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        ledger: &Path,
        checkpoint_every: u64,
        faults: wal::WalFaults,
        hash_key: Option<[u8; 16]>,
    ) -> Result<RedbStore> {
        let label = ledger.display().to_string();
        let mut store = RedbStore::with_backend_keyed(backend, &label, hash_key)?;
        store.path = Some(ledger.to_owned());
        store.checkpoint_every = checkpoint_every.max(1);
        store.wal_faults = Some(faults);
        store.merge_inline = true;
        store.recover()?;
        Ok(store)
    }

    fn new(db: Database, label: String) -> RedbStore {
        RedbStore {
            db: RwLock::new(Some(Arc::new(db))),
            label,
            path: None,
            wal: std::sync::Mutex::new(None),
            checkpoint_every: checkpoint_every(),
            recovery: std::sync::Mutex::new(Recovery::default()),
            wal_faults: None,
            reopen: None,
            machines: Default::default(),
            pairs: Default::default(),
            merger: Default::default(),
            merge_inline: false,
            scrub_owed: Default::default(),
            unsynced: Default::default(),
        }
    }

    /// The open database, or a storage error while it is being reopened (or could not be).
    fn db(&self) -> Result<Arc<Database>> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        db.clone().ok_or_else(|| {
            Error::Storage(format!(
                "{}: the database is closed after a storage failure, being reopened",
                self.label
            ))
        })
    }

    fn initialize(db: Database, label: String, hash_key: Option<[u8; 16]>) -> Result<RedbStore> {
        let write = db.begin_write()?;
        {
            let mut meta = write.open_table(META)?;
            meta.insert(FORMAT_VERSION_KEY, &[DB_FORMAT_VERSION][..])?;
            meta.insert(HEAD_KEY, &Head::EMPTY.to_bytes()[..])?;
            write.open_table(BLOCKS)?;
            write.open_table(SECRETS)?;
            write.open_table(ANSWERS)?;
            write.open_table(FIRST_ANSWERS)?;
            write.open_table(SNAPSHOTS)?;
            write.open_table(TOKENS)?;
            write.open_table(MERKLE)?;
            write.open_table(SAVED_FILTER)?;
        }
        machine_runs::hash_key(&write, META, hash_key)?;
        write.commit()?;
        Ok(RedbStore::new(db, label))
    }

    fn checked(db: Database, label: String) -> Result<RedbStore> {
        let version = {
            let read = db.begin_read()?;
            let meta = match read.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Err(Error::NotALedger(label))
                }
                Err(err) => return Err(err.into()),
            };
            let version = meta.get(FORMAT_VERSION_KEY)?;
            version.map(|v| v.value().first().copied().unwrap_or(0))
        };
        match version {
            None => Err(Error::NotALedger(label)),
            Some(DB_FORMAT_OLDEST..=DB_FORMAT_VERSION) => Ok(RedbStore::new(db, label)),
            Some(found) => Err(Error::FormatVersion {
                path: label,
                found,
                expected: DB_FORMAT_VERSION,
            }),
        }
    }
}

impl RedbStore {
    /// [`Backend::commit`] and what follows it; `true`: a step after the commit failed.
    fn commit_and_index(&self, batch: &BatchWrite) -> Result<bool> {
        let db = self.db()?;
        let mut slot = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        // The pending rows' lock is not held across the commit: the writer looks pairs up
        // (under it) while a batch commits.
        let to = batch.head.map_or(batch.start.seq, |h| h.seq);
        let flushed = {
            let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
            self.machines_caught_up(&db, &mut pending, batch.start.seq)?;
            pending.flush_with(&batch.index, crate::machines::FLUSH_BATCHES)
        };
        let flush = flushed.is_some();
        let index = flushed.as_ref().map(|rows| (rows, to));
        let Some(wal) = slot.as_mut() else {
            apply_one(&db, batch, index, Durability::Immediate)?;
            return Ok(self.index_committed(&db, batch, flush, to));
        };
        if wal.frames() >= self.checkpoint_every {
            checkpoint(&db, wal)?;
        }
        wal.append(batch)?;
        if let Err(err) = apply_one(&db, batch, index, Durability::None) {
            // Answered as failed, so it must not come back from the file on a later open.
            return Err(match wal.retract_last() {
                Ok(()) => err,
                Err(wipe) => Error::Storage(format!(
                    "{err}; and taking its write-ahead frame back failed ({wipe}): the batch \
                     may still be in the log"
                )),
            });
        }
        let mut troubled = self.index_committed(&db, batch, flush, to);
        let owed = self.scrub_owed.load(std::sync::atomic::Ordering::Relaxed);
        if owed || !batch.retired.is_empty() {
            // The retired text is in earlier frames (the one that issued it, and this
            // batch's own erasure is durable in redb after the checkpoint): wipe them all.
            // The batch is durable already (its frame is synced): a failure here is not the
            // batch's, so it is answered as committed and the wipe is owed to the next one.
            let wiped = checkpoint(&db, wal).and_then(|()| wal.scrub());
            troubled |= wiped.is_err();
            self.scrub_owed
                .store(wiped.is_err(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(troubled)
    }

    /// Hands the database to the merge thread if a level of machine index runs is full
    /// (starting the thread the first time). A merge already under way picks it up.
    /// `true`: an inline merge failed (the database may refuse reads until it is reopened).
    fn merge_if_due(&self, db: &Arc<Database>) -> bool {
        let due = db
            .begin_read()
            .ok()
            .and_then(|read| machine_runs::merge_due(&read).ok());
        if due != Some(true) {
            return false;
        }
        if self.merge_inline {
            // Derived data, as on the merge thread: a failed merge is asked for again.
            loop {
                match merge_one_level(db, &self.pairs) {
                    Ok(true) => continue,
                    Ok(false) => return false,
                    Err(_) => return true,
                }
            }
        }
        let mut merger = self.merger.lock().unwrap_or_else(|e| e.into_inner());
        if merger.is_none() {
            *merger = Merger::start(self.pairs.clone()).ok();
        }
        if let Some(merger) = merger.as_ref() {
            let _ = merger.due.try_send(db.clone());
        }
        false
    }

    /// After `batch` committed: its rows wait, or were written (with the pending ones) as
    /// runs, which the pair view is told of before the pending rows are let go (see
    /// `pair_lookup`: a lookup finds a pair in one or the other).
    /// `true`: an inline merge failed after the commit (see [`RedbStore::merge_if_due`]).
    fn index_committed(
        &self,
        db: &Arc<Database>,
        batch: &BatchWrite,
        flushed: bool,
        to: u64,
    ) -> bool {
        if flushed {
            self.pair_view_stale();
        }
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        pending.committed(&batch.index, flushed, to);
        drop(pending);
        flushed && self.merge_if_due(db)
    }

    /// Pair runs were added (or the file changed under the view): the next lookup resyncs.
    fn pair_view_stale(&self) {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner()).stale();
    }

    fn stop_merging(&self) {
        let merger = self.merger.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(merger) = merger {
            merger.stop();
        }
    }

    /// Format 4 to 5: the pair rows of the blocks up to the machine index's watermark (those
    /// after it are derived with the pending rows), written as pair runs a million at a time.
    /// An upgrade cut short is done again: a pair in two runs is still one pair.
    fn build_pairs(&self, db: &Database) -> Result<()> {
        let hasher = self.machine_hasher()?;
        self.build_runs(db, machine_runs::PAIRS, |key, bytes| {
            Ok(hasher.rows_of_block(key, bytes)?.pairs)
        })?;
        self.pair_view_stale();
        Ok(())
    }

    /// Format 5 to 6: the history rows ([`keyledger_core::EventBody::named`]) of the blocks up
    /// to the watermark, as machine runs; a history read that finds a seq twice keeps it once.
    fn build_named(&self, db: &Database) -> Result<()> {
        let hasher = self.machine_hasher()?;
        self.build_runs(db, machine_runs::MACHINES, |key, bytes| {
            hasher.named_rows_of_block(key, bytes)
        })
    }

    /// Writes `rows_of_block`'s rows of every block up to the watermark as runs of `index`, a million
    /// rows a run.
    fn build_runs(
        &self,
        db: &Database,
        index: machine_runs::Index,
        rows_of_block: impl Fn(u64, &[u8]) -> Result<Vec<crate::machines::MachineRow>>,
    ) -> Result<()> {
        let read = db.begin_read()?;
        let through = machine_runs::through(&read.open_table(META)?)?;
        let blocks = read.open_table(BLOCKS)?;
        let mut rows = Vec::new();
        let mut entries = blocks.range(..=through)?.peekable();
        while let Some(entry) = entries.next() {
            let (key, bytes) = entry?;
            rows.extend(rows_of_block(key.value(), bytes.value())?);
            if rows.len() >= 1 << 20 || entries.peek().is_none() {
                let write = durable_write(db)?;
                machine_runs::add_run(&write, META, index, &rows)?;
                write.commit()?;
                rows.clear();
            }
        }
        Ok(())
    }

    /// Makes `pending` hold the machine index rows of every block after the durable
    /// watermark up to seq `to`: a no-op while batches commit one after another; after an
    /// open, a reopen or a crash the rows are derived from the stored blocks (and written as
    /// runs, durably, a million at a time).
    fn machines_caught_up(
        &self,
        db: &Database,
        pending: &mut crate::machines::Pending,
        to: u64,
    ) -> Result<()> {
        if pending.to == Some(to) {
            return Ok(());
        }
        let hasher = self.machine_hasher()?;
        let read = db.begin_read()?;
        let through = machine_runs::through(&read.open_table(META)?)?;
        *pending = crate::machines::Pending::default();
        let blocks = read.open_table(BLOCKS)?;
        for entry in blocks.range(through + 1..=to)? {
            let (key, bytes) = entry?;
            let rows = hasher.rows_of_block(key.value(), bytes.value())?;
            pending.extend_rows(&rows);
            pending.batches += 1;
            let last = crate::block::Block::parse(bytes.value())
                .map_err(|e| crate::error::Corruption::Undecodable {
                    seq: key.value(),
                    why: e.to_string(),
                })?
                .last_seq();
            if pending.rows().len() >= 1 << 20 {
                let write = durable_write(db)?;
                machine_runs::flush(&write, META, pending.rows(), last)?;
                write.commit()?;
                self.pair_view_stale();
                pending.clear_rows();
            }
        }
        pending.to = Some(to);
        Ok(())
    }
}

impl Drop for RedbStore {
    /// A clean close checkpoints, so the next open has nothing to replay (best effort: a
    /// failure here leaves the frames for that open to apply).
    fn drop(&mut self) {
        self.stop_merging();
        let wal = self.wal.get_mut().unwrap_or_else(|e| e.into_inner());
        let db = self.db.get_mut().unwrap_or_else(|e| e.into_inner());
        let unsynced = *self.unsynced.get_mut();
        match (wal.as_mut(), db.as_ref()) {
            (Some(wal), Some(db)) if wal.frames() > 0 || unsynced => {
                let _ = checkpoint(db, wal);
            }
            (None, Some(db)) if unsynced => {
                let _ = sync(db);
            }
            _ => {}
        }
    }
}

impl Backend for RedbStore {
    /// The database format recorded in the file.
    fn format_version(&self) -> Result<u8> {
        let read = self.db()?.begin_read()?;
        let meta = read.open_table(META)?;
        let version = meta.get(FORMAT_VERSION_KEY)?;
        Ok(version
            .and_then(|v| v.value().first().copied())
            .unwrap_or(0))
    }

    /// Never: rows after the watermark are derived from the blocks whenever they are
    /// needed (and all of them, from seq 1, for a file older than format 4).
    fn machine_index_missing(&self) -> Result<bool> {
        Ok(false)
    }

    fn history_index_missing(&self) -> Result<bool> {
        Ok(self.format_version()? < 6)
    }

    fn put_machine_rows(&self, rows: &IndexRows) -> Result<()> {
        let write = durable_write(&*self.db()?)?;
        machine_runs::add(&write, META, rows)?;
        write.commit()?;
        self.pair_view_stale();
        Ok(())
    }

    /// From the pending rows (caught up first after an open or a reopen), then the pair
    /// runs: both under the pending rows' lock, so a flush cannot move rows between them.
    fn pair_active(&self, pair: PairRow) -> Result<Option<bool>> {
        let db = self.db()?;
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        if pending.to.is_none() {
            let head = head_in(&db.begin_read()?)?.seq;
            self.machines_caught_up(&db, &mut pending, head)?;
        }
        if pending.holds_pair(pair) {
            return Ok(Some(true));
        }
        let mut view = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        let read = db.begin_read()?;
        view.holds(&read, pair).map(Some)
    }

    fn pair_count(&self) -> Result<Option<u64>> {
        // Before format 5 the pair index is built by the upgrade, after the writer's fold.
        if self.format_version()? < 5 {
            return Ok(None);
        }
        let db = self.db()?;
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        self.machines_caught_up(&db, &mut pending, head_in(&db.begin_read()?)?.seq)?;
        let stored = pair_lookup::PairView::entries(&db.begin_read()?)?;
        Ok(Some(stored + pending.rows().pairs.len() as u64))
    }

    /// The pending rows' pairs, then every run's. Only the pending rows are read under their
    /// lock (with the transaction the runs are then read in, so a flush cannot move rows
    /// between the two): a pass over every run takes seconds on a large ledger, and the
    /// writer commits beside it. The pair view is brought up to date on the way.
    fn for_each_pair(&self, visit: &mut dyn FnMut(crate::machines::PairRow)) -> Result<bool> {
        let db = self.db()?;
        let read = {
            let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
            self.machines_caught_up(&db, &mut pending, head_in(&db.begin_read()?)?.seq)?;
            pending.rows().pairs.iter().for_each(|pair| visit(*pair));
            db.begin_read()?
        };
        for run in machine_runs::list(machine_runs::PAIRS, &read)? {
            machine_runs::for_each_entry(machine_runs::PAIRS, &read, &run, &mut *visit)?;
        }
        let mut view = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        view.sync(&db.begin_read()?)?;
        Ok(true)
    }

    fn machine_hasher(&self) -> Result<crate::machines::MachineHasher> {
        if let Some(key) = machine_runs::read_hash_key(&self.db()?.begin_read()?, META)? {
            return Ok(key);
        }
        let write = durable_write(&*self.db()?)?;
        let key = machine_runs::hash_key(&write, META, None)?;
        write.commit()?;
        Ok(key)
    }

    fn machine_seqs(&self, h: u64, after: u64, limit: usize) -> Result<Vec<u64>> {
        let db = self.db()?;
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        let read = db.begin_read()?;
        self.machines_caught_up(&db, &mut pending, head_in(&read)?.seq)?;
        let read = db.begin_read()?;
        let stored = machine_runs::candidates(&read, h, after, limit)?;
        Ok(pending.with_candidates(stored, h, after, limit))
    }

    /// Marks an older database as this build's format, before this build writes to it:
    /// first the machine index of every block is built and written (format 4), then the
    /// format byte says 4. Every older format is otherwise a subset of the current one.
    fn upgrade_format(&self) -> Result<()> {
        let version = self.format_version()?;
        if version >= DB_FORMAT_VERSION {
            return Ok(());
        }
        // Format 4: the machine index of every block, written before the file says 4.
        self.machine_hasher()?;
        let db = self.db()?;
        if version == 4 {
            self.build_pairs(&db)?;
        }
        if (4..=5).contains(&version) {
            self.build_named(&db)?;
        }
        let head = head_in(&db.begin_read()?)?.seq;
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        self.machines_caught_up(&db, &mut pending, head)?;
        let write = durable_write(&db)?;
        machine_runs::flush(&write, META, pending.rows(), head)?;
        write.commit()?;
        *pending = crate::machines::Pending::derived(IndexRows::default(), head, 0);
        drop(pending);
        let write = durable_write(&*self.db()?)?;
        write
            .open_table(META)?
            .insert(FORMAT_VERSION_KEY, &[DB_FORMAT_VERSION][..])?;
        write.commit()?;
        Ok(())
    }

    /// Compacts the file so it holds only live pages (redb grows files ahead of need).
    /// Needs the only handle to the database: no read may be under way.
    fn compact(&self) -> Result<()> {
        self.stop_merging();
        let only = || Error::Unavailable("compaction needs the only handle to the ledger");
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        let shared = slot.take().ok_or_else(only)?;
        let mut db = match Arc::try_unwrap(shared) {
            Ok(db) => db,
            Err(shared) => {
                *slot = Some(shared);
                return Err(only());
            }
        };
        // redb compacts in steps; stop when a pass frees nothing more.
        let compacted = loop {
            match db.compact() {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(err) => break Err(Error::storage(err)),
            }
        };
        *slot = Some(Arc::new(db));
        compacted
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn recovery(&self) -> Recovery {
        self.recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn page_cache_bytes(&self) -> u64 {
        self.db()
            .map_or(0, |db| db.cache_stats().used_bytes() as u64)
    }

    fn stored_bytes(&self) -> Result<u64> {
        let path = self.path.as_ref().ok_or(Error::Unavailable(
            "a ledger on a one-off backend has no file to measure",
        ))?;
        Ok(std::fs::metadata(path)?.len())
    }

    fn head(&self) -> Result<Head> {
        head_in(&self.db()?.begin_read()?)
    }

    /// A redb file is locked by the process that opened it: this handle is the only writer.
    /// It starts the write-ahead file (a new generation: opening replayed the old one).
    fn claim_writer(&self, _wait: bool) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut slot = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let generation = Backend::recovery(self).generation + 1;
            *slot = Some(Wal::create(
                &wal::path_for(path),
                generation,
                self.wal_faults.clone(),
            )?);
        }
        Ok(())
    }

    /// Closes the database and opens it again from its file (redb repairs it if the failure
    /// left it unclean), for every clone of this store. Waits up to 10 s for reads of the old
    /// database to end. On failure the store stays closed; calling again retries.
    fn reopen(&self) -> Result<()> {
        let reopen = self.reopen.as_ref().ok_or(Error::Unavailable(
            "this store cannot be reopened (it was opened on a one-off backend)",
        ))?;
        self.stop_merging();
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        // After a panic inside redb (a bug, caught by the writer's supervisor) closing the old
        // database can panic on its poisoned locks; the file is closed all the same.
        let old = slot.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(old)));
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        let db = loop {
            match reopen() {
                // A read transaction of the old database still holds the file's lock.
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        // What the file holds now decides; pending rows are derived again from its blocks.
        *self.machines.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        self.pairs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget();
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        let writing = wal.take().is_some();
        // The write-ahead frames redb lost are replayed before any reader sees the file: a
        // reader in between (a filter rebuild, an HTTP read) would find the log shorter
        // than what was acknowledged.
        let found = self.recover_into(&db)?;
        *slot = Some(Arc::new(db));
        drop(slot);
        if let (true, Some(path)) = (writing, &self.path) {
            *wal = Some(Wal::create(
                &wal::path_for(path),
                found.generation + 1,
                self.wal_faults.clone(),
            )?);
        }
        Ok(())
    }

    /// Writes one batch durably, all or nothing. A writer's batch is one write-ahead frame
    /// and one fdatasync (see [`wal`]), then a redb commit without an fsync of its own; every
    /// `checkpoint_every` frames (or when the file is full) one durable redb
    /// commit makes redb hold them all and the write-ahead file starts again. Without a
    /// write-ahead file (a reader, a one-off backend) the redb commit is durable itself.
    fn commit(&self, batch: &BatchWrite) -> Result<()> {
        if self.commit_and_index(batch)? {
            // A step after the commit failed (an inline merge, the wipe of a retired text):
            // the batch is durable, but redb refuses every read after an I/O error until the
            // file is reopened. Reopen it now rather than at the next failed commit (a
            // failure here leaves the store closed, and the writer's next batch reopens it).
            let _ = self.reopen();
        }
        Ok(())
    }

    /// The blocks and the head in one read transaction (a head that does not parse is
    /// corruption at seq 0).
    fn for_each_block_with_head(
        &self,
        from_key: u64,
        visit: &mut BlockVisitor<'_>,
    ) -> Result<Head> {
        let read = self.db()?.begin_read()?;
        let head = head_in(&read)?;
        let blocks = read.open_table(BLOCKS)?;
        for entry in blocks.range(from_key..)? {
            let (key, value) = entry?;
            if visit(key.value(), value.value())?.is_break() {
                break;
            }
        }
        Ok(head)
    }

    /// The key of the block holding `seq` (the greatest first seq `<= seq`), and the chain
    /// hash before that block (the previous block's head, or genesis).
    fn block_containing(&self, seq: u64) -> Result<Option<(u64, ChainHash)>> {
        let read = self.db()?.begin_read()?;
        let blocks = read.open_table(BLOCKS)?;
        let Some(entry) = blocks.range(..=seq)?.next_back() else {
            return Ok(None);
        };
        let key = entry?.0.value();
        let prev = match blocks.range(..key)?.next_back() {
            None => GENESIS,
            Some(entry) => {
                let (_, value) = entry?;
                let block = crate::block::Block::parse(value.value()).map_err(|e| {
                    crate::error::Corruption::Undecodable {
                        seq: key.saturating_sub(1),
                        why: e.to_string(),
                    }
                })?;
                block.head
            }
        };
        Ok(Some((key, prev)))
    }

    /// The bytes of the block stored under `key` (its first seq), as stored.
    fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>> {
        let read = self.db()?.begin_read()?;
        let blocks = read.open_table(BLOCKS)?;
        Ok(blocks.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The last block's bytes, for the tail check at open.
    fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let read = self.db()?.begin_read()?;
        let blocks = read.open_table(BLOCKS)?;
        let last = blocks.last()?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    fn secret(&self, key_id: u64) -> Result<Option<String>> {
        let read = self.db()?.begin_read()?;
        let secrets = read.open_table(SECRETS)?;
        Ok(secrets.get(key_id)?.map(|v| v.value().to_owned()))
    }

    /// Calls `visit(key_id, text)` for every stored key text, in key id order.
    fn for_each_secret(&self, visit: &mut dyn FnMut(u64, &str) -> Result<()>) -> Result<()> {
        let read = self.db()?.begin_read()?;
        let secrets = read.open_table(SECRETS)?;
        for entry in secrets.iter()? {
            let (key, value) = entry?;
            visit(key.value(), value.value())?;
        }
        Ok(())
    }

    /// Erases a key's text; the chain is untouched (docs/rules.md, "Key text").
    fn erase_secret(&self, key_id: u64) -> Result<bool> {
        let write = self.db()?.begin_write()?;
        let existed = {
            let mut secrets = write.open_table(SECRETS)?;
            let removed = secrets.remove(key_id)?;
            removed.is_some()
        };
        write.commit()?;
        Ok(existed)
    }

    /// The stored first answer of a command, in one read transaction: under its idempotency
    /// `key` (format 3: digest + JSON), else under its bare `command_id` (format 2: JSON).
    fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>> {
        let read = self.db()?.begin_read()?;
        if let Some(bytes) = get_bytes(&read, FIRST_ANSWERS, key)? {
            return Ok(Some(StoredAnswer::Scoped(bytes)));
        }
        Ok(get_bytes(&read, ANSWERS, command_id)?.map(StoredAnswer::Legacy))
    }

    /// Stores a projection snapshot taken at `seq`, keeping the newest [`SNAPSHOTS_KEPT`].
    fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let write = self.db()?.begin_write()?;
        {
            let mut snapshots = write.open_table(SNAPSHOTS)?;
            snapshots.insert(seq, bytes)?;
            let keys: Vec<u64> = snapshots
                .iter()?
                .map(|entry| entry.map(|(k, _)| k.value()))
                .collect::<std::result::Result<_, _>>()?;
            for old in keys.iter().rev().skip(SNAPSHOTS_KEPT) {
                snapshots.remove(*old)?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// The newest snapshot taken at or below `seq`.
    fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>> {
        saved_filter_marker(&self.db()?.begin_read()?)
    }

    fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>> {
        let read = self.db()?.begin_read()?;
        let table = match read.open_table(SAVED_FILTER) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        Ok(table.get((generation, index))?.map(|v| v.value().to_vec()))
    }

    /// In a transaction of its own that is not made durable by itself: the one that names
    /// the generation whole is.
    fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()> {
        let mut write = self.db()?.begin_write()?;
        write
            .set_durability(Durability::None)
            .map_err(Error::storage)?;
        write
            .open_table(SAVED_FILTER)?
            .insert((generation, index), bytes)?;
        write.commit()?;
        Ok(())
    }

    fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()> {
        let write = durable_write(&*self.db()?)?;
        {
            let mut table = write.open_table(SAVED_FILTER)?;
            table.retain(|(g, _), _| g == generation)?;
            let mut marker = generation.to_le_bytes().to_vec();
            marker.extend_from_slice(&chunks.to_le_bytes());
            write
                .open_table(META)?
                .insert(SAVED_FILTER_KEY, &marker[..])?;
        }
        write.commit()?;
        Ok(())
    }

    fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let read = self.db()?.begin_read()?;
        let snapshots = read.open_table(SNAPSHOTS)?;
        let found = snapshots.range(..=seq)?.next_back().transpose()?;
        Ok(found.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    /// A stored Merkle subtree hash.
    fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>> {
        let read = self.db()?.begin_read()?;
        let merkle = match read.open_table(MERKLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let found = merkle.get((level, index))?;
        Ok(found.and_then(|v| v.value().try_into().ok()))
    }

    fn consumer_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let read = self.db()?.begin_read()?;
        let table = match read.open_table(CONSUMERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (name, record) = entry?;
            out.push((name.value().to_owned(), record.value().to_vec()));
        }
        Ok(out)
    }

    fn consumer_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let read = self.db()?.begin_read()?;
        let table = match read.open_table(CONSUMERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        Ok(table.get(name)?.map(|v| v.value().to_vec()))
    }

    fn insert_consumer(&self, name: &str, record: &[u8]) -> Result<bool> {
        let write = self.db()?.begin_write()?;
        let inserted = {
            let mut table = write.open_table(CONSUMERS)?;
            if table.get(name)?.is_some() {
                false
            } else {
                table.insert(name, record)?;
                true
            }
        };
        write.commit()?;
        Ok(inserted)
    }

    fn replace_consumer(&self, name: &str, old: &[u8], new: &[u8], durable: bool) -> Result<bool> {
        let mut write = self.db()?.begin_write()?;
        if !durable {
            write
                .set_durability(Durability::None)
                .map_err(Error::storage)?;
            self.unsynced
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let replaced = {
            let mut table = write.open_table(CONSUMERS)?;
            let current = table.get(name)?.map(|v| v.value().to_vec());
            if current.as_deref() == Some(old) {
                table.insert(name, new)?;
                true
            } else {
                false
            }
        };
        write.commit()?;
        Ok(replaced)
    }

    fn delete_consumer(&self, name: &str) -> Result<bool> {
        let write = self.db()?.begin_write()?;
        let deleted = write.open_table(CONSUMERS)?.remove(name)?.is_some();
        write.commit()?;
        Ok(deleted)
    }

    /// Stores an API token's digest for `principal`.
    fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()> {
        let write = self.db()?.begin_write()?;
        write.open_table(TOKENS)?.insert(digest_hex, principal)?;
        write.commit()?;
        Ok(())
    }

    /// The principal a token digest stands for, if it is known and not revoked.
    fn token_principal(&self, digest_hex: &str) -> Result<Option<String>> {
        let read = self.db()?.begin_read()?;
        let tokens = match read.open_table(TOKENS) {
            Ok(tokens) => tokens,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        Ok(tokens.get(digest_hex)?.map(|v| v.value().to_owned()))
    }

    /// Revokes one token (by digest) or every token of a principal; answers how many.
    fn revoke_tokens(&self, digest_hex: Option<&str>, principal: Option<&str>) -> Result<usize> {
        let write = self.db()?.begin_write()?;
        let revoked = {
            let mut tokens = write.open_table(TOKENS)?;
            let mut doomed: Vec<String> = Vec::new();
            for entry in tokens.iter()? {
                let (digest, owner) = entry?;
                let by_digest = digest_hex.is_some_and(|d| d == digest.value());
                let by_owner = principal.is_some_and(|p| p == owner.value());
                if by_digest || by_owner {
                    doomed.push(digest.value().to_owned());
                }
            }
            for digest in &doomed {
                tokens.remove(digest.as_str())?;
            }
            doomed.len()
        };
        write.commit()?;
        Ok(revoked)
    }

    fn for_each_row(&self, visit: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
        let read = self.db()?.begin_read()?;
        for entry in read.open_table(SECRETS)?.iter()? {
            let (k, v) = entry?;
            visit(Row::Secret(k.value(), v.value().to_owned()))?;
        }
        for (table, legacy) in [(FIRST_ANSWERS, false), (ANSWERS, true)] {
            let table = match read.open_table(table) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            for entry in table.iter()? {
                let (k, v) = entry?;
                let (key, value) = (k.value().to_owned(), v.value().to_vec());
                visit(if legacy {
                    Row::LegacyAnswer(key, value)
                } else {
                    Row::FirstAnswer(key, value)
                })?;
            }
        }
        for entry in read.open_table(SNAPSHOTS)?.iter()? {
            let (k, v) = entry?;
            visit(Row::Snapshot(k.value(), v.value().to_vec()))?;
        }
        for entry in read.open_table(TOKENS)?.iter()? {
            let (k, v) = entry?;
            visit(Row::Token(k.value().to_owned(), v.value().to_owned()))?;
        }
        Ok(())
    }

    fn put_rows(&self, rows: &[Row]) -> Result<()> {
        let write = durable_write(&*self.db()?)?;
        {
            let mut secrets = write.open_table(SECRETS)?;
            let mut first_answers = write.open_table(FIRST_ANSWERS)?;
            let mut answers = write.open_table(ANSWERS)?;
            let mut snapshots = write.open_table(SNAPSHOTS)?;
            let mut tokens = write.open_table(TOKENS)?;
            for row in rows {
                match row {
                    Row::Secret(key_id, text) => {
                        secrets.insert(key_id, text.as_str())?;
                    }
                    Row::FirstAnswer(key, value) => {
                        first_answers.insert(key.as_str(), value.as_slice())?;
                    }
                    Row::LegacyAnswer(key, value) => {
                        answers.insert(key.as_str(), value.as_slice())?;
                    }
                    Row::Snapshot(seq, bytes) => {
                        snapshots.insert(seq, bytes.as_slice())?;
                    }
                    Row::Token(digest, principal) => {
                        tokens.insert(digest.as_str(), principal.as_str())?;
                    }
                }
            }
        }
        write.commit()?;
        Ok(())
    }

    #[cfg(feature = "tamper")]
    /// Overwrites a block's bytes in place. Only tamper tests use this: it is how an
    /// attacker with write access to the file would alter history.
    #[doc(hidden)]
    fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()> {
        let write = self.db()?.begin_write()?;
        {
            let mut blocks = write.open_table(BLOCKS)?;
            match bytes {
                Some(bytes) => {
                    blocks.insert(key, bytes)?;
                }
                None => {
                    blocks.remove(key)?;
                }
            }
        }
        write.commit()?;
        Ok(())
    }

    #[cfg(feature = "tamper")]
    /// Sets (or, with `None`, removes) a key's stored text outside any command. Only tamper
    /// tests use this: it is how someone with write access to the file would alter a secret.
    #[doc(hidden)]
    fn tamper_secret(&self, key_id: u64, text: Option<&str>) -> Result<()> {
        let write = self.db()?.begin_write()?;
        {
            let mut secrets = write.open_table(SECRETS)?;
            match text {
                Some(text) => {
                    secrets.insert(key_id, text)?;
                }
                None => {
                    secrets.remove(key_id)?;
                }
            }
        }
        write.commit()?;
        Ok(())
    }
}

/// Writes batches into redb in one write transaction of the given durability.
fn apply(db: &Database, batches: &[BatchWrite], durability: Durability) -> Result<()> {
    let mut write = db.begin_write()?;
    write.set_durability(durability).map_err(Error::storage)?;
    for batch in batches {
        insert(&write, batch)?;
    }
    write.commit()?;
    Ok(())
}

/// One batch, with the machine index rows to write as a run (and the watermark) when the
/// pending ones are flushed with it.
fn apply_one(
    db: &Database,
    batch: &BatchWrite,
    index: Option<(&IndexRows, u64)>,
    durability: Durability,
) -> Result<()> {
    let mut write = db.begin_write()?;
    write.set_durability(durability).map_err(Error::storage)?;
    insert(&write, batch)?;
    if let Some((rows, to)) = index {
        machine_runs::flush(&write, META, rows, to)?;
    }
    write.commit()?;
    Ok(())
}

/// A batch's blocks, head and tables; its machine index rows are the caller's
/// ([`RedbStore::commit`] keeps them pending, a replay derives them again from the blocks).
fn insert(write: &redb::WriteTransaction, batch: &BatchWrite) -> Result<()> {
    if let Some((first_seq, bytes)) = &batch.block {
        let mut blocks = write.open_table(BLOCKS)?;
        if blocks.insert(*first_seq, bytes.as_slice())?.is_some() {
            return Err(Error::Storage(format!(
                "a block at seq {first_seq} exists already: a block is written once"
            )));
        }
    }
    if let Some(head) = batch.head {
        let mut meta = write.open_table(META)?;
        meta.insert(HEAD_KEY, &head.to_bytes()[..])?;
    }
    // Only the tables a batch changes are opened: each open is a lookup in redb's
    // table tree, and an activation batch touches two or three of five.
    if !batch.secrets.is_empty() {
        let mut secrets = write.open_table(SECRETS)?;
        for (key_id, text) in &batch.secrets {
            secrets.insert(*key_id, text.as_str())?;
        }
    }
    if !batch.retired.is_empty() {
        let mut secrets = write.open_table(SECRETS)?;
        for key_id in &batch.retired {
            secrets.remove(*key_id)?;
        }
    }
    if !batch.answers.is_empty() {
        let mut answers = write.open_table(FIRST_ANSWERS)?;
        for (command_id, answer) in &batch.answers {
            answers.insert(command_id.as_str(), answer.as_slice())?;
        }
    }
    if !batch.merkle.is_empty() {
        let mut merkle = write.open_table(MERKLE)?;
        for (level, index, hash) in &batch.merkle {
            merkle.insert((*level, *index), hash.as_slice())?;
        }
    }
    Ok(())
}

/// One durable redb commit, which makes every earlier non-durable one durable too; then the
/// write-ahead file's frames are no longer needed and it starts its next generation.
fn checkpoint(db: &Database, wal: &mut Wal) -> Result<()> {
    sync(db)?;
    wal.restart()
}

/// A durable commit of nothing: every earlier non-durable commit is durable after it.
fn sync(db: &Database) -> Result<()> {
    let write = durable_write(db)?;
    write.commit()?;
    Ok(())
}

/// Applies the write-ahead frames redb does not hold durably yet (a crash lost its
/// non-durable commits), in one durable commit. Frames at or below redb's head are there
/// already; the first frame that does not continue the head stops the replay. A file whose
/// reading stopped early is kept as `-wal.damaged` for inspection.
fn recover(db: &Database, wal_path: &Path) -> Result<Recovery> {
    let Some((generation, scan)) = Wal::scan(wal_path)? else {
        return Ok(Recovery::default());
    };
    let mut head = head_in(&db.begin_read()?)?;
    let mut problem = scan
        .stopped
        .map(|(at, why)| format!("{} byte {at}: {why}", wal_path.display()));
    let retired = scan.frames.iter().any(|frame| !frame.retired.is_empty());
    let mut replay = Vec::new();
    for frame in scan.frames {
        let ends = frame.head.unwrap_or(frame.start).seq;
        if ends < head.seq || (frame.block.is_some() && ends == head.seq) {
            continue;
        }
        if frame.start != head {
            problem = Some(format!(
                "{}: a frame starts at seq {} but the log ends at seq {}: not applied",
                wal_path.display(),
                frame.start.seq,
                head.seq
            ));
            break;
        }
        head = frame.head.unwrap_or(head);
        replay.push(frame);
    }
    apply(db, &replay, Durability::Immediate)?;
    if problem.is_none() && retired {
        // A crash came between a retirement's frame and the wipe of the frames that hold
        // the text: redb holds every frame now, so the file goes (a new one is zeros).
        std::fs::remove_file(wal_path)?;
    }
    if let Some(why) = &mut problem {
        let kept = wal_path.with_extension(format!(
            "{}.damaged",
            wal_path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("wal")
        ));
        std::fs::rename(wal_path, &kept)?;
        why.push_str(&format!(" (the file is kept as {})", kept.display()));
    }
    Ok(Recovery {
        generation,
        applied: replay.len() as u64,
        problem,
    })
}

/// Creates the ledger file readable and writable by its owner only (0600): it holds key
/// text, like the signing key beside it.
fn create_private(path: &Path) -> Result<Database> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let backend = redb::backends::FileBackend::new(file)?;
    Ok(builder().create_with_backend(backend)?)
}

fn get_bytes(
    read: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    let table = match read.open_table(table) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

/// The head as `read` sees it. A head that does not parse is corruption at seq 0.
fn head_in(read: &redb::ReadTransaction) -> Result<Head> {
    let meta = read.open_table(META)?;
    let bytes = meta.get(HEAD_KEY)?.map(|v| v.value().to_vec());
    bytes.as_deref().and_then(Head::from_bytes).ok_or_else(|| {
        Error::Corrupt(crate::error::Corruption::Undecodable {
            seq: 0,
            why: "the stored head is missing or malformed".to_owned(),
        })
    })
}
