//! The HTTP API (docs/api.md): activations authorised by the key they present; everything
//! else by a bearer token whose principal is the actor. One module a resource: `writes`
//! (activations, commands), `reports` (reports, key exports), `log` (the log, verify),
//! `proofs` (checkpoints, proofs), `health` (health, metrics); here the router and what they
//! share: authentication, the read rule, query parameters, answers and their statuses.

// Handlers return early with a ready `Response`; boxing it would only add an allocation to
// the error paths of a module whose every function ends in a `Response` anyway.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyledger_core::command::DiscloseKeys;
use keyledger_core::{Command, CommandBody, Digest, DisclosureChannel, LicenseId, Principal};
use keyledger_ledger::wire::{command_from_value, event_to_json, InputError};
use keyledger_ledger::{Answer, Error};
use keyledger_projections::keys::{export_keys, ExportScope};
use keyledger_projections::{license_report, Format, Projections};
use serde_json::Value;

use super::app::App;
use super::auth;
use super::middleware::BODY_BYTES_MAX;
use super::middleware::{self, reply};
use crate::view::{checked_secrets, now_at_least, parse_time, projections, wall_clock, Until};
use axum::middleware::from_fn;
use keyledger_ledger::Store;
use std::sync::Arc;

mod consumers;
mod health;
mod insight;
mod log;
mod proofs;
mod reports;
mod statements;
mod stream;
mod writes;

