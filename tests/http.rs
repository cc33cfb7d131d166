//! The HTTP service, end to end: a real `keyledger serve` on an ephemeral loopback port,
//! driven by a real HTTP client. Races must not over-activate, auth must hold, key text must
//! never reach anyone without the role, bad input must append nothing, and a SIGTERM under
//! load must lose no acknowledged activation.

use crate::support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::*;

#[test]
fn two_hundred_concurrent_activations_of_a_mak_of_50_activate_exactly_50() {
    let server = Arc::new(Server::start(50));
    let before = server.seq();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                server.post("/v1/activations", None, &activation(&format!("pc-{i}")))
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads
        .into_iter()
        .map(|t| {
            let (status, body) = t.join().unwrap();
            (status, serde_json::from_str(&body).unwrap())
        })
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|(s, a)| *s == 200 && a["ok"] == true)
            .count(),
        50
    );
    let refused: Vec<_> = answers.iter().filter(|(_, a)| a["ok"] == false).collect();
    assert_eq!(refused.len(), 150);
    assert!(refused
        .iter()
        .all(|(s, a)| *s == 422 && a["code"] == "insufficient_activations" && a["seq"].is_u64()));
    let last = answers.iter().filter_map(|(_, a)| a["seq"].as_u64()).max();
    server.wait_folded(last.expect("every answer names its event"));
    let (_, report) = server.get("/v1/license-ids/V100/report", Some("olga"));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["keys"][0]["used"], 50);
    assert_eq!(
        report["keys"][0]["refusals"]["insufficient_activations"],
        150
    );
    let (status, verify) = server.get("/v1/verify", Some("olga"));
    assert_eq!(status, 200, "{verify}");
    assert_eq!(
        server.seq(),
        before + 200,
        "50 consumptions and 150 recorded refusals"
    );
    let (_, log) = server.get(
        &format!("/v1/log?from={}&limit=1000", before + 1),
        Some("olga"),
    );
    let log: Value = serde_json::from_str(&log).unwrap();
    let types: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "machines_activated").count(),
        50
    );
    assert_eq!(
        types.iter().filter(|t| **t == "activation_refused").count(),
        150
    );
}

#[test]
fn twenty_concurrent_kms_hosts_activate_exactly_six() {
    let server = Arc::new(Server::start(5));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let server = Arc::clone(&server);
            let body = json!({"type": "activate_kms_host", "product_key": KMS, "org": "contoso", "host": format!("kms-{i}")});
            std::thread::spawn(move || server.post("/v1/activations", None, &body.to_string()))
        })
        .collect();
    let answers: Vec<Value> = threads
        .into_iter()
        .map(|t| serde_json::from_str(&t.join().unwrap().1).unwrap())
        .collect();
    assert_eq!(answers.iter().filter(|a| a["ok"] == true).count(), 6);
    assert!(answers
        .iter()
        .filter(|a| a["ok"] == false)
        .all(|a| a["code"] == "kms_host_limit_reached"));
}

