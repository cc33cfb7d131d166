//! The auditor's commands: `verify`, `export`, `verify-export`.

use crate::output::outln;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keyledger_ledger::{export as log_export, Error};
use keyledger_projections::snapshot;

use crate::progress::Progress;
use crate::view::open_store;

pub fn verify(data: &keyledger_ledger::Location) -> Result<ExitCode> {
    let store = match keyledger_ledger::Store::open(data) {
        Ok(store) => store,
        Err(err) => return Err(err).with_context(|| format!("cannot open ledger {}", data)),
    };
    report_recovery(&store)?;
    let report = match keyledger_ledger::verify(&store) {
        Ok(report) => report,
        Err(Error::Corrupt(corruption)) => {
            eprintln!("FAILED at seq {}: {corruption}", corruption.seq());
            return Ok(ExitCode::from(1));
        }
        Err(err) => return Err(err.into()),
    };
    outln!(
        "chain ok: {} events in {} blocks; head seq {} hash {}",
        report.events,
        report.blocks,
        report.head.seq,
        hex::encode(report.head.hash)
    );
    if report.commitments > 0 {
        outln!(
            "streams ok: {} commitments record the streams of the events before them",
            report.commitments
        );
    }
    if report.retired == 0 {
        outln!(
            "secrets ok: {} key texts match their issued fingerprints",
            report.secrets
        );
    } else {
        outln!(
            "secrets ok: {} key texts match their issued fingerprints; {} retired (gone)",
            report.secrets,
            report.retired
        );
    }
    match store.snapshot_at_or_below(u64::MAX)? {
        None => outln!("snapshot: none yet"),
        Some((seq, bytes)) => match snapshot::decode_bound(&bytes) {
            // A cache written by an older build: never used, replaced by the next snapshot.
            Err(err @ snapshot::SnapshotError::Version(_)) => {
                outln!("snapshot: seq {seq} skipped ({err}); the next snapshot replaces it")
            }
            Err(err) => {
                eprintln!("FAILED: the projection snapshot at seq {seq} is unusable: {err}");
                return Ok(ExitCode::from(1));
            }
            Ok((stored, chain)) => {
                if keyledger_ledger::resume::chain_hash_at(&store, seq)? != Some(chain) {
                    eprintln!("FAILED: the projection snapshot at seq {seq} names a chain hash the log does not have there");
                    return Ok(ExitCode::from(1));
                }
                let rebuilt = fold_from_zero(&store, seq)?;
                if snapshot::digest(&stored) != snapshot::digest(&rebuilt) {
                    eprintln!("FAILED: the projection snapshot at seq {seq} differs from a fold of the log");
                    return Ok(ExitCode::from(1));
                }
                outln!(
                    "snapshot ok: seq {seq}, digest {}",
                    hex::encode(snapshot::digest(&stored))
                );
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Says what opening recovered from the write-ahead file: batches that were durable there
/// only (a crash before the checkpoint), and any torn or corrupt frame left unapplied.
fn report_recovery(store: &keyledger_ledger::Store) -> Result<()> {
    let recovery = store.recovery();
    if let Some(note) = recovery.note() {
        outln!("{note}");
    }
    if let Some(warning) = recovery.warning() {
        eprintln!("{warning}");
    }
    Ok(())
}

fn fold_from_zero(
    store: &keyledger_ledger::Store,
    seq: u64,
) -> Result<keyledger_projections::Projections> {
    let mut p = keyledger_projections::Projections::default();
    keyledger_ledger::walk(store, 1, |record| {
        if record.seq > seq {
            return Ok(std::ops::ControlFlow::Break(()));
        }
        p.apply(record.seq, &record.event);
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(p)
}

pub fn export(data: &keyledger_ledger::Location, out: &Path) -> Result<ExitCode> {
    let store = open_store(data)?;
    let head = store.head()?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = BufWriter::new(file);
    let progress = Progress::new("exporting", head.seq);
    let written = log_export::export(&store, &mut writer, |_| progress.inc());
    progress.finish();
    match written {
        Ok(head) => {
            writer.flush()?;
            outln!(
                "exported {} events to {}; head hash {}",
                head.seq,
                out.display(),
                hex::encode(head.hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Corrupt(corruption)) => {
            drop(writer);
            let _ = std::fs::remove_file(out);
            eprintln!(
                "FAILED at seq {}: {corruption}; no export written",
                corruption.seq()
            );
            Ok(ExitCode::from(1))
        }
        Err(err) => Err(err.into()),
    }
}

/// `witnesses`: the checkpoint must carry cosignatures of `quorum` of them (docs/proofs.md).
pub fn verify_export(
    file: &Path,
    checkpoint: Option<(&Path, &str)>,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<ExitCode> {
    let (witnesses, quorum) = super::proofs::witness_quorum(witnesses, quorum)?;
    let input = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let input = BufReader::new(input);
    let mut witnessed = None;
    let checked = match checkpoint {
        None => log_export::verify_export(input).map(|head| (head, None)),
        Some((note, pubkey)) => {
            let note = std::fs::read_to_string(note)
                .with_context(|| format!("cannot read {}", note.display()))?;
            if !witnesses.is_empty() {
                match keyledger_ledger::witness::check_quorum(&note, &witnesses, quorum) {
                    Ok(names) => witnessed = Some(names),
                    Err(why) => {
                        eprintln!("FAILED: {}: {why}", file.display());
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            log_export::verify_export_against(input, &note, pubkey)
                .map(|checked| (checked.head, Some(checked.checkpoint)))
        }
    };
    match checked {
        Ok((head, checkpoint)) => {
            outln!(
                "export ok: {} events; head hash {}",
                head.seq,
                hex::encode(head.hash)
            );
            if let Some(cp) = checkpoint {
                outln!(
                    "checkpoint ok: its first {} records are the log {} signed at {}",
                    cp.size,
                    cp.origin,
                    cp.time
                );
            }
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
