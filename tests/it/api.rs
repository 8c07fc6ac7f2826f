//! The operator API of `orderwatch run` over real HTTP: its token, every
//! endpoint's JSON, pagination, replay, pause and resume, poll now.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

pub const TOKEN: &str = "api-token-for-tests-0123456789";
const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// The API of one running orderwatch.
pub struct Api {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub async fn of(ws: &Workspace) -> Api {
        Api {
            base: format!("http://{}", health_addr(ws).await),
            token: TOKEN.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("the API answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Wait until every source has completed a cycle.
    pub async fn polled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let sources = self.ok("/sources").await;
            let list = sources["sources"].as_array().cloned().unwrap_or_default();
            if !list.is_empty() && list.iter().all(|s| s["last_cycle_at"].is_string()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no cycle completed: {sources}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `listen` on port 0 and the token from the environment, as a user would.
pub fn api_rest() -> String {
    "listen: 127.0.0.1:0\napi_token: ${ORDERWATCH_API_TOKEN}\n".to_owned()
}

pub fn spawn_with_token(ws: &Workspace) -> tokio::process::Child {
    ws.spawn_run_with(&[
        ("ORDERWATCH_API_TOKEN", TOKEN),
        ("RUST_LOG", "orderwatch=trace,info"),
    ])
}

/// Stop the daemon; its log must not hold the token, at any level.
pub async fn stop_and_check_log(ws: &Workspace, child: &mut tokio::process::Child) {
    terminate(child, Duration::from_secs(15)).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(!log.is_empty(), "the daemon logged nothing");
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
}

/// A source block polled every hour: only the first poll and "poll now" run.
fn hourly(source: String) -> String {
    source.replace("interval: 1s", "interval: 1h")
}

/// `orderwatch run` of the simulator's tracking API (`extra` source keys,
/// polled every hour) to `sinks`, with the API on, once it has polled.
async fn running(
    sim: &orderwatch_simulator::RunningSimulator,
    extra: &str,
    sinks: &str,
) -> (Workspace, tokio::process::Child, Api) {
    let ws = Workspace::new(
        &hourly(source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            extra,
        )),
        sinks,
        &api_rest(),
    );
    let child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    (ws, child, api)
}

#[tokio::test]
async fn the_api_needs_its_token_and_is_not_served_without_one() {
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        &api_rest(),
    );
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let http = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/api/v1/sources"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/tracking/1"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/outbox"),
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/nosuch"),
        ("POST", "/api/v1/dead-letters/replay"),
        ("POST", "/api/v1/sources/tracking/poll"),
        ("POST", "/api/v1/sinks/hook/pause"),
        ("POST", "/api/v1/sinks/hook/resume"),
    ] {
        let url = format!("{}{path}", api.base);
        let method: reqwest::Method = method.parse().unwrap();
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789".to_owned()),
            Some(format!("Bearer {TOKEN}x")),
            Some(format!("Basic {TOKEN}")),
            Some(TOKEN.to_owned()),
        ] {
            let mut request = http.request(method.clone(), &url);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.text().await.unwrap(), "", "a refusal says nothing more");
        }
    }
    // Nothing changed meanwhile: the refused pause did not pause.
    let outbox = api.ok("/outbox").await;
    assert_eq!(outbox["sinks"][0]["paused"], false, "{outbox}");
    // The open endpoints stay open.
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = http
            .get(format!("{}{open}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    stop_and_check_log(&ws, &mut child).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert!(log.contains("/api/v1/"), "the log says where the API is");

    // Without api_token: nothing under /api/, whatever the request carries.
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "listen: 127.0.0.1:0\n",
    );
    let mut child = spawn_with_token(&ws);
    let base = format!("http://{}", health_addr(&ws).await);
    for path in [
        "/api/v1/orders",
        "/api/v1/sources",
        "/api/v1/events",
        "/ui/",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = http
        .post(format!("{base}/api/v1/dead-letters/replay"))
        .bearer_auth(TOKEN)
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    terminate(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn readyz_names_the_failing_source_and_only_the_api_says_why() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let source = source_yaml("tracking", "order-tracking", &sim.base_url(), "")
        .replace(CLIENT_SECRET, "not-the-secret");
    let ws = Workspace::new(&source, &webhook_sink_yaml("hook", &hook.url), &api_rest());
    // The token from a file, the Docker-secrets way.
    let token_file = ws.dir.path().join("api_token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut child = ws.spawn_run_with(&[
        ("ORDERWATCH_API_TOKEN_FILE", token_file.to_str().unwrap()),
        ("RUST_LOG", "orderwatch=trace,info"),
    ]);
    let api = Api::of(&ws).await;
    api.polled().await;
    let sources = api.ok("/sources").await;
    let s = &sources["sources"][0];
    assert_eq!(s["health"], "failing", "{sources}");
    assert!(s["consecutive_failures"].as_u64().unwrap() >= 1);
    let why = s["last_error"].as_str().unwrap();
    assert!(
        why.contains("invalid_client") || why.contains("401"),
        "{why}"
    );
    let ready = reqwest::get(format!("{}/readyz", api.base)).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("tracking: not ready"), "{body}");
    assert!(
        !body.contains("invalid_client") && !body.contains("401"),
        "{body}"
    );
    assert!(!body.contains(why), "{body}");
    stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn a_short_token_or_one_without_listen_is_a_config_error() {
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", "http://127.0.0.1:9", ""),
        "",
        "api_token: short\n",
    );
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("api_token: must be at least 16 characters"),
        "{said}"
    );
    assert!(said.contains("`listen`, which is not set"), "{said}");
    assert!(
        !said.contains(": short"),
        "the value is never echoed: {said}"
    );
}