#[test]
fn the_auth_matrix_for_reading_keys_and_licensor_commands() {
    let server = Server::start(5);
    // Later than anything the server stamps today: a time regression would be checked first.
    let block = json!({"type": "block_key", "at": "2099-01-01T00:00:00Z", "key_id": 2}).to_string();
    assert_eq!(
        server.get("/v1/keys?license_id=V100", None).0,
        401,
        "no token"
    );
    assert_eq!(
        server.get("/v1/keys?license_id=V100", Some("klt_bogus")).0,
        401,
        "bad token"
    );
    assert_eq!(
        server.get("/v1/keys?license_id=V100", Some("gone")).0,
        401,
        "revoked token"
    );
    let (status, tsv) = server.get("/v1/keys?license_id=V100", Some("rita"));
    assert_eq!(status, 200);
    assert!(tsv.contains(MAK), "a reader sees key text: {tsv}");
    let (status, tsv) = server.get("/v1/keys?license_id=V100", Some("vic"));
    assert_eq!(status, 200);
    assert!(
        !tsv.contains(MAK) && tsv.contains("*****-*****-*****-*****-6789B"),
        "a viewer sees masks: {tsv}"
    );
    let (status, tsv) = server.get("/v1/keys?license_id=V100", Some("olga"));
    assert!(
        status == 200 && !tsv.contains(MAK),
        "operators are licensors, not readers (R1)"
    );
    let (status, body) = server.post("/v1/commands", Some("rita"), &block);
    assert_eq!(status, 403, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (answer["code"].as_str(), answer["rule"].as_str()),
        (Some("forbidden"), Some("R3"))
    );
    assert_eq!(server.post("/v1/commands", None, &block).0, 401);
    let spoofed =
        json!({"type": "block_key", "at": "2099-01-01T00:00:00Z", "actor": "olga", "key_id": 2})
            .to_string();
    let (status, body) = server.post("/v1/commands", Some("rita"), &spoofed);
    assert_eq!(
        status, 403,
        "a body actor other than the token's principal: {body}"
    );
    let (status, body) = server.post("/v1/commands", Some("olga"), &block);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server
            .get("/v1/license-ids/V100/report", Some("outsider"))
            .0,
        401
    );
    assert_eq!(
        server.get("/v1/log?from=1", Some("rita")).0,
        403,
        "an unfiltered log is for operators"
    );
    assert_eq!(
        server.get("/v1/log?from=1&license_id=V100", Some("rita")).0,
        200
    );
}

#[test]
fn key_text_never_reaches_a_principal_without_the_role_nor_metrics_nor_logs() {
    let mut server = Server::start(5);
    for i in 0..3 {
        server.post("/v1/activations", None, &activation(&format!("pc-{i}")));
    }
    let bad_key = json!({"product_key": "BCDFG-HJKMP-QRTVW-XY234-6789A", "org": "contoso", "method": "online", "machines": ["x"]});
    server.post("/v1/activations", None, &bad_key.to_string());
    let mut seen = String::new();
    for (path, who) in [
        ("/v1/keys?license_id=V100", Some("vic")),
        ("/v1/keys?license_id=V100&format=json", Some("vic")),
        ("/v1/license-ids/V100/report", Some("vic")),
        ("/v1/license-ids/V100/report?format=tsv", Some("olga")),
        ("/v1/log?from=1", Some("olga")),
        ("/metrics", None),
        ("/healthz", None),
    ] {
        seen.push_str(&server.get(path, who).1);
    }
    let stderr = server.stop();
    seen.push_str(&stderr);
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    assert!(
        !seen.contains(MAK) && !seen.contains(KMS),
        "key text leaked"
    );
    assert!(
        !seen.contains("HJKMP-QRTVW"),
        "no fragment of key text either"
    );
    let exported = keyledger(
        &server.data,
        &[
            "export",
            "--out",
            server.dir.path().join("x.jsonl").to_str().unwrap(),
        ],
    );
    assert!(!exported.contains(MAK));
}

