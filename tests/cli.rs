//! The `keyledger` binary, end to end: every subcommand run as a user would, on a temporary
//! directory, asserting on its output, its exit code and what the ledger holds afterwards.
//! Golden report files lock the table, TSV and JSON formats of a fixed demo.
//!
//! The ledger is a redb file, or with `KEYLEDGER_TEST_STORE=postgres` a fresh PostgreSQL
//! database (`support::pg`): every subcommand is run on both stores by `scripts/test`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use support::{pg, skip_unless_redb};

struct Ledger {
    dir: tempfile::TempDir,
    database: Option<pg::Database>,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            dir: tempfile::tempdir().unwrap(),
            database: pg::on_postgres().then(pg::Database::create),
        }
    }

    /// The `--data` value: the redb file's path, or the database's URL.
    fn path(&self) -> PathBuf {
        match &self.database {
            Some(database) => PathBuf::from(database.url()),
            None => self.dir.path().join("ledger.redb"),
        }
    }

    fn location(&self) -> keyledger_ledger::Location {
        keyledger_ledger::Location::parse(self.path().to_str().unwrap()).unwrap()
    }

    /// The binary on this ledger (with its signing key's variable on PostgreSQL).
    fn command(&self) -> Command {
        let mut command = support::keyledger_command(&self.path());
        command.current_dir(self.dir.path());
        command
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = self.command();
        command.args(args);
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs and expects exit code 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// `keys --license-id V100 --as WHO --out WHO.tsv`; answers the file's bytes.
    fn keys_of_v100_as(&self, who: &str) -> Vec<u8> {
        let out = format!("{who}.tsv");
        self.ok(&["keys", "--license-id", "V100", "--as", who, "--out", &out]);
        std::fs::read(self.file(&out)).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn head_seq(&self) -> u64 {
        let store = keyledger_ledger::Store::open(self.location()).unwrap();
        store.head().unwrap().seq
    }
}

/// The stdout of a run of `args` that must have succeeded (its stderr says why not).
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn answers(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const AT: &str = "2026-02-01T10:00:00Z";
const MAK: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";

/// A small catalog as JSON Lines: one org, a Select license ID, a product, a MAK of 2.
fn catalog_lines() -> Vec<Value> {
    vec![
        json!({"type": "register_org", "at": AT, "actor": "olga", "org": "contoso", "name": "Contoso"}),
        json!({"type": "register_license_id", "at": AT, "actor": "olga", "license_id": "V100", "org": "contoso",
               "program": "select", "agreement_number": "S-1"}),
        json!({"type": "register_product", "at": AT, "actor": "olga", "product": "win11-pro", "name": "Windows 11 Pro",
               "family": "windows_client", "version": "11", "edition": "pro", "key_requirement": "vl_key"}),
        json!({"type": "issue_key", "at": AT, "actor": "olga", "license_id": "V100", "product": "win11-pro",
               "kind": "mak", "limit": 2, "product_key": MAK}),
        json!({"type": "assign_role", "at": AT, "actor": "olga", "principal": "rita", "license_id": "V100",
               "role": "product_key_reader"}),
        json!({"type": "assign_role", "at": AT, "actor": "olga", "principal": "vic", "license_id": "V100",
               "role": "key_viewer"}),
    ]
}

fn jsonl(values: &[Value]) -> String {
    values.iter().map(|v| v.to_string() + "\n").collect()
}

fn activation(machine: &str) -> Value {
    json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK, "org": "contoso",
           "method": "online", "machines": [machine]})
}

fn initialized() -> Ledger {
    let ledger = Ledger::new();
    ledger.ok(&["init", "--operator", "olga", "--at", "2026-01-01T00:00:00Z"]);
    std::fs::write(ledger.file("catalog.jsonl"), jsonl(&catalog_lines())).unwrap();
    let out = ledger.ok(&["apply", "catalog.jsonl"]);
    assert_eq!(out.lines().count(), 6);
    ledger
}

