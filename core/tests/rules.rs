//! One test (or more) per rule of docs/rules.md, named after it, in given / when / then form.
//! Method: build the state through real commands (`Harness`), run the command under test, and
//! assert on the exact events or refusal code, and on the state it leaves.

use crate::harness;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::state::{Decision, RequestOutcome};
use keyledger_core::*;

const READER: &str = "rita-reader";
const ADMIN: &str = "adam-admin";
const VIEWER: &str = "vic-viewer";
const OUTSIDER: &str = "oscar-outsider";

fn lid(id: &str) -> LicenseId {
    LicenseId::new(id).unwrap()
}

fn pid(id: &str) -> ProductId {
    ProductId::new(id).unwrap()
}

fn disclose(keys: &[KeyId], channel: DisclosureChannel, digest: Option<Digest>) -> CommandBody {
    CommandBody::DiscloseKeys(DiscloseKeys {
        key_ids: keys.to_vec(),
        channel,
        export_digest: digest,
    })
}

// R1, R2: disclosure of key text.

#[test]
fn r01_copying_key_text_needs_administrator_or_product_key_reader() {
    let mut h = Harness::with_catalog();
    let (key, _) = h.mak("V-SELECT", "win11-pro", 10);
    h.role(READER, "V-SELECT", Role::ProductKeyReader);
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    h.role(VIEWER, "V-SELECT", Role::KeyViewer);
    let copy = || disclose(&[key], DisclosureChannel::Copy, None);
    assert_eq!(h.refused(VIEWER, copy()), RefusalCode::Forbidden);
    assert_eq!(h.refused(OUTSIDER, copy()), RefusalCode::Forbidden);
    assert_eq!(h.refused(OPERATOR, copy()), RefusalCode::Forbidden);
    assert_eq!(h.ok(READER, copy()).len(), 1);
    assert_eq!(h.ok(ADMIN, copy()).len(), 1);
}

#[test]
fn r01_every_disclosure_is_recorded_with_who_which_keys_and_how() {
    let mut h = Harness::with_catalog();
    let (key, _) = h.mak("V-SELECT", "win11-pro", 10);
    h.role(READER, "V-SELECT", Role::ProductKeyReader);
    h.ok(READER, disclose(&[key], DisclosureChannel::Copy, None));
    let last = h.events.last().unwrap();
    assert_eq!(last.actor, principal(READER));
    assert_eq!(
        last.body,
        EventBody::KeysDisclosed {
            key_ids: vec![key],
            channel: DisclosureChannel::Copy,
            export_digest: None
        }
    );
}

#[test]
fn r01_a_role_on_another_license_id_does_not_disclose() {
    let mut h = Harness::with_catalog();
    let (select_key, _) = h.mak("V-SELECT", "win11-pro", 10);
    let (ea_key, _) = h.mak("V-EA", "win11-pro", 10);
    h.role(READER, "V-SELECT", Role::ProductKeyReader);
    let both = disclose(
        &[select_key, ea_key],
        DisclosureChannel::Export,
        Some(Digest([7; 32])),
    );
    assert_eq!(h.refused(READER, both), RefusalCode::Forbidden);
}

#[test]
fn r02_an_export_disclosure_carries_the_file_digest() {
    let mut h = Harness::with_catalog();
    let (a, _) = h.mak("V-SELECT", "win11-pro", 10);
    let (b, _) = h.kms_key("V-SELECT", "ws2022-std");
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    let digest = Digest([0xab; 32]);
    let events = h.ok(
        ADMIN,
        disclose(&[a, b], DisclosureChannel::Export, Some(digest)),
    );
    assert_eq!(
        events,
        vec![EventBody::KeysDisclosed {
            key_ids: vec![a, b],
            channel: DisclosureChannel::Export,
            export_digest: Some(digest)
        }]
    );
    let no_digest = disclose(&[a], DisclosureChannel::Export, None);
    assert_eq!(h.refused(ADMIN, no_digest), RefusalCode::Invalid);
    let copy_of_two = disclose(&[a, b], DisclosureChannel::Copy, None);
    assert_eq!(h.refused(ADMIN, copy_of_two), RefusalCode::Invalid);
}

/// docs/rules.md, "Key text" (key text lives outside the chain so that it can be erased), R3: an operator
/// retires a key's text once; after it no one can disclose it, whatever their role (R1).
#[test]
fn r01_a_retired_key_text_is_never_disclosed_again() {
    let mut h = Harness::with_catalog();
    let (key, _) = h.mak("V-SELECT", "win11-pro", 10);
    h.role(READER, "V-SELECT", Role::ProductKeyReader);
    let retire = |reason: &str| {
        CommandBody::RetireKeyText(RetireKeyText {
            key_id: key,
            reason: reason.to_owned(),
        })
    };
    assert_eq!(h.refused(READER, retire("leaked")), RefusalCode::Forbidden);
    assert_eq!(h.refused(OPERATOR, retire("  ")), RefusalCode::Invalid);
    assert_eq!(
        h.refused(OPERATOR, retire(&"x".repeat(501))),
        RefusalCode::Invalid
    );
    let unknown = CommandBody::RetireKeyText(RetireKeyText {
        key_id: KeyId(99),
        reason: "leaked".to_owned(),
    });
    assert_eq!(h.refused(OPERATOR, unknown), RefusalCode::UnknownKey);
    assert_eq!(
        h.ok(OPERATOR, retire(" posted publicly ")),
        vec![EventBody::KeyTextRetired {
            key_id: key,
            reason: "posted publicly".to_owned()
        }]
    );
    assert!(h.state.key(key).unwrap().text_retired);
    assert_eq!(
        h.refused(OPERATOR, retire("again")),
        RefusalCode::KeyTextRetired
    );
    let copy = disclose(&[key], DisclosureChannel::Copy, None);
    assert_eq!(h.refused(READER, copy), RefusalCode::KeyTextRetired);
    // The key itself goes on: it still activates machines.
    assert!(!h.state.key(key).unwrap().blocked);
}

