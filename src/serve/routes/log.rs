//! The log, page by page, and its verification.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;
use crate::serve::feed::{PAGE_BYTES_MAX, PAGE_SCAN_MAX};
use crate::view::history_seqs;
use keyledger_projections::history::Of;

/// The most events one `GET /v1/log` page returns.
const LOG_PAGE_MAX: usize = 10_000;

/// `GET /v1/log?from=SEQ&license_id=..&limit=N`: a page of events and where the next starts.
#[utoipa::path(
    get,
    path = "/v1/log",
    tag = "log",
    description = "A page of the log (operators: all of it; others: a license ID they hold a role on).",
    params(
        ("from" = Option<u64>, Query, description = "the first seq (default 1)"),
        ("license_id" = Option<String>, Query),
        ("limit" = Option<u64>, Query, description = "at most this many events (default 1000)")
    ),
    responses(
        (status = 200, description = "the page", body = crate::serve::openapi::LogPage),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 500, description = "the log cannot be read", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn log(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    let (from, limit, license) = match (
        q.number("from", Some(1)),
        q.number("limit", Some(1000)),
        q.license_id("license_id"),
    ) {
        (Ok(from), Ok(limit), Ok(license)) => {
            (from, (limit as usize).clamp(1, LOG_PAGE_MAX), license)
        }
        (Err(response), _, _) | (_, Err(response), _) | (_, _, Err(response)) => return response,
    };
    if let Err(response) = may_read_log(&app, &principal, license.as_ref()) {
        return response;
    }
    let (store, projections) = (app.store.clone(), app.projections.clone());
    let page = tokio::task::spawn_blocking(move || {
        // One seq past the page, so the answer says where the next page starts.
        let wanted = match license {
            Some(license) => {
                let p = projections
                    .read()
                    .expect("no writer panics holding the lock");
                let of = Of::License(&license);
                Some(history_seqs(&store, &p, of, (from, u64::MAX), limit + 1)?.unwrap_or_default())
            }
            None => None,
        };
        read_page(&store, from, limit, wanted.as_deref())
    })
    .await;
    match page {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", "cannot read the log"),
        ),
    }
}

/// `{"events":[{"event","seq"}…],"next_from"}`: at most `limit` events, ending early at
/// the event that brings the page to `PAGE_BYTES_MAX` or after `PAGE_SCAN_MAX` events
/// read; `next_from` is where the next page starts (`null` at the end of the log).
fn read_page(
    store: &keyledger_ledger::Store,
    from: u64,
    limit: usize,
    wanted: Option<&[u64]>,
) -> keyledger_ledger::Result<Vec<u8>> {
    let mut body = br#"{"events":["#.to_vec();
    let (mut events, mut scanned) = (0, 0);
    let mut next = None;
    let start = match wanted {
        Some([]) => None,
        Some(seqs) => Some(seqs[0]),
        None => Some(from),
    };
    if let Some(start) = start {
        keyledger_ledger::walk(store, start, |record| {
            if scanned == PAGE_SCAN_MAX {
                next = Some(record.seq);
                return Ok(std::ops::ControlFlow::Break(()));
            }
            scanned += 1;
            if wanted.is_some_and(|w| w.binary_search(&record.seq).is_err()) {
                return Ok(std::ops::ControlFlow::Continue(()));
            }
            if events == limit || body.len() >= PAGE_BYTES_MAX {
                next = Some(record.seq);
                return Ok(std::ops::ControlFlow::Break(()));
            }
            if events > 0 {
                body.push(b',');
            }
            let item = json!({ "seq": record.seq, "event": event_to_json(&record.event) });
            serde_json::to_writer(&mut body, &item).expect("a JSON value serializes");
            events += 1;
            // The license ID's last event: nothing of it follows.
            let done = wanted.is_some_and(|w| w.last() == Some(&record.seq));
            Ok(if done {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            })
        })?;
    }
    body.extend_from_slice(br#"],"next_from":"#);
    serde_json::to_writer(&mut body, &next).expect("a number serializes");
    body.push(b'}');
    Ok(body)
}

/// `GET /v1/verify` (operators): the whole chain, decoded and rehashed. It reads the
/// whole log, so it is no cost any token may impose at will (F14).
#[utoipa::path(
    get,
    path = "/v1/verify",
    tag = "log",
    description = "The whole chain decoded and rehashed (operators).",
    responses(
        (status = 200, description = "the chain verifies", body = crate::serve::openapi::Verified),
        (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 500, description = "corrupt, naming the seq", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn verify(State(app): State<App>, Caller(principal): Caller) -> Response {
    if !app.is_operator(&principal) {
        return forbidden(
            "R3",
            format!("{principal} is not an operator: verifying the whole chain is theirs (an auditor runs keyledger verify on a copy)"),
        );
    }
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || keyledger_ledger::verify(&store)).await {
        Ok(Ok(report)) => Json(json!({
            "ok": true,
            "events": report.events,
            "blocks": report.blocks,
            "secrets": report.secrets,
            "head_seq": report.head.seq,
            "head_hash": hex::encode(report.head.hash),
        }))
        .into_response(),
        Ok(Err(Error::Corrupt(c))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({ "ok": false, "code": "corrupt", "seq": c.seq(), "message": c.to_string() }),
            ),
        )
            .into_response(),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", "cannot read the log"),
        ),
    }
}
