//! The audit pages: the log filtered by license ID, key, actor, type and time (each seq a
//! link to its inclusion proof file), and "Verify ledger" with the signed checkpoint.
//! The read rule is the log's (`/v1/log`): operators read every event, others the events
//! in the histories of the license IDs they hold a role on.

use std::collections::HashMap;
use std::ops::ControlFlow;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_core::{KeyId, LicenseId, Timestamp};
use keyledger_ledger::wire::event_to_json;
use serde_json::Value;

use super::page::{error_page, forbidden_page, render, Chrome};
use super::pages::{parse_as_of, readable_license_ids};
use super::session::Viewer;
use crate::serve::App;
use crate::view::wall_clock;

/// Rows on one page of the audit log.
const AUDIT_PAGE_ROWS: usize = 100;
/// Records one page reads at most while looking for matches; past that the page ends
/// with a link that goes on from where it stopped (a filter that matches nothing in a
/// large log costs bounded work a page).
const AUDIT_SCAN_MAX: usize = 100_000;
/// The most seqs of a history one page reads from the history index (a page of a long
/// history ends where they end, and the next goes on from there).
const AUDIT_WANTED_MAX: usize = 10_000;
/// Characters of an event's fields shown in its row.
const SUMMARY_CHARS: usize = 240;

/// What the filter form asked for, as typed (so the form shows it again).
#[derive(Default)]
pub(super) struct AuditQuery {
    pub license_id: String,
    pub key_id: String,
    pub actor: String,
    pub event_type: String,
    pub from: String,
    pub to: String,
}

struct AuditFilter {
    license: Option<LicenseId>,
    key: Option<KeyId>,
    actor: Option<String>,
    event_type: Option<String>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    after: u64,
}

fn read_filter(q: &HashMap<String, String>) -> Result<(AuditQuery, AuditFilter), String> {
    let text = |name: &str| q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let asked = AuditQuery {
        license_id: text("license_id"),
        key_id: text("key_id"),
        actor: text("actor"),
        event_type: text("type"),
        from: text("from"),
        to: text("to"),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let time = |s: &str, name: &str| {
        some(s)
            .map(|s| parse_as_of(&s).map_err(|why| format!("{name}: {why}")))
            .transpose()
    };
    let filter = AuditFilter {
        license: some(&asked.license_id)
            .map(|id| LicenseId::new(&id).map_err(|_| format!("{id:?} is not a license ID")))
            .transpose()?,
        key: some(&asked.key_id)
            .map(|id| {
                id.parse()
                    .map(KeyId)
                    .map_err(|_| format!("Key: {id:?} is not a key id"))
            })
            .transpose()?,
        actor: some(&asked.actor),
        event_type: some(&asked.event_type),
        from: time(&asked.from, "From")?,
        to: time(&asked.to, "To")?,
        after: match q.get("after").map(|s| s.trim()) {
            None | Some("") => 0,
            Some(n) => n
                .parse()
                .map_err(|_| format!("after: {n:?} is not a seq"))?,
        },
    };
    Ok((asked, filter))
}

pub(super) struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub event_type: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    asked: AuditQuery,
    license_ids: Vec<String>,
    rows: Vec<AuditRow>,
    /// Where the next page starts (the query string), when there is more.
    next: Option<String>,
}

