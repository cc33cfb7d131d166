//! keyledger-projections' integration tests, one binary: a module a subject, over scenarios run
//! through the real rules by core's test harness (`harness`).

#[path = "../../core/tests/harness/mod.rs"]
mod harness;

mod agreement;
mod alerts;
mod insight;
mod projections;
