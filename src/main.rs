//! `keyledger`: the command line and the HTTP service. Wiring only: the rules live in
//! `keyledger-core`, the log in `keyledger-ledger`, the reports in `keyledger-projections`.
#![forbid(unsafe_code)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

mod cli;
mod cmd;
mod console;
mod demo;
mod loadgen;
mod loadgen_peer;
mod logs;
mod oidc;
mod output;
mod plot;
mod progress;
mod resources;
mod serve;
mod tls_client;
mod view;
mod witness;
mod workload;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: the service allocates small, short-lived
/// buffers per request and per event, where glibc's malloc spent ~14% of a loaded server's
/// CPU (perf, `bench http` at concurrency 256).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let cache = usize::try_from(cli.cache_mib << 20).unwrap_or(usize::MAX);
    keyledger_ledger::store::set_cache_bytes(cache);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => output::exit_for(&err),
    }
}