/// `GET /ui/audit`: a page of the log's events that match the filter, oldest first.
pub async fn audit_log(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    let (mut asked, mut filter) = match read_filter(&q) {
        Ok(read) => read,
        Err(why) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&viewer.chrome),
                "Audit log",
                &why,
            )
        }
    };
    let license_ids = {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        let readable = readable_license_ids(&p, &viewer.principal);
        if filter.license.is_none() && !viewer.chrome.operator {
            // The whole log is the operators' (the API's rule too): anyone else reads one
            // license ID's history at a time, starting with the first they hold a role on.
            filter.license = readable.first().cloned();
            asked.license_id = filter
                .license
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
        }
        if let Err(refused) = p.may_read_log(&viewer.principal, filter.license.as_ref()) {
            let why = format!("{} ({}).", refused.message, refused.rule);
            return forbidden_page(&viewer.chrome, &why);
        }
        readable
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<String>>()
    };
    let (store, projections) = (app.store.clone(), app.projections.clone());
    let read = tokio::task::spawn_blocking(move || -> keyledger_ledger::Result<_> {
        let wanted = {
            let p = projections
                .read()
                .expect("no writer panics holding the lock");
            readable_seqs(&store, &p, &filter)?
        };
        let (rows, stopped_at) = read_rows(&store, &filter, wanted.as_deref())?;
        // A history longer than one read: the page ends where the seqs read end.
        let more = wanted.as_ref().filter(|w| w.len() == AUDIT_WANTED_MAX);
        let stopped_at = stopped_at.or_else(|| more.and_then(|w| w.last().copied()));
        Ok((rows, stopped_at))
    });
    let (rows, stopped_at) = match read.await {
        Ok(Ok(read)) => read,
        _ => {
            let why = "The log could not be read.";
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&viewer.chrome),
                "Storage",
                why,
            );
        }
    };
    let next = stopped_at.map(|after| next_query(&q, after));
    render(&AuditPage {
        chrome: viewer.chrome,
        asked,
        license_ids,
        rows,
        next,
    })
}

/// The seqs the filter's license ID and key narrow the log to, from `filter.after` on, at
/// most [`AUDIT_WANTED_MAX`] (`None`: every seq, which only an operator's unfiltered page
/// reads); the read rule was checked before.
fn readable_seqs(
    store: &keyledger_ledger::Store,
    p: &keyledger_projections::Projections,
    filter: &AuditFilter,
) -> keyledger_ledger::Result<Option<Vec<u64>>> {
    use keyledger_projections::history::Of;
    let of = match (&filter.license, filter.key) {
        (None, None) => return Ok(None),
        (Some(license), None) => Of::License(license),
        // Only an operator names a key without a license ID.
        (None, Some(key)) => Of::Key(key),
        // A key and a license ID: the key's events, if it is the license ID's (a key's
        // events are all its license ID's), else none.
        (Some(license), Some(key)) => match p.books.keys.get(key) {
            Some(k) if k.license_id == *license => Of::Key(key),
            _ => return Ok(Some(Vec::new())),
        },
    };
    let range = (filter.after + 1, u64::MAX);
    let seqs = crate::view::history_seqs(store, p, of, range, AUDIT_WANTED_MAX)?;
    Ok(Some(seqs.unwrap_or_default()))
}

