//! `GET /v1/events/stream`: the log as Server-Sent Events, history from a seq and then live
//! events as batches commit (issue 18). Each message has `id: SEQ`, so a client reconnecting
//! with `Last-Event-ID` resumes exactly at the next seq, and carries the chain link (`prev`,
//! `hash`), so a receiver of the whole log can check it missed nothing.
//!
//! A stream pulls from the log at its own pace: each reads pages of at most
//! [`PAGE_EVENTS`] from the store and waits for the projections' head to move; nothing is
//! buffered for it beyond one page, so a slow reader never slows the writer or other
//! readers. A reader that takes no message for [`SEND_TIMEOUT`] is cut (it can resume).

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as Message, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keyledger_core::LicenseId;
use serde_json::json;
use tokio::sync::mpsc;

use super::*;

/// The most events one read of the log takes.
pub(super) const PAGE_EVENTS: usize = 1_000;
/// A reader that takes no message for this long is cut.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /v1/events/stream?from=SEQ[&license_id=ID]` (token): the read rule of `/v1/log` —
/// operators the whole log; others must name a license ID they hold a role on and get the
/// events of its history.
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
    let (tx, rx) = mpsc::channel::<Message>(PAGE_EVENTS);
    tokio::spawn(feed(app, from, license, tx));
    let messages = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|message| (Ok::<_, Infallible>(message), rx))
    });
    Sse::new(messages)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Sends every event from `next` on, page by page, then each new one as the head moves,
/// until the client goes away, stops reading, or the service shuts down.
async fn feed(app: App, mut next: u64, license: Option<LicenseId>, tx: mpsc::Sender<Message>) {
    let (mut head, mut closing) = (app.head.subscribe(), app.closing.subscribe());
    loop {
        let until = *head.borrow_and_update();
        while next <= until {
            let wanted = license.as_ref().map(|l| history(&app, l, next, until));
            let store = app.store.clone();
            let page = tokio::task::spawn_blocking(move || page(&store, next, until, wanted)).await;
            let Ok(Ok((messages, read_to))) = page else {
                let _ = tx.send(error("storage", "cannot read the log")).await;
                return;
            };
            for message in messages {
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await {
                    Ok(Ok(())) => {}
                    // The client is gone, or has read nothing for SEND_TIMEOUT.
                    Ok(Err(_)) | Err(_) => return,
                }
            }
            next = read_to + 1;
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = closing.wait_for(|closing| *closing) => return,
        }
    }
}

/// The seqs of `license`'s history in `from..=until`, at most a page of them.
fn history(app: &App, license: &LicenseId, from: u64, until: u64) -> Vec<u64> {
    let p = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    p.license_history(license)
        .unwrap_or_default()
        .into_iter()
        .filter(|seq| (from..=until).contains(seq))
        .take(PAGE_EVENTS)
        .collect()
}

/// The messages of the events in `from..=until` (only `wanted` ones when given), at most a
/// page, and the last seq this page covers.
fn page(
    store: &keyledger_ledger::Store,
    from: u64,
    until: u64,
    wanted: Option<Vec<u64>>,
) -> keyledger_ledger::Result<(Vec<Message>, u64)> {
    let start = match wanted.as_deref() {
        // Nothing of this license ID in the range: the whole range is covered.
        Some([]) => return Ok((Vec::new(), until)),
        Some([first, ..]) => *first,
        None => from,
    };
    let mut messages = Vec::new();
    let mut read_to = start.saturating_sub(1);
    keyledger_ledger::walk(store, start, |record| {
        if record.seq > until || messages.len() == PAGE_EVENTS {
            return Ok(ControlFlow::Break(()));
        }
        read_to = record.seq;
        let keep = wanted
            .as_deref()
            .is_none_or(|w| w.binary_search(&record.seq).is_ok());
        if keep {
            let data = json!({
                "seq": record.seq,
                "prev": hex::encode(record.prev),
                "hash": hex::encode(record.hash),
                "event": keyledger_ledger::wire::event_to_json(&record.event),
            });
            let message = Message::default()
                .id(record.seq.to_string())
                .event("event")
                .data(data.to_string());
            messages.push(message);
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
    if wanted.as_ref().is_some_and(|w| w.len() < PAGE_EVENTS) {
        // Every wanted seq up to `until` was in this page.
        read_to = until;
    }
    Ok((messages, read_to))
}

fn error(code: &str, message: &str) -> Message {
    let data = json!({ "ok": false, "code": code, "message": message });
    Message::default().event("error").data(data.to_string())
}
