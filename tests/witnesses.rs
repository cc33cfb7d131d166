//! Witnesses over real HTTP: two `keyledger witness serve` processes follow a ledger that
//! `keyledger serve --witness` submits its checkpoints to; an inclusion proof against the
//! cosigned checkpoint verifies offline with a quorum of 2 and fails a quorum it lacks;
//! a fork of the same ledger (same origin, same key, another history) is refused by a
//! witness, also after the witness restarted.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keyledger")
}

/// A running `keyledger witness serve`: its URL and verifier key, and its stderr's lines
/// as they come.
struct WitnessProcess {
    child: Child,
    url: String,
    key: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl WitnessProcess {
    fn start(dir: &Path, name: &str, log: &str) -> WitnessProcess {
        WitnessProcess::start_on(dir, name, log, "127.0.0.1:0")
    }

    /// The same on `listen` (a witness restarted where the ledger expects it).
    fn start_on(dir: &Path, name: &str, log: &str, listen: &str) -> WitnessProcess {
        let key_file = dir.join(format!("{name}.key"));
        if !key_file.exists() {
            let out = Command::new(bin())
                .args([
                    "witness",
                    "init",
                    "--name",
                    &format!("witness.test/{name}"),
                    "--key",
                ])
                .arg(&key_file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut child = Command::new(bin())
            .args(["witness", "serve", "--listen", listen, "--key"])
            .arg(&key_file)
            .arg("--state")
            .arg(dir.join(format!("{name}.json")))
            .args(["--log", log])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = support::read_listening(&mut child);
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        let key = first
            .trim()
            .strip_prefix("keyledger witness: verifier key ")
            .expect("its verifier key")
            .to_owned();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        WitnessProcess {
            child,
            url,
            key,
            lines,
        }
    }

    /// Waits for a line of its stderr that contains `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("the witness never said {text:?}"),
            }
        }
    }

    /// Whatever it said so far.
    fn said(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}

/// An operator's `register_org` through the API: the log grows by one event.
fn register_org(url: &str, token: &str, command: serde_json::Value) {
    let mut response = agent()
        .post(&format!("{url}/v1/commands"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(command.to_string())
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "{}",
        response.body_mut().read_to_string().unwrap()
    );
}

/// Waits for the service's cosigned checkpoint of at least `size` leaves, cosigned by
/// every witness named; answers it.
fn cosigned(url: &str, size: u64, names: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, note) = get(&format!("{url}/v1/checkpoint/cosigned"), None);
        let grown = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0)
            >= size;
        if status == 200
            && grown
            && names
                .iter()
                .all(|n| note.contains(&format!("\u{2014} witness.test/{n} ")))
        {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "no cosigned checkpoint of size {size}: {status} {note}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify_proof(
    file: &Path,
    pubkey: &str,
    witnesses: &[&str],
    quorum: Option<usize>,
) -> (bool, String) {
    let mut command = Command::new(bin());
    command
        .arg("verify-proof")
        .arg(file)
        .args(["--pubkey", pubkey]);
    for w in witnesses {
        command.args(["--witness", w]);
    }
    if let Some(q) = quorum {
        command.args(["--quorum", &q.to_string()]);
    }
    let out = command.output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Copies the ledger at `data` (its file, write-ahead file and signing key) beside `to`.
fn copy_ledger(data: &Path, to: &Path) {
    let name = data.file_name().unwrap().to_str().unwrap();
    for entry in std::fs::read_dir(data.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_str().unwrap().to_owned();
        if file.starts_with(name) {
            std::fs::copy(
                entry.path(),
                to.parent().unwrap().join(file.replacen(
                    name,
                    to.file_name().unwrap().to_str().unwrap(),
                    1,
                )),
            )
            .unwrap();
        }
    }
}

#[test]
fn witnesses_cosign_a_growing_ledger_and_refuse_its_fork() {
    if support::skip_unless_redb("witnesses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keyledger.redb");
    support::keyledger(&data, &["demo"]);
    let fork = dir.path().join("fork.redb");
    copy_ledger(&data, &fork);
    let olga = support::keyledger(&data, &["token", "create", "--principal", "olga"])
        .trim()
        .to_owned();
    let pubkey = support::keyledger(&data, &["pubkey"]).trim().to_owned();
    let checkpoint = support::keyledger(&data, &["checkpoint"]);
    let origin = checkpoint.lines().next().unwrap().to_owned();
    let head: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let log = format!("{origin}={pubkey}");
    let (w1, w2) = (
        WitnessProcess::start(dir.path(), "w1", &log),
        WitnessProcess::start(dir.path(), "w2", &log),
    );
    let witness_args = [
        "--witness",
        &format!("{}={}", w1.url, w1.key),
        "--witness",
        &format!("{}={}", w2.url, w2.key),
        "--witness-every",
        "1",
    ];
    let (serve, url, _) = support::spawn_serve(&data, &witness_args);
    // Each round commits the streams first: the cosigned checkpoint sits at the commitment.
    cosigned(&url, head + 1, &["w1", "w2"]);

    // The log grows; the witnesses cosign the new head from the size they hold.
    register_org(
        &url,
        &olga,
        json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "witnessed", "name": "Witnessed Ltd"}),
    );
    let note = cosigned(&url, head + 3, &["w1", "w2"]);
    assert!(
        note.starts_with(&format!("{origin}\n{}\n", head + 3)),
        "{note}"
    );

