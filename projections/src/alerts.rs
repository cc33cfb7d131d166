//! Alerts: conditions a licensing admin must hear about before machines
//! are refused. They are derived from the projections at a moment, never appended to the log:
//! each names its rule, what it is about, the measured value beside the threshold, and the
//! seq it was evaluated at. Rule names are API (docs/api.md, "Alerts").
//!
//! Every rule compares with the threshold in one direction, written once here; the edges
//! are tested in `projections/tests/alerts.rs`.

use keyledger_core::{ClientFamily, KeyId, KeyKind, LicenseId, Span, Timestamp};
use serde::Serialize;

use crate::forecast::{forecast, WINDOW_DAYS_DEFAULT};
use crate::model::{KeyView, Projections};
use crate::table::phase_name;

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
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// The alert rule that fired, by its stable name (e.g. `mak_low_remaining`).
    pub rule: &'static str,
    /// The license ID the alert is about.
    pub license_id: String,
    /// The key it is about, if a key.
    pub key_id: Option<u64>,
    /// The KMS host it is about, if a host.
    pub host: Option<String>,
    /// The request it is about, if a request.
    pub request_id: Option<String>,
    /// The measured value (a percentage, days, a count) the threshold is compared with.
    pub value: f64,
    /// The threshold the rule compares `value` with.
    pub threshold: f64,
    /// What the alert says, in words.
    pub message: String,
    /// The business time and the last seq the alert was evaluated at.
    pub evaluated_at: Timestamp,
    /// The last seq the alert was evaluated at.
    pub at_seq: u64,
}

impl Alert {
    /// What the alert is about, stable while it holds: `RULE/LICENSE_ID` then `/key:N`,
    /// `/host:NAME`, `/request:ID` for the parts it names. An alert feed says an alert is
    /// raised, and later cleared, by this id.
    pub fn id(&self) -> String {
        let mut id = format!("{}/{}", self.rule, self.license_id);
        if let Some(key) = self.key_id {
            id.push_str(&format!("/key:{key}"));
        }
        if let Some(host) = &self.host {
            id.push_str(&format!("/host:{host}"));
        }
        if let Some(request) = &self.request_id {
            id.push_str(&format!("/request:{request}"));
        }
        id
    }
}

/// The alerts at business time `at`, over one license ID or all of them, in a stable order
/// (license ID, then rule, then what it is about).
pub fn alerts(
    p: &Projections,
    license: Option<&LicenseId>,
    at: Timestamp,
    rules: &AlertRules,
) -> Vec<Alert> {
    let e = Evaluation {
        p,
        license,
        at,
        rules,
    };
    let mut out = Vec::new();
    for (key_id, key) in p.books.keys.iter() {
        if e.takes(&key.license_id) {
            e.mak_alerts(key_id, key, &mut out);
            e.coverage_alerts(key_id, key, &mut out);
            e.burst_alerts(key_id, key, &mut out);
        }
    }
    e.kms_alerts(&mut out);
    e.request_alerts(&mut out);
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

/// One evaluation: the read models, the scope, the moment and the thresholds.
struct Evaluation<'a> {
    p: &'a Projections,
    license: Option<&'a LicenseId>,
    at: Timestamp,
    rules: &'a AlertRules,
}

/// Days from `from` to `to`, with their fraction.
fn days_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.unix_micros() - from.unix_micros()) as f64 / 86_400e6
}

