//! The console over real HTTP: `keyledger serve` on the demo ledger, pages read
//! as a browser would (cookies by hand, redirects not followed), HTML parsed with scraper.
//! The browser itself (clipboard, downloads, htmx) is driven in `e2e/`.

use crate::support;

use std::path::Path;

use scraper::{Html, Selector};
use serde_json::Value;

const KEY_TEXT_CHARS: &str = "BCDFGHJKMPQRTVWXY2346789";

struct Console {
    _child: support::Running,
    /// Reads the server's stderr (to its end, when the server exits).
    _stderr: support::StderrReader,
    url: String,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
    tokens: std::collections::HashMap<&'static str, String>,
    /// `keyledger report --license-id V3000003 --as-of AS_OF --format json`, run before
    /// the server took the file.
    report_then: Value,
    /// `keyledger forecast`, run then too.
    forecast_then: String,
}

const AS_OF: &str = "2026-03-01T00:00:00Z";

fn keyledger(data: &Path, args: &[&str]) -> String {
    support::keyledger(data, args)
}

impl Console {
    /// The demo ledger, a second operator `oscar` holding a role on V1000001, tokens, serve.
    fn start() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("keyledger.redb");
        keyledger(&data, &["demo"]);
        let setup = dir.path().join("setup.jsonl");
        std::fs::write(
            &setup,
            concat!(
                r#"{"type":"add_operator","at":"2026-11-01T00:00:00Z","actor":"olga","principal":"oscar"}"#,
                "\n",
                r#"{"type":"assign_role","at":"2026-11-01T00:00:00Z","actor":"olga","principal":"oscar","license_id":"V1000001","role":"key_administrator"}"#,
                "\n"
            ),
        )
        .unwrap();
        keyledger(&data, &["apply", setup.to_str().unwrap()]);
        let report_then: Value = serde_json::from_str(&keyledger(
            &data,
            &[
                "report",
                "--license-id",
                "V3000003",
                "--as-of",
                AS_OF,
                "--format",
                "json",
            ],
        ))
        .unwrap();
        let forecast_then = keyledger(&data, &["forecast"]);
        let mut tokens = std::collections::HashMap::new();
        // nora holds no role anywhere.
        for who in ["rita", "vic", "olga", "oscar", "kim", "nora"] {
            let token = keyledger(&data, &["token", "create", "--principal", who]);
            tokens.insert(who, token.trim().to_owned());
        }
        let (child, url, stderr) = support::spawn_serve(&data, &[]);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Console {
            _child: child,
            _stderr: stderr,
            url,
            agent,
            _dir: dir,
            tokens,
            report_then,
            forecast_then,
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.agent.get(format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        Page::of(request.call().unwrap())
    }

    fn post(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Page {
        self.post_accepting(path, cookie, fields, "text/html")
    }

    fn post_accepting(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        accept: &str,
    ) -> Page {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Accept", accept);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        Page::of(request.send_form(fields.iter().copied()).unwrap())
    }

    /// Signs in as `who` through the form; answers the session's `Cookie` header value.
    fn sign_in(&self, who: &str) -> Session {
        let form = self.get("/ui/sign-in", None);
        let pre = form
            .set_cookie("keyledger_presession")
            .expect("a pre-session cookie");
        let pre = format!("keyledger_presession={pre}");
        let csrf = form.csrf();
        let signed = self.post(
            "/ui/sign-in",
            Some(&pre),
            &[("csrf", &csrf), ("token", &self.tokens[who])],
        );
        assert_eq!(signed.status, 303, "{}", signed.body);
        assert_eq!(signed.header("location"), Some("/ui/contracts"));
        let value = signed
            .set_cookie("keyledger_session")
            .expect("a session cookie");
        let cookie = format!("keyledger_session={value}");
        let csrf = self.get("/ui/contracts", Some(&cookie)).csrf();
        Session { cookie, csrf }
    }

    /// `GET path` on the API as `who` (bearer token): the status, and the body when it is
    /// not a stream (a stream's answer is judged by its status, then dropped).
    fn api(&self, path: &str, who: &str) -> (u16, String) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.tokens[who]))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        if path.starts_with("/v1/events/stream") {
            return (status, String::new());
        }
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// The events after `after`, read through the API as the operator.
    fn events_after(&self, after: u64) -> Vec<Value> {
        let mut response = self
            .agent
            .get(format!("{}/v1/log?from={}", self.url, after + 1))
            .header("Authorization", format!("Bearer {}", self.tokens["olga"]))
            .call()
            .unwrap();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        body["events"].as_array().unwrap().clone()
    }