/// Issue 19 (reconciliation), R3: an operator records an outside service's remaining count
/// of a MAK; the event carries the ledger's own remaining count at that command beside it.
#[test]
fn r03_an_operator_records_an_outside_count_beside_the_ledgers_own() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 120);
    h.at("2026-02-01T10:00:00Z");
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    let (kms, _) = h.kms_key("V-SELECT", "ws2022-std");
    let record = |key_id: KeyId, remaining: u64, observed_at: &str, source: &str| {
        CommandBody::RecordExternalCount(RecordExternalCount {
            key_id,
            source: source.to_owned(),
            remaining,
            observed_at: ts(observed_at),
            note: Some(" VAMT refresh ".to_owned()),
        })
    };
    let vamt = "microsoft-activation-service";
    let observed = "2026-02-01T09:00:00Z";
    assert_eq!(
        h.refused(READER, record(key, 112, observed, vamt)),
        RefusalCode::Forbidden
    );
    assert_eq!(
        h.refused(OPERATOR, record(KeyId(99), 1, observed, vamt)),
        RefusalCode::UnknownKey
    );
    assert_eq!(
        h.refused(OPERATOR, record(kms, 1, observed, vamt)),
        RefusalCode::WrongKeyKind
    );
    assert_eq!(
        h.refused(OPERATOR, record(key, 1, observed, " ")),
        RefusalCode::Invalid
    );
    let long_source = "s".repeat(129);
    assert_eq!(
        h.refused(OPERATOR, record(key, 1, observed, &long_source)),
        RefusalCode::Invalid
    );
    assert_eq!(
        h.refused(OPERATOR, record(key, 1_000_000_001, observed, vamt)),
        RefusalCode::Invalid
    );
    // An observation cannot come from after the command's own time.
    assert_eq!(
        h.refused(OPERATOR, record(key, 112, "2026-02-01T10:00:00.001Z", vamt)),
        RefusalCode::Invalid
    );
    // Zero left is a count like any other.
    assert_eq!(
        h.ok(OPERATOR, record(key, 0, "2026-02-01T10:00:00Z", vamt)),
        vec![EventBody::ExternalCountRecorded {
            key_id: key,
            source: vamt.to_owned(),
            remaining: 0,
            observed_at: ts("2026-02-01T10:00:00Z"),
            note: Some("VAMT refresh".to_owned()),
            ledger_remaining: 119,
        }]
    );
    // Evidence only: the key's counts are the ledger's.
    assert_eq!(h.key(key).remaining(), 119);
}

// R3: licensor-side commands need an operator.

#[test]
fn r03_licensor_side_commands_need_an_operator() {
    let mut h = Harness::with_catalog();
    let (key, _) = h.mak("V-SELECT", "win11-pro", 10);
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    let licensor_commands = vec![
        CommandBody::AddOperator(AddOperator {
            principal: principal("mallory"),
        }),
        CommandBody::RegisterOrg(RegisterOrg {
            org: OrgId::new("new-org").unwrap(),
            name: "New".into(),
            parent: None,
        }),
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: lid("V-SELECT"),
            product: pid("win11-pro"),
            quantity: 5,
        }),
        CommandBody::IssueKey(issue_spec("V-SELECT", "win11-pro", KeyKind::Mak).limit(5)),
        CommandBody::BlockKey(BlockKey { key_id: key }),
        CommandBody::OrderEsu(OrderEsu {
            order_id: OrderId::new("esu-1").unwrap(),
            license_id: lid("V-SELECT"),
            product: pid("ws2016-std"),
            coverage_start: ts("2026-10-01T00:00:00Z"),
            coverage_end: ts("2027-10-01T00:00:00Z"),
        }),
        CommandBody::AssignRole(AssignRole {
            principal: principal(ADMIN),
            license_id: lid("V-SELECT"),
            role: Role::ProductKeyReader,
        }),
    ];
    let before = h.state.clone();
    for body in licensor_commands {
        let name = body.type_name();
        assert_eq!(h.refused(ADMIN, body), RefusalCode::Forbidden, "{name}");
    }
    assert_eq!(h.state, before, "refused commands change nothing");
}

#[test]
fn r03_init_creates_the_first_operator_and_only_the_first() {
    let mut h = Harness::new();
    assert!(h.state.is_operator(&principal(OPERATOR)));
    let again = CommandBody::AddOperator(AddOperator {
        principal: principal("eve"),
    });
    assert_eq!(h.refused("eve", again.clone()), RefusalCode::Forbidden);
    assert_eq!(h.ok(OPERATOR, again).len(), 1);
    assert!(h.state.is_operator(&principal("eve")));
}

// R4, R5, R6: products that take no key.

#[test]
fn r04_a_product_needing_no_key_gets_none() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "m365-apps", KeyKind::Mak).limit(5);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(spec)),
        RefusalCode::NoKeyRequired
    );
    assert!(h.state.keys().next().is_none());
}

#[test]
fn r05_embedded_keys_are_issued_from_sql_server_2022_only() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.issue(issue_spec("V-SELECT", "sql-2022", KeyKind::Embedded));
    assert_eq!(h.key(key).kind, KeyKind::Embedded);
    let old = CommandBody::IssueKey(issue_spec("V-SELECT", "sql-2019", KeyKind::Embedded));
    let refusal = h.run(OPERATOR, old).unwrap_err();
    assert_eq!(refusal.code(), RefusalCode::NoKeyRequired);
    assert!(refusal
        .to_string()
        .contains("This product does not require a product key"));
    let mak_for_sql = issue_spec("V-SELECT", "sql-2022", KeyKind::Mak).limit(3);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(mak_for_sql)),
        RefusalCode::WrongKeyKind
    );
    // Embedded keys are never activated through the ledger.
    assert_eq!(
        h.refused(OPERATOR, online(&text, "contoso", "sql-box")),
        RefusalCode::WrongKeyKind
    );
}

#[test]
fn r06_license_server_products_get_no_key_and_show_the_program_number() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "rds-cal-2022", KeyKind::Mak).limit(5);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(spec)),
        RefusalCode::NoKeyRequired
    );
    let number = |h: &Harness, id: &str| {
        h.state
            .license(&lid(id))
            .unwrap()
            .license_server_number()
            .to_owned()
    };
    assert_eq!(number(&h, "V-OPEN"), "AUTH-77");
    assert_eq!(
        number(&h, "V-MPSA"),
        "PA-4242",
        "MPSA uses the purchase account"
    );
    assert_eq!(number(&h, "V-EA"), "AGR-V-EA");
}

