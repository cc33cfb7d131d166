//! The contract every store keeps ([`Backend`]), and the values that cross it: the head of
//! the log, one batch's writes, stored answers, what an open recovered, rows of a copy.

use std::ops::ControlFlow;

use crate::chain::{ChainHash, GENESIS};
use crate::error::Result;

/// How many projection snapshots are kept; older ones are pruned as new ones are written.
pub const SNAPSHOTS_KEPT: usize = 8;

/// The end of the log: the last seq and the chain hash after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The last seq in the log (0: empty).
    pub seq: u64,
    /// The chain hash after that event (the genesis hash when empty).
    pub hash: ChainHash,
}

impl Default for Head {
    fn default() -> Head {
        Head::EMPTY
    }
}

impl Head {
    /// The head of an empty log.
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
    /// The new end of the log, when the batch has a block.
    pub head: Option<Head>,
    /// Key texts of keys the batch issued, by key id (outside the chain).
    pub secrets: Vec<(u64, String)>,
    /// Key ids whose text is erased, after `secrets` are written (a key may be issued and
    /// retired in one batch): `retire_key_text`.
    pub retired: Vec<u64>,
    /// First answers of commands with a `command_id`, by scoped key (for resends).
    pub answers: Vec<(String, Vec<u8>)>,
    /// New Merkle subtree hashes: `(level, index, hash)`.
    pub merkle: Vec<(u8, u64, [u8; 32])>,
    /// The machine and pair index rows of the block's events (`crate::machines`).
    pub index: crate::machines::IndexRows,
}

impl BatchWrite {
    /// Whether the batch writes nothing.
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

/// One row of a ledger's tables, as [`crate::Store::copy_to`] moves it between stores. Blocks go
/// through [`Backend::commit`] instead, so the target checks the chain as it grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// A key's stored text, by key id.
    Secret(u64, String),
    /// A command's first answer, by its scoped key.
    FirstAnswer(String, Vec<u8>),
    /// A first answer kept under an older, unscoped key.
    LegacyAnswer(String, Vec<u8>),
    /// A projection snapshot, by its seq.
    Snapshot(u64, Vec<u8>),
    /// An API token, by its digest, and its principal.
    Token(String, String),
}

/// What a store must do. Both implementations keep the same contract; the suite in
/// `ledger/tests` runs against each (`KEYLEDGER_TEST_PG` for PostgreSQL).
#[warn(missing_docs)]
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
    /// event naming a machine of that hash is among them ([`crate::Store::machine_events`] keeps
    /// those that name the one asked for).
    fn machine_seqs(&self, h: u64, after: u64, limit: usize) -> Result<Vec<u64>>;
    /// The stored head (redb: the `head` entry; PostgreSQL: the last block's).
    fn head(&self) -> Result<Head>;
    /// Why an acknowledged commit would not survive the loss of this machine, if it would
    /// not and the store can know better (PostgreSQL without a synchronous standby).
    fn durability_warning(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Makes this handle the ledger's one writer (see [`crate::Store::claim_writer`]).
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
    /// The bytes of the block stored under `key` (its first seq).
    fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>>;
    /// The last block and its key, if any.
    fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>>;
    /// The stored text of key `key_id`, if kept (outside the chain).
    fn secret(&self, key_id: u64) -> Result<Option<String>>;
    /// Every stored key text, by key id.
    fn for_each_secret(&self, visit: &mut dyn FnMut(u64, &str) -> Result<()>) -> Result<()>;
    /// Erases a key's stored text; whether there was one.
    fn erase_secret(&self, key_id: u64) -> Result<bool>;
    /// The first answer of `command_id` under scoped key `key`, from either answers table.
    fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>>;
    /// Stores a projection snapshot taken at `seq` (pruned to `SNAPSHOTS_KEPT`).
    fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()>;
    /// The generation of the saved filter of activated pairs that is whole, and its chunks
    /// (`keyledger_ledger::saved_filter`); `None` when none was saved, or the store predates them.
    fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>>;
    /// Chunk `index` of the saved filter of `generation`.
    fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>>;
    /// Writes chunk `index` of a saved filter of `generation`, not yet whole (nor durable by
    /// itself). Derived data, written beside the writer's batches, never with them.
    fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()>;
    /// Names `generation`, of `chunks` chunks, the saved filter that is whole, durably, and
    /// removes every other generation's chunks: a crash before leaves the one before.
    fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()>;
    /// The newest snapshot at or below `seq`, and its seq.
    fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>>;
    /// The stored Merkle node of the perfect subtree `index` at `level` (levels 8 up).
    fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>>;
    /// Stores an API token's digest and its principal.
    fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()>;
    /// The principal of the token with this digest, if not revoked.
    fn token_principal(&self, digest_hex: &str) -> Result<Option<String>>;
    /// Revokes the tokens with this digest and/or of this principal; how many.
    fn revoke_tokens(&self, digest_hex: Option<&str>, principal: Option<&str>) -> Result<usize>;
    /// Durable consumers (`crate::consumer`): one record a name, in name order.
    fn consumer_records(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// The durable consumer record of `name`, if any.
    fn consumer_record(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a new consumer's record; `false` when the name is taken.
    fn insert_consumer(&self, name: &str, record: &[u8]) -> Result<bool>;
    /// Replaces the record if it is still `old` (compare-and-set); `false` otherwise. Not
    /// `durable`: the change may be lost in a crash until the next durable commit (redb
    /// makes it durable at the log's next checkpoint; PostgreSQL commits every change durably).
    fn replace_consumer(&self, name: &str, old: &[u8], new: &[u8], durable: bool) -> Result<bool>;
    /// Deletes a durable consumer; whether it existed.
    fn delete_consumer(&self, name: &str) -> Result<bool>;
    /// Every row outside the blocks and the Merkle nodes, table by table (for `copy`).
    fn for_each_row(&self, visit: &mut dyn FnMut(Row) -> Result<()>) -> Result<()>;
    /// Writes rows [`Backend::for_each_row`] produced (for `copy`, into a new ledger).
    fn put_rows(&self, rows: &[Row]) -> Result<()>;
    /// Alters a stored block outside any command (tamper tests only).
    #[cfg(feature = "tamper")]
    fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()>;
    /// Alters a stored key text outside any command (tamper tests only).
    #[cfg(feature = "tamper")]
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
