//! keyledger's read models: everything reports show, folded from the log's events only.
//!
//! The one design decision: projections are deterministic data (`BTreeMap`s, no clocks, no
//! hash-ordered maps), so a projection reached by snapshot + catch-up encodes to exactly the
//! bytes of one folded from zero, and one BLAKE3 digest proves it. Reports take their moment
//! (`report_time`) from the caller, never from a clock.
#![forbid(unsafe_code)]
// Every public item says what it is: rustdoc is how a newcomer reads the domain.
#![warn(missing_docs)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

pub mod access;
pub mod alerts;
pub mod fold;
pub mod forecast;
pub mod history;
pub mod keys;
pub mod machine;
pub mod model;
pub mod report;
mod report_text;
pub mod snapshot;
pub mod subset;
pub mod summary;
mod table;
pub mod usage;

pub use model::Projections;
pub use report::{license_report, Format, LicenseReport};