/// The query string of the page after `after`, with the same filter.
fn next_query(q: &HashMap<String, String>, after: u64) -> String {
    let mut pairs: Vec<(&str, String)> = q
        .iter()
        .filter(|(k, v)| k.as_str() != "after" && !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    pairs.sort();
    pairs.push(("after", after.to_string()));
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    query.finish()
}

/// Reads matching rows after `filter.after`; the second value is where the next page
/// starts, when this one stopped early (full, or at the scan bound).
fn read_rows(
    store: &keyledger_ledger::Store,
    filter: &AuditFilter,
    wanted: Option<&[u64]>,
) -> keyledger_ledger::Result<(Vec<AuditRow>, Option<u64>)> {
    let from = filter.after + 1;
    let wanted: Option<&[u64]> = wanted.map(|w| &w[w.partition_point(|s| *s < from)..]);
    let start = match wanted {
        Some([]) => return Ok((Vec::new(), None)),
        Some(seqs) => seqs[0],
        None => from,
    };
    let (mut rows, mut scanned, mut stopped_at) = (Vec::new(), 0usize, None);
    keyledger_ledger::walk(store, start, |record| {
        if wanted.is_some_and(|w| w.binary_search(&record.seq).is_err()) {
            return Ok(ControlFlow::Continue(()));
        }
        if rows.len() == AUDIT_PAGE_ROWS || scanned == AUDIT_SCAN_MAX {
            stopped_at = Some(record.seq - 1);
            return Ok(ControlFlow::Break(()));
        }
        scanned += 1;
        let event = &record.event;
        if filter.from.is_some_and(|f| event.at < f) || filter.to.is_some_and(|t| event.at >= t) {
            return Ok(ControlFlow::Continue(()));
        }
        if filter
            .actor
            .as_deref()
            .is_some_and(|a| event.actor.as_str() != a)
        {
            return Ok(ControlFlow::Continue(()));
        }
        let mut json = event_to_json(event);
        let event_type = json["type"].as_str().unwrap_or("").to_owned();
        if filter
            .event_type
            .as_deref()
            .is_some_and(|t| t != event_type)
        {
            return Ok(ControlFlow::Continue(()));
        }
        if let Value::Object(fields) = &mut json {
            for name in ["type", "at", "actor"] {
                fields.remove(name);
            }
        }
        let mut summary: String = json.to_string().chars().take(SUMMARY_CHARS + 1).collect();
        if summary.chars().count() > SUMMARY_CHARS {
            summary = summary.chars().take(SUMMARY_CHARS).collect::<String>() + "…";
        }
        rows.push(AuditRow {
            seq: record.seq,
            at: event.at.to_string(),
            actor: event.actor.to_string(),
            event_type,
            summary,
        });
        let last = wanted.is_some_and(|w| w.last() == Some(&record.seq));
        Ok(if last {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok((rows, stopped_at))
}

/// `GET /ui/audit/proofs/{seq}`: the inclusion proof file of one event (docs/proofs.md),
/// as a download; readable as the event is.
pub async fn inclusion_proof(
    State(app): State<App>,
    Path(seq): Path<u64>,
    viewer: Viewer,
) -> Response {
    let readable = app.may_read_seq(&viewer.principal, seq).await;
    if !matches!(readable, Ok(true)) {
        let why = format!("{} may not read seq {seq} (R1).", viewer.principal);
        return forbidden_page(&viewer.chrome, &why);
    }
    let (store, key) = (app.store.clone(), std::sync::Arc::clone(&app.key));
    let made = tokio::task::spawn_blocking(move || {
        let head = store.head()?.seq;
        keyledger_ledger::proof::prove_inclusion(&store, &key, seq, head, wall_clock())
    });
    match made.await {
        Ok(Ok(proof)) => {
            let body = serde_json::to_string_pretty(&proof).expect("proofs serialize");
            let disposition = format!("attachment; filename=\"inclusion-{seq}.json\"");
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Ok(Err(err)) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&viewer.chrome),
            "No proof",
            &err.to_string(),
        ),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&viewer.chrome),
            "No proof",
            "the proof task failed",
        ),
    }
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    chrome: Chrome,
    ok: bool,
    events: u64,
    blocks: u64,
    secrets: u64,
    head_seq: u64,
    head_hash: String,
    problem: String,
    checkpoint: String,
}

/// `GET /ui/verify` (operators): the whole chain decoded and rehashed, and a checkpoint
/// signed now.
pub async fn verify(State(app): State<App>, viewer: Viewer) -> Response {
    // The rule of `GET /v1/verify`: a read of the whole log is the operators' (F14).
    if !viewer.chrome.operator {
        let why = format!(
            "{} is not an operator: verifying the whole chain is theirs",
            viewer.principal
        );
        return forbidden_page(&viewer.chrome, &why);
    }
    let (store, key) = (app.store.clone(), std::sync::Arc::clone(&app.key));
    let ran = tokio::task::spawn_blocking(move || {
        let verified = keyledger_ledger::verify(&store);
        let checkpoint = verified.as_ref().ok().and_then(|report| {
            keyledger_ledger::proof::checkpoint(&store, &key, report.head.seq, wall_clock()).ok()
        });
        (verified, checkpoint)
    })
    .await;
    let Ok((verified, checkpoint)) = ran else {
        let why = "The verification task failed.";
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&viewer.chrome),
            "Verify",
            why,
        );
    };
    let page = match verified {
        Ok(report) => VerifyPage {
            chrome: viewer.chrome,
            ok: true,
            events: report.events,
            blocks: report.blocks,
            secrets: report.secrets,
            head_seq: report.head.seq,
            head_hash: hex::encode(report.head.hash),
            problem: String::new(),
            checkpoint: checkpoint.unwrap_or_default(),
        },
        Err(err) => VerifyPage {
            chrome: viewer.chrome,
            ok: false,
            events: 0,
            blocks: 0,
            secrets: 0,
            head_seq: 0,
            head_hash: String::new(),
            problem: err.to_string(),
            checkpoint: String::new(),
        },
    };
    let status = if page.ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, render(&page)).into_response()
}
