//! The writer's own session: the advisory lock that keeps a second writer out, the epoch that
//! fences an earlier one, the prepared append, and the server's warnings on that session.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio_postgres::{AsyncMessage, Client};

use super::append::APPEND;
use super::schema::UPGRADE_2;
use super::server::{config_of, pg_error, CALL_BOUND};
use super::tls::connector;
use crate::error::{Error, Result};
use crate::location::PgUrl;

/// The session advisory lock a writer holds while it runs ("keyledge" in ASCII).
pub const WRITER_LOCK: i64 = 0x6b65_796c_6564_6765;

/// How often a writer started with `wait` tries the writer lock again.
pub(super) const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a writer claiming the ledger again waits for its old session's backend to let
/// go of the lock (within the claim's own `CALL_BOUND`); past it, someone else holds it.
const AGAIN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct WriterSession {
    pub(super) client: Arc<Client>,
    /// [`APPEND`], prepared once per session: a batch is then one round trip.
    pub(super) append: tokio_postgres::Statement,
    /// The server it is connected to.
    pub(super) server: PgUrl,
    pub(super) epoch: i64,
    /// Warnings the server sent on this session since the last commit began.
    pub(super) warnings: Arc<Mutex<Vec<String>>>,
    /// The server's process for this session: the one a replacement session ends.
    pub(super) backend_pid: i32,
    /// Set when a call on this session was given up (see `CALL_BOUND`): it is replaced,
    /// never used again.
    pub(super) lost: Arc<AtomicBool>,
    /// The task that drives the connection: aborting it closes the socket.
    connection: tokio::task::AbortHandle,
}

impl WriterSession {
    /// Closes this session's socket (its backend ends when the server notices).
    pub(super) fn end(&self) {
        self.connection.abort();
    }
}

/// How a new writer session takes the writer lock.
#[derive(Clone, Copy, Debug)]
pub(super) enum Claim {
    /// Once: another holder makes it fail with [`Error::WriterBusy`].
    Once,
    /// Until the holder stops (`serve --wait-for-writer`).
    Wait,
    /// Again, by a writer whose session was lost: its old backend (this pid, on the same
    /// server) may still hold the lock, so it is ended and the lock awaited for a bounded
    /// time. The claim holds only if the ledger still names this process as its writer;
    /// else another writer took over meanwhile and this one is fenced for good. (Comparing
    /// epochs would not do: a claim given up while its commit waited for a frozen standby
    /// may have moved the epoch already.)
    Again(Option<i32>),
}

/// A new writer session on `server`: its own connection, whose warnings are kept for the
/// commit that caused them; the lock and the epoch claimed as `claim` asks.
pub(super) async fn open_session(server: PgUrl, claim: Claim) -> Result<WriterSession> {
    let holder = holder();
    let (client, warnings, connection) = connect_keeping_notices(&server).await?;
    take_lock(&client, claim).await?;
    let epoch = claim_epoch(&client, claim, &holder).await?;
    let append = prepare_append(&client).await?;
    let backend_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| pg_error("backend pid", e))?
        .get(0);
    Ok(WriterSession {
        append,
        client: Arc::new(client),
        server,
        epoch,
        warnings,
        backend_pid,
        lost: Default::default(),
        connection,
    })
}

/// How long a claim may take: waiting for another writer has no bound; every other claim
/// does.
pub(super) fn claim_bound(claim: Claim) -> Option<std::time::Duration> {
    match claim {
        Claim::Wait => None,
        Claim::Once | Claim::Again(_) => Some(CALL_BOUND),
    }
}

/// The session's connection, driven by a task of its own that keeps the server's notices
/// (the commit reads them: a synchronous-replication warning makes its outcome unknown).
async fn connect_keeping_notices(
    server: &PgUrl,
) -> Result<(Client, Arc<Mutex<Vec<String>>>, tokio::task::AbortHandle)> {
    let (client, mut connection) = config_of(server)
        .connect(connector(server)?)
        .await
        .map_err(|e| pg_error("writer connection", e))?;
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let seen = warnings.clone();
    let connection = tokio::spawn(async move {
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
    })
    .abort_handle();
    Ok((client, warnings, connection))
}

/// Takes the writer lock as `claim` says (see [`Claim`]).
async fn take_lock(client: &Client, claim: Claim) -> Result<()> {
    if let Claim::Again(Some(pid)) = claim {
        // Only a backend that holds an advisory lock: a pid reused by another session
        // since is left alone.
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND pid = $1",
                &[&pid],
            )
            .await
            .map_err(|e| pg_error("ending the lost writer session", e))?;
    }
    let again_until = std::time::Instant::now() + AGAIN_LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .await
            .map_err(|e| pg_error("writer lock", e))?
            .get(0);
        if locked {
            return Ok(());
        }
        let give_up = match claim {
            Claim::Once => true,
            Claim::Wait => false,
            Claim::Again(_) => std::time::Instant::now() >= again_until,
        };
        if give_up {
            return Err(busy(client).await);
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}

/// [`APPEND`], prepared on the session. A version-1 schema first gets the tables the append
/// writes to (the engine then builds the machine index and marks the schema 2).
async fn prepare_append(client: &Client) -> Result<tokio_postgres::Statement> {
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
    client
        .prepare(APPEND)
        .await
        .map_err(|e| pg_error("preparing the append", e))
}

/// Who holds the writer lock, as the error a refused claim answers.
async fn busy(client: &Client) -> Error {
    let row = match client
        .query_one(
            "SELECT epoch, holder, claimed_at::text FROM keyledger.head",
            &[],
        )
        .await
    {
        Ok(row) => row,
        Err(e) => return pg_error("writer row", e),
    };
    let (epoch, holder, since): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    Error::WriterBusy(format!(
        "another keyledger writer holds this ledger (epoch {epoch}, {holder}, since {since}); \
         stop it, or start with --wait-for-writer to take over when it stops"
    ))
}

/// Moves the ledger's epoch to this writer (which holds the writer lock by now), fencing
/// every earlier one; see [`Claim::Again`] for when it refuses.
async fn claim_epoch(client: &Client, claim: Claim, holder: &str) -> Result<i64> {
    let only_if_ours = match claim {
        Claim::Again(_) => "WHERE holder = $1",
        Claim::Once | Claim::Wait => "",
    };
    let sql = format!(
        "UPDATE keyledger.head SET epoch = epoch + 1, holder = $1, claimed_at = now() \
         {only_if_ours} RETURNING epoch"
    );
    let moved = client
        .query_opt(&sql, &[&holder])
        .await
        .map_err(|e| pg_error("writer epoch", e))?;
    if let Some(row) = moved {
        return Ok(row.get(0));
    }
    let row = client
        .query_one("SELECT epoch, holder FROM keyledger.head", &[])
        .await
        .map_err(|e| pg_error("writer row", e))?;
    let (epoch, other): (i64, String) = (row.get(0), row.get(1));
    Err(Error::Fenced(format!(
        "while this writer was disconnected another writer took over ({other}, epoch \
         {epoch}); this one stops writing"
    )))
}

/// Who a writer is, for the `writer` row and the message a second writer gets: the process,
/// and a number drawn once per process, so that a pid reused later is another holder.
fn holder() -> String {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER
        .get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "an unknown host".to_owned());
            let instance: u32 = rand::random();
            format!("pid {} on {host} ({instance:08x})", std::process::id())
        })
        .clone()
}
