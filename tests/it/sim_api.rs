//! The simulator through real HTTP on 127.0.0.1: the token endpoint, both
//! APIs' lists and details, every check and error code, the admin endpoints,
//! the change log, every fault kind, the rate limit and the stats.

use std::collections::HashSet;
use std::time::Duration;

use orderwatch_simulator::{RunningSimulator, SimOptions, start};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const ORDERING: &str = "/ordering/b2b/v2/requests";

struct Harness {
    sim: RunningSimulator,
    http: reqwest::Client,
    token: String,
}

impl Harness {
    async fn new(opts: SimOptions) -> Result<Harness, Box<dyn std::error::Error>> {
        let sim = start("127.0.0.1:0".parse()?, opts).await?;
        let http = reqwest::Client::new();
        let mut harness = Harness {
            sim,
            http,
            token: String::new(),
        };
        harness.token = harness.fetch_token().await?;
        Ok(harness)
    }

    async fn small() -> Result<Harness, Box<dyn std::error::Error>> {
        Harness::new(SimOptions {
            orders: 250,
            ..SimOptions::default()
        })
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn fetch_token(&self) -> Result<String, Box<dyn std::error::Error>> {
        let response = self
            .http
            .post(self.url("/oauth/v3/token"))
            .basic_auth("orderwatch-demo", Some("demo-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        Ok(body["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_owned())
    }

    /// An API call with every credential right.
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .header("accept", "application/json")
            .bearer_auth(&self.token)
            .header("x-api-key", "demo-api-key")
    }

    async fn faults(&self, body: Value) -> Result<Value, Box<dyn std::error::Error>> {
        let response = self
            .http
            .post(self.url("/_sim/faults"))
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK, "faults {body}");
        Ok(response.json().await?)
    }

