//! The PostgreSQL store: the same blocks, Merkle nodes, secrets, answers, snapshots and
//! tokens as the redb file, as rows of the `keyledger` schema (`schema.sql`, docs/format.md).
//!
//! Durability is the server's: a commit returns once PostgreSQL says it is committed, which
//! with `synchronous_commit = on` and a synchronous standby means it is on two machines.
//!
//! One writer at a time, fenced in the database itself:
//! - a writer holds a session advisory lock ([`WRITER_LOCK`]) for as long as it runs, so a
//!   second `serve` waits or refuses instead of racing (the lock dies with its session);
//! - on taking the lock it bumps the epoch in `keyledger.head`, and every append is one
//!   statement that moves that row from the batch's start head to its new head only if the
//!   epoch is still the writer's (a `PRIMARY KEY` on the first seq backs it up): a writer that
//!   lost its session, and whose successor took a new epoch, is refused, never silently
//!   applied, even if its old connection lingers.
//!
//! A commit whose outcome is unknown (the connection dropped, or the server's "canceling
//! wait for synchronous replication" warning: committed locally, maybe not replicated) is
//! reported as failed; the engine then folds the log again from the store, which resolves
//! it, and a resend with the same `command_id` gets the first answer if it had landed.
//!
//! The store's API is synchronous (the engine runs on its own thread, readers call it from
//! blocking tasks); each call runs on a small tokio runtime of the store's own.

use std::future::Future;
use std::sync::Mutex;

mod append;
mod schema;
mod server;
mod tls;
mod writer;

use deadpool_postgres::Pool;

use append::{append_params, hash32, int8, uint8, Param};
use schema::{MARK_2, MARK_5, SCHEMA, UPGRADE_2, UPGRADE_3, UPGRADE_5};
use server::{
    choose_server, pg_error, pool_error, pool_of, BULK_BOUND, CALL_BOUND, CONNECTION_FAILED,
};
pub use writer::WRITER_LOCK;
use writer::{Claim, WriterSession};

use crate::backend::{Backend, BatchWrite, BlockVisitor, Head, Row, StoredAnswer, SNAPSHOTS_KEPT};
use crate::chain::{ChainHash, GENESIS};
use crate::error::{Error, Result};
use crate::location::PgUrl;

/// The schema version this build writes and reads.
pub const PG_SCHEMA_VERSION: u8 = 5;
/// The oldest schema this build still opens (and upgrades when it first writes).
pub const PG_SCHEMA_OLDEST: u8 = 1;

/// Blocks read per round trip by a walk.
const BLOCKS_PER_PAGE: i64 = 64;

