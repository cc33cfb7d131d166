//! Usage over time and the roll-up of an ownership structure, under the one read rule: a
//! reader sees the license IDs it may read, and nothing of the others.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_core::{KeyId, OrgId, ProductId, Timestamp};
use keyledger_projections::summary::{summary as roll_up, GroupBy};
use keyledger_projections::usage::{scope_keys, usage as usage_of, Period, UsageScope};

use super::*;

fn format_of(q: &Params) -> Result<Format, Response> {
    q.get("format")
        .unwrap_or("json")
        .parse()
        .map_err(|message: String| malformed(&input_error(Some("format"), message)))
}

fn time_of(q: &Params, name: &str) -> Result<Option<Timestamp>, Response> {
    q.get(name)
        .map(|text| {
            parse_time(text, name)
                .map_err(|err| malformed(&input_error(Some(name), format!("{err:#}"))))
        })
        .transpose()
}

fn rendered(format: Format, body: String) -> Response {
    (
        [(header::CONTENT_TYPE, reports::content_type(format))],
        body,
    )
        .into_response()
}

/// `GET /v1/usage?license_id=ID|key_id=N|product=P[&by=day|week|month&from=T&to=T&format=…]`.
pub(super) async fn usage(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    let scope = match scope_of(&q) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let by: Period = match q.get("by").unwrap_or("month").parse() {
        Ok(by) => by,
        Err(message) => return malformed(&input_error(Some("by"), message)),
    };
    let (format, from, to) = match (format_of(&q), time_of(&q, "from"), time_of(&q, "to")) {
        (Ok(format), Ok(from), Ok(to)) => (format, from, to),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let p = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    let keys = match scope_keys(&p, &scope) {
        Ok(keys) => keys,
        Err(err) => {
            return reply(
                StatusCode::NOT_FOUND,
                Answer::error(err.code(), err.to_string()),
            )
        }
    };
    let readable: Vec<KeyId> = keys
        .iter()
        .copied()
        .filter(|k| p.may_read(&principal, &p.books.keys[*k].license_id))
        .collect();
    // A license ID or key is the reader's or not; a product is read across the license IDs
    // the reader may see.
    if readable.len() < keys.len() && !matches!(scope, UsageScope::Product(_)) {
        return forbidden(
            "R1",
            format!("{principal} holds no role on the license ID of {scope}"),
        );
    }
    match usage_of(&p, &scope, &readable, by, from, to) {
        Ok(report) => rendered(format, report.render(format)),
        Err(err) if err.code() == "not_found" => reply(
            StatusCode::NOT_FOUND,
            Answer::error(err.code(), err.to_string()),
        ),
        Err(err) => malformed(&input_error(None, err.to_string())),
    }
}

fn scope_of(q: &Params) -> Result<UsageScope, Response> {
    let named = ["license_id", "key_id", "product"]
        .iter()
        .filter(|n| q.get(n).is_some())
        .count();
    if named != 1 {
        return Err(malformed(&input_error(
            None,
            "name exactly one of license_id, key_id or product",
        )));
    }
    if let Some(id) = q.license_id("license_id")? {
        return Ok(UsageScope::LicenseId(id));
    }
    if let Some(product) = q.get("product") {
        let id = ProductId::new(product)
            .map_err(|_| malformed(&input_error(Some("product"), "not a product id")))?;
        return Ok(UsageScope::Product(id));
    }
    Ok(UsageScope::Key(KeyId(q.number("key_id", None)?)))
}

/// `GET /v1/summary?org=ORG[&by=product|license_id&as_of=T&format=…]`.
pub(super) async fn summary(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    let Some(Ok(org)) = q.get("org").map(OrgId::new) else {
        return malformed(&input_error(Some("org"), "missing or not an org id"));
    };
    let by: GroupBy = match q.get("by").unwrap_or("product").parse() {
        Ok(by) => by,
        Err(message) => return malformed(&input_error(Some("by"), message)),
    };
    let (format, as_of) = match (format_of(&q), time_of(&q, "as_of")) {
        (Ok(format), Ok(as_of)) => (format, as_of),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let answer = |p: &Projections, at: Timestamp| {
        let summary = roll_up(p, &org, by, at, |license| p.may_read(&principal, license));
        match summary {
            Err(err) => reply(
                StatusCode::NOT_FOUND,
                Answer::error("unknown_org", err.to_string()),
            ),
            Ok(s) if s.license_ids.is_empty() && !p.books.operators.contains(&principal) => {
                forbidden(
                    "R1",
                    format!(
                        "{principal} holds no role on a license ID of {}",
                        s.root_org
                    ),
                )
            }
            Ok(s) => rendered(format, s.render(format)),
        }
    };
    match as_of {
        Some(at) => {
            let store = app.store.clone();
            match tokio::task::spawn_blocking(move || projections(&store, Until::Time(at))).await {
                Ok(Ok(p)) => answer(&p, at),
                _ => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Answer::error("storage", "cannot fold the log"),
                ),
            }
        }
        None => {
            let p = app
                .projections
                .read()
                .expect("no writer panics holding the lock");
            answer(&p, now_at_least(p.last_at))
        }
    }
}