    fn head(&self) -> u64 {
        let mut response = self
            .agent
            .get(format!("{}/healthz", self.url))
            .call()
            .unwrap();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        body["seq"].as_u64().unwrap()
    }
}

struct Session {
    cookie: String,
    csrf: String,
}

struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn of(mut response: ureq::http::Response<ureq::Body>) -> Page {
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Page {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_string().unwrap(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value a `Set-Cookie` gives cookie `name` (not a removal).
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let value = c.strip_prefix(&format!("{name}="))?.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    fn html(&self) -> Html {
        Html::parse_document(&self.body)
    }

    fn texts(&self, selector: &str) -> Vec<String> {
        let selector = Selector::parse(selector).unwrap();
        self.html()
            .select(&selector)
            .map(|e| e.text().collect::<String>().trim().to_owned())
            .collect()
    }

    fn attrs(&self, selector: &str, attr: &str) -> Vec<String> {
        let selector = Selector::parse(selector).unwrap();
        self.html()
            .select(&selector)
            .filter_map(|e| e.value().attr(attr).map(str::to_owned))
            .collect()
    }

    fn csrf(&self) -> String {
        self.attrs("input[name=csrf]", "value")
            .into_iter()
            .next()
            .expect("the page has a form with a CSRF token")
    }
}

fn is_key_text(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .all(|g| g.len() == 5 && g.chars().all(|c| KEY_TEXT_CHARS.contains(c)))
}

fn is_masked(text: &str) -> bool {
    text.starts_with("*****-*****-*****-*****-") && text.len() == 29
}

#[test]
fn signing_in_makes_an_http_only_strict_session_and_every_page_needs_one() {
    let console = Console::start();
    // The server's own address leads a person to the console.
    let root = console.get("/", None);
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/ui"));
    let away = console.get("/ui/contracts", None);
    assert_eq!(away.status, 303);
    assert_eq!(away.header("location"), Some("/ui/sign-in"));

    let form = console.get("/ui/sign-in", None);
    assert_eq!(form.status, 200);
    assert_eq!(form.texts("label[for=token]"), ["Token"]);
    assert_eq!(form.texts("button"), ["Sign in"]);
    assert_eq!(
        form.header("content-security-policy")
            .unwrap()
            .split(';')
            .next(),
        Some("default-src 'self'")
    );
    assert_eq!(form.header("cache-control"), Some("no-store"));

    let pre = format!(
        "keyledger_presession={}",
        form.set_cookie("keyledger_presession").unwrap()
    );
    let csrf = form.csrf();
    let wrong = console.post(
        "/ui/sign-in",
        Some(&pre),
        &[("csrf", &csrf), ("token", "klt_0000")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.texts("[role=alert]"),
        ["Not signed in: unknown or revoked token."]
    );
    assert!(wrong.set_cookie("keyledger_session").is_none());

    let signed = console.post(
        "/ui/sign-in",
        Some(&pre),
        &[("csrf", &csrf), ("token", &console.tokens["rita"])],
    );
    assert_eq!(signed.status, 303);
    let session = signed
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("keyledger_session="))
        .expect("the session cookie")
        .to_owned();
    // The cookie names a session, never the token (an API credential that must outlive it).
    assert!(!session.contains(&console.tokens["rita"]), "{session}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.split("; ").any(|a| a == attribute), "{session}");
    }
    let cookie = session.split(';').next().unwrap();
    let page = console.get("/ui/contracts", Some(cookie));
    assert_eq!(page.status, 200);
    assert_eq!(page.texts("[data-principal]"), ["rita"]);

    let out = console.post("/ui/sign-out", Some(cookie), &[("csrf", &page.csrf())]);
    assert_eq!(out.status, 303);
    assert!(out
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("keyledger_session=;") && c.contains("Max-Age=0")));
    // A copy of the signed-out cookie is worth nothing; the token itself still signs in.
    let replayed = console.get("/ui/contracts", Some(cookie));
    assert_eq!(replayed.status, 303, "{}", replayed.body);
    assert_eq!(replayed.header("location"), Some("/ui/sign-in"));
    let again = console.sign_in("rita");
    assert_eq!(
        console.get("/ui/contracts", Some(&again.cookie)).status,
        200
    );
}

#[test]
fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let console = Console::start();
    let rita = console.sign_in("rita");
    let head = console.head();
    let missing = console.post("/ui/keys/2/copy", Some(&rita.cookie), &[]);
    assert_eq!(missing.status, 403);
    assert_eq!(missing.texts("h1"), ["The form has expired"]);
    let forged = "0".repeat(64);
    let wrong = console.post("/ui/keys/2/copy", Some(&rita.cookie), &[("csrf", &forged)]);
    assert_eq!(wrong.status, 403);
    // Another session's token is not this one's.
    let vic = console.sign_in("vic");
    let crossed = console.post(
        "/ui/export",
        Some(&rita.cookie),
        &[("csrf", &vic.csrf), ("scope", "all")],
    );
    assert_eq!(crossed.status, 403);
    let signed_in_without =
        console.post("/ui/sign-in", None, &[("token", &console.tokens["rita"])]);
    assert_eq!(signed_in_without.status, 403);
    assert_eq!(console.head(), head, "no refused POST appended anything");
    // The same POST with the token goes through: the refusals above were the token's.
    let copied = console.post(
        "/ui/keys/2/copy",
        Some(&rita.cookie),
        &[("csrf", &rita.csrf)],
    );
    assert_eq!(copied.status, 200, "{}", copied.body);
    assert_eq!(console.head(), head + 1);
}