#[test]
fn malformed_input_is_a_4xx_naming_the_field_and_appends_nothing() {
    let server = Server::start(5);
    let before = server.seq();
    let too_many: Vec<String> = (0..10_001).map(|i| format!("m{i}")).collect();
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{not json".into(), 400, None),
        (json!({"product_key": MAK, "org": "contoso", "method": "online", "machines": ["a"], "machine": "b"}).to_string(), 400, Some("machine")),
        (json!({"product_key": MAK, "org": "contoso", "method": "online", "machines": "a"}).to_string(), 400, Some("machines")),
        (json!({"product_key": "BCDFG-HJKMP-QRTVW-XY234-6789A", "org": "contoso", "method": "online", "machines": ["a"]}).to_string(), 400, Some("product_key")),
        (json!({"product_key": MAK, "org": "contoso", "method": "proxy", "machines": too_many}).to_string(), 400, Some("machines")),
        (json!({"at": AT, "product_key": MAK, "org": "contoso", "method": "online", "machines": ["a"]}).to_string(), 400, Some("at")),
        (json!({"type": "block_key", "key_id": 1}).to_string(), 400, Some("type")),
    ];
    for (body, status, field) in cases {
        let (got, text) = server.post("/v1/activations", None, &body);
        assert_eq!(got, status, "{}: {text}", &body[..body.len().min(80)]);
        if let Some(field) = field {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["field"], field, "{text}");
            assert_eq!(answer["code"], "malformed");
        }
    }
    assert_eq!(
        server.status_of_oversized_post("/v1/activations", 3 * 1024 * 1024),
        413,
        "a body over the limit"
    );
    let (status, text) = server.post(
        "/v1/commands",
        Some("olga"),
        &json!({"type": "block_key", "at": "yesterday", "key_id": 1}).to_string(),
    );
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["field"], "at");
    assert_eq!(server.seq(), before, "nothing appended");
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_activation() {
    let mut server = Server::start(1_000_000);
    let server_url = server.url.clone();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let url = server_url.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut acknowledged = Vec::new();
                for i in 0..100_000 {
                    let machine = format!("w{w}-{i}");
                    let sent = agent
                        .post(format!("{url}/v1/activations"))
                        .content_type("application/json")
                        .send(&activation(&machine));
                    let Ok(mut response) = sent else { break };
                    let Ok(body) = response.body_mut().read_to_string() else {
                        break;
                    };
                    match serde_json::from_str::<Value>(&body) {
                        Ok(answer) if answer["ok"] == true => {
                            acknowledged.push(machine);
                            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    // The signal lands while the load is under way: once a few hundred were acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never got going"
        );
        std::thread::yield_now();
    }
    server.stop();
    let acknowledged: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 50,
        "the load ran: {} acknowledged",
        acknowledged.len()
    );
    let engine = keyledger_ledger::open(&server.location).unwrap();
    for machine in &acknowledged {
        let id = keyledger_core::MachineId::new(machine.as_str()).unwrap();
        assert!(
            engine
                .machine_active(keyledger_core::KeyId(1), &id)
                .unwrap(),
            "{machine} lost"
        );
    }
    assert!(keyledger_ledger::verify(engine.store()).is_ok());
    drop(engine);
    let out = keyledger(&server.data, &["verify"]);
    assert!(
        out.contains("snapshot ok"),
        "the shutdown wrote a snapshot: {out}"
    );
}

#[test]
fn checkpoints_are_public_and_proofs_over_http_verify_with_the_key_alone() {
    let server = Server::start(5);
    server.post("/v1/activations", None, &activation("pc-1"));
    let pubkey = keyledger(&server.data, &["pubkey"]).trim().to_owned();
    let (status, note) = server.get("/v1/checkpoint", None);
    assert_eq!(status, 200);
    let checkpoint = keyledger_ledger::checkpoint::verify(&note, &pubkey).unwrap();
    assert_eq!(checkpoint.size, server.seq());
    assert_eq!(
        server.get("/v1/proofs/inclusion?seq=9", None).0,
        401,
        "proofs carry records: token required"
    );
    let (status, proof) = server.get(
        &format!("/v1/proofs/inclusion?seq={}", server.seq()),
        Some("olga"),
    );
    assert_eq!(status, 200, "{proof}");
    let verified = keyledger_ledger::proof::verify_proof(&proof, &pubkey, None).unwrap();
    assert!(
        verified.statement.contains("(machines_activated)"),
        "{}",
        verified.statement
    );
    let (status, proof) = server.get("/v1/proofs/consistency?from=3", Some("olga"));
    assert_eq!(status, 200, "{proof}");
    assert!(keyledger_ledger::proof::verify_proof(&proof, &pubkey, None).is_ok());
    let (status, body) = server.get("/v1/proofs/consistency?from=0", Some("olga"));
    assert_eq!(status, 422, "{body}");
}

