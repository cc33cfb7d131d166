//! Issue 19: usage over time, the roll-up of an ownership structure and reconciliation,
//! each checked against numbers worked out by hand on one fixed scenario.
//! Method: the scenario runs through the real rules (core's test harness) at instants on
//! the edges that matter — the last microsecond of a month, midnight exactly, a leap day —
//! and the read models folded from its events must give exactly the hand-computed rows.

use crate::harness;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::*;
use keyledger_projections::summary::{summary, GroupBy};
use keyledger_projections::usage::{scope_keys, usage, Period, UsageError, UsageScope};
use keyledger_projections::{license_report, Projections};

fn fold(events: &[Event]) -> Projections {
    let mut p = Projections::default();
    for (i, event) in events.iter().enumerate() {
        p.apply(i as u64 + 1, event);
    }
    p
}

fn lid(id: &str) -> LicenseId {
    LicenseId::new(id).unwrap()
}

fn pid(id: &str) -> ProductId {
    ProductId::new(id).unwrap()
}

/// Key 1: a MAK of 10 under V-SELECT (contoso); key 2: a KMS host key there; key 3: a MAK of
/// 5 under V-OPEN (contoso too); V-EA belongs to fabrikam, another structure.
fn scenario() -> (Harness, ProductKeyText) {
    let mut h = Harness::with_catalog();
    h.role("adam", "V-SELECT", Role::Administrator);
    let purchase = |license: &str, quantity| {
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: lid(license),
            product: pid("win11-pro"),
            quantity,
        })
    };
    h.ok(OPERATOR, purchase("V-SELECT", 12));
    h.ok(OPERATOR, purchase("V-OPEN", 4));
    h.ok(OPERATOR, purchase("V-EA", 1000));
    let (_, mak) = h.mak("V-SELECT", "win11-pro", 10);
    let (_, kms) = h.kms_key("V-SELECT", "ws2022-std");
    let (_, open_mak) = h.mak("V-OPEN", "win11-pro", 5);
    h.mak("V-EA", "win11-pro", 100);
    // The last microsecond of January 2028, then midnight of February 1st exactly.
    h.at("2028-01-31T23:59:59.999999Z");
    h.ok("vamt", online(&mak, "contoso", "pc-1"));
    h.at("2028-02-01T00:00:00Z");
    h.ok("vamt", online(&mak, "contoso", "pc-2"));
    // The leap day: two new machines and one already active; a refusal from another
    // structure (R7) in its last second.
    h.at("2028-02-29T00:00:00Z");
    let proxy = activate(
        &mak,
        "contoso-east",
        ActivationMethod::Proxy,
        machines(&["pc-3", "pc-4", "pc-1"]),
    );
    h.ok("vamt", proxy);
    h.at("2028-02-29T23:59:59Z");
    h.refused("vamt", online(&mak, "fabrikam", "pc-9"));
    h.ok("vamt", online(&open_mak, "contoso", "lab-1"));
    // March 1st: a grant of 5 (R19), a KMS host and one client contact (R13, R14).
    h.at("2028-03-01T00:00:00Z");
    let request = CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: RequestId::new("rq-1").unwrap(),
        license_id: lid("V-SELECT"),
        authorization_number: None,
        product: pid("win11-pro"),
        key_last5: mak.last5(),
        activations_needed: 5,
        justification: "new lab".into(),
    });
    h.ok("adam", request);
    let grant = CommandBody::GrantRequest(GrantRequest {
        request_id: RequestId::new("rq-1").unwrap(),
        amount: 5,
    });
    h.ok(OPERATOR, grant);
    h.ok("kms", kms_host(&kms, "contoso", "kms-1"));
    h.ok(
        "kms",
        kms_client("kms-1", "srv-1", ClientFamily::WindowsServer),
    );
    let pending = CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: RequestId::new("rq-2").unwrap(),
        license_id: lid("V-SELECT"),
        authorization_number: None,
        product: pid("win11-pro"),
        key_last5: mak.last5(),
        activations_needed: 50,
        justification: "more".into(),
    });
    h.ok("adam", pending);
    (h, mak)
}

