//! The service's streams commitments (docs/format.md, "Streams"): every `--streams-every`
//! seconds, and before each witness round, a `streams_committed` event when the log grew,
//! so that every checkpoint the witnesses cosign sits at one and statements can be made
//! against it. The table is folded from the log once at the first commitment, then only
//! the events since the last.

use std::time::Duration;

use super::App;

/// Commits the streams if the log grew since the last commitment; answers the seq of the
/// latest commitment (`None`: the log is empty).
pub async fn commit(app: &App) -> Result<Option<u64>, String> {
    let (writer, store, streams) = (app.writer.clone(), app.store.clone(), app.streams.clone());
    tokio::task::spawn_blocking(move || {
        let mut table = streams.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::view::wall_clock();
        let committed = keyledger_ledger::commitments::commit(&writer, &store, &mut table, now)
            .map_err(|e| e.to_string())?;
        Ok(committed.or(table.last_commitment()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Commits every `every` until shutdown.
pub async fn run(app: App, every: Duration) {
    let mut closing = app.closing.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
        if let Err(why) = commit(&app).await {
            tracing::warn!(event = "streams_commit_failed", why = %why, "keyledger: streams: {why}");
        }
    }
}

/// Why no statement was made.
pub enum StatementFailure {
    /// Nothing to make one of: the license ID, a commitment, a cosigned checkpoint (404).
    NotFound(String),
    /// The store or the writer did not answer (503).
    Unavailable(String),
    /// Another statement is being made (429 `throttled`, `Retry-After`).
    Busy,
}

/// The statement of `license` (the caller checked the read rule): against the latest
/// cosigned checkpoint, or against a commitment made now (when the log grew) and the
/// checkpoint at it signed now. The API and the console both ask here.
pub async fn statement(
    app: &App,
    license: keyledger_core::LicenseId,
    cosigned: bool,
) -> Result<keyledger_ledger::statement::Statement, StatementFailure> {
    use StatementFailure::{Busy, NotFound, Unavailable};
    let Ok(_slot) = app.statement_slot.try_acquire() else {
        app.metrics.throttled("statement");
        return Err(Busy);
    };
    let (at, note) = if cosigned {
        let (size, note) = app.witnessed.latest().ok_or_else(|| {
            NotFound("no checkpoint has been cosigned yet (serve --witness)".to_owned())
        })?;
        (size, Some(note))
    } else {
        match commit(app).await {
            Ok(Some(seq)) => (seq, None),
            Ok(None) => return Err(NotFound("the ledger is empty".to_owned())),
            Err(why) => return Err(Unavailable(why)),
        }
    };
    let (store, key) = (app.store.clone(), std::sync::Arc::clone(&app.key));
    let built = tokio::task::spawn_blocking(move || {
        let now = crate::view::wall_clock();
        keyledger_ledger::statement::build(&store, &key, &license, Some(at), note, now)
    })
    .await;
    match built {
        Ok(Ok(statement)) => Ok(statement),
        Ok(Err(err)) => Err(NotFound(err.to_string())),
        Err(_) => Err(Unavailable("the statement task failed".to_owned())),
    }
}
