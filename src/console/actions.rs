//! The console's writes, each a command through the single writer with the signed-in
//! principal as its actor: copying a key and exporting keys (R1, R2: the disclosure is
//! committed before the text leaves), and filing, granting and denying requests (R17–R19:
//! a refusal is shown on the page with its code and rule).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_core::command::{
    DenyRequest, DiscloseKeys, GrantRequest, RequestKms, RequestMakIncrease,
};
use keyledger_core::{
    Command, CommandBody, Digest, DisclosureChannel, KeyId, KmsRequestReason, LicenseId, RequestId,
};
use keyledger_ledger::Answer;
use keyledger_projections::keys::{export_keys, ExportScope, KeyExport};
use keyledger_projections::report::{request_row, RequestRow};
use rand::RngCore;

use super::page::{error_page, forbidden_page, render, Chrome};
use super::pages::{product_id, readable_license_ids};
use super::session::{Posted, Viewer};
use crate::serve::App;
use crate::view::{checked_secrets, wall_clock};

/// What the last action did, shown at the top of the page it returns to.
pub(super) struct Notice {
    pub ok: bool,
    pub text: String,
    /// The refusal's stable code and the rule that refused (empty when accepted).
    pub code: String,
    pub rule: String,
}

impl Notice {
    fn of(answer: &Answer, done: String) -> Notice {
        if answer.ok {
            let seq = answer
                .seq
                .map(|s| format!(" (seq {s})"))
                .unwrap_or_default();
            return Notice {
                ok: true,
                text: format!("{done}{seq}."),
                code: String::new(),
                rule: String::new(),
            };
        }
        Notice {
            ok: false,
            text: answer.message().unwrap_or("refused").to_owned(),
            code: answer.code().unwrap_or("refused").to_owned(),
            rule: answer.rule().unwrap_or("").to_owned(),
        }
    }

    fn refused(code: &str, text: String) -> Notice {
        Notice {
            ok: false,
            text,
            code: code.to_owned(),
            rule: String::new(),
        }
    }
}

/// Submits one command as `viewer`, stamped with the server's clock.
async fn submit(app: &App, viewer: &Viewer, body: CommandBody) -> Answer {
    let command = Command {
        at: wall_clock(),
        actor: viewer.principal.clone(),
        command_id: None,
        body,
    };
    let answer = match app.writer.try_submit_stamped(vec![command]).await {
        Ok(mut answers) => answers.remove(0),
        Err(err) => return Answer::error("not_committed", err.to_string()),
    };
    if let Some(seq) = answer.seq {
        folded_through(app, seq).await;
    }
    answer
}

/// Waits (a few seconds at most) until the live projections have folded `seq`, so the page
/// an action returns shows what it did: answers come at the commit, the fold just after.
async fn folded_through(app: &App, seq: u64) {
    let mut head = app.head.subscribe();
    let folded = head.wait_for(|folded| *folded >= seq);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), folded).await;
}

/// Requests one page lists at most (pending first, then the newest); the report of each
/// license ID lists all of its own.
const REQUESTS_PAGE_MAX: usize = 1_000;

pub(super) struct MakKeyChoice {
    pub key_id: u64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    notice: Option<Notice>,
    /// (license ID, row) of each request the principal may read.
    rows: Vec<(String, RequestRow)>,
    /// Decided requests past [`REQUESTS_PAGE_MAX`], not listed.
    older: usize,
    license_ids: Vec<String>,
    mak_keys: Vec<MakKeyChoice>,
    products: Vec<(String, String)>,
    reasons: Vec<&'static str>,
}

impl RequestsPage {
    fn opt<T: std::fmt::Display>(&self, v: &Option<T>) -> String {
        v.as_ref().map(|v| v.to_string()).unwrap_or_default()
    }

    fn day(&self, t: &keyledger_core::Timestamp) -> String {
        super::pages::date(*t)
    }

    /// "20 by olga on 2026-01-09", "by olga on 2026-02-10: not needed", or nothing.
    fn decision(&self, r: &RequestRow) -> String {
        let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) else {
            return String::new();
        };
        let amount = r.amount.map(|a| format!("{a} ")).unwrap_or_default();
        let reason = r
            .reason
            .as_ref()
            .map(|why| format!(": {why}"))
            .unwrap_or_default();
        format!("{amount}by {by} on {}{reason}", self.day(&at))
    }
}

