//! Issue 18, item 4: each alert rule at its edge — exactly at the threshold (no alert) and
//! one unit past it (an alert naming the rule, the key or host, the value and the seq).
//! The scenarios run through the real rules (core's test harness); the alerts are evaluated
//! on the read models folded from their events.

use crate::harness;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::*;
use keyledger_projections::alerts::{alerts, Alert, AlertRules};
use keyledger_projections::Projections;

fn fold(events: &[Event]) -> Projections {
    let mut p = Projections::default();
    for (i, event) in events.iter().enumerate() {
        p.apply(i as u64 + 1, event);
    }
    p
}

fn of_rule<'a>(all: &'a [Alert], rule: &str) -> Vec<&'a Alert> {
    all.iter().filter(|a| a.rule == rule).collect()
}

fn at(h: &Harness, text: &str, rules: &AlertRules) -> Vec<Alert> {
    alerts(&fold(&h.events), None, ts(text), rules)
}

#[test]
fn mak_low_remaining_fires_one_activation_under_the_percentage_not_at_it() {
    let mut h = Harness::with_catalog();
    let (key, mak) = h.mak("V-SELECT", "win11-pro", 100);
    h.at("2026-03-01T00:00:00Z");
    let ninety = numbered_machines("pc", 90);
    h.ok(
        "vamt",
        activate(&mak, "contoso", ActivationMethod::Proxy, ninety),
    );
    let rules = AlertRules::default();
    let exactly = at(&h, "2026-03-01T00:00:00Z", &rules);
    assert!(
        of_rule(&exactly, "mak_low_remaining").is_empty(),
        "10 of 100 left is 10%"
    );
    h.ok("vamt", online(&mak, "contoso", "pc-extra"));
    let under = at(&h, "2026-03-01T00:00:00Z", &rules);
    let fired = of_rule(&under, "mak_low_remaining");
    assert_eq!(fired.len(), 1);
    let alert = fired[0];
    assert_eq!(alert.key_id, Some(key.0));
    assert_eq!(alert.license_id, "V-SELECT");
    assert_eq!((alert.value, alert.threshold), (9.0, 10.0));
    assert_eq!(alert.at_seq, h.events.len() as u64);
    assert_eq!(alert.message, "9 of 100 activations left (9.0%, under 10%)");
}

#[test]
fn mak_exhaustion_soon_fires_when_the_projection_falls_within_the_days() {
    let mut h = Harness::with_catalog();
    let (key, mak) = h.mak("V-SELECT", "win11-pro", 100);
    // 30 activations in the 30-day window: one a day, 70 left, so 70 days to go.
    h.at("2026-03-10T00:00:00Z");
    let thirty = numbered_machines("pc", 30);
    h.ok(
        "vamt",
        activate(&mak, "contoso", ActivationMethod::Proxy, thirty),
    );
    let now = "2026-03-20T00:00:00Z";
    let far = AlertRules {
        exhaustion_days: 69,
        ..AlertRules::default()
    };
    assert!(of_rule(&at(&h, now, &far), "mak_exhaustion_soon").is_empty());
    let near = AlertRules {
        exhaustion_days: 70,
        ..AlertRules::default()
    };
    let all = at(&h, now, &near);
    let fired = of_rule(&all, "mak_exhaustion_soon");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key_id, Some(key.0));
    assert_eq!((fired[0].value, fired[0].threshold), (70.0, 70.0));
}

#[test]
fn esu_coverage_starting_fires_exactly_d_days_ahead_and_not_a_microsecond_earlier() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(10)
        .coverage("2026-07-01T00:00:00Z", "2027-07-01T00:00:00Z");
    let (key, _) = h.issue(spec);
    let rules = AlertRules::default();
    // 30 days before the start exactly: within 30 days.
    let edge = at(&h, "2026-06-01T00:00:00Z", &rules);
    let fired = of_rule(&edge, "esu_coverage_starting");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key_id, Some(key.0));
    assert_eq!((fired[0].value, fired[0].threshold), (30.0, 30.0));
    let before = at(&h, "2026-05-31T23:59:59.999999Z", &rules);
    assert!(of_rule(&before, "esu_coverage_starting").is_empty());
    // Started: no longer "starting"; the end is a year off.
    let started = at(&h, "2026-07-01T00:00:00Z", &rules);
    assert!(of_rule(&started, "esu_coverage_starting").is_empty());
    assert!(of_rule(&started, "esu_coverage_ending").is_empty());
    let ending = at(&h, "2027-06-01T00:00:00Z", &rules);
    assert_eq!(of_rule(&ending, "esu_coverage_ending").len(), 1);
    let ended = at(&h, "2027-07-01T00:00:00Z", &rules);
    assert!(of_rule(&ended, "esu_coverage_ending").is_empty());
}