pub struct PgStore {
    label: String,
    /// The servers the URL names, in its order.
    servers: Vec<PgUrl>,
    /// The one this store talks to (see [`choose_server`]).
    current: Mutex<PgUrl>,
    /// `Some` until drop, which shuts it down without blocking (it may be dropped inside
    /// another runtime, the HTTP service's).
    runtime: Option<tokio::runtime::Runtime>,
    /// Reader connections to `current`.
    pool: std::sync::RwLock<Pool>,
    /// When the server was last chosen again after a failed connection (at most twice a
    /// second, however many calls fail).
    rechosen: Mutex<Option<std::time::Instant>>,
    /// The writer's own session: it holds [`WRITER_LOCK`] and appends every block.
    writer: Mutex<Option<WriterSession>>,
    /// The ledger's machine hash key, once read (it never changes).
    hasher: std::sync::OnceLock<crate::machines::MachineHasher>,
    /// The writer's machine index rows not yet in `machine_buckets`.
    machines: Mutex<crate::machines::Pending>,
    /// Flushes of machine index rows (every 64 batches); every 16th merges small bucket rows.
    flushes: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Give the writer lock back before the session goes: the server would release it
        // when it notices the closed socket, but a writer started right after this one
        // (a restart) must not find it still held.
        let session = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(session) = session.filter(|s| !s.client.is_closed()) {
            let _ = self.run(async move {
                let unlock = session
                    .client
                    .execute("SELECT pg_advisory_unlock_all()", &[]);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), unlock).await;
                Ok(())
            });
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// A new writer session on the current server (see [`writer::open_session`]).
    fn writer_session(&self, claim: Claim) -> Result<WriterSession> {
        let server = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.run_within(
            writer::claim_bound(claim),
            writer::open_session(server, claim),
        )
    }

    fn connect(url: &PgUrl) -> Result<PgStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyledger-pg")
            .enable_all()
            .build()?;
        let servers = url.servers();
        let current = {
            let servers = servers.clone();
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            runtime.spawn(async move {
                let _ = tx.send(choose_server(&servers).await);
            });
            rx.recv()
                .unwrap_or_else(|_| Err(Error::Storage("choosing a server".to_owned())))
                .map_err(|e| Error::Storage(format!("{url}: {e}")))?
        };
        let pool = pool_of(&current)?;
        Ok(PgStore {
            label: url.to_string(),
            servers,
            current: Mutex::new(current),
            runtime: Some(runtime),
            pool: std::sync::RwLock::new(pool),
            rechosen: Mutex::new(None),
            writer: Mutex::new(None),
            hasher: std::sync::OnceLock::new(),
            machines: Mutex::new(Default::default()),
            flushes: Default::default(),
        })
    }

    /// The reader pool (a handle: the pool itself is shared).
    fn pool(&self) -> Pool {
        self.pool.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Chooses the server again (after a failover the primary is another) and points the
    /// reader pool at it if it changed; answers whether it did.
    fn rechoose_server(&self) -> Result<bool> {
        let servers = self.servers.clone();
        // Each server's probe has its own bound (see `choose_server`).
        let chosen = self.run_within(None, async move { choose_server(&servers).await })?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if *current == chosen {
            return Ok(false);
        }
        *self.pool.write().unwrap_or_else(|e| e.into_inner()) = pool_of(&chosen)?;
        tracing::warn!(
            event = "primary_changed",
            from = %*current,
            to = %chosen,
            "keyledger: the PostgreSQL primary is now {chosen} (was {})",
            *current
        );
        *current = chosen;
        Ok(true)
    }

    /// The saved filter's generation named whole and its chunks (`None`: none, or a schema
    /// before 5).
    fn saved_filter_marker(&self) -> Result<Option<(u64, u32)>> {
        if self.format_version()? < 5 {
            return Ok(None);
        }
        let marker = self.read(
            "saved filter",
            "SELECT value FROM keyledger.meta WHERE key = 'saved_filter'",
            vec![],
            |rows| Ok(rows.first().map(|row| row.get::<_, Vec<u8>>(0))),
        )?;
        Ok(marker.and_then(|m| crate::pair_filter::parse_marker(&m)))
    }

    /// Creates the schema in the database the URL names; refuses one that has it already.
    pub fn create(url: &PgUrl) -> Result<PgStore> {
        let store = PgStore::connect(url)?;
        let label = store.label.clone();
        let pool = store.pool();
        store.run(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let exists: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'keyledger')",
                    &[],
                )
                .await
                .map_err(|e| pg_error("schema check", e))?
                .get(0);
            if exists {
                return Err(Error::Exists(label));
            }
            client
                .batch_execute(&format!(
                    "BEGIN;\n{SCHEMA}\n{UPGRADE_2}\n{UPGRADE_3}\n{UPGRADE_5}\n{MARK_5}\nCOMMIT;"
                ))
                .await
                .map_err(|e| pg_error("creating the keyledger schema", e))
        })?;
        Ok(store)
    }

    /// Connects and checks the schema version.
    pub fn open(url: &PgUrl) -> Result<PgStore> {
        let store = PgStore::connect(url)?;
        match store.format_version() {
            Err(Error::NotALedger(_)) => Err(Error::Missing(store.label.clone())),
            Err(err) => Err(err),
            Ok(PG_SCHEMA_OLDEST..=PG_SCHEMA_VERSION) => Ok(store),
            Ok(found) => Err(Error::FormatVersion {
                path: store.label.clone(),
                found,
                expected: PG_SCHEMA_VERSION,
            }),
        }
    }

    /// Runs `work` on the store's runtime and waits for it (from any thread, in a runtime
    /// or not: the wait is on a plain channel).
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.run_within(Some(CALL_BOUND), work)
    }

    /// [`Self::run`], given up after `bound` (none: waits as long as the work does). A call
    /// given up counts as a lost connection: what it sent may or may not have been done.
    fn run_within<T: Send + 'static>(
        &self,
        bound: Option<std::time::Duration>,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let label = self.label.clone();
        runtime.spawn(async move {
            let result = match bound {
                None => work.await,
                Some(bound) => tokio::time::timeout(bound, work).await.unwrap_or_else(|_| {
                    Err(Error::Storage(format!(
                        "{CONNECTION_FAILED} ({label}): no answer within {} s, so the outcome \
                         of what was sent is unknown",
                        bound.as_secs()
                    )))
                }),
            };
            let _ = tx.send(result);
        });
        let result = rx.recv().unwrap_or_else(|_| {
            Err(Error::Storage(format!(
                "{}: a PostgreSQL call ended without an answer",
                self.label
            )))
        });
        if matches!(&result, Err(Error::Storage(why)) if why.starts_with(CONNECTION_FAILED)) {
            self.after_connection_failure();
        }
        result
    }

    /// A connection failed: the server may be gone and another promoted, so choose again
    /// (the writer's session follows at its next [`Backend::reopen`]).
    fn after_connection_failure(&self) {
        {
            let mut last = self.rechosen.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if last.is_some_and(|t| now < t + std::time::Duration::from_millis(500)) {
                return;
            }
            *last = Some(now);
        }
        let _ = self.rechoose_server();
    }

    /// Runs one query on a pooled reader connection.
    fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<Param>,
        decode: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.read_within(CALL_BOUND, what, sql, params, decode)
    }

    /// [`Self::read`] with its own bound: [`BULK_BOUND`] for many rows or large values.
    fn read_within<T: Send + 'static>(
        &self,
        bound: std::time::Duration,
        what: &'static str,
        sql: &'static str,
        params: Vec<Param>,
        decode: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.pool();
        self.run_within(Some(bound), async move {
            let client = pool.get().await.map_err(pool_error)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(Param::as_sql).collect();
            let statement = prepared(&client, what, sql).await?;
            let rows = client
                .query(&statement, &refs)
                .await
                .map_err(|e| pg_error(what, e))?;
            decode(rows)
        })
    }

    /// Makes `pending` hold the machine index rows of the blocks after the stored watermark
    /// up to seq `to` (a no-op while this writer's batches follow one another).
    fn machines_caught_up(&self, pending: &mut crate::machines::Pending, to: u64) -> Result<()> {
        if pending.to == Some(to) {
            return Ok(());
        }
        let through = self.machine_watermark()?;
        let hasher = self.machine_hasher()?;
        let mut rows = crate::machines::IndexRows::default();
        let mut batches = 0;
        self.for_each_block_with_head(through + 1, &mut |key, bytes| {
            if key > to {
                return Ok(std::ops::ControlFlow::Break(()));
            }
            let more = hasher.rows_of_block(key, bytes)?;
            // The pair index is redb's (this store settles pairs from the machine index).
            rows.machines.extend(more.machines);
            batches += 1;
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        *pending = crate::machines::Pending::derived(rows, to, batches);
        Ok(())
    }

    /// Schema 2 or 3 to 4: the history rows ([`keyledger_core::EventBody::named`]) of every
    /// block up to the machine index's watermark (those after it are derived with the pending
    /// rows), added to their buckets 100,000 rows at a time. An upgrade cut short is done
    /// again; a history read that finds a seq twice keeps it once.
    fn build_named(&self) -> Result<()> {
        let through = self.machine_watermark()?;
        let hasher = self.machine_hasher()?;
        let mut rows = Vec::new();
        let mut last = 0;
        let put = |rows: &mut Vec<crate::machines::MachineRow>, last: u64| -> Result<()> {
            let [buckets, seqs, bytes] = append::bucket_params(rows, Some(last))?;
            self.execute(
                "history rows",
                "INSERT INTO keyledger.machine_buckets (bucket, last_seq, bytes) \
                 SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[]) \
                 ON CONFLICT (bucket, last_seq) DO UPDATE \
                 SET bytes = keyledger.machine_buckets.bytes || EXCLUDED.bytes",
                vec![buckets, seqs, bytes],
            )?;
            rows.clear();
            Ok(())
        };
        self.for_each_block_with_head(1, &mut |key, bytes| {
            if key > through {
                return Ok(std::ops::ControlFlow::Break(()));
            }
            rows.extend(hasher.named_rows_of_block(key, bytes)?);
            last = key;
            if rows.len() >= 100_000 {
                put(&mut rows, last)?;
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        if !rows.is_empty() {
            put(&mut rows, last)?;
        }
        Ok(())
    }

    /// The seq the machine buckets hold every row through.
    fn machine_watermark(&self) -> Result<u64> {
        self.read(
            "machine index watermark",
            "SELECT value FROM keyledger.meta WHERE key = 'machine_index_through'",
            Vec::new(),
            |rows| {
                let bytes: Vec<u8> = rows.first().map(|r| r.get(0)).unwrap_or_default();
                Ok(<[u8; 8]>::try_from(bytes.as_slice()).map_or(0, u64::from_le_bytes))
            },
        )
    }

    /// Merges each bucket's rows under 64 KiB into one (the bucket's entries stay as they
    /// are, in another row), so a lookup reads a few rows a bucket however long the log.
    fn merge_small_buckets(&self) -> Result<()> {
        let small = self.read(
            "small machine buckets",
            "SELECT bucket, last_seq, bytes FROM keyledger.machine_buckets \
             WHERE length(bytes) < 65536 ORDER BY bucket, last_seq",
            Vec::new(),
            |rows| {
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            r.get::<_, i32>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, Vec<u8>>(2),
                        )
                    })
                    .collect::<Vec<_>>())
            },
        )?;
        let mut merged: std::collections::BTreeMap<i32, (Vec<i64>, Vec<u8>)> = Default::default();
        for (bucket, last_seq, bytes) in small {
            let (seqs, all) = merged.entry(bucket).or_default();
            seqs.push(last_seq);
            all.extend_from_slice(&bytes);
        }
        merged.retain(|_, (seqs, _)| seqs.len() > 1);
        if merged.is_empty() {
            return Ok(());
        }
        let (mut gone_buckets, mut gone_seqs) = (Vec::new(), Vec::new());
        let (mut buckets, mut lasts, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
        for (bucket, (seqs, all)) in merged {
            for seq in &seqs {
                gone_buckets.push(bucket);
                gone_seqs.push(*seq);
            }
            buckets.push(bucket);
            lasts.push(*seqs.iter().max().expect("more than one"));
            bytes.push(all);
        }
        // One statement: the merged rows replace theirs (each takes the key of the newest
        // of its rows, deleted by the same statement).
        self.execute(
            "merging machine buckets",
            "WITH gone AS (DELETE FROM keyledger.machine_buckets \
                 WHERE (bucket, last_seq) IN (SELECT * FROM unnest($1::integer[], $2::bigint[])) \
                 RETURNING 1) \
             INSERT INTO keyledger.machine_buckets (bucket, last_seq, bytes) \
             SELECT b, l - 1, y FROM unnest($3::integer[], $4::bigint[], $5::bytea[]) AS t(b, l, y) \
             WHERE (SELECT count(*) FROM gone) = cardinality($1::integer[])",
            vec![
                Param::Int4s(gone_buckets),
                Param::Int8s(gone_seqs),
                Param::Int4s(buckets),
                Param::Int8s(lasts),
                Param::Byteses(bytes),
            ],
        )?;
        Ok(())
    }

    /// Runs statements (DDL) on a pooled connection, as one simple-query batch.
    fn batch(&self, sql: &str) -> Result<()> {
        let pool = self.pool();
        let sql = sql.to_owned();
        self.run_within(Some(BULK_BOUND), async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error("schema upgrade", e))
        })
    }

    /// Runs one statement on a pooled connection; answers the rows it changed.
    fn execute(&self, what: &'static str, sql: &'static str, params: Vec<Param>) -> Result<u64> {
        let pool = self.pool();
        self.run_within(Some(BULK_BOUND), async move {
            let client = pool.get().await.map_err(pool_error)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(Param::as_sql).collect();
            let statement = prepared(&client, what, sql).await?;
            client
                .execute(&statement, &refs)
                .await
                .map_err(|e| pg_error(what, e))
        })
    }

    /// Says why a commit acknowledged by this server would not survive its loss, if it
    /// would not: no synchronous standby is connected, or `synchronous_commit` is off.
    fn replication_warning(&self) -> Result<Option<String>> {
        let label = self.label.clone();
        self.read(
            "replication check",
            "SELECT current_setting('synchronous_commit'), \
                    current_setting('synchronous_standby_names'), \
                    (SELECT count(*) FROM pg_stat_replication \
                      WHERE sync_state IN ('sync', 'quorum'))",
            Vec::new(),
            move |rows| {
                let row = &rows[0];
                let (commit, names, synced): (String, String, i64) =
                    (row.get(0), row.get(1), row.get(2));
                Ok(if commit == "off" || commit == "local" {
                    Some(format!(
                        "{label}: synchronous_commit is {commit}: an acknowledged commit can be \
                         lost with this server"
                    ))
                } else if names.trim().is_empty() || synced == 0 {
                    Some(format!(
                        "{label}: no synchronous standby is connected \
                         (synchronous_standby_names = '{names}'): an acknowledged commit is on \
                         this server only, and lost with it"
                    ))
                } else {
                    None
                })
            },
        )
    }

    /// The writer's epoch, when this store is the writer.
    pub fn writer_epoch(&self) -> Option<i64> {
        let session = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        session.as_ref().map(|s| s.epoch)
    }

    fn head_now(&self) -> Result<Head> {
        self.read(
            "head",
            "SELECT seq, hash FROM keyledger.head",
            Vec::new(),
            |rows| match rows.first() {
                None => Err(Error::Corrupt(crate::error::Corruption::Undecodable {
                    seq: 0,
                    why: "the head row is missing".to_owned(),
                })),
                Some(row) => Ok(Head {
                    seq: uint8(row.get(0), "seq")?,
                    hash: hash32(row.get(1), "head")?,
                }),
            },
        )
    }

    fn blocks_page(&self, from: u64, through: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        self.read_within(
            BULK_BOUND,
            "blocks",
            "SELECT first_seq, bytes FROM keyledger.blocks \
             WHERE first_seq >= $1 AND first_seq <= $2 ORDER BY first_seq LIMIT $3",
            vec![
                Param::Int8(int8(from)?),
                Param::Int8(int8(through)?),
                Param::Int8(BLOCKS_PER_PAGE),
            ],
            |rows| {
                rows.iter()
                    .map(|row| Ok((uint8(row.get(0), "seq")?, row.get::<_, Vec<u8>>(1))))
                    .collect()
            },
        )
    }
}

