//! `compact`: rewrites a redb ledger into a new file that holds only its live data, then puts
//! it in the old one's place. redb writes copy-on-write, so a retired key's text stays in
//! freed pages of the file until they are reused; a rewritten file never held it. The file
//! also shrinks to what its data needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_ledger::store::redb::wal;
use keyledger_ledger::{Location, Store};

use super::copy::copy_checked;
use crate::output::outln;

pub fn compact(data: &Location) -> Result<ExitCode> {
    let Location::File(path) = data else {
        bail!(
            "compact rewrites a redb file, and {data} is PostgreSQL: there `VACUUM FULL \
             keyledger.secrets` rewrites the table that holds key text (docs/operations.md \
             says when the server's own copies of old rows go)"
        );
    };
    let rewritten = sibling(path, ".compacting");
    for leftover in [rewritten.clone(), wal::path_for(&rewritten)] {
        // What an interrupted compact left: never the ledger itself.
        remove_if_there(&leftover)?;
    }
    let bytes_before = std::fs::metadata(path)?.len();
    let report = {
        // Opening replays the ledger's write-ahead file into redb (durably): from here on
        // the redb file alone holds the ledger, and nothing is written to it again.
        let source = Store::open(data).with_context(|| format!("cannot open ledger {data}"))?;
        copy_checked(&source, data, &Location::File(rewritten.clone()))?
    };
    // The same for the new file: once opened, its write-ahead frames are in it.
    drop(
        Store::open(Location::File(rewritten.clone()))
            .with_context(|| format!("cannot open the rewritten {}", rewritten.display()))?,
    );
    swap(path, &rewritten)?;
    let bytes_after = std::fs::metadata(path)?.len();
    outln!(
        "compacted {}: {} events, {} key texts, head seq {}; {bytes_before} -> {bytes_after} \
         bytes; both files verified, the old one is gone",
        path.display(),
        report.events,
        report.secrets,
        report.head.seq
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts the rewritten file in the ledger's place. Each step leaves a whole ledger at `path`
/// whatever stops it: the old write-ahead file goes first (redb holds all of it), then one
/// rename replaces the file, then the new file's write-ahead file (all of it applied).
fn swap(path: &Path, rewritten: &Path) -> Result<()> {
    remove_if_there(&wal::path_for(path))?;
    std::fs::rename(rewritten, path)
        .with_context(|| format!("cannot move {} to {}", rewritten.display(), path.display()))?;
    remove_if_there(&wal::path_for(rewritten))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
