//! Logs an operator can ship: `serve --log-format json` writes one JSON object a line to
//! stderr, a line a request with its method, route, status, latency and principal, the
//! service's own events with their fields, and never a token or a key's text.

use crate::support::{self, activation, Server};

use serde_json::Value;

#[test]
fn json_logs_have_a_line_a_request_and_no_token_or_key_text() {
    let mut server = Server::start_with(100, &["--log-format", "json"]);
    let (status, body) = server.get("/v1/license-ids/V100/report?format=json", Some("rita"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/v1/activations", None, &activation("pc-logged"));
    assert_eq!(status, 200, "{body}");
    // rita may read key text (R1): the export answers it, the log must not.
    let (status, keys) = server.get("/v1/keys?license_id=V100&format=json", Some("rita"));
    assert_eq!(status, 200, "{keys}");
    assert!(
        keys.contains(support::MAK),
        "the export carries the text: {keys}"
    );
    let (status, _) = server.get("/v1/log", Some("nobody"));
    assert_eq!(status, 403);
    let said = server.stop();

    let lines: Vec<Value> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "keyledger::access")
        .collect();
    let find = |route: &str, status: u64| {
        requests
            .iter()
            .find(|l| l["span"]["route"] == route && l["status"] == status)
            .unwrap_or_else(|| panic!("no line for {route} {status}: {said}"))
    };
    let report = find("/v1/license-ids/{id}/report", 200);
    assert_eq!(report["span"]["method"], "GET");
    assert_eq!(report["span"]["principal"], "rita");
    assert!(
        report["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{report}"
    );
    assert_eq!(report["level"], "INFO");
    let activated = find("/v1/activations", 200);
    assert_eq!(activated["span"]["method"], "POST");
    assert!(
        activated["span"].get("principal").is_none(),
        "no token, no principal: {activated}"
    );
    assert_eq!(find("/v1/log", 403)["span"]["principal"], "nobody");
    // The service's own events are lines too, with their message.
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.contains("stopped cleanly"))));

    for who in ["olga", "rita", "vic", "nobody", "gone"] {
        assert!(
            !said.contains(&server.token(who)),
            "{who}'s token is in the log"
        );
    }
    assert!(!said.contains(support::MAK), "key text is in the log");
    assert!(!said.contains(support::KMS), "key text is in the log");
}
