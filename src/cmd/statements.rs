//! `commit-streams`, `statement`, `verify-statement`: one license ID's complete history,
//! proven for an auditor (docs/proofs.md, "Statements").

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keyledger_core::LicenseId;
use keyledger_ledger::commitments;
use keyledger_ledger::statement::{self, Statement};
use keyledger_ledger::streams::StreamTable;
use keyledger_ledger::Writer;
use keyledger_projections::subset::subset_report;

use crate::output::outln;
use crate::view::{open_store, wall_clock};

pub fn commit(data: &keyledger_ledger::Location) -> Result<ExitCode> {
    let engine = crate::view::open_writer(data)?;
    let store = engine.store().clone();
    let writer = Writer::spawn(engine);
    let mut table = StreamTable::default();
    let committed = commitments::commit(&writer.handle(), &store, &mut table, wall_clock());
    writer.stop()?;
    match committed? {
        Some(seq) => outln!(
            "streams committed at seq {seq}: {} streams over seqs 1..={}",
            table.len(),
            seq - 1
        ),
        None => outln!(
            "nothing to commit: the last event is a streams commitment (seq {})",
            table.size()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn statement(
    data: &keyledger_ledger::Location,
    license_id: &str,
    checkpoint: Option<&Path>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let license = LicenseId::new(license_id).context("--license-id")?;
    let store = open_store(data)?;
    let key = super::proofs::key(data)?;
    let note = checkpoint
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let at = match &note {
        Some(note) => Some(
            keyledger_ledger::checkpoint::verify(note, &key.verifier_key())
                .context("--checkpoint is not a checkpoint of this ledger")?
                .size,
        ),
        None => None,
    };
    let statement = statement::build(&store, &key, &license, at, note, wall_clock())?;
    super::proofs::emit(&(serde_json::to_string_pretty(&statement)? + "\n"), out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify(
    file: &Path,
    pubkey: &str,
    format: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<ExitCode> {
    let format: keyledger_projections::Format = format
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--format")?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (witnesses, quorum) = super::proofs::witness_quorum(witnesses, quorum)?;
    let failed = |why: String| {
        eprintln!("FAILED: {}: {why}", file.display());
        Ok(ExitCode::from(1))
    };
    let parsed: Statement = match serde_json::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => return failed(format!("not a statement: {e}")),
    };
    let verified = match statement::verify(&parsed, pubkey) {
        Ok(verified) => verified,
        Err(why) => return failed(why.to_string()),
    };
    let witnessed = match witnesses.is_empty() {
        true => None,
        false => {
            match keyledger_ledger::witness::check_quorum(&parsed.checkpoint, &witnesses, quorum) {
                Ok(names) => Some(names),
                Err(why) => return failed(why.to_string()),
            }
        }
    };
    let report = match subset_report(&verified.events, &verified.license_id) {
        Ok(report) => report,
        Err(why) => return failed(why.to_string()),
    };
    eprintln!(
        "statement ok: {} events in {} streams of license ID {}, complete through seq {}; \
         checkpoint {} size {}",
        verified.events.len() - 1,
        verified.streams.len(),
        verified.license_id,
        verified.checkpoint.size - 1,
        verified.checkpoint.origin,
        verified.checkpoint.size
    );
    if let Some(names) = witnessed {
        eprintln!(
            "cosigned by {} of {} witnesses: {}",
            names.len(),
            witnesses.len(),
            names.join(", ")
        );
    }
    crate::output::text(&report.render(format))?;
    Ok(ExitCode::SUCCESS)
}
