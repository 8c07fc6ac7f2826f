//! Logging in with the API's token, logging out, and the two gates: a page
//! needs a live session (else the login form), a POST needs the session and
//! its CSRF token (else 403).
//!
//! The session cookie is HttpOnly and SameSite=Strict, scoped to `/ui`. It
//! is not marked Secure because `listen` speaks plain HTTP (put TLS in
//! front of it to reach it from another machine). The login form carries
//! a token of its own, matched against a short-lived cookie set with the
//! form, so no other site can log a browser in under its token either.

use super::session::{SESSION_TTL, Session};
use super::{UiState, redirect};
use crate::api::auth::matches;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const SESSION_COOKIE: &str = "orderwatch_session";
const LOGIN_COOKIE: &str = "orderwatch_login";

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
}

/// Any form of the UI: its CSRF token, and the fields of the action.
#[derive(Deserialize, Default)]
pub struct ActionForm {
    pub csrf: Option<String>,
    pub id: Option<String>,
    pub all: Option<String>,
}

pub async fn form(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).is_some() {
        return redirect("/ui/orders");
    }
    login_page(&state, StatusCode::OK, None)
}

pub async fn log_in(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return forbidden(&state);
    };
    let expected = cookie(&headers, LOGIN_COOKIE);
    let form_ok = match (expected.as_deref(), form.csrf.as_deref()) {
        (Some(cookie), Some(given)) => matches(given, cookie),
        _ => false,
    };
    if !form_ok {
        return forbidden(&state);
    }
    let token_ok = form
        .token
        .as_deref()
        .is_some_and(|t| matches(t.trim(), state.api.current().token.expose()));
    if !token_ok {
        tracing::info!("a UI login was refused (wrong token)");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That token was refused."),
        );
    }
    let (id, _) = state.sessions.open();
    let mut answer = redirect("/ui/orders");
    let headers = answer.headers_mut();
    append_cookie(
        headers,
        &format!(
            "{SESSION_COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
    );
    append_cookie(
        headers,
        &format!("{LOGIN_COOKIE}=; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    tracing::info!("a UI session was opened");
    answer
}

pub async fn log_out(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let Some((id, _)) = checked_post(&state, &headers, &form) else {
        return forbidden(&state);
    };
    state.sessions.close(&id);
    let mut answer = redirect("/ui/login");
    append_cookie(
        answer.headers_mut(),
        &format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    answer
}

/// The login form, with a fresh form token in the page and its cookie.
fn login_page(state: &UiState, status: StatusCode, refused: Option<&str>) -> Response {
    let token = super::session::random_token();
    let mut page = state.render(
        status,
        "login.html",
        json!({ "csrf": token, "refused": refused }),
    );
    append_cookie(
        page.headers_mut(),
        &format!("{LOGIN_COOKIE}={token}; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age=900"),
    );
    page
}

/// The session of a page's request (its id and the session); without one,
/// the page answers [`to_login`].
pub fn signed_in(state: &UiState, headers: &HeaderMap) -> Option<(String, Session)> {
    cookie(headers, SESSION_COOKIE).and_then(|id| state.sessions.get(&id).map(|s| (id, s)))
}

pub fn to_login() -> Response {
    redirect("/ui/login")
}

/// The session of a form's POST, which must carry that session's CSRF
/// token; anything else gets [`forbidden`] and nothing is done.
pub fn checked_post(
    state: &UiState,
    headers: &HeaderMap,
    form: &Result<Form<ActionForm>, FormRejection>,
) -> Option<(String, Session)> {
    let session =
        cookie(headers, SESSION_COOKIE).and_then(|id| state.sessions.get(&id).map(|s| (id, s)));
    let given = form.as_ref().ok().and_then(|f| f.csrf.as_deref());
    match (session, given) {
        (Some((id, session)), Some(given)) if matches(given, &session.csrf) => Some((id, session)),
        _ => {
            tracing::info!("a UI form was refused (no session or no CSRF token)");
            None
        }
    }
}

pub fn forbidden(state: &UiState) -> Response {
    state.render(
        StatusCode::FORBIDDEN,
        "error.html",
        json!({
            "status": 403,
            "message": "This form was refused: it did not come from a page of this session. Reload the page and try again.",
        }),
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn append_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}