#[test]
fn r06_open_license_and_mpsa_ids_need_their_numbers() {
    let mut h = Harness::with_catalog();
    let open = CommandBody::RegisterLicenseId(RegisterLicenseId {
        license_id: lid("V-OPEN-2"),
        org: OrgId::new("contoso").unwrap(),
        program: Program::OpenLicense,
        agreement_number: "AGR".into(),
        authorization_number: None,
        purchase_account: None,
    });
    assert_eq!(h.refused(OPERATOR, open), RefusalCode::Invalid);
}

// R7: ownership structure.

#[test]
fn r07_a_child_org_may_use_a_key_of_its_parents_license_id() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 5);
    h.ok("vamt", online(&text, "contoso-east", "pc-1"));
    assert_eq!(h.key(key).used(), 1);
}

#[test]
fn r07_activation_from_outside_the_ownership_structure_is_refused_and_recorded() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 5);
    let code = h.refused("vamt", online(&text, "fabrikam", "pc-1"));
    assert_eq!(code, RefusalCode::OutsideOwnershipStructure);
    assert_eq!(h.key(key).used(), 0);
    assert!(matches!(
        h.last_event(),
        EventBody::ActivationRefused { key_id: Some(k), code: RefusalCode::OutsideOwnershipStructure, .. } if *k == key
    ));
}

// R8, R9: MAK limits.

#[test]
fn r08_the_mak_limit_is_set_at_issuance_not_by_purchases() {
    let mut h = Harness::with_catalog();
    h.ok(
        OPERATOR,
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: lid("V-SELECT"),
            product: pid("win11-pro"),
            quantity: 3,
        }),
    );
    let (key, _) = h.mak("V-SELECT", "win11-pro", 500);
    assert_eq!(h.key(key).total(), 500);
    assert_eq!(h.state.purchased(&lid("V-SELECT"), &pid("win11-pro")), 3);
}

#[test]
fn r09_activations_up_to_exactly_the_limit_then_one_over_is_refused() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 3);
    for i in 0..3 {
        h.ok("vamt", online(&text, "contoso", &format!("pc-{i}")));
    }
    assert_eq!(h.key(key).remaining(), 0);
    let refusal = h.run("vamt", online(&text, "contoso", "pc-3")).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::InsufficientActivations {
            key_id: key,
            remaining: 0,
            needed: 1
        }
    );
    assert_eq!(h.key(key).used(), 3);
}

#[test]
fn r09_proxy_activation_is_all_or_nothing() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 10);
    h.ok(
        "vamt",
        activate(
            &text,
            "contoso",
            ActivationMethod::Proxy,
            numbered_machines("a", 7),
        ),
    );
    let batch = numbered_machines("b", 4);
    let refusal = h
        .run(
            "vamt",
            activate(&text, "contoso", ActivationMethod::Proxy, batch),
        )
        .unwrap_err();
    assert_eq!(refusal.code(), RefusalCode::InsufficientActivations);
    assert_eq!(refusal.remaining(), Some(3));
    assert_eq!(h.key(key).used(), 7, "nothing consumed");
    let fits = numbered_machines("b", 3);
    h.ok(
        "vamt",
        activate(&text, "contoso", ActivationMethod::Proxy, fits),
    );
    assert_eq!(h.key(key).used(), 10);
}

#[test]
fn r09_an_already_active_machine_consumes_nothing() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 2);
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    let events = h.ok("vamt", online(&text, "contoso", "pc-1"));
    let contoso = OrgId::new("contoso").unwrap();
    // The count, then the machine by name (issue 19: its history shows the repeat).
    assert_eq!(
        events,
        vec![
            EventBody::MachinesActivated {
                key_id: key,
                org: contoso.clone(),
                method: ActivationMethod::Online,
                machines: vec![],
                already_active: 1
            },
            EventBody::MachinesAlreadyActive {
                key_id: key,
                org: contoso.clone(),
                method: ActivationMethod::Online,
                machines: machines(&["pc-1"]),
            }
        ]
    );
    // At the limit, a proxy batch of known machines plus duplicates still fits; each
    // repeat is named once.
    h.ok("vamt", online(&text, "contoso", "pc-2"));
    let repeat = machines(&["pc-1", "pc-2", "pc-2"]);
    let events = h.ok(
        "vamt",
        activate(&text, "contoso", ActivationMethod::Proxy, repeat),
    );
    assert_eq!(
        events[1],
        EventBody::MachinesAlreadyActive {
            key_id: key,
            org: contoso,
            method: ActivationMethod::Proxy,
            machines: machines(&["pc-1", "pc-2"]),
        }
    );
    assert_eq!(h.key(key).used(), 2);
}

#[test]
fn r09_independent_activation_names_exactly_one_machine_and_proxy_at_most_10000() {
    let mut h = Harness::with_catalog();
    let (_, text) = h.mak("V-SELECT", "win11-pro", 20_000);
    let two = activate(
        &text,
        "contoso",
        ActivationMethod::Phone,
        machines(&["a", "b"]),
    );
    assert_eq!(h.refused("vamt", two), RefusalCode::Invalid);
    let none = activate(&text, "contoso", ActivationMethod::Proxy, vec![]);
    assert_eq!(h.refused("vamt", none), RefusalCode::Invalid);
    let over = activate(
        &text,
        "contoso",
        ActivationMethod::Proxy,
        numbered_machines("m", 10_001),
    );
    assert_eq!(h.refused("vamt", over), RefusalCode::Invalid);
    let max = activate(
        &text,
        "contoso",
        ActivationMethod::Proxy,
        numbered_machines("m", 10_000),
    );
    h.ok("vamt", max);
}

// R10: refusals are recorded; time regressions and non-activation refusals are not.

#[test]
fn r10_refused_activations_are_recorded_with_their_reason_and_remaining() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 1);
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    let count = h.events.len();
    h.refused("vamt", online(&text, "contoso", "pc-2"));
    assert_eq!(h.events.len(), count + 1);
    let recorded = h.events.last().unwrap();
    assert_eq!(recorded.actor, principal("vamt"));
    assert_eq!(
        recorded.body,
        EventBody::ActivationRefused {
            key_id: Some(key),
            attempt: event::ActivationAttempt::MakMachines {
                org: OrgId::new("contoso").unwrap(),
                method: ActivationMethod::Online,
                machines: machines(&["pc-2"]),
            },
            code: RefusalCode::InsufficientActivations,
            remaining: Some(0)
        }
    );
    // An unknown key is recorded too, without a key id: probing is visible to auditors.
    h.refused("vamt", online(&key_text(999_999_999), "contoso", "pc-2"));
    assert!(matches!(
        h.last_event(),
        EventBody::ActivationRefused {
            key_id: None,
            code: RefusalCode::UnknownKey,
            ..
        }
    ));
}

