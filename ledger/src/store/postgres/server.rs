//! Which server a PostgreSQL store talks to, and how its connections and their errors look.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};
use crate::store::location::PgUrl;

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
        None => Error::Storage(format!("{CONNECTION_FAILED} ({context}): {err}")),
    }
}

pub(super) fn pool_error(err: deadpool_postgres::PoolError) -> Error {
    Error::Storage(format!("{CONNECTION_FAILED}: {err}"))
}

/// How long connecting to one server may take before the next is tried.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn config_of(url: &PgUrl) -> tokio_postgres::Config {
    let mut config = url.config();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
}

pub(super) fn pool_of(url: &PgUrl) -> Result<Pool> {
    let manager = Manager::from_config(
        config_of(url),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
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
        let probe = async {
            let (client, connection) = config_of(url).connect(NoTls).await?;
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
                     (SELECT count(*) FROM pg_stat_replication \
                       WHERE sync_state IN ('sync', 'quorum'))",
                    &[],
                )
                .await
        };
        match probe.await {
            Err(err) => why.push(format!("{url}: {err}")),
            Ok(row) => {
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
