//! Faults tests inject with `POST /_sim/faults`: failing statuses, latency,
//! broken bodies, wrong counts, refused keys. A request body is parsed whole
//! before anything is applied, so a refused body changes nothing.
//!
//! Counted faults are queues: each POST adds to them, and each answer they
//! apply to uses one up. A status fault with `"target":"list"` may name an
//! `"offset"`: then only list calls at that offset take it
//! (`{"status":503,"count":5,"target":"list","offset":100}` fails the second
//! page of 100 while the first and third are served), so a test can make a
//! cycle fail part-way through a listing. A list answer takes at most one body fault, in this
//! order: empty page at its offset, non-JSON body, truncated body.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::state::Api;
use super::stats::Endpoint;

/// Which calls a status fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    Token,
    List,
    Detail,
    /// List and detail, not the token endpoint: the default.
    Api,
}

impl Target {
    fn parse(name: &str) -> Option<Target> {
        match name {
            "token" => Some(Target::Token),
            "list" => Some(Target::List),
            "detail" => Some(Target::Detail),
            "api" => Some(Target::Api),
            _ => None,
        }
    }

    fn covers(self, endpoint: Endpoint) -> bool {
        matches!(
            (self, endpoint),
            (Target::Token, Endpoint::Token)
                | (Target::List | Target::Api, Endpoint::List(_))
                | (Target::Detail | Target::Api, Endpoint::Detail(_))
        )
    }
}

fn api_name<S: serde::Serializer>(api: &Option<Api>, s: S) -> Result<S::Ok, S::Error> {
    match api {
        Some(api) => s.serialize_str(api.name()),
        None => s.serialize_none(),
    }
}

