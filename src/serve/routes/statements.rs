//! `GET /v1/statements/{id}`: one license ID's complete history, proven (docs/proofs.md,
//! "Statements"), under the read rule of its report.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::*;
use crate::serve::streams::StatementFailure;

#[utoipa::path(
    get,
    path = "/v1/statements/{id}",
    tag = "proofs",
    description = "A license ID's statement: every event of its streams with proofs that none is left out, checkable offline with `keyledger verify-statement`. By default the streams are committed now (when the log grew) and the checkpoint at the commitment is signed; `cosigned=true` makes it against the latest checkpoint the witnesses cosigned.",
    params(
        ("id" = String, Path, description = "the license ID"),
        ("cosigned" = Option<bool>, Query, description = "against the latest cosigned checkpoint, with the witnesses' cosignatures")
    ),
    responses(
        (status = 200, description = "the statement", body = crate::serve::openapi::StatementDoc),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "no such license ID at the commitment, or `cosigned=true` and nothing cosigned yet", body = keyledger_ledger::Answer), (status = 429, description = "another statement is being made (one at a time); `Retry-After`", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read or the streams cannot be committed now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn statement(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let license = match readable_license(&app, &principal, &id) {
        Ok(license) => license,
        Err(response) => return response,
    };
    let cosigned = match Params(q).get("cosigned") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return malformed(&input_error(Some("cosigned"), "expected true or false")),
    };
    match crate::serve::streams::statement(&app, license, cosigned).await {
        Ok(statement) => Json(statement).into_response(),
        Err(StatementFailure::NotFound(why)) => {
            reply(StatusCode::NOT_FOUND, Answer::error("not_found", why))
        }
        Err(StatementFailure::Unavailable(why)) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Answer::error("storage", why),
        ),
        Err(StatementFailure::Busy) => {
            let throttled = crate::serve::throttle::Throttled {
                by: "statement",
                retry_after: std::time::Duration::from_secs(1),
            };
            too_many(
                &throttled,
                "another statement is being made; ask again".to_owned(),
            )
        }
    }
}
