//! The writer's own session: the advisory lock that keeps a second writer out, the epoch that
//! fences an earlier one, the prepared append, and the server's warnings on that session.

use std::sync::{Arc, Mutex};

use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::server::{config_of, pg_error};
use super::{PgStore, APPEND, UPGRADE_2};
use crate::error::{Error, Result};
use crate::store::location::PgUrl;

/// The session advisory lock a writer holds while it runs ("keyledge" in ASCII).
pub const WRITER_LOCK: i64 = 0x6b65_796c_6564_6765;

/// How often a writer started with `wait` tries the writer lock again.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) struct WriterSession {
    pub(super) client: Arc<Client>,
    /// [`APPEND`], prepared once per session: a batch is then one round trip.
    pub(super) append: tokio_postgres::Statement,
    /// The server it is connected to.
    pub(super) server: PgUrl,
    pub(super) epoch: i64,
    /// Warnings the server sent on this session since the last commit began.
    pub(super) warnings: Arc<Mutex<Vec<String>>>,
}

impl PgStore {
    /// A new writer session: its own connection, whose warnings are kept for the commit
    /// that caused them.
    pub(super) fn writer_session(&self, wait: bool) -> Result<WriterSession> {
        let server = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let config = config_of(&server);
        let holder = holder();
        self.run(async move {
            let (client, mut connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| pg_error("writer connection", e))?;
            let warnings = Arc::new(Mutex::new(Vec::new()));
            let seen = warnings.clone();
            tokio::spawn(async move {
                let mut messages = std::pin::pin!(futures_util::stream::poll_fn(move |cx| {
                    connection.poll_message(cx)
                }));
                use futures_util::StreamExt;
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notice(notice) = message {
                        let text = format!("{}: {}", notice.severity(), notice.message());
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                    }
                }
            });
            loop {
                let locked: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                    .await
                    .map_err(|e| pg_error("writer lock", e))?
                    .get(0);
                if locked {
                    break;
                }
                if !wait {
                    let row = client
                        .query_one(
                            "SELECT epoch, holder, claimed_at::text FROM keyledger.head",
                            &[],
                        )
                        .await
                        .map_err(|e| pg_error("writer row", e))?;
                    let (epoch, holder, since): (i64, String, String) =
                        (row.get(0), row.get(1), row.get(2));
                    return Err(Error::WriterBusy(format!(
                        "another keyledger writer holds this ledger (epoch {epoch}, \
                         {holder}, since {since}); stop it, or start with --wait-for-writer \
                         to take over when it stops"
                    )));
                }
                tokio::time::sleep(CLAIM_POLL).await;
            }
            let epoch: i64 = client
                .query_one(
                    "UPDATE keyledger.head SET epoch = epoch + 1, holder = $1, \
                     claimed_at = now() RETURNING epoch",
                    &[&holder],
                )
                .await
                .map_err(|e| pg_error("writer epoch", e))?
                .get(0);
            // A version-1 schema gets the tables the append writes to before it is prepared
            // (the engine then builds the machine index and marks the schema 2).
            let version: Vec<u8> = client
                .query_one(
                    "SELECT value FROM keyledger.meta WHERE key = 'format_version'",
                    &[],
                )
                .await
                .map_err(|e| pg_error("format version", e))?
                .get(0);
            if version.first().is_some_and(|v| *v < 2) {
                client
                    .batch_execute(UPGRADE_2)
                    .await
                    .map_err(|e| pg_error("schema upgrade", e))?;
            }
            let append = client
                .prepare(APPEND)
                .await
                .map_err(|e| pg_error("preparing the append", e))?;
            Ok(WriterSession {
                append,
                client: Arc::new(client),
                server,
                epoch,
                warnings,
            })
        })
    }
}

/// Who a writer is, for the `writer` row and the message a second writer gets.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned());
    format!("pid {} on {host}", std::process::id())
}