/// Issue 15: the stores keep the same bytes. The same commands applied to a redb file and to
/// a PostgreSQL database give byte-identical exports (same head hash) and checkpoints with
/// the same tree root; `copy` each way keeps them so. Runs in the PostgreSQL pass only.
#[test]
fn the_same_commands_give_the_same_log_on_both_stores() {
    if !pg::on_postgres() {
        eprintln!("PostgreSQL only: run with KEYLEDGER_TEST_STORE=postgres (scripts/test)");
        return;
    }
    let on_pg = initialized();
    let on_redb = Ledger {
        dir: tempfile::tempdir().unwrap(),
        database: None,
    };
    on_redb.ok(&["init", "--operator", "olga", "--at", "2026-01-01T00:00:00Z"]);
    std::fs::write(on_redb.file("catalog.jsonl"), jsonl(&catalog_lines())).unwrap();
    on_redb.ok(&["apply", "catalog.jsonl"]);
    let more = jsonl(&[activation("pc-1"), activation("pc-2"), activation("pc-3")]);
    for ledger in [&on_pg, &on_redb] {
        std::fs::write(ledger.file("more.jsonl"), &more).unwrap();
        let out = ledger.run(&["apply", "more.jsonl"]);
        assert_eq!(answers(&out)[2]["code"], "insufficient_activations");
        ledger.ok(&["export", "--out", "log.jsonl"]);
    }
    let exported = |l: &Ledger| std::fs::read(l.file("log.jsonl")).unwrap();
    assert_eq!(exported(&on_pg), exported(&on_redb));
    let root = |l: &Ledger| {
        l.ok(&["checkpoint"])
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(root(&on_pg), root(&on_redb), "origin, size and root");
    // Copied back to a file, the PostgreSQL ledger is the redb one again.
    let back = on_pg.file("back.redb");
    let copied = on_pg.ok(&[
        "copy",
        "--from",
        on_pg.path().to_str().unwrap(),
        "--to",
        back.to_str().unwrap(),
    ]);
    assert!(copied.contains("both verify"), "{copied}");
    let back_store = keyledger_ledger::Store::open(&back).unwrap();
    let original = keyledger_ledger::Store::open(on_redb.location()).unwrap();
    assert_eq!(back_store.head().unwrap(), original.head().unwrap());
}

#[test]
fn demo_then_report_then_verify() {
    let ledger = Ledger::new();
    let out = ledger.ok(&["demo", "--machines", "25000", "--seed", "3"]);
    assert!(out.contains("Try next:"), "{out}");
    let report = ledger.json(&["report", "--license-id", "V3000003", "--format", "json"]);
    let big = &report["keys"][0];
    assert_eq!(
        (big["used"].as_u64(), big["total"].as_u64()),
        (Some(25_000), Some(25_000))
    );
    assert_eq!(big["refusals"]["insufficient_activations"], 1);
    assert_eq!(
        report["keys"][3]["kms_hosts"], 6,
        "R13: the seventh host was refused"
    );
    assert_eq!(report["keys"][6]["osa_status"], "active");
    assert_eq!(report["keys"][7]["osa_status"], "pending");
    let verified = ledger.ok(&["verify"]);
    assert!(verified.starts_with("chain ok: "), "{verified}");
    assert!(verified.contains("snapshot ok: "), "{verified}");
    let again = ledger.run(&["demo"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn apply_answers_every_line_in_order_and_appends_nothing_for_malformed_lines() {
    let ledger = initialized();
    let head = ledger.head_seq();
    let lines = [
        activation("pc-1").to_string(),
        r#"{"type": "activate", "at": "2026-02-01T10:00:00Z", "actor": "vamt"}"#.to_owned(),
        activation("pc-2").to_string(),
        "not json at all".to_owned(),
        activation("pc-3").to_string(),
        json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": "BCDFG-HJKMP-QRTVW-XY234-6789A",
               "org": "contoso", "method": "online", "machines": ["pc-4"]}).to_string(),
    ];
    std::fs::write(ledger.file("mixed.jsonl"), lines.join("\n")).unwrap();
    let out = ledger.run(&["apply", "mixed.jsonl"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "malformed lines make the exit code 1"
    );
    let answers = answers(&out);
    assert_eq!(answers.len(), 6);
    assert_eq!(answers[0]["status"], "activated");
    assert_eq!(
        (answers[1]["code"].as_str(), answers[1]["line"].as_u64()),
        (Some("malformed"), Some(2))
    );
    assert_eq!(answers[1]["field"], "product_key");
    assert_eq!(answers[2]["remaining"], 0);
    assert_eq!(
        (answers[3]["code"].as_str(), answers[3]["line"].as_u64()),
        (Some("malformed"), Some(4))
    );
    assert_eq!(
        answers[4]["code"], "insufficient_activations",
        "a refusal is an answer"
    );
    assert_eq!(answers[4]["seq"], head + 3, "R10: recorded");
    assert_eq!(answers[5]["field"], "product_key");
    assert!(answers[5]["message"]
        .as_str()
        .unwrap()
        .contains("position 29"));
    assert_eq!(
        ledger.head_seq(),
        head + 3,
        "two activations and one recorded refusal"
    );
}

#[test]
fn apply_reads_standard_input_and_atomic_files_are_all_or_nothing() {
    let ledger = initialized();
    let head = ledger.head_seq();
    let out = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[activation("pc-1")])));
    assert!(out.status.success());
    assert_eq!(answers(&out)[0]["seq"], head + 1);
    let three = jsonl(&[activation("pc-2"), activation("pc-3"), activation("pc-4")]);
    std::fs::write(ledger.file("three.jsonl"), &three).unwrap();
    let out = ledger.run(&["apply", "--atomic", "three.jsonl"]);
    let refused = answers(&out);
    assert_eq!(refused[1]["code"], "insufficient_activations");
    assert_eq!(refused[0]["code"], "atomic_batch_refused");
    assert_eq!(
        ledger.head_seq(),
        head + 1,
        "nothing of the atomic file was appended"
    );
    std::fs::write(
        ledger.file("bad.jsonl"),
        format!("{}\n{{oops\n", activation("pc-2")),
    )
    .unwrap();
    let out = ledger.run(&["apply", "--atomic", "bad.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing was applied"));
    assert_eq!(ledger.head_seq(), head + 1);
}