fn row<'r>(
    report: &'r keyledger_projections::usage::UsageReport,
    period: &str,
) -> &'r keyledger_projections::usage::PeriodRow {
    report
        .periods
        .iter()
        .find(|r| r.period == period)
        .unwrap_or_else(|| panic!("no period {period} in {:?}", report.periods))
}

#[test]
fn usage_by_month_is_exact_at_the_month_edge_and_on_the_leap_day() {
    let p = fold(&scenario().0.events);
    let scope = UsageScope::Key(KeyId(1));
    let keys = scope_keys(&p, &scope).unwrap();
    let from = Some(ts("2028-01-15T12:00:00Z"));
    let report = usage(&p, &scope, &keys, Period::Month, from, None).unwrap();
    assert_eq!(report.from, ts("2028-01-01T00:00:00Z"));
    assert_eq!(report.to, ts("2028-04-01T00:00:00Z"));
    let periods: Vec<&str> = report.periods.iter().map(|r| r.period.as_str()).collect();
    assert_eq!(periods, ["2028-01", "2028-02", "2028-03"]);
    let jan = row(&report, "2028-01");
    assert_eq!(
        (jan.consumed, jan.used_end, jan.total_end, jan.remaining_end),
        (1, 1, 10, 9)
    );
    let feb = row(&report, "2028-02");
    assert_eq!((feb.consumed, feb.already_active, feb.refused), (3, 1, 1));
    assert_eq!(feb.refusals.get("outside_ownership_structure"), Some(&1));
    assert_eq!((feb.used_end, feb.total_end, feb.remaining_end), (4, 10, 6));
    assert_eq!(
        (feb.peak_day.as_deref(), feb.peak_day_consumed),
        (Some("2028-02-29"), 2)
    );
    let mar = row(&report, "2028-03");
    assert_eq!((mar.consumed, mar.granted), (0, 5));
    assert_eq!(
        (mar.used_end, mar.total_end, mar.remaining_end),
        (4, 15, 11)
    );
    assert_eq!(mar.start, ts("2028-03-01T00:00:00Z"));
    assert_eq!(mar.end, ts("2028-04-01T00:00:00Z"));
}

