//! The HTTP API (docs/api.md): activations authorised by the key they present; everything
//! else by a bearer token whose principal is the actor.

// Handlers return early with a ready `Response`; boxing it would only add an allocation to
// the error paths of a module whose every function ends in a `Response` anyway.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyledger_core::command::DiscloseKeys;
use keyledger_core::{Command, CommandBody, Digest, DisclosureChannel, LicenseId, Principal};
use keyledger_ledger::wire::{command_from_value, event_to_json, InputError};
use keyledger_ledger::{Answer, Error};
use keyledger_projections::keys::{export_keys, ExportScope};
use keyledger_projections::{license_report, Format};
use serde_json::{json, Map, Value};

use super::middleware::{self, reply};
use super::{auth, App, BODY_BYTES_MAX};
use crate::view::{checked_secrets, now_at_least, parse_time, projections, wall_clock, Until};
use axum::middleware::from_fn;
use keyledger_ledger::Store;
use std::sync::Arc;

/// The most events one `GET /v1/log` page returns.
const LOG_PAGE_MAX: usize = 10_000;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/activations", post(activations))
        .route("/v1/commands", post(commands))
        .route("/v1/license-ids/{id}/report", get(report))
        .route("/v1/keys", get(keys))
        .route("/v1/log", get(log))
        .route("/v1/verify", get(verify))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/proofs/inclusion", get(inclusion_proof))
        .route("/v1/proofs/consistency", get(consistency_proof))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(from_fn(middleware::reject_declared_oversize))
        .layer(from_fn(middleware::require_json_body))
        .layer(from_fn(middleware::single_authorization))
        .layer(from_fn(middleware::json_errors))
        .with_state(app)
}

fn malformed(err: &InputError) -> Response {
    reply(StatusCode::BAD_REQUEST, Answer::malformed(None, err))
}

fn input_error(field: Option<&str>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// The status of an answer: refusals are 4xx by kind (STYLE: a rule said no).
fn status_of(answer: &Answer) -> StatusCode {
    if answer.ok {
        return StatusCode::OK;
    }
    match answer.code().unwrap_or("") {
        "forbidden" => StatusCode::FORBIDDEN,
        "malformed" => StatusCode::BAD_REQUEST,
        "record_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "not_committed" | "storage" => StatusCode::SERVICE_UNAVAILABLE,
        code if code.starts_with("unknown_") => StatusCode::NOT_FOUND,
        "already_exists"
        | "request_already_decided"
        | "already_redeemed"
        | "time_regression"
        | "command_id_reused" => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn writer_error(err: Error) -> Response {
    let (status, code) = match err {
        Error::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "not_committed"),
        Error::WriterStopped(_) => (StatusCode::SERVICE_UNAVAILABLE, "writer_stopped"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not_committed"),
    };
    reply(status, Answer::error(code, err.to_string()))
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    keyledger_ledger::wire::parse_json(body).map_err(|e| malformed(&e))
}

fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth::principal(&app.store, header).map_err(|e| match e {
        auth::AuthError::Unreadable(why) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Answer::error("storage", format!("cannot check the token now: {why}")),
        ),
        e => reply(
            StatusCode::UNAUTHORIZED,
            Answer::error("unauthorized", e.message()),
        ),
    })
}

fn forbidden(rule: &str, message: String) -> Response {
    let mut answer = Answer::error("forbidden", message);
    answer.text_mut().rule = Some(rule.to_owned());
    reply(StatusCode::FORBIDDEN, answer)
}

/// `POST /v1/activations`: authorised by the key text presented; `at` is the server's.
async fn activations(State(app): State<App>, body: Bytes) -> Response {
    let command = match super::activation::plain_activation(&body, wall_clock()) {
        Some(command) => command,
        None => match super::activation::general_activation(&body, wall_clock()) {
            Ok(command) => command,
            Err(err) => return malformed(&err),
        },
    };
    app.metrics.queue_depth.set(app.writer.queue_depth() as i64);
    match app.writer.try_submit_stamped(vec![command]).await {
        Ok(mut answers) => answered(&app, answers.remove(0)),
        Err(err) => writer_error(err),
    }
}

fn answered(app: &App, answer: Answer) -> Response {
    if let (false, Some(code)) = (answer.ok, answer.code()) {
        app.metrics.refused(code);
    }
    (status_of(&answer), Json(answer)).into_response()
}

#[derive(serde::Deserialize)]
struct AtomicQuery {
    #[serde(default)]
    atomic: bool,
}

/// `POST /v1/commands[?atomic=true]`: one command or an array; the token's principal acts.
async fn commands(
    State(app): State<App>,
    Query(q): Query<AtomicQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let principal = match authenticate(&app, &headers) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let value = match parse_body(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let single = !value.is_array();
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut commands = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut fields) = item else {
            return malformed(&input_error(
                None,
                format!("command {i}: not a JSON object"),
            ));
        };
        match fields.get("actor").and_then(Value::as_str) {
            Some(actor) if actor != principal.as_str() => {
                return forbidden(
                    "R3",
                    format!("command {i}: actor {actor} is not the token's principal {principal}"),
                );
            }
            _ => {
                fields.insert("actor".to_owned(), json!(principal.as_str()));
            }
        }
        match command_from_value(Value::Object(fields)) {
            Ok(command) => commands.push(command),
            Err(err) => {
                let mut answer = Answer::malformed(None, &err);
                answer.text_mut().message = Some(format!("command {i}: {err}"));
                return reply(StatusCode::BAD_REQUEST, answer);
            }
        }
    }
    let answers = match app.writer.try_submit(commands, q.atomic).await {
        Ok(answers) => answers,
        Err(err) => return writer_error(err),
    };
    for answer in answers.iter().filter(|a| !a.ok) {
        app.metrics.refused(answer.code().unwrap_or(""));
    }
    if single {
        let answer = answers.into_iter().next().expect("one answer per command");
        return (status_of(&answer), Json(answer)).into_response();
    }
    (StatusCode::OK, Json(answers)).into_response()
}

