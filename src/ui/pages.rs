//! The pages: each asks the API's handler for the same thing the JSON API
//! answers and renders it. A refusal of the handler (an unknown source, a
//! cursor this UI did not give) is shown with the handler's own words.

use super::UiState;
use super::login::{signed_in, to_login};
use crate::api::{ApiError, read};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Orders a page shows: enough to scan, few enough to read.
const ORDERS_PER_PAGE: &str = "50";

type Params = Query<BTreeMap<String, String>>;

pub async fn orders(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let Some((id, session)) = signed_in(&state, &headers) else {
        return to_login();
    };
    let mut asked = asked(&params, &["q", "source", "status", "closed", "cursor"]);
    asked.insert("limit".into(), ORDERS_PER_PAGE.into());
    // The latest change first, across pages: the store keeps the orders
    // by change time, and the cursor walks that order.
    asked.insert("sort".into(), "changed".into());
    let query = serde_json::from_value(Value::Object(asked.clone()));
    let answer = match query {
        Ok(query) => read::orders(State(state.api.current()), Query(query)).await,
        Err(_) => return state.error(&id, StatusCode::BAD_REQUEST, "unreadable filter"),
    };
    let page = match answer {
        Ok(Json(page)) => page,
        Err(refused) => return state.refused(&id, refused),
    };
    let next = page["next_cursor"].as_str().map(|cursor| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for key in ["q", "source", "status", "closed"] {
            if let Some(v) = asked.get(key).and_then(Value::as_str) {
                link.append_pair(key, v);
            }
        }
        link.append_pair("cursor", cursor);
        format!("/ui/orders?{}", link.finish())
    });
    let api = state.api.current();
    let sources: Vec<&str> = api.config.sources.iter().map(|s| s.name.as_str()).collect();
    state.page(
        &id,
        &session,
        "orders.html",
        json!({
            "nav": "orders",
            "orders": page["orders"],
            "next": next,
            "paged": asked.contains_key("cursor"),
            "filter": asked,
            "sources": sources,
        }),
    )
}

pub async fn order(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Path((source, order_id)): Path<(String, String)>,
) -> Response {
    let Some((id, session)) = signed_in(&state, &headers) else {
        return to_login();
    };
    let mut order = match read::order(State(state.api.current()), Path((source, order_id))).await {
        Ok(Json(order)) => order,
        Err(refused) => return state.refused(&id, refused),
    };
    let document = serde_json::to_string_pretty(&order["order"]).unwrap_or_default();
    // Newest first, the way one reads a story being told.
    let mut timeline: Vec<Value> = order["timeline"].as_array().cloned().unwrap_or_default();
    timeline.reverse();
    for entry in &mut timeline {
        if let Some(changes) = entry["event"]["data"]["changes"].as_array_mut() {
            for change in changes {
                for side in ["from", "to"] {
                    let shown = shown(&change[side]);
                    change[side] = Value::from(shown);
                }
            }
        }
    }
    if let Some(o) = order.as_object_mut() {
        o.remove("timeline");
        o.remove("order");
    }
    state.page(
        &id,
        &session,
        "order.html",
        json!({
            "nav": "orders",
            "summary": order,
            "document": document,
            "timeline": timeline,
        }),
    )
}

/// The parameters of `keys` the page was asked with, as the API's query
/// reads them.
fn asked(params: &BTreeMap<String, String>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|&k| params.get(k).map(|v| (k.to_owned(), Value::from(v.trim()))))
        .collect()
}

/// A changed value as the page shows it: text as itself, anything else as
/// JSON, an absent value as a dash.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn sources(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let Some((id, session)) = signed_in(&state, &headers) else {
        return to_login();
    };
    let Json(answer) = read::sources(State(state.api.current())).await;
    state.page(
        &id,
        &session,
        "sources.html",
        json!({ "nav": "sources", "sources": answer["sources"] }),
    )
}

pub async fn sinks(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let Some((id, session)) = signed_in(&state, &headers) else {
        return to_login();
    };
    match read::outbox(State(state.api.current())).await {
        Ok(Json(answer)) => state.page(
            &id,
            &session,
            "sinks.html",
            json!({ "nav": "sinks", "sinks": answer["sinks"] }),
        ),
        Err(refused) => state.refused(&id, refused),
    }
}

pub async fn dead_letters(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let Some((id, session)) = signed_in(&state, &headers) else {
        return to_login();
    };
    let asked = asked(&params, &["sink", "cursor"]);
    let answer = match serde_json::from_value(Value::Object(asked.clone())) {
        Ok(query) => read::dead_letters(State(state.api.current()), Query(query)).await,
        Err(_) => return state.error(&id, StatusCode::BAD_REQUEST, "unreadable filter"),
    };
    let page = match answer {
        Ok(Json(page)) => page,
        Err(refused) => return state.refused(&id, refused),
    };
    let next = page["next_cursor"].as_str().map(|cursor| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        if let Some(sink) = asked.get("sink").and_then(Value::as_str) {
            link.append_pair("sink", sink);
        }
        link.append_pair("cursor", cursor);
        format!("/ui/dead-letters?{}", link.finish())
    });
    state.page(
        &id,
        &session,
        "dead_letters.html",
        json!({
            "nav": "dead-letters",
            "dead_letters": page["dead_letters"],
            "next": next,
            "paged": asked.contains_key("cursor"),
        }),
    )
}

pub async fn not_found(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some((id, _)) => state.error(&id, StatusCode::NOT_FOUND, "There is no such page."),
        None => to_login(),
    }
}

impl UiState {
    /// A page of a signed-in session: its CSRF token for the forms, and
    /// the notice the last action left.
    fn page(
        &self,
        id: &str,
        session: &super::session::Session,
        template: &str,
        mut context: Value,
    ) -> Response {
        context["csrf"] = Value::from(session.csrf.as_str());
        context["notice"] = self
            .sessions
            .take_notice(id)
            .map_or(Value::Null, Value::from);
        self.render(StatusCode::OK, template, context)
    }

    fn refused(&self, id: &str, refused: ApiError) -> Response {
        self.error(id, refused.status(), refused.message())
    }

    fn error(&self, id: &str, status: StatusCode, message: &str) -> Response {
        let csrf = self.sessions.get(id).map(|s| s.csrf);
        self.render(
            status,
            "error.html",
            json!({ "status": status.as_u16(), "message": message, "csrf": csrf, "signed_in": true }),
        )
    }
}
