//! The real service under test: a ledger set up through the real binary, then `keyledger
//! serve` on an ephemeral loopback port, driven by a real HTTP client. Shared by the HTTP
//! test binaries.
//!
//! The ledger is a redb file in a temporary directory, or, with
//! `KEYLEDGER_TEST_STORE=postgres`, a fresh database on the server `KEYLEDGER_TEST_PG`
//! names (`postgres://USER@HOST:PORT[,HOST:PORT]`), dropped with the server.

pub mod pg;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub const AT: &str = "2026-02-01T10:00:00Z";
pub const MAK: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";
pub const KMS: &str = "CDFGH-JKMPQ-RTVWX-Y2346-789BC";

/// Says that a test checks something of the redb file, and is not run on PostgreSQL.
pub fn skip_unless_redb(what: &str) -> bool {
    if pg::on_postgres() {
        eprintln!("not on PostgreSQL: {what} is a property of the redb file");
        return true;
    }
    false
}

/// The binary, on the ledger at `data` (a path or a PostgreSQL URL).
pub fn keyledger_command(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    command.arg("--data").arg(data);
    if let Some(key) = pg::signing_key_for(data) {
        command.env("KEYLEDGER_SIGNING_KEY", key);
    }
    command
}

pub fn keyledger(data: &Path, args: &[&str]) -> String {
    let out = keyledger_command(data).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub struct Server {
    child: Option<Running>,
    serve_args: Vec<String>,
    pub url: String,
    /// The `--data` value: a file's path, or a PostgreSQL URL.
    pub data: PathBuf,
    /// The same, for the library.
    pub location: keyledger_ledger::Location,
    /// The test database, dropped with the server.
    database: Option<pg::Database>,
    /// Reads the server's stderr to its end (the server's exit closes it).
    stderr: Option<std::thread::JoinHandle<String>>,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
    tokens: std::collections::HashMap<&'static str, String>,
}

impl Server {
    /// A ledger with a MAK of `limit`, a KMS host key, roles, tokens; then `serve`.
    pub fn start(limit: u64) -> Server {
        Server::start_with(limit, &[])
    }

    /// [`Server::start`] with more `serve` flags.
    pub fn start_with(limit: u64, serve_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        if pg::on_postgres() {
            let database = pg::Database::create();
            let mut server =
                Server::start_at(dir, PathBuf::from(database.url()), limit, serve_args);
            server.database = Some(database);
            return server;
        }
        let data = dir.path().join("ledger.redb");
        Server::start_at(dir, data, limit, serve_args)
    }

    /// [`Server::start_with`] with the ledger file at `data` (on a small file system, say).
    pub fn start_at(
        dir: tempfile::TempDir,
        data: PathBuf,
        limit: u64,
        serve_args: &[&str],
    ) -> Server {
        keyledger(
            &data,
            &["init", "--operator", "olga", "--at", "2026-01-01T00:00:00Z"],
        );
        let lines = [
            json!({"type": "register_org", "at": AT, "actor": "olga", "org": "contoso", "name": "Contoso"}),
            json!({"type": "register_license_id", "at": AT, "actor": "olga", "license_id": "V100", "org": "contoso",
                   "program": "select", "agreement_number": "S-1"}),
            json!({"type": "register_product", "at": AT, "actor": "olga", "product": "win11-pro", "name": "Windows 11 Pro",
                   "family": "windows_client", "version": "11", "edition": "pro", "key_requirement": "vl_key"}),
            json!({"type": "issue_key", "at": AT, "actor": "olga", "license_id": "V100", "product": "win11-pro",
                   "kind": "mak", "limit": limit, "product_key": MAK}),
            json!({"type": "issue_key", "at": AT, "actor": "olga", "license_id": "V100", "product": "win11-pro",
                   "kind": "kms_host", "product_key": KMS}),
            json!({"type": "assign_role", "at": AT, "actor": "olga", "principal": "rita", "license_id": "V100", "role": "product_key_reader"}),
            json!({"type": "assign_role", "at": AT, "actor": "olga", "principal": "vic", "license_id": "V100", "role": "key_viewer"}),
        ];
        let file = dir.path().join("setup.jsonl");
        std::fs::write(
            &file,
            lines
                .iter()
                .map(|l| l.to_string() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        keyledger(&data, &["apply", file.to_str().unwrap()]);
        let mut tokens = std::collections::HashMap::new();
        for who in ["olga", "rita", "vic", "gone", "nobody"] {
            tokens.insert(
                who,
                keyledger(&data, &["token", "create", "--principal", who])
                    .trim()
                    .to_owned(),
            );
        }
        keyledger(&data, &["token", "revoke", "--principal", "gone"]);
        let (child, url, stderr) = spawn_serve(&data, serve_args);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            child: Some(child),
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
            url,
            location: keyledger_ledger::Location::parse(data.to_str().unwrap()).unwrap(),
            database: None,
            data,
            stderr,
            dir,
            agent,
            tokens,
        }
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        // A connection of its own: a server may close a keep-alive connection after answering
        // without reading a body (a 401 before the body arrived), and a POST is not resent
        // on a pooled connection that closed under it.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent
            .post(format!("{}{path}", self.url))
            .content_type("application/json");
        if let Some(who) = token {
            request = request.header("Authorization", format!("Bearer {}", self.token(who)));
        }
        let mut response = request.send(body).unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.agent.get(format!("{}{path}", self.url));
        if let Some(who) = token {
            request = request.header("Authorization", format!("Bearer {}", self.token(who)));
        }
        let mut response = request.call().unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// A GET answering the status, one response header (if present) and the body.
    pub fn get_with_header(
        &self,
        path: &str,
        token: Option<&str>,
        header: &str,
    ) -> (u16, Option<String>, String) {
        let mut request = self.agent.get(format!("{}{path}", self.url));
        if let Some(who) = token {
            request = request.header("Authorization", format!("Bearer {}", self.token(who)));
        }
        let mut response = request.call().unwrap();
        let value = response
            .headers()
            .get(header)
            .map(|v| v.to_str().unwrap().to_owned());
        (
            response.status().as_u16(),
            value,
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// Announces a body of `bytes` and sends none: the server must refuse it from the
    /// header alone (sending it would race the server's early answer).
    pub fn status_of_oversized_post(&self, path: &str, bytes: usize) -> u16 {
        use std::io::Write;
        let address = self.url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A GET with a raw bearer token (one created outside the fixture's principals).
    pub fn get_with_token(&self, path: &str, token: &str) -> (u16, String) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// The server's `host:port`.
    pub fn address(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }

    /// Sends raw bytes on a new connection and reads until the server closes it or 10 s
    /// pass; returns the status and the body of the first response.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(self.address()).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut text = Vec::new();
        let _ = stream.read_to_end(&mut text);
        let text = String::from_utf8_lossy(&text).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    pub fn token(&self, who: &str) -> String {
        self.tokens
            .get(who)
            .cloned()
            .unwrap_or_else(|| who.to_owned())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    pub fn seq(&self) -> u64 {
        let (_, body) = self.get("/healthz", None);
        serde_json::from_str::<Value>(&body).unwrap()["seq"]
            .as_u64()
            .unwrap()
    }

    /// Stops the server cleanly and starts it again on the same ledger (a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped server again on the same ledger (a new port).
    pub fn start_again(&mut self) {
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        let (child, url, stderr) = spawn_serve(&self.data, &args);
        self.child = Some(child);
        self.url = url;
        self.stderr = stderr;
    }

    /// Waits until the service has folded `seq` into its read models (answers come at the
    /// commit; the fold follows by a moment), at most 10 s.
    pub fn wait_folded(&self, seq: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.seq() < seq {
            assert!(
                std::time::Instant::now() < deadline,
                "seq {seq} never folded"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `/healthz`'s answer once `done` says it is what the test waits for, at most 60 s.
    pub fn wait_health(&self, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, body) = self.get("/healthz", None);
            let body: Value = serde_json::from_str(&body).unwrap();
            if done(status, &body) {
                return (status, body);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/healthz stayed {status} {body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// SIGTERM, wait for a clean exit, and return what the server wrote to stderr (after
    /// checking that it holds no secret).
    pub fn stop(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        let status = child.0.wait().unwrap();
        assert!(status.success(), "the server exits 0 on SIGTERM");
        let said = self.stderr.take().unwrap().join().unwrap();
        self.assert_no_secret_in(&said);
        said
    }

    /// Every server of the suite logs in JSON, access lines on (see [`spawn_serve`]); none
    /// may write a token or a key's text, whatever its test did.
    fn assert_no_secret_in(&self, said: &str) {
        for (who, token) in &self.tokens {
            assert!(
                !said.contains(token.as_str()),
                "{who}'s token is in the log"
            );
        }
        for key in [MAK, KMS] {
            assert!(!said.contains(key), "key text {key} is in the log");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.take());
        // A failing test shows what the server said (its stderr closes with its exit).
        if let Some(said) = self.stderr.take().and_then(|t| t.join().ok()) {
            if std::thread::panicking() {
                eprintln!("--- the server's stderr ---\n{said}--- end ---");
            } else {
                self.assert_no_secret_in(&said);
            }
        }
        drop(self.database.take());
    }
}

/// A child process killed (and reaped) when dropped: a failing test leaves no server running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub type StderrReader = Option<std::thread::JoinHandle<String>>;

/// The URL a `serve` or `witness serve` child prints first (`listening on URL`), from its
/// piped stdout.
pub fn read_listening(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the server printed {line:?}, not its address"))
        .to_owned()
}

/// `keyledger serve` on an ephemeral loopback port: the child, its URL, its stderr's reader.
/// It logs as a log pipeline would read it (`--log-format json`, a line a request) unless the
/// test chose a format, so that the suite's checks for secrets see every field.
pub fn spawn_serve(data: &Path, serve_args: &[&str]) -> (Running, String, StderrReader) {
    let mut command = keyledger_command(data);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    if !serve_args.contains(&"--log-format") {
        command.args(["--log-format", "json"]);
    }
    let mut child = command
        .env_remove("RUST_LOG")
        .args(serve_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = read_listening(&mut child);
    let mut pipe = child.stderr.take().unwrap();
    let stderr = Some(std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    }));
    (Running(child), url, stderr)
}

pub fn activation(machine: &str) -> String {
    json!({"product_key": MAK, "org": "contoso", "method": "online", "machines": [machine]})
        .to_string()
}