/// Operators see every license ID; others those they hold a role on.
fn may_read(app: &App, principal: &Principal, license: &LicenseId) -> bool {
    app.projections
        .read()
        .expect("no writer panics holding the lock")
        .may_read(principal, license)
}

/// `GET /v1/license-ids/{id}/report[?as_of=T&format=json|tsv|table]`.
async fn report(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&app, &headers) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let Ok(license) = LicenseId::new(id.as_str()) else {
        return malformed(&input_error(Some("id"), "not a license ID"));
    };
    if !may_read(&app, &principal, &license) {
        return forbidden(
            "R1",
            format!("{principal} holds no role on license ID {license}"),
        );
    }
    let format: Format = match q
        .get("format")
        .map(String::as_str)
        .unwrap_or("json")
        .parse()
    {
        Ok(format) => format,
        Err(message) => return malformed(&input_error(Some("format"), message)),
    };
    let rendered = match q.get("as_of") {
        Some(text) => {
            let at = match parse_time(text, "as_of") {
                Ok(at) => at,
                Err(err) => return malformed(&input_error(Some("as_of"), format!("{err:#}"))),
            };
            let store = app.store.clone();
            let folded =
                tokio::task::spawn_blocking(move || projections(&store, Until::Time(at))).await;
            match folded {
                Ok(Ok(p)) => license_report(&p, &license, at).map(|r| r.render(format)),
                _ => {
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Answer::error("storage", "cannot fold the log"),
                    )
                }
            }
        }
        None => {
            let p = app
                .projections
                .read()
                .expect("no writer panics holding the lock");
            let at = now_at_least(p.last_at);
            license_report(&p, &license, at).map(|r| r.render(format))
        }
    };
    match rendered {
        Some(body) => ([(header::CONTENT_TYPE, content_type(format))], body).into_response(),
        None => reply(
            StatusCode::NOT_FOUND,
            Answer::error("unknown_license_id", format!("no license ID {license}")),
        ),
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Tsv => "text/tab-separated-values; charset=utf-8",
        Format::Table => "text/plain; charset=utf-8",
    }
}

