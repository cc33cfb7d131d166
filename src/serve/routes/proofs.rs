//! Signed checkpoints and Merkle proofs (docs/proofs.md).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::*;

fn head_seq(app: &App) -> Result<u64, Response> {
    app.store.head().map(|h| h.seq).map_err(|e| {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::error("storage", e.to_string()),
        )
    })
}

/// How a proof is made from its two bounds (`prove_inclusion`, `prove_consistency`).
type Prove = fn(
    &Store,
    &keyledger_ledger::checkpoint::LedgerKey,
    u64,
    u64,
    keyledger_core::Timestamp,
) -> keyledger_ledger::Result<keyledger_ledger::proof::ProofFile>;

/// A proof endpoint (its caller authenticated): the two bounds named `bounds` (the first
/// required, the second the head's seq when absent), then the proof, built on a blocking
/// thread since it reads blocks and subtree hashes.
/// With `cosigned`, the proof's checkpoint is that note (of the same tree, with the
/// witnesses' cosignatures) instead of one signed now.
async fn proof_response(
    app: &App,
    q: &Params,
    bounds: [&str; 2],
    prove: Prove,
    cosigned: Option<String>,
) -> Response {
    let (first, second) = match proof_bounds(app, q, bounds) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let (store, key) = (app.store.clone(), Arc::clone(&app.key));
    let made =
        tokio::task::spawn_blocking(move || prove(&store, &key, first, second, wall_clock()));
    match made.await {
        // Through a `Value`, as before this helper existed: the same bytes on the wire.
        Ok(Ok(mut proof)) => {
            if let (
                Some(note),
                keyledger_ledger::proof::ProofFile::Inclusion { checkpoint, .. }
                | keyledger_ledger::proof::ProofFile::Consistency { checkpoint, .. },
            ) = (cosigned, &mut proof)
            {
                *checkpoint = note;
            }
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
#[utoipa::path(
    get,
    path = "/v1/checkpoint",
    tag = "proofs",
    description = "A signed checkpoint (C2SP signed-note text) of the log's Merkle tree; public.",
    params(("size" = Option<u64>, Query, description = "the tree size (default: the head)")),
    responses(
        (status = 200, description = "the checkpoint", content_type = "text/plain", body = String),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    )
)]
pub(super) async fn checkpoint(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let q = Params(q);
    let size = match head_seq(&app).and_then(|head| q.number("size", Some(head))) {
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

/// `GET /v1/checkpoint/cosigned`: the latest checkpoint the witnesses cosigned, with their
/// cosignature lines (text/plain), public.
#[utoipa::path(
    get,
    path = "/v1/checkpoint/cosigned",
    tag = "proofs",
    description = "The latest checkpoint that the witnesses of `serve --witness` cosigned, with their cosignature lines (C2SP tlog-cosignature); public.",
    responses(
        (status = 200, description = "the cosigned checkpoint", content_type = "text/plain", body = String),
        (status = 404, description = "none yet", body = keyledger_ledger::Answer)
    )
)]
pub(super) async fn cosigned_checkpoint(State(app): State<App>) -> Response {
    match app.witnessed.latest() {
        Some((_, note)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
        }
        None => reply(
            StatusCode::NOT_FOUND,
            Answer::error(
                "not_found",
                "no checkpoint has been cosigned yet (serve --witness)",
            ),
        ),
    }
}

/// The two numbers a proof is about: the first required, the second the head's seq when
/// absent.
fn proof_bounds(app: &App, q: &Params, [first, second]: [&str; 2]) -> Result<(u64, u64), Response> {
    let head = head_seq(app)?;
    Ok((q.number(first, None)?, q.number(second, Some(head))?))
}

/// `GET /v1/proofs/inclusion?seq=N[&size=M]`: the proof carries the record, so the caller
/// must be allowed to read that event, as in `/v1/log`.
#[utoipa::path(
    get,
    path = "/v1/proofs/inclusion",
    tag = "proofs",
    description = "That record `seq` is in the tree a signed checkpoint names (the record is in it: the read rule of /v1/log applies).",
    params(
        ("seq" = u64, Query), ("size" = Option<u64>, Query),
        ("cosigned" = Option<bool>, Query, description = "against the latest checkpoint the witnesses cosigned (its size; its note with their cosignatures)")
    ),
    responses(
        (status = 200, description = "the proof", body = keyledger_ledger::proof::ProofFile),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "`cosigned=true` and no checkpoint cosigned yet", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn inclusion_proof(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    if let Ok(seq) = q.number("seq", None) {
        let readable = app.may_read_seq(&principal, seq).await;
        let Ok(readable) = readable else {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                Answer::error("storage", "cannot read the log"),
            );
        };
        if !readable {
            return forbidden(
                "R1",
                format!("{principal} may not read seq {seq}: it is in no license ID's history they hold a role on"),
            );
        }
    }
    let prove: Prove = keyledger_ledger::proof::prove_inclusion;
    let mut q = q;
    let cosigned = match q.get("cosigned") {
        None | Some("false") => None,
        Some("true") => match app.witnessed.latest() {
            Some((size, note)) => {
                q.0.insert("size".to_owned(), size.to_string());
                Some(note)
            }
            None => {
                return reply(
                    StatusCode::NOT_FOUND,
                    Answer::error(
                        "not_found",
                        "no checkpoint has been cosigned yet (serve --witness)",
                    ),
                )
            }
        },
        Some(_) => return malformed(&input_error(Some("cosigned"), "expected true or false")),
    };
    proof_response(&app, &q, ["seq", "size"], prove, cosigned).await
}

/// `GET /v1/proofs/consistency?from=M[&to=N]`: token required.
#[utoipa::path(
    get,
    path = "/v1/proofs/consistency",
    tag = "proofs",
    description = "That the tree of `from` leaves is a prefix of the signed one of `to`.",
    params(("from" = u64, Query), ("to" = Option<u64>, Query)),
    responses(
        (status = 200, description = "the proof", body = keyledger_ledger::proof::ProofFile),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn consistency_proof(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    _caller: Caller,
) -> Response {
    let prove: Prove = keyledger_ledger::proof::prove_consistency;
    proof_response(&app, &Params(q), ["from", "to"], prove, None).await
}
