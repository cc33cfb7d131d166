//! Statements through the real binary (docs/proofs.md, "Statements"): for every license ID
//! of seeded histories, `verify-statement` replays exactly the report `report --at-seq`
//! gives on the full ledger; every way of cheating fails naming what it found. On either
//! store (`KEYLEDGER_TEST_STORE=postgres`).

use crate::proofs::Ledger;

use serde_json::Value;

fn license_ids(ledger: &Ledger) -> Vec<String> {
    let log = ledger.ok(&["log", "--format", "jsonl"]);
    let mut ids: Vec<String> = log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|v| v["event"]["type"] == "license_id_registered")
        .map(|v| v["event"]["license_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `verify-statement`'s exit code and what it printed (stdout then stderr).
fn check(ledger: &Ledger, file: &str, pubkey: &str, format: &str) -> (i32, String, String) {
    let out = ledger.run(&[
        "verify-statement",
        file,
        "--pubkey",
        pubkey,
        "--format",
        format,
    ]);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_statement_replays_the_license_ids_report_at_its_checkpoint() {
    for seed in ["1", "7"] {
        let ledger = Ledger::demo_seeded(seed);
        let committed = ledger.ok(&["commit-streams"]);
        let seq: u64 = committed
            .split_whitespace()
            .nth(4)
            .and_then(|s| s.trim_end_matches(':').parse().ok())
            .unwrap_or_else(|| panic!("{committed}"));
        assert!(ledger.ok(&["verify"]).contains("streams ok: 1 commitments"));
        let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
        let ids = license_ids(&ledger);
        assert!(ids.len() >= 3, "{ids:?}");
        // A checkpoint kept earlier names the commitment a statement is made against; one
        // that does not sit at a commitment is refused, saying so.
        let at = seq.to_string();
        ledger.ok(&["checkpoint", "--size", &at, "--out", "at.txt"]);
        ledger.ok(&[
            "statement",
            "--license-id",
            &ids[0],
            "--checkpoint",
            "at.txt",
            "--out",
            "kept.json",
        ]);
        let kept: Value =
            serde_json::from_str(&std::fs::read_to_string(ledger.file("kept.json")).unwrap())
                .unwrap();
        assert_eq!(
            kept["checkpoint"],
            std::fs::read_to_string(ledger.file("at.txt")).unwrap()
        );
        ledger.ok(&[
            "checkpoint",
            "--size",
            &(seq - 1).to_string(),
            "--out",
            "before.txt",
        ]);
        let out = ledger.run(&[
            "statement",
            "--license-id",
            &ids[0],
            "--checkpoint",
            "before.txt",
        ]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && said.contains(&format!("seq {} is not a streams commitment", seq - 1)),
            "{said}"
        );
        for id in &ids {
            let file = format!("{id}.json");
            ledger.ok(&["statement", "--license-id", id, "--out", &file]);
            let text = std::fs::read_to_string(ledger.file(&file)).unwrap();
            assert!(!text.contains("-----"), "no key text");
            let (code, replayed, said) = check(&ledger, &file, &pubkey, "json");
            assert_eq!(code, 0, "{id}: {said}");
            assert!(
                said.contains(&format!("complete through seq {}", seq - 1)),
                "{said}"
            );
            let full = ledger.ok(&[
                "report",
                "--license-id",
                id,
                "--at-seq",
                &seq.to_string(),
                "--format",
                "json",
            ]);
            assert_eq!(replayed, full, "seed {seed}, {id}: the statement's report");
        }
    }
}

/// A statement, edited by `cheat`, fails with a message containing `named`.
fn refused(ledger: &Ledger, pubkey: &str, statement: &Value, cheat: &str, named: &str) {
    std::fs::write(ledger.file("cheat.json"), statement.to_string()).unwrap();
    let (code, out, said) = check(ledger, "cheat.json", pubkey, "table");
    assert_eq!(code, 1, "{cheat}: accepted\n{out}");
    assert!(said.contains(named), "{cheat}: {said}");
}

#[test]
fn each_way_of_cheating_a_statement_fails_and_names_it() {
    let ledger = Ledger::demo();
    let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
    let ids = license_ids(&ledger);
    ledger.ok(&["commit-streams"]);
    let load = |file: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(ledger.file(file)).unwrap()).unwrap()
    };
    ledger.ok(&["statement", "--license-id", &ids[0], "--out", "old.json"]);
    ledger.ok(&["statement", "--license-id", &ids[1], "--out", "other.json"]);
    // The log grows in the license ID's own stream and is committed again.
    let grow = format!(
        r#"{{"type":"assign_role","at":"2027-01-04T09:00:00Z","actor":"olga","principal":"pete","license_id":"{}","role":"key_viewer"}}"#,
        ids[0]
    );
    std::fs::write(ledger.file("grow.jsonl"), grow).unwrap();
    assert!(ledger.ok(&["apply", "grow.jsonl"]).contains("\"ok\":true"));
    ledger.ok(&["commit-streams"]);
    ledger.ok(&["statement", "--license-id", &ids[0], "--out", "s.json"]);
    let good = load("s.json");
    assert_eq!(check(&ledger, "s.json", &pubkey, "table").0, 0);
    let events = good["events"].as_array().unwrap().clone();
    assert!(events.len() > 4);

    let mut dropped = good.clone();
    dropped["events"].as_array_mut().unwrap().remove(3);
    refused(
        &ledger,
        &pubkey,
        &dropped,
        "an event dropped",
        "not in the checkpoint's tree",
    );

    let mut added = good.clone();
    let foreign = load("other.json")["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "key_issued")
        .unwrap()
        .clone();
    let list = added["events"].as_array_mut().unwrap();
    let at = list.partition_point(|e| e["seq"].as_u64() < foreign["seq"].as_u64());
    list.insert(at, foreign);
    refused(
        &ledger,
        &pubkey,
        &added,
        "another license ID's event added",
        "not in the checkpoint's tree",
    );

    let mut swapped = good.clone();
    swapped["events"].as_array_mut().unwrap().swap(1, 2);
    refused(
        &ledger,
        &pubkey,
        &swapped,
        "two events swapped",
        "out of order",
    );

    let mut old_entry = good.clone();
    old_entry["streams"] = load("old.json")["streams"].clone();
    refused(
        &ledger,
        &pubkey,
        &old_entry,
        "an older commitment's entries",
        "not in the commitment's streams tree",
    );

    let mut old_commitment = good.clone();
    old_commitment["commitment"] = load("old.json")["commitment"].clone();
    refused(
        &ledger,
        &pubkey,
        &old_commitment,
        "an older commitment with a newer checkpoint",
        "a statement's checkpoint sits at its commitment",
    );

    let mut edited = good.clone();
    edited["events"][0]["event"]["actor"] = Value::from("mallory");
    refused(
        &ledger,
        &pubkey,
        &edited,
        "an edited field",
        "does not say what `record` says",
    );

    let mut padded = good.clone();
    let entries = padded["streams"].as_array_mut().unwrap();
    entries.pop();
    refused(
        &ledger,
        &pubkey,
        &padded,
        "a stream left out",
        "5 entries and the proof do not make the root",
    );

    let mut forged = good.clone();
    let note = good["checkpoint"].as_str().unwrap();
    let (body, signature) = note.trim_end().rsplit_once(' ').unwrap();
    let mut bytes: Vec<char> = signature.chars().collect();
    bytes[10] = if bytes[10] == 'A' { 'B' } else { 'A' };
    forged["checkpoint"] = Value::from(format!("{body} {}\n", bytes.iter().collect::<String>()));
    refused(
        &ledger,
        &pubkey,
        &forged,
        "a wrong signature",
        "checkpoint:",
    );
}

#[test]
fn the_service_serves_statements_under_the_read_rule() {
    let server = crate::support::Server::start(5);
    let (status, text) = server.get("/v1/statements/V100", Some("vic"));
    assert_eq!(status, 200, "{text}");
    let statement: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(statement["license_id"], "V100");
    assert!(!text.contains(crate::support::MAK), "no key text");
    let file = server.dir.path().join("statement.json");
    std::fs::write(&file, &text).unwrap();
    let pubkey = crate::support::keyledger(&server.data, &["pubkey"]);
    let out = crate::support::keyledger_command(&server.data)
        .args([
            "verify-statement",
            file.to_str().unwrap(),
            "--pubkey",
            pubkey.trim(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("License ID V100"), "{report}");
    let (status, text) = server.get("/v1/statements/V100", Some("nobody"));
    let code = serde_json::from_str::<Value>(&text).unwrap()["code"].clone();
    assert_eq!((status, code), (403, Value::from("forbidden")), "{text}");
    let (status, _) = server.get("/v1/statements/V100", None);
    assert_eq!(status, 401);
    // Statements are made one at a time: asked for at once, each is made or is a 429 with
    // when to ask again, never a failure.
    let answers: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    server.get_with_header("/v1/statements/V100", Some("vic"), "retry-after")
                })
            })
            .collect();
        asks.into_iter().map(|ask| ask.join().unwrap()).collect()
    });
    assert!(answers.iter().any(|(status, ..)| *status == 200));
    for (status, retry_after, body) in &answers {
        match status {
            200 => assert!(body.contains("\"license_id\":\"V100\"")),
            429 => {
                let code = serde_json::from_str::<Value>(body).unwrap()["code"].clone();
                assert_eq!(
                    (code, retry_after.as_deref()),
                    (Value::from("throttled"), Some("1"))
                );
            }
            other => panic!("{other}: {body}"),
        }
    }
}