#[test]
fn keys_are_masked_and_pages_gated_by_role() {
    let console = Console::start();
    let vic = console.sign_in("vic");
    let contracts = console.get("/ui/contracts", Some(&vic.cookie));
    assert_eq!(
        contracts.texts("#contracts tbody td:nth-child(2)"),
        ["V4000004"]
    );
    let products = console.get("/ui/products", Some(&vic.cookie));
    let keys = products.texts("code.key");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| is_masked(k)), "{keys:?}");
    assert!(products.texts("button").iter().all(|b| b != "Copy key"));
    assert!(!products
        .body
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .any(is_key_text));
    let forbidden = console.get("/ui/license-ids/V3000003", Some(&vic.cookie));
    assert_eq!(forbidden.status, 403);
    let copy = console.post("/ui/keys/2/copy", Some(&vic.cookie), &[("csrf", &vic.csrf)]);
    assert_eq!(copy.status, 403);

    // kim administers keys of V3000003 but may not see their text (R1).
    let kim = console.sign_in("kim");
    let products = console.get("/ui/products", Some(&kim.cookie));
    assert!(products.texts("code.key").iter().all(|k| is_masked(k)));
    assert!(products.texts("button").iter().all(|b| b != "Copy key"));

    let rita = console.sign_in("rita");
    let products = console.get("/ui/products", Some(&rita.cookie));
    assert!(products.texts("button").iter().any(|b| b == "Copy key"));
    assert!(
        products.texts("code.key").iter().all(|k| is_masked(k)),
        "masked until copied"
    );

    let olga = console.sign_in("olga");
    let contracts = console.get("/ui/contracts", Some(&olga.cookie));
    assert_eq!(
        contracts.texts("#contracts tbody td:nth-child(2)"),
        ["V1000001", "V2000002", "V3000003", "V4000004", "V5000005"]
    );
}

