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
use keyledger_core::{EventKind, KeyId, LicenseId, Timestamp};
use keyledger_ledger::wire::event_to_json;
use serde_json::Value;

use super::page::{error_page, forbidden_page, render, Chrome};
use super::pages::{parse_as_of, readable_license, readable_license_ids};
use super::session::Viewer;
use crate::serve::streams::StatementFailure;
use crate::serve::App;
use crate::view::wall_clock;

/// Rows on one page of the audit log.
const AUDIT_PAGE_ROWS: usize = 100;
/// Seqs one page looks through at most, newest first, while looking for matches; past that
/// the page ends with a link that goes on from where it stopped (a filter that matches
/// nothing in a large log costs bounded work a page).
const AUDIT_SCAN_MAX: u64 = 100_000;
/// Seqs a page reads at a time, going back from the newest: one history lookup (at most
/// this many seqs, so it is complete) or one walk of the log.
const AUDIT_WINDOW: u64 = 4_096;
/// Characters of one field's value shown in a row.
const VALUE_CHARS: usize = 120;
/// Items of a list shown in a row (a proxy activation names up to 10,000 machines).
const LIST_ITEMS: usize = 5;

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
    /// Show events before this seq (`None`: from the newest).
    before: Option<u64>,
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
        before: match q.get("before").map(|s| s.trim()) {
            None | Some("") => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| format!("before: {n:?} is not a seq"))?,
            ),
        },
    };
    Ok((asked, filter))
}

pub(super) struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub event_type: String,
    /// The event's own fields, as (name, value) in words.
    pub fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    asked: AuditQuery,
    license_ids: Vec<String>,
    rows: Vec<AuditRow>,
    /// Every event type, for the type picker.
    event_types: Vec<&'static str>,
    /// Where the page of older events starts (the query string), when there is more.
    next: Option<String>,
}

/// `GET /ui/audit`: a page of the log's events that match the filter, newest first.
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
    let read = tokio::task::spawn_blocking(move || read_page(&store, &projections, &filter));
    let (rows, older) = match read.await {
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
    let next = older.map(|before| next_query(&q, before));
    render(&AuditPage {
        chrome: viewer.chrome,
        asked,
        license_ids,
        rows,
        event_types: EventKind::ALL.iter().map(|k| k.name()).collect(),
        next,
    })
}

/// A page of rows, and where the page of older ones starts.
type Page = (Vec<AuditRow>, Option<u64>);

/// A page of matching events, newest first, before `filter.before` (or from the head), and
/// where the page of older ones starts (`before` for it) when there are more. Reads the log
/// a window of [`AUDIT_WINDOW`] seqs at a time, going back, and looks through at most
/// [`AUDIT_SCAN_MAX`] seqs.
fn read_page(
    store: &keyledger_ledger::Store,
    projections: &std::sync::RwLock<keyledger_projections::Projections>,
    filter: &AuditFilter,
) -> keyledger_ledger::Result<Page> {
    let head = store.head()?.seq;
    let mut hi = filter
        .before
        .map_or(head, |b| b.saturating_sub(1))
        .min(head);
    let (mut rows, mut scanned) = (Vec::new(), 0);
    while hi >= 1 && rows.len() <= AUDIT_PAGE_ROWS && scanned < AUDIT_SCAN_MAX {
        let lo = hi.saturating_sub(AUDIT_WINDOW - 1).max(1);
        let wanted = {
            let p = projections
                .read()
                .expect("no writer panics holding the lock");
            readable_seqs(store, &p, filter, lo, hi)?
        };
        let mut window = window_rows(store, filter, lo, hi, wanted.as_deref())?;
        window.reverse();
        rows.extend(window);
        scanned += hi - lo + 1;
        hi = lo - 1;
    }
    let older = if rows.len() > AUDIT_PAGE_ROWS {
        rows.truncate(AUDIT_PAGE_ROWS);
        rows.last().map(|r| r.seq)
    } else {
        // Stopped at the scan bound with seqs left: the next page goes on below them.
        (hi >= 1).then_some(hi + 1)
    };
    Ok((rows, older))
}

/// The seqs in `lo..=hi` the filter's license ID and key narrow the log to (`None`: every
/// seq, which only an operator's unfiltered page reads); the read rule was checked before.
fn readable_seqs(
    store: &keyledger_ledger::Store,
    p: &keyledger_projections::Projections,
    filter: &AuditFilter,
    lo: u64,
    hi: u64,
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
    // A window holds at most AUDIT_WINDOW seqs, so this reads all of its history.
    let most = usize::try_from(hi - lo + 1).unwrap_or(usize::MAX);
    let seqs = crate::view::history_seqs(store, p, of, (lo, hi), most)?;
    Ok(Some(seqs.unwrap_or_default()))
}