#[test]
fn kms_below_threshold_fires_when_the_count_drops_from_25_to_24_as_the_window_expires() {
    let mut h = Harness::with_catalog();
    let (key, kms) = h.kms_key("V-SELECT", "ws2022-std");
    h.at("2026-04-01T00:00:00Z");
    h.ok("kms", kms_host(&kms, "contoso", "kms-1"));
    h.ok(
        "kms",
        kms_client("kms-1", "pc-first", ClientFamily::WindowsClient),
    );
    h.at("2026-04-02T00:00:00Z");
    for i in 0..24 {
        let client = format!("pc-{i}");
        h.ok(
            "kms",
            kms_client("kms-1", &client, ClientFamily::WindowsClient),
        );
    }
    let rules = AlertRules::default();
    // 30 days after the first contact less a microsecond: all 25 still count.
    let held = at(&h, "2026-05-01T00:00:00Z", &rules);
    let before = at(&h, "2026-04-30T23:59:59.999999Z", &rules);
    assert!(of_rule(&before, "kms_below_threshold").is_empty());
    // At 30 days the first client ages out: 24, under the Windows client threshold of 25.
    let fired = of_rule(&held, "kms_below_threshold");
    assert_eq!(fired.len(), 1, "{held:?}");
    let alert = fired[0];
    assert_eq!(alert.host.as_deref(), Some("kms-1"));
    assert_eq!(alert.key_id, Some(key.0));
    assert_eq!((alert.value, alert.threshold), (24.0, 25.0));
    // The Windows Server threshold (5) still holds at 24.
    assert!(alert.message.contains("25 for windows_client"));
    assert!(
        !alert.message.contains("windows_server"),
        "{}",
        alert.message
    );
}

#[test]
fn request_pending_long_fires_only_after_more_than_d_days() {
    let mut h = Harness::with_catalog();
    h.role("adam", "V-SELECT", Role::Administrator);
    let (_, mak) = h.mak("V-SELECT", "win11-pro", 10);
    h.at("2026-02-01T12:00:00Z");
    let request = CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: RequestId::new("rq-1").unwrap(),
        license_id: LicenseId::new("V-SELECT").unwrap(),
        authorization_number: None,
        product: ProductId::new("win11-pro").unwrap(),
        key_last5: mak.last5(),
        activations_needed: 5,
        justification: "lab".into(),
    });
    h.ok("adam", request);
    let rules = AlertRules::default();
    let seven = at(&h, "2026-02-08T12:00:00Z", &rules);
    assert!(
        of_rule(&seven, "request_pending_long").is_empty(),
        "7 days is not more than 7"
    );
    let past = at(&h, "2026-02-08T12:00:00.000001Z", &rules);
    let fired = of_rule(&past, "request_pending_long");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].request_id.as_deref(), Some("rq-1"));
    h.ok(
        OPERATOR,
        CommandBody::DenyRequest(DenyRequest {
            request_id: RequestId::new("rq-1").unwrap(),
            reason: "no".into(),
        }),
    );
    let decided = at(&h, "2026-02-20T00:00:00Z", &rules);
    assert!(of_rule(&decided, "request_pending_long").is_empty());
}

#[test]
fn refusal_burst_fires_at_the_count_of_one_code_on_one_key_in_a_day() {
    let mut h = Harness::with_catalog();
    let (key, mak) = h.mak("V-SELECT", "win11-pro", 10);
    h.at("2026-05-05T08:00:00Z");
    let rules = AlertRules {
        burst_refusals: 5,
        ..AlertRules::default()
    };
    let mut code = None;
    for i in 0..4 {
        let machine = format!("foreign-{i}");
        code = Some(h.refused("vamt", online(&mak, "fabrikam", &machine)));
    }
    assert!(of_rule(&at(&h, "2026-05-05T23:00:00Z", &rules), "refusal_burst").is_empty());
    h.refused("vamt", online(&mak, "fabrikam", "foreign-4"));
    let all = at(&h, "2026-05-05T23:00:00Z", &rules);
    let fired = of_rule(&all, "refusal_burst");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key_id, Some(key.0));
    assert_eq!((fired[0].value, fired[0].threshold), (5.0, 5.0));
    assert!(fired[0].message.contains(code.unwrap().as_str()));
    // The next UTC day starts from nothing.
    assert!(of_rule(&at(&h, "2026-05-06T00:00:00Z", &rules), "refusal_burst").is_empty());
}

#[test]
fn alerts_of_one_license_id_leave_the_others_out() {
    let mut h = Harness::with_catalog();
    let (_, select) = h.mak("V-SELECT", "win11-pro", 1);
    let (_, open) = h.mak("V-OPEN", "win11-pro", 1);
    h.at("2026-03-01T00:00:00Z");
    h.ok("vamt", online(&select, "contoso", "a"));
    h.ok("vamt", online(&open, "contoso", "b"));
    let p = fold(&h.events);
    let rules = AlertRules::default();
    let everything = alerts(&p, None, ts("2026-03-01T00:00:00Z"), &rules);
    let low: Vec<&str> = of_rule(&everything, "mak_low_remaining")
        .iter()
        .map(|a| a.license_id.as_str())
        .collect();
    assert_eq!(low, ["V-OPEN", "V-SELECT"]);
    let one = alerts(
        &p,
        Some(&LicenseId::new("V-OPEN").unwrap()),
        ts("2026-03-01T00:00:00Z"),
        &rules,
    );
    assert!(one.iter().all(|a| a.license_id == "V-OPEN"));
    assert_eq!(of_rule(&one, "mak_low_remaining").len(), 1);
}
