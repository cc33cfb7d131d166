//! Health and metrics: unauthenticated, for operators' monitoring.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;

/// `GET /healthz`: 200 while the writer takes commands and the store answers; 503 with the
/// reason while it is degraded (a failed commit it has not recovered from yet, or a store
/// that does not answer reads) or stopped.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses(
        (status = 200, description = "the writer takes commands and the store answers", body = crate::serve::openapi::Health),
        (status = 503, description = "degraded or stopped, with the reason", body = crate::serve::openapi::Health)
    )
)]
pub(super) async fn healthz(State(app): State<App>) -> Response {
    use keyledger_ledger::health::Status;
    let seq = app
        .projections
        .read()
        .expect("no writer panics holding the lock")
        .last_seq;
    let report = app.writer.health().report();
    let silent = app.liveness.trouble();
    let (status, state, reason) = match (&report.status, &silent) {
        (Status::Ok, None) => (StatusCode::OK, "ok", None),
        (Status::Ok, Some(why)) => (StatusCode::SERVICE_UNAVAILABLE, "degraded", Some(why)),
        (Status::Degraded(why), _) => (StatusCode::SERVICE_UNAVAILABLE, "degraded", Some(why)),
        (Status::Stopped(why), _) => (StatusCode::SERVICE_UNAVAILABLE, "writer_stopped", Some(why)),
    };
    let chain = report.chain.name();
    let mut body =
        json!({ "ok": status == StatusCode::OK, "status": state, "seq": seq, "chain": chain });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    if report.restarts > 0 {
        body["writer_restarts"] = json!(report.restarts);
        body["last_failure"] = json!(report.last_failure);
    }
    (status, Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub(super) async fn metrics(State(app): State<App>) -> Response {
    app.metrics.queue_depth.set(app.writer.queue_depth() as i64);
    app.metrics
        .streams_open
        .set(i64::from(app.stream_slots.open_now()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