/// The query string of the page of events before `before`, with the same filter.
fn next_query(q: &HashMap<String, String>, before: u64) -> String {
    let mut pairs: Vec<(&str, String)> = q
        .iter()
        .filter(|(k, v)| k.as_str() != "before" && !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    pairs.sort();
    pairs.push(("before", before.to_string()));
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    query.finish()
}

/// The matching rows among seqs `lo..=hi` (only `wanted` ones, when given), oldest first.
fn window_rows(
    store: &keyledger_ledger::Store,
    filter: &AuditFilter,
    lo: u64,
    hi: u64,
    wanted: Option<&[u64]>,
) -> keyledger_ledger::Result<Vec<AuditRow>> {
    let start = match wanted {
        Some([]) => return Ok(Vec::new()),
        Some(seqs) => seqs[0].max(lo),
        None => lo,
    };
    let mut rows = Vec::new();
    keyledger_ledger::walk(store, start, |record| {
        if record.seq > hi {
            return Ok(ControlFlow::Break(()));
        }
        if wanted.is_some_and(|w| w.binary_search(&record.seq).is_err()) {
            return Ok(ControlFlow::Continue(()));
        }
        if let Some(row) = row_of(filter, record.seq, &record.event) {
            rows.push(row);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(rows)
}

/// The event's row, when it passes the filter's time, actor and type.
fn row_of(filter: &AuditFilter, seq: u64, event: &keyledger_core::Event) -> Option<AuditRow> {
    let in_time =
        filter.from.is_none_or(|f| event.at >= f) && filter.to.is_none_or(|t| event.at < t);
    let by_actor = filter
        .actor
        .as_deref()
        .is_none_or(|a| event.actor.as_str() == a);
    let event_type = event.body.kind().name();
    let of_type = filter.event_type.as_deref().is_none_or(|t| t == event_type);
    if !(in_time && by_actor && of_type) {
        return None;
    }
    let json = event_to_json(event);
    let fields = match json {
        Value::Object(fields) => fields
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_str(), "type" | "at" | "actor"))
            .map(|(name, value)| (name, in_words(&value)))
            .collect(),
        _ => Vec::new(),
    };
    Some(AuditRow {
        seq,
        at: event.at.to_string(),
        actor: event.actor.to_string(),
        event_type: event_type.to_owned(),
        fields,
    })
}

/// A field's value as a person reads it: text as itself, lists as their first items and
/// their count, nested fields as `name: value`; cut at [`VALUE_CHARS`].
fn in_words(value: &Value) -> String {
    let words = match value {
        Value::Null => "—".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().take(LIST_ITEMS).map(in_words).collect();
            match items.len() {
                n if n > LIST_ITEMS => format!("{} … ({n} in all)", shown.join(", ")),
                _ => shown.join(", "),
            }
        }
        Value::Object(fields) => fields
            .iter()
            .map(|(name, value)| format!("{name}: {}", in_words(value)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    if words.chars().count() <= VALUE_CHARS {
        return words;
    }
    words.chars().take(VALUE_CHARS).collect::<String>() + "…"
}

/// `GET /ui/license-ids/{id}/statement`: the license ID's statement (docs/proofs.md,
/// "Statements") as a download, made as `GET /v1/statements/{id}` makes it; readable as the
/// license ID's report is.
pub async fn statement(State(app): State<App>, Path(id): Path<String>, viewer: Viewer) -> Response {
    let license = match readable_license(&app, &viewer, &id) {
        Ok(license) => license,
        Err(page) => return page,
    };
    let filename = format!("statement-{license}.json");
    match crate::serve::streams::statement(&app, license, false).await {
        Ok(statement) => {
            let body = serde_json::to_string_pretty(&statement).expect("statements serialize");
            let disposition = format!("attachment; filename=\"{filename}\"");
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Err(StatementFailure::NotFound(why)) => error_page(
            StatusCode::NOT_FOUND,
            Some(&viewer.chrome),
            "No statement",
            &why,
        ),
        Err(StatementFailure::Busy) => error_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&viewer.chrome),
            "No statement",
            "Another statement is being made; try again in a moment.",
        ),
        Err(StatementFailure::Unavailable(why)) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&viewer.chrome),
            "No statement",
            &why,
        ),
    }
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