#[tokio::test]
async fn every_endpoint_answers_its_json_and_a_replay_is_delivered() {
    let sim = simulator(6).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // The first delivery is refused for good: one dead letter.
    hook.script(&[410]);
    let (ws, mut child, api) = running(
        &sim,
        "    closed_statuses: [Closed]\n",
        &webhook_sink_yaml("hook", &hook.url),
    )
    .await;

    let sources = api.ok("/sources").await;
    let s = &sources["sources"][0];
    assert_eq!(s["name"], "tracking");
    assert_eq!(s["api"], "order-tracking");
    assert_eq!(s["interval"], "1h");
    assert_eq!(s["health"], "ok", "{sources}");
    assert_eq!(s["consecutive_failures"], 0);
    assert!(s["last_error"].is_null());
    assert!(s["last_ok_at"].is_string() && s["next_poll_at"].is_string());

    let orders = admin.orders(TRACKING, "").await;
    let ids: Vec<String> = orders
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let open = orders
        .iter()
        .find(|o| o["status"] != "Closed")
        .expect("an open order");
    let id = open["id"].as_str().unwrap().to_owned();
    let before = open["status"].clone();
    admin
        .patch(
            "order-tracking",
            &id,
            json!({"status": "Closed", "note": "a word"}),
        )
        .await;
    let (status, answer) = api.post("/sources/tracking/poll", json!({})).await;
    assert_eq!((status, &answer["poll"]), (202, &json!("requested")));
    eventually("the refused delivery", Duration::from_secs(20), || {
        !hook.received().is_empty()
    })
    .await;
    eventually_async("the dead letter", Duration::from_secs(20), || async {
        let dead = api.ok("/dead-letters").await;
        dead["dead_letters"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    })
    .await;
    let dead = api.ok("/dead-letters").await;
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["sink"], "hook");
    assert_eq!(letter["order_id"], id.as_str());
    assert_eq!(letter["type"], "order.status_changed");
    assert_eq!(letter["attempts"], 1);
    assert!(
        letter["reason"].as_str().unwrap().contains("410"),
        "{letter}"
    );
    assert!(letter["id"].as_str().unwrap().starts_with("hook:"));
    assert!(letter["dead_at"].is_string() && letter["event_id"].is_string());
    assert!(dead["next_cursor"].is_null());

    let closed = api.ok(&format!("/orders?closed=true&q={id}")).await;
    assert_eq!(closed["orders"].as_array().unwrap().len(), 1, "{closed}");
    let o = &closed["orders"][0];
    assert_eq!(o["source"], "tracking");
    assert_eq!(o["order_id"], id.as_str());
    assert_eq!(o["status"], "Closed");
    assert_eq!(o["closed"], true);
    assert_eq!(o["listed"], true);
    assert_eq!(o["revision"], 1);
    assert!(o["changed_at"].is_string());
    let found = api.ok("/orders?q=A%20WORD").await;
    assert_eq!(found["orders"][0]["order_id"], id.as_str(), "text search");
    let by_id = api.ok(&format!("/orders?id={id}")).await;
    assert_eq!(by_id["orders"].as_array().unwrap().len(), 1);
    let closed_before = orders.iter().filter(|o| o["status"] == "Closed").count();
    let open = api.ok("/orders?closed=false").await;
    assert_eq!(
        open["orders"].as_array().unwrap().len(),
        ids.len() - closed_before - 1
    );
    assert_eq!(api.get("/orders?source=nosuch").await.0, 404);
    assert_eq!(api.get("/orders?limit=0").await.0, 400);
    assert_eq!(api.get("/orders?cursor=garbage").await.0, 400);

    let one = api.ok(&format!("/orders/tracking/{id}")).await;
    assert_eq!(one["order"]["id"], id.as_str());
    assert_eq!(one["order"]["note"], "a word");
    assert_eq!(one["status"], "Closed");
    let timeline = one["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1, "{one}");
    let event = &timeline[0]["event"];
    assert_eq!(event["type"], "order.status_changed");
    assert_eq!(event["data"]["from"], before);
    assert_eq!(event["data"]["changes"][0]["path"], "/status");
    assert_eq!(timeline[0]["seq"].as_u64().map(|s| s > 0), Some(true));
    let deliveries = timeline[0]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{one}");
    assert_eq!(deliveries[0]["sink"], "hook");
    assert_eq!(deliveries[0]["state"], "dead_lettered");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert!(deliveries[0]["at"].is_string());
    assert!(
        deliveries[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{one}"
    );
    assert_eq!(api.get("/orders/tracking/nosuch").await.0, 404);

    let events = api.ok("/events").await;
    assert_eq!(events["events"][0]["data"]["order_id"], id.as_str());
    let none = api.ok("/events?order=nosuch").await;
    assert_eq!(none["events"], json!([]));
    assert_eq!(api.get("/events?type=order.nosuch").await.0, 400);

    let outbox = api.ok("/outbox").await;
    let sink = &outbox["sinks"][0];
    assert_eq!(sink["name"], "hook");
    assert_eq!(sink["type"], "webhook");
    assert_eq!(sink["depth"], 0);
    assert_eq!(sink["dead_letters"], 1);
    assert_eq!(sink["paused"], false);
    assert!(
        sink["last_error"].as_str().unwrap().contains("410"),
        "{sink}"
    );
    assert!(
        !sink["last_error"].as_str().unwrap().contains("/hook"),
        "a URL path is a credential: {sink}"
    );

    // Replayed through the API: delivered to the receiver, which now says 200.
    let (status, bad) = api.post("/dead-letters/replay", json!({})).await;
    assert_eq!(status, 400, "{bad}");
    let (status, replayed) = api
        .post("/dead-letters/replay", json!({"ids": [letter["id"]]}))
        .await;
    assert_eq!((status, &replayed["replayed"]), (200, &json!(1)));
    eventually("the replayed delivery", Duration::from_secs(20), || {
        hook.delivered().len() == 1
    })
    .await;
    assert_eq!(hook.delivered()[0].json()["data"]["order_id"], id.as_str());
    let after = api.ok("/dead-letters").await;
    assert_eq!(after["dead_letters"], json!([]));
    let story = api.ok(&format!("/orders/tracking/{id}")).await;
    let delivery = &story["timeline"][0]["deliveries"][0];
    assert_eq!(delivery["state"], "delivered", "{story}");
    assert!(delivery["attempts"].as_u64().unwrap() >= 1);
    assert!(delivery["last_error"].is_null() && delivery["at"].is_string());

    // A receiver that fails for now: the next change is being retried.
    hook.script(&[503; 50]);
    let other = orders
        .iter()
        .find(|o| o["status"] != "Closed" && o["id"] != id.as_str())
        .and_then(|o| o["id"].as_str())
        .expect("another open order");
    admin
        .patch("order-tracking", other, json!({"status": "Closed"}))
        .await;
    api.post("/sources/tracking/poll", json!({})).await;
    let retrying = format!("/orders/tracking/{other}");
    eventually_async(
        "a delivery being retried",
        Duration::from_secs(20),
        || async {
            let story = api.ok(&retrying).await;
            story["timeline"][0]["deliveries"][0]["state"] == "retrying"
        },
    )
    .await;
    let story = api.ok(&retrying).await;
    let delivery = &story["timeline"][0]["deliveries"][0];
    assert!(delivery["attempts"].as_u64().unwrap() >= 1, "{story}");
    assert!(
        delivery["last_error"].as_str().unwrap().contains("503"),
        "{story}"
    );
    assert!(delivery["at"].is_string(), "the next attempt's time");
    hook.clear_script();

    assert_eq!(api.post("/sources/nosuch/poll", json!({})).await.0, 404);
    assert_eq!(api.post("/sinks/nosuch/pause", json!({})).await.0, 404);
    terminate(&mut child, Duration::from_secs(15)).await;
    assert!(
        !std::fs::read_to_string(ws.log_path())
            .unwrap()
            .contains(TOKEN)
    );
}

#[tokio::test]
async fn pages_walk_every_order_once_in_key_order() {
    let sim = simulator(350).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (ws, mut child, api) = running(&sim, "", &webhook_sink_yaml("hook", &hook.url)).await;

    let walk = |query: &'static str| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/orders?limit=40{query}&cursor={c}"),
                    None => format!("/orders?limit=40{query}"),
                };
                let page = api.ok(&path).await;
                let orders = page["orders"].as_array().unwrap();
                assert!(orders.len() <= 40);
                seen.extend(
                    orders
                        .iter()
                        .map(|o| o["order_id"].as_str().unwrap().to_owned()),
                );
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            (seen, pages)
        }
    };
    let (seen, pages) = walk("").await;
    assert!(pages >= 9, "{pages} pages");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an order came twice");
    let mut all = admin.ids(TRACKING, "").await;
    all.sort();
    assert_eq!(seen, all, "every order, in the store's key order");

    let (current, _) = walk("&status=Current&source=tracking").await;
    let mut expected = admin.ids(TRACKING, "status=Current").await;
    expected.sort();
    assert_eq!(current, expected);
    stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn a_paused_sink_holds_its_deliveries_and_resume_releases_them_in_order() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let held = Receiver::start().await;
    let free = Receiver::start().await;
    let (ws, mut child, api) = running(
        &sim,
        "",
        &format!(
            "{}{}",
            webhook_sink_yaml("held", &held.url),
            webhook_sink_yaml("free", &free.url)
        ),
    )
    .await;
    let (status, paused) = api.post("/sinks/held/pause", json!({})).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)));

    // Two changes of one order, each found by a poll asked for now (the
    // interval is an hour), and one of another order.
    let ids = admin.ids(TRACKING, "").await;
    for (step, (id, status)) in [
        (&ids[0], "InProgress"),
        (&ids[1], "Closed"),
        (&ids[0], "Closed"),
    ]
    .into_iter()
    .enumerate()
    {
        admin
            .patch("order-tracking", id, json!({ "status": status }))
            .await;
        assert_eq!(api.post("/sources/tracking/poll", json!({})).await.0, 202);
        eventually("the free sink's delivery", Duration::from_secs(20), || {
            free.delivered().len() == step + 1
        })
        .await;
    }
    // The free sink has all three: the held one none, all three queued.
    assert!(held.received().is_empty(), "delivered while paused");
    let outbox = api.ok("/outbox").await;
    let sink = outbox["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "held")
        .unwrap()
        .clone();
    assert_eq!(sink["paused"], true);
    assert_eq!(sink["depth"], 3, "{outbox}");
    assert!(sink["oldest_due_at"].is_string());
    let story = api.ok(&format!("/orders/tracking/{}", ids[1])).await;
    let states: Vec<(&str, &str)> = story["timeline"][0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["sink"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("free", "delivered"), ("held", "queued")],
        "{story}"
    );

    let (status, resumed) = api.post("/sinks/held/resume", json!({})).await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
    eventually("the held deliveries", Duration::from_secs(20), || {
        held.delivered().len() == 3
    })
    .await;
    let order_of = |r: &Receiver| -> Vec<(String, u64)> {
        r.delivered()
            .iter()
            .map(|d| {
                let e = d.json();
                (
                    e["data"]["order_id"].as_str().unwrap().to_owned(),
                    e["data"]["revision"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let held_order = order_of(&held);
    let first = held_order.iter().position(|(o, _)| *o == ids[0]).unwrap();
    let second = held_order.iter().rposition(|(o, _)| *o == ids[0]).unwrap();
    assert!(
        first < second,
        "one order's events in order: {held_order:?}"
    );
    assert!(held_order[first].1 < held_order[second].1);
    stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn poll_now_runs_a_cycle_long_before_the_interval() {
    let sim = simulator(4).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (ws, mut child, api) = running(&sim, "", &webhook_sink_yaml("hook", &hook.url)).await;
    let id = admin.ids(TRACKING, "").await[0].clone();
    admin
        .patch("order-tracking", &id, json!({"status": "Polled-Now"}))
        .await;
    let (status, _) = api.post("/sources/tracking/poll", json!({})).await;
    assert_eq!(status, 202);
    let path = format!("/orders?id={id}");
    eventually_async(
        "the change seen by the asked-for cycle",
        Duration::from_secs(20),
        || async { api.ok(&path).await["orders"][0]["status"] == "Polled-Now" },
    )
    .await;
    eventually("the change delivered", Duration::from_secs(20), || {
        hook.delivered().len() == 1
    })
    .await;
    stop_and_check_log(&ws, &mut child).await;
}
