//! `keyledger`: the command line and the HTTP service. Wiring only: the rules live in
//! `keyledger-core`, the log in `keyledger-ledger`, the reports in `keyledger-projections`.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod demo;
mod loadgen;
mod plot;
mod progress;
mod serve;
mod view;
mod workload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
