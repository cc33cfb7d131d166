//! `ledger::Error`: storage, corruption and limit failures. Business refusals are not errors
//! here; they are answers (`core::Refusal`).

/// Where verification found the log broken, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The chain recomputed over a block's records differs from the head stored with the
    /// block: a record in `first_seq..=last_seq` was altered. Only block heads are stored,
    /// so the block is the finest place the chain alone can name.
    #[error("chain hash mismatch in the block of seqs {first_seq}..={last_seq}")]
    BadHash { first_seq: u64, last_seq: u64 },
    /// A block starts at a seq other than the one after the previous block.
    #[error("gap or reorder: expected seq {expected}, block starts at {found}")]
    Gap { expected: u64, found: u64 },
    /// A block's table key disagrees with the first seq inside it (blocks swapped).
    #[error("block stored under seq {key} says it starts at seq {found}")]
    Misplaced { key: u64, found: u64 },
    /// The bytes of a block or record cannot be decoded.
    #[error("undecodable at seq {seq}: {why}")]
    Undecodable { seq: u64, why: String },
    /// The head says the log ends at `head_seq` but blocks end at `blocks_end`.
    #[error("missing block: the head names seq {head_seq} but the blocks end at seq {blocks_end}")]
    MissingBlock { head_seq: u64, blocks_end: u64 },
    /// The head's chain hash differs from the last block's.
    #[error("the stored head disagrees with the chain at seq {seq}")]
    HeadMismatch { seq: u64 },
    /// A key's stored text does not match what its `key_issued` event (at `seq`) recorded,
    /// is missing, or belongs to no issued key (`seq` 0).
    #[error("key {key_id}: {why}")]
    Secret { key_id: u64, seq: u64, why: String },
    /// A `streams_committed` event (at `seq`) does not commit to the streams of the events
    /// before it (docs/format.md, "Streams").
    #[error("the streams commitment at seq {seq}: {why}")]
    Streams { seq: u64, why: String },
}

impl Corruption {
    /// The first seq the corruption affects.
    pub fn seq(&self) -> u64 {
        match self {
            Corruption::BadHash { first_seq, .. } => *first_seq,
            Corruption::Undecodable { seq, .. } => *seq,
            Corruption::Gap { expected, .. } => *expected,
            Corruption::Misplaced { key, .. } => *key,
            Corruption::MissingBlock { blocks_end, .. } => blocks_end + 1,
            Corruption::HeadMismatch { seq } => *seq,
            Corruption::Secret { seq, .. } => *seq,
            Corruption::Streams { seq, .. } => *seq,
        }
    }
}

/// Everything that can go wrong below the rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed: redb (I/O, a full disk, a failed fsync) or PostgreSQL (a lost
    /// connection, a server error, a commit it could not confirm).
    #[error("storage: {0}")]
    Storage(String),
    /// The log is not what it should be.
    #[error("corrupt log: {0}")]
    Corrupt(#[from] Corruption),
    /// The database was written by a format this build does not read.
    #[error("{path}: format version {found}; this build reads format versions 1 to {expected}")]
    FormatVersion {
        path: String,
        found: u8,
        expected: u8,
    },
    /// The file is not a keyledger database.
    #[error("{0}: not a keyledger database (no format version); run `keyledger init` first")]
    NotALedger(String),
    /// The database does not exist.
    #[error("{0}: no ledger here; run `keyledger init --operator NAME` first")]
    Missing(String),
    /// The database exists already.
    #[error("{0}: a ledger exists here already")]
    Exists(String),
    /// An event encodes to more bytes than `keyledger_ledger::Limits::record_bytes_max`.
    #[error("an event of {bytes} bytes exceeds the limit of {limit} bytes per record")]
    RecordTooLarge { bytes: usize, limit: usize },
    /// A submission names more commands than one batch may hold.
    #[error("{count} commands exceed the limit of {limit} commands per batch")]
    BatchTooLarge { count: usize, limit: usize },
    /// The writer's queue is full (backpressure) or the writer has stopped.
    #[error("the writer is not accepting commands: {0}")]
    Unavailable(&'static str),
    /// The batch this command was part of failed to commit, so nothing of it is
    /// acknowledged. A failed write leaves nothing of the batch in the log; after a failed
    /// fsync the file may hold it anyway (the kernel wrote the pages), which the engine's
    /// recovery then reads back: a resend with the same `command_id` tells which.
    #[error(
        "commit failed, the batch is not acknowledged: {0} (after a failed fsync it may still \
         be in the log: resend with the same command_id to get its first answer)"
    )]
    CommitFailed(String),
    /// A commit failed and the store could not be recovered yet: the engine refuses batches
    /// and retries the recovery (once the disk accepts writes again, it goes on by itself).
    #[error("the ledger is not writing after a storage failure ({0}); it retries by itself")]
    Poisoned(String),
    /// The writer thread died, or stopped, before answering (HTTP 503 `writer_stopped`).
    #[error("the writer has stopped: {0}")]
    WriterStopped(String),
    /// Another writer holds the ledger (PostgreSQL's writer lock), and this one was told
    /// not to wait for it.
    #[error("{0}")]
    WriterBusy(String),
    /// This writer's append was refused: another writer took over the ledger (a newer
    /// epoch), or the stored log no longer ends where this writer's state does.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A `--data` value that names no store (a malformed PostgreSQL URL, an empty path).
    #[error("--data {0}")]
    BadLocation(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An error and what caused it, as one line: many libraries' own text leaves the cause out
/// (tokio-postgres's "error performing TLS handshake", an HTTP client's "request failed"),
/// and the cause is what an operator must read ("invalid peer certificate:
/// NotValidForName", "server does not support TLS").
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = next.source();
    }
    text
}

impl Error {
    pub(crate) fn storage(err: impl std::fmt::Display) -> Error {
        Error::Storage(err.to_string())
    }
}

macro_rules! storage_from {
    ($($t:ty),+) => {$(
        impl From<$t> for Error {
            fn from(err: $t) -> Error {
                Error::storage(err)
            }
        }
    )+};
}

storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
