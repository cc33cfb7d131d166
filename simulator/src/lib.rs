//! keyledger's deterministic simulator: one seeded thread drives simulated clients, the real
//! engine (decide, chain, group commit, write-ahead file, redb, machine index) on a
//! simulated disk that fails and loses power, and a simulated clock; after every step it
//! checks what must never break (docs/testing.md). A failure names its seed and step, and
//! the same seed replays it exactly.
//!
//! - [`disk`]: the disk (unsynced writes lost or torn by a crash; I/O errors; a full disk).
//! - [`clients`]: the commands (activations with repeats and proxy batches, KMS, requests,
//!   grants racing limits, disclosures, blocks, retirements, resends).
//! - [`world`]: the run — steps, faults, crashes — and [`check`], the invariants.

// Functions fit on a screen (clippy.toml: 70 lines).
#![warn(clippy::too_many_lines)]

pub mod check;
pub mod clients;
pub mod disk;
pub mod world;

pub use keyledger_core::planted::Bug;
pub use world::{run, Config, Outcome, Violation};