/// F1 (hardening): a refusal costs no token, so what it adds to the log is bounded — an
/// unknown key's attempt by its count alone, a known key's by name up to
/// `REFUSAL_MACHINES_NAMED_MAX`.
#[test]
fn r10_f1_a_refusal_records_a_bounded_number_of_machine_names() {
    use keyledger_core::decide::REFUSAL_MACHINES_NAMED_MAX;
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 1);
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    let org = OrgId::new("contoso").unwrap();
    let long = |i: usize| format!("{}-{i}", "m".repeat(120));
    let flood: Vec<_> = (0..10_000)
        .map(|i| keyledger_core::MachineId::new(long(i)).unwrap())
        .collect();
    let unknown = activate(
        &key_text(999_999_999),
        "contoso",
        ActivationMethod::Proxy,
        flood.clone(),
    );
    assert_eq!(h.refused("vamt", unknown), RefusalCode::UnknownKey);
    let expected = |key_id, machines, code| EventBody::ActivationRefused {
        key_id,
        attempt: event::ActivationAttempt::Mak {
            org: org.clone(),
            method: ActivationMethod::Proxy,
            machines,
        },
        code,
        remaining: None,
    };
    assert_eq!(
        h.last_event(),
        &expected(None, 10_000, RefusalCode::UnknownKey)
    );
    // A known key: one name past the bound is recorded by its count.
    let over: Vec<_> = flood[..REFUSAL_MACHINES_NAMED_MAX + 1].to_vec();
    h.refused(
        "vamt",
        activate(&text, "contoso", ActivationMethod::Proxy, over),
    );
    let EventBody::ActivationRefused {
        key_id, attempt, ..
    } = h.last_event()
    else {
        panic!("a refusal is recorded");
    };
    assert_eq!(*key_id, Some(key));
    assert!(
        matches!(attempt, event::ActivationAttempt::Mak { machines: 65, .. }),
        "{attempt:?}"
    );
    // At the bound, every name is kept.
    let at: Vec<_> = flood[..REFUSAL_MACHINES_NAMED_MAX].to_vec();
    h.refused(
        "vamt",
        activate(&text, "contoso", ActivationMethod::Proxy, at.clone()),
    );
    let EventBody::ActivationRefused { attempt, .. } = h.last_event() else {
        panic!("a refusal is recorded");
    };
    assert_eq!(
        attempt,
        &event::ActivationAttempt::MakMachines {
            org,
            method: ActivationMethod::Proxy,
            machines: at
        }
    );
}

#[test]
fn r10_licensor_refusals_are_not_recorded() {
    let mut h = Harness::with_catalog();
    let count = h.events.len();
    let body = CommandBody::RecordPurchase(RecordPurchase {
        license_id: lid("V-NOPE"),
        product: pid("win11-pro"),
        quantity: 1,
    });
    assert_eq!(h.refused(OPERATOR, body), RefusalCode::UnknownLicenseId);
    assert_eq!(h.events.len(), count);
}

#[test]
fn r10_time_regression_is_refused_and_not_recorded() {
    let mut h = Harness::with_catalog();
    let (_, text) = h.mak("V-SELECT", "win11-pro", 5);
    h.at("2026-03-01T00:00:00Z");
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    let before = (h.state.clone(), h.events.len());
    h.at("2026-02-28T23:59:59Z");
    let refusal = h.run("vamt", online(&text, "contoso", "pc-2")).unwrap_err();
    assert_eq!(refusal.code(), RefusalCode::TimeRegression);
    assert_eq!((h.state.clone(), h.events.len()), before);
    // The same instant as the newest event is not a regression.
    h.at("2026-03-01T00:00:00Z");
    h.ok("vamt", online(&text, "contoso", "pc-2"));
}

// R11, R12: ESU.

#[test]
fn r11_esu_orders_may_precede_coverage_and_need_a_real_period() {
    let mut h = Harness::with_catalog();
    let order = |id: &str, start: &str, end: &str| {
        CommandBody::OrderEsu(OrderEsu {
            order_id: OrderId::new(id).unwrap(),
            license_id: lid("V-SELECT"),
            product: pid("ws2016-std"),
            coverage_start: ts(start),
            coverage_end: ts(end),
        })
    };
    h.ok(
        OPERATOR,
        order("esu-y1", "2027-01-12T00:00:00Z", "2028-01-11T00:00:00Z"),
    );
    let stored = h.state.esu_order(&OrderId::new("esu-y1").unwrap()).unwrap();
    assert_eq!(stored.coverage.start, ts("2027-01-12T00:00:00Z"));
    let backwards = order("esu-bad", "2027-01-12T00:00:00Z", "2027-01-12T00:00:00Z");
    assert_eq!(h.refused(OPERATOR, backwards), RefusalCode::Invalid);
    let reused = order("esu-y1", "2028-01-12T00:00:00Z", "2029-01-11T00:00:00Z");
    assert_eq!(h.refused(OPERATOR, reused), RefusalCode::AlreadyExists);
}

#[test]
fn r12_esu_mak_is_usable_from_the_coverage_start_instant_until_its_end() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(10)
        .coverage("2026-06-01T00:00:00Z", "2027-06-01T00:00:00Z");
    let (key, text) = h.issue(spec);
    h.at("2026-05-31T23:59:59.999999Z");
    let early = h
        .run("vamt", online(&text, "contoso", "srv-1"))
        .unwrap_err();
    assert_eq!(early.code(), RefusalCode::EsuCoverageNotStarted);
    h.at("2026-06-01T00:00:00Z");
    h.ok("vamt", online(&text, "contoso", "srv-1"));
    h.at("2027-05-31T23:59:59.999999Z");
    h.ok("vamt", online(&text, "contoso", "srv-2"));
    h.at("2027-06-01T00:00:00Z");
    assert_eq!(
        h.refused("vamt", online(&text, "contoso", "srv-3")),
        RefusalCode::EsuCoverageEnded
    );
    assert_eq!(h.key(key).used(), 2);
}

