//! Durable consumers (issue 18, item 2) through the real service, on redb and (with
//! `KEYLEDGER_TEST_STORE=postgres`) on PostgreSQL: the position is kept in the ledger's
//! database and survives restarts; delivery is at least once, in seq order; filters and the
//! read rule hold.

use crate::support;

use serde_json::{json, Value};
use support::*;

fn body(server: &Server, path: &str, who: &str) -> Value {
    let (status, text) = server.get(path, Some(who));
    assert_eq!(status, 200, "{path} as {who}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// Activates `machines` and waits until the service has folded the last answer's seq (a
/// page is read up to the folded head, which follows the commit by a moment); answers it.
fn activate_all(server: &Server, bodies: &[String]) -> u64 {
    let mut last = 0;
    for body in bodies {
        let (_, answer) = server.post("/v1/activations", None, body);
        last = serde_json::from_str::<Value>(&answer).unwrap()["seq"]
            .as_u64()
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.seq() < last {
        assert!(
            std::time::Instant::now() < deadline,
            "seq {last} never folded"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    last
}

fn ack(server: &Server, name: &str, who: &str, seq: u64) -> (u16, Value) {
    let (status, text) = server.post(
        &format!("/v1/consumers/{name}/ack"),
        Some(who),
        &json!({ "seq": seq }).to_string(),
    );
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn a_consumer_resumes_after_its_acknowledged_seq_across_restarts() {
    let mut server = Server::start(50);
    let create = json!({"name": "warehouse"}).to_string();
    let (status, text) = server.post("/v1/consumers", Some("olga"), &create);
    assert_eq!(status, 201, "{text}");
    let (status, _) = server.post("/v1/consumers", Some("olga"), &create);
    assert_eq!(status, 409, "one consumer a name");
    let bodies: Vec<String> = (0..5).map(|i| activation(&format!("pc-{i}"))).collect();
    let head = activate_all(&server, &bodies);
    let first = body(&server, "/v1/consumers/warehouse/events?limit=4", "olga");
    assert_eq!(seqs(&first), [1, 2, 3, 4], "from seq 1, in order");
    assert_eq!(first["through"], 4);
    assert_eq!(first["position"], 0);
    let event = &first["events"][0];
    assert_eq!(event["event"]["type"], "operator_added");
    assert_eq!(event["prev"].as_str().unwrap().len(), 64);
    // Not acknowledged: delivered again (at least once).
    let again = body(&server, "/v1/consumers/warehouse/events?limit=4", "olga");
    assert_eq!(seqs(&again), [1, 2, 3, 4]);
    assert_eq!(ack(&server, "warehouse", "olga", 4).1["position"], 4);
    // An older acknowledgement changes nothing; one past the head is refused.
    assert_eq!(ack(&server, "warehouse", "olga", 2).1["position"], 4);
    assert_eq!(ack(&server, "warehouse", "olga", head + 1).0, 400);

    server.restart();
    let after = body(&server, "/v1/consumers/warehouse/events", "olga");
    assert_eq!(
        seqs(&after),
        (5..=head).collect::<Vec<_>>(),
        "resumes after 4"
    );
    assert_eq!(after["through"], head);
    assert_eq!(ack(&server, "warehouse", "olga", head).1["position"], head);
    let empty = body(&server, "/v1/consumers/warehouse/events", "olga");
    assert_eq!(seqs(&empty), Vec::<u64>::new());
    assert_eq!(empty["through"], head);

    // An operator moves it back: the events after the new position come again.
    let (status, text) = server.post(
        "/v1/consumers/warehouse/reset",
        Some("olga"),
        &json!({"to": head - 2}).to_string(),
    );
    assert_eq!(status, 200, "{text}");
    let replay = body(&server, "/v1/consumers/warehouse/events", "olga");
    assert_eq!(seqs(&replay), [head - 1, head]);
    let listed = body(&server, "/v1/consumers", "olga");
    assert_eq!(listed["consumers"][0]["name"], "warehouse");
    assert_eq!(listed["consumers"][0]["position"], head - 2);
    assert!(listed["consumers"][0]["reset_at"].is_string());
}

#[test]
fn filters_take_only_their_license_id_and_types_and_the_read_rule_holds() {
    let server = Server::start(50);
    for (name, filter) in [
        (
            "refusals",
            json!({"name": "refusals", "types": ["activation_refused"]}),
        ),
        ("v100", json!({"name": "v100", "license_id": "V100"})),
        ("all", json!({"name": "all"})),
    ] {
        let (status, text) = server.post("/v1/consumers", Some("olga"), &filter.to_string());
        assert_eq!(status, 201, "{name}: {text}");
    }
    server.post("/v1/activations", None, &activation("pc-1"));
    let foreign =
        json!({"product_key": MAK, "org": "fabrikam", "method": "online", "machines": ["x"]});
    let (_, refused) = server.post("/v1/activations", None, &foreign.to_string());
    let refused_seq = serde_json::from_str::<Value>(&refused).unwrap()["seq"]
        .as_u64()
        .unwrap();
    // A page is read up to the folded head, which follows the commit by a moment.
    server.wait_folded(refused_seq);
    let refusals = body(&server, "/v1/consumers/refusals/events", "olga");
    assert_eq!(seqs(&refusals), [refused_seq]);
    assert_eq!(
        refusals["through"],
        server.seq(),
        "the rest was looked at and skipped"
    );
    // rita holds a role on V100: she may read that consumer, not the unfiltered ones.
    let v100 = body(&server, "/v1/consumers/v100/events", "rita");
    assert!(!seqs(&v100).is_empty());
    let (status, _) = server.get("/v1/consumers/all/events", Some("rita"));
    assert_eq!(status, 403);
    assert_eq!(ack(&server, "all", "rita", 1).0, 403);
    let (status, _) = server.get("/v1/consumers", Some("rita"));
    assert_eq!(status, 403, "operators manage consumers");
    let (status, _) = server.get("/v1/consumers/nope/events", Some("olga"));
    assert_eq!(status, 404);
    let bad = json!({"name": "x", "types": ["no_such_event"]}).to_string();
    let (status, text) = server.post("/v1/consumers", Some("olga"), &bad);
    assert_eq!(status, 400);
    assert!(text.contains("no_such_event"), "{text}");
    let (status, _) = server.post(
        "/v1/consumers",
        Some("olga"),
        &json!({"name": "a b"}).to_string(),
    );
    assert_eq!(status, 400);
}

#[test]
fn the_cli_manages_consumers_in_the_ledgers_database() {
    let mut server = Server::start(5);
    server.stop();
    let data = server.data.clone();
    keyledger(
        &data,
        &[
            "consumer",
            "create",
            "siem",
            "--types",
            "activation_refused,machines_activated",
        ],
    );
    let listed: Value =
        serde_json::from_str(&keyledger(&data, &["consumer", "list", "--format", "json"])).unwrap();
    assert_eq!(
        listed["consumers"][0]["types"],
        json!(["activation_refused", "machines_activated"])
    );
    keyledger(&data, &["consumer", "reset", "siem", "--to", "3"]);
    let listed: Value =
        serde_json::from_str(&keyledger(&data, &["consumer", "list", "--format", "json"])).unwrap();
    assert_eq!(listed["consumers"][0]["position"], 3);
    let out = keyledger_command(&data)
        .args(["consumer", "create", "siem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    // A copy (here to a redb file) carries consumers with their positions.
    let copy = server.dir.path().join("copy.redb");
    let from = data.to_str().unwrap();
    keyledger(
        &data,
        &["copy", "--from", from, "--to", copy.to_str().unwrap()],
    );
    let copied: Value =
        serde_json::from_str(&keyledger(&copy, &["consumer", "list", "--format", "json"])).unwrap();
    assert_eq!(copied["consumers"], listed["consumers"]);
    keyledger(&data, &["consumer", "delete", "siem"]);
    let listed: Value =
        serde_json::from_str(&keyledger(&data, &["consumer", "list", "--format", "json"])).unwrap();
    assert_eq!(listed["consumers"], json!([]));
}
