//! Auditor proofs through the real binary: an auditor holding only a checkpoint, the
//! verifier key and a proof file verifies an activation's inclusion and the log's growth;
//! forged, tampered or mismatched proofs fail with exit code 1. On either store
//! (`KEYLEDGER_TEST_STORE=postgres`: a fresh database, see `support::pg`).

use crate::support;

use std::path::PathBuf;
use std::process::Output;

use support::pg;

pub(crate) struct Ledger {
    dir: tempfile::TempDir,
    database: Option<pg::Database>,
}

impl Ledger {
    pub(crate) fn demo() -> Ledger {
        Ledger::demo_seeded("1")
    }

    pub(crate) fn demo_seeded(seed: &str) -> Ledger {
        let ledger = Ledger {
            dir: tempfile::tempdir().unwrap(),
            database: pg::on_postgres().then(pg::Database::create),
        };
        ledger.ok(&["demo", "--machines", "1000", "--seed", seed]);
        ledger
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `--data` value: the redb file's path, or the database's URL.
    pub(crate) fn data(&self) -> PathBuf {
        match &self.database {
            Some(database) => PathBuf::from(database.url()),
            None => self.file("ledger.redb"),
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        support::keyledger_command(&self.data())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn verify(&self, file: &str, pubkey: &str, old: Option<&str>) -> (i32, String) {
        let mut args = vec!["verify-proof", file, "--pubkey", pubkey];
        if let Some(old) = old {
            args.extend(["--old-checkpoint", old]);
        }
        let out = self.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap(), text)
    }
}

#[test]
fn an_auditor_verifies_inclusion_and_growth_with_the_key_alone() {
    let ledger = Ledger::demo();
    let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
    assert!(pubkey.starts_with("keyledger+"), "{pubkey}");
    ledger.ok(&["checkpoint", "--size", "100", "--out", "q1.txt"]);
    let note = std::fs::read_to_string(ledger.file("q1.txt")).unwrap();
    assert!(
        note.lines().nth(1) == Some("100") && note.contains("\n\n\u{2014} keyledger "),
        "{note}"
    );
    ledger.ok(&["prove", "inclusion", "--seq", "64", "--out", "inc.json"]);
    let (code, text) = ledger.verify("inc.json", &pubkey, None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("seq 64 (machines_activated) is in the log"),
        "{text}"
    );
    // Later the log grows; the auditor checks it extends the checkpoint they kept.
    std::fs::write(
        ledger.file("more.jsonl"),
        "{\"type\":\"register_org\",\"at\":\"2027-01-01T00:00:00Z\",\"actor\":\"olga\",\"org\":\"new\",\"name\":\"New\"}\n",
    )
    .unwrap();
    ledger.ok(&["apply", "more.jsonl"]);
    ledger.ok(&[
        "prove",
        "consistency",
        "--from",
        "100",
        "--out",
        "cons.json",
    ]);
    let (code, text) = ledger.verify("cons.json", &pubkey, Some("q1.txt"));
    assert_eq!(code, 0, "{text}");
    // A consistency proof that does not start from the kept checkpoint is refused.
    ledger.ok(&[
        "prove",
        "consistency",
        "--from",
        "101",
        "--out",
        "other.json",
    ]);
    let (code, text) = ledger.verify("other.json", &pubkey, Some("q1.txt"));
    assert_eq!(code, 1, "{text}");
}

#[test]
fn forged_or_mismatched_proofs_fail() {
    let ledger = Ledger::demo();
    let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
    ledger.ok(&[
        "prove",
        "inclusion",
        "--seq",
        "64",
        "--size",
        "120",
        "--out",
        "inc.json",
    ]);
    let proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ledger.file("inc.json")).unwrap()).unwrap();
    let write = |name: &str, value: &serde_json::Value| {
        std::fs::write(ledger.file(name), value.to_string()).unwrap()
    };
    // A flipped bit in a path hash.
    let mut flipped = proof.clone();
    let first = flipped["path"][0].as_str().unwrap().to_owned();
    let bit = if first.starts_with('0') { "1" } else { "0" };
    flipped["path"][0] = serde_json::json!(format!("{bit}{}", &first[1..]));
    write("flipped.json", &flipped);
    assert_eq!(ledger.verify("flipped.json", &pubkey, None).0, 1);
    // A record beyond the signed tree: the linear part is not covered by the tree.
    let mut uncovered = proof.clone();
    uncovered["seq"] = serde_json::json!(121);
    write("uncovered.json", &uncovered);
    let (code, text) = ledger.verify("uncovered.json", &pubkey, None);
    assert_eq!(code, 1);
    assert!(text.contains("not covered by the signed tree"), "{text}");
    // The readable event edited while the record stays.
    let mut edited = proof.clone();
    edited["event"]["org"] = serde_json::json!("someone-else");
    write("edited.json", &edited);
    assert!(ledger
        .verify("edited.json", &pubkey, None)
        .1
        .contains("event differs from the record"));
    // A tampered signature, a wrong key, garbage around a valid proof.
    let note = proof["checkpoint"].as_str().unwrap();
    let sig_at = note.rfind(' ').unwrap() + 5;
    let mut bytes = note.as_bytes().to_vec();
    bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
    let mut bad_sig = proof.clone();
    bad_sig["checkpoint"] = serde_json::json!(String::from_utf8(bytes).unwrap());
    write("bad_sig.json", &bad_sig);
    assert!(ledger
        .verify("bad_sig.json", &pubkey, None)
        .1
        .contains("no signature by this key"));
    let other = Ledger::demo();
    let other_key = other.ok(&["pubkey"]).trim().to_owned();
    assert_eq!(ledger.verify("inc.json", &other_key, None).0, 1);
    let valid = std::fs::read_to_string(ledger.file("inc.json")).unwrap();
    std::fs::write(ledger.file("prefixed.json"), format!("x{valid}")).unwrap();
    std::fs::write(ledger.file("suffixed.json"), format!("{valid}{{}}")).unwrap();
    assert_eq!(ledger.verify("prefixed.json", &pubkey, None).0, 1);
    assert_eq!(ledger.verify("suffixed.json", &pubkey, None).0, 1);
    assert_eq!(
        ledger.verify("inc.json", &pubkey, None).0,
        0,
        "the untouched proof still verifies"
    );
}

