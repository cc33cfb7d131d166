//! PostgreSQL for the tests: a database of its own per test on the server the environment
//! names (`KEYLEDGER_TEST_STORE=postgres`, `KEYLEDGER_TEST_PG`), and whole clusters
//! (`scripts/pg-cluster.sh`) for the failover and fencing tests, which kill servers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the store-agnostic suites run on PostgreSQL this time.
pub fn on_postgres() -> bool {
    match std::env::var("KEYLEDGER_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("redb") | Err(_) => false,
        Ok(other) => panic!("KEYLEDGER_TEST_STORE={other}: expected redb or postgres"),
    }
}

fn server() -> String {
    std::env::var("KEYLEDGER_TEST_PG").expect(
        "KEYLEDGER_TEST_STORE=postgres needs KEYLEDGER_TEST_PG=postgres://USER@HOST:PORT \
         (scripts/pg-cluster.sh start; README, Running replicated)",
    )
}

/// Runs SQL with psql against `url`; answers its unaligned output.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A fresh database on the test server, dropped on drop.
#[derive(Debug)]
pub struct Database {
    name: String,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Database {
    pub fn create() -> Database {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("kl_http_{}_{n}", std::process::id());
        let admin = format!("{}/postgres?target_session_attrs=read-write", server());
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .unwrap();
        psql(&admin, &format!("CREATE DATABASE {name}")).unwrap();
        Database { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}?target_session_attrs=read-write", server(), self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin = format!("{}/postgres?target_session_attrs=read-write", server());
        let _ = psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Some(key) = signing_key_for(Path::new(&self.url())) {
            let _ = std::fs::remove_file(key);
        }
    }
}

/// A PostgreSQL ledger's checkpoint signing key is a file named by `KEYLEDGER_SIGNING_KEY`;
/// the tests keep one per database URL in the temporary directory.
pub fn signing_key_for(data: &Path) -> Option<PathBuf> {
    let data = data.to_str()?;
    if !data.starts_with("postgres") {
        return None;
    }
    let name = blake3::hash(data.as_bytes()).to_hex();
    Some(std::env::temp_dir().join(format!("keyledger-test-{}.ed25519", &name[..16])))
}

/// A free loopback port below Linux's ephemeral range (32768 and up): a port the kernel
/// hands out for `:0` can be taken by any outgoing connection (the HTTP tests open
/// hundreds) before the server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 6_000) as u16;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 6_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether this machine can run PostgreSQL clusters (installed, or root to install them).
pub fn postgres_available() -> bool {
    let installed = Path::new("/usr/lib/postgresql").exists();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    installed || root
}

/// Says a PostgreSQL test cannot run here, or fails it under CI, which must run it.
pub fn skip_without_postgres(test: &str) -> bool {
    if postgres_available() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the PostgreSQL tests ({test})"
    );
    eprintln!(
        "SKIPPED {test}: PostgreSQL is not installed and this is not root; run as root, or \
         `apt-get install postgresql`, to run the PostgreSQL tests"
    );
    true
}

/// A primary and a synchronous standby of our own (`scripts/pg-cluster.sh`), stopped and
/// removed on drop.
pub struct Cluster {
    _parent: tempfile::TempDir,
    pub dir: PathBuf,
    pub primary: u16,
    pub standby: u16,
    /// The names the servers' certificate carries (`KEYLEDGER_PG_TLS_NAMES`), when they
    /// speak TLS.
    pub tls: Option<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster.sh")
}

impl Cluster {
    /// Starts a new pair on free loopback ports, speaking TLS with a certificate of a test
    /// CA (`url` asks for `verify-full`): the failover tests run over TLS.
    pub fn start() -> Cluster {
        Cluster::start_with(Some("DNS:localhost,IP:127.0.0.1"))
    }

    /// A pair without TLS.
    pub fn start_plain() -> Cluster {
        Cluster::start_with(None)
    }

    /// A pair whose certificate names `tls` (`DNS:…,IP:…`), or without TLS.
    pub fn start_with(tls: Option<&str>) -> Cluster {
        let parent = tempfile::tempdir().unwrap();
        // The server runs as the postgres user, who must reach the cluster's directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cluster = Cluster {
            dir: parent.path().join("pg"),
            _parent: parent,
            primary: free_port(),
            standby: free_port(),
            tls: tls.map(str::to_owned),
        };
        let (ok, said) = cluster.run("start");
        assert!(ok, "pg-cluster start: {said}");
        cluster
    }

    /// Runs the script (`action` and its arguments, split at spaces); answers whether it
    /// succeeded, and stdout + stderr.
    pub fn run(&self, action: &str) -> (bool, String) {
        let mut command = Command::new("bash");
        if let Some(names) = &self.tls {
            command
                .env("KEYLEDGER_PG_TLS", "1")
                .env("KEYLEDGER_PG_TLS_NAMES", names);
        }
        let out = command
            .arg(script())
            .args(action.split_whitespace())
            .env("KEYLEDGER_PG_DIR", &self.dir)
            .env("KEYLEDGER_PG_PRIMARY_PORT", self.primary.to_string())
            .env("KEYLEDGER_PG_STANDBY_PORT", self.standby.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Runs `action` and fails the test if the script does.
    pub fn must(&self, action: &str) -> String {
        let (ok, said) = self.run(action);
        assert!(ok, "pg-cluster {action}: {said}");
        said
    }

    /// The URL naming both servers, read-write session: what `serve` is given.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/keyledger?target_session_attrs=read-write{}",
            self.primary,
            self.standby,
            self.tls_params()
        )
    }

    /// `&sslmode=verify-full&sslrootcert=CA` when the servers speak TLS.
    pub fn tls_params(&self) -> String {
        match self.tls {
            Some(_) => format!("&sslmode=verify-full&sslrootcert={}", self.ca().display()),
            None => String::new(),
        }
    }

    /// The test CA's certificate (`KEYLEDGER_PG_TLS`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// The URL of one server alone.
    pub fn url_of(&self, port: u16) -> String {
        let tls = self.tls_params();
        let query = tls.strip_prefix('&').map(|q| format!("?{q}"));
        format!(
            "postgres://postgres@127.0.0.1:{port}/keyledger{}",
            query.unwrap_or_default()
        )
    }

    pub fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        psql(&self.url_of(port), sql)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}
