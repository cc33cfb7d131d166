//! keyledger-ledger's integration tests, one binary: a module a subject, one shared fixture
//! (`support`: a ledger on redb, or on PostgreSQL with `KEYLEDGER_TEST_STORE=postgres`).

mod support;

mod engine;
mod faults;
mod fencing;
mod fuzz;
mod golden;
mod idempotency;
mod machines;
mod merkle;
mod retire;
mod tamper;
mod tree;
mod upgrade;
mod wal;
mod wire;
