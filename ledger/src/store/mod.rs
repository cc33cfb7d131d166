//! The storage boundary: everything the engine, the writer, the walks, proofs, snapshots,
//! tokens, secrets and answers keep goes through [`Store`], and a store is one of two
//! [`Backend`]s: [`redb`] (an embedded file, the default) or [`postgres`] (a replicated
//! PostgreSQL database). Both keep the same block bytes under the same keys, so the chain,
//! the Merkle tree, exports and proofs are identical whichever holds them.
//!
//! Which one a `--data` value names is [`Location`]'s business: a path is a redb file, a
//! `postgres://…` URL is PostgreSQL.

pub mod location;
pub mod postgres;
pub mod redb;

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::chain::{ChainHash, GENESIS};
use crate::error::{Error, Result};

pub use location::Location;

/// How many projection snapshots are kept; older ones are pruned as new ones are written.
pub const SNAPSHOTS_KEPT: usize = 8;

pub use self::redb::{
    cache_bytes, set_cache_bytes, DB_FORMAT_OLDEST, DB_FORMAT_VERSION, DEFAULT_CACHE_BYTES,
};

/// The end of the log: the last seq and the chain hash after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: ChainHash,
}

impl Default for Head {
    fn default() -> Head {
        Head::EMPTY
    }
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
    };

    pub(crate) fn to_bytes(self) -> [u8; 40] {
        let mut bytes = [0u8; 40];
        bytes[..8].copy_from_slice(&self.seq.to_le_bytes());
        bytes[8..].copy_from_slice(&self.hash);
        bytes
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Head> {
        let bytes: &[u8; 40] = bytes.try_into().ok()?;
        Some(Head {
            seq: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            hash: bytes[8..].try_into().ok()?,
        })
    }
}

/// Everything one batch writes, atomically: all of it is durable or none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchWrite {
    /// `(first seq, block bytes)`, absent when the batch appended no event.
    pub block: Option<(u64, Vec<u8>)>,
    /// The head the batch starts from: a store that can be written by someone else
    /// (PostgreSQL) appends only if this is still its head.
    pub start: Head,
    pub head: Option<Head>,
    pub secrets: Vec<(u64, String)>,
    /// Key ids whose text is erased, after `secrets` are written (a key may be issued and
    /// retired in one batch): `retire_key_text`.
    pub retired: Vec<u64>,
    pub answers: Vec<(String, Vec<u8>)>,
    /// New Merkle subtree hashes: `(level, index, hash)`.
    pub merkle: Vec<(u8, u64, [u8; 32])>,
    /// The machine and pair index rows of the block's events (`crate::machines`).
    pub index: crate::machines::IndexRows,
}

impl BatchWrite {
    pub fn is_empty(&self) -> bool {
        self.block.is_none()
            && self.secrets.is_empty()
            && self.retired.is_empty()
            && self.answers.is_empty()
    }
}

/// A stored first answer, by the table it was found in.
#[derive(Debug)]
pub enum StoredAnswer {
    /// `first_answers`: the command's digest, then the answer's JSON.
    Scoped(Vec<u8>),
    /// `answers` (written before redb format 3): the answer's JSON, unscoped.
    Legacy(Vec<u8>),
}

/// What a store's last open recovered (see [`Backend::recovery`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The write-ahead file's generation (0: there was none).
    pub generation: u64,
    /// Frames applied (batches that were durable in the write-ahead file only).
    pub applied: u64,
    /// Why reading stopped early, naming the byte offset (a torn or corrupt frame, never
    /// applied), and where the damaged file was kept.
    pub problem: Option<String>,
}

impl Recovery {
    /// What to tell an operator, if anything: the batches replayed, as a note.
    pub fn note(&self) -> Option<String> {
        (self.applied > 0).then(|| {
            format!(
                "write-ahead: {} batches replayed into the ledger on open (durable there only)",
                self.applied
            )
        })
    }

    /// The damage found, as a warning.
    pub fn warning(&self) -> Option<String> {
        self.problem
            .as_ref()
            .map(|problem| format!("warning: write-ahead file: {problem}"))
    }
}

