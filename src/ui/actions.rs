//! What the forms do, each through the API's own write handler after the
//! session and CSRF check; then back to the page, with a notice saying
//! what happened.

use super::login::{ActionForm, checked_post, forbidden};
use super::{UiState, redirect};
use crate::api::write;
use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

type Posted = Result<Form<ActionForm>, FormRejection>;

pub async fn poll_now(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Posted,
) -> Response {
    let Some((id, _)) = checked_post(&state, &headers, &form) else {
        return forbidden(&state);
    };
    let notice = match write::poll_now(State(state.api.current()), Path(name.clone())).await {
        Ok(_) => format!("A poll of {name} was requested."),
        Err(refused) => refused.message().to_owned(),
    };
    state.sessions.tell(&id, notice);
    redirect("/ui/sources")
}

pub async fn pause(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Posted,
) -> Response {
    set_paused(&state, &headers, name, &form, true).await
}

pub async fn resume(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Posted,
) -> Response {
    set_paused(&state, &headers, name, &form, false).await
}

async fn set_paused(
    state: &Arc<UiState>,
    headers: &HeaderMap,
    name: String,
    form: &Posted,
    paused: bool,
) -> Response {
    let Some((id, _)) = checked_post(state, headers, form) else {
        return forbidden(state);
    };
    let api = State(state.api.current());
    let done = if paused {
        write::pause(api, Path(name.clone())).await
    } else {
        write::resume(api, Path(name.clone())).await
    };
    let notice = match (done, paused) {
        (Ok(_), true) => format!("{name} is paused: its deliveries are held in the outbox."),
        (Ok(_), false) => format!("{name} is resumed."),
        (Err(refused), _) => refused.message().to_owned(),
    };
    state.sessions.tell(&id, notice);
    redirect("/ui/sinks")
}

/// One dead letter (`id`, as `SINK:SEQ`) or all of them (`all`).
pub async fn replay(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let Some((id, _)) = checked_post(&state, &headers, &form) else {
        return forbidden(&state);
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let request = match (form.all.is_some(), form.id) {
        (true, _) => json!({ "all": true }),
        (false, Some(letter)) => json!({ "ids": [letter] }),
        (false, None) => json!({}),
    };
    let notice = match serde_json::from_value(request) {
        Ok(request) => match write::replay(State(state.api.current()), Ok(Json(request))).await {
            Ok(Json(answer)) => match answer["replayed"].as_u64() {
                Some(1) => "1 dead letter was put back in the outbox.".to_owned(),
                Some(n) => format!("{n} dead letters were put back in the outbox."),
                None => "The replay was done.".to_owned(),
            },
            Err(refused) => refused.message().to_owned(),
        },
        Err(_) => "Nothing to replay was named.".to_owned(),
    };
    state.sessions.tell(&id, notice);
    redirect("/ui/dead-letters")
}
