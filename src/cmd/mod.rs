//! One module a subcommand. Exit codes: 0 done, 1 the ledger or input failed a check
//! (tampered chain, malformed lines), 2 the command could not run (bad arguments, I/O).

mod apply;
mod audit;
mod compact;
mod consumer;
mod copy;
mod import;
mod insight;

mod keys;
mod proofs;
mod read;
mod statements;
mod tail;

use crate::output::outln;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keyledger_core::Principal;

use crate::cli::{Cli, Command};
use crate::view::{parse_time, wall_clock};

pub fn run(cli: Cli) -> Result<ExitCode> {
    let data = &cli.data;
    crate::logs::init(log_format(&cli.command));
    match cli.command {
        Command::Init { operator, at } => init(data, &operator, at.as_deref()),
        Command::Apply { file, atomic } => apply::apply(data, &file, atomic),
        Command::Demo { machines, seed } => crate::demo::run(data, machines, seed),
        Command::Report {
            license_id,
            moment,
            format,
        } => read::report(data, &license_id, &moment, &format),
        Command::Keys {
            scope,
            principal,
            out,
        } => keys::keys(data, &scope, &principal, out.as_deref()),
        Command::Log {
            license_id,
            key,
            from,
            format,
        } => read::log(data, license_id.as_deref(), key, from, &format),
        Command::Tail(args) => tail::tail(&args),
        Command::ImportKeys {
            file,
            operator,
            atomic,
        } => import::import_keys(data, &file, &operator, atomic),
        Command::Serve(args) => {
            crate::serve::run(data, &args, crate::console::router(args.tls_cert.is_some()))
        }
        Command::Token { action } => token(data, action),
        Command::Consumer { action } => consumer::run(data, &action),
        Command::Bench {
            target: Some(crate::cli::BenchTarget::Http(args)),
            ..
        } => crate::loadgen::run(&args, data),
        Command::Bench {
            target: None,
            workload,
        } => bench(data, &workload),
        Command::Forecast(args) => read::forecast(data, &args),
        Command::Usage(args) => insight::usage(data, &args),
        Command::Alerts(args) => insight::alerts(data, &args),
        Command::Machine {
            name,
            after,
            limit,
            format,
        } => insight::machine(data, &name, after, limit, &format),
        Command::Machines(args) => insight::machines(data, &args),
        Command::Summary {
            org,
            by,
            moment,
            format,
        } => insight::summary(data, &org, &by, &moment, &format),
        // Verify, export, copy, compact, checkpoints, proofs, statements, witnesses.
        auditor => audit_command(data, auditor),
    }
}

/// `serve --log-format`; every other command writes text.
fn log_format(command: &Command) -> crate::logs::LogFormat {
    match command {
        Command::Serve(args) => args.log_format,
        _ => crate::logs::LogFormat::default(),
    }
}

/// The auditor's commands: verification, exports, copies, checkpoints, proofs, statements,
/// witnesses.
fn audit_command(data: &keyledger_ledger::Location, command: Command) -> Result<ExitCode> {
    match command {
        Command::Verify => audit::verify(data),
        Command::Export { out } => audit::export(data, &out),
        Command::Copy { from, to } => copy::copy(&from, &to),
        Command::Compact => compact::compact(data),
        Command::VerifyExport {
            file,
            checkpoint,
            pubkey,
            witnesses,
            quorum,
        } => audit::verify_export(
            &file,
            checkpoint.as_deref().zip(pubkey.as_deref()),
            &witnesses,
            quorum,
        ),
        Command::Pubkey => proofs::pubkey(data),
        Command::Checkpoint { size, out } => proofs::checkpoint(data, size, out.as_deref()),
        Command::Prove { proof } => proofs::prove(data, proof),
        Command::CommitStreams => statements::commit(data),
        Command::Statement {
            license_id,
            checkpoint,
            out,
        } => statements::statement(data, &license_id, checkpoint.as_deref(), out.as_deref()),
        Command::VerifyStatement {
            file,
            pubkey,
            format,
            witnesses,
            quorum,
        } => statements::verify(&file, &pubkey, &format, &witnesses, quorum),
        Command::VerifyProof {
            file,
            pubkey,
            old_checkpoint,
            witnesses,
            quorum,
        } => proofs::verify_proof(
            &file,
            &pubkey,
            old_checkpoint.as_deref(),
            &witnesses,
            quorum,
        ),
        Command::Witness { action } => crate::witness::run(&action),
        _ => unreachable!("run passes only the auditor's commands here"),
    }
}

fn init(data: &keyledger_ledger::Location, operator: &str, at: Option<&str>) -> Result<ExitCode> {
    let operator = Principal::new(operator).context("--operator")?;
    let at = at
        .map(|t| parse_time(t, "at"))
        .transpose()?
        .unwrap_or_else(wall_clock);
    keyledger_ledger::init(data, operator.clone(), at)?;
    let (key, _) = keyledger_ledger::proof::signing_key(data, true)?;
    outln!("created ledger {} with first operator {operator}", data);
    outln!(
        "checkpoint signing key {}; verifier key {}",
        keyledger_ledger::proof::key_path(data)?.display(),
        key.verifier_key()
    );
    Ok(ExitCode::SUCCESS)
}

fn token(data: &keyledger_ledger::Location, action: crate::cli::TokenAction) -> Result<ExitCode> {
    let store = crate::view::open_store(data)?;
    match action {
        crate::cli::TokenAction::Create { principal: name } => {
            let principal = crate::view::principal(&name, "principal")?;
            if keyledger_core::decide::is_activation_actor(&principal) {
                anyhow::bail!(
                    "--principal {principal}: names `activation-client` and `activation-client/…` \
                     are kept for tokenless activations"
                );
            }
            let token = crate::serve::auth::create(&store, &principal)?;
            outln!("{token}");
            eprintln!("token for {principal} created; it is shown only this once");
        }
        crate::cli::TokenAction::Revoke { principal, token } => {
            let digest = token.as_deref().map(crate::serve::auth::digest);
            let revoked = store.revoke_tokens(digest.as_deref(), principal.as_deref())?;
            outln!("revoked {revoked} token(s)");
            if revoked == 0 {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench`: a workload run on `data`, its capacity plan printed (or as JSON) and plotted.
fn bench(data: &keyledger_ledger::Location, args: &crate::cli::WorkloadArgs) -> Result<ExitCode> {
    let plan = crate::workload::run(args, data)?;
    if let Some(svg) = &args.svg {
        crate::plot::timeline(svg, &plan)
            .with_context(|| format!("cannot write {}", svg.display()))?;
    }
    if args.json {
        crate::output::outln!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        crate::workload::print_plan(&plan)?;
    }
    Ok(ExitCode::SUCCESS)
}