/// A block visitor: `(first seq, block bytes)`, in seq order; `Break` stops the walk.
pub type BlockVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<ControlFlow<()>> + 'a;

/// One row of a ledger's tables, as [`Store::copy_to`] moves it between stores. Blocks go
/// through [`Backend::commit`] instead, so the target checks the chain as it grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Secret(u64, String),
    FirstAnswer(String, Vec<u8>),
    LegacyAnswer(String, Vec<u8>),
    Snapshot(u64, Vec<u8>),
    Token(String, String),
}

/// What a store must do. Both implementations keep the same contract; the suite in
/// `ledger/tests` runs against each (`KEYLEDGER_TEST_PG` for PostgreSQL).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the ledger is, for messages (never a password).
    fn label(&self) -> &str;
    /// The format (redb) or schema (PostgreSQL) version recorded in the store.
    fn format_version(&self) -> Result<u8>;
    /// Marks an older format as this build's, before this build writes to it.
    fn upgrade_format(&self) -> Result<()>;
    /// Whether the store predates the machine index (its rows must be built from the log
    /// before [`Backend::upgrade_format`] marks it).
    fn machine_index_missing(&self) -> Result<bool>;
    /// Whether the stored machine index predates the history rows (redb format < 6,
    /// PostgreSQL schema < 4): [`Backend::upgrade_format`] builds them.
    fn history_index_missing(&self) -> Result<bool>;
    /// Adds machine index rows outside a batch (the upgrade); rows present already are kept.
    fn put_machine_rows(&self, rows: &crate::machines::IndexRows) -> Result<()>;
    /// Whether the pair index holds `pair` (`crate::machines::PairRow`): the writer's answer
    /// to "was this machine activated on this key". `None`: this store keeps no pair index,
    /// and the machine index settles it.
    fn pair_active(&self, _pair: crate::machines::PairRow) -> Result<Option<bool>> {
        Ok(None)
    }
    /// How many pairs [`Backend::for_each_pair`] would visit (`None`: this store keeps no
    /// pair index).
    fn pair_count(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Visits every pair the pair index holds through the head, each at least once
    /// (`false`: this store keeps no pair index, and the log says which pairs there are).
    fn for_each_pair(&self, _visit: &mut dyn FnMut(crate::machines::PairRow)) -> Result<bool> {
        Ok(false)
    }
    /// The ledger's machine hash key (`crate::machines`), made the first time it is asked
    /// for and kept in the store.
    fn machine_hasher(&self) -> Result<crate::machines::MachineHasher>;
    /// The seqs of index rows of hash `h`, after `after`, ascending, at most `limit`: every
    /// event naming a machine of that hash is among them ([`Store::machine_events`] keeps
    /// those that name the one asked for).
    fn machine_seqs(&self, h: u64, after: u64, limit: usize) -> Result<Vec<u64>>;
    /// The stored head (redb: the `head` entry; PostgreSQL: the last block's).
    fn head(&self) -> Result<Head>;
    /// Why an acknowledged commit would not survive the loss of this machine, if it would
    /// not and the store can know better (PostgreSQL without a synchronous standby).
    fn durability_warning(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Makes this handle the ledger's one writer (see [`Store::claim_writer`]).
    fn claim_writer(&self, wait: bool) -> Result<()>;
    /// Writes one batch durably, all or nothing.
    fn commit(&self, batch: &BatchWrite) -> Result<()>;
    /// Starts again after a failed commit: reopens the file, or reconnects (and, for a
    /// writer, claims the ledger again). On failure the store stays closed.
    fn reopen(&self) -> Result<()>;
    /// Visits the blocks from `from_key` on, and answers the head the same read sees.
    fn for_each_block_with_head(&self, from_key: u64, visit: &mut BlockVisitor<'_>)
        -> Result<Head>;
    /// The key of the block holding `seq` and the chain hash before that block.
    fn block_containing(&self, seq: u64) -> Result<Option<(u64, ChainHash)>>;
    fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>>;
    fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>>;
    fn secret(&self, key_id: u64) -> Result<Option<String>>;
    fn for_each_secret(&self, visit: &mut dyn FnMut(u64, &str) -> Result<()>) -> Result<()>;
    fn erase_secret(&self, key_id: u64) -> Result<bool>;
    fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>>;
    fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()>;
    /// The generation of the saved filter of activated pairs that is whole, and its chunks
    /// (`crate::saved_filter`); `None` when none was saved, or the store predates them.
    fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>>;
    /// Chunk `index` of the saved filter of `generation`.
    fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>>;
    /// Writes chunk `index` of a saved filter of `generation`, not yet whole (nor durable by
    /// itself). Derived data, written beside the writer's batches, never with them.
    fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()>;
    /// Names `generation`, of `chunks` chunks, the saved filter that is whole, durably, and
    /// removes every other generation's chunks: a crash before leaves the one before.
    fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()>;
    fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>>;
    fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>>;
    fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()>;
    fn token_principal(&self, digest_hex: &str) -> Result<Option<String>>;
    fn revoke_tokens(&self, digest_hex: Option<&str>, principal: Option<&str>) -> Result<usize>;
    /// Durable consumers (`crate::consumer`): one record a name, in name order.
    fn consumer_records(&self) -> Result<Vec<(String, Vec<u8>)>>;
    fn consumer_record(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a new consumer's record; `false` when the name is taken.
    fn insert_consumer(&self, name: &str, record: &[u8]) -> Result<bool>;
    /// Replaces the record if it is still `old` (compare-and-set); `false` otherwise. Not
    /// `durable`: the change may be lost in a crash until the next durable commit (redb
    /// makes it durable at the log's next checkpoint; PostgreSQL commits every change durably).
    fn replace_consumer(&self, name: &str, old: &[u8], new: &[u8], durable: bool) -> Result<bool>;
    fn delete_consumer(&self, name: &str) -> Result<bool>;
    /// Every row outside the blocks and the Merkle nodes, table by table (for `copy`).
    fn for_each_row(&self, visit: &mut dyn FnMut(Row) -> Result<()>) -> Result<()>;
    /// Writes rows [`Backend::for_each_row`] produced (for `copy`, into a new ledger).
    fn put_rows(&self, rows: &[Row]) -> Result<()>;
    /// Alters a stored block outside any command (tamper tests only).
    fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()>;
    /// Alters a stored key text outside any command (tamper tests only).
    fn tamper_secret(&self, key_id: u64, text: Option<&str>) -> Result<()>;
    /// What opening found to recover (redb: the write-ahead file's frames replayed, and any
    /// torn or corrupt frame not applied); PostgreSQL recovers by itself.
    fn recovery(&self) -> Recovery {
        Recovery::default()
    }
    /// Shrinks the store to its live data, where that means anything (redb's file).
    fn compact(&self) -> Result<()>;
    /// Bytes the ledger takes in its store: the file (redb), or the `keyledger` schema's
    /// tables with their indexes and TOAST (PostgreSQL).
    fn stored_bytes(&self) -> Result<u64>;
    /// Bytes of the store's page cache in this process now (redb; PostgreSQL caches in
    /// its server: 0). Bounded by `--cache-mib`.
    fn page_cache_bytes(&self) -> u64 {
        0
    }
}

/// An open ledger store. Clones share it: the writer commits through one, readers (reports,
/// the HTTP service) read through others.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Creates a new, empty ledger; refuses a place that holds one already.
    pub fn create(at: impl Into<Location>) -> Result<Store> {
        match at.into() {
            Location::File(path) => Ok(Store::from(redb::RedbStore::create(&path)?)),
            Location::Postgres(url) => Ok(Store::from(postgres::PgStore::create(&url)?)),
        }
    }

    /// Opens an existing ledger and checks its format version.
    pub fn open(at: impl Into<Location>) -> Result<Store> {
        match at.into() {
            Location::File(path) => Ok(Store::from(redb::RedbStore::open(&path)?)),
            Location::Postgres(url) => Ok(Store::from(postgres::PgStore::open(&url)?)),
        }
    }

    /// Opens (creating if empty) a ledger on any redb backend; used by fault-injection tests.
    /// `backend` is called again by [`Store::reopen`] for a fresh backend on the same file.
    pub fn with_backend<B: ::redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        label: &str,
    ) -> Result<Store> {
        Ok(Store::from(redb::RedbStore::with_backend(backend, label)?))
    }

    /// [`Store::with_backend`] with the write-ahead file beside `ledger` and failures
    /// injected into its steps (see [`redb::RedbStore::with_backend_and_wal`]).
    pub fn with_backend_and_wal<B: ::redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        ledger: &std::path::Path,
        checkpoint_every: u64,
        faults: redb::wal::WalFaults,
        hash_key: Option<[u8; 16]>,
    ) -> Result<Store> {
        Ok(Store::from(redb::RedbStore::with_backend_and_wal(
            backend,
            ledger,
            checkpoint_every,
            faults,
            hash_key,
        )?))
    }

    pub fn label(&self) -> &str {
        self.backend.label()
    }

    pub fn format_version(&self) -> Result<u8> {
        self.backend.format_version()
    }

    /// Brings an older store to this build's format: builds the machine index from the
    /// blocks if the store predates it (in chunks; an interrupted build is redone, rows
    /// present are kept), then marks the format.
    pub fn upgrade_format(&self) -> Result<()> {
        if self.backend.machine_index_missing()? {
            let hasher = self.backend.machine_hasher()?;
            let mut rows = crate::machines::IndexRows::default();
            self.for_each_block(0, |first, bytes| {
                let more = hasher.rows_of_block(first, bytes)?;
                rows.extend(&more);
                if rows.len() >= 100_000 {
                    self.backend.put_machine_rows(&std::mem::take(&mut rows))?;
                }
                Ok(ControlFlow::Continue(()))
            })?;
            self.backend.put_machine_rows(&rows)?;
        }
        self.backend.upgrade_format()
    }

    /// The events naming machine (or KMS host or client) `name` among the next `limit`
    /// the index names after seq `after`, and, when that filled the page, the last seq it
    /// looked at (`after` for the next page). A store that predates the index is indexed
    /// first.
    pub fn machine_events(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<(crate::machines::SeqEvents, Option<u64>)> {
        if self.backend.machine_index_missing()? {
            self.upgrade_format()?;
        }
        self.indexed_machine_events(name, after, limit)
    }

    /// [`Store::machine_events`] of a store known to be indexed (the writer's: it upgrades
    /// the store when it opens it), without asking again on every lookup.
    pub(crate) fn indexed_machine_events(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<(crate::machines::SeqEvents, Option<u64>)> {
        let h = self.backend.machine_hasher()?.hash(name);
        let candidates = self.backend.machine_seqs(h, after, limit)?;
        let mut events = crate::machines::events_at(self, &candidates)?;
        events.retain(|(_, event)| event.body.machine_names().contains(&name));
        let next = (candidates.len() >= limit)
            .then(|| candidates.last().copied())
            .flatten();
        Ok((events, next))
    }

    /// Candidates for the events that name `named` ([`keyledger_core::EventBody::named`])
    /// after seq `after`: ascending, at most `limit`, every such event among them; a reader
    /// keeps those that do name it (a 64-bit hash may be shared). A store whose index
    /// predates the history rows is upgraded first.
    pub fn named_seqs(
        &self,
        named: &keyledger_core::Named<'_>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        if self.backend.history_index_missing()? {
            self.upgrade_format()?;
        }
        let h = self.backend.machine_hasher()?.named(named);
        self.backend.machine_seqs(h, after, limit)
    }

    /// The key machine names are hashed with in this ledger's index.
    pub fn machine_hasher(&self) -> Result<crate::machines::MachineHasher> {
        self.backend.machine_hasher()
    }

    /// See [`Backend::pair_active`].
    pub(crate) fn pair_active(&self, pair: crate::machines::PairRow) -> Result<Option<bool>> {
        self.backend.pair_active(pair)
    }

    /// See [`Backend::pair_count`].
    pub(crate) fn pair_count(&self) -> Result<Option<u64>> {
        self.backend.pair_count()
    }

    /// See [`Backend::for_each_pair`].
    pub(crate) fn for_each_pair(
        &self,
        visit: &mut dyn FnMut(crate::machines::PairRow),
    ) -> Result<bool> {
        self.backend.for_each_pair(visit)
    }

    /// The seqs of the events naming `name` after `after`: [`Store::machine_events`]'
    /// seqs, over as many pages as it takes.
    pub fn machine_seqs(&self, name: &str, after: u64, limit: usize) -> Result<Vec<u64>> {
        let (mut seqs, mut after) = (Vec::new(), after);
        while seqs.len() < limit {
            let (events, last) = self.machine_events(name, after, limit - seqs.len())?;
            seqs.extend(events.into_iter().map(|(seq, _)| seq));
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
        Ok(seqs)
    }

    /// Makes this store the ledger's only writer before the engine folds the log: a redb
    /// file is locked by the process that opened it already; on PostgreSQL the writer takes
    /// the ledger's writer lock and a new epoch, which fences every earlier writer out.
    /// With `wait` it waits for a running writer to stop, else it refuses at once.
    pub fn claim_writer(&self, wait: bool) -> Result<()> {
        self.backend.claim_writer(wait)
    }

    /// Writes one batch durably: the block, the new head, secrets and answers commit
    /// together or not at all.
    pub fn commit(&self, batch: &BatchWrite) -> Result<()> {
        self.backend.commit(batch)
    }

    /// See [`Backend::reopen`].
    pub fn reopen(&self) -> Result<()> {
        self.backend.reopen()
    }

    /// Compacts the store to its live data (redb grows files ahead of need).
    pub fn compact(self) -> Result<Store> {
        self.backend.compact()?;
        Ok(self)
    }

    /// The stored head. A head that does not parse is corruption at seq 0.
    pub fn head(&self) -> Result<Head> {
        self.backend.head()
    }

    /// See [`Backend::durability_warning`]; `serve` prints it at start.
    pub fn durability_warning(&self) -> Result<Option<String>> {
        self.backend.durability_warning()
    }

    /// Calls `visit(first_seq_key, block_bytes)` for each block whose key is `>= from_key`,
    /// in seq order, as one consistent read.
    pub fn for_each_block(
        &self,
        from_key: u64,
        visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        self.for_each_block_with_head(from_key, visit).map(|_| ())
    }

    /// [`Store::for_each_block`], and the head as the same read sees it.
    pub fn for_each_block_with_head(
        &self,
        from_key: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<Head> {
        self.backend.for_each_block_with_head(from_key, &mut visit)
    }

    /// The key of the block holding `seq` (the greatest first seq `<= seq`), and the chain
    /// hash before that block (the previous block's head, or genesis).
    pub fn block_containing(&self, seq: u64) -> Result<Option<(u64, ChainHash)>> {
        self.backend.block_containing(seq)
    }

    /// The bytes of the block stored under `key` (its first seq), as stored.
    pub fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.backend.block_bytes(key)
    }

    /// The last block's bytes, for the tail check at open.
    pub fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.backend.last_block()
    }

    pub fn secret(&self, key_id: u64) -> Result<Option<String>> {
        self.backend.secret(key_id)
    }

    /// Calls `visit(key_id, text)` for every stored key text, in key id order.
    pub fn for_each_secret(&self, mut visit: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
        self.backend.for_each_secret(&mut visit)
    }

    /// A key's stored text, checked against the fingerprint its `key_issued` event recorded:
    /// `None` if it was erased, an error if it does not match (never handed out then).
    pub fn checked_secret(
        &self,
        key_id: u64,
        fingerprint: &keyledger_core::Fingerprint,
    ) -> Result<Option<String>> {
        let Some(text) = self.secret(key_id)? else {
            return Ok(None);
        };
        match crate::secrets::check_fingerprint(&text, fingerprint) {
            Ok(_) => Ok(Some(text)),
            Err(why) => Err(crate::error::Corruption::Secret {
                key_id,
                seq: 0,
                why: why.to_string(),
            }
            .into()),
        }
    }

    /// Erases a key's text; the chain is untouched (docs/rules.md, "Key text").
    pub fn erase_secret(&self, key_id: u64) -> Result<bool> {
        self.backend.erase_secret(key_id)
    }

    /// The stored first answer of a command, in one read: under its idempotency `key`
    /// (digest + JSON), else under its bare `command_id` (redb format 2: JSON).
    pub fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>> {
        self.backend.first_answer(key, command_id)
    }

    /// Stores a projection snapshot taken at `seq`, keeping the newest [`SNAPSHOTS_KEPT`].
    pub fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.backend.put_snapshot(seq, bytes)
    }

    /// The saved filter of activated pairs, if one was saved (see [`crate::saved_filter`]),
    /// in the chunks the store keeps it in, all read (tests; a start reads a chunk at a time).
    pub fn saved_filter(&self) -> Result<Option<Vec<Vec<u8>>>> {
        let Some((generation, chunks)) = self.saved_filter_whole()? else {
            return Ok(None);
        };
        let read = (0..chunks).map(|index| self.saved_filter_chunk(generation, index));
        Ok(Some(
            read.collect::<Result<Option<Vec<_>>>>()?
                .unwrap_or_default(),
        ))
    }

    /// See [`Backend::saved_filter_whole`].
    pub fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>> {
        self.backend.saved_filter_whole()
    }

    /// See [`Backend::saved_filter_chunk`].
    pub fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>> {
        self.backend.saved_filter_chunk(generation, index)
    }

    /// The generation of the saved filter that is whole (0: none).
    pub fn saved_filter_generation(&self) -> Result<u64> {
        Ok(self.saved_filter_whole()?.map_or(0, |(g, _)| g))
    }

    /// See [`Backend::put_saved_filter_chunk`].
    pub fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()> {
        self.backend
            .put_saved_filter_chunk(generation, index, bytes)
    }

    /// See [`Backend::finish_saved_filter`].
    pub fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()> {
        self.backend.finish_saved_filter(generation, chunks)
    }

    /// Replaces the saved filter with `bytes`, as a new generation (tests put damaged bytes
    /// here to see them refused; a writer saves [`crate::saved_filter::SaveCursor`]'s pieces).
    pub fn put_saved_filter(&self, bytes: &[u8]) -> Result<()> {
        let pieces = bytes.chunks(crate::saved_filter::PIECE_BYTES);
        self.put_saved_filter_pieces(pieces.map(|piece| Ok(piece.to_vec())))
    }

    /// Writes `pieces` as the chunks of a new generation, then names it whole: the saved
    /// filter is replaced, or (on an error) the one before stays.
    pub fn put_saved_filter_pieces(
        &self,
        pieces: impl IntoIterator<Item = Result<Vec<u8>>>,
    ) -> Result<()> {
        let generation = self.saved_filter_generation()? + 1;
        let mut chunks = 0;
        for piece in pieces {
            self.put_saved_filter_chunk(generation, chunks, &piece?)?;
            chunks += 1;
        }
        self.finish_saved_filter(generation, chunks)
    }

    /// The newest snapshot taken at or below `seq`.
    pub fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>> {
        self.backend.snapshot_at_or_below(seq)
    }

    /// A stored Merkle subtree hash.
    pub fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>> {
        self.backend.merkle_node(level, index)
    }

    /// The raw bytes of `count` records from `first_seq` (no decoding, no chain check: the
    /// Merkle proofs that read them are checked against a signed root instead).
    pub fn records(&self, first_seq: u64, count: u64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
        let Some((start_key, _)) = self.block_containing(first_seq)? else {
            return Ok(out);
        };
        let end = first_seq.saturating_add(count);
        self.for_each_block(start_key, |key, bytes| {
            let block = crate::block::Block::parse(bytes).map_err(|e| {
                crate::error::Corruption::Undecodable {
                    seq: key,
                    why: e.to_string(),
                }
            })?;
            for (i, record) in block.records().enumerate() {
                let seq = key + i as u64;
                if seq >= first_seq && seq < end {
                    out.push(record.to_vec());
                }
            }
            Ok(if block.last_seq() + 1 >= end {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    /// Stores a new durable consumer; `false` when one of that name exists.
    pub fn create_consumer(&self, consumer: &crate::consumer::Consumer) -> Result<bool> {
        // A PostgreSQL schema from before consumers gets their table (schema 3) first.
        self.upgrade_format()?;
        self.backend
            .insert_consumer(&consumer.name, &consumer.to_bytes())
    }

    /// Every durable consumer, in name order.
    pub fn consumers(&self) -> Result<Vec<crate::consumer::Consumer>> {
        self.backend
            .consumer_records()?
            .iter()
            .map(|(name, bytes)| crate::consumer::Consumer::from_bytes(name, bytes))
            .collect()
    }

    pub fn consumer(&self, name: &str) -> Result<Option<crate::consumer::Consumer>> {
        self.backend
            .consumer_record(name)?
            .map(|bytes| crate::consumer::Consumer::from_bytes(name, &bytes))
            .transpose()
    }

    /// Changes a consumer with `change` (read, changed, compared and set; retried when
    /// another process changed it in between); `None` when there is no such consumer.
    pub fn update_consumer(
        &self,
        name: &str,
        change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        self.change_consumer(name, true, change)
    }

    /// `update_consumer` for a webhook's progress, which a crash may take back to the last
    /// durable commit: the events after it are delivered again (at least once), and no
    /// delivery costs the writer an fsync of its own.
    pub fn advance_consumer(
        &self,
        name: &str,
        change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        self.change_consumer(name, false, change)
    }

    fn change_consumer(
        &self,
        name: &str,
        durable: bool,
        mut change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        for _ in 0..64 {
            let Some(old) = self.backend.consumer_record(name)? else {
                return Ok(None);
            };
            let mut consumer = crate::consumer::Consumer::from_bytes(name, &old)?;
            change(&mut consumer);
            let new = consumer.to_bytes();
            if new == old || self.backend.replace_consumer(name, &old, &new, durable)? {
                return Ok(Some(consumer));
            }
        }
        Err(crate::error::Error::Storage(format!(
            "consumer {name:?} kept changing under 64 updates in a row"
        )))
    }

    pub fn delete_consumer(&self, name: &str) -> Result<bool> {
        self.backend.delete_consumer(name)
    }

    /// Stores an API token's digest for `principal`.
    pub fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()> {
        self.backend.put_token(digest_hex, principal)
    }

    /// The principal a token digest stands for, if it is known and not revoked.
    pub fn token_principal(&self, digest_hex: &str) -> Result<Option<String>> {
        self.backend.token_principal(digest_hex)
    }

    /// Revokes one token (by digest) or every token of a principal; answers how many.
    pub fn revoke_tokens(
        &self,
        digest_hex: Option<&str>,
        principal: Option<&str>,
    ) -> Result<usize> {
        self.backend.revoke_tokens(digest_hex, principal)
    }

    /// Overwrites a block's bytes in place. Only tamper tests use this: it is how an
    /// attacker with write access to the store would alter history.
    #[doc(hidden)]
    pub fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()> {
        self.backend.tamper_block(key, bytes)
    }

    /// Sets (or, with `None`, removes) a key's stored text outside any command. Only tamper
    /// tests use this: it is how someone with write access would alter a secret.
    #[doc(hidden)]
    pub fn tamper_secret(&self, key_id: u64, text: Option<&str>) -> Result<()> {
        self.backend.tamper_secret(key_id, text)
    }

    /// BLAKE3 over the ledger's content, read through this API and so the same on either
    /// store for the same ledger: every block, the head, every row `copy` moves (key texts,
    /// first answers, snapshots, tokens), the durable consumers and every stored Merkle node.
    /// Derived data (the indexes, the saved filter, format bytes) is left out. Equal digests
    /// mean the same ledger: a refused batch left it as it was, a copy is the ledger.
    pub fn content_digest(&self) -> Result<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        let mut feed = |name: &str, key: &[u8], value: &[u8]| {
            for part in [name.as_bytes(), key, value] {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        };
        let head = self.for_each_block_with_head(0, |key, bytes| {
            feed("blocks", &key.to_le_bytes(), bytes);
            Ok(ControlFlow::Continue(()))
        })?;
        feed("head", b"head", &head.to_bytes());
        self.backend.for_each_row(&mut |row| {
            match &row {
                Row::Secret(k, v) => feed("secrets", &k.to_le_bytes(), v.as_bytes()),
                Row::FirstAnswer(k, v) => feed("first_answers", k.as_bytes(), v),
                Row::LegacyAnswer(k, v) => feed("answers", k.as_bytes(), v),
                Row::Snapshot(k, v) => feed("snapshots", &k.to_le_bytes(), v),
                Row::Token(k, v) => feed("tokens", k.as_bytes(), v.as_bytes()),
            }
            Ok(())
        })?;
        for (name, record) in self.backend.consumer_records()? {
            feed("consumers", name.as_bytes(), &record);
        }
        // Stored nodes are the perfect subtrees of 2^level leaves, level 8 up (`crate::tree`).
        for level in (8u8..64).take_while(|level| head.seq >> level > 0) {
            for index in 0..head.seq >> level {
                // An absent node is content too (it differs from any hash).
                let node = self.merkle_node(level, index)?;
                let key = [&[level][..], &index.to_le_bytes()].concat();
                feed("merkle", &key, node.as_ref().map_or(&[][..], |n| &n[..]));
            }
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// See [`Backend::recovery`].
    pub fn recovery(&self) -> Recovery {
        self.backend.recovery()
    }

    /// See [`Backend::stored_bytes`] (capacity planning).
    pub fn stored_bytes(&self) -> Result<u64> {
        self.backend.stored_bytes()
    }

    /// See [`Backend::page_cache_bytes`] (capacity planning, metrics).
    pub fn page_cache_bytes(&self) -> u64 {
        self.backend.page_cache_bytes()
    }

    /// All block keys, in order (tamper tests and verification reports).
    pub fn block_keys(&self) -> Result<Vec<u64>> {
        let mut keys = Vec::new();
        self.for_each_block(0, |key, _| {
            keys.push(key);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(keys)
    }

    /// Copies this whole ledger into `target`, a new, empty one: every block with its
    /// Merkle nodes (re-derived, so the target's tree is its own), then key texts, answers,
    /// snapshots and tokens. `progress(seq)` after each block. Answers the copied head;
    /// the caller checks the target's (`copy` verifies both).
    pub fn copy_to(&self, target: &Store, mut progress: impl FnMut(u64)) -> Result<Head> {
        if target.head()? != Head::EMPTY {
            return Err(Error::Exists(target.label().to_owned()));
        }
        target.claim_writer(false)?;
        let hasher = target.machine_hasher()?;
        let mut start = Head::EMPTY;
        let mut frontier = crate::tree::Frontier::default();
        let head = self.for_each_block_with_head(0, |key, bytes| {
            let block = crate::block::Block::parse(bytes).map_err(|e| {
                crate::error::Corruption::Undecodable {
                    seq: key,
                    why: e.to_string(),
                }
            })?;
            let mut merkle = Vec::new();
            for record in block.records() {
                frontier.push(record, &mut merkle);
            }
            let head = Head {
                seq: block.last_seq(),
                hash: block.head,
            };
            // The machine index is derived, not copied: it is built for the target's blocks.
            let index = hasher.rows_of_block(key, bytes)?;
            target.commit(&BatchWrite {
                block: Some((key, bytes.to_vec())),
                start,
                head: Some(head),
                merkle,
                index,
                ..BatchWrite::default()
            })?;
            start = head;
            progress(head.seq);
            Ok(ControlFlow::Continue(()))
        })?;
        let mut rows = Vec::new();
        self.backend.for_each_row(&mut |row| {
            rows.push(row);
            if rows.len() == 1024 {
                target.backend.put_rows(&std::mem::take(&mut rows))?;
            }
            Ok(())
        })?;
        target.backend.put_rows(&rows)?;
        // Durable consumers go along with their positions (their seqs are the same there).
        for consumer in self.consumers()? {
            target.create_consumer(&consumer)?;
        }
        Ok(head)
    }
}

impl<B: Backend + 'static> From<B> for Store {
    fn from(backend: B) -> Store {
        Store {
            backend: Arc::new(backend),
        }
    }
}
