//! `copy`: a whole ledger into a new one, on the same or the other store.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_ledger::{Location, Store, VerifyReport};

use crate::output::outln;
use crate::progress::Progress;

pub fn copy(from: &Location, to: &Location) -> Result<ExitCode> {
    if from == to {
        bail!("--from and --to are both {from}: copy into a new ledger");
    }
    let source = Store::open(from).with_context(|| format!("cannot open ledger {from}"))?;
    let after = copy_checked(&source, from, to)?;
    copy_signing_key(from, to)?;
    outln!(
        "copied {} events in {} blocks and {} key texts from {from} to {to}; both verify, head \
         seq {} hash {}",
        after.events,
        after.blocks,
        after.secrets,
        after.head.seq,
        hex::encode(after.head.hash)
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies `source` (at `from`) into a new ledger at `to`, verifying both and comparing
/// their heads and key texts; a copy that fails any of that is removed (see [`abandon`]).
/// Answers the copy's verification.
pub fn copy_checked(source: &Store, from: &Location, to: &Location) -> Result<VerifyReport> {
    let before = keyledger_ledger::verify(source)
        .with_context(|| format!("{from} does not verify; nothing was copied"))?;
    let target = Store::create(to).with_context(|| format!("cannot create ledger {to}"))?;
    let progress = Progress::new("copy", before.head.seq);
    let mut done = 0;
    let copied = source.copy_to(&target, |seq| {
        progress.add(seq - done);
        done = seq;
    });
    progress.finish();
    let head = match copied {
        Ok(head) => head,
        Err(err) => {
            drop(target);
            return Err(abandon(to, err.into()));
        }
    };
    let after = keyledger_ledger::verify(&target).map_err(|err| {
        abandon(
            to,
            anyhow::Error::from(err).context("the copy does not verify"),
        )
    })?;
    if (after.head, after.events, after.secrets) != (before.head, before.events, before.secrets) {
        drop(target);
        let differs = anyhow::anyhow!(
            "the copy at {to} differs from {from}: head seq {} vs {}, {} vs {} key texts",
            after.head.seq,
            before.head.seq,
            after.secrets,
            before.secrets
        );
        return Err(abandon(to, differs));
    }
    debug_assert_eq!(head, after.head);
    Ok(after)
}

/// A copy that failed half-way leaves a partial ledger: a redb file this run created is
/// removed; a PostgreSQL schema is named for the operator to drop (never dropped here).
fn abandon(to: &Location, err: anyhow::Error) -> anyhow::Error {
    match to {
        Location::File(path) => {
            let removed = std::fs::remove_file(path).is_ok();
            let note = if removed {
                "the partial copy was removed"
            } else {
                "remove the partial copy before trying again"
            };
            err.context(format!("copying into {to} failed ({note})"))
        }
        Location::Postgres(_) => err.context(format!(
            "copying into {to} failed; the partial copy stays: `DROP SCHEMA keyledger CASCADE` \
             in that database before trying again"
        )),
    }
}

/// The target gets the source's checkpoint signing key when it has none, so checkpoints and
/// proofs signed before the copy keep verifying with the same verifier key.
fn copy_signing_key(from: &Location, to: &Location) -> Result<()> {
    let (Ok(source), Ok(target)) = (from.signing_key_path(), to.signing_key_path()) else {
        eprintln!(
            "note: no checkpoint signing key copied (set {} to name it)",
            keyledger_ledger::store::location::SIGNING_KEY_ENV
        );
        return Ok(());
    };
    if source == target || !source.exists() {
        return Ok(());
    }
    if target.exists() {
        let same = std::fs::read(&source)? == std::fs::read(&target)?;
        if !same {
            eprintln!(
                "warning: {} holds another signing key than {}: checkpoints of the copy get \
                 another verifier key",
                target.display(),
                source.display()
            );
        }
        return Ok(());
    }
    let (key, _) = keyledger_ledger::proof::signing_key(from, false)?;
    let seed = std::fs::read_to_string(&source)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    std::io::Write::write_all(&mut file, seed.as_bytes())?;
    file.sync_all()?;
    eprintln!(
        "copied the checkpoint signing key to {} (verifier key {})",
        target.display(),
        key.verifier_key()
    );
    Ok(())
}
