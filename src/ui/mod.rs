//! The web UI under `/ui/` on the `listen` port, served beside the API and
//! only when `api_token` is set: orders and each order's timeline, sources
//! with "poll now", sinks with pause and resume, dead letters with replay.
//! Pages are rendered on the server from what the API's own handlers answer
//! (`crate::api::read`, `crate::api::write`): the UI has no query of its own.
//!
//! - `session`: logins kept in memory, each with its CSRF token
//! - `login`: the login form (the API's token, compared in constant time),
//!   logout, and the checks every page and every form goes through
//! - `pages`: the pages
//! - `actions`: the forms' POSTs
//! - `view`: the templates and the stylesheet

mod actions;
mod login;
mod pages;
mod session;
mod view;

use crate::api::LiveState;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::Value;
use std::sync::Arc;

pub struct UiState {
    api: LiveState,
    sessions: session::Sessions,
    templates: Environment<'static>,
}

/// No script, no frame, nothing from another origin; forms post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes under `/ui/`.
pub fn router(api: LiveState) -> Router {
    let state = Arc::new(UiState {
        api,
        sessions: session::Sessions::default(),
        templates: view::environment(),
    });
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/orders") }))
        .route("/ui/", get(|| async { redirect("/ui/orders") }))
        .route("/ui/login", get(login::form).post(login::log_in))
        .route("/ui/logout", post(login::log_out))
        .route("/ui/orders", get(pages::orders))
        .route("/ui/orders/{source}/{id}", get(pages::order))
        .route("/ui/sources", get(pages::sources))
        .route("/ui/sources/{name}/poll", post(actions::poll_now))
        .route("/ui/sinks", get(pages::sinks))
        .route("/ui/sinks/{name}/pause", post(actions::pause))
        .route("/ui/sinks/{name}/resume", post(actions::resume))
        .route("/ui/dead-letters", get(pages::dead_letters))
        .route("/ui/dead-letters/replay", post(actions::replay))
        .route("/ui/style.css", get(stylesheet))
        .route("/ui/{*rest}", get(pages::not_found))
        .layer(axum::middleware::map_response(guard_headers))
        .with_state(state)
}

/// On every answer under `/ui/`: the content security policy, no MIME
/// sniffing, and no caching of pages (they hold order data).
async fn guard_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        view::STYLESHEET,
    )
        .into_response()
}

/// A 303 to `to` (after a form, so a reload does not post it again).
fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

impl UiState {
    /// The page `template` with `context`, answered with `status`.
    fn render(&self, status: StatusCode, template: &str, context: Value) -> Response {
        let page = self
            .templates
            .get_template(template)
            .and_then(|t| t.render(&context));
        match page {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "a UI page could not be rendered");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered (the log says why)",
                )
                    .into_response()
            }
        }
    }
}
