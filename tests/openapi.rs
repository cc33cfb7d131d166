//! The OpenAPI document (`GET /v1/openapi.json`, kept in docs/openapi.json): it is the one
//! the service serves, every route of the router is in it and nothing else is, and real
//! answers of every JSON route validate against its schemas (JSON Schema 2020-12, the
//! `jsonschema` crate). To write docs/openapi.json after a deliberate API change:
//! `KEYLEDGER_BLESS=1 cargo test --test system openapi`.

use crate::support;

use std::path::Path;

use serde_json::{json, Value};

struct Api {
    _dir: tempfile::TempDir,
    _child: support::Running,
    url: String,
    agent: ureq::Agent,
    olga: String,
    vic: String,
}

/// The demo ledger, a consumer, tokens for an operator and a key viewer of V4000004.
fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keyledger.redb");
    support::keyledger(&data, &["demo"]);
    support::keyledger(&data, &["consumer", "create", "billing"]);
    let token = |who| support::keyledger(&data, &["token", "create", "--principal", who]);
    let (olga, vic) = (
        token("olga").trim().to_owned(),
        token("vic").trim().to_owned(),
    );
    let (child, url, _) = support::spawn_serve(&data, &[]);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    Api {
        _dir: dir,
        _child: child,
        url,
        agent,
        olga,
        vic,
    }
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String, String) {
        let uri = format!("{}{path}", self.url);
        let mut request = ureq::http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let sent = match body {
            Some(body) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = sent.unwrap();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = response.status().as_u16();
        (status, kind, response.body_mut().read_to_string().unwrap())
    }
}

fn document(api: &Api) -> Value {
    let (status, _, text) = api.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_served_document_is_docs_openapi_json() {
    let api = start();
    let (_, _, served) = api.call("GET", "/v1/openapi.json", None, None);
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(&kept, &served).unwrap();
    }
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let kept = std::fs::read_to_string(&kept).unwrap();
    let first_difference = kept
        .lines()
        .zip(served.lines())
        .position(|(a, b)| a != b)
        .or((kept.lines().count() != served.lines().count()).then_some(usize::MAX));
    assert_eq!(
        first_difference, None,
        "docs/openapi.json is not what the service serves (line {first_difference:?}): \
         KEYLEDGER_BLESS=1 cargo test --test system openapi"
    );
}

/// A path of the document with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "V4000004")
        .replace("{name}", "billing")
        .replace("/v1/keys/V4000004/machines", "/v1/keys/1/machines")
        .replace("/v1/machines/billing", "/v1/machines/ol-pc-0000000")
}

#[test]
fn every_route_is_in_the_document_and_nothing_else_is() {
    let api = start();
    let doc = document(&api);
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 26, "{:?}", paths.keys().collect::<Vec<_>>());
    // Every documented method on every documented path reaches a handler: never the
    // fallback's `not_found` or `method_not_allowed`.
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let body = (method == "POST").then(|| json!({}));
            // A stream never ends: asked from a bad seq, it is refused at once (400).
            let path = match path.as_str() {
                "/v1/events/stream" => "/v1/events/stream?from=x".to_owned(),
                path => concrete(path),
            };
            let (status, _, text) = api.call(&method, &path, Some(&api.olga), body.as_ref());
            assert!(
                !text.contains("no such endpoint") && !text.contains("\"method_not_allowed\""),
                "{method} {path}: {status} {text}"
            );
        }
    }
    // An API path the document does not name is the fallback's.
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/log"),
        ("POST", "/v1/log"),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let (status, _, text) = api.call(method, path, Some(&api.olga), body.as_ref());
        assert!(
            matches!(status, 404 | 405),
            "{method} {path}: {status} {text}"
        );
    }
}

/// Checks `body` against the document's schema at `pointer` (a JSON pointer into it).
fn validate(doc: &Value, pointer: &str, body: &Value, what: &str) {
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{what}: no schema at {pointer}"));
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{what}: the schema at {pointer} does not build: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:#?}\n{body:#}"
    );
}

/// The pointer to the JSON schema of `method path`'s answer with `status`.
fn answer_schema(path: &str, method: &str, status: u16) -> String {
    let escaped = path.replace('~', "~0").replace('/', "~1");
    format!("/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema")
}