/// Issue 19: usage over time, the roll-up and an outside count over HTTP, under the read rule
/// of reports: a reader of the license ID sees them, a principal without a role does not.
#[test]
fn usage_summary_and_outside_counts_answer_readers_only() {
    let server = Server::start(5);
    // Recorded before the activations (which the server stamps now): the ledger then
    // counted all 5 left, the outside service 1.
    let record = json!({"type": "record_external_count", "at": "2026-06-01T00:00:00Z",
        "key_id": 1, "source": "microsoft-activation-service", "remaining": 1,
        "observed_at": "2026-06-01T00:00:00Z"})
    .to_string();
    assert_eq!(server.post("/v1/commands", Some("rita"), &record).0, 403);
    let (status, body) = server.post("/v1/commands", Some("olga"), &record);
    assert_eq!(status, 200, "{body}");
    for machine in ["pc-1", "pc-2", "pc-3"] {
        let (status, body) = server.post("/v1/activations", None, &activation(machine));
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        server.wait_folded(answer["seq"].as_u64().unwrap());
    }
    let json = |path: &str, who: &str| {
        let (status, body) = server.get(path, Some(who));
        assert_eq!(status, 200, "{path} as {who}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let usage = json("/v1/usage?key_id=1&by=day", "rita");
    let last = usage["periods"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["consumed"], &last["used_end"], &last["total_end"]),
        (&json!(3), &json!(3), &json!(5))
    );
    assert_eq!(usage["scope"], "key");
    let status = |path: &str, who: Option<&str>| server.get(path, who).0;
    assert_eq!(status("/v1/usage?key_id=1", Some("nobody")), 403);
    assert_eq!(status("/v1/usage?license_id=V100", None), 401);
    assert_eq!(status("/v1/usage?key_id=99", Some("olga")), 404);
    let (code, body) = server.get("/v1/usage?license_id=V100&by=year", Some("olga"));
    assert_eq!(code, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["field"], "by");
    assert_eq!(
        status("/v1/usage?license_id=V100&key_id=1", Some("olga")),
        400
    );
    let (code, tsv) = server.get("/v1/usage?license_id=V100&format=tsv", Some("vic"));
    assert_eq!(code, 200);
    assert!(
        tsv.starts_with("period\tconsumed\talready_active\t"),
        "{tsv}"
    );
    let summary = json("/v1/summary?org=contoso", "olga");
    let row = &summary["rows"][0];
    assert_eq!(
        (&row["group"], &row["used"], &row["total"]),
        (&json!("win11-pro"), &json!(3), &json!(5))
    );
    let outside = &summary["reconciliation"][0]["external"];
    assert_eq!(
        (
            &outside["remaining"],
            &outside["ledger_remaining"],
            &outside["difference"]
        ),
        (&json!(1), &json!(5), &json!(4))
    );
    assert_eq!(
        json("/v1/summary?org=contoso&by=license_id", "rita")["license_ids"],
        json!(["V100"])
    );
    assert_eq!(status("/v1/summary?org=contoso", Some("nobody")), 403);
    assert_eq!(status("/v1/summary?org=nowhere", Some("olga")), 404);
    let report = json("/v1/license-ids/V100/report", "rita");
    assert_eq!(report["keys"][0]["external"]["difference"], 4);
    assert_eq!(report["keys"][0]["remaining"], 2);
    assert_eq!(
        report["keys"][0]["external"]["source"],
        "microsoft-activation-service"
    );
}

/// Issue 19, item 1: a machine's history and a key's machines over HTTP, from the store's
/// machine index, under the read rule (a principal without a role sees no row).
#[test]
fn machine_history_and_a_keys_machines_answer_readers_only() {
    let server = Server::start(5);
    for body in [
        activation("pc-1"),
        activation("pc-1"),
        json!({"product_key": MAK, "org": "fabrikam", "method": "online", "machines": ["pc-2"]})
            .to_string(),
    ] {
        server.post("/v1/activations", None, &body);
    }
    let json = |path: &str, who: &str| {
        let (status, body) = server.get(path, Some(who));
        assert_eq!(status, 200, "{path} as {who}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let history = json("/v1/machines/pc-1", "rita");
    // A page that is not the last says where the next starts, in TSV too (a header).
    let (status, next, tsv) = server.get_with_header(
        "/v1/machines/pc-1?limit=1&format=tsv",
        Some("rita"),
        "keyledger-next-after",
    );
    assert_eq!(status, 200);
    let first_seq = tsv
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(next.as_deref(), Some(first_seq.as_str()), "{tsv}");
    let (_, last, _) = server.get_with_header(
        "/v1/machines/pc-1?format=tsv",
        Some("rita"),
        "keyledger-next-after",
    );
    assert_eq!(last, None, "the last page names no next");
    let whats: Vec<&str> = history["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["activated", "already_active"]);
    let first = &history["rows"][0];
    assert_eq!(
        (&first["license_id"], &first["key_id"]),
        (&json!("V100"), &json!(1))
    );
    let seq = first["seq"].as_u64().unwrap();
    assert_eq!(first["proof"], format!("/v1/proofs/inclusion?seq={seq}"));
    let refused = json("/v1/machines/pc-2", "olga");
    assert_eq!(refused["rows"][0]["what"], "refused");
    assert_eq!(refused["rows"][0]["code"], "unknown_org");
    assert_eq!(json("/v1/machines/pc-1", "nobody")["rows"], json!([]));
    assert_eq!(json("/v1/machines/never-seen", "olga")["rows"], json!([]));
    let page = json("/v1/keys/1/machines", "vic");
    assert_eq!(page["machines"][0]["machine"], "pc-1");
    assert_eq!(page["machines"].as_array().unwrap().len(), 1);
    // Time and org filters: activations at or after `from`, before `to`, of that org.
    let later = json("/v1/keys/1/machines?from=2099-01-01T00:00:00Z", "vic");
    assert_eq!(later["machines"], json!([]));
    let before = json(
        "/v1/keys/1/machines?to=2099-01-01T00:00:00Z&org=contoso",
        "vic",
    );
    assert_eq!(before["machines"].as_array().unwrap().len(), 1);
    let elsewhere = json("/v1/keys/1/machines?org=fabrikam", "vic");
    assert_eq!(elsewhere["machines"], json!([]));
    let status = |path: &str, who: &str| server.get(path, Some(who)).0;
    assert_eq!(status("/v1/keys/1/machines", "nobody"), 403);
    assert_eq!(status("/v1/keys/99/machines", "olga"), 404);
    assert_eq!(status("/v1/keys/1/machines?limit=0", "olga"), 400);
    assert_eq!(status("/v1/keys/1/machines?method=fax", "olga"), 400);
    let long = "m".repeat(129);
    assert_eq!(status(&format!("/v1/machines/{long}"), "olga"), 400);
    let (code, tsv) = server.get("/v1/machines/pc-1?format=tsv", Some("rita"));
    assert_eq!(code, 200);
    assert_eq!(tsv.lines().count(), 3, "{tsv}");
}

#[test]
fn alerts_answer_the_license_ids_a_reader_may_read() {
    // A MAK of 10: nine activations leave 10% (no alert), the tenth leaves none.
    let server = Server::start(10);
    let low = |who: &str| -> Vec<Value> {
        let (status, body) = server.get("/v1/alerts?format=json", Some(who));
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == "mak_low_remaining")
            .map(|a| {
                let mut a = a.clone();
                // Evaluated at the moment of each request: the rest must be equal.
                a.as_object_mut().unwrap().remove("evaluated_at");
                a
            })
            .collect()
    };
    let activate = |machine: &str| {
        let (status, body) = server.post("/v1/activations", None, &activation(machine));
        assert_eq!(status, 200, "{body}");
        let seq = serde_json::from_str::<Value>(&body).unwrap()["seq"]
            .as_u64()
            .unwrap();
        // Alerts are read from the read models, which fold each commit a moment after it.
        server.wait_folded(seq);
    };
    for i in 0..9 {
        activate(&format!("pc-{i}"));
    }
    assert!(low("olga").is_empty(), "exactly 10% left is not under 10%");
    activate("pc-9");
    let fired = low("rita");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["license_id"], "V100");
    assert_eq!(fired[0]["key_id"], 1);
    assert_eq!(fired[0]["value"], 0.0);
    assert_eq!(fired[0]["at_seq"], server.seq());
    assert_eq!(low("olga"), fired);
    // A principal without a role reads no alert, and is refused one license ID's.
    assert!(low("nobody").is_empty());
    let (status, body) = server.get("/v1/alerts?license_id=V100", Some("nobody"));
    assert_eq!(status, 403, "{body}");
    let (status, _) = server.get("/v1/alerts?format=xml", Some("olga"));
    assert_eq!(status, 400);
    let (status, tsv) = server.get("/v1/alerts?license_id=V100&format=tsv", Some("rita"));
    assert_eq!(status, 200);
    assert!(tsv.starts_with("rule\tlicense_id\tkey_id"), "{tsv}");
}

/// `serve` (machine facts on disk, the default): the writer keeps no machine in memory, looks
/// them up on disk before deciding, and answers as the in-memory writer does, across a
/// restart (R9).
#[test]
fn a_writer_with_machine_facts_on_disk_answers_repeats_as_repeats_across_a_restart() {
    repeats_are_repeats_across_a_restart(&[]);
}

/// `serve --machine-facts memory`: the same answers from facts folded into memory.
#[test]
fn a_writer_with_machine_facts_in_memory_answers_repeats_as_repeats_across_a_restart() {
    repeats_are_repeats_across_a_restart(&["--machine-facts", "memory"]);
}

fn repeats_are_repeats_across_a_restart(flags: &[&str]) {
    let mut server = Server::start_with(3, flags);
    for machine in ["pc-1", "pc-2"] {
        assert_eq!(
            server.post("/v1/activations", None, &activation(machine)).0,
            200
        );
    }
    server.restart();
    let (status, text) = server.post("/v1/activations", None, &activation("pc-1"));
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(answer["status"], "already_active", "{text}");
    assert_eq!(answer["consumed"], 0, "{text}");
    let (status, text) = server.post("/v1/activations", None, &activation("pc-3"));
    assert_eq!(status, 200, "{text}");
    let third: Value = serde_json::from_str(&text).unwrap();
    let (status, text) = server.post("/v1/activations", None, &activation("pc-4"));
    assert_eq!(status, 422, "the limit of 3 holds: {text}");
    // Reports read the read models, which fold behind the writer: wait for the third one.
    server.wait_folded(third["seq"].as_u64().unwrap());
    let (_, report) = server.get("/v1/license-ids/V100/report", Some("olga"));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["keys"][0]["used"], 3);
}

/// A restarted server resumes its writer from the snapshot its clean stop wrote (no event
/// folded again), says so, and verifies the whole chain behind it: `/healthz` says `"chain":
/// "verified"` once the walk is done. Repeats stay repeats and the limit holds (R9).
#[test]
fn a_restarted_server_resumes_from_its_snapshot_and_verifies_the_chain_behind_it() {
    let mut server = Server::start(3);
    let mut seq = 0;
    for machine in ["pc-1", "pc-2"] {
        let (status, text) = server.post("/v1/activations", None, &activation(machine));
        assert_eq!(status, 200);
        // The head the stop's snapshot is taken at: the last acknowledged event (the
        // health's seq is the read models' and may still be folding it).
        seq = serde_json::from_str::<Value>(&text).unwrap()["seq"]
            .as_u64()
            .unwrap();
    }
    server.restart();
    let (status, health) = server.wait_health(|_, h| h["chain"] != "verifying");
    assert_eq!(
        (status, &health["chain"]),
        (200, &json!("verified")),
        "{health}"
    );
    let (_, text) = server.post("/v1/activations", None, &activation("pc-1"));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "already_active"
    );
    assert_eq!(
        server.post("/v1/activations", None, &activation("pc-3")).0,
        200
    );
    assert_eq!(
        server.post("/v1/activations", None, &activation("pc-4")).0,
        422
    );
    let said = server.stop();
    assert!(
        said.contains(&format!("the writer resumed at seq {seq}")),
        "{said}"
    );
    assert!(
        said.contains(&format!("the chain through seq {seq} verified")),
        "{said}"
    );
}

