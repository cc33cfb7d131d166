//! Signing in: a bearer token (`keyledger token create`) starts a session (see
//! [`super::sessions`]) whose random id is an HttpOnly, SameSite=Strict cookie on `/ui`;
//! every POST carries a CSRF token derived from that cookie under a key only this server
//! process holds.
//!
//! The CSRF token is `BLAKE3-keyed(server key, cookie value)`: nothing to store, different
//! for every session, and useless to a page on another origin (it cannot read the cookie,
//! and SameSite=Strict keeps the cookie off its requests in the first place). Before
//! signing in, a random pre-session cookie plays the cookie's part, so the sign-in form is
//! protected too. A restart draws a new key: open forms then ask to be reloaded.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cookie::{Cookie, SameSite};
use keyledger_core::Principal;
use rand::RngCore;

use super::page::{error_page, render, Chrome};
use super::sessions::{Credential, Sessions, SESSION_LIFETIME};
use crate::serve::{auth, App};

/// The session cookie: a session's random id, never readable by scripts.
pub const SESSION_COOKIE: &str = "keyledger_session";
/// The cookie a sign-in form's CSRF token is bound to.
pub const PRE_SESSION_COOKIE: &str = "keyledger_presession";
/// The form field every POST carries.
pub const CSRF_FIELD: &str = "csrf";

/// The key CSRF tokens are derived under, drawn when the server starts.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        CsrfKey(key)
    }

    fn token(&self, cookie_value: &str) -> blake3::Hash {
        blake3::keyed_hash(&self.0, cookie_value.as_bytes())
    }

    /// Whether `offered` is the token of `cookie_value` (compared in constant time).
    fn accepts(&self, cookie_value: &str, offered: Option<&str>) -> bool {
        offered
            .and_then(|hex| blake3::Hash::from_hex(hex).ok())
            .is_some_and(|offered| offered == self.token(cookie_value))
    }
}

/// The console's own state, drawn when its router is made (so at each start): the key CSRF
/// tokens are derived under and the signed-in sessions. The router carries it to every
/// handler as an extension; the service's shared state knows nothing of it.
#[derive(Debug)]
pub struct Console {
    key: CsrfKey,
    pub(super) sessions: Sessions,
    /// The service speaks TLS: cookies are `Secure`.
    pub(super) secure: bool,
}

impl Console {
    pub fn new(secure: bool) -> Console {
        Console {
            key: CsrfKey::random(),
            sessions: Sessions::default(),
            secure,
        }
    }

    /// The state the console's router installed on a request.
    fn of(extensions: &Extensions) -> Arc<Console> {
        extensions
            .get::<Arc<Console>>()
            .cloned()
            .expect("console::router installs the console's state on every route")
    }
}

/// The signed-in principal of a console request. A page asked for without a session is
/// answered with a redirect to the sign-in page.
#[derive(Debug)]
pub struct Viewer {
    pub principal: Principal,
    pub chrome: Chrome,
}

pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<App> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Viewer, Response> {
        let Some(session) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/ui/sign-in").into_response());
        };
        let console = Console::of(&parts.extensions);
        let Some(credential) = console.sessions.credential(&session) else {
            // Signed out, expired, or from before a restart: sign in again.
            let mut response = Redirect::to("/ui/sign-in").into_response();
            set_cookie(&mut response, removal(SESSION_COOKIE, console.secure));
            return Err(response);
        };
        let token = match credential {
            Credential::Token(token) => token,
            Credential::SignOn(principal) => return Ok(viewer(app, &console, &session, principal)),
        };
        match auth::principal_of_token(&app.store, &token) {
            Ok(principal) => Ok(viewer(app, &console, &session, principal)),
            Err(auth::AuthError::Unreadable(why)) => Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Try again",
                &format!("The token table cannot be read now: {why}"),
            )),
            // A revoked token: the session and its cookie go, and the person signs in again.
            Err(_) => {
                console.sessions.end(&session);
                let mut response = Redirect::to("/ui/sign-in").into_response();
                set_cookie(&mut response, removal(SESSION_COOKIE, console.secure));
                Err(response)
            }
        }
    }
}

/// The viewer of a live session of `principal`.
fn viewer(app: &App, console: &Console, session: &str, principal: Principal) -> Viewer {
    tracing::Span::current().record("principal", principal.as_str());
    let chrome = Chrome {
        principal: principal.to_string(),
        csrf: console.key.token(session).to_hex().to_string(),
        operator: app.is_operator(&principal),
    };
    Viewer { principal, chrome }
}

/// A POSTed form from a signed-in principal whose CSRF token checks out. Fields keep their
/// order and repeats (check boxes send one field per box).
#[derive(Debug)]
pub struct Posted {
    pub viewer: Viewer,
    pub fields: Vec<(String, String)>,
    /// The console's script asked for plain text (`Accept: text/plain`), not a page.
    pub wants_text: bool,
}

impl Posted {
    pub fn field(&self, name: &str) -> Option<&str> {
        field(&self.fields, name)
    }