/// `GET /v1/keys?license_id=..&format=tsv|json`: R1/R2, the disclosure recorded first.
async fn keys(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&app, &headers) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let scope = match q.get("license_id") {
        Some(id) => match LicenseId::new(id.as_str()) {
            Ok(id) => ExportScope::LicenseIds(vec![id]),
            Err(_) => return malformed(&input_error(Some("license_id"), "not a license ID")),
        },
        None => ExportScope::All,
    };
    let json_out = match q.get("format").map(String::as_str).unwrap_or("tsv") {
        "tsv" => false,
        "json" => true,
        other => {
            return malformed(&input_error(
                Some("format"),
                format!("{other:?}: expected tsv or json"),
            ))
        }
    };
    let export = {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        export_keys(&p, &scope, &principal, checked_secrets(&app.store))
    };
    let export = match export {
        Ok(export) => export,
        Err(err) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                Answer::error("secret_mismatch", err.to_string()),
            )
        }
    };
    if !export.disclosed.is_empty() {
        let command = Command {
            at: wall_clock(),
            actor: principal.clone(),
            command_id: None,
            body: CommandBody::DiscloseKeys(DiscloseKeys {
                key_ids: export.disclosed.clone(),
                channel: DisclosureChannel::Export,
                export_digest: Some(Digest(*blake3::hash(&export.tsv).as_bytes())),
            }),
        };
        match app.writer.try_submit_stamped(vec![command]).await {
            Ok(answers) if answers[0].ok => {}
            Ok(mut answers) => return answered(&app, answers.remove(0)),
            Err(err) => return writer_error(err),
        }
    }
    let text = String::from_utf8(export.tsv).expect("exports are UTF-8");
    if !json_out {
        return (
            [(
                header::CONTENT_TYPE,
                "text/tab-separated-values; charset=utf-8",
            )],
            text,
        )
            .into_response();
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let rows: Vec<Map<String, Value>> = lines
        .map(|line| {
            header
                .iter()
                .zip(line.split('\t'))
                .map(|(h, v)| ((*h).to_owned(), json!(v)))
                .collect()
        })
        .collect();
    Json(json!({ "keys": rows, "disclosed": export.disclosed.len() })).into_response()
}

