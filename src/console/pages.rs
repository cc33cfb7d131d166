//! The read pages: Contracts, Products and services, Product key details (as of any
//! moment) and Forecast. Each page reads the live projections under the one read rule
//! (`Projections::may_read`); key text is never on a page (R1: masked here, copied by POST).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_core::{KeyId, LicenseId, Principal, ProductId, Timestamp};
use keyledger_projections::forecast::{forecasts, WINDOW_DAYS_DEFAULT};
use keyledger_projections::keys::may_see_text;
use keyledger_projections::report::{key_row, license_report, phase_name, KeyRow, LicenseReport};
use keyledger_projections::usage::{scope_keys, usage, Period, UsageScope};
use keyledger_projections::Projections;

use super::page::{error_page, forbidden_page, render, Chrome};
use super::session::Viewer;
use crate::serve::App;
use crate::view::{now_at_least, projections, Until};

/// The live projections, read-locked for the length of one page.
fn live(app: &App) -> std::sync::RwLockReadGuard<'_, Projections> {
    app.projections
        .read()
        .expect("no writer panics holding the lock")
}

/// The license IDs `principal` may read, in order (operators: every one).
pub(super) fn readable_license_ids(p: &Projections, principal: &Principal) -> Vec<LicenseId> {
    p.books
        .licenses
        .keys()
        .filter(|id| p.may_read(principal, id))
        .cloned()
        .collect()
}

pub(super) struct ContractRow {
    pub license_id: String,
    pub organization: String,
    pub program: String,
    pub agreement_number: String,
    pub authorization_number: String,
    pub purchase_account: String,
    pub rds_activation_number: String,
    pub keys: usize,
    pub pending_requests: usize,
}

#[derive(Template)]
#[template(path = "contracts.html")]
struct ContractsPage {
    chrome: Chrome,
    rows: Vec<ContractRow>,
}

/// `GET /ui/contracts`: one row per license ID the principal may see.
pub async fn contracts(State(app): State<App>, viewer: Viewer) -> Response {
    let p = live(&app);
    let rows = readable_license_ids(&p, &viewer.principal)
        .iter()
        .map(|id| contract_row(&p, id))
        .collect();
    render(&ContractsPage {
        chrome: viewer.chrome,
        rows,
    })
}

fn contract_row(p: &Projections, id: &LicenseId) -> ContractRow {
    let record = &p.books.licenses[id];
    let view = p.license_views.get(id);
    let pending = view.map_or(0, |v| {
        v.requests
            .iter()
            .filter(|r| {
                p.books
                    .requests
                    .get(r)
                    .is_some_and(|r| r.decision.is_none())
            })
            .count()
    });
    ContractRow {
        license_id: id.to_string(),
        organization: p.books.orgs[&record.org].name.clone(),
        program: record.program.to_string(),
        agreement_number: record.agreement_number.clone(),
        authorization_number: record.authorization_number.clone().unwrap_or_default(),
        purchase_account: record.purchase_account.clone().unwrap_or_default(),
        rds_activation_number: record.license_server_number().to_owned(),
        keys: view.map_or(0, |v| v.keys.len()),
        pending_requests: pending,
    }
}

pub(super) struct KeyLine {
    pub key_id: u64,
    pub license_id: String,
    pub organization: String,
    pub kind: String,
    pub masked: String,
    pub used_of_total: String,
    pub osa_status: String,
    pub esu_coverage: String,
    pub remaining: String,
    pub exhaustion: String,
    /// R1: the principal holds a role that sees key text, and the text is not retired.
    pub may_copy: bool,
}

pub(super) struct ProductSection {
    pub product: String,
    pub name: String,
    pub keys: Vec<KeyLine>,
}

/// Keys one Products page lists at most: past that it says how many more match, and the
/// product filter or the search box narrows them (the export buttons still cover all).
pub(super) const PRODUCT_PAGE_KEYS_MAX: usize = 1_000;

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    chrome: Chrome,
    /// (id, name) of every product the principal sees a key of, for the filter.
    products: Vec<(String, String)>,
    selected: String,
    search: String,
    sections: Vec<ProductSection>,
    shown: usize,
    /// Keys that matched past [`PRODUCT_PAGE_KEYS_MAX`].
    more: usize,
}