#[test]
fn keys_export_shows_text_to_a_reader_records_the_disclosure_and_masks_for_others() {
    let ledger = initialized();
    let head = ledger.head_seq();
    let file = ledger.keys_of_v100_as("rita");
    let text = String::from_utf8(file.clone()).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "License ID\tParent program\tOrganization name\tProduct\tProduct key\tKey type\tActivations or seats\tOSA status"
    );
    assert_eq!(
        text.lines().nth(1).unwrap(),
        format!("V100\tselect\tContoso\tWindows 11 Pro\t{MAK}\tmak\t0/2\tn/a")
    );
    assert_eq!(
        ledger.head_seq(),
        head + 1,
        "R1: the disclosure is an event"
    );
    let log = ledger.ok(&[
        "log",
        "--from",
        &(head + 1).to_string(),
        "--format",
        "jsonl",
    ]);
    let event: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(event["event"]["type"], "keys_disclosed");
    assert_eq!(event["event"]["actor"], "rita");
    assert_eq!(
        event["event"]["export_digest"],
        blake3::hash(&file).to_hex().as_str(),
        "R2: the file's digest"
    );
    let report = ledger.json(&["report", "--license-id", "V100", "--format", "json"]);
    assert_eq!(report["disclosures"][0]["actor"], "rita");
    assert_eq!(report["disclosures"][0]["channel"], "export");
    assert_eq!(
        report["disclosures"][0]["export_digest"],
        blake3::hash(&file).to_hex().as_str()
    );
    assert_eq!(
        report["may_see_key_text"],
        json!([{"principal": "rita", "roles": ["product_key_reader"]}])
    );
    let masked = ledger.ok(&["keys", "--all", "--as", "vic"]);
    assert!(
        masked.contains("*****-*****-*****-*****-6789B") && !masked.contains(MAK),
        "{masked}"
    );
    let outsider = ledger.ok(&["keys", "--all", "--as", "mallory"]);
    assert_eq!(outsider.lines().count(), 1, "only the header: {outsider}");
    assert_eq!(
        ledger.head_seq(),
        head + 1,
        "masked exports disclose nothing"
    );
}

/// Issue 19, item 5: after `retire_key_text` the key's text is masked even for a reader,
/// no disclosure is recorded for it, and `verify` says the text is gone by retirement.
#[test]
fn a_retired_key_text_is_masked_for_everyone_and_verify_counts_it() {
    let ledger = initialized();
    let line = json!({"type": "retire_key_text", "at": AT, "actor": "olga", "key_id": 1,
                      "reason": "posted publicly"});
    let out = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[line])));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(answers(&out)[0]["ok"], true);
    let verified = ledger.ok(&["verify"]);
    assert!(
        verified
            .contains("secrets ok: 0 key texts match their issued fingerprints; 1 retired (gone)"),
        "{verified}"
    );
    let head = ledger.head_seq();
    let text = String::from_utf8(ledger.keys_of_v100_as("rita")).unwrap();
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "V100\tselect\tContoso\tWindows 11 Pro\t*****-*****-*****-*****-6789B\tmak\t0/2\tn/a"
    );
    assert_eq!(
        ledger.head_seq(),
        head,
        "nothing disclosed, nothing recorded"
    );
    let again = ledger.run_with_stdin(
        &["apply", "-"],
        Some(&jsonl(&[json!({
        "type": "retire_key_text", "at": AT, "actor": "olga", "key_id": 1, "reason": "again"})])),
    );
    assert_eq!(answers(&again)[0]["code"], "key_text_retired");
}