#[test]
fn r12_esu_mak_needs_coverage_and_other_kinds_take_none() {
    let mut h = Harness::with_catalog();
    let bare = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak).limit(10);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(bare)),
        RefusalCode::Invalid
    );
    let mak = issue_spec("V-SELECT", "ws2016-std", KeyKind::Mak)
        .limit(10)
        .coverage("2026-06-01T00:00:00Z", "2027-06-01T00:00:00Z");
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(mak)),
        RefusalCode::Invalid
    );
}

// R13: KMS host limits.

#[test]
fn r13_a_kms_host_key_activates_six_hosts_and_refuses_the_seventh() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.kms_key("V-SELECT", "ws2022-std");
    for i in 1..=6 {
        h.ok("kms", kms_host(&text, "contoso", &format!("host-{i}")));
    }
    assert_eq!(
        h.run("kms", kms_host(&text, "contoso", "host-7"))
            .unwrap_err(),
        Refusal::KmsHostLimitReached {
            key_id: key,
            hosts_max: 6
        }
    );
    // A known host may still re-activate.
    h.ok("kms", kms_host(&text, "contoso", "host-1"));
}

#[test]
fn r13_one_host_activates_ten_times_and_the_eleventh_is_refused() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.kms_key("V-SELECT", "ws2022-std");
    for n in 1..=10 {
        let events = h.ok("kms", kms_host(&text, "contoso", "host-1"));
        assert!(matches!(
            events.as_slice(),
            [EventBody::KmsHostActivated { activation, .. }] if *activation == n
        ));
    }
    assert_eq!(
        h.refused("kms", kms_host(&text, "contoso", "host-1")),
        RefusalCode::KmsHostReactivationLimit
    );
    assert_eq!(
        h.key(key).kms.as_ref().unwrap().hosts[&HostId::new("host-1").unwrap()],
        10
    );
}

#[test]
fn r13_a_granted_additional_hosts_request_raises_the_host_limit() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.kms_key("V-SELECT", "ws2022-std");
    for i in 1..=6 {
        h.ok("kms", kms_host(&text, "contoso", &format!("host-{i}")));
    }
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    h.ok(
        ADMIN,
        kms_request("rq-hosts", "V-SELECT", KmsRequestReason::AdditionalHosts),
    );
    h.ok(OPERATOR, grant("rq-hosts", 2));
    assert_eq!(h.key(key).kms.as_ref().unwrap().hosts_limit(), 8);
    h.ok("kms", kms_host(&text, "contoso", "host-7"));
    h.ok("kms", kms_host(&text, "contoso", "host-8"));
    assert_eq!(
        h.refused("kms", kms_host(&text, "contoso", "host-9")),
        RefusalCode::KmsHostLimitReached
    );
}

// R14: KMS thresholds.

fn kms_ready(h: &mut Harness) -> ProductKeyText {
    let (_, text) = h.kms_key("V-SELECT", "ws2022-std");
    h.ok("kms", kms_host(&text, "contoso", "host-1"));
    text
}

#[test]
fn r14_windows_clients_need_a_count_of_25_so_the_24th_waits_and_the_25th_activates() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    for i in 1..=24 {
        let events = h.ok(
            "kms",
            kms_client("host-1", &format!("pc-{i}"), ClientFamily::WindowsClient),
        );
        assert_eq!(kms_status(&events), (i, ActivationStatus::PendingThreshold));
    }
    let events = h.ok(
        "kms",
        kms_client("host-1", "pc-25", ClientFamily::WindowsClient),
    );
    assert_eq!(kms_status(&events), (25, ActivationStatus::Activated));
    // A client that contacted before is not counted twice, and is now activated.
    let events = h.ok(
        "kms",
        kms_client("host-1", "pc-1", ClientFamily::WindowsClient),
    );
    assert_eq!(kms_status(&events), (25, ActivationStatus::Activated));
}

#[test]
fn r14_windows_servers_need_a_count_of_5_so_4_wait() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    for i in 1..=4 {
        let events = h.ok(
            "kms",
            kms_client("host-1", &format!("srv-{i}"), ClientFamily::WindowsServer),
        );
        assert_eq!(kms_status(&events), (i, ActivationStatus::PendingThreshold));
    }
    let events = h.ok(
        "kms",
        kms_client("host-1", "srv-5", ClientFamily::WindowsServer),
    );
    assert_eq!(kms_status(&events), (5, ActivationStatus::Activated));
}

#[test]
fn r14_clients_and_servers_share_the_windows_count() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    for i in 1..=4 {
        h.ok(
            "kms",
            kms_client("host-1", &format!("pc-{i}"), ClientFamily::WindowsClient),
        );
    }
    let events = h.ok(
        "kms",
        kms_client("host-1", "srv-1", ClientFamily::WindowsServer),
    );
    assert_eq!(kms_status(&events), (5, ActivationStatus::Activated));
}

#[test]
fn r14_contacts_older_than_30_days_are_not_counted() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    h.at("2026-01-01T00:00:00Z");
    for i in 1..=3 {
        h.ok(
            "kms",
            kms_client("host-1", &format!("srv-{i}"), ClientFamily::WindowsServer),
        );
    }
    h.at("2026-01-20T00:00:00Z");
    h.ok(
        "kms",
        kms_client("host-1", "srv-4", ClientFamily::WindowsServer),
    );
    // 30 days after the first three contacts they expire: srv-4 and srv-5 remain.
    h.at("2026-01-31T00:00:00Z");
    let events = h.ok(
        "kms",
        kms_client("host-1", "srv-5", ClientFamily::WindowsServer),
    );
    assert_eq!(kms_status(&events), (2, ActivationStatus::PendingThreshold));
    let window = &h
        .state
        .kms_host(&HostId::new("host-1").unwrap())
        .unwrap()
        .windows;
    // srv-4's contact expires exactly 30 days after it was made.
    assert_eq!(window.count_at(ts("2026-02-18T23:59:59Z")), 2);
    assert_eq!(window.count_at(ts("2026-02-19T00:00:00Z")), 1);
}

