//! The one map from an answer's code to its HTTP status, for the API and the console alike
//! (docs/api.md, "Status codes"): refusals are 4xx by kind (a rule said no), failures to
//! commit or read are 503.

use axum::http::StatusCode;
use keyledger_ledger::Answer;

/// The status of an answer: 200 when it is `ok`, else that of its code.
pub fn of_answer(answer: &Answer) -> StatusCode {
    if answer.ok {
        return StatusCode::OK;
    }
    of_code(answer.code().unwrap_or(""))
}

/// The status of a refusal or error code.
pub fn of_code(code: &str) -> StatusCode {
    match code {
        "forbidden" => StatusCode::FORBIDDEN,
        "malformed" => StatusCode::BAD_REQUEST,
        "record_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "not_committed" | "storage" | "identity_provider" => StatusCode::SERVICE_UNAVAILABLE,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        code if code.starts_with("unknown_") => StatusCode::NOT_FOUND,
        "already_exists"
        | "request_already_decided"
        | "already_redeemed"
        | "time_regression"
        | "command_id_reused" => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_documented_statuses() {
        for (code, status) in [
            ("forbidden", 403),
            ("malformed", 400),
            ("record_too_large", 413),
            ("not_committed", 503),
            ("storage", 503),
            ("identity_provider", 503),
            ("unauthorized", 401),
            ("unknown_request", 404),
            ("unknown_key", 404),
            ("request_already_decided", 409),
            ("command_id_reused", 409),
            ("insufficient_activations", 422),
        ] {
            assert_eq!(of_code(code).as_u16(), status, "{code}");
        }
    }
}
