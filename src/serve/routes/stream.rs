//! `GET /v1/events/stream`: the log as Server-Sent Events, history from a seq and then live
//! events as batches commit. Each message has `id: SEQ`, so a client reconnecting
//! with `Last-Event-ID` resumes exactly at the next seq, and carries the chain link (`prev`,
//! `hash`), so a receiver of the whole log can check it missed nothing.
//!
//! A stream pulls from the log at its own pace: each reads pages of at most
//! [`PAGE_EVENTS`] from the store and waits for the projections' head to move; nothing is
//! buffered for it beyond the page it is sent, so a slow reader never slows the writer or other
//! readers. A reader that takes no message for [`SEND_TIMEOUT`] is cut (it can resume).
//!
//! A page is written in chunks of many messages (a write for up to [`CHUNK_BYTES`], not one
//! a message), formatted here as the SSE format says: `id:`, `event:`, `data:`, a blank line.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use keyledger_core::LicenseId;
use serde_json::json;
use tokio::sync::mpsc;

use super::*;
// A page also ends at `PAGE_BYTES_MAX` bytes and after `PAGE_SCAN_MAX` events read: what
// one reader holds is bounded in bytes, not only in events.
use crate::serve::feed::{PAGE_BYTES_MAX, PAGE_SCAN_MAX};