#[test]
fn copy_and_export_commit_their_disclosure_before_the_text_leaves() {
    let console = Console::start();
    let rita = console.sign_in("rita");
    let head = console.head();
    let copied = console.post_accepting(
        "/ui/keys/2/copy",
        Some(&rita.cookie),
        &[("csrf", &rita.csrf)],
        "text/plain",
    );
    assert_eq!(copied.status, 200);
    assert!(is_key_text(&copied.body), "{}", copied.body);
    assert_eq!(copied.header("cache-control"), Some("no-store"));
    let events = console.events_after(head);
    assert_eq!(events.len(), 1);
    let event = &events[0]["event"];
    assert_eq!(event["type"], "keys_disclosed");
    assert_eq!(event["channel"], "copy");
    assert_eq!(event["actor"], "rita");
    assert_eq!(event["key_ids"], serde_json::json!([2]));
    assert_eq!(
        copied.header("keyledger-disclosure-seq"),
        Some((head + 1).to_string().as_str())
    );

    // A key of a license ID rita holds no role on: refused, nothing appended.
    let head = console.head();
    let refused = console.post(
        "/ui/keys/1/copy",
        Some(&rita.cookie),
        &[("csrf", &rita.csrf)],
    );
    assert_eq!(refused.status, 403);
    assert_eq!(console.head(), head);

    let exported = console.post(
        "/ui/export",
        Some(&rita.cookie),
        &[
            ("csrf", &rita.csrf),
            ("scope", "license_ids"),
            ("license_id", "V3000003"),
        ],
    );
    assert_eq!(exported.status, 200);
    assert_eq!(
        exported.header("content-disposition"),
        Some("attachment; filename=\"keyledger-keys.tsv\"")
    );
    let digest = blake3::hash(exported.body.as_bytes()).to_hex().to_string();
    assert_eq!(
        exported.header("keyledger-export-digest"),
        Some(format!("blake3:{digest}").as_str())
    );
    let events = console.events_after(head);
    assert_eq!(events.len(), 1);
    let event = &events[0]["event"];
    assert_eq!(event["channel"], "export");
    assert_eq!(event["export_digest"], digest.as_str());
    let rows: Vec<&str> = exported.body.lines().collect();
    assert_eq!(rows[0].split('\t').next(), Some("License ID"));
    assert_eq!(
        event["key_ids"].as_array().unwrap().len(),
        rows[1..]
            .iter()
            .filter(|r| is_key_text(r.split('\t').nth(4).unwrap()))
            .count()
    );

    // Selected keys: exactly those rows.
    let head = console.head();
    let picked = console.post(
        "/ui/export",
        Some(&rita.cookie),
        &[
            ("csrf", &rita.csrf),
            ("scope", "keys"),
            ("key_id", "2"),
            ("key_id", "3"),
        ],
    );
    assert_eq!(picked.body.lines().count(), 3);
    assert_eq!(
        console.events_after(head)[0]["event"]["key_ids"],
        serde_json::json!([2, 3])
    );
    let none = console.post(
        "/ui/export",
        Some(&rita.cookie),
        &[("csrf", &rita.csrf), ("scope", "keys")],
    );
    assert_eq!(none.status, 400);
    assert_eq!(
        none.texts("[role=alert]"),
        ["Select at least one key to export."]
    );
}

#[test]
fn the_as_of_page_equals_the_cli_report_at_that_moment() {
    let console = Console::start();
    let rita = console.sign_in("rita");
    let page = console.get(
        &format!("/ui/license-ids/V3000003?as_of={AS_OF}"),
        Some(&rita.cookie),
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let want: Vec<String> = console.report_then["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            // The admin center's "Activations or seats": machines of a MAK, hosts of a KMS
            // host key, seats of an OSA key (all once redeemed).
            let count = match k["kind"].as_str().unwrap() {
                "mak" | "esu_mak" => format!("{}/{}", k["used"], k["total"]),
                "kms_host" => format!("{}/{}", k["kms_hosts"], k["kms_hosts_limit"]),
                "osa" if k["osa_status"] == "active" => format!("{}/{}", k["total"], k["total"]),
                "osa" => format!("0/{}", k["total"]),
                _ => "n/a".to_owned(),
            };
            format!("{count} {}", k["remaining"])
        })
        .collect();
    let used = page.texts("#keys [data-field=used_of_total]");
    let remaining = page.texts("#keys [data-field=remaining]");
    let got: Vec<String> = used
        .iter()
        .zip(&remaining)
        .map(|(u, r)| format!("{u} {r}"))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        page.texts("[data-field=at_seq]"),
        [console.report_then["at_seq"].to_string()]
    );
    let now = console.get("/ui/license-ids/V3000003", Some(&rita.cookie));
    assert_ne!(
        now.texts("#keys [data-field=used_of_total]"),
        used,
        "the count moved since"
    );
    let bad = console.get("/ui/license-ids/V3000003?as_of=soon", Some(&rita.cookie));
    assert_eq!(bad.status, 400);
    assert!(bad.texts("[role=alert]")[0].contains("\"soon\" is not a moment"));
}