    // A witness that was down cosigns the head once it is back, without the log growing:
    // its cosignature joins the other's on the same note.
    let w2_listen = w2.url.trim_start_matches("http://").to_owned();
    let mut w2 = w2;
    w2.stop();
    register_org(
        &url,
        &olga,
        json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "witnessed-2", "name": "Witnessed Two"}),
    );
    let alone = cosigned(&url, head + 5, &["w1"]);
    assert!(!alone.contains("\u{2014} witness.test/w2 "), "{alone}");
    let w2 = WitnessProcess::start_on(dir.path(), "w2", &log, &w2_listen);
    let note = cosigned(&url, head + 5, &["w1", "w2"]);
    assert_eq!(
        note.lines().take(5).collect::<Vec<_>>(),
        alone.lines().take(5).collect::<Vec<_>>(),
        "the same note"
    );

    // A statement against the cosigned checkpoint verifies with both witnesses, and not
    // with a quorum of one that never cosigned.
    let (status, statement) = get(
        &format!("{url}/v1/statements/V1000001?cosigned=true"),
        Some(&olga),
    );
    assert_eq!(status, 200, "{statement}");
    let statement_file = dir.path().join("statement.json");
    std::fs::write(&statement_file, &statement).unwrap();
    let verify_statement = |witnesses: &[&str]| {
        let mut command = Command::new(bin());
        command
            .arg("verify-statement")
            .arg(&statement_file)
            .args(["--pubkey", &pubkey]);
        for w in witnesses {
            command.args(["--witness", w]);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said) = verify_statement(&[&w1.key, &w2.key]);
    assert!(
        ok && said.contains("cosigned by 2 of 2 witnesses: witness.test/w1, witness.test/w2"),
        "{said}"
    );

    // An inclusion proof against the cosigned checkpoint verifies with both witnesses.
    let (status, proof) = get(
        &format!("{url}/v1/proofs/inclusion?seq=7&cosigned=true"),
        Some(&olga),
    );
    assert_eq!(status, 200, "{proof}");
    let file = dir.path().join("proof.json");
    std::fs::write(&file, &proof).unwrap();
    let (ok, said) = verify_proof(&file, &pubkey, &[&w1.key, &w2.key], None);
    assert!(
        ok && said.contains("cosigned by 2 of 2 witnesses: witness.test/w1, witness.test/w2"),
        "{said}"
    );
    // A witness that did not cosign cannot make up a quorum.
    let stranger = dir.path().join("stranger.key");
    let made = Command::new(bin())
        .args(["witness", "init", "--name", "witness.test/w3", "--key"])
        .arg(&stranger)
        .output()
        .unwrap();
    let w3 = String::from_utf8_lossy(&made.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let (ok, said) = verify_proof(&file, &pubkey, &[&w1.key, &w3], Some(2));
    assert!(!ok && said.contains("1 of the 2 witnesses given cosigned the checkpoint (witness.test/w1), fewer than the quorum of 2"), "{said}");
    let (ok, _) = verify_proof(&file, &pubkey, &[&w1.key, &w3], Some(1));
    assert!(ok);
    drop(serve);
    // An export proves itself against the cosigned checkpoint, witnesses and all.
    let (export, cosigned_file) = (
        dir.path().join("export.jsonl"),
        dir.path().join("cosigned.txt"),
    );
    std::fs::write(&cosigned_file, &note).unwrap();
    support::keyledger(&data, &["export", "--out", export.to_str().unwrap()]);
    let out = Command::new(bin())
        .arg("verify-export")
        .arg(&export)
        .arg("--checkpoint")
        .arg(&cosigned_file)
        .args([
            "--pubkey",
            &pubkey,
            "--witness",
            &w1.key,
            "--witness",
            &w2.key,
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("cosigned by 2 of 2 witnesses"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin())
        .arg("verify-export")
        .arg(&export)
        .arg("--checkpoint")
        .arg(&cosigned_file)
        .args(["--pubkey", &pubkey, "--witness", &w3])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a quorum of a witness that did not cosign"
    );

    // The fork: the same origin and key, another event at the same seq. A witness that
    // restarted since still refuses it.
    let mut w1 = w1;
    assert!(
        w1.said().iter().all(|l| !l.contains("refused")),
        "w1 refused the ledger itself"
    );
    w1.stop();
    let w1 = WitnessProcess::start(dir.path(), "w1", &log);
    let forked = json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "forked", "name": "Forked Ltd"});
    let forked_too = json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "forked-2", "name": "Forked Two"});
    let forked_three = json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "forked-3", "name": "Forked Three"});
    let forked_four = json!({"type": "register_org", "at": "2026-11-02T00:00:00Z", "actor": "olga", "org": "forked-4", "name": "Forked Four"});
    let commands = dir.path().join("fork.jsonl");
    // Four events and the fork's commitment: the size the witness cosigned, another root.
    std::fs::write(
        &commands,
        format!("{forked}\n{forked_too}\n{forked_three}\n{forked_four}\n"),
    )
    .unwrap();
    support::keyledger(&fork, &["apply", commands.to_str().unwrap()]);
    let fork_args = [
        "--witness",
        &format!("{}={}", w1.url, w1.key),
        "--witness-every",
        "1",
    ];
    let (forked_serve, fork_url, _) = support::spawn_serve(&fork, &fork_args);
    let refused = w1.wait_for("refused (409)");
    assert!(
        refused.contains(&format!(
            "a fork: size {} was cosigned with another root",
            head + 5
        )),
        "{refused}"
    );
    let (status, _) = get(&format!("{fork_url}/v1/checkpoint/cosigned"), None);
    assert_eq!(status, 404, "the fork was cosigned");
    drop(forked_serve);
}
