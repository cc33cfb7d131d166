//! `commit-streams`, `statement`, `verify-statement`: one license ID's complete history,
//! proven for an auditor (docs/proofs.md, "Statements").

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keyledger_core::LicenseId;
use keyledger_ledger::statement::{self, Statement, VerifiedStatement};
use keyledger_ledger::streams::{self, StreamTable};
use keyledger_ledger::Writer;
use keyledger_projections::report::LicenseReport;
use keyledger_projections::{license_report, Projections};

use crate::output::outln;
use crate::view::{open_store, wall_clock};

pub fn commit(data: &keyledger_ledger::Location) -> Result<ExitCode> {
    let engine = crate::view::open_writer(data)?;
    let store = engine.store().clone();
    let writer = Writer::spawn(engine);
    let mut table = StreamTable::default();
    let committed = streams::commit(&writer.handle(), &store, &mut table, wall_clock());
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
    if !witnesses.is_empty() {
        if let Err(why) =
            keyledger_ledger::witness::check_quorum(&parsed.checkpoint, &witnesses, quorum)
        {
            return failed(why.to_string());
        }
    }
    let report = match replay(&verified) {
        Ok(report) => report,
        Err(why) => return failed(why),
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
    crate::output::text(&report.render(format))?;
    Ok(ExitCode::SUCCESS)
}

/// The license ID's report from the statement's events alone, as of its checkpoint: the
/// events are the signed log's, but a signer could have signed events no decision made, so
/// a fold that trips an invariant is a failure to report, not a crash.
pub fn replay(verified: &VerifiedStatement) -> Result<LicenseReport, String> {
    let folded = std::panic::catch_unwind(|| {
        let mut p = Projections::default();
        for (seq, event) in &verified.events {
            p.apply_selected(*seq, event);
        }
        let at = p.last_at.unwrap_or_default();
        license_report(&p, &verified.license_id, at)
    });
    match folded {
        Ok(Some(report)) => Ok(report),
        Ok(None) => Err(format!(
            "the events never register license ID {}",
            verified.license_id
        )),
        Err(_) => {
            Err("the statement's events do not fold: they break a rule of the books".to_owned())
        }
    }
}