/// `GET /v1/log?from=SEQ&license_id=..&limit=N`: a page of events and where the next starts.
async fn log(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&app, &headers) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let number = |name: &str, default: u64| -> Result<u64, Response> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| malformed(&input_error(Some(name), "expected a whole number")))
        })
    };
    let (from, limit) = match (number("from", 1), number("limit", 1000)) {
        (Ok(from), Ok(limit)) => (from, (limit as usize).clamp(1, LOG_PAGE_MAX)),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let wanted: Option<Vec<u64>> = match q.get("license_id") {
        Some(id) => {
            let Ok(license) = LicenseId::new(id.as_str()) else {
                return malformed(&input_error(Some("license_id"), "not a license ID"));
            };
            if !may_read(&app, &principal, &license) {
                return forbidden(
                    "R1",
                    format!("{principal} holds no role on license ID {license}"),
                );
            }
            let p = app
                .projections
                .read()
                .expect("no writer panics holding the lock");
            Some(
                p.license_history(&license)
                    .map(|history| {
                        history
                            .into_iter()
                            .filter(|s| *s >= from)
                            .take(limit)
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        }
        None => {
            let operator = app
                .projections
                .read()
                .expect("no writer panics holding the lock")
                .books
                .operators
                .contains(&principal);
            if !operator {
                return forbidden(
                    "R3",
                    format!(
                        "{principal} is not an operator: filter by a license ID you hold a role on"
                    ),
                );
            }
            None
        }
    };
    let store = app.store.clone();
    let page =
        tokio::task::spawn_blocking(move || read_page(&store, from, limit, wanted.as_deref()))
            .await;
    match page {
        Ok(Ok(body)) => Json(body).into_response(),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", "cannot read the log"),
        ),
    }
}

fn read_page(
    store: &keyledger_ledger::Store,
    from: u64,
    limit: usize,
    wanted: Option<&[u64]>,
) -> keyledger_ledger::Result<Value> {
    let mut events = Vec::new();
    let mut next = None;
    let start = match wanted {
        Some([]) => return Ok(json!({ "events": [], "next_from": null })),
        Some(seqs) => seqs[0],
        None => from,
    };
    keyledger_ledger::walk(store, start, |record| {
        if wanted.is_some_and(|w| w.binary_search(&record.seq).is_err()) {
            return Ok(std::ops::ControlFlow::Continue(()));
        }
        if events.len() == limit {
            next = Some(record.seq);
            return Ok(std::ops::ControlFlow::Break(()));
        }
        events.push(json!({ "seq": record.seq, "event": event_to_json(&record.event) }));
        let done = wanted.is_some_and(|w| w.last() == Some(&record.seq));
        Ok(if done {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        })
    })?;
    Ok(json!({ "events": events, "next_from": next }))
}

/// `GET /v1/verify`: the whole chain, decoded and rehashed.
async fn verify(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(response) = authenticate(&app, &headers) {
        return response;
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

fn head_seq(app: &App) -> Result<u64, Response> {
    app.store.head().map(|h| h.seq).map_err(|e| {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", e.to_string()),
        )
    })
}

fn number(q: &HashMap<String, String>, name: &str, default: Option<u64>) -> Result<u64, Response> {
    match (q.get(name), default) {
        (Some(v), _) => v
            .parse()
            .map_err(|_| malformed(&input_error(Some(name), "expected a whole number"))),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(malformed(&input_error(Some(name), "missing"))),
    }
}

/// How a proof is made from its two bounds (`prove_inclusion`, `prove_consistency`).
type Prove = fn(
    &Store,
    &keyledger_ledger::checkpoint::LedgerKey,
    u64,
    u64,
    keyledger_core::Timestamp,
) -> keyledger_ledger::Result<keyledger_ledger::proof::ProofFile>;

/// A proof endpoint: the caller's token, the two bounds named `bounds` (the first required,
/// the second the head's seq when absent), then the proof, built on a blocking thread since
/// it reads blocks and subtree hashes.
async fn proof_response(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    bounds: [&str; 2],
    prove: Prove,
) -> Response {
    let (first, second) = match proof_bounds(app, headers, q, bounds) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let (store, key) = (app.store.clone(), Arc::clone(&app.key));
    let made =
        tokio::task::spawn_blocking(move || prove(&store, &key, first, second, wall_clock()));
    match made.await {
        // Through a `Value`, as before this helper existed: the same bytes on the wire.
        Ok(Ok(proof)) => {
            Json(serde_json::to_value(proof).expect("proofs serialize")).into_response()
        }
        Ok(Err(err)) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            Answer::error("invalid", err.to_string()),
        ),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", "the proof task failed"),
        ),
    }
}

/// `GET /v1/checkpoint[?size=N]`: a signed checkpoint (text/plain), public.
async fn checkpoint(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Response {
    let size = match head_seq(&app).and_then(|head| number(&q, "size", Some(head))) {
        Ok(size) => size,
        Err(response) => return response,
    };
    match keyledger_ledger::proof::checkpoint(&app.store, &app.key, size, wall_clock()) {
        Ok(note) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        Err(err) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            Answer::error("invalid", err.to_string()),
        ),
    }
}

/// The caller's token checked, then the two numbers a proof is about: the first required,
/// the second the head's seq when absent.
fn proof_bounds(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    [first, second]: [&str; 2],
) -> Result<(u64, u64), Response> {
    authenticate(app, headers)?;
    let head = head_seq(app)?;
    Ok((number(q, first, None)?, number(q, second, Some(head))?))
}

/// `GET /v1/proofs/inclusion?seq=N[&size=M]`: the proof carries the record, so the caller
/// must be allowed to read that event, as in `/v1/log` (issue 13, finding 4).
async fn inclusion_proof(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&app, &headers) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if let Ok(seq) = number(&q, "seq", None) {
        let readable = app
            .projections
            .read()
            .expect("no writer panics holding the lock")
            .may_read_seq(&principal, seq);
        if !readable {
            return forbidden(
                "R1",
                format!("{principal} may not read seq {seq}: it is in no license ID's history they hold a role on"),
            );
        }
    }
    let prove: Prove = keyledger_ledger::proof::prove_inclusion;
    proof_response(&app, &headers, &q, ["seq", "size"], prove).await
}

/// `GET /v1/proofs/consistency?from=M[&to=N]`: token required.
async fn consistency_proof(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let prove: Prove = keyledger_ledger::proof::prove_consistency;
    proof_response(&app, &headers, &q, ["from", "to"], prove).await
}

/// `GET /healthz`: 200 while the writer takes commands; 503 with the reason while it is
/// degraded (a failed commit it has not recovered from yet) or stopped.
async fn healthz(State(app): State<App>) -> Response {
    use keyledger_ledger::health::Status;
    let seq = app
        .projections
        .read()
        .expect("no writer panics holding the lock")
        .last_seq;
    let report = app.writer.health().report();
    let (status, state, reason) = match &report.status {
        Status::Ok => (StatusCode::OK, "ok", None),
        Status::Degraded(why) => (StatusCode::SERVICE_UNAVAILABLE, "degraded", Some(why)),
        Status::Stopped(why) => (StatusCode::SERVICE_UNAVAILABLE, "writer_stopped", Some(why)),
    };
    let mut body = json!({ "ok": status == StatusCode::OK, "status": state, "seq": seq });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    if report.restarts > 0 {
        body["writer_restarts"] = json!(report.restarts);
        body["last_failure"] = json!(report.last_failure);
    }
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    app.metrics.queue_depth.set(app.writer.queue_depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