fn requests_page(app: &App, viewer: Viewer, notice: Option<Notice>) -> Response {
    let status = match &notice {
        Some(n) if !n.ok => crate::serve::status::of_code(&n.code),
        _ => StatusCode::OK,
    };
    let p = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    let readable = readable_license_ids(&p, &viewer.principal);
    let mut rows: Vec<(String, RequestRow)> = p
        .books
        .requests
        .iter()
        .filter(|(_, r)| readable.contains(&r.license_id))
        .map(|(id, r)| (r.license_id.to_string(), request_row(&p, id)))
        .collect();
    // Pending first (what needs deciding), then newest first.
    rows.sort_by(|(_, a), (_, b)| {
        (a.outcome != "pending")
            .cmp(&(b.outcome != "pending"))
            .then(b.requested_at.cmp(&a.requested_at))
    });
    let older = rows.len().saturating_sub(REQUESTS_PAGE_MAX);
    rows.truncate(REQUESTS_PAGE_MAX);
    let mak_keys = p
        .books
        .keys
        .iter()
        .filter(|(_, k)| k.kind.is_mak() && readable.contains(&k.license_id))
        .map(|(id, k)| MakKeyChoice {
            key_id: id.0,
            label: format!(
                "{} · {} · key {} ({})",
                k.license_id, p.books.products[&k.product].name, id.0, k.last5
            ),
        })
        .collect();
    let mut products: Vec<(String, String)> = p
        .books
        .products
        .iter()
        .map(|(id, product)| (id.to_string(), product.name.clone()))
        .collect();
    products.sort_by(|a, b| a.1.cmp(&b.1));
    let page = RequestsPage {
        chrome: viewer.chrome,
        notice,
        rows,
        older,
        license_ids: readable.iter().map(ToString::to_string).collect(),
        mak_keys,
        products,
        reasons: KmsRequestReason::ALL.iter().map(|r| r.as_str()).collect(),
    };
    drop(p);
    (status, render(&page)).into_response()
}

/// `GET /ui/requests`: pending and decided requests, and the forms to file and decide.
pub async fn requests(State(app): State<App>, viewer: Viewer) -> Response {
    requests_page(&app, viewer, None)
}

/// A new request id: `web-` and 12 random hex digits (the form does not ask for one).
fn new_request_id() -> RequestId {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    RequestId::new(format!("web-{}", hex::encode(bytes))).expect("a short printable id")
}

fn whole_number(posted: &Posted, name: &str, label: &str) -> Result<u64, Notice> {
    let text = posted.field(name).unwrap_or("").trim();
    text.parse().map_err(|_| {
        Notice::refused(
            "malformed",
            format!("{label}: {text:?} is not a whole number"),
        )
    })
}

fn license_field(posted: &Posted) -> Result<LicenseId, Notice> {
    let text = posted.field("license_id").unwrap_or("").trim();
    LicenseId::new(text)
        .map_err(|_| Notice::refused("malformed", format!("License ID: {text:?} is not one")))
}

/// `POST /ui/requests/mak`: a MAK activation increase for one key (R17).
pub async fn file_mak_increase(State(app): State<App>, posted: Posted) -> Response {
    let body = mak_increase(&app, &posted);
    let notice = match body {
        Ok((request_id, body)) => {
            let answer = submit(&app, &posted.viewer, body).await;
            Notice::of(&answer, format!("Filed MAK increase request {request_id}"))
        }
        Err(notice) => notice,
    };
    requests_page(&app, posted.viewer, Some(notice))
}

fn mak_increase(app: &App, posted: &Posted) -> Result<(RequestId, CommandBody), Notice> {
    let key_id = KeyId(whole_number(posted, "key_id", "Key")?);
    let needed = whole_number(posted, "activations_needed", "Activations needed")?;
    let justification = posted
        .field("justification")
        .unwrap_or("")
        .trim()
        .to_owned();
    let p = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    let key = p
        .books
        .keys
        .get(key_id)
        .filter(|k| p.may_read(&posted.viewer.principal, &k.license_id))
        .ok_or_else(|| Notice::refused("unknown_key", format!("no key {key_id} of yours")))?;
    let request_id = new_request_id();
    // R17: programs with an authorization number name it; the license ID's own is meant.
    let authorization_number = p.books.licenses[&key.license_id]
        .authorization_number
        .clone();
    let body = CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: request_id.clone(),
        license_id: key.license_id.clone(),
        authorization_number,
        product: key.product.clone(),
        key_last5: key.last5,
        activations_needed: needed,
        justification,
    });
    Ok((request_id, body))
}

