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

/// A page that is not the last says where the next starts in `Keyledger-Next-After`, in
/// every format (tab-separated text has no other place for it).
fn paged(next_after: Option<u64>, mut response: Response) -> Response {
    if let Some(after) = next_after {
        let value = header::HeaderValue::from_str(&after.to_string()).expect("digits");
        response.headers_mut().insert("keyledger-next-after", value);
    }
    response
}

/// `GET /v1/usage?license_id=ID|key_id=N|product=P[&by=day|week|month&from=T&to=T&format=…]`.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "reports",
    description = "Activations, refusals and seats by period, for a license ID, a key or a product.",
    params(
        ("license_id" = Option<String>, Query, description = "one of license_id, key_id, product"),
        ("key_id" = Option<u64>, Query),
        ("product" = Option<String>, Query),
        ("by" = Option<String>, Query, description = "day (default), week or month"),
        ("from" = Option<String>, Query, description = "RFC 3339"),
        ("to" = Option<String>, Query, description = "RFC 3339"),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the usage", content((keyledger_projections::usage::UsageReport = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
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
    let not_theirs = format!("{principal} holds no role on the license ID of {scope}");
    let keys = match scope_keys(&p, &scope) {
        Ok(keys) => keys,
        Err(err) => {
            let unknown = Answer::error(err.code(), err.to_string());
            return unknown_to(&p, &principal, unknown, not_theirs);
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
        return forbidden("R1", not_theirs);
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
#[utoipa::path(
    get,
    path = "/v1/summary",
    tag = "reports",
    description = "An org's ownership structure summed up by product or by license ID.",
    params(
        ("org" = String, Query),
        ("by" = Option<String>, Query, description = "product (default) or license_id"),
        ("as_of" = Option<String>, Query, description = "RFC 3339"),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the summary", content((keyledger_projections::summary::Summary = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
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
    let answer = |p: &Projections, today: &Projections, at: Timestamp| {
        let summary = roll_up(p, &org, by, at, |license| {
            today.may_read(&principal, license)
        });
        // The org asked about, in both answers: the same text whether or not it exists.
        let not_theirs = || format!("{principal} holds no role on a license ID of {org}");
        match summary {
            Err(err) => unknown_to(
                today,
                &principal,
                Answer::error("unknown_org", err.to_string()),
                not_theirs(),
            ),
            Ok(s) if s.license_ids.is_empty() && !today.is_operator(&principal) => {
                forbidden("R1", not_theirs())
            }
            Ok(s) => rendered(format, s.render(format)),
        }
    };
    at_moment(&app, as_of, answer).await
}

/// `GET /v1/alerts[?license_id=ID&as_of=T&format=..]`: the alerts of the license IDs the
/// caller may read (operators: all), evaluated now or at `as_of`, with the default rules.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "reports",
    description = "The alerts of the license IDs the caller may read, evaluated now or as of a moment (derived, never in the log).",
    params(
        ("license_id" = Option<String>, Query),
        ("as_of" = Option<String>, Query, description = "RFC 3339"),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the alerts", content((crate::serve::openapi::Alerts = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn alerts(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    let (format, as_of, license) = match (
        format_of(&q),
        time_of(&q, "as_of"),
        q.license_id("license_id"),
    ) {
        (Ok(format), Ok(as_of), Ok(license)) => (format, as_of, license),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    if let Some(license) = &license {
        if let Err(refused) = may_read(&app, &principal, license) {
            return refused;
        }
    }
    let answer = |p: &Projections, today: &Projections, at: Timestamp| {
        let rules = keyledger_projections::alerts::AlertRules::default();
        let mut all = keyledger_projections::alerts::alerts(p, license.as_ref(), at, &rules);
        all.retain(|a| {
            LicenseId::new(a.license_id.as_str()).is_ok_and(|l| today.may_read(&principal, &l))
        });
        rendered(format, keyledger_projections::alerts::render(&all, format))
    };
    at_moment(&app, as_of, answer).await
}

/// `answer` on the projections at business time `as_of` (folded off the async threads), or
/// on the live ones, now. Its second argument is always the live projections: who may read
/// what is today's rule, whatever moment is shown (a principal whose role was revoked
/// reads no past either, F9).
async fn at_moment(
    app: &App,
    as_of: Option<Timestamp>,
    answer: impl FnOnce(&Projections, &Projections, Timestamp) -> Response,
) -> Response {
    let moment = match as_of {
        Some(at) => match projections_as_of(app, at).await {
            Ok(p) => Some((p, at)),
            Err(response) => return response,
        },
        None => None,
    };
    let today = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    match &moment {
        Some((p, at)) => answer(p, &today, *at),
        None => answer(&today, &today, now_at_least(today.last_at)),
    }
}

/// `after` and `limit` of a paged read.
fn page_of(q: &Params) -> Result<(u64, usize), Response> {
    let after = q.number("after", Some(0))?;
    let limit = q.number("limit", Some(1000))?;
    if limit == 0 || limit > crate::view::MACHINE_PAGE_MAX as u64 {
        return Err(malformed(&input_error(
            Some("limit"),
            format!("expected 1..={}", crate::view::MACHINE_PAGE_MAX),
        )));
    }
    Ok((after, limit as usize))
}

fn storage_error(err: &anyhow::Error) -> Response {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        Answer::error("storage", format!("{err:#}")),
    )
}

/// `GET /v1/machines/{name}[?after=SEQ&limit=N&format=…]`: the rows of license IDs the
/// reader may read (refusals of unknown keys: operators only).
#[utoipa::path(
    get,
    path = "/v1/machines/{name}",
    tag = "reports",
    description = "A machine's history: every activation and refusal naming it, of license IDs the caller may read. Paged: `Keyledger-Next-After`.",
    params(
        ("name" = String, Path, description = "the machine's name"),
        ("after" = Option<u64>, Query, description = "the seq the last page ended at"),
        ("limit" = Option<u64>, Query),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the history", content((keyledger_projections::machine::MachineHistory = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn machine(
    State(app): State<App>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    if keyledger_core::MachineId::new(name.as_str()).is_err() {
        return malformed(&input_error(
            Some("name"),
            "not a machine name (1..=128 bytes)",
        ));
    }
    let (format, (after, limit)) = match (format_of(&q), page_of(&q)) {
        (Ok(format), Ok(page)) => (format, page),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let read =
        tokio::task::spawn_blocking(move || {
            let p = app
                .projections
                .read()
                .expect("no writer panics holding the lock");
            let operator = p.is_operator(&principal);
            crate::view::machine_history(&app.store, &p, &name, after, limit, |license| {
                match license {
                    Some(license) => p.may_read(&principal, license),
                    None => operator,
                }
            })
        })
        .await;
    match read {
        Ok(Ok(history)) => paged(history.next_after, rendered(format, history.render(format))),
        Ok(Err(err)) => storage_error(&err),
        Err(_) => storage_error(&anyhow::anyhow!("the read did not finish")),
    }
}

/// `GET /v1/keys/{id}/machines[?org=&method=&from=&to=&after=&limit=&format=…]`.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}/machines",
    tag = "reports",
    description = "The machines active on a key. Paged: `Keyledger-Next-After`.",
    params(
        ("id" = u64, Path, description = "the key id"),
        ("org" = Option<String>, Query), ("method" = Option<String>, Query),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query),
        ("after" = Option<u64>, Query), ("limit" = Option<u64>, Query),
        ("format" = Option<String>, Query, description = "json (default), tsv or table")
    ),
    responses(
        (status = 200, description = "the machines", content((keyledger_projections::machine::KeyMachines = "application/json"), (String = "text/tab-separated-values"), (String = "text/plain"))),
        (status = 400, description = "a malformed parameter", body = keyledger_ledger::Answer), (status = 401, description = "no, bad or revoked token", body = keyledger_ledger::Answer), (status = 403, description = "the read rule (R1): the caller may not read it", body = keyledger_ledger::Answer), (status = 404, description = "unknown key (operators)", body = keyledger_ledger::Answer), (status = 503, description = "the store cannot be read now", body = keyledger_ledger::Answer)
    ),
    security(("bearer" = []))
)]
pub(super) async fn key_machines(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Caller(principal): Caller,
) -> Response {
    let q = Params(q);
    let Ok(key_id) = id.parse::<u64>().map(KeyId) else {
        return malformed(&input_error(Some("id"), "not a key id"));
    };
    let (format, (after, limit)) = match (format_of(&q), page_of(&q)) {
        (Ok(format), Ok(page)) => (format, page),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let query = crate::view::MachineQuery {
        org: q.get("org").map(str::to_owned),
        method: q.get("method").map(str::to_owned),
        from: q.get("from").map(str::to_owned),
        to: q.get("to").map(str::to_owned),
    };
    let filter = match query.parse() {
        Ok(filter) => filter,
        Err(err) => return malformed(&input_error(None, format!("{err:#}"))),
    };
    {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        let not_theirs = format!(
            "{principal} holds no role on the license ID of key {}",
            key_id.0
        );
        match p.books.keys.get(key_id) {
            None => {
                let unknown = Answer::error("unknown_key", format!("no key {}", key_id.0));
                return unknown_to(&p, &principal, unknown, not_theirs);
            }
            Some(key) if !p.may_read(&principal, &key.license_id) => {
                return forbidden("R1", not_theirs)
            }
            Some(_) => {}
        }
    }
    let read = tokio::task::spawn_blocking(move || {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        crate::view::key_machines(&app.store, &p, key_id, &filter, after, limit)
    })
    .await;
    match read {
        Ok(Ok(Some(page))) => paged(page.next_after, rendered(format, page.render(format))),
        Ok(Ok(None)) => reply(
            StatusCode::NOT_FOUND,
            Answer::error("unknown_key", format!("no key {}", key_id.0)),
        ),
        Ok(Err(err)) => storage_error(&err),
        Err(_) => storage_error(&anyhow::anyhow!("the read did not finish")),
    }
}
