//! Writes: activations (authorised by the key they present) and licensor commands.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::*;
use crate::serve::connections::Peer;
use crate::serve::throttle::key_tag;

/// `POST /v1/activations`: authorised by the key text presented; `at` is the server's. An
/// address or key whose refusals came too fast is answered 429 before the writer sees it
/// (`throttle`).
#[utoipa::path(
    post,
    path = "/v1/activations",
    tag = "writes",
    description = "Activates machines on the key whose text the body presents (R9–R16); the key text is the credential. Answers 429 with Retry-After to an address or key whose refusals came too fast.",
    request_body(content = Object, description = "`product_key`, `org`, `method`, `machines` (and for KMS and OSA keys their fields): docs/api.md, Activations"),
    responses(
        (status = 200, description = "activated, already active or pending the KMS threshold", body = keyledger_ledger::Answer),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 404, description = "unknown key", body = keyledger_ledger::Answer), (status = 409, description = "command_id reused", body = keyledger_ledger::Answer), (status = 422, description = "refused by a rule (insufficient_activations, …)", body = keyledger_ledger::Answer), (status = 429, description = "throttled", body = keyledger_ledger::Answer), (status = 503, description = "not committed", body = keyledger_ledger::Answer)
    )
)]
pub(super) async fn activations(
    State(app): State<App>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    body: Bytes,
) -> Response {
    let command = match crate::serve::activation::plain_activation(&body, wall_clock()) {
        Some(command) => command,
        None => match crate::serve::activation::general_activation(&body, wall_clock()) {
            Ok(command) => command,
            Err(err) => return malformed(&err),
        },
    };
    let key = presented_key(&command).map(key_tag);
    if let Err(throttled) = app.throttle.admit(Some(peer), key.as_ref()) {
        app.metrics.throttled(throttled.by);
        return too_many(
            &throttled,
            format!(
                "too many refused activations from this {}: try again later",
                throttled.by
            ),
        );
    }
    app.metrics.queue_depth.set(app.writer.queue_depth() as i64);
    match app.writer.try_submit_stamped(vec![command]).await {
        Ok(mut answers) => {
            let answer = answers.remove(0);
            if !answer.ok && answer.code().is_some_and(|code| code != "not_committed") {
                app.throttle.refused(Some(peer), key.as_ref());
            }
            answered(&app, answer)
        }
        Err(err) => writer_error(err),
    }
}

/// The key text an activation presents (a KMS client's activation presents none).
fn presented_key(command: &keyledger_core::Command) -> Option<&keyledger_core::ProductKeyText> {
    use keyledger_core::CommandBody as B;
    match &command.body {
        B::Activate(c) => Some(&c.product_key),
        B::ActivateKmsHost(c) => Some(&c.product_key),
        B::RedeemOsa(c) => Some(&c.product_key),
        _ => None,
    }
}

/// `POST /v1/commands[?atomic=true]`: one command or an array; the token's principal acts.
#[utoipa::path(
    post,
    path = "/v1/commands",
    tag = "writes",
    description = "One command, or an array of them (`?atomic=true`: all or none); the token's principal is the actor.",
    params(("atomic" = Option<bool>, Query, description = "apply an array all or none")),
    request_body(content = crate::serve::openapi::CommandJson, description = "a command, or an array of commands"),
    responses(
        (status = 200, description = "the answer, or one answer a command of an array", body = Vec<keyledger_ledger::Answer>),
        (status = 400, description = "malformed", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "forbidden by a rule", body = keyledger_ledger::Answer), (status = 404, description = "unknown id", body = keyledger_ledger::Answer), (status = 409, description = "conflict", body = keyledger_ledger::Answer), (status = 422, description = "refused by a rule", body = keyledger_ledger::Answer), (status = 503, description = "not committed", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn commands(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    let atomic = match Params(q).get("atomic") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let why = format!("{other:?}: expected true or false");
            return malformed(&input_error(Some("atomic"), why));
        }
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
    let answers = match app.writer.try_submit(commands, atomic).await {
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