/// `GET /ui/products[?product=ID&q=TEXT]`: products with their keys.
pub async fn products(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    let selected = q.get("product").cloned().unwrap_or_default();
    let search = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let p = live(&app);
    let at = now_at_least(p.last_at);
    let mut sections: Vec<ProductSection> = Vec::new();
    let mut products: Vec<(String, String)> = Vec::new();
    let (mut shown, mut more) = (0, 0);
    for (key_id, key) in p.books.keys.iter() {
        if !p.may_read(&viewer.principal, &key.license_id) {
            continue;
        }
        let product = &p.books.products[&key.product];
        let pair = (key.product.to_string(), product.name.clone());
        if !products.contains(&pair) {
            products.push(pair);
        }
        if !selected.is_empty() && key.product.as_str() != selected {
            continue;
        }
        if shown == PRODUCT_PAGE_KEYS_MAX {
            more += usize::from(matches_key(&p, key_id, &product.name, &search));
            continue;
        }
        let line = key_line(&p, &viewer.principal, key_id, at);
        if !matches_search(&line, &product.name, &search) {
            continue;
        }
        shown += 1;
        match sections
            .iter_mut()
            .find(|s| s.product == key.product.as_str())
        {
            Some(section) => section.keys.push(line),
            None => sections.push(ProductSection {
                product: key.product.to_string(),
                name: product.name.clone(),
                keys: vec![line],
            }),
        }
    }
    products.sort();
    sections.sort_by(|a, b| a.name.cmp(&b.name));
    render(&ProductsPage {
        chrome: viewer.chrome,
        products,
        selected,
        search,
        sections,
        shown,
        more,
    })
}

/// When a MAK runs out, in the words of the CLI's forecast, and the rate behind it; nothing
/// for other kinds (a KMS host or OSA key is not consumed by machines).
fn outlook_of(row: &KeyRow) -> String {
    if !row.kind.is_mak() {
        return String::new();
    }
    let outlook = keyledger_projections::forecast::Outlook::of(row.remaining, row.exhaustion);
    match (outlook.words(date), row.rate_per_day) {
        (words, Some(rate)) if rate > 0.0 => format!("{words} ({rate:.2}/day)"),
        (words, _) => words,
    }
}

fn key_line(p: &Projections, principal: &Principal, key_id: KeyId, at: Timestamp) -> KeyLine {
    let key = &p.books.keys[key_id];
    let row: KeyRow = key_row(p, key_id, at);
    let license = &p.books.licenses[&key.license_id];
    let counted = row.total > 0 || key.kind.is_mak();
    KeyLine {
        key_id: key_id.0,
        license_id: key.license_id.to_string(),
        organization: p.books.orgs[&license.org].name.clone(),
        kind: key.kind.to_string(),
        masked: row.key.clone(),
        used_of_total: key.used_of_total(),
        osa_status: row.osa_status.to_owned(),
        esu_coverage: row.esu_coverage.map(phase_name).unwrap_or("").to_owned(),
        remaining: if counted {
            row.remaining.to_string()
        } else {
            String::new()
        },
        exhaustion: outlook_of(&row),
        may_copy: may_see_text(p, principal, &key.license_id) && !key.text_retired,
    }
}

/// [`matches_search`] without building the row (for the keys past the page's end).
fn matches_key(p: &Projections, key_id: KeyId, product_name: &str, search: &str) -> bool {
    if search.is_empty() {
        return true;
    }
    let key = &p.books.keys[key_id];
    let license = &p.books.licenses[&key.license_id];
    let line = KeyLine {
        key_id: key_id.0,
        license_id: key.license_id.to_string(),
        organization: p.books.orgs[&license.org].name.clone(),
        kind: key.kind.to_string(),
        masked: key.last5.masked(),
        used_of_total: String::new(),
        osa_status: String::new(),
        esu_coverage: String::new(),
        remaining: String::new(),
        exhaustion: String::new(),
        may_copy: false,
    };
    matches_search(&line, product_name, search)
}

fn matches_search(line: &KeyLine, product_name: &str, search: &str) -> bool {
    if search.is_empty() {
        return true;
    }
    let needle = search.to_lowercase();
    [
        line.license_id.as_str(),
        line.organization.as_str(),
        line.kind.as_str(),
        line.masked.as_str(),
        product_name,
    ]
    .iter()
    .any(|hay| hay.to_lowercase().contains(&needle))
}

/// The date part of a moment, as the admin center shows it.
pub(super) fn date(t: Timestamp) -> String {
    t.to_string().chars().take(10).collect()
}

#[derive(Template)]
#[template(path = "details.html")]
struct DetailsPage {
    chrome: Chrome,
    report: LicenseReport,
    /// The "As of" field as the person typed it (empty: now).
    as_of: String,
    /// Whether key text may be copied here (R1), and which keys' text is retired.
    may_copy: bool,
    retired: Vec<u64>,
    /// Each key's "Activations or seats", as on the Products page.
    counts: Vec<(u64, String)>,
}

