//! Shared by the ledger tests: commands written as the JSON a client would send, a small
//! catalog (one org, one Select license ID, one product, one MAK with known text), and
//! [`Place`], where a test's ledger lives.
//!
//! The suites that use `Place` run against either store: by default a redb file in a
//! temporary directory; with `KEYLEDGER_TEST_STORE=postgres` a fresh database on the server
//! that `KEYLEDGER_TEST_PG` names (`postgres://USER@HOST:PORT[,HOST:PORT]`, no database:
//! each test creates its own and drops it). `.ci/run` runs them both ways.

use std::sync::atomic::{AtomicU32, Ordering};

use keyledger_ledger::Location;

use keyledger_core::Command;
use keyledger_ledger::{wire, Answer, Engine, Submission};
use serde_json::{json, Value};

pub const OPERATOR: &str = "olga";
pub const MAK_TEXT: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";
pub const AT: &str = "2026-01-01T00:00:00Z";

pub fn cmd(value: Value) -> Command {
    wire::command_from_value(value).expect("test commands are well-formed")
}

pub fn catalog(limit: u64) -> Vec<Command> {
    vec![
        cmd(
            json!({"type": "register_org", "at": AT, "actor": OPERATOR, "org": "contoso", "name": "Contoso"}),
        ),
        cmd(
            json!({"type": "register_license_id", "at": AT, "actor": OPERATOR, "license_id": "V100",
                   "org": "contoso", "program": "select", "agreement_number": "A-1"}),
        ),
        cmd(
            json!({"type": "register_product", "at": AT, "actor": OPERATOR, "product": "win11-pro",
                   "name": "Windows 11 Pro", "family": "windows_client", "version": "11", "edition": "pro",
                   "key_requirement": "vl_key"}),
        ),
        cmd(
            json!({"type": "issue_key", "at": AT, "actor": OPERATOR, "license_id": "V100",
                   "product": "win11-pro", "kind": "mak", "limit": limit, "product_key": MAK_TEXT}),
        ),
    ]
}

pub fn activation(machine: &str) -> Command {
    cmd(
        json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK_TEXT,
               "org": "contoso", "method": "online", "machines": [machine]}),
    )
}

pub fn with_id(mut command: Command, id: &str) -> Command {
    command.command_id = Some(keyledger_core::CommandId::new(id).unwrap());
    command
}

/// Runs commands as one non-atomic submission in one batch.
pub fn run(engine: &mut Engine, commands: Vec<Command>) -> Vec<Answer> {
    let submission = Submission::new(commands);
    engine
        .run_batch(&[submission])
        .remove(0)
        .expect("the batch commits")
}

/// A ledger file `ledger.redb` in `dir` (for the tests of the redb store alone).
pub fn new_ledger_file(dir: &std::path::Path, limit: u64) -> Engine {
    let operator = keyledger_core::Principal::new(OPERATOR).unwrap();
    let at = keyledger_core::Timestamp::parse(AT).unwrap();
    let mut engine = keyledger_ledger::init(dir.join("ledger.redb"), operator, at).unwrap();
    let answers = run(&mut engine, catalog(limit));
    assert!(answers.iter().all(|a| a.ok), "{answers:?}");
    engine
}

pub fn new_ledger(place: &Place, limit: u64) -> Engine {
    let operator = keyledger_core::Principal::new(OPERATOR).unwrap();
    let at = keyledger_core::Timestamp::parse(AT).unwrap();
    let mut engine = keyledger_ledger::init(place.location(), operator, at).unwrap();
    let answers = run(&mut engine, catalog(limit));
    assert!(answers.iter().all(|a| a.ok), "{answers:?}");
    engine
}

/// Whether this run tests the PostgreSQL store (`KEYLEDGER_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("KEYLEDGER_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("redb") | Err(_) => false,
        Ok(other) => panic!("KEYLEDGER_TEST_STORE={other}: expected redb or postgres"),
    }
}

/// Says that a test checks something only one store has, and is not run on this one.
pub fn skip_unless_redb(what: &str) -> bool {
    if on_postgres() {
        eprintln!("not on PostgreSQL: {what} is a property of the redb file");
        return true;
    }
    false
}