/// A snapshot whose books lie but whose chain hash is the log's passes the check a start
/// makes; the background check then finds that the fold of the log differs, and writes stop
/// (`/healthz` 503 `writer_stopped`, chain `failed`; an activation 503) rather than deciding
/// on a state the log does not hold.
#[test]
fn a_snapshot_that_lies_about_the_books_stops_writes_once_the_chain_check_catches_it() {
    use keyledger_core::books::KeyRecord;
    use keyledger_projections::snapshot;
    let mut server = Server::start(3);
    assert_eq!(
        server.post("/v1/activations", None, &activation("pc-1")).0,
        200
    );
    server.stop();
    let store = keyledger_ledger::Store::open(server.location.clone()).unwrap();
    let (seq, bytes) = store.snapshot_at_or_below(u64::MAX).unwrap().unwrap();
    let (mut p, chain) = snapshot::decode_bound(&bytes).unwrap();
    let key = p.books.keys.get_mut(keyledger_core::KeyId(1)).unwrap();
    key.terms_mut().used = 0;
    store
        .put_snapshot(seq, &snapshot::encode(&p, &chain))
        .unwrap();
    drop(store);
    server.start_again();
    let (status, health) = server.wait_health(|_, h| h["chain"] != "verifying");
    assert_eq!(status, 503, "{health}");
    assert_eq!(
        (&health["chain"], &health["status"]),
        (&json!("failed"), &json!("writer_stopped"))
    );
    let (status, text) = server.post("/v1/activations", None, &activation("pc-2"));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("writer_stopped"), "{text}");
}

