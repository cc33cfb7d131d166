//! The questions that follow a report: `machine` (a machine's history), `machines` (a key's
//! machines), `usage` (over time) and `summary` (the roll-up of an ownership structure).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_core::{KeyId, LicenseId, OrgId, ProductId};
use keyledger_projections::summary::{summary as roll_up, GroupBy};
use keyledger_projections::usage::{scope_keys, usage as usage_of, Period, UsageScope};
use keyledger_projections::Format;

use crate::cli::{MachinesArgs, Moment, UsageArgs};
use crate::view::{
    at_moment, key_machines, machine_history, open_store, parse_time, projections, MachineQuery,
    Until,
};

pub fn machine(
    data: &keyledger_ledger::Location,
    name: &str,
    after: u64,
    limit: usize,
    format_text: &str,
) -> Result<ExitCode> {
    let format = format(format_text)?;
    keyledger_core::MachineId::new(name).context("machine name")?;
    let store = open_store(data)?;
    let p = projections(&store, Until::Head)?;
    let history = machine_history(&store, &p, name, after, limit, |_| true)?;
    crate::output::text(&history.render(format))?;
    more_on_stderr(format, history.next_after);
    Ok(ExitCode::SUCCESS)
}

pub fn machines(data: &keyledger_ledger::Location, args: &MachinesArgs) -> Result<ExitCode> {
    let MachinesArgs {
        key, after, limit, ..
    } = *args;
    let format = format(&args.format)?;
    let filter = MachineQuery {
        org: args.org.clone(),
        method: args.method.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
    }
    .parse()?;
    let store = open_store(data)?;
    let p = projections(&store, Until::Head)?;
    let Some(page) = key_machines(&store, &p, KeyId(key), &filter, after, limit)? else {
        bail!("no key {key} in the ledger (as of seq {})", p.last_seq);
    };
    crate::output::text(&page.render(format))?;
    more_on_stderr(format, page.next_after);
    Ok(ExitCode::SUCCESS)
}

/// Tab-separated text stays rows only: where the next page starts goes to stderr (the table
/// says it in its own footer, the JSON in `next_after`).
fn more_on_stderr(format: Format, next_after: Option<u64>) {
    if let (Format::Tsv, Some(after)) = (format, next_after) {
        eprintln!("more: --after {after}");
    }
}

fn format(text: &str) -> Result<Format> {
    text.parse().map_err(anyhow::Error::msg).context("--format")
}

pub fn usage(data: &keyledger_ledger::Location, args: &UsageArgs) -> Result<ExitCode> {
    let format = format(&args.format)?;
    let by: Period = args
        .by
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--by")?;
    let scope = match (&args.license_id, args.key, &args.product) {
        (Some(id), _, _) => UsageScope::LicenseId(LicenseId::new(id).context("--license-id")?),
        (_, Some(id), _) => UsageScope::Key(KeyId(id)),
        (_, _, Some(id)) => UsageScope::Product(ProductId::new(id).context("--product")?),
        (None, None, None) => bail!("name --license-id, --key or --product"),
    };
    let from = args
        .from
        .as_deref()
        .map(|t| parse_time(t, "from"))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|t| parse_time(t, "to"))
        .transpose()?;
    let store = open_store(data)?;
    let p = projections(&store, Until::Head)?;
    let keys = scope_keys(&p, &scope)?;
    let report = usage_of(&p, &scope, &keys, by, from, to)?;
    if let Some(path) = &args.svg {
        crate::plot::usage(path, &report)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    crate::output::text(&report.render(format))?;
    Ok(ExitCode::SUCCESS)
}

/// `alerts`: evaluated at the moment asked for (now by default) on the folded log.
pub fn alerts(data: &keyledger_ledger::Location, args: &crate::cli::AlertArgs) -> Result<ExitCode> {
    let format = format(&args.format)?;
    let license = args
        .license_id
        .as_deref()
        .map(|id| LicenseId::new(id).context("--license-id"))
        .transpose()?;
    let store = open_store(data)?;
    let (p, at) = at_moment(&store, &args.moment)?;
    if let Some(id) = &license {
        if !p.books.licenses.contains_key(id) {
            bail!("no license ID {id} in the ledger");
        }
    }
    let all = keyledger_projections::alerts::alerts(&p, license.as_ref(), at, &args.rules());
    crate::output::text(&keyledger_projections::alerts::render(&all, format))?;
    Ok(ExitCode::SUCCESS)
}

pub fn summary(
    data: &keyledger_ledger::Location,
    org: &str,
    by: &str,
    moment: &Moment,
    format_text: &str,
) -> Result<ExitCode> {
    let format = format(format_text)?;
    let by: GroupBy = by.parse().map_err(anyhow::Error::msg).context("--by")?;
    let org = OrgId::new(org).context("--org")?;
    let store = open_store(data)?;
    let (p, at) = at_moment(&store, moment)?;
    let summary = roll_up(&p, &org, by, at, |_| true)?;
    crate::output::text(&summary.render(format))?;
    Ok(ExitCode::SUCCESS)
}