/// Whether `needle` occurs anywhere in the file's bytes.
fn bytes_hold(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// F7: a retired key's text stays in the redb file's freed copy-on-write pages until
/// `compact` rewrites the file; after it the text is in no byte of the ledger's files, and
/// the ledger verifies with the same head and history.
#[test]
fn f7_compact_removes_retired_key_text_from_the_files_bytes() {
    if skip_unless_redb("compact") {
        return;
    }
    let ledger = Ledger::new();
    ledger.ok(&["demo", "--machines", "100"]);
    // A freshly written file, as after a copy or an earlier compaction: whether redb reuses
    // a freed page at once depends on the file's history, and in this one it does not.
    ledger.ok(&["compact"]);
    let path = ledger.path();
    // Key 1's text, found in the file by its last five characters (the log shows those).
    let log = ledger.ok(&["log", "--format", "jsonl"]);
    let last5 = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"]["type"] == "key_issued" && e["event"]["key_id"] == 1)
        .map(|e| e["event"]["last5"].as_str().unwrap().to_owned())
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes
        .windows(6)
        .position(|w| w == format!("-{last5}").as_bytes())
        .expect("the key text is in the file")
        + 6;
    let text = String::from_utf8(bytes[end - 29..end].to_vec()).unwrap();
    let line = json!({"type": "retire_key_text", "at": "2026-11-01T00:00:00Z", "actor": "olga",
                      "key_id": 1, "reason": "posted publicly"});
    let out = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[line])));
    assert_eq!(answers(&out)[0]["ok"], true, "{}", stderr(&out));
    let head = ledger.head_seq();
    assert!(
        bytes_hold(&path, &text),
        "a freed page still holds the text"
    );
    let said = ledger.ok(&["compact"]);
    assert!(said.starts_with("compacted "), "{said}");
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let file = entry.unwrap().path();
        assert!(
            !bytes_hold(&file, &text),
            "{} holds the retired text",
            file.display()
        );
    }
    assert_eq!(ledger.head_seq(), head);
    let verified = ledger.ok(&["verify"]);
    assert!(
        verified.contains("13 key texts match their issued fingerprints; 1 retired (gone)"),
        "{verified}"
    );
    // The ledger goes on after the swap: its next command is decided on the same state.
    let again = json!({"type": "retire_key_text", "at": "2026-11-01T00:00:00Z",
                       "actor": "olga", "key_id": 1, "reason": "again"});
    let out = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[again])));
    assert_eq!(answers(&out)[0]["code"], "key_text_retired");
}