/// `POST /ui/requests/kms`: a KMS host key request or more host activations (R18).
pub async fn file_kms_request(State(app): State<App>, posted: Posted) -> Response {
    let notice = match kms_request(&posted) {
        Ok((request_id, body)) => {
            let answer = submit(&app, &posted.viewer, body).await;
            Notice::of(&answer, format!("Filed KMS request {request_id}"))
        }
        Err(notice) => notice,
    };
    requests_page(&app, posted.viewer, Some(notice))
}

fn kms_request(posted: &Posted) -> Result<(RequestId, CommandBody), Notice> {
    let license_id = license_field(posted)?;
    let product_text = posted.field("product").unwrap_or("");
    let product = product_id(product_text)
        .ok_or_else(|| Notice::refused("malformed", format!("Product: {product_text:?}")))?;
    let reason: KmsRequestReason = posted
        .field("reason")
        .unwrap_or("")
        .parse()
        .map_err(|why: String| Notice::refused("malformed", format!("Reason: {why}")))?;
    let needed = whole_number(posted, "host_activations_needed", "Host activations needed")?;
    let needed = u32::try_from(needed).map_err(|_| {
        Notice::refused(
            "malformed",
            format!("Host activations needed: {needed} is too many"),
        )
    })?;
    let request_id = new_request_id();
    let body = CommandBody::RequestKms(RequestKms {
        request_id: request_id.clone(),
        license_id,
        product,
        reason,
        host_activations_needed: needed,
        justification: posted
            .field("justification")
            .unwrap_or("")
            .trim()
            .to_owned(),
    });
    Ok((request_id, body))
}

fn request_id_of(text: &str) -> Result<RequestId, Notice> {
    RequestId::new(text)
        .map_err(|_| Notice::refused("malformed", format!("{text:?} is no request id")))
}

/// `POST /ui/requests/{id}/grant` (amount): an operator grants (R19: not their own).
pub async fn grant(State(app): State<App>, Path(id): Path<String>, posted: Posted) -> Response {
    let body = request_id_of(&id).and_then(|request_id| {
        let amount = whole_number(&posted, "amount", "Amount")?;
        Ok(CommandBody::GrantRequest(GrantRequest {
            request_id,
            amount,
        }))
    });
    let notice = match body {
        Ok(body) => {
            let answer = submit(&app, &posted.viewer, body).await;
            Notice::of(&answer, format!("Granted request {id}"))
        }
        Err(notice) => notice,
    };
    requests_page(&app, posted.viewer, Some(notice))
}

/// `POST /ui/requests/{id}/deny` (reason).
pub async fn deny(State(app): State<App>, Path(id): Path<String>, posted: Posted) -> Response {
    let body = request_id_of(&id).map(|request_id| {
        CommandBody::DenyRequest(DenyRequest {
            request_id,
            reason: posted.field("reason").unwrap_or("").trim().to_owned(),
        })
    });
    let notice = match body {
        Ok(body) => {
            let answer = submit(&app, &posted.viewer, body).await;
            Notice::of(&answer, format!("Denied request {id}"))
        }
        Err(notice) => notice,
    };
    requests_page(&app, posted.viewer, Some(notice))
}

/// Builds an export for the signed-in principal; `None` when a key's stored text fails its
/// fingerprint (the page says so, and nothing leaves).
fn build_export(app: &App, viewer: &Viewer, scope: &ExportScope) -> Result<KeyExport, Response> {
    let p = app
        .projections
        .read()
        .expect("no writer panics holding the lock");
    export_keys(&p, scope, &viewer.principal, checked_secrets(&app.store)).map_err(|err| {
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&viewer.chrome),
            "Key text unavailable",
            &err.to_string(),
        )
    })
}

/// Commits the disclosure of `export` (R1, R2); `Err` is the page saying why not.
async fn disclose(
    app: &App,
    viewer: &Viewer,
    key_ids: Vec<KeyId>,
    channel: DisclosureChannel,
    export_digest: Option<Digest>,
) -> Result<u64, Response> {
    let body = CommandBody::DiscloseKeys(DiscloseKeys {
        key_ids,
        channel,
        export_digest,
    });
    let answer = submit(app, viewer, body).await;
    match (answer.ok, answer.seq) {
        (true, Some(seq)) => Ok(seq),
        _ => Err(error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&viewer.chrome),
            "Not disclosed",
            &format!(
                "The disclosure was refused ({}): {}. No key text was handed out.",
                answer.code().unwrap_or("refused"),
                answer.message().unwrap_or("")
            ),
        )),
    }
}