#[test]
fn r14_the_office_count_is_kept_apart_and_needs_5() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    let (_, office) = h.kms_key("V-SELECT", "office-2021");
    h.ok("kms", kms_host(&office, "contoso", "host-1"));
    for i in 1..=10 {
        h.ok(
            "kms",
            kms_client("host-1", &format!("pc-{i}"), ClientFamily::WindowsClient),
        );
    }
    for i in 1..=4 {
        let events = h.ok(
            "kms",
            kms_client("host-1", &format!("pc-{i}"), ClientFamily::Office),
        );
        assert_eq!(kms_status(&events), (i, ActivationStatus::PendingThreshold));
    }
    let events = h.ok("kms", kms_client("host-1", "pc-5", ClientFamily::Office));
    assert_eq!(kms_status(&events), (5, ActivationStatus::Activated));
}

#[test]
fn r14_an_unknown_host_is_refused_and_recorded() {
    let mut h = Harness::with_catalog();
    let code = h.refused(
        "kms",
        kms_client("ghost", "pc-1", ClientFamily::WindowsClient),
    );
    assert_eq!(code, RefusalCode::UnknownHost);
    assert!(matches!(
        h.last_event(),
        EventBody::ActivationRefused { .. }
    ));
}

// R15: Office KMS keys.

#[test]
fn r15_an_office_client_on_a_host_without_an_office_kms_key_is_refused() {
    let mut h = Harness::with_catalog();
    kms_ready(&mut h);
    let code = h.refused("kms", kms_client("host-1", "pc-1", ClientFamily::Office));
    assert_eq!(code, RefusalCode::NoOfficeKmsKeyOnHost);
}

#[test]
fn r15_a_host_holds_at_most_one_office_kms_key() {
    let mut h = Harness::with_catalog();
    let (first, a) = h.kms_key("V-SELECT", "office-2021");
    let (_, b) = h.kms_key("V-SELECT", "office-2021");
    h.ok("kms", kms_host(&a, "contoso", "host-1"));
    assert_eq!(
        h.run("kms", kms_host(&b, "contoso", "host-1")).unwrap_err(),
        Refusal::OfficeKmsKeyAlreadyInstalled {
            host: HostId::new("host-1").unwrap(),
            key_id: first
        }
    );
    // Re-activating the same Office key is fine.
    h.ok("kms", kms_host(&a, "contoso", "host-1"));
}

#[test]
fn r15_a_windows_client_needs_a_windows_kms_key_on_the_host() {
    let mut h = Harness::with_catalog();
    let (_, office) = h.kms_key("V-SELECT", "office-2021");
    h.ok("kms", kms_host(&office, "contoso", "host-1"));
    let code = h.refused(
        "kms",
        kms_client("host-1", "pc-1", ClientFamily::WindowsClient),
    );
    assert_eq!(code, RefusalCode::NoWindowsKmsKeyOnHost);
}

// R16: setup keys.

#[test]
fn r16_setup_keys_carry_no_count_and_are_never_consumed() {
    let mut h = Harness::with_catalog();
    let with_limit = issue_spec("V-SELECT", "win11-pro", KeyKind::Setup).limit(5);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(with_limit)),
        RefusalCode::Invalid
    );
    let (key, text) = h.issue(issue_spec("V-SELECT", "win11-pro", KeyKind::Setup));
    assert_eq!(
        h.refused("vamt", online(&text, "contoso", "pc-1")),
        RefusalCode::WrongKeyKind
    );
    assert_eq!(
        h.refused("kms", kms_host(&text, "contoso", "h")),
        RefusalCode::WrongKeyKind
    );
    assert_eq!(h.key(key).used(), 0);
}

// R17, R18, R19: requests and grants.

fn mak_request(id: &str, license: &str, product: &str, last5: &str, needed: u64) -> CommandBody {
    CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: RequestId::new(id).unwrap(),
        license_id: lid(license),
        authorization_number: None,
        product: pid(product),
        key_last5: Last5::parse(last5).unwrap(),
        activations_needed: needed,
        justification: "rollout of 200 new laptops".into(),
    })
}

fn kms_request(id: &str, license: &str, reason: KmsRequestReason) -> CommandBody {
    CommandBody::RequestKms(RequestKms {
        request_id: RequestId::new(id).unwrap(),
        license_id: lid(license),
        product: pid("ws2022-std"),
        reason,
        host_activations_needed: 2,
        justification: "second datacenter".into(),
    })
}

fn grant(id: &str, amount: u64) -> CommandBody {
    CommandBody::GrantRequest(GrantRequest {
        request_id: RequestId::new(id).unwrap(),
        amount,
    })
}

#[test]
fn r17_a_mak_increase_needs_a_key_role_and_the_right_last5() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 5);
    let last5 = text.last5().to_string();
    h.role(VIEWER, "V-SELECT", Role::KeyViewer);
    h.role(READER, "V-SELECT", Role::ProductKeyReader);
    let request = |id| mak_request(id, "V-SELECT", "win11-pro", &last5, 100);
    assert_eq!(h.refused(READER, request("rq-1")), RefusalCode::Forbidden);
    assert_eq!(
        h.refused(
            VIEWER,
            mak_request("rq-1", "V-SELECT", "win11-pro", "BBBBB", 100)
        ),
        RefusalCode::KeyLast5Mismatch
    );
    assert_eq!(
        h.refused(
            VIEWER,
            mak_request("rq-1", "V-SELECT", "win10-pro", &last5, 100)
        ),
        RefusalCode::KeyLast5Mismatch,
        "the key must be of the named product"
    );
    assert_eq!(
        h.refused(
            VIEWER,
            mak_request("rq-1", "V-SELECT", "win11-pro", &last5, 0)
        ),
        RefusalCode::Invalid
    );
    let events = h.ok(VIEWER, request("rq-1"));
    assert!(matches!(
        events.as_slice(),
        [EventBody::MakIncreaseRequested { key_id, activations_needed: 100, .. }] if *key_id == key
    ));
    assert_eq!(
        h.refused(VIEWER, request("rq-1")),
        RefusalCode::AlreadyExists
    );
}

