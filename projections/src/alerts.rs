//! Alerts (issue 18, item 4): conditions a licensing admin must hear about before machines
//! are refused. They are derived from the projections at a moment, never appended to the log:
//! each names its rule, what it is about, the measured value beside the threshold, and the
//! seq it was evaluated at. Rule names are API (docs/api.md, "Alerts").
//!
//! Every rule compares with the threshold in one direction, written once here; the edges
//! are tested in `projections/tests/alerts.rs`.

use keyledger_core::{ClientFamily, KeyKind, LicenseId, Span, Timestamp};
use serde::Serialize;

use crate::forecast::{forecast, WINDOW_DAYS_DEFAULT};
use crate::model::Projections;
use crate::report::phase_name;

/// The thresholds the rules compare with; `Default` is what the CLI and the service use
/// unless told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// `mak_low_remaining`: a MAK or ESU MAK with less than this percentage of its total left.
    pub remaining_percent: u64,
    /// `mak_exhaustion_soon`: projected to run out within this many days.
    pub exhaustion_days: i64,
    /// `esu_coverage_starting` / `esu_coverage_ending`: within this many days.
    pub coverage_days: i64,
    /// `request_pending_long`: pending for longer than this many days.
    pub pending_days: i64,
    /// `refusal_burst`: at least this many refusals of one code on one key in the UTC day of
    /// the evaluation.
    pub burst_refusals: u64,
}

