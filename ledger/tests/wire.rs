//! Commands as JSON: every command type round-trips through its flat JSON form, and each
//! class of malformed input is an error that names the field.

use keyledger_ledger::wire::{command_to_json, parse_command};
use serde_json::json;

/// One of every command type, as a client would write it.
fn every_command_type() -> Vec<serde_json::Value> {
    let common = |v: serde_json::Value| {
        let mut v = v;
        v["at"] = json!("2026-03-01T09:30:00.5Z");
        v["actor"] = json!("olga");
        v
    };
    [
        json!({"type": "add_operator", "principal": "otto"}),
        json!({"type": "register_org", "org": "contoso-east", "name": "Contoso East", "parent": "contoso"}),
        json!({"type": "register_license_id", "license_id": "V1", "org": "contoso", "program": "open_license",
               "agreement_number": "A", "authorization_number": "AUTH", "purchase_account": "PA"}),
        json!({"type": "register_product", "product": "ws2022", "name": "WS 2022", "family": "windows_server",
               "version": "2022", "edition": "standard", "key_requirement": "vl_key"}),
        json!({"type": "record_purchase", "license_id": "V1", "product": "ws2022", "quantity": 40}),
        json!({"type": "issue_key", "license_id": "V1", "product": "ws2022", "kind": "esu_mak", "limit": 10,
               "coverage_start": "2026-01-01T00:00:00Z", "coverage_end": "2027-01-01T00:00:00Z",
               "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789B"}),
        json!({"type": "issue_key", "license_id": "V1", "product": "ws2022", "kind": "kms_host", "hosts": 6, "per_host": 10}),
        json!({"type": "block_key", "key_id": 3}),
        json!({"type": "order_esu", "order_id": "o-1", "license_id": "V1", "product": "ws2022",
               "coverage_start": "2026-01-01T00:00:00Z", "coverage_end": "2027-01-01T00:00:00Z"}),
        json!({"type": "activate", "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789B", "org": "contoso",
               "method": "proxy", "machines": ["a", "b"]}),
        json!({"type": "activate_kms_host", "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789B", "org": "contoso", "host": "h1"}),
        json!({"type": "activate_kms_client", "host": "h1", "client": "c1", "family": "windows_server"}),
        json!({"type": "redeem_osa", "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789B", "tenant": "t.onmicrosoft.com"}),
        json!({"type": "request_mak_increase", "request_id": "r1", "license_id": "V1", "authorization_number": "AUTH",
               "product": "ws2022", "key_last5": "6789B", "activations_needed": 100, "justification": "growth"}),
        json!({"type": "request_kms", "request_id": "r2", "license_id": "V1", "product": "ws2022",
               "reason": "additional_hosts", "host_activations_needed": 2, "justification": "dc2"}),
        json!({"type": "grant_request", "request_id": "r1", "amount": 50}),
        json!({"type": "deny_request", "request_id": "r2", "reason": "no"}),
        json!({"type": "assign_role", "principal": "rita", "license_id": "V1", "role": "product_key_reader"}),
        json!({"type": "revoke_role", "principal": "rita", "license_id": "V1", "role": "product_key_reader"}),
        json!({"type": "disclose_keys", "key_ids": [1, 2], "channel": "export",
               "export_digest": "ab".repeat(32)}),
    ]
    .into_iter()
    .map(common)
    .collect()
}

#[test]
fn every_command_type_round_trips_through_json() {
    let mut types = std::collections::BTreeSet::new();
    for value in every_command_type() {
        let command = parse_command(&value.to_string()).unwrap_or_else(|e| panic!("{value}: {e}"));
        types.insert(command.body.type_name());
        assert_eq!(
            command_to_json(&command),
            value,
            "flat JSON is what was read"
        );
        assert_eq!(
            parse_command(&command_to_json(&command).to_string()).unwrap(),
            command
        );
    }
    assert_eq!(types.len(), 19, "every command type is covered: {types:?}");
}

