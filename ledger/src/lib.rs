//! keyledger's engine: an append-only, BLAKE3-hash-chained log of events over one storage
//! boundary (`keyledger-store`: an embedded redb file or a replicated PostgreSQL database).
//!
//! The one design decision: a single writer owns the decision state and the write side of
//! the store, and commits whatever commands are queued as one block in one durable commit
//! (group commit). One writer makes every decision see every earlier one, so no race can
//! over-activate a key; one block per batch makes a batch of 1,000 activations cost about
//! one fsync. Answers are released only after the commit is durable.
//!
//! Layers, bottom up: the store's [`codec`] (event ↔ record bytes), [`chain`], [`block`],
//! [`merkle`], [`tree`] and [`store`] (re-exported here under those names); then
//! [`walk`](mod@walk) (checked reads and `verify`), [`hashing`] (chain and tree hashing
//! beside the decisions), [`activated`] and [`prefetch`] (the writer's filter of activated
//! pairs and its lookups), [`engine`] (begin → add → seal → commit → settle), [`writer`] (the
//! thread, its queue and the commit pipeline), [`export`] (JSON Lines for auditors),
//! [`wire`] (commands as JSON), [`checkpoint`] and [`proof`] (signed checkpoints and proof
//! files).
#![forbid(unsafe_code)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

pub mod activated;
pub mod answer;
pub mod checkpoint;
pub mod commitments;
pub mod engine;
pub mod export;
pub mod fingerprints;
pub mod hashing;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod pair_facts;
pub mod prefetch;
pub mod proof;
pub mod resume;
pub mod saved_filter;
pub mod statement;
pub mod streams;
pub mod walk;
pub mod wire;
pub mod witness;
pub mod writer;

// The storage layer's modules, under the paths the engine and its users name them by.
pub use keyledger_store as store;
pub use keyledger_store::{
    block, chain, codec, consumer, error, machines, merkle, pair_filter, secrets, tree,
};

pub use answer::{Answer, AnswerText};
pub use engine::{Committed, Engine, Submission};
pub use error::{Corruption, Error, Result};
pub use health::Health;
pub use limits::Limits;
pub use store::{Head, Location, Store};
pub use walk::{verify, walk, LoggedRecord, VerifyReport};
pub use writer::{AnswerReceiver, Writer, WriterHandle};

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
