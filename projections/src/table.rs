//! The text every report draws: its output formats, human tables and tab-separated rows.

use comfy_table::{presets, Table};

use keyledger_core::event::CoveragePhase;

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_header(header.to_vec());
    table
}

/// A human table of `header` and `rows`, as every report draws one.
pub(crate) fn grid(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut grid = table(header);
    for row in rows {
        grid.add_row(row);
    }
    grid
}

/// Tab-separated text: one header row, then `rows`, quoted where a cell needs it.
pub(crate) fn tsv<I, C>(header: &[&str], rows: impl IntoIterator<Item = I>) -> String
where
    I: IntoIterator<Item = C>,
    C: AsRef<[u8]>,
{
    let mut out = csv::WriterBuilder::new()
        .delimiter(b'\t')
        .from_writer(Vec::new());
    out.write_record(header).expect("writes to memory");
    for row in rows {
        out.write_record(row).expect("writes to memory");
    }
    String::from_utf8(out.into_inner().expect("flushes to memory")).expect("UTF-8 in, UTF-8 out")
}

/// Output formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human tables.
    Table,
    /// Tab-separated values, one header row.
    Tsv,
    /// JSON (the contract of docs/api.md).
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "table" => Ok(Format::Table),
            "tsv" => Ok(Format::Tsv),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format {other:?}; expected table, tsv or json"
            )),
        }
    }
}

/// The name of an ESU coverage phase, as reports and the console show it.
pub fn phase_name(phase: CoveragePhase) -> &'static str {
    match phase {
        CoveragePhase::NotStarted => "not_started",
        CoveragePhase::Active => "active",
        CoveragePhase::Ended => "ended",
    }
}