#[test]
fn a_tampered_ledger_cannot_prove_against_an_earlier_checkpoint() {
    let ledger = Ledger::demo();
    let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
    ledger.ok(&["checkpoint", "--out", "before.txt"]);
    let note = std::fs::read_to_string(ledger.file("before.txt")).unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    {
        let location = keyledger_ledger::Location::parse(ledger.data().to_str().unwrap()).unwrap();
        let store = keyledger_ledger::Store::open(location).unwrap();
        let key = store.block_keys().unwrap()[1];
        let mut bytes = store.block_bytes(key).unwrap().unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        store.tamper_block(key, Some(&bytes)).unwrap();
    }
    // Every record the alteration touches now fails against the checkpoint kept before.
    let before = std::fs::read_to_string(ledger.file("before.txt")).unwrap();
    let mut failed = 0;
    for seq in 1..=size {
        let out = ledger.run(&[
            "prove",
            "inclusion",
            "--seq",
            &seq.to_string(),
            "--size",
            &size.to_string(),
            "--out",
            "p.json",
        ]);
        if !out.status.success() {
            failed += 1;
            continue;
        }
        let mut proof: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ledger.file("p.json")).unwrap()).unwrap();
        proof["checkpoint"] = serde_json::json!(before);
        std::fs::write(ledger.file("p.json"), proof.to_string()).unwrap();
        if ledger.verify("p.json", &pubkey, None).0 != 0 {
            failed += 1;
        }
    }
    assert!(
        failed >= 1,
        "the altered record cannot be proven against the earlier checkpoint"
    );
}

/// Issue 13, finding 9: `verify-export` alone accepts a truncated export, an empty file and
/// a log rewritten with recomputed hashes (each is consistent with itself). With a signed
/// checkpoint and the verifier key, each of those fails, and the whole export passes.
#[test]
fn finding9_verify_export_against_a_checkpoint_catches_truncation_and_rewrites() {
    let ledger = Ledger::demo();
    let pubkey = ledger.ok(&["pubkey"]).trim().to_owned();
    ledger.ok(&["checkpoint", "--size", "100", "--out", "cp.txt"]);
    ledger.ok(&["export", "--out", "all.jsonl"]);
    let all = std::fs::read_to_string(ledger.file("all.jsonl")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines.len() > 100);
    let check = |name: &str, text: &str| {
        std::fs::write(ledger.file(name), text).unwrap();
        let out = ledger.run(&[
            "verify-export",
            name,
            "--checkpoint",
            "cp.txt",
            "--pubkey",
            &pubkey,
        ]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap(), said)
    };
    let (code, said) = check("whole.jsonl", &all);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("checkpoint ok: its first 100 records are the log keyledger/"),
        "{said}"
    );
    // Exactly the checkpointed prefix is fine too; one line less is truncation.
    let prefix = |n: usize| {
        lines[..n]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    assert_eq!(check("exact.jsonl", &prefix(100)).0, 0);
    let (code, said) = check("short.jsonl", &prefix(99));
    assert_eq!(code, 1);
    assert!(
        said.contains(
            "the export ends at seq 99 but the checkpoint covers 100 records: it is truncated"
        ),
        "{said}"
    );
    let (code, said) = check("empty.jsonl", "");
    assert_eq!(code, 1);
    assert!(said.contains("the export ends at seq 0"), "{said}");
    // Another ledger's export is consistent with itself, and not this log.
    let other = Ledger::demo_seeded("2");
    other.ok(&["export", "--out", "other.jsonl"]);
    let rewritten = std::fs::read_to_string(other.file("other.jsonl")).unwrap();
    let (code, said) = check("rewritten.jsonl", &rewritten);
    assert_eq!(code, 1);
    assert!(said.contains("this is another log"), "{said}");
    // Without the checkpoint the same truncated file passes: the gap this closes.
    std::fs::write(ledger.file("short2.jsonl"), prefix(99)).unwrap();
    assert!(ledger
        .run(&["verify-export", "short2.jsonl"])
        .status
        .success());
    // A checkpoint signed by another key is refused.
    let wrong = other.ok(&["pubkey"]).trim().to_owned();
    let out = ledger.run(&[
        "verify-export",
        "whole.jsonl",
        "--checkpoint",
        "cp.txt",
        "--pubkey",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
}
