//! Webhooks (issue 18, item 3) through the real service, on redb and (with
//! `KEYLEDGER_TEST_STORE=postgres`) on PostgreSQL, to a receiver on loopback that this test
//! runs: deliveries are signed as docs/api.md says, retried while the receiver fails or is
//! down, kept across a restart of the service, and end with every event exactly once after
//! deduplication by seq, in order and chained.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use support::*;

/// One request as the receiver read it.
#[derive(Clone, Debug)]
struct Delivery {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

/// What the receiver has seen, and how many requests it still fails with 503.
#[derive(Debug, Default)]
struct Seen {
    deliveries: Vec<Delivery>,
    fail_next: usize,
}

/// An HTTP receiver on a loopback port that can be taken down and brought back on the
/// same port (a closed port refuses connections: the service sees the receiver down).
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Option<(
        Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen {
            fail_next: fail_first,
            ..Seen::default()
        }));
        let mut receiver = Receiver {
            port,
            seen,
            stop: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/keyledger", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopping) = (Arc::clone(&self.seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &seen),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        self.stop = Some((stop, thread));
    }

    /// Closes the port: connections are refused until `up`.
    fn down(&mut self) {
        let (stop, thread) = self.stop.take().expect("up");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().unwrap();
    }

    fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().deliveries.clone()
    }

    /// Waits until a 2xx delivery carried `seq` (at most 60 s).
    fn wait_for(&self, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self
                .deliveries()
                .iter()
                .filter(|d| d.status == 200)
                .flat_map(seqs_of)
                .any(|s| s == seq);
            if got {
                return;
            }
            assert!(Instant::now() < deadline, "seq {seq} was never delivered");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.down();
        }
    }
}

/// Reads one request (headers, then Content-Length bytes), answers 503 while failures
/// are asked for and 200 after, and closes the connection.
fn answer(stream: TcpStream, seen: &Mutex<Seen>) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream);
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("POST /hooks/keyledger "), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let status = {
        let mut seen = seen.lock().unwrap();
        let status = if seen.fail_next > 0 {
            seen.fail_next -= 1;
            503
        } else {
            200
        };
        seen.deliveries.push(Delivery {
            headers,
            body,
            status,
        });
        status
    };
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let said = if status == 200 { "" } else { "try later" };
    let _ = write!(
        reader.get_mut(),
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{said}",
        said.len()
    );
}

fn page_of(delivery: &Delivery) -> Value {
    serde_json::from_slice(&delivery.body).unwrap()
}

