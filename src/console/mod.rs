//! The console: the admin center's volume-licensing pages at `/ui`, rendered on
//! the server from the live projections with askama templates (`templates/`), htmx 2.0.11
//! vendored into the binary (`static/`), and every form a plain POST too.
//!
//! One module a concern: `session` (sign in, the session cookie, CSRF), `pages` (the read
//! pages), `actions` (the writes: copy, export, requests), `audit` (the log, proofs,
//! verify), `assets` (the vendored files), `page` (what every page shares: its chrome, the
//! HTML answer, the error page). Here the router and the headers every console answer
//! carries.
//!
//! Key text (R1, R2) leaves only as the answer to a POST that first committed its
//! disclosure; it is never in a URL, a log line or a cache (`Cache-Control: no-store` on
//! every console answer).

// Handlers return early with a ready `Response` (an error page), as the API's do.
#![allow(clippy::result_large_err)]

mod actions;
mod assets;
mod audit;
mod page;
mod pages;
mod session;
mod sessions;
mod sign_on;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::serve::App;

/// What every console answer says to the browser: scripts, styles and images only from
/// this origin, never framed, never cached, never sniffed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console's routes; `secure`: the service speaks TLS (cookies are `Secure`).
pub fn router(secure: bool) -> Router<App> {
    Router::new()
        .route("/ui", get(session::home))
        .route("/ui/", get(session::home))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/oidc/start", get(sign_on::start))
        .route("/ui/oidc/callback", get(sign_on::callback))
        .route("/ui/contracts", get(pages::contracts))
        .route("/ui/products", get(pages::products))
        .route("/ui/license-ids/{id}", get(pages::details))
        .route("/ui/license-ids/{id}/statement", get(audit::statement))
        .route("/ui/forecast", get(pages::forecast))
        .route("/ui/forecast.svg", get(pages::forecast_svg))
        .route("/ui/usage.svg", get(pages::usage_svg))
        .route("/ui/requests", get(actions::requests))
        .route("/ui/requests/mak", post(actions::file_mak_increase))
        .route("/ui/requests/kms", post(actions::file_kms_request))
        .route("/ui/requests/{id}/grant", post(actions::grant))
        .route("/ui/requests/{id}/deny", post(actions::deny))
        .route("/ui/keys/{id}/copy", post(actions::copy_key))
        .route("/ui/export", post(actions::export))
        .route("/ui/audit", get(audit::audit_log))
        .route("/ui/audit/proofs/{seq}", get(audit::inclusion_proof))
        .route("/ui/verify", get(audit::verify))
        .route("/ui/static/{file}", get(assets::asset))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(Extension(Arc::new(session::Console::new(secure))))
        .layer(from_fn(console_headers))
}

async fn console_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
    response
}

async fn not_found() -> Response {
    page::error_page(
        StatusCode::NOT_FOUND,
        None,
        "Not found",
        "There is no such page in the console.",
    )
}
