//! The console's files, compiled into the binary: no CDN, no build chain. htmx is the
//! 2.0.11 release as published (`htmx.org` on npm, Zero-Clause BSD, `static/htmx-LICENSE.txt`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const ASSETS: [(&str, &str, &str); 4] = [
    (
        "htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        include_str!("static/htmx-2.0.11.min.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("static/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("static/favicon.svg"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("static/console.css"),
    ),
];

/// `GET /ui/static/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
