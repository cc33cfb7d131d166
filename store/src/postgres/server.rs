//! Which server a PostgreSQL store talks to, and how its connections and their errors look.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::error::{with_causes, Error, Result};
use crate::location::PgUrl;

use super::tls::connector;

/// Reader connections kept open (the writer has its own).
const POOL_SIZE: usize = 8;

/// How a lost or refused connection's error begins: [`PgStore::run`] chooses the server
/// again on one, since the primary may have moved.
pub(super) const CONNECTION_FAILED: &str = "PostgreSQL connection";

pub(super) fn pg_error(context: &str, err: tokio_postgres::Error) -> Error {
    match err.as_db_error() {
        Some(db) => Error::Storage(format!(
            "{context}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => Error::Storage(format!(
            "{CONNECTION_FAILED} ({context}): {}",
            with_causes(&err)
        )),
    }
}

pub(super) fn pool_error(err: deadpool_postgres::PoolError) -> Error {
    Error::Storage(format!("{CONNECTION_FAILED}: {err}"))
}

/// How long connecting to one server may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call (a commit, claiming the writer, choosing the server, a point read such
/// as a resend's first answer) may wait for the server before it counts as lost. A frozen
/// or partitioned server keeps a socket open and answers nothing: without a bound the
/// writer would wait for ever, and `/healthz` would say `ok` meanwhile.
pub(super) const CALL_BOUND: Duration = Duration::from_secs(10);

/// The same for a read of many rows or large values (a page of blocks, a snapshot, every
/// secret or Merkle node): wider, since its size and not the server sets how long it takes.
pub(super) const BULK_BOUND: Duration = Duration::from_secs(60);

/// Connections as the URL says, with keyledger's defaults for what it leaves out: a connect
/// timeout, and TCP keepalives and a user timeout, so that a peer gone from the network (a
/// partition, a host powered off) ends the connection instead of leaving it open.
pub(super) fn config_of(url: &PgUrl) -> tokio_postgres::Config {
    let mut config = url.config();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        // tokio-postgres's default (two hours) is the kernel's; nothing sets it shorter.
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(CALL_BOUND);
    }
    config
}

pub(super) fn pool_of(url: &PgUrl) -> Result<Pool> {
    let manager = Manager::from_config(
        config_of(url),
        connector(url)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT + CALL_BOUND))
        .recycle_timeout(Some(CALL_BOUND))
        .wait_timeout(Some(BULK_BOUND))
        .build()
        .map_err(|e| Error::Storage(format!("{url}: {e}")))
}

/// The server to write to, of those the URL names: the first primary that can acknowledge
/// a commit (no synchronous standby asked for, or one connected), else the first primary
/// (its commits wait for its standby). A standby is never chosen. This is what keeps a
/// writer off an old primary started again after a failover: it still asks for its
/// synchronous standby, which now follows the new primary, so it could never acknowledge.
pub(super) async fn choose_server(servers: &[PgUrl]) -> Result<PgUrl> {
    let mut fallback = None;
    let mut why = Vec::new();
    for url in servers {
        // Every server of a URL has its TLS settings; a CA file that cannot be read is
        // the URL's fault, not a server's.
        let tls = connector(url)?;
        let probe = tokio::time::timeout(CALL_BOUND, async {
            let (client, connection) = config_of(url).connect(tls).await?;
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
                     (SELECT count(*) FROM pg_stat_replication \
                       WHERE sync_state IN ('sync', 'quorum'))",
                    &[],
                )
                .await
        });
        match probe.await {
            Err(_) => why.push(format!(
                "{url}: no answer within {} s",
                CALL_BOUND.as_secs()
            )),
            Ok(Err(err)) => why.push(format!("{url}: {}", with_causes(&err))),
            Ok(Ok(row)) => {
                let (standby, names, synced): (bool, String, i64) =
                    (row.get(0), row.get(1), row.get(2));
                if standby {
                    why.push(format!("{url}: a standby"));
                } else if names.trim().is_empty() || synced > 0 {
                    return Ok(url.clone());
                } else {
                    fallback.get_or_insert_with(|| url.clone());
                }
            }
        }
    }
    fallback.ok_or_else(|| {
        Error::Storage(format!(
            "no PostgreSQL primary reachable ({})",
            why.join("; ")
        ))
    })
}
