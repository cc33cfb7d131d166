//! The license report as text: a heading and one human table a section, or one TSV row a key.

use comfy_table::Table;

use crate::report::LicenseReport;
use crate::table::{grid, phase_name, Format};

impl LicenseReport {
    /// The report as `format` (table, TSV or JSON).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("reports serialize") + "\n",
            Format::Tsv => self.to_tsv(),
            Format::Table => render(self),
        }
    }

    /// One header row, then one row a key.
    pub fn to_tsv(&self) -> String {
        let mut out = csv::WriterBuilder::new()
            .delimiter(b'\t')
            .from_writer(Vec::new());
        out.write_record([
            "license_id",
            "org",
            "program",
            "product",
            "key_id",
            "kind",
            "key",
            "used",
            "total",
            "remaining",
            "purchased",
            "osa_status",
            "esu_coverage",
            "blocked",
            "refusals",
            "external_remaining",
            "external_observed_at",
            "external_difference",
        ])
        .expect("writes to memory");
        for key in &self.keys {
            let refusals: Vec<String> = key
                .refusals
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let external = key.external.as_ref();
            out.write_record([
                self.license_id.as_str(),
                &self.org.org,
                self.program.as_str(),
                &key.product,
                &key.key_id.to_string(),
                key.kind.as_str(),
                &key.key,
                &key.used.to_string(),
                &key.total.to_string(),
                &key.remaining.to_string(),
                &key.purchased.to_string(),
                key.osa_status,
                key.esu_coverage.map_or("", phase_name),
                if key.blocked { "yes" } else { "no" },
                &refusals.join(","),
                &external.map_or_else(String::new, |e| e.remaining.to_string()),
                &external.map_or_else(String::new, |e| e.observed_at.to_string()),
                &external.map_or_else(String::new, |e| e.difference.to_string()),
            ])
            .expect("writes to memory");
        }
        String::from_utf8(out.into_inner().expect("flushes to memory"))
            .expect("UTF-8 in, UTF-8 out")
    }
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

/// The whole report: its heading, then one table a section (an empty section says so).
fn render(r: &LicenseReport) -> String {
    let mut out = heading(r);
    section(&mut out, "Keys", keys(r), r.keys.is_empty());
    let observed = outside(r);
    section(
        &mut out,
        "Outside counts (reconciliation)",
        observed.0,
        observed.1,
    );
    section(
        &mut out,
        "Purchases (compliance, apart from activations)",
        purchases(r),
        r.purchases.is_empty(),
    );
    section(&mut out, "KMS hosts", kms_hosts(r), r.kms_hosts.is_empty());
    section(&mut out, "Requests", requests(r), r.requests.is_empty());
    section(
        &mut out,
        "ESU orders",
        esu_orders(r),
        r.esu_orders.is_empty(),
    );
    section(&mut out, "Roles", roles(r), r.roles.is_empty());
    section(
        &mut out,
        "Disclosures of key text (R1, R2)",
        disclosures(r),
        r.disclosures.is_empty(),
    );
    section(&mut out, "Rights", rights(r), r.rights.is_empty());
    section(&mut out, "Alerts (derived)", alerts(r), r.alerts.is_empty());
    out.push_str(&format!("\nNote: {}\n", r.note));
    out
}

/// The license ID, its org and agreement, and the moment the report is of.
fn heading(r: &LicenseReport) -> String {
    let parents = if r.org.parent_chain.is_empty() {
        String::new()
    } else {
        format!(" (part of {})", r.org.parent_chain.join(" > "))
    };
    format!(
        "License ID {} — {} [{}]{}\nprogram {} · agreement {} · authorization {} · purchase account {}\nRDS license server activation number: {}\nreport time {} · as of seq {}\n",
        r.license_id, r.org.name, r.org.org, parents, r.program, r.agreement_number,
        opt(&r.authorization_number), opt(&r.purchase_account), r.rds_activation_number,
        r.report_time, r.at_seq
    )
}

/// One row a key: its counts (R9; KMS hosts for a KMS key, R13), OSA, ESU and refusals.
fn keys(r: &LicenseReport) -> Table {
    let header = [
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
    ];
    grid(
        &header,
        r.keys.iter().map(|k| {
            let refusals: Vec<String> =
                k.refusals.iter().map(|(c, n)| format!("{c}={n}")).collect();
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
            vec![
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
            ]
        }),
    )
}