#[test]
fn command_id_is_read_and_written() {
    let line = r#"{"type":"block_key","at":"2026-01-01T00:00:00Z","actor":"olga","command_id":"retry-7","key_id":1}"#;
    let command = parse_command(line).unwrap();
    assert_eq!(command.command_id.as_ref().unwrap().as_str(), "retry-7");
    assert_eq!(command_to_json(&command)["command_id"], "retry-7");
}

fn error_of(value: serde_json::Value) -> (Option<String>, String) {
    let err = parse_command(&value.to_string()).expect_err("malformed");
    (err.field, err.message)
}

fn activation() -> serde_json::Value {
    json!({"type": "activate", "at": "2026-01-01T00:00:00Z", "actor": "vamt",
           "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789B", "org": "contoso", "method": "online", "machines": ["pc-1"]})
}

#[test]
fn a_missing_field_is_named() {
    let mut v = activation();
    v.as_object_mut().unwrap().remove("org");
    assert_eq!(error_of(v).0.as_deref(), Some("org"));
    let mut v = activation();
    v.as_object_mut().unwrap().remove("at");
    assert_eq!(error_of(v), (Some("at".into()), "missing field".into()));
}

#[test]
fn a_wrong_type_is_named() {
    let mut v = activation();
    v["machines"] = json!("pc-1");
    let (field, message) = error_of(v);
    assert_eq!(field.as_deref(), Some("machines"));
    assert!(message.contains("invalid type"), "{message}");
    let purchase = json!({"type": "record_purchase", "at": "2026-01-01T00:00:00Z", "actor": "olga",
                          "license_id": "V1", "product": "p", "quantity": "forty"});
    assert_eq!(error_of(purchase).0.as_deref(), Some("quantity"));
    let mut v = activation();
    v["machines"] = json!(["pc-1", 7]);
    assert_eq!(error_of(v).0.as_deref(), Some("machines[1]"));
}

#[test]
fn bad_key_text_is_named_with_the_character_and_position() {
    let mut v = activation();
    v["product_key"] = json!("BCDFG-HJKMP-QRTVW-XY234-6789A");
    let (field, message) = error_of(v);
    assert_eq!(field.as_deref(), Some("product_key"));
    assert!(message.contains("'A' at position 29"), "{message}");
}

#[test]
fn a_bad_timestamp_is_named() {
    let mut v = activation();
    v["at"] = json!("2026-02-30T00:00:00Z");
    let (field, message) = error_of(v);
    assert_eq!(field.as_deref(), Some("at"));
    assert!(message.contains("day out of range"), "{message}");
    let esu = json!({"type": "order_esu", "at": "2026-01-01T00:00:00Z", "actor": "olga", "order_id": "o",
                     "license_id": "V1", "product": "p", "coverage_start": "soon", "coverage_end": "2027-01-01T00:00:00Z"});
    assert_eq!(error_of(esu).0.as_deref(), Some("coverage_start"));
}

#[test]
fn unknown_fields_and_types_are_named() {
    let mut v = activation();
    v["machine"] = json!("typo");
    let (field, message) = error_of(v);
    assert_eq!(field.as_deref(), Some("machine"));
    assert!(message.contains("unknown field"), "{message}");
    let mut v = activation();
    v["type"] = json!("activate_everything");
    assert_eq!(
        error_of(v),
        (
            Some("type".into()),
            "unknown command type `activate_everything`".into()
        )
    );
    let mut v = activation();
    v["method"] = json!("carrier_pigeon");
    assert_eq!(error_of(v).0.as_deref(), Some("method"));
}

#[test]
fn not_json_and_not_an_object_are_errors_without_a_field() {
    assert_eq!(parse_command("{\"type\": ").unwrap_err().field, None);
    assert_eq!(
        parse_command("[1, 2]").unwrap_err().message,
        "a command must be a JSON object"
    );
}

#[test]
fn more_machines_than_one_request_may_name_is_malformed() {
    let mut v = activation();
    v["method"] = json!("proxy");
    v["machines"] = json!((0..10_001).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let (field, message) = error_of(v);
    assert_eq!(field.as_deref(), Some("machines"));
    assert_eq!(message, "10001 machines; one request names at most 10000");
}
