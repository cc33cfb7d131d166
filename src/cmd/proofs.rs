//! The auditor's proofs: `pubkey`, `checkpoint`, `prove`, `verify-proof` (docs/proofs.md).

use crate::output::outln;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keyledger_ledger::proof::{self, signing_key};

use crate::cli::ProveKind;
use crate::view::{open_store, wall_clock};

pub(super) fn key(
    data: &keyledger_ledger::Location,
) -> Result<keyledger_ledger::checkpoint::LedgerKey> {
    let (key, created) = signing_key(data, true)?;
    if created {
        eprintln!(
            "note: created the checkpoint signing key {}",
            proof::key_path(data)?.display()
        );
    }
    Ok(key)
}

pub(super) fn emit(text: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            crate::output::text(text)?;
            Ok(())
        }
    }
}

/// Reads only the key file, so it works while `serve` holds the database.
pub fn pubkey(data: &keyledger_ledger::Location) -> Result<ExitCode> {
    let (key, _) = signing_key(data, false).with_context(|| {
        format!(
            "no checkpoint key for {} (`keyledger init` creates it)",
            data
        )
    })?;
    outln!("{}", key.verifier_key());
    Ok(ExitCode::SUCCESS)
}

pub fn checkpoint(
    data: &keyledger_ledger::Location,
    size: Option<u64>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let store = open_store(data)?;
    let size = size.map_or_else(|| store.head().map(|h| h.seq), Ok)?;
    let note = proof::checkpoint(&store, &key(data)?, size, wall_clock())?;
    emit(&note, out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn prove(data: &keyledger_ledger::Location, kind: ProveKind) -> Result<ExitCode> {
    let store = open_store(data)?;
    let key = key(data)?;
    let head = store.head()?.seq;
    let (file, out) = match kind {
        ProveKind::Inclusion { seq, size, out } => (
            proof::prove_inclusion(&store, &key, seq, size.unwrap_or(head), wall_clock())?,
            out,
        ),
        ProveKind::Consistency { from, to, out } => (
            proof::prove_consistency(&store, &key, from, to.unwrap_or(head), wall_clock())?,
            out,
        ),
    };
    emit(
        &(serde_json::to_string_pretty(&file)? + "\n"),
        out.as_deref(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `--witness KEY…` parsed and `--quorum` (default: all of them) checked against them.
pub(super) fn witness_quorum(
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<(Vec<keyledger_ledger::witness::WitnessVerifier>, usize)> {
    let witnesses = witnesses
        .iter()
        .map(|w| keyledger_ledger::witness::WitnessVerifier::parse(w))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        return Err(anyhow::anyhow!(
            "--quorum {quorum}: only {} witness keys were given",
            witnesses.len()
        ));
    }
    Ok((witnesses, quorum))
}

pub fn verify_proof(
    file: &Path,
    pubkey: &str,
    old_checkpoint: Option<&Path>,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (witnesses, quorum) = witness_quorum(witnesses, quorum)?;
    let old = old_checkpoint
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    match proof::verify_proof(&text, pubkey, old.as_deref()) {
        Ok(verified) => {
            let note = proof::checkpoint_of(&text).unwrap_or_default();
            let witnessed = match witnesses.is_empty() {
                true => None,
                false => match keyledger_ledger::witness::check_quorum(&note, &witnesses, quorum) {
                    Ok(names) => Some(names),
                    Err(why) => {
                        eprintln!("FAILED: {}: {why}", file.display());
                        return Ok(ExitCode::from(1));
                    }
                },
            };
            outln!("proof ok: {}", verified.statement);
            outln!(
                "checkpoint: {} size {}",
                verified.checkpoint.origin,
                verified.checkpoint.size
            );
            if let Some(names) = witnessed {
                outln!(
                    "cosigned by {} of {} witnesses: {}",
                    names.len(),
                    witnesses.len(),
                    names.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("FAILED: {}: {err}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}