fn seqs_of(delivery: &Delivery) -> Vec<u64> {
    page_of(delivery)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// The documented recipe (docs/api.md, "Webhooks"): split `t=…,v1=…`, HMAC-SHA256 with
/// the secret's text over `"{t}." + body`, compare in hex.
fn hmac_verifies(delivery: &Delivery, secret: &str) -> bool {
    let header = &delivery.headers["keyledger-signature"];
    let fields: BTreeMap<&str, &str> = header
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.", fields["t"]).as_bytes());
    mac.update(&delivery.body);
    hex::encode(mac.finalize().into_bytes()) == fields["v1"]
}

/// Every seq once after deduplication, first seen in order, each event's `prev` the hash of
/// the one before: what a receiver checks to prove it missed nothing.
fn assert_complete_and_chained(deliveries: &[Delivery], head: u64) {
    let mut next = 1;
    let mut last_hash: Option<String> = None;
    for delivery in deliveries.iter().filter(|d| d.status == 200) {
        for event in page_of(delivery)["events"].as_array().unwrap() {
            let seq = event["seq"].as_u64().unwrap();
            if seq < next {
                continue; // delivered before: the seq is the idempotency key
            }
            assert_eq!(seq, next, "seq {next} arrived before seq {seq}: a gap");
            if let Some(hash) = &last_hash {
                assert_eq!(
                    event["prev"].as_str().unwrap(),
                    hash,
                    "seq {seq} is chained"
                );
            }
            last_hash = Some(event["hash"].as_str().unwrap().to_owned());
            next += 1;
        }
    }
    assert_eq!(next - 1, head, "every event up to the head arrived");
}

const RETRY_FAST: &[&str] = &[
    "--webhook-private-targets",
    "--webhook-retry-base-ms",
    "20",
    "--webhook-retry-cap-ms",
    "200",
];

/// The consumer's record once `settled` holds of it (at most 10 s): the service notes a
/// delivery just after the receiver answered it, so a test that saw the answer waits.
fn consumer_when(server: &Server, name: &str, settled: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let consumer = consumer_of(server, name);
        if settled(&consumer) {
            return consumer;
        }
        assert!(Instant::now() < deadline, "never settled: {consumer}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn consumer_of(server: &Server, name: &str) -> Value {
    let (status, text) = server.get(&format!("/v1/consumers/{name}"), Some("olga"));
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["consumer"].clone()
}

#[test]
fn a_receiver_that_fails_then_is_down_gets_every_event_once_by_seq() {
    let mut receiver = Receiver::start(3);
    let mut server = Server::start_with(1000, RETRY_FAST);
    let create = json!({"name": "tickets", "webhook": {"url": receiver.url()}});
    let (status, text) = server.post("/v1/consumers", Some("olga"), &create.to_string());
    assert_eq!(status, 201, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    let secret = made["consumer"]["webhook"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        secret.starts_with("klwh_") && secret.len() == 69,
        "{secret}"
    );
    let head = server.seq();
    receiver.wait_for(head);
    let first = receiver.deliveries();
    assert_eq!(
        first.iter().map(|d| d.status).take(4).collect::<Vec<_>>(),
        [503, 503, 503, 200],
        "three failures, then the retry is taken"
    );
    assert_eq!(
        first.iter().take(4).map(seqs_of).collect::<Vec<_>>(),
        vec![seqs_of(&first[0]); 4],
        "a retry carries the same events"
    );
    assert_eq!(first[2].headers["keyledger-attempt"], "3");
    assert_eq!(first[0].headers["keyledger-consumer"], "tickets");
    assert_eq!(
        first[0].headers["keyledger-delivery"],
        format!("tickets/0-{head}")
    );

    // Down while 500 activations commit, with a restart of the service half-way.
    receiver.down();
    let mut last = 0;
    for i in 0..500 {
        let (status, answer) =
            server.post("/v1/activations", None, &activation(&format!("pc-{i}")));
        assert_eq!(status, 200, "{answer}");
        last = serde_json::from_str::<Value>(&answer).unwrap()["seq"]
            .as_u64()
            .unwrap();
        if i == 249 {
            server.restart();
        }
    }
    server.wait_folded(last);
    std::thread::sleep(Duration::from_millis(300)); // some attempts fail against the closed port
    let failing = consumer_of(&server, "tickets");
    let webhook = &failing["webhook"];
    assert_eq!(webhook["state"], "active", "{failing}");
    assert!(webhook["failures"].as_u64().unwrap() >= 1, "{failing}");
    let newest = webhook["attempts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        newest["status"],
        Value::Null,
        "no answer from a closed port: {newest}"
    );
    assert!(newest["error"].as_str().unwrap().len() > 5, "{newest}");
    assert_eq!(
        failing["position"].as_u64().unwrap(),
        head,
        "kept across the restart"
    );
    assert!(
        webhook.get("secret").is_none(),
        "listings leave the secret out"
    );

    receiver.up();
    receiver.wait_for(last);
    let all = receiver.deliveries();
    assert_complete_and_chained(&all, last);
    for delivery in &all {
        assert!(hmac_verifies(delivery, &secret), "{:?}", delivery.headers);
    }
    let tampered = Delivery {
        body: [&all[0].body[..], b" "].concat(),
        ..all[0].clone()
    };
    assert!(
        !hmac_verifies(&tampered, &secret),
        "a changed body does not verify"
    );
    let done = consumer_when(&server, "tickets", |c| c["position"] == last);
    let webhook = &done["webhook"];
    let answered_2xx = all.iter().filter(|d| d.status == 200).count() as u64;
    assert_eq!(webhook["delivered_total"], answered_2xx, "{done}");
    assert!(webhook["attempts_total"].as_u64().unwrap() > answered_2xx + 3);
    assert_eq!(webhook["failures"], 0);
    assert_eq!(done["position"], last);
}

#[test]
fn a_failing_webhook_waits_for_redeliver_and_ed25519_signatures_verify() {
    let mut receiver = Receiver::start(0);
    receiver.down();
    let mut args = RETRY_FAST.to_vec();
    args.extend(["--webhook-attempts-max", "3"]);
    let mut server = Server::start_with(1000, &args);
    let create = json!({"name": "siem", "types": ["key_issued"],
                        "webhook": {"url": receiver.url(), "signing": "ed25519", "batch": 1}});
    let (status, text) = server.post("/v1/consumers", Some("olga"), &create.to_string());
    assert_eq!(status, 201, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failing = loop {
        let consumer = consumer_of(&server, "siem");
        if consumer["webhook"]["state"] == "failing" {
            break consumer;
        }
        assert!(
            Instant::now() < deadline,
            "never marked failing: {consumer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(failing["webhook"]["failures"], 3, "{failing}");
    assert_eq!(failing["webhook"]["attempts_total"], 3);
    assert_eq!(failing["position"], 0);
    // Failing: nothing is sent even when the receiver is back, until redeliver.
    receiver.up();
    std::thread::sleep(Duration::from_millis(500));
    assert!(receiver.deliveries().is_empty());
    let (status, text) = server.post("/v1/consumers/siem/ack", Some("olga"), r#"{"seq": 1}"#);
    assert_eq!(
        (status, text.contains("webhook_consumer")),
        (409, true),
        "{text}"
    );
    let (status, text) = server.post(
        "/v1/consumers/siem/redeliver",
        Some("rita"),
        r#"{"from": 1}"#,
    );
    assert_eq!(status, 403, "operators only: {text}");
    let (status, text) = server.post(
        "/v1/consumers/siem/redeliver",
        Some("olga"),
        r#"{"from": 0}"#,
    );
    assert_eq!(status, 400, "{text}");
    // From the CLI on PostgreSQL (any time) or over HTTP (redb is held by serve).
    if pg::on_postgres() {
        let said = keyledger(
            &server.data,
            &["consumer", "redeliver", "siem", "--from", "1"],
        );
        assert!(said.contains("from seq 1 on"), "{said}");
    } else {
        let (status, text) = server.post(
            "/v1/consumers/siem/redeliver",
            Some("olga"),
            r#"{"from": 1}"#,
        );
        assert_eq!(status, 200, "{text}");
    }
    // The two keys' issuance events (seqs 5 and 6 of the set-up), one a delivery.
    receiver.wait_for(6);
    let all = receiver.deliveries();
    let carried: Vec<Vec<u64>> = all.iter().map(seqs_of).collect();
    assert_eq!(carried, [vec![5], vec![6]], "type filter, batch 1");
    assert_eq!(page_of(&all[1])["events"][0]["event"]["type"], "key_issued");
    let verifier = keyledger(&server.data, &["pubkey"]);
    let public = base64::engine::general_purpose::STANDARD
        .decode(verifier.trim().splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(public[1..].try_into().unwrap()).unwrap();
    for delivery in &all {
        let header = &delivery.headers["keyledger-signature"];
        let (t, signature) = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",ed25519="))
            .unwrap();
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        let signed = [format!("{t}.").as_bytes(), &delivery.body].concat();
        key.verify_strict(&signed, &signature)
            .expect("the signature verifies");
        let mut forged = signed.clone();
        forged.push(b' ');
        assert!(key.verify_strict(&forged, &signature).is_err());
    }
    let done = consumer_when(&server, "siem", |c| c["position"].as_u64() >= Some(6));
    assert_eq!(done["webhook"]["state"], "active");
    assert!(done["reset_at"].is_string());
    assert_eq!(done["webhook"]["delivered_total"], 2);
    server.stop();
}

#[test]
fn webhook_consumers_refuse_bad_definitions_and_the_cli_manages_them() {
    let server = Server::start(10);
    for (hook, field) in [
        (json!({"url": "ftp://x/"}), "webhook"),
        (json!({}), "webhook.url"),
        (
            json!({"url": "http://h/", "signing": "rsa"}),
            "webhook.signing",
        ),
        (json!({"url": "http://h/", "batch": 0}), "webhook"),
        (
            json!({"url": "http://h/", "batch": "many"}),
            "webhook.batch",
        ),
    ] {
        let body = json!({"name": "bad", "webhook": hook}).to_string();
        let (status, text) = server.post("/v1/consumers", Some("olga"), &body);
        assert_eq!(status, 400, "{hook}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["field"], field, "{text}");
    }
    let hook = json!({"url": "http://127.0.0.1:9/in"});
    for bad in [
        json!({"name": "bad", "feed": "alerts"}),
        json!({"name": "bad", "feed": "alerts", "webhook": hook, "types": ["key_issued"]}),
        json!({"name": "bad", "feed": "everything", "webhook": hook}),
    ] {
        let (status, text) = server.post("/v1/consumers", Some("olga"), &bad.to_string());
        assert_eq!(status, 400, "{bad}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["field"],
            "feed"
        );
    }
    let feed = json!({"name": "admins", "feed": "alerts", "webhook": hook});
    assert_eq!(
        server
            .post("/v1/consumers", Some("olga"), &feed.to_string())
            .0,
        201
    );
    let (status, text) = server.get("/v1/consumers/admins/events", Some("olga"));
    assert_eq!((status, text.contains("alert_feed")), (409, true), "{text}");
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger.redb");
    keyledger(&data, &["init", "--operator", "olga"]);
    let made = keyledger(
        &data,
        &[
            "consumer",
            "create",
            "asset-tool",
            "--webhook",
            "http://127.0.0.1:9/in",
            "--batch",
            "50",
        ],
    );
    let secret = made
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is shown once");
    assert!(secret.starts_with("klwh_"), "{made}");
    let list = keyledger(&data, &["consumer", "list"]);
    assert!(
        list.contains("webhook active http://127.0.0.1:9/in"),
        "{list}"
    );
    assert!(!list.contains(secret));
    let json_list = keyledger(&data, &["consumer", "list", "--format", "json"]);
    assert!(!json_list.contains(secret), "{json_list}");
    let shown: Value = serde_json::from_str(&keyledger(
        &data,
        &["consumer", "show", "asset-tool", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(shown["consumer"]["webhook"]["batch"], 50);
    assert_eq!(shown["consumer"]["webhook"]["signing"], "hmac-sha256");
    let made = keyledger(
        &data,
        &[
            "consumer",
            "create",
            "admins",
            "--feed",
            "alerts",
            "--webhook",
            "http://127.0.0.1:9/a",
        ],
    );
    assert!(made.contains("secret: klwh_"), "{made}");
    let list = keyledger(&data, &["consumer", "list"]);
    assert!(
        list.contains("alerts webhook active http://127.0.0.1:9/a"),
        "{list}"
    );
    let out = keyledger_command(&data)
        .args(["consumer", "create", "pull-alerts", "--feed", "alerts"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivered by a webhook"));
    let said = keyledger(
        &data,
        &["consumer", "redeliver", "asset-tool", "--from", "1"],
    );
    assert!(said.contains("from seq 1 on"), "{said}");
    let out = keyledger_command(&data)
        .args(["consumer", "redeliver", "asset-tool", "--from", "99"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the head"));
}

/// RFC 3339 of the wall clock moved by `seconds` (the service stamps activations with it).
fn wall_clock_plus(seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    keyledger_core::Timestamp::from_unix_micros(now + seconds * 1_000_000).to_string()
}

fn ids(delivery: &Delivery, field: &str) -> Vec<String> {
    page_of(delivery)[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.get("id").unwrap_or(a).as_str().unwrap().to_owned())
        .collect()
}

/// Waits for the `n`th delivery (at most 30 s).
fn nth_delivery(receiver: &Receiver, n: usize) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(d) = receiver.deliveries().get(n - 1) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "delivery {n} never came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_alert_feed_is_told_of_alerts_raised_as_time_passes_and_as_events_commit() {
    let receiver = Receiver::start(0);
    let mut args = RETRY_FAST.to_vec();
    args.extend(["--alerts-every-ms", "200"]);
    let server = Server::start_with(20, &args);
    // A request made 7 days less 3 seconds ago: pending "longer than 7 days" 3 s from now.
    let asked = json!({"type": "request_mak_increase", "at": wall_clock_plus(-7 * 86_400 + 3),
        "actor": "vic", "request_id": "r1", "license_id": "V100", "product": "win11-pro",
        "key_last5": "6789B", "activations_needed": 100, "justification": "a new office"});
    let (status, text) = server.post("/v1/commands", Some("vic"), &asked.to_string());
    assert_eq!(status, 200, "{text}");
    let create = json!({"name": "admins", "feed": "alerts", "webhook": {"url": receiver.url()}});
    let (status, text) = server.post("/v1/consumers", Some("olga"), &create.to_string());
    assert_eq!(status, 201, "{text}");
    let secret = serde_json::from_str::<Value>(&text).unwrap()["consumer"]["webhook"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let quiet_head = server.seq();
    let made = Instant::now();

    // Business time passes, no event comes: the request's alert is raised by the clock.
    let first = nth_delivery(&receiver, 1);
    assert!(
        made.elapsed() >= Duration::from_secs(2),
        "not before its time"
    );
    assert_eq!(server.seq(), quiet_head, "no event was committed meanwhile");
    assert_eq!(
        ids(&first, "raised"),
        ["request_pending_long/V100/request:r1"]
    );
    assert!(ids(&first, "cleared").is_empty());
    let page = page_of(&first);
    assert_eq!(
        (page["feed"].as_str(), page["at_seq"].as_u64()),
        (Some("alerts"), Some(quiet_head))
    );
    assert_eq!(page["raised"][0]["rule"], "request_pending_long");
    assert_eq!(page["raised"][0]["threshold"], 7.0);

    // Events commit: 19 of 20 activations used raise the MAK's alerts, once.
    for i in 0..19 {
        let (status, answer) =
            server.post("/v1/activations", None, &activation(&format!("pc-{i}")));
        assert_eq!(status, 200, "{answer}");
    }
    let second = nth_delivery(&receiver, 2);
    let mut raised = ids(&second, "raised");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !raised.contains(&"mak_low_remaining/V100/key:1".to_owned()) {
        assert!(Instant::now() < deadline, "never raised: {raised:?}");
        // The activations may have been evaluated in two steps.
        let n = receiver.deliveries().len();
        raised.extend(ids(&nth_delivery(&receiver, n + 1), "raised"));
    }
    assert!(
        !raised.contains(&"request_pending_long/V100/request:r1".to_owned()),
        "told once"
    );

    // The grant clears the request's alert and, with 100 more activations, the MAK's.
    let before = receiver.deliveries().len();
    let grant = json!({"type": "grant_request", "at": wall_clock_plus(0), "actor": "olga",
                       "request_id": "r1", "amount": 100});
    let (status, text) = server.post("/v1/commands", Some("olga"), &grant.to_string());
    assert_eq!(status, 200, "{text}");
    let cleared = nth_delivery(&receiver, before + 1);
    let cleared_ids = ids(&cleared, "cleared");
    assert!(
        cleared_ids.contains(&"request_pending_long/V100/request:r1".to_owned()),
        "{cleared_ids:?}"
    );
    assert!(
        cleared_ids.contains(&"mak_low_remaining/V100/key:1".to_owned()),
        "{cleared_ids:?}"
    );
    assert!(ids(&cleared, "raised").is_empty());
    let consumer = consumer_when(&server, "admins", |c| {
        c["position"] == page_of(&cleared)["through"]
    });
    assert_eq!(consumer["alerts"]["raised"], json!([]), "{consumer}");
    for delivery in receiver.deliveries() {
        assert!(hmac_verifies(&delivery, &secret));
    }
    // Nothing more to tell: no further delivery while nothing changes.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(receiver.deliveries().len(), before + 1);
}

/// Smaller finding: a webhook could target any address, so an operator's token could make
/// the service reach its own host's and network's services. Without
/// `--webhook-private-targets`, a target that resolves to loopback (by number or by name)
/// gets nothing, and the attempt says why.
#[test]
fn a_webhook_to_a_loopback_or_private_address_is_refused_unless_allowed() {
    let receiver = Receiver::start(0);
    let server = Server::start_with(
        10,
        &[
            "--webhook-retry-base-ms",
            "20",
            "--webhook-attempts-max",
            "2",
        ],
    );
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    for (name, url) in [("by-number", receiver.url()), ("by-name", by_name)] {
        let create = json!({"name": name, "webhook": {"url": url}});
        let (status, text) = server.post("/v1/consumers", Some("olga"), &create.to_string());
        assert_eq!(status, 201, "{text}");
        let failing = consumer_when(&server, name, |c| c["webhook"]["state"] == "failing");
        let error = failing["webhook"]["attempts"][0]["error"]
            .as_str()
            .unwrap_or("");
        assert!(
            error.contains("--webhook-private-targets"),
            "{name}: {failing}"
        );
        assert_eq!(failing["position"], 0);
    }
    assert!(
        receiver.deliveries().is_empty(),
        "nothing reached the receiver"
    );
}