#[test]
fn r17_empty_justification_and_open_license_authorization_number() {
    let mut h = Harness::with_catalog();
    let (_, text) = h.mak("V-OPEN", "win11-pro", 5);
    h.role(ADMIN, "V-OPEN", Role::Administrator);
    let mut body = RequestMakIncrease {
        request_id: RequestId::new("rq-open").unwrap(),
        license_id: lid("V-OPEN"),
        authorization_number: None,
        product: pid("win11-pro"),
        key_last5: text.last5(),
        activations_needed: 10,
        justification: "  ".into(),
    };
    let run = |h: &mut Harness, b: &RequestMakIncrease| {
        h.run(ADMIN, CommandBody::RequestMakIncrease(b.clone()))
    };
    assert!(run(&mut h, &body)
        .unwrap_err()
        .to_string()
        .contains("authorization_number"));
    body.authorization_number = Some("AUTH-77".into());
    assert!(run(&mut h, &body)
        .unwrap_err()
        .to_string()
        .contains("justification"));
    body.justification = "new branch office".into();
    assert!(run(&mut h, &body).is_ok());
}

#[test]
fn r18_open_license_kms_requests_are_refused_as_retired() {
    let mut h = Harness::with_catalog();
    h.role(ADMIN, "V-OPEN", Role::Administrator);
    let body = kms_request("rq-ol", "V-OPEN", KmsRequestReason::OpenValueException);
    assert_eq!(h.refused(ADMIN, body), RefusalCode::OpenLicenseRetired);
}

#[test]
fn r18_only_open_value_programs_may_ask_for_the_kms_exception() {
    let mut h = Harness::with_catalog();
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    h.role(ADMIN, "V-OV", Role::ProductKeyReader);
    h.role(VIEWER, "V-OV", Role::KeyViewer);
    let select = kms_request("rq-s", "V-SELECT", KmsRequestReason::OpenValueException);
    assert_eq!(h.refused(ADMIN, select), RefusalCode::ProgramNotEligible);
    let ov = || kms_request("rq-ov", "V-OV", KmsRequestReason::OpenValueException);
    assert_eq!(h.refused(VIEWER, ov()), RefusalCode::Forbidden);
    h.ok(ADMIN, ov());
    // Open Value gets KMS keys only through the exception.
    let direct = issue_spec("V-OV", "ws2022-std", KeyKind::KmsHost);
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(direct)),
        RefusalCode::ProgramNotEligible
    );
}

#[test]
fn r19_the_requester_cannot_grant_their_own_request() {
    let mut h = Harness::with_catalog();
    let (_, text) = h.mak("V-SELECT", "win11-pro", 5);
    // An operator who also holds a key role on the license ID asks…
    h.role(OPERATOR, "V-SELECT", Role::KeyAdministrator);
    let last5 = text.last5().to_string();
    h.ok(
        OPERATOR,
        mak_request("rq-1", "V-SELECT", "win11-pro", &last5, 10),
    );
    assert_eq!(
        h.refused(OPERATOR, grant("rq-1", 10)),
        RefusalCode::SamePrincipal
    );
    // …so another operator decides.
    h.ok(
        OPERATOR,
        CommandBody::AddOperator(AddOperator {
            principal: principal("otto"),
        }),
    );
    h.ok("otto", grant("rq-1", 10));
}

#[test]
fn r19_a_grant_raises_remaining_from_zero_and_a_request_is_decided_once() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 1);
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    h.ok("vamt", online(&text, "contoso", "pc-1"));
    assert_eq!(h.key(key).remaining(), 0);
    let last5 = text.last5().to_string();
    h.ok(
        ADMIN,
        mak_request("rq-1", "V-SELECT", "win11-pro", &last5, 50),
    );
    assert_eq!(h.refused(OPERATOR, grant("rq-1", 0)), RefusalCode::Invalid);
    h.ok(OPERATOR, grant("rq-1", 40));
    assert_eq!((h.key(key).total(), h.key(key).remaining()), (41, 40));
    h.ok("vamt", online(&text, "contoso", "pc-2"));
    assert_eq!(
        h.refused(OPERATOR, grant("rq-1", 5)),
        RefusalCode::RequestAlreadyDecided
    );
    let deny = CommandBody::DenyRequest(DenyRequest {
        request_id: RequestId::new("rq-1").unwrap(),
        reason: "too late".into(),
    });
    assert_eq!(
        h.refused(OPERATOR, deny),
        RefusalCode::RequestAlreadyDecided
    );
    let unknown = grant("rq-none", 5);
    assert_eq!(h.refused(OPERATOR, unknown), RefusalCode::UnknownRequest);
}

#[test]
fn r19_a_denial_keeps_the_limit_and_records_the_reason() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 1);
    h.role(ADMIN, "V-SELECT", Role::Administrator);
    let last5 = text.last5().to_string();
    h.ok(
        ADMIN,
        mak_request("rq-1", "V-SELECT", "win11-pro", &last5, 50),
    );
    let deny = CommandBody::DenyRequest(DenyRequest {
        request_id: RequestId::new("rq-1").unwrap(),
        reason: "no purchase backs it".into(),
    });
    h.ok(OPERATOR, deny);
    assert_eq!(h.key(key).total(), 1);
    let request = h.state.request(&RequestId::new("rq-1").unwrap()).unwrap();
    assert_eq!(
        request.decision,
        Some(Decision {
            outcome: RequestOutcome::Denied {
                reason: "no purchase backs it".into()
            },
            by: principal(OPERATOR),
            at: h.now,
        })
    );
}

#[test]
fn r19_an_open_value_exception_grant_issues_a_kms_host_key() {
    let mut h = Harness::with_catalog();
    h.role(ADMIN, "V-OV", Role::Administrator);
    h.ok(
        ADMIN,
        kms_request("rq-ov", "V-OV", KmsRequestReason::OpenValueException),
    );
    let events = h.ok(OPERATOR, grant("rq-ov", 3));
    let [EventBody::RequestGranted { amount: 3, .. }, EventBody::KeyIssued {
        key_id,
        kind: KeyKind::KmsHost,
        hosts_max: 3,
        per_host_max: 10,
        ..
    }] = events.as_slice()
    else {
        panic!("expected a grant and a KMS key, got {events:?}");
    };
    assert_eq!(h.key(*key_id).license_id, lid("V-OV"));
}

// R20: OSA.