/// `bench http --machine-prefix`: a second run with the first one's prefix activates the
/// same machines again, so every one of its requests is a repeat (R9: nothing consumed);
/// that is how re-activation latency is measured.
#[test]
fn a_load_run_with_an_earlier_prefix_re_activates_the_same_machines() {
    let server = Server::start(1_000);
    let against_server = [
        "bench",
        "http",
        "--url",
        &server.url,
        "--product-key",
        MAK,
        "--org",
        "contoso",
    ];
    let load = |prefix: &str| -> Value {
        let mut args = against_server.to_vec();
        args.extend([
            "--requests",
            "40",
            "--concurrency",
            "2",
            "--machine-prefix",
            prefix,
            "--json",
        ]);
        serde_json::from_str(&keyledger(&server.data, &args)).unwrap()
    };
    let used = || -> u64 {
        let (_, report) = server.get("/v1/license-ids/V100/report", Some("olga"));
        let report: Value = serde_json::from_str(&report).unwrap();
        report["keys"][0]["used"].as_u64().unwrap()
    };
    let before = used();
    let first = load("again");
    assert_eq!(
        (
            first["activated"].as_u64(),
            first["machine_prefix"].as_str()
        ),
        (Some(40), Some("again"))
    );
    // The report folds behind the writer: wait until it shows the load, at most 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while used() < before + 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(used(), before + 40);
    let second = load("again");
    assert_eq!(
        second["activated"], 40,
        "every repeat is answered 200: {second}"
    );
    assert_eq!(used(), before + 40, "repeats consume nothing");
    let bad = keyledger_command(&server.data)
        .args(against_server)
        .args(["--machine-prefix", "a\"b"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--machine-prefix"));
}
