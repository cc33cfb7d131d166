//! The event stream (issue 18, item 1), end to end: `keyledger serve` streams the log as
//! Server-Sent Events and `keyledger tail` follows it — history, then live events, in seq
//! order, none twice, chained; a reconnect with `Last-Event-ID` resumes at the next seq; a
//! reader without roles gets nothing it could not read from `/v1/log`.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

fn tail(server: &Server, token: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["tail", "--url", &server.url, "--format", "jsonl"])
        .args(args)
        .env("KEYLEDGER_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn messages(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_stream_sends_history_then_live_events_in_order_and_chained() {
    let server = Server::start(50);
    let head = server.seq();
    // History and three live activations: tail waits for them.
    let child = tail(
        &server,
        &server.token("olga"),
        &["--count", &(head + 3).to_string()],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    for machine in ["live-1", "live-2", "live-3"] {
        assert_eq!(
            server.post("/v1/activations", None, &activation(machine)).0,
            200
        );
    }
    let got = messages(child);
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=head + 3).collect::<Vec<_>>());
    for pair in got.windows(2) {
        assert_eq!(
            pair[1]["prev"], pair[0]["hash"],
            "each link follows the one before"
        );
    }
    let live: Vec<&str> = got[head as usize..]
        .iter()
        .map(|m| m["event"]["machines"][0].as_str().unwrap())
        .collect();
    assert_eq!(live, ["live-1", "live-2", "live-3"]);
}

#[test]
fn a_reconnect_with_last_event_id_resumes_at_the_next_seq_and_sigterm_ends_streams() {
    let mut server = Server::start(5);
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    write!(
        stream,
        "GET /v1/events/stream?from=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Last-Event-ID: 4\r\n\r\n",
        server.token("olga")
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut first_id = None;
    let mut line = String::new();
    while first_id.is_none() {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
        first_id = line.strip_prefix("id:").map(|id| id.trim().to_owned());
    }
    assert_eq!(first_id.as_deref(), Some("5"));
    // The stream is still open, waiting for live events: shutdown ends it, it does not wait
    // for it (the graceful shutdown would otherwise take its full 30 s).
    let started = std::time::Instant::now();
    let said = server.stop();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{said}"
    );
}

#[test]
fn a_reader_gets_only_what_the_log_would_show_it() {
    let server = Server::start(5);
    assert_eq!(
        server.post("/v1/activations", None, &activation("pc-1")).0,
        200
    );
    // No role and no license ID: refused, as `/v1/log` refuses.
    let out = tail(&server, &server.token("nobody"), &["--count", "1"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 403"));
    // A reader on V100 gets exactly V100's history, as `/v1/log?license_id=V100` lists it.
    let (_, page) = server.get("/v1/log?license_id=V100", Some("rita"));
    let page: Value = serde_json::from_str(&page).unwrap();
    let expected: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let count = expected.len().to_string();
    let child = tail(
        &server,
        &server.token("rita"),
        &["--license-id", "V100", "--count", &count],
    );
    let seqs: Vec<u64> = messages(child)
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, expected);
    assert!(
        !seqs.contains(&1),
        "operator-only events are not in a license ID's history"
    );
}

#[test]
fn tail_prints_the_table_of_keyledger_log() {
    let server = Server::start(5);
    let out = Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["tail", "--url", &server.url, "--from", "1", "--count", "1"])
        .env("KEYLEDGER_TOKEN", server.token("olga"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "     seq  at                           actor             type                      summary"
    );
    assert_eq!(
        lines[1],
        "       1  2026-01-01T00:00:00Z         olga              operator_added            principal=olga"
    );
}
