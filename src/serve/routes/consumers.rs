//! Durable consumers over HTTP (docs/api.md, "Durable consumers"): a
//! consumer pulls the events after its acknowledged position and acknowledges what it has
//! processed; the position is kept in the ledger's database, so a restart of either side
//! loses nothing. Delivery is at least once, in seq order: the seq is the idempotency key.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyledger_ledger::consumer::{Consumer, Signing, Webhook};
use serde_json::{json, Value};

use super::*;

/// The most events one page of a consumer's events holds.
const CONSUMER_PAGE_MAX: u64 = 10_000;

fn storage(err: &keyledger_ledger::Error) -> Response {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        Answer::error("storage", err.to_string()),
    )
}

/// 404 `unknown_consumer`.
fn unknown(name: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        Answer::error("unknown_consumer", format!("no consumer {name:?}")),
    )
}

fn operator_only(app: &App, principal: &Principal) -> Result<(), Response> {
    if app.is_operator(principal) {
        return Ok(());
    }
    Err(forbidden(
        "R3",
        format!("{principal} is not an operator: consumers are managed by operators"),
    ))
}

/// The consumer `name`, if the caller may read its events (the read rule of `/v1/log`).
fn readable_consumer(app: &App, principal: &Principal, name: &str) -> Result<Consumer, Response> {
    let consumer = match app.store.consumer(name) {
        Ok(Some(consumer)) => consumer,
        Ok(None) => return Err(unknown(name)),
        Err(err) => return Err(storage(&err)),
    };
    let license = match consumer.license_id.as_deref().map(LicenseId::new) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return Err(storage(&keyledger_ledger::Error::Storage(format!(
                "consumer {name:?} names a license ID that is not one"
            ))))
        }
        None => None,
    };
    may_read_log(app, principal, license.as_ref())?;
    Ok(consumer)
}

/// `POST /v1/consumers` `{"name", "license_id"?, "types"?}` (operators).
#[utoipa::path(
    post,
    path = "/v1/consumers",
    tag = "consumers",
    description = "A durable consumer (operators): pulled, or pushed to a webhook; of events or of alerts.",
    request_body(content = Object, description = "`name`, `license_id`?, `types`?, `webhook`? {url, secret?}, `feed`? (events|alerts)"),
    responses(
        (status = 201, description = "made; the only answer that shows a webhook's secret", body = crate::serve::openapi::ConsumerAnswer),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 409, description = "already_exists", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    if let Err(response) = operator_only(&app, &principal) {
        return response;
    }
    let value = match parse_body(&body) {
        Ok(value) => value,
        Err(response) => return response,
    };
    if let Err(response) = known_fields(
        &value,
        "",
        &["name", "license_id", "types", "webhook", "feed"],
    )
    .and_then(|()| match value.get("webhook") {
        Some(hook @ Value::Object(_)) => {
            known_fields(hook, "webhook.", &["url", "signing", "batch"])
        }
        _ => Ok(()),
    }) {
        return response;
    }
    let text = |field: &str| value.get(field).and_then(Value::as_str);
    let Some(name) = text("name") else {
        return malformed(&input_error(Some("name"), "missing or not a string"));
    };
    let types = match types_of(&value) {
        Ok(types) => types,
        Err(response) => return response,
    };
    let mut consumer = match Consumer::new(name, text("license_id"), &types, wall_clock()) {
        Ok(consumer) => consumer,
        Err(why) => return malformed(&input_error(None, why)),
    };
    match value.get("webhook") {
        None | Some(Value::Null) => {}
        Some(hook) => match webhook_of(hook) {
            Ok(webhook) => consumer.webhook = Some(webhook),
            Err(response) => return response,
        },
    }
    match value.get("feed") {
        None | Some(Value::Null) => {}
        Some(Value::String(feed)) if feed == "events" => {}
        Some(Value::String(feed)) if feed == "alerts" => {
            if let Err(why) = consumer.feed_alerts() {
                return malformed(&input_error(Some("feed"), why));
            }
        }
        Some(_) => return malformed(&input_error(Some("feed"), "expected events or alerts")),
    }
    match app.store.create_consumer(&consumer) {
        Ok(true) => {
            app.consumers_changed.notify_one();
            // The only answer that shows a webhook's secret.
            (
                StatusCode::CREATED,
                Json(json!({ "ok": true, "consumer": consumer })),
            )
                .into_response()
        }
        Ok(false) => reply(
            StatusCode::CONFLICT,
            Answer::error(
                "already_exists",
                format!("consumer {name:?} exists already"),
            ),
        ),
        Err(err) => storage(&err),
    }
}