    async fn changes(&self, since: u64) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
        let response = self
            .http
            .get(self.url("/_sim/changes"))
            .query(&[("since", since)])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        Ok(response.json().await?)
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn count(response: &reqwest::Response, name: &str) -> i64 {
    header(response, name).parse().unwrap_or(-1)
}

/// The Orange error code of an error answer, checking its shape on the way.
async fn error_code(response: reqwest::Response) -> Result<i64, Box<dyn std::error::Error>> {
    assert!(header(&response, "content-type").starts_with("application/json"));
    let body: Value = response.json().await?;
    assert!(
        body["message"].is_string() && body["description"].is_string(),
        "{body}"
    );
    Ok(body["code"].as_i64().unwrap_or(-1))
}

fn ids(page: &[Value]) -> Vec<String> {
    page.iter()
        .map(|order| order["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn token_endpoint() -> TestResult {
    let h = Harness::small().await?;
    let token_url = h.url("/oauth/v3/token");
    let response = h
        .http
        .post(&token_url)
        .basic_auth("orderwatch-demo", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!header(&response, "x-oapi-request-id").is_empty());
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 20));

    for (id, secret) in [("orderwatch-demo", "wrong"), ("someone", "demo-secret")] {
        let response = h
            .http
            .post(&token_url)
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].is_string());
    }
    let response = h
        .http
        .post(&token_url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = h
        .http
        .post(&token_url)
        .basic_auth("orderwatch-demo", Some("demo-secret"))
        .form(&[("grant_type", "password")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "unsupported_grant_type");
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn not_acceptable_without_json_accept() -> TestResult {
    let h = Harness::small().await?;
    // reqwest always sends an Accept header, so this one goes by hand.
    let mut stream = tokio::net::TcpStream::connect(h.sim.addr()).await?;
    let request = format!(
        "GET {TRACKING} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         X-API-Key: demo-api-key\r\nConnection: close\r\n\r\n",
        h.token
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.1 406"), "{answer}");
    assert!(answer.contains("\"code\":62"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-oapi-request-id:"));

    let with_accept = |accept: &str| {
        h.http
            .get(h.url(TRACKING))
            .header("accept", accept)
            .bearer_auth(&h.token)
            .header("x-api-key", "demo-api-key")
    };
    let response = with_accept("text/html").send().await?;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    assert_eq!(error_code(response).await?, 62);
    for accept in ["*/*", "application/*", "application/json; charset=utf-8"] {
        let response = with_accept(accept).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn credential_errors() -> TestResult {
    let h = Harness::small().await?;
    let url = h.url(TRACKING);
    let plain = |token: Option<&str>, key: Option<&str>| {
        let mut request = h.http.get(&url).header("accept", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("X-Api-Key", key);
        }
        request
    };

    let response = plain(None, Some("demo-api-key")).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await?, 40);

    let response = plain(Some("not-a-token"), Some("demo-api-key"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await?, 41);

    let response = plain(Some(&h.token), None).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await?, 40);

    let response = plain(Some(&h.token), Some("wrong-key")).send().await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await?, 50);

    // The header name is case-insensitive.
    let response = plain(Some(&h.token), Some("demo-api-key")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);

    h.faults(json!({"reject_api_key": true})).await?;
    let response = h.get(TRACKING).send().await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await?, 50);
    h.faults(json!({"reject_api_key": false})).await?;
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);

    let state = h.faults(json!({"expire_tokens": true})).await?;
    assert!(state.is_object());
    let response = h.get(ORDERING).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await?, 42);
    // A new token works again.
    let fresh = h.fetch_token().await?;
    let response = plain(Some(&fresh), Some("demo-api-key")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn short_token_ttl_expires() -> TestResult {
    let h = Harness::new(SimOptions {
        orders: 10,
        token_ttl: Duration::ZERO,
        ..SimOptions::default()
    })
    .await?;
    // A zero lifetime is already over: no need to wait.
    let response = h.get(TRACKING).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await?, 42);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn paging_headers() -> TestResult {
    let h = Harness::small().await?;
    for path in [TRACKING, ORDERING] {
        // Many pages.
        let response = h.get(path).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "content-type").starts_with("application/json"));
        assert_eq!(
            (
                count(&response, "x-result-count"),
                count(&response, "x-total-count")
            ),
            (100, 250)
        );
        let page: Vec<Value> = response.json().await?;
        assert_eq!(page.len(), 100);

        let response = h.get(path).query(&[("offset", "200")]).send().await?;
        assert_eq!(count(&response, "x-result-count"), 50);
        let last: Vec<Value> = response.json().await?;
        assert_eq!(last.len(), 50);

        // Offset beyond the end.
        let response = h.get(path).query(&[("offset", "250")]).send().await?;
        assert_eq!(
            (
                count(&response, "x-result-count"),
                count(&response, "x-total-count")
            ),
            (0, 250)
        );
        assert_eq!(response.text().await?, "[]");

        // One page.
        let response = h.get(path).query(&[("limit", "1000")]).send().await?;
        assert_eq!(count(&response, "x-result-count"), 250);
        let all: Vec<Value> = response.json().await?;
        assert_eq!(ids(&all).into_iter().collect::<HashSet<_>>().len(), 250);

        // Zero pages.
        let response = h.get(path).query(&[("id", "no-such-order")]).send().await?;
        assert_eq!(
            (
                count(&response, "x-result-count"),
                count(&response, "x-total-count")
            ),
            (0, 0)
        );
        assert_eq!(response.text().await?, "[]");

        // Pages read one after another cover everything once.
        let mut seen = Vec::new();
        for offset in (0..250).step_by(30) {
            let response = h
                .get(path)
                .query(&[("offset", offset), ("limit", 30)])
                .query(&[("sort", "-createdAt")])
                .send()
                .await?;
            let page: Vec<Value> = response.json().await?;
            seen.extend(ids(&page));
        }
        assert_eq!(seen.len(), 250);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);

        for bad in [("offset", "abc"), ("limit", "-1")] {
            let response = h.get(path).query(&[bad]).send().await?;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(error_code(response).await?, 28);
        }
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn filters() -> TestResult {
    let h = Harness::small().await?;
    let total_of = |query: &'static [(&'static str, &'static str)], path: &'static str| {
        let request = h.get(path).query(query);
        async move {
            let response = request.send().await?;
            assert_eq!(response.status(), StatusCode::OK);
            Ok::<i64, reqwest::Error>(count(&response, "x-total-count"))
        }
    };
    let current = total_of(&[("status", "Current")], TRACKING).await?;
    let closed = total_of(&[("status", "Closed")], TRACKING).await?;
    assert!(current > closed && closed > 0, "{current} {closed}");
    assert_eq!(current + closed, 250);

    let response = h
        .get(TRACKING)
        .query(&[("status", "Closed"), ("limit", "1000")])
        .send()
        .await?;
    let page: Vec<Value> = response.json().await?;
    assert!(page.iter().all(|order| order["status"] == "Closed"));

    let archived = total_of(&[("isArchived", "true")], ORDERING).await?;
    let completed = total_of(&[("step", "COMPLETED")], ORDERING).await?;
    assert_eq!(archived, completed);
    let generic = total_of(&[("type", "C_GENERIC_S1")], ORDERING).await?;
    assert!(generic > 0);
    let mixed = total_of(
        &[("type", "C_GENERIC_S1"), ("type", "R_BVPN_S1A")],
        ORDERING,
    )
    .await?;
    assert!(mixed > generic);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sorting() -> TestResult {
    let h = Harness::small().await?;
    let page = |sort: &'static str, path: &'static str| {
        let request = h.get(path).query(&[("sort", sort), ("limit", "1000")]);
        async move { request.send().await?.json::<Vec<Value>>().await }
    };
    let default_ids = ids(&page("", TRACKING).await?);
    let ascending = ids(&page("id", TRACKING).await?);
    let descending = ids(&page("-id", TRACKING).await?);
    let mut sorted = ascending.clone();
    sorted.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    assert_eq!(ascending, sorted, "string order is numeric order");
    assert_eq!(default_ids, ascending);
    assert_eq!(
        descending,
        ascending.iter().rev().cloned().collect::<Vec<_>>()
    );

    let by_created = page("-createdAt", ORDERING).await?;
    let created: Vec<&str> = by_created
        .iter()
        .filter_map(|o| o["createdAt"].as_str())
        .collect();
    assert_eq!(created.len(), 250);
    assert!(created.windows(2).all(|w| w[0] >= w[1]));

    let by_priority = page("priority,-id", ORDERING).await?;
    for pair in by_priority.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (pa, pb) = (a["priority"].as_str(), b["priority"].as_str());
        assert!(pa < pb || (pa == pb && a["id"].as_str() > b["id"].as_str()));
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn details() -> TestResult {
    let h = Harness::small().await?;
    for (list, variants) in [
        (TRACKING, vec![TRACKING]),
        (
            ORDERING,
            vec![
                ORDERING,
                "/ordering/fr/b2b/v2/requests",
                "/ordering/b2b/v3/requests",
            ],
        ),
    ] {
        let first: Vec<Value> = h
            .get(list)
            .query(&[("limit", "1")])
            .send()
            .await?
            .json()
            .await?;
        let id = first[0]["id"].as_str().ok_or("no id")?.to_owned();
        for path in variants {
            let response = h.get(&format!("{path}/{id}")).send().await?;
            assert_eq!(response.status(), StatusCode::OK);
            let order: Value = response.json().await?;
            assert_eq!(order, first[0]);
        }
        let response = h.get(&format!("{list}/nope")).send().await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(response).await?, 60);
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn admin_endpoints_and_change_log() -> TestResult {
    let h = Harness::small().await?;
    let orders = h.url("/_sim/order-tracking/orders");
    let new_order =
        json!({"id": "900001", "status": "Current", "request": {"status": "In Progress"}});

    let response = h.http.post(&orders).json(&new_order).send().await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!header(&response, "x-oapi-request-id").is_empty());
    assert_eq!(response.json::<Value>().await?, new_order);
    assert_eq!(
        h.http.post(&orders).json(&new_order).send().await?.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.http
            .post(&orders)
            .json(&json!({"status": "x"}))
            .send()
            .await?
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.http
            .post(&orders)
            .body("{not json")
            .send()
            .await?
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.http
            .post(h.url("/_sim/billing/orders"))
            .json(&new_order)
            .send()
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );
    let detail: Value = h
        .get(&format!("{TRACKING}/900001"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(detail, new_order);

    let response = h
        .http
        .patch(format!("{orders}/900001"))
        .json(&json!({"status": "Closed", "request": {"status": "Completed"}, "extra": null}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await?;
    assert_eq!(patched["status"], "Closed");
    assert_eq!(patched["request"]["status"], "Completed");
    let closed: Vec<Value> = h
        .get(TRACKING)
        .query(&[("status", "Closed"), ("id", "900001")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        h.http
            .patch(format!("{orders}/nope"))
            .json(&json!({}))
            .send()
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.http
            .patch(format!("{orders}/900001"))
            .json(&json!({"id": "1"}))
            .send()
            .await?
            .status(),
        StatusCode::BAD_REQUEST
    );

    let ordering = h.url("/_sim/ordering/orders");
    let request = json!({"id": "WTEST0000001", "step": "REQUEST", "isArchived": false});
    assert_eq!(
        h.http.post(&ordering).json(&request).send().await?.status(),
        StatusCode::CREATED
    );
    let response = h
        .http
        .delete(format!("{ordering}/WTEST0000001"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        h.http
            .delete(format!("{ordering}/WTEST0000001"))
            .send()
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("{ORDERING}/WTEST0000001"))
            .send()
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );

    let log = h.changes(0).await?;
    assert_eq!(log.len(), 4, "{log:?}");
    let kinds: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["api"].as_str().unwrap_or(""),
                e["id"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("order-tracking", "900001", "created"),
            ("order-tracking", "900001", "changed"),
            ("ordering", "WTEST0000001", "created"),
            ("ordering", "WTEST0000001", "removed"),
        ]
    );
    assert_eq!(
        log[1]["changes"],
        json!([
            {"path": "/status", "from": "Current", "to": "Closed"},
            {"path": "/request/status", "from": "In Progress", "to": "Completed"},
        ])
    );
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(log[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let later = h.changes(2).await?;
    assert_eq!(later.len(), 2);
    assert_eq!(later[0]["seq"], 3);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn status_faults() -> TestResult {
    let h = Harness::small().await?;
    let state = h.faults(json!({"status": 503, "count": 2})).await?;
    assert_eq!(state["status"][0]["remaining"], 2);
    for _ in 0..2 {
        let response = h.get(TRACKING).send().await?;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!header(&response, "x-oapi-request-id").is_empty());
        assert_eq!(error_code(response).await?, 5);
    }
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);

    for (status, code) in [(500, 1), (504, 6), (401, 42), (403, 53)] {
        h.faults(json!({"status": status})).await?;
        let response = h.get(&format!("{ORDERING}/whatever")).send().await?;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(error_code(response).await?, code);
    }

    h.faults(json!({"status": 429, "retry_after": 7})).await?;
    let response = h.get(TRACKING).send().await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "7");
    assert_eq!(error_code(response).await?, 53);

    // Restricted to one API and one endpoint kind.
    h.faults(json!({"status": 500, "target": "detail", "api": "ordering"}))
        .await?;
    assert_eq!(h.get(ORDERING).send().await?.status(), StatusCode::OK);
    assert_eq!(
        h.get(&format!("{TRACKING}/x")).send().await?.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("{ORDERING}/x")).send().await?.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // The token endpoint is hit only when targeted.
    h.faults(json!({"status": 503, "target": "token"})).await?;
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    let response = h
        .http
        .post(h.url("/oauth/v3/token"))
        .basic_auth("orderwatch-demo", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Unknown keys are refused, and clearing empties everything.
    let response = h
        .http
        .post(h.url("/_sim/faults"))
        .json(&json!({"stauts": 503}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    h.faults(json!({"status": 500, "count": 5})).await?;
    let response = h.http.delete(h.url("/_sim/faults")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let state: Value = response.json().await?;
    assert_eq!(state["status"], json!([]));
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_status_fault_can_aim_at_one_page() -> TestResult {
    let h = Harness::small().await?;
    let state = h
        .faults(json!({"status": 503, "count": 2, "target": "list", "offset": 100}))
        .await?;
    assert_eq!(state["status"][0]["offset"], 100);
    let page = |offset: &str| {
        h.get(TRACKING)
            .query(&[("offset", offset), ("limit", "100")])
    };
    // Other pages, and the order at that position by id, are served.
    assert_eq!(page("0").send().await?.status(), StatusCode::OK);
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    assert_eq!(page("200").send().await?.status(), StatusCode::OK);
    for _ in 0..2 {
        let response = page("100").send().await?;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(response).await?, 5);
    }
    assert_eq!(
        page("100").send().await?.status(),
        StatusCode::OK,
        "used up"
    );

    // An offset only makes sense on list calls.
    for body in [
        json!({"status": 503, "offset": 100}),
        json!({"status": 503, "target": "detail", "offset": 100}),
        json!({"offset": 100}),
    ] {
        let response = h
            .http
            .post(h.url("/_sim/faults"))
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn body_and_count_faults() -> TestResult {
    let h = Harness::small().await?;

    // Latency: set, seen in the state, answers still right, cleared by 0.
    let state = h.faults(json!({"latency_ms": 20})).await?;
    assert_eq!(state["latency_ms"], 20);
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    assert_eq!(h.faults(json!({"latency_ms": 0})).await?["latency_ms"], 0);

    h.faults(json!({"truncate_body": true, "count": 1})).await?;
    let response = h.get(TRACKING).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        (
            count(&response, "x-result-count"),
            count(&response, "x-total-count")
        ),
        (100, 250)
    );
    let text = response.text().await?;
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "a cut body does not parse"
    );
    let whole = h.get(TRACKING).send().await?.text().await?;
    assert!(whole.len() >= 2 * text.len() && whole.starts_with(&text));

    h.faults(json!({"non_json": true})).await?;
    let response = h.get(ORDERING).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/html"));
    assert!(response.text().await?.starts_with("<html>"));
    assert!(
        h.get(ORDERING)
            .send()
            .await?
            .json::<Vec<Value>>()
            .await
            .is_ok()
    );

    h.faults(json!({"total_count_delta": 5})).await?;
    let response = h.get(TRACKING).send().await?;
    assert_eq!(
        (
            count(&response, "x-result-count"),
            count(&response, "x-total-count")
        ),
        (100, 255)
    );
    h.faults(json!({"total_count_delta": -1000})).await?;
    assert_eq!(count(&h.get(TRACKING).send().await?, "x-total-count"), 0);
    h.faults(json!({"total_count_delta": 0})).await?;
    assert_eq!(count(&h.get(TRACKING).send().await?, "x-total-count"), 250);

    h.faults(json!({"empty_page_at_offset": 100, "count": 1}))
        .await?;
    assert_eq!(
        h.get(TRACKING)
            .send()
            .await?
            .json::<Vec<Value>>()
            .await?
            .len(),
        100
    );
    let response = h.get(TRACKING).query(&[("offset", "100")]).send().await?;
    assert_eq!(
        (
            count(&response, "x-result-count"),
            count(&response, "x-total-count")
        ),
        (0, 250)
    );
    assert_eq!(response.text().await?, "[]");
    let again: Vec<Value> = h
        .get(TRACKING)
        .query(&[("offset", "100")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(again.len(), 100, "only once");
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit() -> TestResult {
    let h = Harness::new(SimOptions {
        orders: 10,
        rate_limit_per_minute: Some(3),
        ..SimOptions::default()
    })
    .await?;
    for _ in 0..3 {
        assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    }
    let response = h.get(ORDERING).send().await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&response, "retry-after").parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(response).await?, 53);

    // Lifting the budget through faults, then setting a new one.
    let state = h.faults(json!({"rate_limit_per_minute": null})).await?;
    assert_eq!(state["rate_limit_per_minute"], Value::Null);
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    // Calls made while unlimited do not count against a later budget.
    h.faults(json!({"rate_limit_per_minute": 1})).await?;
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    assert_eq!(
        h.get(TRACKING).send().await?.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Clearing faults restores the configured budget (3, one used).
    let state: Value = h
        .http
        .delete(h.url("/_sim/faults"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(state["rate_limit_per_minute"], 3);
    assert_eq!(h.get(TRACKING).send().await?.status(), StatusCode::OK);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn every_answer_has_a_request_id() -> TestResult {
    let h = Harness::small().await?;
    let responses = vec![
        h.get(TRACKING).send().await?,
        h.get(&format!("{TRACKING}/nope")).send().await?,
        h.http.get(h.url(TRACKING)).send().await?,
        h.http.post(h.url("/oauth/v3/token")).send().await?,
        h.http.get(h.url("/_sim/stats")).send().await?,
        h.http.get(h.url("/_sim/changes")).send().await?,
        h.http.get(h.url("/no/such/path")).send().await?,
        h.http.put(h.url(TRACKING)).send().await?,
        h.http
            .delete(h.url("/_sim/ordering/orders/nope"))
            .send()
            .await?,
    ];
    let mut seen = HashSet::new();
    for response in &responses {
        let id = header(response, "x-oapi-request-id");
        assert!(!id.is_empty(), "{} {}", response.url(), response.status());
        assert!(seen.insert(id.to_owned()), "ids are unique");
    }
    assert_eq!(responses[6].status(), StatusCode::NOT_FOUND);
    assert_eq!(responses[7].status(), StatusCode::METHOD_NOT_ALLOWED);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stats_count_api_calls() -> TestResult {
    let h = Harness::small().await?; // one token call
    h.get(TRACKING).send().await?;
    h.get(TRACKING)
        .query(&[("status", "Closed")])
        .send()
        .await?;
    h.get(&format!("{TRACKING}/nope")).send().await?;
    h.http
        .get(h.url(&format!("{ORDERING}/nope")))
        .header("accept", "application/json")
        .bearer_auth(&h.token)
        .header("x-api-key", "bad")
        .send()
        .await?;
    h.http
        .post(h.url("/oauth/v3/token"))
        .basic_auth("x", Some("y"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    h.http.get(h.url("/_sim/changes")).send().await?; // admin: not counted
    let stats: Value = h
        .http
        .get(h.url("/_sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        stats,
        json!({
            "total": 6,
            "by_endpoint": {
                "token": {"200": 1, "401": 1},
                "order-tracking.list": {"200": 2},
                "order-tracking.detail": {"404": 1},
                "ordering.list": {},
                "ordering.detail": {"403": 1},
                "ordering-orders.list": {},
                "ordering-orders.detail": {},
            }
        })
    );
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn churn_changes_orders_and_logs_them() -> TestResult {
    let h = Harness::new(SimOptions {
        orders: 100,
        churn: 200.0,
        ..SimOptions::default()
    })
    .await?;
    // Poll for the condition with a deadline rather than sleeping a fixed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = h.changes(0).await?;
        if log.len() >= 50 || tokio::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.len() >= 50, "churn made {} changes", log.len());
    let kinds: HashSet<&str> = log.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains("changed"), "{kinds:?}");
    let apis: HashSet<&str> = log.iter().filter_map(|e| e["api"].as_str()).collect();
    // Tracking orders, Ordering requests and Ordering orders.
    assert_eq!(apis.len(), 3);
    for entry in log.iter().filter(|e| e["kind"] == "changed") {
        let changes = entry["changes"].as_array().ok_or("changes")?;
        assert!(
            changes.iter().any(|c| c["path"] == "/status"
                || c["path"] == "/step"
                || c["path"] == "/request/status"
                // An Ordering order's delivery slipping (again, when it
                // was already DELAYED: only its expected date moves).
                || c["path"] == "/deliveryStatus"
                || c["path"] == "/keyDates/expectedAt"),
            "{entry}"
        );
    }
    // What the log says about an order still present is what the API shows.
    let last = log
        .iter()
        .rev()
        .find(|e| e["kind"] == "changed" && e["api"] == "ordering")
        .ok_or("no ordering change")?;
    let id = last["id"].as_str().unwrap_or_default();
    let response = h.get(&format!("{ORDERING}/{id}")).send().await?;
    if response.status() == StatusCode::OK {
        let order: Value = response.json().await?;
        let step = ["REQUEST", "VALIDATION", "DELIVERY", "COMPLETED"];
        assert!(step.contains(&order["step"].as_str().unwrap_or("")));
    }
    let addr = h.sim.addr();
    h.sim.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped serving"
    );
    Ok(())
}