/// The most events one read of the log takes.
pub(super) const PAGE_EVENTS: usize = 1_000;
/// A reader that takes no message for this long is cut.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of one chunk of messages: small enough for the allocator to reuse its
/// memory from chunk to chunk (a larger buffer is fresh pages, zeroed by the kernel, each
/// time).
const CHUNK_BYTES: usize = 60 * 1024;
/// An idle stream sends a comment this often, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events/stream?from=SEQ[&license_id=ID]` (token): the read rule of `/v1/log` —
/// operators the whole log; others must name a license ID they hold a role on and get the
/// events of its history.
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "log",
    description = "The log as Server-Sent Events (`id` = seq, `data` = the event as in /v1/log), then each new event; resumes after `Last-Event-ID`.",
    params(
        ("from" = Option<u64>, Query), ("license_id" = Option<String>, Query),
        ("Last-Event-ID" = Option<u64>, Header)
    ),
    responses(
        (status = 200, description = "the stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 429, description = "as many streams are open as allowed", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn events_stream(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
    headers: HeaderMap,
) -> Response {
    let q = Params(q);
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>());
    let from = match resumed {
        Some(Ok(last)) => last.saturating_add(1),
        Some(Err(_)) => {
            let why = "Last-Event-ID must be the seq of the last event received";
            return malformed(&input_error(Some("Last-Event-ID"), why));
        }
        None => match q.number("from", Some(1)) {
            Ok(from) => from.max(1),
            Err(response) => return response,
        },
    };
    let license = match q.license_id("license_id") {
        Ok(license) => license,
        Err(response) => return response,
    };
    if let Err(response) = may_read_log(&app, &principal, license.as_ref()) {
        return response;
    }
    let slot = match app.stream_slots.open(&principal) {
        Ok(slot) => slot,
        Err(by) => {
            app.metrics.throttled("streams");
            let why = match by {
                "principal" => format!("{principal} holds as many open streams as one may"),
                _ => "as many streams are open as the service allows".to_owned(),
            };
            let throttled = crate::serve::throttle::Throttled {
                by,
                retry_after: KEEP_ALIVE,
            };
            return too_many(&throttled, why);
        }
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expires = access_token_expiry(&app, token.as_deref()).await;
    let reader = Reader {
        principal,
        token,
        expires,
        license,
        _slot: slot,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(feed(app, from, reader, tx));
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// When the stream's token is a provider's access token, its expiry (Unix seconds): it is
/// not revoked here, so the stream ends when it expires.
async fn access_token_expiry(app: &App, header: Option<&str>) -> Option<u64> {
    match (&app.oidc, auth::bearer(header)) {
        (Some(oidc), Some(jwt)) if crate::oidc::looks_like_jwt(jwt) => Some(
            oidc.access_principal(jwt)
                .await
                .map_or(0, |(_, expires)| expires),
        ),
        _ => None,
    }
}

/// Who reads a stream, and what: checked again as it reads.
struct Reader {
    principal: keyledger_core::Principal,
    /// The `Authorization` header it opened with.
    token: Option<String>,
    /// When it opened with a provider's access token: the token's expiry (Unix seconds).
    expires: Option<u64>,
    license: Option<LicenseId>,
    /// Given back when the stream ends.
    _slot: crate::serve::throttle::StreamSlot,
}

/// How often a stream checks again that its token is valid and its reader may still read.
const REAUTHORISE_EVERY: Duration = Duration::from_secs(1);

impl Reader {
    /// Whether the token still names the principal and the read rule still lets it read
    /// (F5): a revoked token or role ends the stream with an `error` message.
    fn still_allowed(&self, app: &App) -> Result<(), Bytes> {
        if let Some(expires) = self.expires {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if now >= expires {
                return Err(error("unauthorized", "the stream's access token expired"));
            }
        } else {
            match auth::principal(&app.store, self.token.as_deref()) {
                Ok(p) if p == self.principal => {}
                Err(auth::AuthError::Unreadable(_)) => return Ok(()),
                _ => return Err(error("unauthorized", "the stream's token is revoked")),
            }
        }
        may_read_log(app, &self.principal, self.license.as_ref()).map_err(|_| {
            error(
                "forbidden",
                "the stream's reader may no longer read these events",
            )
        })
    }
}

/// Sends every event from `next` on, page by page, then each new one as the head moves,
/// until the client goes away, stops reading, loses the right to read, or the service
/// shuts down.
async fn feed(app: App, mut next: u64, reader: Reader, tx: mpsc::Sender<Bytes>) {
    let (mut head, mut closing) = (app.head.subscribe(), app.closing.subscribe());
    let license = reader.license.clone();
    let mut checked = std::time::Instant::now();
    loop {
        let until = *head.borrow_and_update();
        while next <= until {
            if checked.elapsed() >= REAUTHORISE_EVERY {
                if let Err(message) = reader.still_allowed(&app) {
                    let _ = send(&tx, message).await;
                    return;
                }
                checked = std::time::Instant::now();
            }
            let (store, encoded) = (app.store.clone(), Arc::clone(&app.encoded_events));
            let (projections, license) = (app.projections.clone(), license.clone());
            let page = tokio::task::spawn_blocking(move || {
                let wanted = match &license {
                    Some(l) => Some(history(&store, &projections, l, next, until)?),
                    None => None,
                };
                page(&store, &encoded, next, until, wanted)
            })
            .await;
            let Ok(Ok((chunks, read_to))) = page else {
                let _ = tx.send(error("storage", "cannot read the log")).await;
                return;
            };
            for chunk in chunks {
                if !send(&tx, chunk).await {
                    return;
                }
            }
            next = read_to + 1;
        }
        let idle = tokio::select! {
            changed = head.changed() => if changed.is_err() { return } else { false },
            _ = closing.wait_for(|closing| *closing) => return,
            _ = tokio::time::sleep(KEEP_ALIVE) => true,
        };
        if idle {
            // A quiet stream is checked at each keep-alive: a revoked reader's connection
            // is not held for ever.
            if let Err(message) = reader.still_allowed(&app) {
                let _ = send(&tx, message).await;
                return;
            }
            checked = std::time::Instant::now();
        }
        if idle && !send(&tx, Bytes::from_static(b":\n\n")).await {
            return;
        }
        if !idle {
            // Caught up and woken by a commit: let a few more batches land, so a live
            // reader takes pages, not one read and one write per batch.
            tokio::time::sleep(crate::serve::feed::LIVE_COALESCE).await;
        }
    }
}

/// Hands a chunk to the response; `false` when the client is gone or has read nothing for
/// `SEND_TIMEOUT`.
async fn send(tx: &mpsc::Sender<Bytes>, chunk: Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(chunk)).await,
        Ok(Ok(()))
    )
}

/// The seqs of `license`'s history in `from..=until`, at most a page of them.
fn history(
    store: &keyledger_ledger::Store,
    projections: &std::sync::RwLock<keyledger_projections::Projections>,
    license: &LicenseId,
    from: u64,
    until: u64,
) -> keyledger_ledger::Result<Vec<u64>> {
    let p = projections
        .read()
        .expect("no writer panics holding the lock");
    let of = keyledger_projections::history::Of::License(license);
    Ok(crate::view::history_seqs(store, &p, of, (from, until), PAGE_EVENTS)?.unwrap_or_default())
}

/// The messages of the events in `from..=until` (only `wanted` ones when given), at most a
/// page ([`PAGE_EVENTS`] events, or the event that reaches [`PAGE_BYTES_MAX`]), in chunks;
/// and the last seq this page covers.
fn page(
    store: &keyledger_ledger::Store,
    encoded: &crate::serve::recent::EncodedEvents,
    from: u64,
    until: u64,
    wanted: Option<Vec<u64>>,
) -> keyledger_ledger::Result<(Vec<Bytes>, u64)> {
    let start = match wanted.as_deref() {
        // Nothing of this license ID in the range: the whole range is covered.
        Some([]) => return Ok((Vec::new(), until)),
        Some([first, ..]) => *first,
        None => from,
    };
    let mut chunks = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let (mut messages, mut bytes, mut scanned) = (0, 0, 0);
    let mut read_to = start.saturating_sub(1);
    keyledger_ledger::walk(store, start, |record| {
        if record.seq > until
            || messages == PAGE_EVENTS
            || bytes >= PAGE_BYTES_MAX
            || scanned == PAGE_SCAN_MAX
        {
            return Ok(ControlFlow::Break(()));
        }
        read_to = record.seq;
        scanned += 1;
        let keep = wanted
            .as_deref()
            .is_none_or(|w| w.binary_search(&record.seq).is_ok());
        if keep {
            // The JSON has no line breaks, so it is one `data:` line.
            let before = chunk.len();
            chunk.extend_from_slice(format!("id: {}\nevent: event\ndata: ", record.seq).as_bytes());
            encoded.write(&mut chunk, &record);
            chunk.extend_from_slice(b"\n\n");
            bytes += chunk.len() - before;
            if chunk.len() >= CHUNK_BYTES {
                chunks.push(Bytes::from(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(CHUNK_BYTES + 4096),
                )));
            }
            messages += 1;
        }
        let done = wanted
            .as_deref()
            .is_some_and(|w| w.last() == Some(&record.seq));
        Ok(if done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    if wanted
        .as_ref()
        .is_some_and(|w| w.len() < PAGE_EVENTS && messages == w.len())
    {
        // Every wanted seq up to `until` was in this page.
        read_to = until;
    }
    if !chunk.is_empty() {
        chunks.push(Bytes::from(chunk));
    }
    Ok((chunks, read_to))
}

fn error(code: &str, message: &str) -> Bytes {
    let data = json!({ "ok": false, "code": code, "message": message });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}
