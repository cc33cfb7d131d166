//! Single sign-on in the console (`serve --oidc-issuer`): `GET /ui/oidc/start` sends the
//! browser to the provider, `GET /ui/oidc/callback` takes it back and starts a session of
//! the principal the ID token names, for no longer than the token is valid.
//!
//! The `state` is bound to the browser that started the sign-in by a cookie of its own
//! (SameSite=Lax: the provider's redirect back is a cross-site navigation, which a Strict
//! cookie would not be sent on), and is good for one callback. The session cookie is set by
//! the callback's answer, a page that moves on to the console by itself: a same-site
//! navigation, so the Strict session cookie is sent with it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use cookie::{Cookie, SameSite};

use super::page::render;
use super::session::{console_cookie, cookie_value, set_cookie, Console, SESSION_COOKIE};
use super::sessions::Credential;
use crate::oidc::{Oidc, OidcError};
use crate::serve::App;

/// The cookie that binds a started sign-in's `state` to the browser.
const STATE_COOKIE: &str = "kl_oidc_state";

#[derive(Template)]
#[template(path = "sign_on.html")]
struct SignOnPage<'a> {
    title: &'a str,
    principal: Option<&'a str>,
    message: &'a str,
}

fn refused(status: StatusCode, message: &str) -> Response {
    let page = SignOnPage {
        title: "Single sign-on refused",
        principal: None,
        message,
    };
    (status, render(&page)).into_response()
}

fn provider(app: &App) -> Result<&Arc<Oidc>, Response> {
    app.oidc.as_ref().ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "Single sign-on is not set up on this service (serve --oidc-issuer).",
        )
    })
}

fn status_of(err: &OidcError) -> StatusCode {
    match err {
        OidcError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
    }
}

/// `GET /ui/oidc/start`: to the provider's sign-in, with this browser's state cookie.
pub async fn start(
    State(app): State<App>,
    Extension(console): Extension<Arc<Console>>,
) -> Response {
    let oidc = match provider(&app) {
        Ok(oidc) => oidc,
        Err(response) => return response,
    };
    match oidc.start_sign_in().await {
        Ok((url, state)) => {
            let mut response = Redirect::to(&url).into_response();
            let cookie = Cookie::build((STATE_COOKIE, state))
                .path("/ui/oidc")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(console.secure)
                .max_age(cookie::time::Duration::minutes(10))
                .build();
            set_cookie(&mut response, cookie);
            response
        }
        Err(err) => refused(status_of(&err), &err.to_string()),
    }
}

/// What the provider sends back: a code and the state, or an error.
#[derive(Debug, serde::Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /ui/oidc/callback`: the code exchanged, the ID token checked, a session started.
pub async fn callback(
    State(app): State<App>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Query(back): Query<Callback>,
) -> Response {
    let oidc = match provider(&app) {
        Ok(oidc) => oidc,
        Err(response) => return response,
    };
    if let Some(error) = &back.error {
        let said = back
            .error_description
            .as_deref()
            .unwrap_or("no description");
        let why = format!("The identity provider did not sign you in: {error} ({said}).");
        return refused(StatusCode::UNAUTHORIZED, &why);
    }
    let (Some(code), Some(state)) = (&back.code, &back.state) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The provider's answer has no code or no state.",
        );
    };
    // A state this browser did not start (a link from someone else's sign-in) is refused
    // before the code is spent.
    if cookie_value(&headers, STATE_COOKIE).as_deref() != Some(state.as_str()) {
        let why =
            "This sign-in was not started in this browser, or was used already. Sign in again.";
        return refused(StatusCode::BAD_REQUEST, why);
    }
    let signed_in = match oidc.finish_sign_in(state, code).await {
        Ok(signed_in) => signed_in,
        Err(err) => {
            tracing::warn!(event = "sign_on_refused", why = %err, "keyledger: single sign-on refused: {err}");
            return refused(status_of(&err), &format!("Not signed in: {err}."));
        }
    };
    let lifetime = signed_in
        .until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let principal = signed_in.principal;
    let session = console
        .sessions
        .start(Credential::SignOn(principal.clone()), lifetime);
    tracing::Span::current().record("principal", principal.as_str());
    let page = SignOnPage {
        title: "Signed in",
        principal: Some(principal.as_str()),
        message: "",
    };
    let mut response = render(&page).into_response();
    set_cookie(
        &mut response,
        console_cookie(SESSION_COOKIE, session, console.secure),
    );
    let mut gone = Cookie::build((STATE_COOKIE, "")).path("/ui/oidc").build();
    gone.make_removal();
    set_cookie(&mut response, gone);
    response
}