/// `sql` prepared on a pooled connection, once per connection (deadpool's cache).
async fn prepared(
    client: &deadpool_postgres::Client,
    what: &str,
    sql: &str,
) -> Result<tokio_postgres::Statement> {
    client
        .prepare_cached(sql)
        .await
        .map_err(|e| pg_error(what, e))
}

/// The statement that stores one copied row, and its values.
fn row_insert(row: &Row) -> Result<(&'static str, Vec<Param>)> {
    Ok(match row {
        Row::Secret(key_id, text) => (
            "INSERT INTO keyledger.secrets VALUES ($1, $2)",
            vec![Param::Int8(int8(*key_id)?), Param::Text(text.clone())],
        ),
        Row::FirstAnswer(key, value) => (
            "INSERT INTO keyledger.first_answers VALUES ($1, $2)",
            vec![Param::Text(key.clone()), Param::Bytes(value.clone())],
        ),
        Row::LegacyAnswer(key, value) => (
            "INSERT INTO keyledger.answers VALUES ($1, $2)",
            vec![Param::Text(key.clone()), Param::Bytes(value.clone())],
        ),
        Row::Snapshot(seq, bytes) => (
            "INSERT INTO keyledger.snapshots VALUES ($1, $2)",
            vec![Param::Int8(int8(*seq)?), Param::Bytes(bytes.clone())],
        ),
        Row::Token(digest, principal) => (
            "INSERT INTO keyledger.tokens VALUES ($1, $2)",
            vec![Param::Text(digest.clone()), Param::Text(principal.clone())],
        ),
    })
}