impl DetailsPage {
    fn count(&self, key_id: &u64) -> &str {
        self.counts
            .iter()
            .find(|(id, _)| id == key_id)
            .map_or("", |(_, count)| count.as_str())
    }

    fn phase(&self, phase: &Option<keyledger_core::event::CoveragePhase>) -> &'static str {
        phase.map(phase_name).unwrap_or("")
    }

    fn phase_of(&self, phase: &keyledger_core::event::CoveragePhase) -> &'static str {
        phase_name(*phase)
    }

    fn roles(&self, roles: &[keyledger_core::Role]) -> String {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn refusals(&self, row: &KeyRow) -> String {
        row.refusals
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn day(&self, t: &Timestamp) -> String {
        date(*t)
    }

    fn outlook(&self, row: &KeyRow) -> String {
        outlook_of(row)
    }

    fn opt_day(&self, t: &Option<Timestamp>) -> String {
        t.map(date).unwrap_or_default()
    }

    fn opt_number<T: std::fmt::Display>(&self, n: &Option<T>) -> String {
        n.as_ref().map(|n| n.to_string()).unwrap_or_default()
    }

    fn key_list(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn copyable(&self, key_id: &u64) -> bool {
        self.may_copy && !self.retired.contains(key_id)
    }
}

/// Reads the "As of" field: RFC 3339, or what a `datetime-local` input or a person sends
/// (`2026-05-01T12:00`, `2026-05-01`), taken as UTC.
pub(super) fn parse_as_of(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    let candidates = [
        text.to_owned(),
        format!("{text}Z"),
        format!("{text}:00Z"),
        format!("{text}T00:00:00Z"),
    ];
    candidates
        .iter()
        .find_map(|c| Timestamp::parse(c).ok())
        .ok_or_else(|| {
            format!("{text:?} is not a moment: write it as 2026-05-01T12:00:00Z or 2026-05-01")
        })
}

/// The license ID a path names, if the viewer may read it: else the page that says why
/// (400 not a license ID, 403 under the read rule).
pub fn readable_license(app: &App, viewer: &Viewer, id: &str) -> Result<LicenseId, Response> {
    let Ok(license) = LicenseId::new(id) else {
        let why = format!("{id:?} is not a license ID.");
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            Some(&viewer.chrome),
            "Not found",
            &why,
        ));
    };
    if let Err(refused) = live(app).may_read_license(&viewer.principal, &license) {
        let why = format!("{} ({}).", refused.message, refused.rule);
        return Err(forbidden_page(&viewer.chrome, &why));
    }
    Ok(license)
}

/// `GET /ui/license-ids/{id}[?as_of=T]`: the license ID's report, now or as of `T`.
pub async fn details(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    let license = match readable_license(&app, &viewer, &id) {
        Ok(license) => license,
        Err(page) => return page,
    };
    let as_of = q
        .get("as_of")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let report = if as_of.is_empty() {
        let p = live(&app);
        let at = now_at_least(p.last_at);
        page_of(&p, &viewer.principal, &license, at)
    } else {
        let at = match parse_as_of(&as_of) {
            Ok(at) => at,
            Err(why) => {
                return error_page(StatusCode::BAD_REQUEST, Some(&viewer.chrome), "As of", &why)
            }
        };
        let store = app.store.clone();
        let folded = tokio::task::spawn_blocking(move || projections(&store, Until::Time(at)));
        match folded.await {
            Ok(Ok(p)) => page_of(&p, &viewer.principal, &license, at),
            _ => {
                let why = "The log could not be folded to that moment.";
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&viewer.chrome),
                    "Storage",
                    why,
                );
            }
        }
    };
    match report {
        Some((report, may_copy, retired, counts)) => render(&DetailsPage {
            chrome: viewer.chrome,
            report,
            as_of,
            may_copy,
            retired,
            counts,
        }),
        None => {
            let why = format!("License ID {license} did not exist at that moment.");
            error_page(
                StatusCode::NOT_FOUND,
                Some(&viewer.chrome),
                "Not found",
                &why,
            )
        }
    }
}

/// A license ID's report, whether key text may be copied, the keys whose text is retired,
/// and each key's "Activations or seats" as every page shows it.
type DetailsOf = (LicenseReport, bool, Vec<u64>, Vec<(u64, String)>);