#[test]
fn a_request_filed_on_the_page_is_granted_by_another_operator_never_its_requester() {
    let console = Console::start();
    let oscar = console.sign_in("oscar");
    let filed = console.post(
        "/ui/requests/mak",
        Some(&oscar.cookie),
        &[
            ("csrf", &oscar.csrf),
            ("key_id", "1"),
            ("activations_needed", "7"),
            ("justification", "a new training room"),
        ],
    );
    assert_eq!(filed.status, 200, "{}", filed.body);
    let status = filed.texts("[role=status]").remove(0);
    let request_id = status
        .split_whitespace()
        .find(|w| w.starts_with("web-"))
        .unwrap()
        .to_owned();
    let own = console.post(
        &format!("/ui/requests/{request_id}/grant"),
        Some(&oscar.cookie),
        &[("csrf", &oscar.csrf), ("amount", "7")],
    );
    assert_eq!(own.status, 422);
    assert_eq!(own.attrs("[role=alert]", "data-code"), ["same_principal"]);
    let outcome = format!("tr[data-request-id={request_id}] [data-field=outcome]");
    assert_eq!(own.texts(&outcome), ["pending"]);

    let rita = console.sign_in("rita");
    let not_operator = console.post(
        &format!("/ui/requests/{request_id}/grant"),
        Some(&rita.cookie),
        &[("csrf", &rita.csrf), ("amount", "7")],
    );
    assert_eq!(not_operator.status, 403);

    let olga = console.sign_in("olga");
    let granted = console.post(
        &format!("/ui/requests/{request_id}/grant"),
        Some(&olga.cookie),
        &[("csrf", &olga.csrf), ("amount", "7")],
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.texts(&outcome), ["granted"]);
    let again = console.post(
        &format!("/ui/requests/{request_id}/deny"),
        Some(&olga.cookie),
        &[("csrf", &olga.csrf), ("reason", "late")],
    );
    assert_eq!(
        again.attrs("[role=alert]", "data-code"),
        ["request_already_decided"]
    );
    // The console answers with the API's status for the same code (one map for both).
    assert_eq!(again.status, 409, "{}", again.body);
    let malformed = console.post(
        "/ui/requests/mak",
        Some(&oscar.cookie),
        &[
            ("csrf", &oscar.csrf),
            ("key_id", "1"),
            ("activations_needed", "many"),
        ],
    );
    assert_eq!(malformed.attrs("[role=alert]", "data-code"), ["malformed"]);
}

