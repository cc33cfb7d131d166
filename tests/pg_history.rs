//! A history checker across failover, in the manner of Jepsen: real clients over HTTP against
//! the real binary on a real PostgreSQL primary and synchronous standby, a nemesis, and a
//! checker that judges the whole recorded history afterwards.
//!
//! Clients activate new machines on one MAK with a small limit while a licensor asks for and
//! grants 20 more activations again and again, so that acceptances, `insufficient_activations`
//! refusals and grants race. Each request is recorded with monotonic times as
//! ok (seq), refused (code, seq), failed (an error answer) or unknown (no answer: timeout or
//! a dropped connection). Two `serve --wait-for-writer` processes run: one writes, the other
//! waits to take over; clients move to the other when one does not answer. The nemesis, in
//! an order drawn from the round's seed (`KEYLEDGER_HISTORY_SEED`, printed), freezes the
//! writing `serve` (SIGSTOP, then SIGCONT), kills it (`kill -9`) so that the other takes
//! over, and kills the primary and promotes the standby (after which either may write). The checker then verifies, against the log the new primary holds:
//! - every ok is in the chain exactly once, at the seq it was told (a `machines_activated`
//!   of its machine), and every refusal is the `activation_refused` at its seq, with its code;
//! - no failed or unknown request is decided twice: each is resent with its `command_id`, and
//!   the answer is its first one if it had landed (then it is in the log once), else it is
//!   decided now;
//! - real-time order: if A's answer came before B was sent, seq(A) < seq(B);
//! - every grant the licensor was told of is the `request_granted` at its seq, none twice;
//! - the count never passes the limit plus the grants before it at any seq, and a refusal
//!   for want of activations comes only when the key had none left (a replay of the chain);
//! - a consistency proof links the checkpoint taken before the nemesis to the one after.
//!
//! `KEYLEDGER_HISTORY_ROUNDS` rounds (2 in CI), each on a new cluster. Without PostgreSQL
//! (and not root) the test says it was skipped; under CI it fails.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use support::pg::{skip_without_postgres, Cluster};
use support::*;

const CLIENTS: usize = 6;
/// The MAK's limit: reached in every round, so later activations are refused.
const LIMIT: u64 = 150;

/// How a request ended, as its client saw it.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ok(u64),
    Refused(String, u64),
    /// An error answer with no seq (`not_committed`, `writer_stopped`, …): the outcome is not
    /// known either, since a commit may have landed before the error.
    Failed(u16, String),
    /// No answer at all.
    Unknown,
}

#[derive(Clone, Debug)]
struct Op {
    machine: String,
    invoked: Instant,
    completed: Instant,
    outcome: Outcome,
}

impl Op {
    fn seq(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok(seq) | Outcome::Refused(_, seq) => Some(seq),
            _ => None,
        }
    }
}