#[test]
fn real_answers_validate_against_the_documents_schemas() {
    let api = start();
    let doc = document(&api);
    let (olga, vic) = (api.olga.as_str(), api.vic.as_str());
    let commands = json!([{"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "openapi-org", "name": "OpenAPI Org"}]);
    // Method, the document's path, the path asked, the token, the body.
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<Value>);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/license-ids/{id}/report",
            "/v1/license-ids/V4000004/report",
            Some(vic),
            None,
        ),
        (
            "GET",
            "/v1/license-ids/{id}/report",
            "/v1/license-ids/V1000001/report",
            Some(vic),
            None,
        ),
        (
            "GET",
            "/v1/keys",
            "/v1/keys?license_id=V4000004&format=json",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/usage",
            "/v1/usage?license_id=V4000004",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/summary",
            "/v1/summary?org=contoso",
            Some(olga),
            None,
        ),
        ("GET", "/v1/alerts", "/v1/alerts", Some(olga), None),
        (
            "GET",
            "/v1/machines/{name}",
            "/v1/machines/ol-pc-0000000",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/keys/{id}/machines",
            "/v1/keys/1/machines",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/log",
            "/v1/log?from=1&limit=200",
            Some(olga),
            None,
        ),
        ("GET", "/v1/log", "/v1/log?from=1", None, None),
        ("GET", "/v1/verify", "/v1/verify", Some(olga), None),
        ("GET", "/v1/verify", "/v1/verify", Some(vic), None),
        (
            "GET",
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?seq=5",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=3",
            Some(olga),
            None,
        ),
        ("GET", "/v1/consumers", "/v1/consumers", Some(olga), None),
        (
            "GET",
            "/v1/consumers/{name}",
            "/v1/consumers/billing",
            Some(olga),
            None,
        ),
        (
            "GET",
            "/v1/consumers/{name}/events",
            "/v1/consumers/billing/events?limit=50",
            Some(olga),
            None,
        ),
        (
            "POST",
            "/v1/consumers/{name}/ack",
            "/v1/consumers/billing/ack",
            Some(olga),
            Some(json!({"seq": 3})),
        ),
        (
            "POST",
            "/v1/consumers/{name}/reset",
            "/v1/consumers/billing/reset",
            Some(olga),
            Some(json!({"to": 1})),
        ),
        (
            "POST",
            "/v1/consumers/{name}/redeliver",
            "/v1/consumers/billing/redeliver",
            Some(olga),
            Some(json!({"from": 2})),
        ),
        (
            "POST",
            "/v1/consumers",
            "/v1/consumers",
            Some(olga),
            Some(json!({"name": "audit", "types": ["keys_disclosed"]})),
        ),
        (
            "POST",
            "/v1/commands",
            "/v1/commands",
            Some(olga),
            Some(commands),
        ),
        (
            "POST",
            "/v1/commands",
            "/v1/commands",
            Some(vic),
            Some(
                json!({"type": "add_operator", "at": "2026-11-02T00:00:00Z", "actor": "vic", "principal": "vic"}),
            ),
        ),
        (
            "POST",
            "/v1/activations",
            "/v1/activations",
            None,
            Some(
                json!({"product_key": "BBBBB-BBBBB-BBBBB-BBBBB-BBBBB", "org": "contoso", "method": "online", "machines": ["m1"]}),
            ),
        ),
        ("GET", "/healthz", "/healthz", None, None),
    ];
    let mut statuses = Vec::new();
    for (method, path, concrete, token, body) in cases {
        let (status, kind, text) = api.call(method, concrete, token, body.as_ref());
        assert!(
            kind.starts_with("application/json"),
            "{method} {concrete}: {status} {kind}"
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        let what = format!("{method} {concrete} ({status})");
        validate(
            &doc,
            &answer_schema(path, &method.to_lowercase(), status),
            &answer,
            &what,
        );
        statuses.push(status);
    }
    // The cases cover answers and refusals alike.
    for status in [200, 201, 401, 403, 404] {
        assert!(statuses.contains(&status), "no {status} among {statuses:?}");
    }
    // A log page's events are the flattened events of the document.
    let (_, _, page) = api.call("GET", "/v1/log?from=1&limit=1000", Some(olga), None);
    let page: Value = serde_json::from_str(&page).unwrap();
    let types: std::collections::BTreeSet<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert!(
        types.len() >= 10,
        "the demo's log has many event types: {types:?}"
    );
    // A schema that is wrong is caught: an event without its `at`.
    let mut broken = page["events"][0].clone();
    broken["event"].as_object_mut().unwrap().remove("at");
    let schema = doc.pointer("/components/schemas/LogEntry").unwrap().clone();
    let mut root = schema;
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).unwrap();
    assert!(
        !validator.is_valid(&broken),
        "an event without `at` passed: {broken}"
    );
}
