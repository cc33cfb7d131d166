//! keyledger-core's integration tests, one binary: a module a subject, on the test harness
//! (`harness`) that runs commands through the real rules.

mod harness;

mod counts;
mod properties;
mod rules;