fn covers_api(restriction: Option<Api>, api: Option<Api>) -> bool {
    restriction.is_none() || restriction == api
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StatusFault {
    pub(crate) status: u16,
    remaining: u32,
    target: Target,
    #[serde(serialize_with = "api_name")]
    api: Option<Api>,
    pub(crate) retry_after: Option<u64>,
    /// Only list calls at this offset (absent `offset` in the query is 0).
    offset: Option<usize>,
}

impl StatusFault {
    fn covers(&self, endpoint: Endpoint, list_offset: Option<usize>) -> bool {
        self.target.covers(endpoint)
            && covers_api(self.api, endpoint.api())
            && (self.offset.is_none() || self.offset == list_offset)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct CountedFault {
    remaining: u32,
    #[serde(serialize_with = "api_name")]
    api: Option<Api>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct EmptyPageFault {
    offset: usize,
    remaining: u32,
    #[serde(serialize_with = "api_name")]
    api: Option<Api>,
}

/// What a list answer's body suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    EmptyPage,
    NonJson,
    Truncate,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Faults {
    status: Vec<StatusFault>,
    pub(crate) latency_ms: u64,
    truncate_body: Vec<CountedFault>,
    non_json: Vec<CountedFault>,
    pub(crate) total_count_delta: i64,
    empty_page_at_offset: Vec<EmptyPageFault>,
    pub(crate) reject_api_key: bool,
}

/// Use up one of the first fault in `queue` that `applies`.
fn take_one<T>(
    queue: &mut Vec<T>,
    applies: impl Fn(&T) -> bool,
    remaining: impl Fn(&mut T) -> &mut u32,
) -> Option<T>
where
    T: Clone,
{
    let at = queue.iter().position(applies)?;
    let taken = queue[at].clone();
    let left = remaining(&mut queue[at]);
    *left = left.saturating_sub(1);
    if *left == 0 {
        queue.remove(at);
    }
    Some(taken)
}

impl Faults {
    /// The status fault this call answers with, if any (and use it up).
    /// `list_offset` is the offset of a list call, `None` for other calls.
    pub(crate) fn take_status(
        &mut self,
        endpoint: Endpoint,
        list_offset: Option<usize>,
    ) -> Option<StatusFault> {
        take_one(
            &mut self.status,
            |f| f.covers(endpoint, list_offset),
            |f| &mut f.remaining,
        )
    }

    /// The body fault this successful list answer suffers, if any.
    pub(crate) fn take_body_fault(&mut self, api: Api, offset: usize) -> Option<BodyFault> {
        let api = Some(api);
        if take_one(
            &mut self.empty_page_at_offset,
            |f| f.offset == offset && covers_api(f.api, api),
            |f| &mut f.remaining,
        )
        .is_some()
        {
            return Some(BodyFault::EmptyPage);
        }
        if take_one(
            &mut self.non_json,
            |f| covers_api(f.api, api),
            |f| &mut f.remaining,
        )
        .is_some()
        {
            return Some(BodyFault::NonJson);
        }
        take_one(
            &mut self.truncate_body,
            |f| covers_api(f.api, api),
            |f| &mut f.remaining,
        )
        .map(|_| BodyFault::Truncate)
    }

    pub(crate) fn apply(&mut self, request: &FaultRequest) {
        let counted = || CountedFault {
            remaining: request.count,
            api: request.api,
        };
        if let Some(fault) = &request.status {
            self.status.push(fault.clone());
        }
        if let Some(ms) = request.latency_ms {
            self.latency_ms = ms;
        }
        match request.truncate_body {
            Some(true) => self.truncate_body.push(counted()),
            Some(false) => self.truncate_body.clear(),
            None => {}
        }
        match request.non_json {
            Some(true) => self.non_json.push(counted()),
            Some(false) => self.non_json.clear(),
            None => {}
        }
        if let Some(delta) = request.total_count_delta {
            self.total_count_delta = delta;
        }
        match request.empty_page_at_offset {
            Some(Some(offset)) => self.empty_page_at_offset.push(EmptyPageFault {
                offset,
                remaining: request.count,
                api: request.api,
            }),
            Some(None) => self.empty_page_at_offset.clear(),
            None => {}
        }
        if let Some(reject) = request.reject_api_key {
            self.reject_api_key = reject;
        }
    }

    /// The state `POST /_sim/faults` answers with.
    pub(crate) fn to_json(&self, rate_limit_per_minute: Option<u32>) -> Value {
        let mut state = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        if let Some(object) = state.as_object_mut() {
            object.insert(
                "rate_limit_per_minute".to_owned(),
                json!(rate_limit_per_minute),
            );
        }
        state
    }
}

/// A parsed `POST /_sim/faults` body.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct FaultRequest {
    status: Option<StatusFault>,
    latency_ms: Option<u64>,
    /// `Some(None)` removes the budget.
    pub(crate) rate_limit_per_minute: Option<Option<u32>>,
    pub(crate) expire_tokens: bool,
    truncate_body: Option<bool>,
    non_json: Option<bool>,
    total_count_delta: Option<i64>,
    /// `Some(None)` (JSON null) clears the empty-page faults.
    empty_page_at_offset: Option<Option<usize>>,
    reject_api_key: Option<bool>,
    count: u32,
    api: Option<Api>,
}

const KEYS: &[&str] = &[
    "status",
    "count",
    "target",
    "api",
    "retry_after",
    "offset",
    "latency_ms",
    "rate_limit_per_minute",
    "expire_tokens",
    "truncate_body",
    "non_json",
    "total_count_delta",
    "empty_page_at_offset",
    "reject_api_key",
];

fn field<T>(
    body: &Map<String, Value>,
    key: &str,
    read: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Result<Option<T>, String> {
    match body.get(key) {
        None => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| format!("\"{key}\" must be {what}, not {value}")),
    }
}

/// `null` or a number, for keys where null means "remove".
fn nullable<T>(value: &Value, read: impl Fn(&Value) -> Option<T>) -> Option<Option<T>> {
    if value.is_null() {
        Some(None)
    } else {
        read(value).map(Some)
    }
}

impl FaultRequest {
    pub(crate) fn parse(body: &Value) -> Result<FaultRequest, String> {
        let body = body
            .as_object()
            .ok_or("the body must be a JSON object such as {\"status\":503,\"count\":3}")?;
        let unknown: Vec<&str> = body
            .keys()
            .map(String::as_str)
            .filter(|key| !KEYS.contains(key))
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown keys {unknown:?}; known keys are {KEYS:?}"));
        }
        let u32_of = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        let count = field(body, "count", u32_of, "a positive integer")?.unwrap_or(1);
        if count == 0 {
            return Err("\"count\" must be at least 1".to_owned());
        }
        let api = field(
            body,
            "api",
            |v| v.as_str().and_then(Api::from_name),
            "\"order-tracking\" or \"ordering\"",
        )?;
        let target = field(
            body,
            "target",
            |v| v.as_str().and_then(Target::parse),
            "\"token\", \"list\", \"detail\" or \"api\"",
        )?;
        let retry_after = field(body, "retry_after", Value::as_u64, "a number of seconds")?;
        let offset = field(
            body,
            "offset",
            |v| v.as_u64().and_then(|n| usize::try_from(n).ok()),
            "a list offset",
        )?;
        let status = field(
            body,
            "status",
            |v| {
                v.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (400..=599).contains(n))
            },
            "an HTTP error status (400 to 599)",
        )?;
        let target = target.unwrap_or(Target::Api);
        if status.is_some() && target == Target::Token && api.is_some() {
            return Err("\"api\" cannot restrict a fault on the token endpoint".to_owned());
        }
        if status.is_none()
            && ["target", "retry_after", "offset"]
                .iter()
                .any(|key| body.contains_key(*key))
        {
            return Err("\"target\", \"retry_after\" and \"offset\" go with \"status\"".to_owned());
        }
        // Only list calls have an offset: anything else would never match.
        if offset.is_some() && target != Target::List {
            return Err("\"offset\" goes with \"target\":\"list\"".to_owned());
        }
        Ok(FaultRequest {
            status: status.map(|status| StatusFault {
                status,
                remaining: count,
                target,
                api,
                retry_after,
                offset,
            }),
            latency_ms: field(
                body,
                "latency_ms",
                Value::as_u64,
                "a number of milliseconds",
            )?,
            rate_limit_per_minute: field(
                body,
                "rate_limit_per_minute",
                |v| nullable(v, u32_of).map(|limit| limit.filter(|n| *n > 0)),
                "a number of calls or null",
            )?,
            expire_tokens: field(body, "expire_tokens", Value::as_bool, "a boolean")?
                .unwrap_or(false),
            truncate_body: field(body, "truncate_body", Value::as_bool, "a boolean")?,
            non_json: field(body, "non_json", Value::as_bool, "a boolean")?,
            total_count_delta: field(body, "total_count_delta", Value::as_i64, "an integer")?,
            empty_page_at_offset: field(
                body,
                "empty_page_at_offset",
                |v| nullable(v, |v| v.as_u64().and_then(|n| usize::try_from(n).ok())),
                "an offset or null",
            )?,
            reject_api_key: field(body, "reject_api_key", Value::as_bool, "a boolean")?,
            count,
            api,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults_with(body: Value) -> Faults {
        let mut faults = Faults::default();
        faults.apply(&FaultRequest::parse(&body).unwrap());
        faults
    }

    #[test]
    fn status_faults_count_down_and_respect_target() {
        let mut faults = faults_with(json!({"status": 503, "count": 2}));
        assert!(faults.take_status(Endpoint::Token, None).is_none());
        assert_eq!(
            faults
                .take_status(Endpoint::List(Api::Ordering), None)
                .map(|f| f.status),
            Some(503)
        );
        assert_eq!(
            faults
                .take_status(Endpoint::Detail(Api::OrderTracking), None)
                .map(|f| f.status),
            Some(503)
        );
        assert!(
            faults
                .take_status(Endpoint::List(Api::Ordering), None)
                .is_none()
        );

        let mut faults = faults_with(json!({"status": 500, "target": "list", "api": "ordering"}));
        assert!(
            faults
                .take_status(Endpoint::List(Api::OrderTracking), None)
                .is_none()
        );
        assert!(
            faults
                .take_status(Endpoint::Detail(Api::Ordering), None)
                .is_none()
        );
        assert!(
            faults
                .take_status(Endpoint::List(Api::Ordering), None)
                .is_some()
        );
    }

    #[test]
    fn a_status_fault_at_an_offset_hits_only_that_page() {
        let mut faults =
            faults_with(json!({"status": 503, "count": 2, "target": "list", "offset": 100}));
        let list = Endpoint::List(Api::OrderTracking);
        assert!(faults.take_status(list, Some(0)).is_none());
        assert!(faults.take_status(list, Some(200)).is_none());
        assert_eq!(
            faults.take_status(list, Some(100)).map(|f| f.status),
            Some(503)
        );
        assert!(faults.take_status(list, Some(100)).is_some());
        assert!(faults.take_status(list, Some(100)).is_none(), "used up");
    }

    #[test]
    fn body_faults_in_priority_order() {
        let mut faults = faults_with(
            json!({"truncate_body": true, "non_json": true, "empty_page_at_offset": 200}),
        );
        assert_eq!(
            faults.take_body_fault(Api::Ordering, 0),
            Some(BodyFault::NonJson)
        );
        assert_eq!(
            faults.take_body_fault(Api::Ordering, 200),
            Some(BodyFault::EmptyPage)
        );
        assert_eq!(
            faults.take_body_fault(Api::Ordering, 200),
            Some(BodyFault::Truncate)
        );
        assert_eq!(faults.take_body_fault(Api::Ordering, 200), None);
    }

    #[test]
    fn refuses_bad_bodies() {
        for body in [
            json!([]),
            json!({"stauts": 503}),
            json!({"status": 200}),
            json!({"status": 503, "count": 0}),
            json!({"status": "503"}),
            json!({"target": "list"}),
            json!({"status": 503, "target": "token", "api": "ordering"}),
            json!({"api": "billing", "non_json": true}),
            json!({"latency_ms": -1}),
            json!({"offset": 100}),
            json!({"status": 503, "offset": 100}),
            json!({"status": 503, "target": "detail", "offset": 100}),
            json!({"status": 503, "target": "list", "offset": -1}),
        ] {
            assert!(FaultRequest::parse(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn settings_and_clearing() {
        let request = FaultRequest::parse(&json!({"rate_limit_per_minute": null})).unwrap();
        assert_eq!(request.rate_limit_per_minute, Some(None));
        let request = FaultRequest::parse(&json!({"rate_limit_per_minute": 0})).unwrap();
        assert_eq!(request.rate_limit_per_minute, Some(None));
        let mut faults = faults_with(
            json!({"latency_ms": 200, "total_count_delta": -5, "reject_api_key": true}),
        );
        assert_eq!(
            (
                faults.latency_ms,
                faults.total_count_delta,
                faults.reject_api_key
            ),
            (200, -5, true)
        );
        faults.apply(
            &FaultRequest::parse(&json!({"latency_ms": 0, "reject_api_key": false})).unwrap(),
        );
        assert_eq!((faults.latency_ms, faults.reject_api_key), (0, false));
        let state = faults.to_json(Some(10));
        assert_eq!(state["rate_limit_per_minute"], 10);
        assert_eq!(state["total_count_delta"], -5);
    }
}