impl Default for AlertRules {
    fn default() -> AlertRules {
        AlertRules {
            remaining_percent: 10,
            exhaustion_days: 30,
            coverage_days: 30,
            pending_days: 7,
            burst_refusals: 20,
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub rule: &'static str,
    pub license_id: String,
    pub key_id: Option<u64>,
    pub host: Option<String>,
    pub request_id: Option<String>,
    /// The measured value (a percentage, days, a count) the threshold is compared with.
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    /// The business time and the last seq the alert was evaluated at.
    pub evaluated_at: Timestamp,
    pub at_seq: u64,
}

/// The alerts at business time `at`, over one license ID or all of them, in a stable order
/// (license ID, then rule, then what it is about).
pub fn alerts(
    p: &Projections,
    license: Option<&LicenseId>,
    at: Timestamp,
    rules: &AlertRules,
) -> Vec<Alert> {
    let mut out = Vec::new();
    let alert = |rule: &'static str, license_id: &LicenseId, value: f64, threshold: f64| Alert {
        rule,
        license_id: license_id.to_string(),
        key_id: None,
        host: None,
        request_id: None,
        value,
        threshold,
        message: String::new(),
        evaluated_at: at,
        at_seq: p.last_seq,
    };
    for (key_id, key) in p.books.keys.iter() {
        if license.is_some_and(|l| *l != key.license_id) {
            continue;
        }
        let about = |mut a: Alert, message: String| {
            a.key_id = Some(key_id.0);
            a.message = message;
            a
        };
        if matches!(key.kind, KeyKind::Mak | KeyKind::EsuMak) && key.total() > 0 {
            let remaining = key.total().saturating_sub(key.used);
            // Compared in whole numbers: exactly N% left is not an alert, a unit less is.
            let (left, total) = (u128::from(remaining), u128::from(key.total()));
            if left * 100 < u128::from(rules.remaining_percent) * total {
                let percent = remaining as f64 * 100.0 / key.total() as f64;
                let a = alert(
                    "mak_low_remaining",
                    &key.license_id,
                    percent,
                    rules.remaining_percent as f64,
                );
                out.push(about(
                    a,
                    format!(
                        "{remaining} of {} activations left ({percent:.1}%, under {}%)",
                        key.total(),
                        rules.remaining_percent
                    ),
                ));
            }
            let f = forecast(key_id, key, at, WINDOW_DAYS_DEFAULT);
            if let (Some(end), true) = (f.exhaustion, remaining > 0) {
                let days = (end.unix_micros() - at.unix_micros()) as f64 / 86_400e6;
                if end <= at.plus(Span::days(rules.exhaustion_days)) {
                    let a = alert(
                        "mak_exhaustion_soon",
                        &key.license_id,
                        days,
                        rules.exhaustion_days as f64,
                    );
                    out.push(about(
                        a,
                        format!(
                        "at {:.2} a day, the {remaining} left run out on {} (in {days:.1} days)",
                        f.rate_per_day,
                        &end.to_string()[..10]
                    ),
                    ));
                }
            }
        }
        if let Some(coverage) = key.coverage {
            for (rule, when) in [
                ("esu_coverage_starting", coverage.start),
                ("esu_coverage_ending", coverage.end),
            ] {
                let horizon = at.plus(Span::days(rules.coverage_days));
                if when > at && when <= horizon {
                    let days = (when.unix_micros() - at.unix_micros()) as f64 / 86_400e6;
                    let a = alert(rule, &key.license_id, days, rules.coverage_days as f64);
                    let phase = phase_name(coverage.phase_at(at));
                    out.push(about(
                        a,
                        format!(
                            "ESU coverage {} on {} (in {days:.1} days; {phase} now)",
                            if rule == "esu_coverage_starting" {
                                "starts"
                            } else {
                                "ends"
                            },
                            &when.to_string()[..10]
                        ),
                    ));
                }
            }
        }
    }
    kms_alerts(p, license, at, &mut out, &alert);
    for (request_id, request) in &p.books.requests {
        if license.is_some_and(|l| *l != request.license_id) || request.decision.is_some() {
            continue;
        }
        let waited = at.unix_micros() - request.requested_at.unix_micros();
        if waited > Span::days(rules.pending_days).as_micros() {
            let days = waited as f64 / 86_400e6;
            let mut a = alert(
                "request_pending_long",
                &request.license_id,
                days,
                rules.pending_days as f64,
            );
            a.request_id = Some(request_id.to_string());
            a.message = format!(
                "request {request_id} by {} has waited {days:.1} days (over {})",
                request.requested_by, rules.pending_days
            );
            out.push(a);
        }
    }
    burst_alerts(p, license, at, rules, &mut out, &alert);
    out.sort_by(|a, b| {
        (&a.license_id, a.rule, a.key_id, &a.host, &a.request_id).cmp(&(
            &b.license_id,
            b.rule,
            b.key_id,
            &b.host,
            &b.request_id,
        ))
    });
    out
}

/// `kms_below_threshold`: a host whose 30-day count reached a threshold at its last contact
/// and has fallen below it since, as clients aged out of the window (R14). A count only
/// falls after the newest contact, so the count then is the one the window last reached.
fn kms_alerts(
    p: &Projections,
    license: Option<&LicenseId>,
    at: Timestamp,
    out: &mut Vec<Alert>,
    alert: &impl Fn(&'static str, &LicenseId, f64, f64) -> Alert,
) {
    for (host, view) in &p.books.kms_hosts {
        let lines = [
            (
                view.windows_key,
                &view.windows,
                [ClientFamily::WindowsClient, ClientFamily::WindowsServer].as_slice(),
            ),
            (
                view.office_key,
                &view.office,
                [ClientFamily::Office].as_slice(),
            ),
        ];
        for (key_id, window, families) in lines {
            let Some(key_id) = key_id else { continue };
            let Some(key) = p.books.keys.get(key_id) else {
                continue;
            };
            if license.is_some_and(|l| *l != key.license_id) {
                continue;
            }
            let Some(last) = window.latest_contact() else {
                continue;
            };
            let (then, now) = (window.count_at(last), window.count_at(at.max(last)));
            // One alert a host line: the largest threshold lost, naming every one.
            let lost: Vec<(ClientFamily, u32)> = families
                .iter()
                .map(|f| (*f, f.kms_threshold()))
                .filter(|(_, threshold)| then >= *threshold && now < *threshold)
                .collect();
            let Some(&(_, threshold)) = lost.first() else {
                continue;
            };
            let names: Vec<String> = lost.iter().map(|(f, t)| format!("{t} for {f}")).collect();
            let mut a = alert(
                "kms_below_threshold",
                &key.license_id,
                f64::from(now),
                f64::from(threshold),
            );
            a.key_id = Some(key_id.0);
            a.host = Some(host.to_string());
            a.message = format!(
                "KMS host {host} counts {now} machines in 30 days (it counted {then}): below \
                 the threshold of {}",
                names.join(" and ")
            );
            out.push(a);
        }
    }
}

/// `refusal_burst`: one refusal code on one key at least `burst_refusals` times in the UTC
/// day of `at`.
fn burst_alerts(
    p: &Projections,
    license: Option<&LicenseId>,
    at: Timestamp,
    rules: &AlertRules,
    out: &mut Vec<Alert>,
    alert: &impl Fn(&'static str, &LicenseId, f64, f64) -> Alert,
) {
    for (key_id, key) in p.books.keys.iter() {
        if license.is_some_and(|l| *l != key.license_id) {
            continue;
        }
        let Some(day) = key.daily.get(&at.unix_day()) else {
            continue;
        };
        for (code, count) in &day.refused {
            if *count >= rules.burst_refusals {
                let mut a = alert(
                    "refusal_burst",
                    &key.license_id,
                    *count as f64,
                    rules.burst_refusals as f64,
                );
                a.key_id = Some(key_id.0);
                a.message = format!(
                    "{count} activations refused with {code} on key {key_id} on {}",
                    &at.to_string()[..10]
                );
                out.push(a);
            }
        }
    }
}

/// The alerts as JSON (`{"alerts": [...]}`), tab-separated text or a human table.
pub fn render(all: &[Alert], format: crate::report::Format) -> String {
    use crate::report::Format;
    let header = [
        "rule",
        "license_id",
        "key_id",
        "host",
        "request_id",
        "value",
        "threshold",
        "at_seq",
        "message",
    ];
    let cells = |a: &Alert| {
        let opt = |v: Option<String>| v.unwrap_or_default();
        vec![
            a.rule.to_owned(),
            a.license_id.clone(),
            opt(a.key_id.map(|k| k.to_string())),
            opt(a.host.clone()),
            opt(a.request_id.clone()),
            format!("{:.2}", a.value),
            format!("{:.2}", a.threshold),
            a.at_seq.to_string(),
            a.message.clone(),
        ]
    };
    match format {
        Format::Json => {
            let body = serde_json::json!({ "alerts": all });
            serde_json::to_string_pretty(&body).expect("alerts serialize") + "\n"
        }
        Format::Tsv => crate::table::tsv(&header, all.iter().map(cells)),
        Format::Table if all.is_empty() => "No alerts.\n".to_owned(),
        Format::Table => format!("{}\n", crate::table::grid(&header, all.iter().map(cells))),
    }
}
