//! What every request passes before a handler and every error answer passes after one:
//! bodies bounded and JSON, one `Authorization` header, and error answers always JSON
//! (docs/api.md: "every error is an answer").

// The checks return a ready `Response` on refusal, as the handlers do (see routes).
#![allow(clippy::result_large_err)]

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyledger_ledger::Answer;

/// The most bytes of a request body: a proxy activation of 10,000 long machine names fits.
pub const BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// An error answer with its HTTP status.
pub fn reply(status: StatusCode, answer: Answer) -> Response {
    (status, Json(answer)).into_response()
}

/// Every request and every answer, in one layer (each `from_fn` layer costs a boxed future
/// and a service clone per request, on the hot path of every activation).
pub async fn guard(request: Request, next: Next) -> Response {
    if let Err(refused) = admit(&request) {
        return refused;
    }
    json_errors(next.run(request).await).await
}

/// What a request must be before a handler sees it.
fn admit(request: &Request) -> Result<(), Response> {
    reject_declared_oversize(request)?;
    require_json_body(request)?;
    single_authorization(request)
}

/// A body whose declared length is over the limit is refused before a byte of it is read
/// (the body limit of the router still bounds bodies sent without a length).
fn reject_declared_oversize(request: &Request) -> Result<(), Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(bytes) if bytes > BODY_BYTES_MAX as u64 => Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            Answer::error(
                "too_large",
                format!("a body of {bytes} bytes; at most {BODY_BYTES_MAX} are accepted"),
            ),
        )),
        _ => Ok(()),
    }
}

/// A POST body must say it is JSON: `application/json` (any parameters) or a `+json` type.
/// Anything else is 415, so a form post or a text upload is never read as a command.
fn require_json_body(request: &Request) -> Result<(), Response> {
    if request.method() != Method::POST {
        return Ok(());
    }
    let declared = request.headers().get(header::CONTENT_TYPE);
    if declared.is_some_and(is_json) {
        return Ok(());
    }
    let found = declared.map_or("none".to_owned(), |v| {
        format!("{:?}", String::from_utf8_lossy(v.as_bytes()))
    });
    Err(reply(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Answer::error(
            "unsupported_media_type",
            format!("Content-Type must be application/json; found {found}"),
        ),
    ))
}

fn is_json(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Two `Authorization` headers are ambiguous (which one is the caller?): 400, never the
/// first one silently.
fn single_authorization(request: &Request) -> Result<(), Response> {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .count()
        > 1
    {
        return Err(reply(
            StatusCode::BAD_REQUEST,
            Answer::error("malformed", "more than one Authorization header"),
        ));
    }
    Ok(())
}

/// Every error answer is JSON: the router's own 404 and 405 and the body extractor's 413
/// and 400 come as plain text, and are rewritten here with a stable code.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "malformed",
        _ => "internal",
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::NOT_FOUND, true) => "no such endpoint (see docs/api.md)".to_owned(),
        (StatusCode::METHOD_NOT_ALLOWED, true) => {
            "this endpoint does not take that method".to_owned()
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the body is larger than {BODY_BYTES_MAX} bytes")
        }
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, false) => text,
    };
    let mut rewritten = reply(status, Answer::error(code, message));
    // Keep what the router said beside the status (e.g. `Allow` on a 405).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// The router's fallback: 404 as an answer.
pub async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        Answer::error("not_found", "no such endpoint (see docs/api.md)"),
    )
}
