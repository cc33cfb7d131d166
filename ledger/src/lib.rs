//! keyledger's log: an append-only, BLAKE3-hash-chained sequence of events on redb.
//!
//! The one design decision: a single writer owns the decision state and the write side of
//! the database, and commits whatever commands are queued as one block in one durable redb
//! transaction (group commit). One writer makes every decision see every earlier one, so no
//! race can over-activate a key; one block per batch makes a batch of 1,000 activations cost
//! about one fsync. Answers are released only after the commit is durable.
//!
//! Layers, bottom up: [`codec`] (event ↔ record bytes), [`chain`] (the hash chain),
//! [`block`] (a batch's records as one value, stored or LZ4), [`store`] (the redb tables),
//! [`walk`](mod@walk) (checked reads and `verify`), [`hashing`] (chain and tree hashing beside
//! the decisions), [`engine`] (begin → add → seal → commit → settle), [`writer`] (the thread,
//! its queue and the commit pipeline), [`export`] (JSON Lines for auditors), [`wire`]
//! (commands as JSON), [`merkle`] and [`tree`] (RFC 6962 tree hashes, the stored tree),
//! [`checkpoint`] and [`proof`] (signed checkpoints and proof files).
#![forbid(unsafe_code)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

pub mod activated;
pub mod answer;
pub mod block;
pub mod chain;
pub mod checkpoint;
pub mod codec;
pub mod consumer;
pub mod engine;
pub mod error;
pub mod export;
pub mod fingerprints;
pub mod hashing;
pub mod health;
pub mod idempotency;
pub mod machines;
pub mod merkle;
pub mod pair_facts;
pub mod prefetch;
pub mod proof;
pub mod resume;
pub mod saved_filter;
pub mod secrets;
pub mod store;
pub mod tree;
pub mod walk;
pub mod wire;
pub mod writer;

pub use answer::{Answer, AnswerText};
pub use engine::{Committed, Engine, Submission};
pub use error::{Corruption, Error, Result};
pub use health::Health;
pub use store::{Head, Location, Store};
pub use walk::{verify, walk, LoggedRecord, VerifyReport};
pub use writer::{AnswerReceiver, Writer, WriterHandle};

/// Bounds on everything that grows in the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Commands decided and committed together as one block.
    pub batch_commands_max: usize,
    /// Submissions waiting for the writer; a full queue is backpressure.
    pub queue_depth: usize,
    /// Bytes of one encoded event.
    pub record_bytes_max: usize,
    /// Batches of at least this many commands commit on a separate thread while the writer
    /// decides the next batch; smaller ones commit on the writer thread itself. Not a limit
    /// on input: a tuning point measured on the benches (see `writer`).
    pub pipeline_from_commands: usize,
    /// Where the writer keeps which machines are active on which key: `true` (the default),
    /// on disk (the pair index, behind a filter of about 1.2 bytes a machine and a cache of
    /// `machine_cache_pairs`): memory stays bounded however long the history, and a machine
    /// activated again after it left the cache costs one index lookup; `false`, all of them
    /// in memory (about 100 bytes a machine ever activated), for a short-lived ledger.
    pub machine_facts_on_disk: bool,
    /// Durable (key, machine) pairs the writer keeps in memory on disk mode, of those
    /// activated or looked up lately, so a machine activated again soon costs no lookup
    /// (16 bytes a pair and the table's slack: at most about 40). Not a limit on input.
    pub machine_cache_pairs: usize,
    /// Pairs the writer's filter of activated pairs holds in its first part, on a new
    /// ledger; outgrown, it is rebuilt in the background at twice its pairs (see
    /// `activated`). Not a limit on input.
    pub filter_first_pairs: usize,
    /// Durable events between two saves of the writer's filter (saved in the background; see
    /// `saved_filter`), or one for every 8 bytes of filter if that is more: a start after a
    /// crash reads the saved filter and at most about this many events of the log for it. A
    /// writer that stops saves it when a 128th of this many events came after the last save.
    /// Not a limit on input.
    pub filter_save_events: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_commands_max: 4096,
            queue_depth: 16_384,
            record_bytes_max: codec::RECORD_BYTES_MAX,
            pipeline_from_commands: 512,
            machine_facts_on_disk: true,
            machine_cache_pairs: 262_144,
            filter_first_pairs: activated::FIRST_PART,
            filter_save_events: 10_000_000,
        }
    }
}

/// Creates a ledger whose first event makes `operator` the first operator (R3).
pub fn init(
    at_location: impl Into<Location>,
    operator: keyledger_core::Principal,
    at: keyledger_core::Timestamp,
) -> Result<Engine> {
    init_with(at_location, operator, at, Limits::default())
}

/// [`init`], the writer opened with `limits`.
pub fn init_with(
    at_location: impl Into<Location>,
    operator: keyledger_core::Principal,
    at: keyledger_core::Timestamp,
    limits: Limits,
) -> Result<Engine> {
    let store = Store::create(at_location)?;
    let mut engine = Engine::open(store, limits)?;
    let command = keyledger_core::Command {
        at,
        actor: operator.clone(),
        command_id: None,
        body: keyledger_core::CommandBody::AddOperator(keyledger_core::command::AddOperator {
            principal: operator,
        }),
    };
    let submission = Submission::new(vec![command]);
    let answers = engine.run_batch(&[submission]).remove(0)?;
    assert!(answers[0].ok, "the first operator is always accepted");
    Ok(engine)
}

/// Opens an existing ledger as its writer, verifying and replaying it.
pub fn open(at: impl Into<Location>) -> Result<Engine> {
    Engine::open(Store::open(at)?, Limits::default())
}

/// [`open`], with `limits`.
pub fn open_with(at: impl Into<Location>, limits: Limits) -> Result<Engine> {
    Engine::open(Store::open(at)?, limits)
}