impl Backend for PgStore {
    fn label(&self) -> &str {
        &self.label
    }

    fn format_version(&self) -> Result<u8> {
        let label = self.label.clone();
        let pool = self.pool();
        self.run(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let present: bool = client
                .query_one("SELECT to_regclass('keyledger.meta') IS NOT NULL", &[])
                .await
                .map_err(|e| pg_error("schema check", e))?
                .get(0);
            if !present {
                return Err(Error::NotALedger(label));
            }
            let row = client
                .query_opt(
                    "SELECT value FROM keyledger.meta WHERE key = 'format_version'",
                    &[],
                )
                .await
                .map_err(|e| pg_error("format version", e))?;
            match row {
                None => Err(Error::NotALedger(label)),
                Some(row) => Ok(row.get::<_, Vec<u8>>(0).first().copied().unwrap_or(0)),
            }
        })
    }

    /// Schema 1 to 2: the machine index's table (its rows are built by `Store::upgrade_format`
    /// before this marks the schema); 2 to 3: the consumers' table; 3 to 4: the history rows
    /// of the blocks up to the watermark; 4 to 5: the saved filter's table (empty).
    fn upgrade_format(&self) -> Result<()> {
        let version = self.format_version()?;
        if version >= PG_SCHEMA_VERSION {
            return Ok(());
        }
        if version < 2 {
            // `Store::upgrade_format` put the rows of every block: the watermark is the head.
            let head = self.head()?.seq;
            self.batch(UPGRADE_2)?;
            self.execute(
                "machine index watermark",
                "UPDATE keyledger.meta SET value = $1 WHERE key = 'machine_index_through'",
                vec![Param::Bytes(head.to_le_bytes().to_vec())],
            )?;
            self.batch(&format!("BEGIN;\n{MARK_2}\nCOMMIT;"))?;
        } else if version < 4 {
            self.build_named()?;
        }
        self.batch(&format!(
            "BEGIN;\n{UPGRADE_3}\n{UPGRADE_5}\n{MARK_5}\nCOMMIT;"
        ))
    }

    fn machine_index_missing(&self) -> Result<bool> {
        Ok(self.format_version()? < 2)
    }

    fn history_index_missing(&self) -> Result<bool> {
        Ok(self.format_version()? < 4)
    }

    fn put_machine_rows(&self, rows: &crate::machines::IndexRows) -> Result<()> {
        let rows = &rows.machines[..];
        self.batch(UPGRADE_2)?;
        let last = rows.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
        let [buckets, seqs, bytes] = append::bucket_params(rows, Some(last))?;
        // A chunk of an interrupted upgrade may be written again: the rows are the same.
        self.execute(
            "machine rows",
            "INSERT INTO keyledger.machine_buckets (bucket, last_seq, bytes) \
             SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (bucket, last_seq) DO NOTHING",
            vec![buckets, seqs, bytes],
        )?;
        Ok(())
    }

    fn machine_hasher(&self) -> Result<crate::machines::MachineHasher> {
        if let Some(hasher) = self.hasher.get() {
            return Ok(*hasher);
        }
        let made: [u8; 16] = rand::random();
        // Made once: a second writer racing here keeps the first key.
        self.execute(
            "machine hash key",
            "INSERT INTO keyledger.meta (key, value) VALUES ('machine_hash_key', $1) \
             ON CONFLICT (key) DO NOTHING",
            vec![Param::Bytes(made.to_vec())],
        )?;
        let key = self.read(
            "machine hash key",
            "SELECT value FROM keyledger.meta WHERE key = 'machine_hash_key'",
            Vec::new(),
            |rows| {
                let bytes: Vec<u8> = rows
                    .first()
                    .map(|r| r.get(0))
                    .ok_or_else(|| Error::Storage("the machine hash key is gone".to_owned()))?;
                <[u8; 16]>::try_from(bytes.as_slice())
                    .map_err(|_| Error::Storage("the machine hash key is not 16 bytes".to_owned()))
            },
        )?;
        Ok(*self
            .hasher
            .get_or_init(|| crate::machines::MachineHasher(key)))
    }

    fn machine_seqs(&self, h: u64, after: u64, limit: usize) -> Result<Vec<u64>> {
        let bucket = (h >> 52) as i32;
        let stored = self.read(
            "machine bucket",
            "SELECT bytes FROM keyledger.machine_buckets WHERE bucket = $1",
            vec![Param::Int4(bucket)],
            |rows| {
                Ok(rows
                    .iter()
                    .map(|r| r.get::<_, Vec<u8>>(0))
                    .collect::<Vec<_>>())
            },
        )?;
        let mut seqs = Vec::new();
        for bytes in &stored {
            if !bytes.len().is_multiple_of(16) {
                return Err(Error::Storage(format!(
                    "machine bucket {bucket} is damaged"
                )));
            }
            for entry in bytes.chunks_exact(16) {
                let eh = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
                let seq = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
                if eh == h && seq > after {
                    seqs.push(seq);
                }
            }
        }
        // Rows after the watermark: the writer's pending ones, or derived from the blocks.
        let head = self.head()?.seq;
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        self.machines_caught_up(&mut pending, head)?;
        let seqs = pending.with_candidates(seqs, h, after, limit);
        if self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            // A reader's rows are a snapshot: derived again at the next lookup.
            *pending = Default::default();
        }
        Ok(seqs)
    }

    fn claim_writer(&self, wait: bool) -> Result<()> {
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| !s.client.is_closed()) {
            return Ok(());
        }
        loop {
            match self.writer_session(if wait { Claim::Wait } else { Claim::Once }) {
                Ok(session) => {
                    *slot = Some(session);
                    return Ok(());
                }
                // A writer waiting for another outlives a failover: the failed connection
                // chose the server again (`after_connection_failure`); wait on the primary
                // there is now. (Found by tests/pg_history.rs: it died instead.)
                Err(Error::Storage(why)) if wait && why.starts_with(CONNECTION_FAILED) => {
                    std::thread::sleep(writer::CLAIM_POLL);
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn commit(&self, batch: &BatchWrite) -> Result<()> {
        let (client, append, epoch, warnings, lost) = {
            let slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let session = slot.as_ref().ok_or(Error::Unavailable(
                "this PostgreSQL store is not the ledger's writer (no claim_writer)",
            ))?;
            (
                session.client.clone(),
                session.append.clone(),
                session.epoch,
                session.warnings.clone(),
                session.lost.clone(),
            )
        };
        warnings.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mut pending = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        self.machines_caught_up(&mut pending, batch.start.seq)?;
        let to = batch.head.map_or(batch.start.seq, |h| h.seq);
        // Every 64 batches: a flush is a row a bucket, and rows are what PostgreSQL pays for.
        let flushed = pending.flush_with(&batch.index, 64);
        let flush = flushed.is_some();
        let index = flushed.as_ref().map(|rows| (&rows.machines[..], to));
        let params = append_params(epoch, batch, index)?;
        let row = self
            .run_within(Some(CALL_BOUND), async move {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(Param::as_sql).collect();
                client
                    .query_one(&append, &refs)
                    .await
                    .map_err(|e| match e.as_db_error() {
                        Some(_) => pg_error("append", e),
                        None => Error::Storage(format!(
                            "{CONNECTION_FAILED} (append): lost during the append, its outcome \
                             is unknown: {e}"
                        )),
                    })
            })
            .inspect_err(|e| {
                if matches!(e, Error::Storage(why) if why.starts_with(CONNECTION_FAILED)) {
                    // The session may still be waiting on the server: the next reopen
                    // replaces it (and ends its backend) rather than sending more down it.
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            })?;
        appended(&row, epoch, batch.start.seq, &warnings)?;
        pending.committed(&batch.index, flush, to);
        drop(pending);
        if flush
            && self
                .flushes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % 16
                == 15
        {
            // Derived data: a merge that fails is tried again 16 flushes later.
            let _ = self.merge_small_buckets();
        }
        Ok(())
    }

    /// Chooses the server again (after a failover the primary is another one) and, if this
    /// store is the writer and its session was lost or is on another server, claims the
    /// ledger again there, checking that no one else took an epoch meanwhile (else this
    /// writer is fenced for good).
    fn reopen(&self) -> Result<()> {
        self.rechoose_server()?;
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(old) = slot.as_ref() else {
            return Ok(());
        };
        let lost = old.lost.load(std::sync::atomic::Ordering::SeqCst);
        if old.server == current && !old.client.is_closed() && !lost {
            return Ok(());
        }
        // The old session's backend may still hold the writer lock (a server that froze, a
        // commit that waits for its standby): on the same server, end it and wait for the
        // lock; on another, it is not ours to touch. The old session is kept (ended) until a
        // new one replaces it, so a failed attempt is tried again at the next reopen.
        let claim = Claim::Again(match old.server == current {
            true => Some(old.backend_pid),
            false => None,
        });
        old.end();
        old.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        let session = self.writer_session(claim).inspect_err(|e| {
            if matches!(e, Error::Fenced(_)) {
                tracing::error!(event = "writer_fenced", why = %e, "keyledger: {e}");
                *slot = None;
            }
        })?;
        tracing::info!(
            event = "writer_session_renewed",
            server = %session.server,
            epoch = session.epoch,
            "keyledger: the writer's PostgreSQL session is renewed on {} at epoch {}",
            session.server,
            session.epoch
        );
        *slot = Some(session);
        Ok(())
    }

    fn head(&self) -> Result<Head> {
        self.head_now()
    }

    fn durability_warning(&self) -> Result<Option<String>> {
        self.replication_warning()
    }

    fn for_each_block_with_head(
        &self,
        from_key: u64,
        visit: &mut BlockVisitor<'_>,
    ) -> Result<Head> {
        // Blocks are never changed once written, so every block up to the head read first is
        // the same in any later read: paging needs no long transaction.
        let head = self.head_now()?;
        let mut next = from_key;
        while next <= head.seq {
            let page = self.blocks_page(next, head.seq)?;
            let Some(&(last_key, _)) = page.last() else {
                break;
            };
            for (key, bytes) in &page {
                if visit(*key, bytes)?.is_break() {
                    return Ok(head);
                }
            }
            next = last_key + 1;
        }
        Ok(head)
    }

    fn block_containing(&self, seq: u64) -> Result<Option<(u64, ChainHash)>> {
        self.read(
            "block containing",
            "SELECT b.first_seq, \
                    (SELECT p.head FROM keyledger.blocks p WHERE p.first_seq < b.first_seq \
                      ORDER BY p.first_seq DESC LIMIT 1) \
             FROM keyledger.blocks b WHERE b.first_seq <= $1 ORDER BY b.first_seq DESC LIMIT 1",
            vec![Param::Int8(int8(seq.min(i64::MAX as u64))?)],
            |rows| match rows.first() {
                None => Ok(None),
                Some(row) => {
                    let key = uint8(row.get(0), "seq")?;
                    let prev: Option<Vec<u8>> = row.get(1);
                    let prev = match prev {
                        None => GENESIS,
                        Some(bytes) => hash32(&bytes, "head")?,
                    };
                    Ok(Some((key, prev)))
                }
            },
        )
    }

    fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.read(
            "block",
            "SELECT bytes FROM keyledger.blocks WHERE first_seq = $1",
            vec![Param::Int8(int8(key)?)],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.read(
            "last block",
            "SELECT first_seq, bytes FROM keyledger.blocks ORDER BY first_seq DESC LIMIT 1",
            Vec::new(),
            |rows| match rows.first() {
                None => Ok(None),
                Some(row) => Ok(Some((uint8(row.get(0), "seq")?, row.get(1)))),
            },
        )
    }

    fn secret(&self, key_id: u64) -> Result<Option<String>> {
        self.read(
            "secret",
            "SELECT text FROM keyledger.secrets WHERE key_id = $1",
            vec![Param::Int8(int8(key_id)?)],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn for_each_secret(&self, visit: &mut dyn FnMut(u64, &str) -> Result<()>) -> Result<()> {
        let rows: Vec<(u64, String)> = self.read_within(
            BULK_BOUND,
            "secrets",
            "SELECT key_id, text FROM keyledger.secrets ORDER BY key_id",
            Vec::new(),
            |rows| {
                rows.iter()
                    .map(|r| Ok((uint8(r.get(0), "key id")?, r.get(1))))
                    .collect()
            },
        )?;
        for (key_id, text) in &rows {
            visit(*key_id, text)?;
        }
        Ok(())
    }

    fn erase_secret(&self, key_id: u64) -> Result<bool> {
        let erased = self.execute(
            "erase secret",
            "DELETE FROM keyledger.secrets WHERE key_id = $1",
            vec![Param::Int8(int8(key_id)?)],
        )?;
        Ok(erased > 0)
    }

    fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>> {
        self.read(
            "first answer",
            "SELECT true, value FROM keyledger.first_answers WHERE key = $1 \
             UNION ALL \
             SELECT false, value FROM keyledger.answers WHERE command_id = $2 \
             ORDER BY 1 DESC LIMIT 1",
            vec![
                Param::Text(key.to_owned()),
                Param::Text(command_id.to_owned()),
            ],
            |rows| {
                Ok(rows.first().map(|row| {
                    let scoped: bool = row.get(0);
                    let value: Vec<u8> = row.get(1);
                    if scoped {
                        StoredAnswer::Scoped(value)
                    } else {
                        StoredAnswer::Legacy(value)
                    }
                }))
            },
        )
    }

    fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let pool = self.pool();
        let (seq, bytes) = (int8(seq)?, bytes.to_vec());
        self.run_within(Some(BULK_BOUND), async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_error("snapshot", e))?;
            tx.execute(
                "INSERT INTO keyledger.snapshots (seq, bytes) VALUES ($1, $2) \
                 ON CONFLICT (seq) DO UPDATE SET bytes = EXCLUDED.bytes",
                &[&seq, &bytes],
            )
            .await
            .map_err(|e| pg_error("snapshot", e))?;
            tx.execute(
                "DELETE FROM keyledger.snapshots WHERE seq NOT IN \
                 (SELECT seq FROM keyledger.snapshots ORDER BY seq DESC LIMIT $1)",
                &[&(SNAPSHOTS_KEPT as i64)],
            )
            .await
            .map_err(|e| pg_error("snapshot pruning", e))?;
            tx.commit().await.map_err(|e| pg_error("snapshot", e))
        })
    }

    fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>> {
        self.saved_filter_marker()
    }

    fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>> {
        self.read_within(
            BULK_BOUND,
            "saved filter",
            "SELECT bytes FROM keyledger.saved_filter WHERE generation = $1 AND chunk = $2",
            vec![Param::Int8(int8(generation)?), Param::Int4(index as i32)],
            |rows| Ok(rows.first().map(|row| row.get::<_, Vec<u8>>(0))),
        )
    }

    fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()> {
        self.execute(
            "saved filter",
            "INSERT INTO keyledger.saved_filter (generation, chunk, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (generation, chunk) DO UPDATE SET bytes = EXCLUDED.bytes",
            vec![
                Param::Int8(int8(generation)?),
                Param::Int4(index as i32),
                Param::Bytes(bytes.to_vec()),
            ],
        )?;
        Ok(())
    }

    /// One transaction: the marker, then every other generation's rows gone.
    fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()> {
        let pool = self.pool();
        let marker = crate::pair_filter::marker_bytes(generation, chunks).to_vec();
        let generation = int8(generation)?;
        self.run_within(Some(BULK_BOUND), async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let failed = |e| pg_error("saved filter", e);
            let tx = client.transaction().await.map_err(failed)?;
            tx.execute(
                "INSERT INTO keyledger.meta (key, value) VALUES ('saved_filter', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&marker],
            )
            .await
            .map_err(failed)?;
            tx.execute(
                "DELETE FROM keyledger.saved_filter WHERE generation <> $1",
                &[&generation],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)
        })
    }

    fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>> {
        self.read_within(
            BULK_BOUND,
            "snapshot",
            "SELECT seq, bytes FROM keyledger.snapshots WHERE seq <= $1 \
             ORDER BY seq DESC LIMIT 1",
            vec![Param::Int8(int8(seq.min(i64::MAX as u64))?)],
            |rows| match rows.first() {
                None => Ok(None),
                Some(row) => Ok(Some((uint8(row.get(0), "seq")?, row.get(1)))),
            },
        )
    }

    fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>> {
        self.read(
            "merkle node",
            "SELECT hash FROM keyledger.merkle WHERE level = $1 AND idx = $2",
            vec![Param::Int2(i16::from(level)), Param::Int8(int8(index)?)],
            |rows| match rows.first() {
                None => Ok(None),
                Some(row) => Ok(Some(hash32(row.get(0), "merkle hash")?)),
            },
        )
    }

    fn consumer_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        if self.format_version()? < 3 {
            return Ok(Vec::new());
        }
        self.read_within(
            BULK_BOUND,
            "consumers",
            "SELECT name, record FROM keyledger.consumers ORDER BY name",
            vec![],
            |rows| Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
        )
    }

    fn consumer_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if self.format_version()? < 3 {
            return Ok(None);
        }
        self.read(
            "consumer",
            "SELECT record FROM keyledger.consumers WHERE name = $1",
            vec![Param::Text(name.to_owned())],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn insert_consumer(&self, name: &str, record: &[u8]) -> Result<bool> {
        // `Store::create_consumer` brought the schema to 3 (the table's) first.
        let inserted = self.execute(
            "consumer",
            "INSERT INTO keyledger.consumers (name, record) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
            vec![Param::Text(name.to_owned()), Param::Bytes(record.to_vec())],
        )?;
        Ok(inserted == 1)
    }

    fn replace_consumer(&self, name: &str, old: &[u8], new: &[u8], _durable: bool) -> Result<bool> {
        let replaced = self.execute(
            "consumer update",
            "UPDATE keyledger.consumers SET record = $3 WHERE name = $1 AND record = $2",
            vec![
                Param::Text(name.to_owned()),
                Param::Bytes(old.to_vec()),
                Param::Bytes(new.to_vec()),
            ],
        )?;
        Ok(replaced == 1)
    }

    fn delete_consumer(&self, name: &str) -> Result<bool> {
        if self.format_version()? < 3 {
            return Ok(false);
        }
        let deleted = self.execute(
            "consumer delete",
            "DELETE FROM keyledger.consumers WHERE name = $1",
            vec![Param::Text(name.to_owned())],
        )?;
        Ok(deleted == 1)
    }

    fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()> {
        self.execute(
            "token",
            "INSERT INTO keyledger.tokens (digest, principal) VALUES ($1, $2) \
             ON CONFLICT (digest) DO UPDATE SET principal = EXCLUDED.principal",
            vec![
                Param::Text(digest_hex.to_owned()),
                Param::Text(principal.to_owned()),
            ],
        )?;
        Ok(())
    }

    fn token_principal(&self, digest_hex: &str) -> Result<Option<String>> {
        self.read(
            "token",
            "SELECT principal FROM keyledger.tokens WHERE digest = $1",
            vec![Param::Text(digest_hex.to_owned())],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn revoke_tokens(&self, digest_hex: Option<&str>, principal: Option<&str>) -> Result<usize> {
        let revoked = self.execute(
            "revoke tokens",
            "DELETE FROM keyledger.tokens WHERE digest = $1 OR principal = $2",
            vec![
                Param::OptText(digest_hex.map(str::to_owned)),
                Param::OptText(principal.map(str::to_owned)),
            ],
        )?;
        Ok(revoked as usize)
    }

    fn for_each_row(&self, visit: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
        type Decode = fn(&tokio_postgres::Row) -> Result<Row>;
        let tables: [(&'static str, &'static str, Decode); 5] = [
            (
                "secrets",
                "SELECT key_id, text FROM keyledger.secrets ORDER BY key_id",
                |r| Ok(Row::Secret(uint8(r.get(0), "key id")?, r.get(1))),
            ),
            (
                "first answers",
                "SELECT key, value FROM keyledger.first_answers ORDER BY key",
                |r| Ok(Row::FirstAnswer(r.get(0), r.get(1))),
            ),
            (
                "answers",
                "SELECT command_id, value FROM keyledger.answers ORDER BY command_id",
                |r| Ok(Row::LegacyAnswer(r.get(0), r.get(1))),
            ),
            (
                "snapshots",
                "SELECT seq, bytes FROM keyledger.snapshots ORDER BY seq",
                |r| Ok(Row::Snapshot(uint8(r.get(0), "seq")?, r.get(1))),
            ),
            (
                "tokens",
                "SELECT digest, principal FROM keyledger.tokens ORDER BY digest",
                |r| Ok(Row::Token(r.get(0), r.get(1))),
            ),
        ];
        for (what, sql, decode) in tables {
            let rows = self.read(what, sql, Vec::new(), move |rows| {
                rows.iter().map(decode).collect::<Result<Vec<Row>>>()
            })?;
            for row in rows {
                visit(row)?;
            }
        }
        Ok(())
    }

    fn put_rows(&self, rows: &[Row]) -> Result<()> {
        let pool = self.pool();
        let rows = rows.to_vec();
        self.run_within(Some(BULK_BOUND), async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_error("copy", e))?;
            for row in &rows {
                let (sql, params) = row_insert(row)?;
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(Param::as_sql).collect();
                let done = tx.execute(sql, &refs).await;
                done.map_err(|e| pg_error("copy", e))?;
            }
            tx.commit().await.map_err(|e| pg_error("copy", e))
        })
    }

    #[cfg(feature = "tamper")]
    /// What someone who owns the tables could do: switch the append-only trigger off.
    fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()> {
        let pool = self.pool();
        let (key, bytes) = (int8(key)?, bytes.map(<[u8]>::to_vec));
        self.run_within(Some(BULK_BOUND), async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(|e| pg_error("tamper", e))?;
            tx.batch_execute("ALTER TABLE keyledger.blocks DISABLE TRIGGER blocks_append_only")
                .await
                .map_err(|e| pg_error("tamper", e))?;
            let changed = match bytes {
                Some(bytes) => {
                    tx.execute(
                        "INSERT INTO keyledger.blocks (first_seq, last_seq, head, bytes, epoch) \
                         VALUES ($1, $1, '\\x0000000000000000000000000000000000000000000000000000000000000000', $2, 0) \
                         ON CONFLICT (first_seq) DO UPDATE SET bytes = EXCLUDED.bytes",
                        &[&key, &bytes],
                    )
                    .await
                }
                None => {
                    tx.execute("DELETE FROM keyledger.blocks WHERE first_seq = $1", &[&key])
                        .await
                }
            };
            changed.map_err(|e| pg_error("tamper", e))?;
            tx.batch_execute("ALTER TABLE keyledger.blocks ENABLE TRIGGER blocks_append_only")
                .await
                .map_err(|e| pg_error("tamper", e))?;
            tx.commit().await.map_err(|e| pg_error("tamper", e))
        })
    }

    #[cfg(feature = "tamper")]
    fn tamper_secret(&self, key_id: u64, text: Option<&str>) -> Result<()> {
        let key_id = int8(key_id)?;
        match text {
            Some(text) => self.execute(
                "tamper",
                "INSERT INTO keyledger.secrets VALUES ($1, $2) \
                 ON CONFLICT (key_id) DO UPDATE SET text = EXCLUDED.text",
                vec![Param::Int8(key_id), Param::Text(text.to_owned())],
            ),
            None => self.execute(
                "tamper",
                "DELETE FROM keyledger.secrets WHERE key_id = $1",
                vec![Param::Int8(key_id)],
            ),
        }?;
        Ok(())
    }

    fn stored_bytes(&self) -> Result<u64> {
        self.read_within(
            BULK_BOUND,
            "size",
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'keyledger' AND c.relkind = 'r'",
            Vec::new(),
            |rows| uint8(rows[0].get(0), "size"),
        )
    }

    /// PostgreSQL reclaims space itself (autovacuum); the log only grows anyway.
    fn compact(&self) -> Result<()> {
        Ok(())
    }
}

/// Whether the append's row says the batch is in, durably: its head row moved (else this
/// writer was fenced, and nothing of the batch was written), and the server sent no
/// warning that it committed locally without its synchronous standby.
fn appended(
    row: &tokio_postgres::Row,
    epoch: i64,
    start_seq: u64,
    warnings: &std::sync::Mutex<Vec<String>>,
) -> Result<()> {
    let (moved, current, stored_seq): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if moved == 0 && current != epoch {
        return Err(Error::Fenced(format!(
            "this writer's epoch {epoch} is over (the ledger's is {current}): another \
             writer took over; nothing of the batch was written"
        )));
    }
    if moved == 0 {
        return Err(Error::Fenced(format!(
            "the stored log ends at seq {stored_seq}, not at seq {} where this writer's \
             batch starts: someone else appended; nothing of the batch was written",
            start_seq
        )));
    }
    let warned: Vec<String> = warnings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    if let Some(warning) = warned
        .iter()
        .find(|w| w.contains("synchronous replication"))
    {
        return Err(Error::Storage(format!(
            "the server committed the batch locally but may not have replicated it \
             ({warning}): its outcome is unknown"
        )));
    }
    Ok(())
}