    /// Every value of a repeated field, in the order sent.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl FromRequest<App> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request<Body>, app: &App) -> Result<Posted, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, app).await?;
        let session = cookie_value(&parts.headers, SESSION_COOKIE).unwrap_or_default();
        let console = Console::of(&parts.extensions);
        let wants_text = parts
            .headers
            .get(header::ACCEPT)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        let request = Request::from_parts(parts, body);
        let fields = read_form(request, app, Some(&viewer.chrome)).await?;
        if !console.key.accepts(&session, field(&fields, CSRF_FIELD)) {
            return Err(csrf_refused(Some(&viewer.chrome)));
        }
        Ok(Posted {
            viewer,
            fields,
            wants_text,
        })
    }
}

async fn read_form(
    request: Request<Body>,
    app: &App,
    chrome: Option<&Chrome>,
) -> Result<Vec<(String, String)>, Response> {
    match Form::<Vec<(String, String)>>::from_request(request, app).await {
        Ok(Form(fields)) => Ok(fields),
        Err(rejection) => Err(error_page(
            StatusCode::BAD_REQUEST,
            chrome,
            "The form could not be read",
            &format!(
                "Send it as application/x-www-form-urlencoded: {}",
                rejection.body_text()
            ),
        )),
    }
}

fn csrf_refused(chrome: Option<&Chrome>) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        chrome,
        "The form has expired",
        "This form's CSRF token is missing or wrong (it may be from before the server restarted). \
         Reload the page and try again; nothing was changed.",
    )
}

pub(super) fn set_cookie(response: &mut Response, cookie: Cookie<'_>) {
    let value = HeaderValue::from_str(&cookie.to_string()).expect("cookie values are ASCII");
    response.headers_mut().append(header::SET_COOKIE, value);
}

/// A console cookie: HttpOnly, SameSite=Strict, on `/ui`, and `Secure` when the service
/// speaks TLS (the browser then never sends it in clear text).
pub(super) fn console_cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

pub(super) fn removal(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut cookie = console_cookie(name, String::new(), secure);
    cookie.make_removal();
    cookie
}

/// `GET /ui`: the contracts when signed in, else the sign-in page.
pub async fn home(headers: HeaderMap) -> Response {
    match cookie_value(&headers, SESSION_COOKIE) {
        Some(_) => Redirect::to("/ui/contracts").into_response(),
        None => Redirect::to("/ui/sign-in").into_response(),
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    refused: Option<&'a str>,
    /// The identity provider's issuer, when single sign-on is set up.
    sign_on: Option<&'a str>,
}

/// `GET /ui/sign-in`: the form, bound to a pre-session cookie (drawn now if absent), and
/// single sign-on's button when it is set up.
pub async fn sign_in_page(
    State(app): State<App>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    sign_in_form(&app, &console, &headers, StatusCode::OK, None)
}

fn sign_in_form(
    app: &App,
    console: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    refused: Option<&str>,
) -> Response {
    let (pre, fresh) = match cookie_value(headers, PRE_SESSION_COOKIE) {
        Some(pre) => (pre, false),
        None => {
            let mut bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            (hex::encode(bytes), true)
        }
    };
    let csrf = console.key.token(&pre).to_hex().to_string();
    let mut response = (
        status,
        render(&SignInPage {
            csrf: &csrf,
            refused,
            sign_on: app.oidc.as_ref().map(|oidc| oidc.issuer()),
        }),
    )
        .into_response();
    if fresh {
        set_cookie(
            &mut response,
            console_cookie(PRE_SESSION_COOKIE, pre, console.secure),
        );
    }
    response
}

/// `POST /ui/sign-in` (token, csrf): a known token starts a session.
pub async fn sign_in(State(app): State<App>, request: Request<Body>) -> Response {
    let headers = request.headers().clone();
    let console = Console::of(request.extensions());
    let fields = match read_form(request, &app, None).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let pre = cookie_value(&headers, PRE_SESSION_COOKIE).unwrap_or_default();
    if pre.is_empty() || !console.key.accepts(&pre, field(&fields, CSRF_FIELD)) {
        return csrf_refused(None);
    }
    let token = field(&fields, "token").unwrap_or("").trim();
    if token.is_empty() {
        let why = "Enter the token that `keyledger token create` printed.";
        return sign_in_form(&app, &console, &headers, StatusCode::BAD_REQUEST, Some(why));
    }
    match auth::principal_of_token(&app.store, token) {
        Ok(_) => {
            let credential = Credential::Token(token.to_owned());
            let session = console.sessions.start(credential, SESSION_LIFETIME);
            let mut response = Redirect::to("/ui/contracts").into_response();
            set_cookie(
                &mut response,
                console_cookie(SESSION_COOKIE, session, console.secure),
            );
            set_cookie(&mut response, removal(PRE_SESSION_COOKIE, console.secure));
            response
        }
        Err(auth::AuthError::Unreadable(why)) => {
            let why = format!("The token table cannot be read now: {why}");
            sign_in_form(
                &app,
                &console,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&why),
            )
        }
        Err(err) => {
            let why = format!("Not signed in: {}.", err.message());
            sign_in_form(
                &app,
                &console,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some(&why),
            )
        }
    }
}

/// `POST /ui/sign-out`: the session ends and its cookie is removed; a copy of the cookie is
/// worth nothing from now on. The token itself stays valid (`keyledger token revoke` ends
/// it): it may be an API credential in use elsewhere.
pub async fn sign_out(
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    _posted: Posted,
) -> Response {
    if let Some(session) = cookie_value(&headers, SESSION_COOKIE) {
        console.sessions.end(&session);
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    set_cookie(&mut response, removal(SESSION_COOKIE, console.secure));
    response
}
