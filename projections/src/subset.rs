//! A license ID's report from a chosen subset of the log: a statement's events (its
//! streams, proven complete by `keyledger_ledger::statement`), folded by the same rules as
//! the whole log, keys of other license IDs left as gaps.

use keyledger_core::{Event, LicenseId};

use crate::report::{license_report, LicenseReport};
use crate::Projections;

/// Why a subset does not give a report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubsetError {
    /// Seqs must increase.
    #[error("the events are not in seq order at seq {0}")]
    Order(u64),
    /// The events break a rule of the books: signed, but never decided so.
    #[error("the events do not fold: they break a rule of the books")]
    Fold,
    /// The license ID is never registered in the events.
    #[error("the events never register license ID {0}")]
    NoLicense(LicenseId),
}

/// The report of `license` as of the last event of `events` (in seq order, gaps allowed):
/// what `report --at-seq` of that seq gives on the whole log when `events` hold every
/// stream the report reads.
pub fn subset_report(
    events: &[(u64, Event)],
    license: &LicenseId,
) -> Result<LicenseReport, SubsetError> {
    if let Some(w) = events.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Err(SubsetError::Order(w[1].0));
    }
    // The events come signed from the log, yet a signer could have signed events no
    // decision made: a fold that trips an invariant is an answer, not a crash.
    let folded = std::panic::catch_unwind(|| {
        let mut p = Projections::default();
        for (seq, event) in events {
            p.apply_selected(*seq, event);
        }
        let at = p.last_at.unwrap_or_default();
        license_report(&p, license, at)
    });
    match folded {
        Ok(Some(report)) => Ok(report),
        Ok(None) => Err(SubsetError::NoLicense(license.clone())),
        Err(_) => Err(SubsetError::Fold),
    }
}