/// Says that a test checks something only PostgreSQL has, and is not run on redb.
pub fn skip_unless_postgres(what: &str) -> bool {
    if !on_postgres() {
        eprintln!("PostgreSQL only: {what} (run with KEYLEDGER_TEST_STORE=postgres)");
        return true;
    }
    false
}

/// Where one test's ledger lives (see the module doc). Dropping it drops the database.
pub struct Place {
    pub dir: tempfile::TempDir,
    location: Location,
    database: Option<String>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Place {
    pub fn new() -> Place {
        Place::named("ledger")
    }

    /// A second, independent place for the same test (`name` tells them apart on redb).
    pub fn named(name: &str) -> Place {
        let dir = tempfile::tempdir().unwrap();
        if !on_postgres() {
            let location = Location::File(dir.path().join(format!("{name}.redb")));
            return Place {
                dir,
                location,
                database: None,
            };
        }
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let database = format!("kl_test_{}_{n}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        admin(&format!("CREATE DATABASE {database}"));
        let url = format!("{}/{database}?target_session_attrs=read-write", server());
        Place {
            dir,
            location: Location::parse(&url).unwrap(),
            database: Some(database),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A place for a ledger that does not exist (and is not created).
    pub fn missing(&self) -> Location {
        match &self.location {
            Location::File(_) => Location::File(self.dir.path().join("nope.redb")),
            Location::Postgres(_) => Location::parse(&format!(
                "{}/postgres?target_session_attrs=read-write",
                server()
            ))
            .unwrap(),
        }
    }
}

impl Place {
    /// Runs SQL in this place's database (PostgreSQL only); answers the first column of
    /// each row as text.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`Place::sql`], answering the server's error instead of failing the test.
    pub fn try_sql(&self, sql: &str) -> Result<Vec<String>, String> {
        let database = self.database.as_ref().expect("a PostgreSQL place");
        let url = format!("{}/{database}?target_session_attrs=read-write", server());
        query(&url, sql)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(database) = &self.database {
            admin(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        }
    }
}

fn server() -> String {
    std::env::var("KEYLEDGER_TEST_PG").expect(
        "KEYLEDGER_TEST_STORE=postgres needs KEYLEDGER_TEST_PG=postgres://USER@HOST:PORT \
         (scripts/pg-cluster.sh start; see README, Running replicated)",
    )
}

/// Runs one statement on the server's `postgres` database.
pub fn admin(sql: &str) {
    let url = format!("{}/postgres?target_session_attrs=read-write", server());
    query(&url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn query(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        tokio::spawn(connection);
        let messages = client
            .simple_query(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            })?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("").to_owned())
                }
                _ => None,
            })
            .collect())
    })
}

/// Every history (`EventBody::named`) the log holds equals what the store's index answers,
/// whole and a page at a time (issue 31, item 3: histories are read from disk).
/// Where a name is first named (event, its n-th name), and every seq naming it.
type NamedSeqs = ((usize, usize), Vec<u64>);

pub fn assert_histories_match(store: &keyledger_ledger::Store) {
    let mut events = Vec::new();
    keyledger_ledger::walk(store, 1, |r| {
        events.push((r.seq, r.event.body.clone()));
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap();
    // index bytes → (event, its n-th name) to ask with, and the seqs naming it.
    let mut want: std::collections::BTreeMap<Vec<u8>, NamedSeqs> =
        std::collections::BTreeMap::new();
    for (i, (seq, body)) in events.iter().enumerate() {
        for (j, named) in body.named().iter().enumerate() {
            let entry = want
                .entry(named.index_bytes())
                .or_insert(((i, j), Vec::new()));
            if entry.1.last() != Some(seq) {
                entry.1.push(*seq);
            }
        }
    }
    assert!(!want.is_empty());
    for ((i, j), seqs) in want.values() {
        let named = events[*i].1.named()[*j];
        assert_eq!(
            &store.named_seqs(&named, 0, 100_000).unwrap(),
            seqs,
            "{named:?}"
        );
        assert_eq!(
            store.named_seqs(&named, seqs[0], 2).unwrap(),
            seqs[1..].iter().take(2).copied().collect::<Vec<_>>()
        );
    }
}
