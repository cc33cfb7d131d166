//! `GET /v1/statements/{id}`: one license ID's complete history, proven (docs/proofs.md,
//! "Statements"), under the read rule of its report.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::*;

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
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "no such license ID at the commitment, or `cosigned=true` and nothing cosigned yet", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read or the streams cannot be committed now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn statement(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let Ok(license) = LicenseId::new(id.as_str()) else {
        return malformed(&input_error(Some("id"), "not a license ID"));
    };
    if let Err(refused) = may_read(&app, &principal, &license) {
        return refused;
    }
    let not_found = |why: String| reply(StatusCode::NOT_FOUND, Answer::error("not_found", why));
    let unavailable = |why: String| {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Answer::error("storage", why),
        )
    };
    let (at, note) = match Params(q).get("cosigned") {
        None | Some("false") => match crate::serve::streams::commit(&app).await {
            Ok(Some(seq)) => (seq, None),
            Ok(None) => return not_found("the ledger is empty".to_owned()),
            Err(why) => return unavailable(why),
        },
        Some("true") => match app.witnessed.latest() {
            Some((size, note)) => (size, Some(note)),
            None => {
                return not_found("no checkpoint has been cosigned yet (serve --witness)".into())
            }
        },
        Some(_) => return malformed(&input_error(Some("cosigned"), "expected true or false")),
    };
    let (store, key) = (app.store.clone(), Arc::clone(&app.key));
    let built = tokio::task::spawn_blocking(move || {
        keyledger_ledger::statement::build(&store, &key, &license, Some(at), note, wall_clock())
    })
    .await;
    match built {
        Ok(Ok(statement)) => Json(statement).into_response(),
        Ok(Err(err)) => not_found(err.to_string()),
        Err(_) => unavailable("the statement task failed".to_owned()),
    }
}
