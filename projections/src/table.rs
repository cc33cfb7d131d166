//! The human-readable report: a heading and one table a section.

use comfy_table::{presets, Table};

use crate::report::{phase_name, LicenseReport};

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

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

pub fn render(r: &LicenseReport) -> String {
    let mut out = String::new();
    let parents = if r.org.parent_chain.is_empty() {
        String::new()
    } else {
        format!(" (part of {})", r.org.parent_chain.join(" > "))
    };
    out.push_str(&format!(
        "License ID {} — {} [{}]{}\nprogram {} · agreement {} · authorization {} · purchase account {}\nRDS license server activation number: {}\nreport time {} · as of seq {}\n",
        r.license_id, r.org.name, r.org.org, parents, r.program, r.agreement_number,
        opt(&r.authorization_number), opt(&r.purchase_account), r.rds_activation_number,
        r.report_time, r.at_seq
    ));
    let mut keys = table(&[
        "key",
        "product",
        "kind",
        "key text",
        "used/total",
        "remaining",
        "purchased",
        "OSA",
        "ESU",
        "refusals",
    ]);
    for k in &r.keys {
        let refusals: Vec<String> = k.refusals.iter().map(|(c, n)| format!("{c}={n}")).collect();
        let counts = match (k.kind, k.kms_hosts, k.kms_hosts_limit) {
            (_, Some(hosts), Some(limit)) => format!("{hosts}/{limit} hosts"),
            (keyledger_core::KeyKind::Setup | keyledger_core::KeyKind::Embedded, _, _) => {
                "n/a".to_owned()
            }
            _ => format!("{}/{}", k.used, k.total),
        };
        let kind = if k.blocked {
            format!("{} (blocked)", k.kind)
        } else {
            k.kind.to_string()
        };
        keys.add_row(vec![
            k.key_id.to_string(),
            k.product.clone(),
            kind,
            k.key.clone(),
            counts,
            k.remaining.to_string(),
            k.purchased.to_string(),
            k.osa_status.to_owned(),
            k.esu_coverage.map_or("-", phase_name).to_owned(),
            refusals.join(" "),
        ]);
    }
    section(&mut out, "Keys", keys, r.keys.is_empty());
    let mut outside = table(&[
        "key",
        "source",
        "observed at",
        "outside remaining",
        "ledger remaining",
        "difference",
        "seq",
    ]);
    let observed: Vec<_> = r
        .keys
        .iter()
        .filter_map(|k| k.external.as_ref().map(|e| (k.key_id, e)))
        .collect();
    for (key_id, e) in &observed {
        outside.add_row(vec![
            key_id.to_string(),
            e.source.clone(),
            e.observed_at.to_string(),
            e.remaining.to_string(),
            e.ledger_remaining.to_string(),
            format!("{:+}", e.difference),
            e.seq.to_string(),
        ]);
    }
    section(
        &mut out,
        "Outside counts (reconciliation)",
        outside,
        observed.is_empty(),
    );
    let mut purchases = table(&["product", "quantity"]);
    for p in &r.purchases {
        purchases.add_row(vec![p.product.clone(), p.quantity.to_string()]);
    }
    section(
        &mut out,
        "Purchases (compliance, apart from activations)",
        purchases,
        r.purchases.is_empty(),
    );
    let mut hosts = table(&[
        "host",
        "key",
        "line",
        "activations",
        "windows (30d)",
        "office (30d)",
        "thresholds met",
    ]);
    for h in &r.kms_hosts {
        let met: Vec<&str> = [
            (h.windows_server_threshold_met, "servers"),
            (h.windows_client_threshold_met, "clients"),
            (h.office_threshold_met, "office"),
        ]
        .iter()
        .filter(|(m, _)| *m)
        .map(|(_, n)| *n)
        .collect();
        hosts.add_row(vec![
            h.host.clone(),
            h.key_id.to_string(),
            h.line.to_owned(),
            h.activations.to_string(),
            h.windows_count.to_string(),
            h.office_count.to_string(),
            met.join(", "),
        ]);
    }
    section(&mut out, "KMS hosts", hosts, r.kms_hosts.is_empty());
    let mut requests = table(&["request", "kind", "product", "needed", "by", "outcome"]);
    for q in &r.requests {
        let by = q.decided_by.as_deref().unwrap_or("");
        let summary = match q.outcome {
            "granted" => format!("granted {} by {by}", q.amount.unwrap_or(0)),
            "denied" => format!("denied by {by}: {}", q.reason.as_deref().unwrap_or("")),
            other => other.to_owned(),
        };
        requests.add_row(vec![
            q.request_id.clone(),
            q.kind.to_owned(),
            q.product.clone(),
            q.needed.to_string(),
            q.requested_by.clone(),
            summary,
        ]);
    }
    section(&mut out, "Requests", requests, r.requests.is_empty());
    let mut orders = table(&["order", "product", "coverage", "phase"]);
    for o in &r.esu_orders {
        orders.add_row(vec![
            o.order_id.clone(),
            o.product.clone(),
            format!("{} .. {}", o.coverage_start, o.coverage_end),
            phase_name(o.phase).to_owned(),
        ]);
    }
    section(&mut out, "ESU orders", orders, r.esu_orders.is_empty());
    let mut roles = table(&["principal", "roles"]);
    for role in &r.roles {
        let names: Vec<&str> = role.roles.iter().map(|r| r.as_str()).collect();
        roles.add_row(vec![role.principal.clone(), names.join(", ")]);
    }
    section(&mut out, "Roles", roles, r.roles.is_empty());
    let mut seen = table(&["seq", "at", "who", "channel", "keys", "export digest"]);
    for d in &r.disclosures {
        let keys: Vec<String> = d.key_ids.iter().map(u64::to_string).collect();
        seen.add_row(vec![
            d.seq.to_string(),
            d.at.to_string(),
            d.actor.clone(),
            d.channel.to_string(),
            keys.join(" "),
            d.export_digest.map(|g| g.to_string()).unwrap_or_default(),
        ]);
    }
    section(
        &mut out,
        "Disclosures of key text (R1, R2)",
        seen,
        r.disclosures.is_empty(),
    );
    let mut rights = table(&[
        "product",
        "downgrade to",
        "reimage",
        "training/backup/eval",
        "key note",
    ]);
    for x in &r.rights {
        rights.add_row(vec![
            x.product.clone(),
            x.downgrade_to.join(", "),
            format!(
                "{} ({})",
                if x.reimage_eligible { "yes" } else { "no" },
                x.reimage_reason
            ),
            if x.training_backup_evaluation {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            x.key_note.clone().unwrap_or_default(),
        ]);
    }
    section(&mut out, "Rights", rights, r.rights.is_empty());
    section(&mut out, "Alerts (derived)", alerts(r), r.alerts.is_empty());
    out.push_str(&format!("\nNote: {}\n", r.note));
    out
}

/// The report's alerts (issue 18), one row each.
fn alerts(r: &LicenseReport) -> Table {
    grid(
        &[
            "rule",
            "key",
            "host",
            "request",
            "value",
            "threshold",
            "message",
        ],
        r.alerts.iter().map(|a| {
            vec![
                a.rule.to_owned(),
                opt(&a.key_id),
                opt(&a.host),
                opt(&a.request_id),
                format!("{:.2}", a.value),
                format!("{:.2}", a.threshold),
                a.message.clone(),
            ]
        }),
    )
}

fn section(out: &mut String, title: &str, table: Table, empty: bool) {
    out.push_str(&format!("\n{title}\n"));
    if empty {
        out.push_str("(none)\n");
    } else {
        out.push_str(&table.to_string());
        out.push('\n');
    }
}