/// The API's routes and their OpenAPI document, from one list: each handler's
/// `#[utoipa::path]` names its method and path (src/serve/openapi.rs).
pub fn api() -> (Router<App>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(super::openapi::ApiDoc::openapi())
        .routes(routes!(writes::activations))
        .routes(routes!(writes::commands))
        .routes(routes!(reports::report))
        .routes(routes!(reports::keys))
        .routes(routes!(insight::usage))
        .routes(routes!(insight::machine))
        .routes(routes!(insight::key_machines))
        .routes(routes!(insight::summary))
        .routes(routes!(insight::alerts))
        .routes(routes!(consumers::list, consumers::create))
        .routes(routes!(consumers::show))
        .routes(routes!(consumers::events))
        .routes(routes!(consumers::ack))
        .routes(routes!(consumers::reset))
        .routes(routes!(consumers::redeliver))
        .routes(routes!(log::log))
        .routes(routes!(stream::events_stream))
        .routes(routes!(log::verify))
        .routes(routes!(proofs::checkpoint))
        .routes(routes!(proofs::cosigned_checkpoint))
        .routes(routes!(proofs::inclusion_proof))
        .routes(routes!(proofs::consistency_proof))
        .routes(routes!(statements::statement))
        .routes(routes!(health::healthz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// The OpenAPI document, as generated at start.
static DOCUMENT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "service",
    description = "This document (OpenAPI 3.1); public.",
    responses((status = 200, description = "the document", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    let body = DOCUMENT.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The API's routes and `pages` beside them (the console), under the service's limits.
pub fn router(app: App, pages: Router<App>) -> Router {
    let (api, doc) = api();
    // As served and as kept in docs/openapi.json: pretty, a newline at the end.
    DOCUMENT
        .get_or_init(|| Bytes::from(doc.to_pretty_json().expect("the document serializes") + "\n"));
    api.route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(from_fn(middleware::guard))
        // Pages for people (the console): their forms are not JSON, so they sit beside the
        // API's guard, with their own.
        .merge(pages.layer(DefaultBodyLimit::max(BODY_BYTES_MAX)))
        .fallback(middleware::not_found)
        .layer(access_log())
        .with_state(app)
}

/// The projections as they stood at business time `at`, folded off the async threads.
async fn projections_as_of(
    app: &App,
    at: keyledger_core::Timestamp,
) -> Result<Projections, Response> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || projections(&store, Until::Time(at))).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", "cannot fold the log"),
        )),
    }
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

use crate::serve::status::of_answer as status_of;

/// 429 `throttled` with `Retry-After` (whole seconds, at least 1).
fn too_many(throttled: &crate::serve::throttle::Throttled, message: String) -> Response {
    let seconds = throttled.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = reply(
        StatusCode::TOO_MANY_REQUESTS,
        Answer::error("throttled", message),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
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

/// The principal a request's bearer token authenticates; extracting it answers 401 (or 503
/// while the token table cannot be read) before the handler runs.
pub(super) struct Caller(pub Principal);

impl axum::extract::FromRequestParts<App> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &App,
    ) -> Result<Caller, Response> {
        let principal = authenticate(app, &parts.headers).await?;
        // The request's log line names who asked (never the token).
        tracing::Span::current().record("principal", principal.as_str());
        Ok(Caller(principal))
    }
}

async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let (Some(oidc), Some(token)) = (&app.oidc, auth::bearer(header)) {
        if crate::oidc::looks_like_jwt(token) {
            return oidc
                .access_principal(token)
                .await
                .map(|(principal, _)| principal)
                .map_err(oidc_refusal);
        }
    }
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

/// A refused access token is 401 with why; a provider that cannot be asked is 503
/// `identity_provider`, since the token may well be good.
fn oidc_refusal(err: crate::oidc::OidcError) -> Response {
    let answer = match err {
        crate::oidc::OidcError::Unreachable(_) => {
            Answer::error("identity_provider", err.to_string())
        }
        crate::oidc::OidcError::Refused(why) => Answer::error("unauthorized", why),
    };
    reply(crate::serve::status::of_answer(&answer), answer)
}

/// The answer about an id that does not exist: 404 to an operator, who may read everything,
/// and to anyone else the same 403 (`message`) that an id they may not read gets, so that
/// answers never tell a stranger which license IDs, keys or orgs exist.
fn unknown_to(
    p: &Projections,
    principal: &Principal,
    not_found: Answer,
    message: String,
) -> Response {
    if p.is_operator(principal) {
        return reply(StatusCode::NOT_FOUND, not_found);
    }
    forbidden("R1", message)
}

fn forbidden(rule: &str, message: String) -> Response {
    let mut answer = Answer::error("forbidden", message);
    answer.text_mut().rule = Some(rule.to_owned());
    reply(StatusCode::FORBIDDEN, answer)
}

/// The query string of a request, read one named parameter at a time; a bad value is a
/// malformed answer naming the parameter.
pub(super) struct Params(pub HashMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A whole number; `default` when absent (absent without a default is malformed).
    fn number(&self, name: &str, default: Option<u64>) -> Result<u64, Response> {
        match (self.get(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| malformed(&input_error(Some(name), "expected a whole number"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(malformed(&input_error(Some(name), "missing"))),
        }
    }

    fn license_id(&self, name: &str) -> Result<Option<LicenseId>, Response> {
        self.get(name)
            .map(|id| {
                LicenseId::new(id)
                    .map_err(|_| malformed(&input_error(Some(name), "not a license ID")))
            })
            .transpose()
    }
}

/// The license ID a path names (`{id}`), if the caller may read it: 400 when it is not a
/// license ID, 403 under the read rule.
fn readable_license(app: &App, principal: &Principal, id: &str) -> Result<LicenseId, Response> {
    let license =
        LicenseId::new(id).map_err(|_| malformed(&input_error(Some("id"), "not a license ID")))?;
    may_read(app, principal, &license)?;
    Ok(license)
}

/// The read rule on one license ID (`Projections::may_read_license`), refused as 403.
fn may_read(app: &App, principal: &Principal, license: &LicenseId) -> Result<(), Response> {
    app.projections
        .read()
        .expect("no writer panics holding the lock")
        .may_read_license(principal, license)
        .map_err(|refused| forbidden(refused.rule, refused.message))
}

fn answered(app: &App, answer: Answer) -> Response {
    if let (false, Some(code)) = (answer.ok, answer.code()) {
        app.metrics.refused(code);
    }
    (status_of(&answer), Json(answer)).into_response()
}

/// The read rule of the log (`/v1/log`, the event stream): operators read all; others a license ID they hold a role on.
pub(super) fn may_read_log(
    app: &App,
    principal: &keyledger_core::Principal,
    license: Option<&LicenseId>,
) -> Result<(), Response> {
    app.projections
        .read()
        .expect("no writer panics holding the lock")
        .may_read_log(principal, license)
        .map_err(|refused| forbidden(refused.rule, refused.message))
}

/// One log line a request (target `keyledger::access`): method, route (the matched
/// pattern, never the path with its ids), status, latency, and the principal once a token
/// named one. Headers are never logged, so no token reaches a log.
#[expect(
    clippy::type_complexity,
    reason = "tower-http's TraceLayer names the type of every callback"
)]
fn access_log() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
    (),
    impl Fn(&Response, std::time::Duration, &tracing::Span) + Clone,
    (),
    (),
    (),
> {
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
            let route = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or("(none)", |path| path.as_str());
            tracing::info_span!(
                target: "keyledger::access",
                "request",
                method = %request.method(),
                route,
                principal = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(
            |response: &Response, latency: std::time::Duration, _: &tracing::Span| {
                tracing::info!(
                    target: "keyledger::access",
                    status = response.status().as_u16(),
                    latency_ms = latency.as_secs_f64() * 1000.0,
                    "answered"
                );
            },
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}
