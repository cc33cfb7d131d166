//! What every console page shares: the chrome around a signed-in page's content, a
//! template as an HTML answer, and the page that says what went wrong.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// What every signed-in page shows around its content.
#[derive(Clone, Debug)]
pub struct Chrome {
    pub principal: String,
    pub csrf: String,
    pub operator: bool,
}

/// A page that says what went wrong, with its status; `signed_in` keeps the navigation.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Option<&'a Chrome>,
    title: &'a str,
    message: &'a str,
}

pub(super) fn error_page(
    status: StatusCode,
    chrome: Option<&Chrome>,
    title: &str,
    message: &str,
) -> Response {
    let page = ErrorPage {
        chrome,
        title,
        message,
    };
    (status, render(&page)).into_response()
}

/// 403 with the rule's reason, to a signed-in principal.
pub(super) fn forbidden_page(chrome: &Chrome, why: &str) -> Response {
    error_page(StatusCode::FORBIDDEN, Some(chrome), "Forbidden", why)
}

/// A template as an HTML answer; a template that cannot render is a 500 naming why.
pub(super) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be rendered: {err}"),
        )
            .into_response(),
    }
}