fn rounds() -> usize {
    let default = if std::env::var_os("CI").is_some() {
        2
    } else {
        1
    };
    std::env::var("KEYLEDGER_HISTORY_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn body(machine: &str) -> String {
    json!({"product_key": MAK, "org": "contoso", "method": "online",
           "machines": [machine], "command_id": machine})
    .to_string()
}

/// Sends one activation and classifies what came back.
fn send(agent: &ureq::Agent, url: &str, machine: &str) -> Outcome {
    let sent = agent
        .post(format!("{url}/v1/activations"))
        .content_type("application/json")
        .send(body(machine));
    classify(sent)
}

/// Sends one command as `token`'s principal and classifies what came back.
fn send_command(agent: &ureq::Agent, url: &str, token: &str, command: &Value) -> Outcome {
    let sent = agent
        .post(format!("{url}/v1/commands"))
        .header("authorization", format!("Bearer {token}"))
        .content_type("application/json")
        .send(command.to_string());
    classify(sent)
}

fn classify(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Outcome {
    let Ok(mut response) = sent else {
        return Outcome::Unknown;
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = answer["code"].as_str().unwrap_or("").to_owned();
    match (answer["ok"].as_bool(), answer["seq"].as_u64()) {
        (Some(true), Some(seq)) => Outcome::Ok(seq),
        (Some(false), Some(seq)) => Outcome::Refused(code, seq),
        _ => Outcome::Failed(status, code),
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// The clients: each sends activations of new machines to one of the servers that have
/// listened so far, moving to the next when a request gets no answer with a seq, until told
/// to stop; every request is recorded.
struct Clients {
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Op>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Clients {
    fn start(urls: Arc<Mutex<Vec<String>>>, round: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..CLIENTS)
            .map(|c| {
                let (urls, stop, ops) = (urls.clone(), stop.clone(), ops.clone());
                std::thread::spawn(move || client(c, round, &urls, &stop, &ops))
            })
            .collect();
        Clients { stop, ops, threads }
    }

    /// Requests answered with a seq so far.
    fn answered(&self) -> usize {
        lock(&self.ops)
            .iter()
            .filter(|op| op.seq().is_some())
            .count()
    }

    /// Waits until `more` requests beyond those answered now are answered with a seq (the
    /// service takes writes), at most 60 s.
    fn wait_for_answers(&self, more: usize, after: &str) {
        let target = self.answered() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.answered() < target {
            if Instant::now() > deadline {
                let last = lock(&self.ops).last().cloned();
                panic!("no {more} answers after {after}: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            thread.join().unwrap();
        }
        let ops = lock(&self.ops).clone();
        ops
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn client(
    c: usize,
    round: usize,
    urls: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    ops: &Mutex<Vec<Op>>,
) {
    let agent = agent(Duration::from_secs(4));
    let mut which = 0;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let machine = format!("h{round}-c{c}-{i}");
        let target = {
            let urls = lock(urls);
            urls[which % urls.len()].clone()
        };
        let invoked = Instant::now();
        let outcome = send(&agent, &target, &machine);
        let completed = Instant::now();
        let answered = matches!(outcome, Outcome::Ok(_) | Outcome::Refused(..));
        lock(ops).push(Op {
            machine,
            invoked,
            completed,
            outcome,
        });
        if !answered {
            // This server is down, frozen or not the writer: try the next.
            which += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Grants that raised the limit while the clients ran: request id and the seq of its
/// `request_granted`, as the licensor was told.
type Grants = Arc<Mutex<Vec<(String, u64)>>>;

/// The licensor: asks for 20 more activations (vic, R17) and grants them (olga, R19), again
/// and again, so that grants race the clients' activations at the limit. Each command is
/// resent with its `command_id` until it is answered (with a fresh `at`, which the command's
/// digest leaves out), so it is decided once.
fn licensor(
    round: usize,
    urls: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    [vic, olga]: [String; 2],
    grants: Grants,
) {
    let agent = agent(Duration::from_secs(4));
    let mut which = 0;
    let mut decided = |command: Value, token: &str| -> Option<u64> {
        while !stop.load(Ordering::Relaxed) {
            let mut command = command.clone();
            command["at"] = json!(wall_clock());
            let url = {
                let urls = lock(&urls);
                urls[which % urls.len()].clone()
            };
            match send_command(&agent, &url, token, &command) {
                Outcome::Ok(seq) => return Some(seq),
                Outcome::Refused(code, seq) => panic!("the licensor was refused {code} at {seq}"),
                _ => which += 1,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    };
    for n in 0.. {
        let id = format!("g{round}-{n}");
        let ask = json!({"type": "request_mak_increase", "actor": "vic",
            "command_id": format!("{id}-ask"), "request_id": id, "license_id": "V100",
            "product": "win11-pro", "key_last5": &MAK[MAK.len() - 5..],
            "activations_needed": 20, "justification": "the history checker"});
        let grant = json!({"type": "grant_request", "actor": "olga",
            "command_id": format!("{id}-grant"), "request_id": id, "amount": 20});
        if decided(ask, &vic).is_none() {
            break;
        }
        let Some(seq) = decided(grant, &olga) else {
            break;
        };
        lock(&grants).push((id, seq));
        // The licensor's pace, not a wait for state.
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Two seconds from now, as a command's `at`: activations are stamped by the server as they
/// are decided, so a command stamped now by its client would often come after a later one
/// (`time_regression`); the server stamps activations no earlier than the newest event.
fn wall_clock() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let micros = now.unwrap().as_micros() as i64 + 2_000_000;
    keyledger_core::Timestamp::from_unix_micros(micros).to_string()
}

/// What the nemesis can do.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGSTOP of the writing `serve`, then SIGCONT: its sockets and its PostgreSQL session
    /// stay open meanwhile.
    FreezeServe,
    /// `kill -9` of the writing `serve`; the other one, waiting (`--wait-for-writer`), takes
    /// over, and a new one starts waiting.
    KillServe,
    /// `kill -9` of the primary's postmaster and promotion of the standby.
    Failover,
}

/// The `serve` processes of one round, each started with `--wait-for-writer`: one writes,
/// the other waits to take over. Each one's address is added to `urls` once it listens
/// (it listens once it is the writer).
struct Servers {
    data: PathBuf,
    urls: Arc<Mutex<Vec<String>>>,
    children: Vec<std::process::Child>,
    /// The PostgreSQL server that is primary now.
    primary: String,
}

impl Servers {
    fn spawn(&mut self) {
        let mut child = keyledger_command(&self.data)
            .args(["serve", "--listen", "127.0.0.1:0", "--wait-for-writer"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let urls = self.urls.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                lock(&urls).push(url.to_owned());
            }
        });
        self.children.push(child);
    }

    /// No `serve` ends by itself: the one waiting must outlive a failover, and the one that
    /// lost the writer lock keeps answering (with errors) until it is needed again.
    fn assert_all_running(&mut self, after: Fault) {
        for child in &mut self.children {
            let exited = child.try_wait().unwrap();
            assert!(
                exited.is_none(),
                "after {after:?} a serve exited: {exited:?}"
            );
        }
    }

    /// The pid of the writer, as the ledger's head row names it.
    fn writer_pid(&self) -> u32 {
        let holder = support::pg::psql(&self.primary, "select holder from keyledger.head");
        let holder = holder.unwrap();
        let pid = holder
            .strip_prefix("pid ")
            .and_then(|h| h.split(' ').next());
        pid.and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the head's holder: {holder:?}"))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn inflict(fault: Fault, cluster: &Cluster, servers: &mut Servers) {
    eprintln!("nemesis: {fault:?}");
    match fault {
        Fault::FreezeServe => {
            let pid = servers.writer_pid();
            signal(pid, "-STOP");
            // The fault's length, not a wait for state: clients time out meanwhile.
            std::thread::sleep(Duration::from_millis(1500));
            signal(pid, "-CONT");
        }
        Fault::KillServe => {
            let pid = servers.writer_pid();
            signal(pid, "-KILL");
            let killed = servers.children.iter().position(|c| c.id() == pid);
            let mut killed = servers
                .children
                .remove(killed.expect("a serve of this round"));
            let _ = killed.wait();
            servers.spawn();
        }
        Fault::Failover => {
            cluster.must("kill-primary");
            cluster.must("promote");
            servers.primary = cluster.url_of(cluster.standby);
        }
    }
}

/// The log as the checker needs it: each seq's event.
fn events(data: &std::path::Path) -> BTreeMap<u64, Value> {
    let log = keyledger(data, &["log", "--format", "jsonl"]);
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|entry| (entry["seq"].as_u64().unwrap(), entry["event"].clone()))
        .collect()
}

#[test]
fn a_history_across_failover_and_serve_crashes_is_linearizable_and_loses_nothing() {
    if skip_without_postgres("the history checker") {
        return;
    }
    let seed = std::env::var("KEYLEDGER_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64
        });
    for round in 0..rounds() {
        let seed = seed.wrapping_add(round as u64);
        eprintln!("history round {round}: KEYLEDGER_HISTORY_SEED={seed}");
        one_round(round, seed);
    }
}

fn one_round(round: usize, seed: u64) {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    // The fixture's server sets the ledger up (catalog, tokens); this round's own serve
    // processes then take turns writing.
    let mut server = Server::start_at(dir, PathBuf::from(cluster.url()), LIMIT, &[]);
    server.stop();
    let pubkey = keyledger(&server.data, &["pubkey"]).trim().to_owned();
    let urls = Arc::new(Mutex::new(Vec::new()));
    let mut servers = Servers {
        data: server.data.clone(),
        urls: urls.clone(),
        children: Vec::new(),
        primary: cluster.url_of(cluster.primary),
    };
    servers.spawn();
    servers.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock(&urls).is_empty() {
        assert!(Instant::now() < deadline, "no serve became the writer");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.url = lock(&urls)[0].clone();
    let clients = Clients::start(urls.clone(), round);
    let grants = Grants::default();
    let licensor = {
        let (urls, stop, grants) = (urls.clone(), clients.stop.clone(), grants.clone());
        let tokens = [server.token("vic"), server.token("olga")];
        std::thread::spawn(move || licensor(round, urls, stop, tokens, grants))
    };
    clients.wait_for_answers(60, "the start");
    let (status, before) = server.get("/v1/checkpoint", None);
    assert_eq!(status, 200, "{before}");

    let mut faults = [Fault::FreezeServe, Fault::KillServe, Fault::Failover];
    faults.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    for fault in faults {
        inflict(fault, &cluster, &mut servers);
        clients.wait_for_answers(60, &format!("{fault:?}"));
        servers.assert_all_running(fault);
    }
    let ops = clients.finish();
    licensor.join().unwrap();
    let grants = lock(&grants).clone();
    let urls = lock(&urls).clone();
    let resolved = resolve_unknown(&urls, &ops);
    server.url = urls.last().unwrap().clone();
    let log = events(&server.data);
    check_history(&ops, &resolved, &log, round, seed);
    check_grants(&grants, &log, round);
    check_limit(&log, round);
    check_consistency(&server, &before, &pubkey);
    let verified = keyledger(&server.data, &["verify"]);
    assert!(verified.starts_with("chain ok"), "{verified}");
    let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
    eprintln!(
        "history round {round}: {} requests ({} ok, {} refused, {} failed, {} unknown; all \
         resolved by resending), {} grants, faults {faults:?}, violations 0",
        ops.len(),
        count(|o| matches!(o, Outcome::Ok(_))),
        count(|o| matches!(o, Outcome::Refused(..))),
        count(|o| matches!(o, Outcome::Failed(..))),
        count(|o| *o == Outcome::Unknown),
        grants.len(),
    );
}

/// Resends every request whose outcome the client did not learn, with its `command_id`, to
/// whichever server answers: the answer is its first one if it had landed. Returns machine →
/// the outcome then.
fn resolve_unknown(urls: &[String], ops: &[Op]) -> BTreeMap<String, Outcome> {
    let agent = agent(Duration::from_secs(20));
    let mut resolved = BTreeMap::new();
    for op in ops.iter().filter(|op| op.seq().is_none()) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcome = (0..)
            .map(|i| send(&agent, &urls[i % urls.len()], &op.machine))
            .find(|o| {
                matches!(o, Outcome::Ok(_) | Outcome::Refused(..)) || Instant::now() > deadline
            })
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Ok(_) | Outcome::Refused(..)),
            "{}: a resend after the faults was answered {outcome:?}",
            op.machine
        );
        resolved.insert(op.machine.clone(), outcome);
    }
    resolved
}

/// Every answered request is the event at its seq, each machine is activated at most once
/// (exactly once if it was ever ok), and real time orders the seqs.
fn check_history(
    ops: &[Op],
    resolved: &BTreeMap<String, Outcome>,
    log: &BTreeMap<u64, Value>,
    round: usize,
    seed: u64,
) {
    let at = |seq: u64| log.get(&seq).unwrap_or(&Value::Null);
    let mut activated: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (seq, event) in log {
        if event["type"] == "machines_activated" {
            for machine in event["machines"].as_array().unwrap() {
                activated
                    .entry(machine.as_str().unwrap())
                    .or_default()
                    .push(*seq);
            }
        }
    }
    let where_ = format!("round {round}, KEYLEDGER_HISTORY_SEED={seed}");
    for op in ops {
        let outcome = resolved.get(&op.machine).unwrap_or(&op.outcome);
        let logged = activated
            .get(op.machine.as_str())
            .cloned()
            .unwrap_or_default();
        match outcome {
            Outcome::Ok(seq) => {
                assert_eq!(
                    logged,
                    [*seq],
                    "{where_}: {} was told ok at {seq}",
                    op.machine
                );
            }
            Outcome::Refused(code, seq) => {
                assert!(
                    logged.is_empty(),
                    "{where_}: {} refused, activated",
                    op.machine
                );
                let event = at(*seq);
                assert_eq!(event["type"], "activation_refused", "{where_}: {seq}");
                assert_eq!(event["code"], code.as_str(), "{where_}: {seq}");
            }
            other => panic!("{where_}: {} still {other:?} after resending", op.machine),
        }
    }
    let machines: std::collections::BTreeSet<&str> =
        ops.iter().map(|op| op.machine.as_str()).collect();
    for (machine, seqs) in &activated {
        assert!(seqs.len() == 1, "{where_}: {machine} activated at {seqs:?}");
        assert!(
            machines.contains(machine),
            "{where_}: {machine} was never sent"
        );
    }
    check_real_time_order(ops, &where_);
}

/// If A's answer came before B was sent, seq(A) < seq(B): a sweep over invocations in time
/// order, holding the highest seq of every request completed before.
fn check_real_time_order(ops: &[Op], where_: &str) {
    let mut completions: Vec<(Instant, u64, &str)> = ops
        .iter()
        .filter_map(|op| Some((op.completed, op.seq()?, op.machine.as_str())))
        .collect();
    completions.sort();
    let mut invocations: Vec<&Op> = ops.iter().filter(|op| op.seq().is_some()).collect();
    invocations.sort_by_key(|op| op.invoked);
    let (mut next, mut highest): (usize, Option<(u64, &str)>) = (0, None);
    for op in invocations {
        while next < completions.len() && completions[next].0 < op.invoked {
            let (_, seq, machine) = completions[next];
            highest = highest.max(Some((seq, machine)));
            next += 1;
        }
        let seq = op.seq().unwrap();
        if let Some((before, machine)) = highest {
            assert!(
                seq > before,
                "{where_}: {} (seq {seq}) was sent after {machine} (seq {before}) was answered",
                op.machine
            );
        }
    }
}

/// Every grant the licensor was told of is the `request_granted` of its request at its seq,
/// and no request is granted twice.
fn check_grants(grants: &[(String, u64)], log: &BTreeMap<u64, Value>, round: usize) {
    for (id, seq) in grants {
        let event = log.get(seq).unwrap_or(&Value::Null);
        assert_eq!(
            event["type"], "request_granted",
            "round {round}: {id} at {seq}"
        );
        assert_eq!(
            event["request_id"],
            id.as_str(),
            "round {round}: {id} at {seq}"
        );
    }
    let mut granted = std::collections::BTreeSet::new();
    for (seq, event) in log.iter().filter(|(_, e)| e["type"] == "request_granted") {
        let id = event["request_id"].as_str().unwrap();
        assert!(
            granted.insert(id),
            "round {round}: {id} granted again at {seq}"
        );
    }
}

/// A replay of the chain: the MAK's count never passes its limit plus what was granted
/// before, and every refusal for want of activations came when it had none left.
fn check_limit(log: &BTreeMap<u64, Value>, round: usize) {
    let (mut used, mut total) = (0u64, LIMIT);
    for (seq, event) in log {
        match event["type"].as_str() {
            Some("machines_activated") => {
                used += event["machines"].as_array().unwrap().len() as u64;
                let over = format!("round {round}: seq {seq} took the count to {used} of {total}");
                assert!(used <= total, "{over}");
            }
            Some("request_granted") => total += event["amount"].as_u64().unwrap(),
            Some("activation_refused") if event["code"] == "insufficient_activations" => {
                let left = format!("round {round}: seq {seq} refused with {used} of {total}");
                assert_eq!(used, total, "{left}");
            }
            _ => {}
        }
    }
}

/// The checkpoint taken before the faults is a prefix of the log after them.
fn check_consistency(server: &Server, before: &str, pubkey: &str) {
    let old = keyledger_ledger::checkpoint::verify(before, pubkey).unwrap();
    let path = format!("/v1/proofs/consistency?from={}", old.size);
    let (status, proof) = server.get(&path, Some("olga"));
    assert_eq!(status, 200, "{proof}");
    let verified = keyledger_ledger::proof::verify_proof(&proof, pubkey, Some(before));
    assert!(verified.is_ok(), "{verified:?}");
}