/// F12 (second hardening): a period running past 0000-01-01 or 9999-12-31 ends at the
/// edge: no answer shows a moment the API would refuse as input.
#[test]
fn f12_usage_at_the_edges_of_the_accepted_years_stays_inside_them() {
    let p = fold(&scenario().0.events);
    let scope = UsageScope::Key(KeyId(1));
    let keys = scope_keys(&p, &scope).unwrap();
    let early = usage(
        &p,
        &scope,
        &keys,
        Period::Week,
        Some(Timestamp::MIN),
        Some(ts("0000-01-20T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(early.from, Timestamp::MIN);
    assert_eq!(early.periods[0].start, Timestamp::MIN);
    assert_eq!(early.periods[0].period, "0000-01-01");
    let late = usage(
        &p,
        &scope,
        &keys,
        Period::Month,
        Some(ts("9999-12-05T00:00:00Z")),
        Some(Timestamp::MAX),
    )
    .unwrap();
    assert_eq!(late.to, Timestamp::MAX);
    assert_eq!(late.periods.last().unwrap().end, Timestamp::MAX);
    for t in [early.from, early.to, late.from, late.to] {
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t), "{t} reads back");
    }
}

#[test]
fn usage_by_day_and_week_put_midnight_in_the_day_it_starts() {
    let p = fold(&scenario().0.events);
    let scope = UsageScope::Key(KeyId(1));
    let keys = scope_keys(&p, &scope).unwrap();
    let days = usage(
        &p,
        &scope,
        &keys,
        Period::Day,
        Some(ts("2028-01-31T00:00:00Z")),
        Some(ts("2028-02-02T00:00:00Z")),
    )
    .unwrap();
    let consumed: Vec<(&str, u64)> = days
        .periods
        .iter()
        .map(|r| (r.period.as_str(), r.consumed))
        .collect();
    assert_eq!(consumed, [("2028-01-31", 1), ("2028-02-01", 1)]);
    // `to` is exclusive: the leap day alone.
    let leap = usage(
        &p,
        &scope,
        &keys,
        Period::Day,
        Some(ts("2028-02-29T00:00:00Z")),
        Some(ts("2028-03-01T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(leap.periods.len(), 1);
    assert_eq!((leap.periods[0].consumed, leap.periods[0].refused), (2, 1));
    // ISO weeks start on Monday: 2028-01-31 is one, and its week crosses into February.
    let weeks = usage(
        &p,
        &scope,
        &keys,
        Period::Week,
        Some(ts("2028-02-01T00:00:00Z")),
        Some(ts("2028-02-07T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(weeks.periods.len(), 1);
    assert_eq!(weeks.periods[0].period, "2028-01-31");
    assert_eq!(weeks.periods[0].consumed, 2);
    assert_eq!(weeks.periods[0].used_end, 2);
}

#[test]
fn usage_of_a_license_id_adds_its_keys_and_counts_kms_traffic() {
    let p = fold(&scenario().0.events);
    let scope = UsageScope::LicenseId(lid("V-SELECT"));
    let keys = scope_keys(&p, &scope).unwrap();
    assert_eq!(keys, [KeyId(1), KeyId(2)]);
    let report = usage(
        &p,
        &scope,
        &keys,
        Period::Month,
        Some(ts("2028-03-01T00:00:00Z")),
        None,
    )
    .unwrap();
    let mar = row(&report, "2028-03");
    assert_eq!((mar.kms_host_activations, mar.kms_contacts), (1, 1));
    // KMS host keys count hosts, not activations: the totals are the MAK's.
    assert_eq!((mar.used_end, mar.total_end), (4, 15));
    // A product across license IDs: both win11-pro MAKs of contoso and fabrikam's.
    let product = UsageScope::Product(pid("win11-pro"));
    let keys = scope_keys(&p, &product).unwrap();
    assert_eq!(keys, [KeyId(1), KeyId(3), KeyId(4)]);
    let report = usage(
        &p,
        &product,
        &keys,
        Period::Month,
        Some(ts("2028-02-01T00:00:00Z")),
        None,
    )
    .unwrap();
    let feb = row(&report, "2028-02");
    assert_eq!((feb.consumed, feb.used_end, feb.total_end), (4, 5, 115));
}

#[test]
fn usage_refuses_empty_and_unbounded_ranges_and_unknown_scopes() {
    let p = fold(&scenario().0.events);
    let scope = UsageScope::Key(KeyId(1));
    let keys = scope_keys(&p, &scope).unwrap();
    let at = |t| Some(ts(t));
    let empty = usage(
        &p,
        &scope,
        &keys,
        Period::Day,
        at("2028-02-01T00:00:00Z"),
        at("2028-01-01T00:00:00Z"),
    );
    assert!(
        matches!(empty, Err(UsageError::EmptyRange { .. })),
        "{empty:?}"
    );
    let wide = usage(
        &p,
        &scope,
        &keys,
        Period::Day,
        at("0001-01-01T00:00:00Z"),
        at("9999-01-01T00:00:00Z"),
    );
    assert!(
        matches!(wide, Err(UsageError::TooManyPeriods { .. })),
        "{wide:?}"
    );
    // The same range by month fits.
    let months = usage(
        &p,
        &scope,
        &keys,
        Period::Month,
        at("2001-01-01T00:00:00Z"),
        at("2028-04-01T00:00:00Z"),
    );
    assert_eq!(months.unwrap().periods.len(), 27 * 12 + 3);
    assert!(matches!(
        scope_keys(&p, &UsageScope::Key(KeyId(99))),
        Err(UsageError::Unknown(_))
    ));
    assert!(matches!(
        scope_keys(&p, &UsageScope::LicenseId(lid("V-NONE"))),
        Err(UsageError::Unknown(_))
    ));
}

#[test]
fn r07_r24_the_summary_adds_up_the_ownership_structure_only() {
    let p = fold(&scenario().0.events);
    let at = ts("2028-03-01T00:00:00Z");
    let org = OrgId::new("contoso-east").unwrap();
    let s = summary(&p, &org, GroupBy::Product, at, |_| true).unwrap();
    assert_eq!(s.root_org, "contoso");
    assert_eq!(s.license_ids, ["V-OPEN", "V-OV", "V-SELECT"]);
    let win11 = s.rows.iter().find(|r| r.group == "win11-pro").unwrap();
    // V-EA (fabrikam) is another structure: its 1,000 and its key are not here.
    assert_eq!(win11.purchased, 16);
    assert_eq!(win11.keys.get("mak"), Some(&2));
    assert_eq!((win11.used, win11.total, win11.remaining), (5, 20, 15));
    assert_eq!(win11.refusals.get("outside_ownership_structure"), Some(&1));
    assert_eq!(win11.pending_requests, 1);
    let kms = s.rows.iter().find(|r| r.group == "ws2022-std").unwrap();
    assert_eq!((kms.kms_hosts, kms.kms_hosts_limit), (1, 6));
    assert!(s.purchase_note.contains("not a compliance figure"));
    let by_license = summary(&p, &org, GroupBy::LicenseId, at, |_| true).unwrap();
    let groups: Vec<(&str, u64, u64)> = by_license
        .rows
        .iter()
        .map(|r| (r.group.as_str(), r.used, r.total))
        .collect();
    assert_eq!(groups, [("V-OPEN", 1, 5), ("V-SELECT", 4, 15)]);
    // A reader sees only the license IDs the rule lets in.
    let one = summary(&p, &org, GroupBy::Product, at, |l| l.as_str() == "V-OPEN").unwrap();
    assert_eq!(one.license_ids, ["V-OPEN"]);
    assert_eq!(one.rows[0].purchased, 4);
}

#[test]
fn reconciliation_shows_the_outside_count_beside_the_ledgers_own() {
    let (mut h, mak) = scenario();
    let record = |remaining, observed_at: &str| {
        CommandBody::RecordExternalCount(RecordExternalCount {
            key_id: KeyId(1),
            source: "microsoft-activation-service".into(),
            remaining,
            observed_at: ts(observed_at),
            note: None,
        })
    };
    h.ok(OPERATOR, record(12, "2028-02-15T00:00:00Z"));
    // The last observation wins; the ledger then counted 11 left, the service 9.
    h.ok(OPERATOR, record(9, "2028-03-01T00:00:00Z"));
    let seq = h.events.len() as u64;
    h.at("2028-03-02T00:00:00Z");
    h.ok("vamt", online(&mak, "contoso", "pc-5"));
    let p = fold(&h.events);
    let report = license_report(&p, &lid("V-SELECT"), h.now).unwrap();
    let external = report.keys[0].external.as_ref().unwrap();
    assert_eq!(external.seq, seq);
    assert_eq!(
        (
            external.remaining,
            external.ledger_remaining,
            external.difference
        ),
        (9, 11, 2)
    );
    assert_eq!(report.keys[0].remaining, 10);
    assert!(report.keys[1].external.is_none());
    let tsv = report.to_tsv();
    let header: Vec<&str> = tsv.lines().next().unwrap().split('\t').collect();
    let first: Vec<&str> = tsv.lines().nth(1).unwrap().split('\t').collect();
    let column = |name| first[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("external_remaining"), "9");
    assert_eq!(column("external_difference"), "2");
    assert_eq!(column("external_observed_at"), "2028-03-01T00:00:00Z");
    let org = OrgId::new("contoso").unwrap();
    let s = summary(&p, &org, GroupBy::Product, h.now, |_| true).unwrap();
    assert_eq!(s.reconciliation.len(), 1);
    let r = &s.reconciliation[0];
    assert_eq!(
        (r.key_id, r.remaining_now, r.external.difference),
        (1, 10, 2)
    );
}