/// The `types` of a consumer body: absent or null is every type.
fn types_of(value: &Value) -> Result<Vec<String>, Response> {
    let wrong = || {
        malformed(&input_error(
            Some("types"),
            "expected an array of event types",
        ))
    };
    match value.get("types") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(wrong),
        Some(_) => Err(wrong()),
    }
}

/// Refuses a field that is not one of `known` (fail closed: a misspelt `licence_id` must
/// not make a consumer of every license ID's events).
fn known_fields(value: &Value, prefix: &str, known: &[&str]) -> Result<(), Response> {
    let Value::Object(fields) = value else {
        return Err(malformed(&input_error(
            (!prefix.is_empty()).then(|| prefix.trim_end_matches('.')),
            "expected a JSON object",
        )));
    };
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        Some(field) => Err(malformed(&input_error(
            Some(&format!("{prefix}{field}")),
            format!("unknown field; expected one of {}", known.join(", ")),
        ))),
        None => Ok(()),
    }
}

/// `{"url", "signing"?, "batch"?}`: a webhook with a new secret for `hmac-sha256` (the
/// default signing).
fn webhook_of(hook: &Value) -> Result<Webhook, Response> {
    let field = |name: &str| format!("webhook.{name}");
    let Some(url) = hook.get("url").and_then(Value::as_str) else {
        return Err(malformed(&input_error(
            Some(&field("url")),
            "missing or not a string",
        )));
    };
    let signing = match hook.get("signing") {
        None | Some(Value::Null) => Signing::HmacSha256,
        Some(Value::String(text)) => match Signing::parse(text) {
            Ok(signing) => signing,
            Err(why) => return Err(malformed(&input_error(Some(&field("signing")), why))),
        },
        Some(_) => {
            return Err(malformed(&input_error(
                Some(&field("signing")),
                "expected hmac-sha256 or ed25519",
            )))
        }
    };
    let batch = match hook.get("batch") {
        None | Some(Value::Null) => None,
        Some(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                return Err(malformed(&input_error(
                    Some(&field("batch")),
                    "expected a whole number",
                )))
            }
        },
    };
    let secret = (signing == Signing::HmacSha256).then(crate::serve::webhooks::new_secret);
    Webhook::new(url, signing, secret, batch)
        .map_err(|why| malformed(&input_error(Some("webhook"), why)))
}