fn page_of(
    p: &Projections,
    principal: &Principal,
    license: &LicenseId,
    at: Timestamp,
) -> Option<DetailsOf> {
    let report = license_report(p, license, at)?;
    let retired = report
        .keys
        .iter()
        .filter(|k| {
            p.books
                .keys
                .get(KeyId(k.key_id))
                .is_some_and(|k| k.text_retired)
        })
        .map(|k| k.key_id)
        .collect();
    // The admin center's figure (`KeyView::used_of_total`: machines, KMS hosts or seats),
    // the one the Products page and the key export show.
    let counts = report
        .keys
        .iter()
        .filter_map(|k| Some((k.key_id, p.books.keys.get(KeyId(k.key_id))?.used_of_total())))
        .collect();
    Some((report, may_see_text(p, principal, license), retired, counts))
}

pub(super) struct ForecastLine {
    pub key_id: u64,
    pub product: String,
    pub used: u64,
    pub total: u64,
    pub remaining: u64,
    pub rate_per_day: String,
    pub exhaustion: String,
}

#[derive(Template)]
#[template(path = "forecast.html")]
struct ForecastPage {
    chrome: Chrome,
    license_ids: Vec<String>,
    selected: String,
    lines: Vec<ForecastLine>,
    window_days: u32,
}

/// The license ID a forecast page is about: the one asked for, if readable; else the
/// principal's first.
fn forecast_license(
    p: &Projections,
    principal: &Principal,
    q: &HashMap<String, String>,
) -> Option<LicenseId> {
    let readable = readable_license_ids(p, principal);
    match q.get("license_id").and_then(|id| LicenseId::new(id).ok()) {
        Some(id) if readable.contains(&id) => Some(id),
        Some(_) => None,
        None => readable.into_iter().next(),
    }
}

/// `GET /ui/forecast[?license_id=ID]`: consumption and projected exhaustion.
pub async fn forecast(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    let p = live(&app);
    let Some(license) = forecast_license(&p, &viewer.principal, &q) else {
        let why = "Pick a license ID you hold a role on (R1).";
        return error_page(StatusCode::FORBIDDEN, Some(&viewer.chrome), "Forecast", why);
    };
    let at = p.last_at.unwrap_or_default();
    let lines = forecasts(&p, Some(license.as_str()), at, WINDOW_DAYS_DEFAULT)
        .into_iter()
        .map(|f| ForecastLine {
            exhaustion: f.outlook().words(date),
            key_id: f.key_id,
            product: f.product,
            used: f.used,
            total: f.total,
            remaining: f.remaining,
            rate_per_day: format!("{:.2}", f.rate_per_day),
        })
        .collect();
    let license_ids = readable_license_ids(&p, &viewer.principal)
        .iter()
        .map(ToString::to_string)
        .collect();
    render(&ForecastPage {
        chrome: viewer.chrome,
        license_ids,
        selected: license.to_string(),
        lines,
        window_days: WINDOW_DAYS_DEFAULT,
    })
}

/// The plot `draw` makes of the license ID a plot's query names (the forecast page's rule).
fn plot_of(
    app: &App,
    viewer: &Viewer,
    q: &HashMap<String, String>,
    draw: impl FnOnce(&Projections, LicenseId) -> anyhow::Result<String>,
) -> Response {
    let p = live(app);
    let Some(license) = forecast_license(&p, &viewer.principal, q) else {
        return (StatusCode::FORBIDDEN, "no such license ID among yours").into_response();
    };
    match draw(&p, license) {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")).into_response(),
    }
}

/// `GET /ui/forecast.svg?license_id=ID`: the consumption plot of `keyledger forecast --svg`.
pub async fn forecast_svg(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    plot_of(&app, &viewer, &q, |p, license| {
        let at = p.last_at.unwrap_or_default();
        let all = forecasts(p, Some(license.as_str()), at, WINDOW_DAYS_DEFAULT);
        crate::plot::forecast_svg(p, &all, at)
    })
}

/// `GET /ui/usage.svg?license_id=ID`: activations by month, as `keyledger usage --svg`.
pub async fn usage_svg(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    viewer: Viewer,
) -> Response {
    plot_of(&app, &viewer, &q, |p, license| {
        let scope = UsageScope::LicenseId(license);
        let report = scope_keys(p, &scope)
            .and_then(|keys| usage(p, &scope, &keys, Period::Month, None, None))?;
        crate::plot::usage_svg(&report)
    })
}

/// A product id from a form or a query, checked.
pub(super) fn product_id(text: &str) -> Option<ProductId> {
    ProductId::new(text).ok()
}