#[test]
fn r20_an_osa_key_is_redeemed_into_one_tenant_once() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.issue(issue_spec("V-EA", "office-2021", KeyKind::Osa).limit(300));
    assert_eq!(h.key(key).redeemed_into, None);
    let redeem = |tenant: &str| {
        CommandBody::RedeemOsa(RedeemOsa {
            product_key: text.clone(),
            tenant: TenantId::new(tenant).unwrap(),
        })
    };
    h.ok("portal", redeem("fabrikam.onmicrosoft.com"));
    assert_eq!(
        h.key(key).redeemed_into,
        Some(TenantId::new("fabrikam.onmicrosoft.com").unwrap())
    );
    assert_eq!(
        h.refused("portal", redeem("other.onmicrosoft.com")),
        RefusalCode::AlreadyRedeemed
    );
    // A MAK is not an OSA key; an OSA key is not activated like a MAK.
    let (_, mak) = h.mak("V-EA", "office-2021", 5);
    let wrong = CommandBody::RedeemOsa(RedeemOsa {
        product_key: mak,
        tenant: TenantId::new("t").unwrap(),
    });
    assert_eq!(h.refused("portal", wrong), RefusalCode::WrongKeyKind);
    assert_eq!(
        h.refused("vamt", online(&text, "fabrikam", "pc")),
        RefusalCode::WrongKeyKind
    );
}

#[test]
fn r20_a_blocked_key_cannot_be_redeemed_or_activated() {
    let mut h = Harness::with_catalog();
    let (osa, osa_text) = h.issue(issue_spec("V-EA", "office-2021", KeyKind::Osa).limit(300));
    let (mak, mak_text) = h.mak("V-EA", "office-2021", 5);
    for key in [osa, mak] {
        h.ok(OPERATOR, CommandBody::BlockKey(BlockKey { key_id: key }));
        assert!(h.key(key).blocked);
    }
    let redeem = CommandBody::RedeemOsa(RedeemOsa {
        product_key: osa_text,
        tenant: TenantId::new("t").unwrap(),
    });
    assert_eq!(h.refused("portal", redeem), RefusalCode::KeyBlocked);
    assert_eq!(
        h.refused("vamt", online(&mak_text, "fabrikam", "pc")),
        RefusalCode::KeyBlocked
    );
    assert_eq!(
        h.refused(OPERATOR, CommandBody::BlockKey(BlockKey { key_id: mak })),
        RefusalCode::KeyBlocked
    );
}

// R21, R22, R23: rights.

#[test]
fn r21_downgrade_targets_are_earlier_versions_of_the_same_family_and_edition() {
    let h = Harness::with_catalog();
    assert_eq!(
        rights::downgrade_targets(h.state.books(), &pid("ws2022-std")),
        vec![pid("ws2019-std"), pid("ws2016-std")]
    );
    // win10-ent is an earlier version but another edition.
    assert_eq!(
        rights::downgrade_targets(h.state.books(), &pid("win11-pro")),
        vec![pid("win10-pro")]
    );
    assert!(rights::downgrade_targets(h.state.books(), &pid("ws2016-std")).is_empty());
}

#[test]
fn r22_open_license_reimage_needs_a_purchase_of_that_product() {
    let mut h = Harness::with_catalog();
    let before = rights::reimage(h.state.books(), &lid("V-OPEN"), &pid("win11-pro"));
    assert!(!before.eligible, "{}", before.reason);
    h.ok(
        OPERATOR,
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: lid("V-OPEN"),
            product: pid("win11-pro"),
            quantity: 1,
        }),
    );
    assert!(rights::reimage(h.state.books(), &lid("V-OPEN"), &pid("win11-pro")).eligible);
    // Every other program may reimage without a purchase.
    assert!(rights::reimage(h.state.books(), &lid("V-SELECT"), &pid("win11-pro")).eligible);
}

#[test]
fn r23_select_select_plus_and_ea_hold_training_backup_and_evaluation_rights() {
    let holders: Vec<Program> = Program::ALL
        .iter()
        .copied()
        .filter(|p| rights::training_backup_evaluation(*p))
        .collect();
    assert_eq!(
        holders,
        vec![
            Program::Select,
            Program::SelectPlus,
            Program::EnterpriseAgreement
        ]
    );
}

// R24: activation counts are not compliance figures.

#[test]
fn r24_purchases_and_activations_are_kept_apart() {
    let mut h = Harness::with_catalog();
    let (key, text) = h.mak("V-SELECT", "win11-pro", 5);
    h.ok(
        OPERATOR,
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: lid("V-SELECT"),
            product: pid("win11-pro"),
            quantity: 2,
        }),
    );
    // More activations than purchases is not refused: activation is not compliance.
    for i in 0..4 {
        h.ok("vamt", online(&text, "contoso", &format!("pc-{i}")));
    }
    assert_eq!(h.state.purchased(&lid("V-SELECT"), &pid("win11-pro")), 2);
    assert_eq!(h.key(key).used(), 4);
    assert_eq!(h.key(key).total(), 5);
}

// Ids and keys.

#[test]
fn reused_ids_are_refused_as_already_exists() {
    let mut h = Harness::with_catalog();
    let (_, text) = h.mak("V-SELECT", "win11-pro", 5);
    let same_text = issue_spec("V-SELECT", "win10-pro", KeyKind::Mak).limit(5);
    let same_text = IssueKey {
        product_key: Some(text),
        ..same_text
    };
    assert_eq!(
        h.refused(OPERATOR, CommandBody::IssueKey(same_text)),
        RefusalCode::AlreadyExists
    );
    let org = CommandBody::RegisterOrg(RegisterOrg {
        org: OrgId::new("contoso").unwrap(),
        name: "again".into(),
        parent: None,
    });
    assert_eq!(h.refused(OPERATOR, org), RefusalCode::AlreadyExists);
    let orphan = CommandBody::RegisterOrg(RegisterOrg {
        org: OrgId::new("orphan").unwrap(),
        name: "Orphan".into(),
        parent: Some(OrgId::new("nobody").unwrap()),
    });
    assert_eq!(h.refused(OPERATOR, orphan), RefusalCode::UnknownOrg);
}

#[test]
fn generated_keys_are_issued_without_given_text() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "win11-pro", KeyKind::Mak).limit(5);
    let events = h.ok(OPERATOR, CommandBody::IssueKey(spec));
    assert!(matches!(
        events.as_slice(),
        [EventBody::KeyIssued {
            key_id: KeyId(1),
            limit: 5,
            ..
        }]
    ));
}