#[test]
fn the_audit_log_filters_under_the_read_rule_and_verify_shows_the_head() {
    let console = Console::start();
    let olga = console.sign_in("olga");
    let all = console.get("/ui/audit", Some(&olga.cookie));
    let seqs: Vec<u64> = all
        .attrs("#audit tbody tr", "data-seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let head = console.head();
    assert_eq!(
        seqs,
        (head - 99..=head).rev().collect::<Vec<u64>>(),
        "a page of 100, newest first"
    );
    let older = format!("/ui/audit?before={}", head - 99);
    assert_eq!(
        all.attrs("a[rel=next]", "href"),
        std::slice::from_ref(&older)
    );
    let next = console.get(&older, Some(&olga.cookie));
    let next_seqs = next.attrs("#audit tbody tr", "data-seq");
    assert_eq!(
        next_seqs.first().map(String::as_str),
        Some((head - 100).to_string().as_str())
    );
    // The last page ends at seq 1, with no link further.
    assert_eq!(next_seqs.last().map(String::as_str), Some("1"));
    assert!(next.attrs("a[rel=next]", "href").is_empty());
    // Fields read as fields: names and values, not JSON.
    let fields = all.texts("#audit tbody tr:first-child td.fields .name");
    assert!(!fields.is_empty(), "{}", all.body);
    assert!(!all.body.contains("{&quot;"), "no raw JSON in the rows");
    // The type picker offers every event type.
    let types = all.texts("#f-type option");
    assert_eq!(
        types.len(),
        1 + keyledger_core::EventKind::ALL.len(),
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "keys_disclosed"));
    let disclosed = console.get(
        "/ui/audit?type=keys_disclosed&actor=rita",
        Some(&olga.cookie),
    );
    let types = disclosed.texts("#audit tbody td:nth-child(4)");
    assert!(!types.is_empty());
    assert!(types.iter().all(|t| t == "keys_disclosed"));
    assert!(disclosed
        .texts("#audit tbody td:nth-child(3)")
        .iter()
        .all(|a| a == "rita"));

    // vic reads only the history of V4000004.
    let vic = console.get("/ui/audit", Some(&console.sign_in("vic").cookie));
    let vics: Vec<u64> = vic
        .attrs("#audit tbody tr", "data-seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(!vics.is_empty() && vics.len() < 100);
    let of_license = console.get("/ui/audit?license_id=V4000004", Some(&olga.cookie));
    let olgas: Vec<u64> = of_license
        .attrs("#audit tbody tr", "data-seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(vics, olgas);
    let rita = console.sign_in("rita");
    let forbidden = console.get("/ui/audit?license_id=V4000004", Some(&rita.cookie));
    assert_eq!(forbidden.status, 403);
    let ritas = console.get("/ui/audit?license_id=V3000003", Some(&rita.cookie));
    let first = ritas.attrs("#audit tbody tr", "data-seq").remove(0);
    let proof = console.get(&format!("/ui/audit/proofs/{first}"), Some(&rita.cookie));
    assert_eq!(proof.status, 200);
    let proof: Value = serde_json::from_str(&proof.body).unwrap();
    assert_eq!(proof["seq"].to_string(), first);
    let vics_own = vics.last().unwrap();
    let refused = console.get(&format!("/ui/audit/proofs/{vics_own}"), Some(&rita.cookie));
    assert_eq!(refused.status, 403);

    let verify = console.get("/ui/verify", Some(&olga.cookie));
    assert_eq!(verify.status, 200);
    assert_eq!(
        verify.texts("[data-field=head_seq]"),
        [console.head().to_string()]
    );
    assert!(verify.texts("#checkpoint")[0].contains(&format!("\n{}\n", console.head())));
}

/// F3 (second hardening): the console percent-encodes every id it puts into a URL, so a
/// request id holding `/ ? # .. %` cannot aim an operator's Deny at another request.
#[test]
fn f3_ids_in_urls_are_percent_encoded_and_act_on_their_own_request_only() {
    let console = Console::start();
    let mut response = console
        .agent
        .get(format!(
            "{}/v1/license-ids/V1000001/report?format=json",
            console.url
        ))
        .header(
            "Authorization",
            format!("Bearer {}", console.tokens["oscar"]),
        )
        .call()
        .unwrap();
    let report: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let key = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == 1)
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    let last5 = key["key"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .to_owned();
    let hostile = "z/../RQ-victim/deny?#%2e%2e";
    for id in ["RQ-victim", hostile] {
        let body = serde_json::json!({"type": "request_mak_increase", "at": "2026-11-02T00:00:00Z",
            "request_id": id, "license_id": "V1000001", "product": key["product"],
            "key_last5": last5, "authorization_number": report["authorization_number"], "activations_needed": 5, "justification": "more rooms"});
        let mut filed = console
            .agent
            .post(format!("{}/v1/commands", console.url))
            .header(
                "Authorization",
                format!("Bearer {}", console.tokens["oscar"]),
            )
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        let text = filed.body_mut().read_to_string().unwrap();
        assert_eq!(filed.status().as_u16(), 200, "{text}");
    }
    let olga = console.sign_in("olga");
    let page = console.get("/ui/requests", Some(&olga.cookie));
    let actions = page.attrs("form[action$=\"/deny\"]", "action");
    let encoded = "/ui/requests/z%2F..%2FRQ-victim%2Fdeny%3F%23%252e%252e/deny";
    assert!(actions.iter().any(|a| a == encoded), "{actions:?}");
    assert!(!actions.iter().any(|a| a.contains("z/..")), "{actions:?}");
    let denied = console.post(
        encoded,
        Some(&olga.cookie),
        &[("csrf", &olga.csrf), ("reason", "no")],
    );
    assert_eq!(denied.status, 200, "{}", denied.body);
    let outcomes: Vec<(String, String)> = denied
        .html()
        .select(&scraper::Selector::parse("tr[data-request-id]").unwrap())
        .map(|row| {
            let outcome = row
                .select(&scraper::Selector::parse("[data-field=outcome]").unwrap())
                .map(|c| c.text().collect::<String>().trim().to_owned())
                .next()
                .unwrap_or_default();
            (
                row.value().attr("data-request-id").unwrap().to_owned(),
                outcome,
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(hostile.to_owned(), "denied".to_owned())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("RQ-victim".to_owned(), "pending".to_owned())),
        "{outcomes:?}"
    );
}

/// One read rule behind every read surface (R1, R3). Each kind of principal — an operator,
/// a holder of a role on the license ID, a holder of a role on another one only, and one
/// with no role — asks every surface that reads one license ID's data about V3000003:
/// report, key export, log, event stream, inclusion proof, usage, a key's machines, the
/// console's details page, audit log and proof page. Every surface answers 200 exactly
/// when `Projections::may_read` does, else 403; the whole log is the operators' alone, and
/// alerts name only license IDs the asker may read.
#[test]
fn every_read_surface_asks_the_same_read_rule() {
    let console = Console::start();
    let license = "V3000003";
    let (_, report) = console.api(
        &format!("/v1/license-ids/{license}/report?format=json"),
        "olga",
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    let key_id = report["keys"][0]["key_id"]
        .as_u64()
        .expect("V3000003 has keys");
    let (_, history) = console.api(&format!("/v1/log?license_id={license}&limit=1"), "olga");
    let history: Value = serde_json::from_str(&history).unwrap();
    let seq = history["events"][0]["seq"]
        .as_u64()
        .expect("V3000003 has a history");
    // Each kind of principal and the license IDs it may read (`None`: all, an operator).
    let kinds: [(&str, Option<&[&str]>); 4] = [
        ("olga", None),
        ("rita", Some(&["V3000003"])),
        ("vic", Some(&["V4000004"])),
        ("nora", Some(&[])),
    ];
    for (who, readable) in kinds {
        let operator = readable.is_none();
        let may_read = readable.is_none_or(|ids| ids.contains(&license));
        let expected = if may_read { 200 } else { 403 };
        let api_surfaces = [
            format!("/v1/license-ids/{license}/report?format=json"),
            format!("/v1/keys?license_id={license}&format=json"),
            format!("/v1/log?license_id={license}"),
            format!("/v1/events/stream?from=1&license_id={license}"),
            format!("/v1/proofs/inclusion?seq={seq}"),
            format!("/v1/usage?license_id={license}&format=json"),
            format!("/v1/keys/{key_id}/machines?format=json"),
            format!("/v1/statements/{license}"),
        ];
        for path in &api_surfaces {
            let (status, body) = console.api(path, who);
            assert_eq!(status, expected, "{who} GET {path}: {body}");
        }
        let (status, body) = console.api("/v1/log", who);
        assert_eq!(
            status,
            if operator { 200 } else { 403 },
            "{who} GET /v1/log: {body}"
        );
        let (status, alerts) = console.api("/v1/alerts?format=json", who);
        assert_eq!(status, 200, "{who}: {alerts}");
        let alerts: Value = serde_json::from_str(&alerts).unwrap();
        for alert in alerts["alerts"].as_array().unwrap() {
            let named = alert["license_id"].as_str().unwrap_or("");
            let theirs = readable.is_none_or(|ids| ids.contains(&named));
            assert!(theirs, "{who} was shown an alert on {named}: {alert}");
        }

        let session = console.sign_in(who);
        let pages = [
            format!("/ui/license-ids/{license}"),
            format!("/ui/audit?license_id={license}"),
            format!("/ui/audit/proofs/{seq}"),
            format!("/ui/license-ids/{license}/statement"),
        ];
        for path in &pages {
            let page = console.get(path, Some(&session.cookie));
            assert_eq!(page.status, expected, "{who} GET {path}: {}", page.body);
        }
        if may_read {
            // The details page offers the statement, and it is this license ID's.
            let details = console.get(&pages[0], Some(&session.cookie));
            let link = details.attrs("#statement", "href");
            assert_eq!(link, [pages[3].clone()], "{who}");
            let download = console.get(&pages[3], Some(&session.cookie));
            let statement: Value = serde_json::from_str(&download.body).unwrap();
            assert_eq!(statement["license_id"], license, "{who}");
        }
        // The console's audit log without a filter: the whole log to an operator; anyone
        // else sees the first license ID they may read (the API's rule on that filter), or
        // is refused like the API when there is none.
        let page = console.get("/ui/audit", Some(&session.cookie));
        let reads_some = readable.is_none_or(|ids| !ids.is_empty());
        assert_eq!(
            page.status,
            if reads_some { 200 } else { 403 },
            "{who} GET /ui/audit"
        );
    }
}

/// The Forecast page says what the CLI says of each key: `exhausted` when nothing is left,
/// `idle: no recent activations` when no date can be forecast (never a date, never blank).
#[test]
fn the_forecast_page_says_exhausted_and_idle_as_the_cli_does() {
    let console = Console::start();
    let cli = &console.forecast_then;
    let session = console.sign_in("rita");
    let page = console.get("/ui/forecast?license_id=V3000003", Some(&session.cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    let cells = page.texts("#forecast tbody td");
    let rows: Vec<&[String]> = cells.chunks(7).collect();
    assert!(!rows.is_empty(), "{}", page.body);
    for row in rows {
        let (key, outlook) = (&row[0], &row[6]);
        let line = cli
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("the CLI forecasts key {key}:\n{cli}"));
        let same = if line.ends_with("idle: no recent activations") {
            outlook == "idle: no recent activations"
        } else {
            // `exhausted`, or the moment, which the console shows as its date.
            let last = line.split_whitespace().last().unwrap_or("");
            !outlook.is_empty() && last.starts_with(outlook.as_str())
        };
        assert!(
            same,
            "key {key}: the console says {outlook:?}, the CLI {line:?}"
        );
    }
}

/// One figure a key: "Activations or seats" on Products and services and on Product key
/// details agree for every key, KMS host and OSA keys included (hosts and seats, not the
/// machines a MAK counts), and the pages say how each kind counts.
#[test]
fn a_key_shows_the_same_count_on_every_page() {
    let console = Console::start();
    let rita = console.sign_in("rita");
    let products = console.get("/ui/products", Some(&rita.cookie));
    let details = console.get("/ui/license-ids/V3000003", Some(&rita.cookie));
    let counts = |page: &Page| -> std::collections::BTreeMap<String, String> {
        let ids = page.attrs("tr[data-key-id]", "data-key-id");
        let cells = page.texts("tr[data-key-id] [data-field=used_of_total]");
        assert_eq!(ids.len(), cells.len(), "{}", page.body);
        ids.into_iter().zip(cells).collect()
    };
    let (listed, detailed) = (counts(&products), counts(&details));
    assert!(detailed.len() >= 5, "V3000003's keys: {detailed:?}");
    for (key, count) in &detailed {
        assert_eq!(
            listed.get(key),
            Some(count),
            "key {key}: details {count}, products {listed:?}"
        );
    }
    for page in [&products, &details] {
        assert!(page
            .texts(".note")
            .iter()
            .any(|n| n.contains("KMS hosts activated")));
    }
}