impl Evaluation<'_> {
    fn takes(&self, license_id: &LicenseId) -> bool {
        self.license.is_none_or(|l| l == license_id)
    }

    fn alert(
        &self,
        rule: &'static str,
        license_id: &LicenseId,
        value: f64,
        threshold: f64,
    ) -> Alert {
        Alert {
            rule,
            license_id: license_id.to_string(),
            key_id: None,
            host: None,
            request_id: None,
            value,
            threshold,
            message: String::new(),
            evaluated_at: self.at,
            at_seq: self.p.last_seq,
        }
    }

    /// An alert about key `key_id`.
    fn about_key(
        &self,
        rule: &'static str,
        key_id: KeyId,
        key: &KeyView,
        value: f64,
        threshold: f64,
        message: String,
    ) -> Alert {
        let mut a = self.alert(rule, &key.license_id, value, threshold);
        a.key_id = Some(key_id.0);
        a.message = message;
        a
    }

    /// `mak_low_remaining` and `mak_exhaustion_soon`.
    fn mak_alerts(&self, key_id: KeyId, key: &KeyView, out: &mut Vec<Alert>) {
        if !matches!(key.kind, KeyKind::Mak | KeyKind::EsuMak) || key.total() == 0 {
            return;
        }
        let (at, rules) = (self.at, self.rules);
        let remaining = key.total().saturating_sub(key.used);
        // Compared in whole numbers: exactly N% left is not an alert, a unit less is.
        let (left, total) = (u128::from(remaining), u128::from(key.total()));
        if left * 100 < u128::from(rules.remaining_percent) * total {
            let percent = remaining as f64 * 100.0 / key.total() as f64;
            let message = format!(
                "{remaining} of {} activations left ({percent:.1}%, under {}%)",
                key.total(),
                rules.remaining_percent
            );
            let threshold = rules.remaining_percent as f64;
            out.push(self.about_key(
                "mak_low_remaining",
                key_id,
                key,
                percent,
                threshold,
                message,
            ));
        }
        let f = forecast(key_id, key, at, WINDOW_DAYS_DEFAULT);
        if let (Some(end), true) = (f.exhaustion, remaining > 0) {
            if end <= at.plus(Span::days(rules.exhaustion_days)) {
                let days = days_between(at, end);
                let message = format!(
                    "at {:.2} a day, the {remaining} left run out on {} (in {days:.1} days)",
                    f.rate_per_day,
                    &end.to_string()[..10]
                );
                let threshold = rules.exhaustion_days as f64;
                out.push(self.about_key(
                    "mak_exhaustion_soon",
                    key_id,
                    key,
                    days,
                    threshold,
                    message,
                ));
            }
        }
    }

    /// `esu_coverage_starting` and `esu_coverage_ending`.
    fn coverage_alerts(&self, key_id: KeyId, key: &KeyView, out: &mut Vec<Alert>) {
        let Some(coverage) = key.coverage else {
            return;
        };
        let at = self.at;
        let horizon = at.plus(Span::days(self.rules.coverage_days));
        for (rule, verb, when) in [
            ("esu_coverage_starting", "starts", coverage.start),
            ("esu_coverage_ending", "ends", coverage.end),
        ] {
            if when > at && when <= horizon {
                let days = days_between(at, when);
                let phase = phase_name(coverage.phase_at(at));
                let message = format!(
                    "ESU coverage {verb} on {} (in {days:.1} days; {phase} now)",
                    &when.to_string()[..10]
                );
                let threshold = self.rules.coverage_days as f64;
                out.push(self.about_key(rule, key_id, key, days, threshold, message));
            }
        }
    }

    /// `refusal_burst`: one refusal code on one key at least `burst_refusals` times in the
    /// UTC day of the evaluation.
    fn burst_alerts(&self, key_id: KeyId, key: &KeyView, out: &mut Vec<Alert>) {
        let Some(day) = key.daily.get(&self.at.unix_day()) else {
            return;
        };
        let threshold = self.rules.burst_refusals;
        for (code, count) in day.refused.iter().filter(|(_, n)| **n >= threshold) {
            let message = format!(
                "{count} activations refused with {code} on key {key_id} on {}",
                &self.at.to_string()[..10]
            );
            let (value, threshold) = (*count as f64, threshold as f64);
            out.push(self.about_key("refusal_burst", key_id, key, value, threshold, message));
        }
    }

    /// `kms_below_threshold`: a host line whose 30-day count reached a threshold at its last
    /// contact and has fallen below it since, as clients aged out of the window (R14). A
    /// count only falls after the newest contact, so the count then is the one the window
    /// last reached.
    fn kms_alerts(&self, out: &mut Vec<Alert>) {
        let windows = [ClientFamily::WindowsClient, ClientFamily::WindowsServer];
        for (host, view) in &self.p.books.kms_hosts {
            let lines = [
                (view.windows_key, &view.windows, windows.as_slice()),
                (
                    view.office_key,
                    &view.office,
                    [ClientFamily::Office].as_slice(),
                ),
            ];
            for (key_id, window, families) in lines {
                let Some((key_id, key)) =
                    key_id.and_then(|id| Some((id, self.p.books.keys.get(id)?)))
                else {
                    continue;
                };
                let Some(last) = window
                    .latest_contact()
                    .filter(|_| self.takes(&key.license_id))
                else {
                    continue;
                };
                let (then, now) = (window.count_at(last), window.count_at(self.at.max(last)));
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
                let message = format!(
                    "KMS host {host} counts {now} machines in 30 days (it counted {then}): below \
                     the threshold of {}",
                    names.join(" and ")
                );
                let (value, threshold) = (f64::from(now), f64::from(threshold));
                let mut a = self.about_key(
                    "kms_below_threshold",
                    key_id,
                    key,
                    value,
                    threshold,
                    message,
                );
                a.host = Some(host.to_string());
                out.push(a);
            }
        }
    }

    /// `request_pending_long`: undecided for more than `pending_days`.
    fn request_alerts(&self, out: &mut Vec<Alert>) {
        let pending_days = self.rules.pending_days;
        for (request_id, request) in &self.p.books.requests {
            if !self.takes(&request.license_id) || request.decision.is_some() {
                continue;
            }
            let waited = self.at.unix_micros() - request.requested_at.unix_micros();
            if waited > Span::days(pending_days).as_micros() {
                let days = days_between(request.requested_at, self.at);
                let mut a = self.alert(
                    "request_pending_long",
                    &request.license_id,
                    days,
                    pending_days as f64,
                );
                a.request_id = Some(request_id.to_string());
                a.message = format!(
                    "request {request_id} by {} has waited {days:.1} days (over {pending_days})",
                    request.requested_by
                );
                out.push(a);
            }
        }
    }
}

/// The alerts as JSON (`{"alerts": [...]}`), tab-separated text or a human table.
pub fn render(all: &[Alert], format: crate::table::Format) -> String {
    use crate::table::Format;
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