/// Counts observed outside the ledger beside its own; and whether there were none.
fn outside(r: &LicenseReport) -> (Table, bool) {
    let header = [
        "key",
        "source",
        "observed at",
        "outside remaining",
        "ledger remaining",
        "difference",
        "seq",
    ];
    let observed: Vec<_> = r
        .keys
        .iter()
        .filter_map(|k| k.external.as_ref().map(|e| (k.key_id, e)))
        .collect();
    let rows = observed.iter().map(|(key_id, e)| {
        vec![
            key_id.to_string(),
            e.source.clone(),
            e.observed_at.to_string(),
            e.remaining.to_string(),
            e.ledger_remaining.to_string(),
            format!("{:+}", e.difference),
            e.seq.to_string(),
        ]
    });
    (grid(&header, rows), observed.is_empty())
}

fn purchases(r: &LicenseReport) -> Table {
    grid(
        &["product", "quantity"],
        r.purchases
            .iter()
            .map(|p| vec![p.product.clone(), p.quantity.to_string()]),
    )
}

/// KMS hosts, their 30-day counts and the thresholds they meet (R13, R14).
fn kms_hosts(r: &LicenseReport) -> Table {
    let header = [
        "host",
        "key",
        "line",
        "activations",
        "windows (30d)",
        "office (30d)",
        "thresholds met",
    ];
    grid(
        &header,
        r.kms_hosts.iter().map(|h| {
            let met: Vec<&str> = [
                (h.windows_server_threshold_met, "servers"),
                (h.windows_client_threshold_met, "clients"),
                (h.office_threshold_met, "office"),
            ]
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, n)| *n)
            .collect();
            vec![
                h.host.clone(),
                h.key_id.to_string(),
                h.line.to_owned(),
                h.activations.to_string(),
                h.windows_count.to_string(),
                h.office_count.to_string(),
                met.join(", "),
            ]
        }),
    )
}

fn requests(r: &LicenseReport) -> Table {
    let header = ["request", "kind", "product", "needed", "by", "outcome"];
    grid(
        &header,
        r.requests.iter().map(|q| {
            let by = q.decided_by.as_deref().unwrap_or("");
            let summary = match q.outcome {
                "granted" => format!("granted {} by {by}", q.amount.unwrap_or(0)),
                "denied" => format!("denied by {by}: {}", q.reason.as_deref().unwrap_or("")),
                other => other.to_owned(),
            };
            vec![
                q.request_id.clone(),
                q.kind.to_owned(),
                q.product.clone(),
                q.needed.to_string(),
                q.requested_by.clone(),
                summary,
            ]
        }),
    )
}

fn esu_orders(r: &LicenseReport) -> Table {
    grid(
        &["order", "product", "coverage", "phase"],
        r.esu_orders.iter().map(|o| {
            vec![
                o.order_id.clone(),
                o.product.clone(),
                format!("{} .. {}", o.coverage_start, o.coverage_end),
                phase_name(o.phase).to_owned(),
            ]
        }),
    )
}

fn roles(r: &LicenseReport) -> Table {
    grid(
        &["principal", "roles"],
        r.roles.iter().map(|role| {
            let names: Vec<&str> = role.roles.iter().map(|r| r.as_str()).collect();
            vec![role.principal.clone(), names.join(", ")]
        }),
    )
}

/// Who saw which key text, when and how (R1, R2).
fn disclosures(r: &LicenseReport) -> Table {
    let header = ["seq", "at", "who", "channel", "keys", "export digest"];
    grid(
        &header,
        r.disclosures.iter().map(|d| {
            let keys: Vec<String> = d.key_ids.iter().map(u64::to_string).collect();
            vec![
                d.seq.to_string(),
                d.at.to_string(),
                d.actor.clone(),
                d.channel.to_string(),
                keys.join(" "),
                d.export_digest.map(|g| g.to_string()).unwrap_or_default(),
            ]
        }),
    )
}

/// Downgrade, reimage and training rights per product (R21..R23).
fn rights(r: &LicenseReport) -> Table {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let header = [
        "product",
        "downgrade to",
        "reimage",
        "training/backup/eval",
        "key note",
    ];
    grid(
        &header,
        r.rights.iter().map(|x| {
            vec![
                x.product.clone(),
                x.downgrade_to.join(", "),
                format!("{} ({})", yes_no(x.reimage_eligible), x.reimage_reason),
                yes_no(x.training_backup_evaluation).to_owned(),
                x.key_note.clone().unwrap_or_default(),
            ]
        }),
    )
}

/// The report's alerts, one row each.
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