#[test]
fn export_then_verify_export_and_an_edited_line_fails() {
    let ledger = initialized();
    ledger.ok(&["export", "--out", "log.jsonl"]);
    let verified = ledger.ok(&["verify-export", "log.jsonl"]);
    assert!(verified.starts_with("export ok: 7 events"), "{verified}");
    let text = std::fs::read_to_string(ledger.file("log.jsonl")).unwrap();
    assert!(!text.contains(MAK), "exports never hold key text");
    let edited = text.replacen("\"limit\":2", "\"limit\":2000", 1);
    assert_ne!(edited, text);
    std::fs::write(ledger.file("edited.jsonl"), edited).unwrap();
    let out = ledger.run(&["verify-export", "edited.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 5: event of seq 5 differs from its record"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn import_keys_round_trips_a_keys_export() {
    let source = initialized();
    source.ok(&[
        "keys",
        "--license-id",
        "V100",
        "--as",
        "rita",
        "--out",
        "keys.tsv",
    ]);
    let target = Ledger::new();
    target.ok(&["init", "--operator", "olga", "--at", "2026-01-01T00:00:00Z"]);
    let catalog: Vec<Value> = catalog_lines()
        .into_iter()
        .filter(|l| l["type"] != "issue_key")
        .collect();
    std::fs::write(target.file("catalog.jsonl"), jsonl(&catalog)).unwrap();
    target.ok(&["apply", "catalog.jsonl"]);
    let tsv = source.file("keys.tsv");
    let out = target.ok(&["import-keys", tsv.to_str().unwrap(), "--as", "olga"]);
    assert_eq!(out.trim(), "imported 1 keys; 0 refused; 0 unreadable rows");
    let report = target.json(&["report", "--license-id", "V100", "--format", "json"]);
    assert_eq!(report["keys"][0]["key"], "*****-*****-*****-*****-6789B");
    assert_eq!(report["keys"][0]["total"], 2);
    let again = target.run(&["import-keys", tsv.to_str().unwrap(), "--as", "olga"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("line 2: refused already_exists"),
        "{}",
        stderr(&again)
    );
    let masked = source.ok(&["keys", "--all", "--as", "vic"]);
    std::fs::write(target.file("masked.tsv"), masked).unwrap();
    let out = target.run(&["import-keys", "masked.tsv", "--as", "olga", "--atomic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2: Product key is masked"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_of_a_tampered_database_exits_1_naming_the_seq() {
    let ledger = initialized();
    {
        let store = keyledger_ledger::Store::open(ledger.location()).unwrap();
        let keys = store.block_keys().unwrap();
        let mut bytes = None;
        store
            .for_each_block(keys[1], |_, b| {
                bytes = Some(b.to_vec());
                Ok(std::ops::ControlFlow::Break(()))
            })
            .unwrap();
        let mut bytes = bytes.unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        store.tamper_block(keys[1], Some(&bytes)).unwrap();
    }
    let out = ledger.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("FAILED at seq 2: chain hash mismatch in the block of seqs 2..="),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_report_as_of_a_time_before_the_snapshot_ignores_later_events() {
    let ledger = Ledger::new();
    ledger.ok(&["demo", "--machines", "100"]);
    let early = ledger.json(&[
        "report",
        "--license-id",
        "V3000003",
        "--as-of",
        "2026-01-06T00:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(early["keys"][0]["used"], 0, "the rollout came later");
    let late = ledger.json(&["report", "--license-id", "V3000003", "--format", "json"]);
    assert_eq!(late["keys"][0]["used"], 100);
    let at_seq = ledger.json(&[
        "report",
        "--license-id",
        "V1000001",
        "--at-seq",
        "60",
        "--format",
        "json",
    ]);
    assert_eq!(at_seq["at_seq"], 60);
    let past = ledger.run(&["report", "--license-id", "V1000001", "--at-seq", "99999"]);
    assert_eq!(past.status.code(), Some(2));
}

#[test]
fn log_filters_by_license_id_and_key_and_forecast_names_exhaustion() {
    let ledger = Ledger::new();
    ledger.ok(&["demo", "--machines", "100"]);
    let log = ledger.ok(&["log", "--key", "1", "--format", "jsonl"]);
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() > 5);
    assert!(events
        .iter()
        .all(|e| e["event"]["key_id"] == 1 || e["event"]["type"] == "request_granted"));
    let forecast: Value = ledger.json(&[
        "forecast",
        "--format",
        "json",
        "--at",
        "2026-01-07T12:00:00Z",
        "--window-days",
        "2",
    ]);
    let first = forecast
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key_id"] == 1)
        .unwrap();
    assert_eq!(
        first["rate_per_day"], 25.0,
        "50 activations over the two-day window"
    );
    let unknown = ledger.run(&["log", "--license-id", "V-NOPE"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no license ID V-NOPE"));
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden {}", path.display()));
    assert_eq!(
        actual, expected,
        "report format changed: update tests/golden/{name} and docs/api.md together"
    );
}

#[test]
fn golden_reports_of_the_seeded_demo() {
    let ledger = Ledger::new();
    ledger.ok(&["demo", "--machines", "30000", "--seed", "11"]);
    for license in ["V1000001", "V3000003", "V4000004"] {
        for format in ["table", "tsv", "json"] {
            let out = ledger.ok(&[
                "report",
                "--license-id",
                license,
                "--as-of",
                "2026-12-31T00:00:00Z",
                "--format",
                format,
            ]);
            golden(&format!("{license}.{format}"), &out);
        }
    }
    // Issue 19: usage over time and the roll-up, then an outside count beside the ledger's.
    for format in ["table", "tsv", "json"] {
        let usage = ledger.ok(&[
            "usage",
            "--license-id",
            "V3000003",
            "--by",
            "month",
            "--format",
            format,
        ]);
        golden(&format!("usage-V3000003-month.{format}"), &usage);
    }
    // Machine history: an activation, a refusal that named it, a repeat while active.
    for format in ["table", "tsv", "json"] {
        for machine in ["ol-pc-0000000", "ol-pc-0000050", "kms-01"] {
            let history = ledger.ok(&["machine", machine, "--format", format]);
            golden(&format!("machine-{machine}.{format}"), &history);
        }
    }
    let page = ledger.ok(&[
        "machines", "--key", "1", "--method", "proxy", "--format", "tsv",
    ]);
    golden("machines-key-1-proxy.tsv", &page);
    // TSV stays rows only; where the next page starts is said on stderr.
    let first = ledger.run(&["machines", "--key", "1", "--limit", "5", "--format", "tsv"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = String::from_utf8(first.stdout.clone()).unwrap();
    let last_seq = rows.lines().last().unwrap().split('\t').nth(1).unwrap();
    // A page ends at an event boundary: five rows, or more when an event holds more.
    assert!(rows.lines().count() > 5, "{rows}");
    assert_eq!(stderr(&first).trim(), format!("more: --after {last_seq}"));
    // A time range: found by bisecting the key's history (business time only grows).
    let day = ledger.ok(&[
        "machines",
        "--key",
        "1",
        "--from",
        "2026-01-07T00:00:00Z",
        "--to",
        "2026-01-08T00:00:00Z",
        "--format",
        "tsv",
    ]);
    let seqs: Vec<&str> = day
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(seqs.len(), 48, "{day}");
    assert!(seqs.iter().all(|s| *s == "66"), "{day}");
    let record = json!({"type": "record_external_count", "at": "2026-11-01T00:00:00Z",
        "actor": "olga", "key_id": 1, "source": "microsoft-activation-service", "remaining": 5,
        "observed_at": "2026-10-31T09:00:00Z", "note": "VAMT refresh remaining count"});
    let answer = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[record])));
    assert_eq!(answers(&answer)[0]["ok"], true, "{}", stderr(&answer));
    for (by, format) in [
        ("product", "table"),
        ("product", "json"),
        ("license-id", "tsv"),
    ] {
        let summary = ledger.ok(&[
            "summary",
            "--org",
            "contoso",
            "--by",
            by,
            "--as-of",
            "2026-12-31T00:00:00Z",
            "--format",
            format,
        ]);
        golden(&format!("summary-contoso-{by}.{format}"), &summary);
    }
    // Issue 18: alerts at a moment when ESU coverage changes hands within 30 days.
    for format in ["table", "json"] {
        let alerts = ledger.ok(&[
            "alerts",
            "--as-of",
            "2026-10-01T00:00:00Z",
            "--format",
            format,
        ]);
        golden(&format!("alerts-2026-10-01.{format}"), &alerts);
    }
    let wider = ledger.ok(&[
        "alerts",
        "--license-id",
        "V3000003",
        "--as-of",
        "2026-10-01T00:00:00Z",
        "--coverage-days",
        "11",
        "--format",
        "tsv",
    ]);
    let rules: Vec<&str> = wider
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert!(
        !rules.contains(&"esu_coverage_starting"),
        "12 days ahead is past 11: {wider}"
    );
    assert!(wider
        .lines()
        .skip(1)
        .all(|l| l.split('\t').nth(1) == Some("V3000003")));
}

/// A bench run; each on a ledger of its own (on PostgreSQL, `bench` needs an empty database).
fn bench_plan(seed: &str, extra: &[&str]) -> Value {
    let ledger = Ledger::new();
    let mut args = vec![
        "bench", "--preset", "small", "--events", "3000", "--seed", seed, "--json",
    ];
    args.extend_from_slice(extra);
    ledger.json(&args)
}

#[test]
fn the_bench_workload_is_deterministic_for_a_seed() {
    let a = bench_plan("5", &[]);
    let b = bench_plan("5", &[]);
    let c = bench_plan("6", &[]);
    assert_eq!(a["head_hash"], b["head_hash"], "same seed, same log");
    assert_eq!(a["head_seq"], b["head_seq"]);
    assert_ne!(a["head_hash"], c["head_hash"], "another seed, another log");
}

#[test]
fn the_small_bench_plan_has_every_documented_field_within_bounds() {
    let ledger = Ledger::new();
    let svg = ledger.file("bench.svg");
    let plan = bench_plan("1", &["--svg", svg.to_str().unwrap()]);
    let positive = [
        "events_per_second",
        "commit_latency_ms_p50",
        "commit_latency_ms_p99",
        "bytes_per_event",
        "replay_verify_events_per_second",
        "projection_rebuild_seconds",
        "projection_fold_events_per_second",
        "growth_gb_per_year",
        "headroom_x",
        "replay_one_year_seconds",
        "seconds",
    ];
    for field in positive {
        let value = plan[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing: {plan}"));
        assert!(value > 0.0 && value.is_finite(), "{field} = {value}");
    }
    assert!(plan["events"].as_u64().unwrap() >= 3000);
    assert!(plan["commit_latency_ms_p99"].as_f64() >= plan["commit_latency_ms_p50"].as_f64());
    let bytes = plan["bytes_per_event"].as_f64().unwrap();
    assert!(
        bytes < 2000.0,
        "bytes per event {bytes} within the stated bound"
    );
    assert!(plan["peak_rss_bytes"].as_u64().unwrap() > 1_000_000);
    // Memory and disk (R9's machines are what grows): per key, per machine, and how long.
    let r = &plan["resources"];
    assert!(r["rss_bytes_per_key"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(
        r["rss_bytes_per_machine"].as_f64().unwrap().is_finite(),
        "{r}"
    );
    assert!(
        r["filter_bytes"].as_u64().unwrap() > 0,
        "machine facts on disk: {r}"
    );
    let bound = r["page_cache_bound_bytes"].as_u64().unwrap();
    assert!(r["page_cache_bytes"].as_u64().unwrap() <= bound, "{r}");
    assert!(r["memory_total_bytes"].as_u64().unwrap() > 1 << 30, "{r}");
    if pg::on_postgres() {
        // The database's server holds the cache and the disk.
        assert_eq!(bound, 0);
        assert!(
            r["disk_free_bytes"].is_null() && r["disk_full_days"].is_null(),
            "{r}"
        );
    } else {
        assert_eq!(bound, 256 << 20, "the default --cache-mib");
        assert!(r["disk_free_bytes"].as_u64().unwrap() > 0, "{r}");
        assert!(r["disk_full_days"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(r["memory_full_days"].is_null() || r["memory_full_days"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["shape"]["preset"], "small");
    assert!(!plan["timeline"].as_array().unwrap().is_empty());
    let drawing = std::fs::read_to_string(svg).unwrap();
    assert!(
        drawing.starts_with("<svg") && drawing.contains("events per second"),
        "{}",
        &drawing[..200]
    );
}

#[test]
fn forecast_draws_an_svg_of_consumption_and_exhaustion() {
    let ledger = Ledger::new();
    ledger.ok(&["demo", "--machines", "100"]);
    ledger.ok(&[
        "forecast",
        "--svg",
        "forecast.svg",
        "--at",
        "2026-01-07T12:00:00Z",
    ]);
    let drawing = std::fs::read_to_string(ledger.file("forecast.svg")).unwrap();
    assert!(drawing.starts_with("<svg"));
    assert!(
        drawing.contains("key 1 win11-pro"),
        "the legend names the keys"
    );
    // Each key's limit (R9) is a faint horizontal line: a polyline of two points at one
    // height, drawn at half opacity.
    let keys = drawing
        .split('>')
        .filter(|text| text.trim_start().starts_with("key "))
        .count();
    let limits = drawing
        .split("<polyline")
        .skip(1)
        .filter(|line| line.contains(r#"opacity="0.5""#))
        .filter(|line| {
            let points = line
                .split(r#"points=""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let ys: Vec<&str> = points
                .split(' ')
                .filter_map(|p| p.split(',').nth(1))
                .collect();
            ys.len() == 2 && ys[0] == ys[1]
        })
        .count();
    assert!(
        keys > 0 && limits == keys,
        "{limits} limit lines for {keys} keys"
    );
    let bad = ledger.run(&["bench", "--preset", "huge"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("expected small, medium or large"));
}

/// `bench --keep` writes its ledger at `--data` and leaves it there, a whole ledger that
/// verifies (to time a start of `serve` on it); it never writes over one that exists.
#[test]
fn bench_keep_leaves_a_ledger_that_verifies_and_never_overwrites_one() {
    if skip_unless_redb("--keep writes a redb file") {
        return;
    }
    let ledger = Ledger::new();
    let out = ledger.ok(&[
        "bench", "--preset", "small", "--events", "2000", "--keep", "--json",
    ]);
    let plan: Value = serde_json::from_str(&out).unwrap();
    let events = plan["events"].as_u64().unwrap();
    assert!(events >= 2000, "{plan}");
    let verified = ledger.ok(&["verify"]);
    assert!(verified.contains("ok"), "{verified}");
    assert!(
        ledger.head_seq() >= events,
        "the ledger holds the run's events"
    );
    let again = ledger.run(&["bench", "--preset", "small", "--events", "10", "--keep"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
}

/// The load generator, on its own server: every request is counted, all of them
/// activate (each names a new machine), and the latency figures are ordered. It refuses
/// to load anything but loopback.
/// `bench http --peer` loads a trivial axum handler after keyledger, with the same client and
/// settings, and reports keyledger's throughput as a ratio of it.
#[test]
fn bench_http_with_a_peer_reports_keyledger_as_a_ratio_of_it() {
    let ledger = Ledger::new();
    let out = ledger.ok(&[
        "bench",
        "http",
        "--concurrency",
        "4",
        "--requests",
        "300",
        "--peer",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["activated"], 300, "{report}");
    let peer = &report["peer"];
    let (ours, theirs, ratio) = (
        report["requests_per_second"].as_f64().unwrap(),
        peer["requests_per_second"].as_f64().unwrap(),
        peer["ratio"].as_f64().unwrap(),
    );
    assert!(theirs > 0.0, "{report}");
    assert!((ratio - ours / theirs).abs() < 1e-9, "{report}");
    assert!(peer["latency_ms_p50"].as_f64().unwrap() <= peer["latency_ms_p99"].as_f64().unwrap());
    // A fresh ledger: on PostgreSQL the load generator's own server needs an empty database.
    let text = Ledger::new().ok(&[
        "bench",
        "http",
        "--concurrency",
        "2",
        "--requests",
        "50",
        "--peer",
    ]);
    assert!(
        text.contains("peer (a trivial axum handler, same client)"),
        "{text}"
    );
}

/// On PostgreSQL the checkpoint key is a file the caller names; the load generator's own
/// throwaway server makes one of its own when none is named (it did not start before).
#[test]
fn bench_http_on_postgresql_needs_no_signing_key_of_the_callers() {
    if !pg::on_postgres() {
        eprintln!("PostgreSQL only: a redb ledger keeps its key beside its file");
        return;
    }
    let ledger = Ledger::new();
    let args = [
        "bench",
        "http",
        "--concurrency",
        "2",
        "--requests",
        "40",
        "--json",
    ];
    let out = ledger
        .command()
        .env_remove("KEYLEDGER_SIGNING_KEY")
        .args(args)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&succeeded(&args, out)).unwrap();
    assert_eq!(report["activated"], 40, "{report}");
}

#[test]
fn bench_http_loads_its_own_server_and_reports_every_request() {
    let ledger = Ledger::new();
    let out = ledger.ok(&[
        "bench",
        "http",
        "--concurrency",
        "8",
        "--requests",
        "400",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["requests"], 400);
    assert_eq!(report["activated"], 400);
    assert_eq!(
        (report["refused"].as_u64(), report["errors"].as_u64()),
        (Some(0), Some(0))
    );
    let (p50, p99, max) = (
        report["latency_ms_p50"].as_f64().unwrap(),
        report["latency_ms_p99"].as_f64().unwrap(),
        report["latency_ms_max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(report["requests_per_second"].as_f64().unwrap() > 0.0);
    let remote = ledger.run(&[
        "bench",
        "http",
        "--url",
        "http://192.0.2.7:8080",
        "--product-key",
        "BCDFG-HJKMP-QRTVW-XY234-6789B",
        "--org",
        "contoso",
    ]);
    assert!(!remote.status.success());
    assert!(stderr(&remote).contains("loopback"), "{}", stderr(&remote));
}

/// Issue 13, finding 3: an edited key text in the secrets table fails `verify` (exit 1,
/// naming the key) and is never exported.
#[test]
fn finding3_an_altered_key_text_fails_verify_and_is_never_exported() {
    let ledger = initialized();
    let store = keyledger_ledger::Store::open(ledger.location()).unwrap();
    // One character of the middle group changed: the last five still match.
    let altered = "BCDFG-HJKMP-QRTVV-XY234-6789B";
    store.tamper_secret(1, Some(altered)).unwrap();
    drop(store);
    let out = ledger.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "FAILED at seq 5: key 1: the stored key text does not hash to the fingerprint the log recorded"
    );
    let head = ledger.head_seq();
    let out = ledger.run(&["keys", "--license-id", "V100", "--as", "rita"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(altered));
    assert_eq!(
        stderr(&out).trim(),
        "error: key 1: the stored key text does not hash to the fingerprint the log recorded; \
         no key text was handed out"
    );
    assert_eq!(ledger.head_seq(), head, "no disclosure was recorded");
}

/// Issue 13, finding 7: a closed pipe ends the command quietly (exit 0); a full device is
/// exit 2 with a message; neither panics (exit 101).
#[test]
fn finding7_a_closed_stdout_pipe_ends_quietly_and_a_full_device_is_exit_2() {
    let ledger = initialized();
    for args in [
        &["verify"][..],
        &["log"],
        &["report", "--license-id", "V100"],
    ] {
        let mut child = ledger
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = ledger
            .command()
            .args(args)
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out)
                .starts_with("error: cannot write to standard output: No space left on device"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// Issue 13, finding 8: one accepted range, years 0000..9999 in UTC, for every timestamp.
#[test]
fn finding8_timestamps_outside_years_0000_to_9999_are_malformed() {
    let ledger = Ledger::new();
    let out = ledger.run(&[
        "init",
        "--operator",
        "olga",
        "--at",
        "0000-01-01T00:00:00+23:59",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("outside years 0000..9999 once the offset is applied (UTC)"),
        "{}",
        stderr(&out)
    );
    let ledger = initialized();
    let line = json!({"type": "register_org", "at": "9999-12-31T23:59:59-23:59", "actor": "olga",
                      "org": "later", "name": "Later"});
    let out = ledger.run_with_stdin(&["apply", "-"], Some(&jsonl(&[line])));
    assert_eq!(out.status.code(), Some(1));
    let answer = &answers(&out)[0];
    assert_eq!(answer["code"], "malformed");
    assert_eq!(answer["field"], "at");
}

/// Issue 13, finding 9: the ledger file holds key text, so it is created 0600, like the
/// signing key beside it.
#[test]
fn finding9_the_ledger_file_is_created_readable_by_its_owner_only() {
    if skip_unless_redb("the file's mode") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let ledger = initialized();
    for path in [ledger.path(), ledger.file("ledger.redb.ed25519")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    let demo = Ledger::new();
    demo.ok(&["demo", "--machines", "10"]);
    let mode = std::fs::metadata(demo.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A ledger written by an older build (the format-1 golden database, with a projection
/// snapshot of an older format) verifies, skips the old snapshot instead of failing on it,
/// and reports from a fold of the log.
#[test]
fn an_older_ledger_verifies_and_its_old_snapshot_is_skipped_not_failed() {
    if skip_unless_redb("a format-1 file") {
        return;
    }
    let ledger = Ledger::new();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ledger/tests/golden/format1-demo.redb"
    );
    std::fs::copy(golden, ledger.path()).unwrap();
    let out = ledger.ok(&["verify"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("chain ok: 146 events in 2 blocks"),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "secrets ok: 14 key texts match their issued fingerprints"
    );
    assert!(
        lines[2].starts_with("snapshot: seq 146 skipped (snapshot format version"),
        "{out}"
    );
    let report = ledger.json(&["report", "--license-id", "V1000001", "--format", "json"]);
    assert_eq!(report["at_seq"], 146);
    assert_eq!(report["keys"][0]["kind"], "mak");
}

/// A redb file held by `serve` is refused by any other command with a message naming the
/// process that holds it and what to do instead, not the storage library's own words.
#[test]
fn a_ledger_file_held_by_serve_is_refused_naming_the_holder() {
    if pg::on_postgres() {
        return; // PostgreSQL has many readers: nothing is held.
    }
    let server = support::Server::start(10);
    let out = support::keyledger_command(&server.data)
        .args(["report", "--license-id", "V100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid = server.pid();
    assert!(
        stderr.contains(&format!("is held by process {pid} (")),
        "{stderr}"
    );
    assert!(
        stderr.contains("serve"),
        "the holder's command line: {stderr}"
    );
    assert!(stderr.contains("over HTTP"), "{stderr}");
    assert!(!stderr.contains("Cannot acquire lock"), "{stderr}");
}

/// The page cache is a setting with bounds: any size from 1 MiB works the same, 0 is refused
/// naming the flag.
#[test]
fn the_page_cache_size_is_a_bounded_setting() {
    let ledger = initialized();
    let small = ledger.ok(&["--cache-mib", "1", "verify"]);
    assert!(small.contains("chain ok"), "{small}");
    let out = ledger.run(&["--cache-mib", "0", "verify"]);
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("--cache-mib"), "{why}");
}