#[derive(Template)]
#[template(path = "copied.html")]
struct CopiedPage<'a> {
    chrome: &'a Chrome,
    key_id: u64,
    text: &'a str,
    seq: u64,
}

/// `POST /ui/keys/{id}/copy`: commits the `disclose_keys` copy event, then answers the key
/// text: as `text/plain` to the console's script (which puts it on the clipboard), as a
/// page to a plain form post.
pub async fn copy_key(State(app): State<App>, Path(id): Path<u64>, posted: Posted) -> Response {
    let viewer = &posted.viewer;
    let key_id = KeyId(id);
    let export = match build_export(&app, viewer, &ExportScope::Keys([key_id].into())) {
        Ok(export) => export,
        Err(response) => return response,
    };
    let (Some(row), [disclosed]) = (export.rows.first(), export.disclosed.as_slice()) else {
        let why = format!(
            "{} may not see the text of key {id}: it needs the administrator or \
             product_key_reader role on its license ID, and text that is not retired (R1).",
            viewer.principal
        );
        return forbidden_page(&viewer.chrome, &why);
    };
    let seq = match disclose(
        &app,
        viewer,
        vec![*disclosed],
        DisclosureChannel::Copy,
        None,
    )
    .await
    {
        Ok(seq) => seq,
        Err(response) => return response,
    };
    if posted.wants_text {
        let mut response = row.product_key.clone().into_response();
        response.headers_mut().insert(
            "keyledger-disclosure-seq",
            HeaderValue::from_str(&seq.to_string()).expect("digits"),
        );
        return response;
    }
    render(&CopiedPage {
        chrome: &viewer.chrome,
        key_id: id,
        text: &row.product_key,
        seq,
    })
}

/// `POST /ui/export` (scope = license_ids | keys | all, with the check boxes' values): the
/// R2 tab-separated file as a download, its disclosure committed with the file's BLAKE3
/// digest first (nothing is disclosed when every key in it is masked).
pub async fn export(State(app): State<App>, posted: Posted) -> Response {
    let viewer = &posted.viewer;
    let scope = match export_scope(&posted) {
        Ok(scope) => scope,
        Err(why) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&viewer.chrome),
                "Export",
                &why,
            )
        }
    };
    let export = match build_export(&app, viewer, &scope) {
        Ok(export) => export,
        Err(response) => return response,
    };
    let digest = Digest(*blake3::hash(&export.tsv).as_bytes());
    if !export.disclosed.is_empty() {
        let disclosed = export.disclosed.clone();
        let channel = DisclosureChannel::Export;
        if let Err(response) = disclose(&app, viewer, disclosed, channel, Some(digest)).await {
            return response;
        }
    }
    let headers = [
        (
            header::CONTENT_TYPE,
            "text/tab-separated-values; charset=utf-8".to_owned(),
        ),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"keyledger-keys.tsv\"".to_owned(),
        ),
        (
            header::HeaderName::from_static("keyledger-export-digest"),
            format!("blake3:{digest}"),
        ),
    ];
    (headers, export.tsv).into_response()
}

fn export_scope(posted: &Posted) -> Result<ExportScope, String> {
    match posted.field("scope").unwrap_or("") {
        "all" => Ok(ExportScope::All),
        "license_ids" => {
            let ids: Vec<LicenseId> = posted
                .all("license_id")
                .map(|id| LicenseId::new(id).map_err(|_| format!("{id:?} is not a license ID")))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Err("Select at least one license ID to export.".to_owned());
            }
            Ok(ExportScope::LicenseIds(ids))
        }
        "keys" => {
            let ids: std::collections::BTreeSet<KeyId> = posted
                .all("key_id")
                .map(|id| {
                    id.parse()
                        .map(KeyId)
                        .map_err(|_| format!("{id:?} is not a key id"))
                })
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Err("Select at least one key to export.".to_owned());
            }
            if ids.len() > keyledger_core::decide::DISCLOSED_KEYS_MAX {
                return Err(format!(
                    "{} keys selected; one export holds at most {}.",
                    ids.len(),
                    keyledger_core::decide::DISCLOSED_KEYS_MAX
                ));
            }
            Ok(ExportScope::Keys(ids))
        }
        other => Err(format!(
            "scope {other:?}: expected license_ids, keys or all"
        )),
    }
}