/// `GET /v1/consumers/{name}`: one consumer with its webhook's state and newest attempts
/// (its secret left out), for whoever may read its events.
#[utoipa::path(
    get,
    path = "/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "the consumer, its secret left out", body = crate::serve::openapi::ConsumerAnswer),
        (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "unknown consumer", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn show(
    State(app): State<App>,
    Path(name): Path<String>,
    Caller(principal): Caller,
) -> Response {
    match readable_consumer(&app, &principal, &name) {
        Ok(consumer) => Json(json!({ "consumer": consumer.redacted() })).into_response(),
        Err(response) => response,
    }
}

/// `GET /v1/consumers` (operators).
#[utoipa::path(
    get,
    path = "/v1/consumers",
    tag = "consumers",
    responses(
        (status = 200, description = "every consumer (operators)", body = crate::serve::openapi::Consumers),
        (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn list(State(app): State<App>, Caller(principal): Caller) -> Response {
    if let Err(response) = operator_only(&app, &principal) {
        return response;
    }
    match app.store.consumers() {
        Ok(all) => {
            let shown: Vec<Consumer> = all.iter().map(Consumer::redacted).collect();
            Json(json!({ "consumers": shown })).into_response()
        }
        Err(err) => storage(&err),
    }
}

/// `GET /v1/consumers/{name}/events[?limit=N]`: the events after the position that the
/// consumer's filter takes, up to the folded head; `through` is the last seq looked at (ack
/// it when no event matched, to move on).
#[utoipa::path(
    get,
    path = "/v1/consumers/{name}/events",
    tag = "consumers",
    params(("name" = String, Path), ("limit" = Option<u64>, Query)),
    responses(
        (status = 200, description = "the next page", body = crate::serve::openapi::ConsumerPage),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "unknown consumer", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn events(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let consumer = match readable_consumer(&app, &principal, &name) {
        Ok(consumer) if consumer.alerts.is_some() => {
            return reply(
                StatusCode::CONFLICT,
                Answer::error(
                    "alert_feed",
                    format!("consumer {name:?} is an alert feed: its webhook is told of alerts; GET /v1/alerts reads them"),
                ),
            )
        }
        Ok(consumer) => consumer,
        Err(response) => return response,
    };
    let limit = match Params(q).number("limit", Some(1000)) {
        Ok(limit) if (1..=CONSUMER_PAGE_MAX).contains(&limit) => limit as usize,
        Ok(_) => {
            return malformed(&input_error(
                Some("limit"),
                format!("expected 1..={CONSUMER_PAGE_MAX}"),
            ))
        }
        Err(response) => return response,
    };
    match crate::serve::feed::next_page(&app, &consumer, limit, Vec::new()).await {
        Ok(page) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            page.body,
        )
            .into_response(),
        Err(err) => storage(&err),
    }
}

fn seq_field(body: &Bytes, field: &str) -> Result<u64, Response> {
    let value = parse_body(body)?;
    value
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed(&input_error(Some(field), "missing or not a whole number")))
}

fn past_head(app: &App, seq: u64, field: &str) -> Result<(), Response> {
    let head = *app.head.borrow();
    if seq > head {
        return Err(malformed(&input_error(
            Some(field),
            format!("seq {seq} is past the head of the log ({head})"),
        )));
    }
    Ok(())
}

/// `POST /v1/consumers/{name}/ack` `{"seq": N}` (operators): the position moves to N if that is later
/// (an older or repeated acknowledgement changes nothing).
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/ack",
    tag = "consumers",
    description = "the position moves to `seq` if later (operators)",
    params(("name" = String, Path)),
    request_body(content = Object, description = "`{\"seq\": N}`"),
    responses(
        (status = 200, description = "done", body = crate::serve::openapi::Acknowledged),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 404, description = "unknown consumer", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn ack(
    State(app): State<App>,
    Path(name): Path<String>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    // Moving a position hides events from whoever relies on the consumer (an operators'
    // SIEM, say): operators made it, and only they move it (F8).
    if let Err(response) = operator_only(&app, &principal) {
        return response;
    }
    match readable_consumer(&app, &principal, &name) {
        Ok(consumer) if consumer.webhook.is_some() => {
            return reply(
                StatusCode::CONFLICT,
                Answer::error(
                    "webhook_consumer",
                    format!(
                        "consumer {name:?} is delivered to its webhook, which acknowledges; \
                         POST …/redeliver moves it"
                    ),
                ),
            )
        }
        Ok(_) => {}
        Err(response) => return response,
    }
    let seq =
        match seq_field(&body, "seq").and_then(|seq| past_head(&app, seq, "seq").map(|()| seq)) {
            Ok(seq) => seq,
            Err(response) => return response,
        };
    match app
        .store
        .update_consumer(&name, |c| c.position = c.position.max(seq))
    {
        Ok(Some(c)) => Json(json!({ "ok": true, "position": c.position })).into_response(),
        Ok(None) => unknown(&name),
        Err(err) => storage(&err),
    }
}

/// `POST /v1/consumers/{name}/reset` `{"to": SEQ}` (operators): delivery starts again after
/// SEQ, earlier or later than the position.
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/reset",
    tag = "consumers",
    description = "delivery starts again after `to` (operators)",
    params(("name" = String, Path)),
    request_body(content = Object, description = "`{\"to\": SEQ}`"),
    responses(
        (status = 200, description = "done", body = crate::serve::openapi::ConsumerAnswer),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 404, description = "unknown consumer", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn reset(
    State(app): State<App>,
    Path(name): Path<String>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    if let Err(response) = operator_only(&app, &principal) {
        return response;
    }
    let to = match seq_field(&body, "to").and_then(|to| past_head(&app, to, "to").map(|()| to)) {
        Ok(to) => to,
        Err(response) => return response,
    };
    rewind(&app, &name, to)
}

/// `POST /v1/consumers/{name}/redeliver` `{"from": SEQ}` (operators): the events from SEQ
/// on are delivered again, and a failing webhook is active again.
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/redeliver",
    tag = "consumers",
    description = "the events from `from` on are delivered again (operators)",
    params(("name" = String, Path)),
    request_body(content = Object, description = "`{\"from\": SEQ}`"),
    responses(
        (status = 200, description = "done", body = crate::serve::openapi::ConsumerAnswer),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "not an operator", body = keyledger_ledger::Answer), (status = 404, description = "unknown consumer", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn redeliver(
    State(app): State<App>,
    Path(name): Path<String>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    if let Err(response) = operator_only(&app, &principal) {
        return response;
    }
    let from = match seq_field(&body, "from") {
        Ok(0) => return malformed(&input_error(Some("from"), "seqs start at 1")),
        Ok(from) => from,
        Err(response) => return response,
    };
    if let Err(response) = past_head(&app, from - 1, "from") {
        return response;
    }
    rewind(&app, &name, from - 1)
}

fn rewind(app: &App, name: &str, to: u64) -> Response {
    let now = wall_clock();
    let changed = app.store.update_consumer(name, |c| c.rewind(to, now));
    app.consumers_changed.notify_one();
    match changed {
        Ok(Some(c)) => Json(json!({ "ok": true, "consumer": c.redacted() })).into_response(),
        Ok(None) => unknown(name),
        Err(err) => storage(&err),
    }
}
