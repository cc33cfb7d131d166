//! Read-only views: `report`, `log`, `forecast`.

use crate::cli::ForecastArgs;
use crate::output::outln;
use std::ops::ControlFlow;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_core::{KeyId, LicenseId};
use keyledger_ledger::wire::event_to_json;
use keyledger_projections::forecast::forecasts;
use keyledger_projections::history::Of;
use keyledger_projections::{license_report, Format};

use crate::cli::Moment;
use crate::view::{at_moment, open_store, parse_time, projections, Until};

pub fn report(
    data: &keyledger_ledger::Location,
    license_id: &str,
    moment: &Moment,
    format: &str,
) -> Result<ExitCode> {
    let format: Format = format
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--format")?;
    let license = LicenseId::new(license_id).context("--license-id")?;
    let store = open_store(data)?;
    let (p, at) = at_moment(&store, moment)?;
    let Some(report) = license_report(&p, &license, at) else {
        bail!(
            "no license ID {license} in the ledger (as of seq {})",
            p.last_seq
        );
    };
    crate::output::text(&report.render(format))?;
    Ok(ExitCode::SUCCESS)
}

pub fn log(
    data: &keyledger_ledger::Location,
    license: Option<&str>,
    key: Option<u64>,
    from: u64,
    format: &str,
) -> Result<ExitCode> {
    let jsonl = match format {
        "jsonl" => true,
        "table" => false,
        other => bail!("--format {other:?}: expected table or jsonl"),
    };
    let store = open_store(data)?;
    let mut out = crate::output::Stdout::lock();
    if !jsonl {
        out.line(format_args!("{}", table_header()))?;
    }
    let mut print = |seq: u64, event: &keyledger_core::Event| {
        let event = event_to_json(event);
        if jsonl {
            let line = serde_json::json!({"seq": seq, "event": event});
            out.line(format_args!("{line}"))
        } else {
            out.line(format_args!("{}", table_row(seq, &event)))
        }
    };
    match (license, key) {
        (None, None) => {
            // A failed write (a closed pipe) stops the walk; it is returned as what it is.
            let mut failed = None;
            keyledger_ledger::walk(&store, from, |record| {
                match print(record.seq, &record.event) {
                    Ok(()) => Ok(ControlFlow::Continue(())),
                    Err(err) => {
                        failed = Some(err);
                        Ok(ControlFlow::Break(()))
                    }
                }
            })?;
            if let Some(err) = failed {
                return Err(err.into());
            }
        }
        (license, key) => {
            // The history index names the seqs: a page at a time, nothing else decoded.
            let p = projections(&store, Until::Head)?;
            let id = license
                .map(LicenseId::new)
                .transpose()
                .context("--license-id")?;
            let of = match (&id, key) {
                (Some(id), _) if !p.books.licenses.contains_key(id) => {
                    bail!("no license ID {id} in the ledger")
                }
                (Some(id), _) => Of::License(id),
                (None, Some(k)) if p.books.keys.get(KeyId(k)).is_none() => {
                    bail!("no key {k} in the ledger")
                }
                (None, Some(k)) => Of::Key(KeyId(k)),
                (None, None) => unreachable!("handled above"),
            };
            let index = crate::view::LogIndex(&store);
            let mut next = from;
            loop {
                let page = p.history_page(&index, of, next, u64::MAX, LOG_PAGE)?;
                let page = page.unwrap_or_default();
                for (seq, event) in &page {
                    print(*seq, event)?;
                }
                match page.last() {
                    Some((last, _)) if page.len() == LOG_PAGE => next = last + 1,
                    _ => break,
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Events of a filtered `log` read and printed at a time: memory bounded by the page, not by
/// the history.
const LOG_PAGE: usize = 10_000;

/// The header of the event table (`log`, `tail`).
pub(crate) fn table_header() -> String {
    format!(
        "{:>8}  {:<27}  {:<16}  {:<24}  summary",
        "seq", "at", "actor", "type"
    )
}

/// One event as a row of the event table, from its JSON (`wire::event_to_json`).
pub(crate) fn table_row(seq: u64, event: &serde_json::Value) -> String {
    let text = |field: &str| event[field].as_str().unwrap_or("");
    format!(
        "{seq:>8}  {:<27}  {:<16}  {:<24}  {}",
        text("at"),
        text("actor"),
        text("type"),
        summary(event)
    )
}

/// The event's fields other than at, actor and type, as `name=value`, shortened.
pub(crate) fn summary(event: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(fields) = event.as_object() {
        for (name, value) in fields {
            if matches!(name.as_str(), "at" | "actor" | "type" | "fingerprint") {
                continue;
            }
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) if items.len() > 3 => {
                    format!("[{} items]", items.len())
                }
                other => other.to_string(),
            };
            parts.push(format!("{name}={text}"));
        }
    }
    let line = parts.join(" ");
    if line.chars().count() > 120 {
        line.chars().take(117).collect::<String>() + "..."
    } else {
        line
    }
}

pub fn forecast(data: &keyledger_ledger::Location, args: &ForecastArgs) -> Result<ExitCode> {
    let license = args.license_id.as_deref();
    let (window_days, at) = (args.window_days, args.at.as_deref());
    let (format, svg) = (args.format.as_str(), args.svg.as_deref());
    if window_days == 0 {
        bail!("--window-days must be at least 1");
    }
    let store = open_store(data)?;
    // A forecast at a past moment sees only what had happened by then.
    let at = at.map(|text| parse_time(text, "at")).transpose()?;
    let p = projections(&store, at.map_or(Until::Head, Until::Time))?;
    if let Some(l) = license {
        let id = LicenseId::new(l).context("--license-id")?;
        if !p.books.licenses.contains_key(&id) {
            bail!("no license ID {id} in the ledger");
        }
    }
    let at = at.unwrap_or_else(|| p.last_at.unwrap_or_default());
    let all = forecasts(&p, license, at, window_days);
    if let Some(path) = svg {
        crate::plot::forecast(path, &p, &all, at)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match format {
        "json" => outln!("{}", serde_json::to_string_pretty(&all)?),
        "table" => {
            outln!("forecast at {at}, rate over the last {window_days} days");
            outln!(
                "{:>6}  {:<12}  {:<16}  {:>10}  {:>10}  {:>9}  exhaustion",
                "key",
                "license ID",
                "product",
                "used/total",
                "remaining",
                "per day"
            );
            for f in &all {
                let when = f.outlook().words(|t| t.to_string());
                outln!(
                    "{:>6}  {:<12}  {:<16}  {:>10}  {:>10}  {:>9.1}  {when}",
                    f.key_id,
                    f.license_id,
                    f.product,
                    format!("{}/{}", f.used, f.total),
                    f.remaining,
                    f.rate_per_day
                );
            }
        }
        other => bail!("--format {other:?}: expected table or json"),
    }
    Ok(ExitCode::SUCCESS)
}
