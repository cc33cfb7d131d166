//! Reports and key exports (R1, R2): per license ID, as of any moment.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;

/// `GET /v1/license-ids/{id}/report[?as_of=T&format=json|tsv|table]`.
#[utoipa::path(
    get,
    path = "/v1/license-ids/{id}/report",
    tag = "reports",
    description = "A license ID's report: keys, counts, KMS hosts, requests, ESU orders, roles, rights, disclosures, alerts; now or as of a past moment.",
    params(
        ("id" = String, Path, description = "the license ID"),
        ("as_of" = Option<String>, Query, description = "RFC 3339: the report as of then"),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the report", content((keyledger_projections::report::LicenseReport = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "unknown license ID (operators)", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn report(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let license = match readable_license(&app, &principal, &id) {
        Ok(license) => license,
        Err(response) => return response,
    };
    let q = Params(q);
    let format: Format = match q.get("format").unwrap_or("json").parse() {
        Ok(format) => format,
        Err(message) => return malformed(&input_error(Some("format"), message)),
    };
    let rendered = match q.get("as_of") {
        Some(text) => {
            let at = match parse_time(text, "as_of") {
                Ok(at) => at,
                Err(err) => return malformed(&input_error(Some("as_of"), format!("{err:#}"))),
            };
            match projections_as_of(&app, at).await {
                Ok(p) => license_report(&p, &license, at).map(|r| r.render(format)),
                Err(response) => return response,
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

pub(super) fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Tsv => "text/tab-separated-values; charset=utf-8",
        Format::Table => "text/plain; charset=utf-8",
    }
}

/// `GET /v1/keys?license_id=..&format=tsv|json`: R1/R2, the disclosure recorded first.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "reports",
    description = "The text of a license ID's keys (R1: key administrators of it); the disclosure is committed to the log first (R2).",
    params(
        ("license_id" = String, Query, description = "the license ID"),
        ("format" = Option<String>, Query, description = "tsv (default) or json")
    ),
    responses(
        (status = 200, description = "the keys", content((String = "text/tab-separated-values"), (crate::serve::openapi::KeysExport = "application/json"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn keys(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    // One license ID is the read rule's to allow, as its report is; the whole export holds
    // the keys of the license IDs the caller may read.
    let scope = match q.license_id("license_id") {
        Ok(Some(id)) => match may_read(&app, &principal, &id) {
            Ok(()) => ExportScope::LicenseIds(vec![id]),
            Err(refused) => return refused,
        },
        Ok(None) => ExportScope::All,
        Err(response) => return response,
    };
    let json_out = match q.get("format").unwrap_or("tsv") {
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
    if !json_out {
        let tsv = "text/tab-separated-values; charset=utf-8";
        return ([(header::CONTENT_TYPE, tsv)], export.tsv).into_response();
    }
    // The same typed rows as the file, as objects keyed by the R2 column names.
    Json(json!({ "keys": export.rows, "disclosed": export.disclosed.len() })).into_response()
}
