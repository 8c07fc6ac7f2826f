//! The web UI of `orderwatch run` under `/ui/`: over plain HTTP (its gate:
//! the token, the session cookie, the CSRF token, the headers, escaping),
//! and in Debian's chromium driven through chromedriver (log in, find an
//! order and read its timeline, replay a dead letter, pause and resume a
//! sink), saving screenshots under target/ui-screenshots/.

use crate::api::{Api, TOKEN, api_rest, spawn_with_token, stop_and_check_log};
use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// A client of the UI that follows no redirect and keeps its cookies by
/// hand, so each answer's status and headers can be checked.
struct Visitor {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new(base: &str) -> Visitor {
        Visitor {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, answer: &reqwest::Response) {
        for set in answer.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.retain(|(n, _)| n != name);
                if !value.is_empty() {
                    self.cookies.push((name.to_owned(), value.to_owned()));
                }
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> Page {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("the UI answers");
        self.keep(&answer);
        Page {
            status: answer.status().as_u16(),
            headers: answer.headers().clone(),
            body: answer.text().await.unwrap_or_default(),
        }
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("the UI answers");
        self.keep(&answer);
        answer
    }

    /// Log in with `token` through the form; the answer to the POST.
    async fn log_in(&mut self, token: &str) -> reqwest::Response {
        let form = self.get("/ui/login").await;
        let csrf = csrf_of(&form.body);
        self.post("/ui/login", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

/// One answer of the UI, read whole.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The CSRF token in a page's first form.
fn csrf_of(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the page:\n{page}"))
        .to_owned()
}

fn location(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A source polled every `interval` to `sinks`, with the API and UI on.
fn workspace(
    sim: &orderwatch_simulator::RunningSimulator,
    interval: &str,
    sinks: &str,
) -> Workspace {
    let source = source_yaml("tracking", "order-tracking", &sim.base_url(), "")
        .replace("interval: 1s", &format!("interval: {interval}"));
    Workspace::new(&source, sinks, &api_rest())
}

/// `orderwatch run` of a simulator of `orders` orders, polled every hour,
/// to a webhook sink, with the API and UI on, once it has polled.
struct Running {
    sim: orderwatch_simulator::RunningSimulator,
    admin: Admin,
    hook: Receiver,
    ws: Workspace,
    child: tokio::process::Child,
    api: Api,
}

async fn running(orders: usize) -> Running {
    let sim = simulator(orders).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = workspace(&sim, "1h", &webhook_sink_yaml("hook", &hook.url));
    let child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    Running {
        sim,
        admin,
        hook,
        ws,
        child,
        api,
    }
}

#[tokio::test]
async fn the_ui_is_not_served_without_an_api_token() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "listen: 127.0.0.1:0\n",
    );
    let mut child = ws.spawn_run();
    let mut visitor = Visitor::new(&format!("http://{}", health_addr(&ws).await));
    for path in ["/ui/", "/ui/login", "/ui/orders", "/ui/style.css"] {
        assert_eq!(visitor.get(path).await.status, 404, "GET {path}");
    }
    let answer = visitor.post("/ui/login", &[("token", "anything")]).await;
    assert_eq!(answer.status(), 404);
    terminate(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn the_ui_takes_only_its_token_and_every_form_needs_the_session_and_its_csrf_token() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let ws = workspace(&sim, "1h", &webhook_sink_yaml("hook", &hook.url));
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let mut visitor = Visitor::new(&api.base);

    // Without a session every page leads to the login form.
    for path in ["/ui/orders", "/ui/sources", "/ui/sinks", "/ui/dead-letters"] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 303, "GET {path}");
        assert_eq!(page.header("location"), "/ui/login", "GET {path}");
    }

    let wrong = visitor.log_in("not-the-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(
        !visitor
            .cookies
            .iter()
            .any(|(n, _)| n == "orderwatch_session"),
        "a wrong token opened a session"
    );
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That token was refused.")
    );

    // The login form's own token is checked too.
    let mut stranger = Visitor::new(&api.base);
    let forged = stranger.post("/ui/login", &[("token", TOKEN)]).await;
    assert_eq!(forged.status(), 403);

    let good = visitor.log_in(TOKEN).await;
    assert_eq!(good.status(), 303);
    assert_eq!(location(&good), "/ui/orders");
    let set: Vec<String> = good
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("orderwatch_session="))
        .unwrap_or_else(|| panic!("no session cookie: {set:?}"));
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains(TOKEN), "{session}");

    let page = visitor.get("/ui/sinks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let policy = page.header("content-security-policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("script-src 'none'"), "{policy}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("hook"), "{}", page.body);
    let csrf = csrf_of(&page.body);

    // A POST with the session but no CSRF token, or a wrong one, does nothing.
    for form in [vec![], vec![("csrf", "0123456789abcdef")]] {
        let refused = visitor.post("/ui/sinks/hook/pause", &form).await;
        assert_eq!(refused.status(), 403, "{form:?}");
    }
    let outbox = api.ok("/outbox").await;
    assert_eq!(outbox["sinks"][0]["paused"], false, "{outbox}");

    // With it, the sink is paused, as the API shows.
    let done = visitor
        .post("/ui/sinks/hook/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), "/ui/sinks");
    let outbox = api.ok("/outbox").await;
    assert_eq!(outbox["sinks"][0]["paused"], true, "{outbox}");
    let body = visitor.get("/ui/sinks").await.body;
    assert!(body.contains("hook is paused"), "{body}");
    assert!(body.contains("Resume"), "{body}");

    // A form of another session is refused, and a closed session opens nothing.
    let mut other = Visitor::new(&api.base);
    assert_eq!(other.log_in(TOKEN).await.status(), 303);
    let cross = other
        .post("/ui/sinks/hook/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(cross.status(), 403);
    let out = visitor.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    let after = visitor.get("/ui/orders").await;
    assert_eq!(after.header("location"), "/ui/login");

    stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn order_values_from_outside_render_as_text() {
    let Running {
        sim: _sim,
        admin,
        hook,
        ws,
        mut child,
        api,
    } = running(3).await;
    let orders = admin.orders(TRACKING, "").await;
    let id = orders[0]["id"].as_str().expect("an id").to_owned();
    let hostile = r#"<script>alert("owned")</script>"#;
    admin
        .patch("order-tracking", &id, json!({"status": hostile}))
        .await;
    api.post("/sources/tracking/poll", json!({})).await;
    eventually("the change delivered", Duration::from_secs(20), || {
        !hook.delivered().is_empty()
    })
    .await;

    let mut visitor = Visitor::new(&api.base);
    assert_eq!(visitor.log_in(TOKEN).await.status(), 303);
    let escaped = "&lt;script&gt;alert(&quot;owned&quot;)&lt;";
    let list = visitor.get(&format!("/ui/orders?q={id}")).await.body;
    let story = visitor.get(&format!("/ui/orders/tracking/{id}")).await.body;
    for (page, body) in [("orders", &list), ("order", &story)] {
        assert!(body.contains(escaped), "{page}: {body}");
        assert!(!body.contains("<script>"), "{page}: {body}");
    }
    assert!(story.contains("order.status_changed"), "{story}");
    assert!(story.contains("delivery-delivered"), "{story}");

    // An order the store does not hold is a page saying so.
    let missing = visitor.get("/ui/orders/tracking/NO-SUCH-ORDER").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("NO-SUCH-ORDER"), "{}", missing.body);
    stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn the_orders_page_shows_the_latest_change_first_across_pages() {
    use crate::orders_by_change::{change, next_second};
    let Running {
        sim: _sim,
        admin,
        hook: _hook,
        ws,
        mut child,
        api,
    } = running(60).await;
    let mut ids = admin.ids(TRACKING, "").await;
    ids.sort();
    let (first, last) = (ids[0].clone(), ids[59].clone());
    let baseline = api.ok("/orders?limit=1").await;
    next_second(baseline["orders"][0]["changed_at"].as_str().unwrap()).await;
    // The first id changes, then the last: the last is the latest change
    // of all, though the store's key order puts it on no first page.
    change(&admin, &api, &first, "Step-1").await;
    change(&admin, &api, &last, "Step-2").await;

    let mut visitor = Visitor::new(&api.base);
    assert_eq!(visitor.log_in(TOKEN).await.status(), 303);
    let page = visitor.get("/ui/orders").await.body;
    let row = |body: &str, id: &str| body.find(&format!("/ui/orders/tracking/{id}\""));
    let (at_last, at_first) = (row(&page, &last), row(&page, &first));
    assert!(
        at_last.is_some() && at_last < at_first,
        "the latest change heads the first page:\n{page}"
    );
    assert_eq!(page.matches("class=\"order-link\"").count(), 50);
    let next = page
        .split("href=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains("cursor="))
        .expect("a next page")
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let second = visitor.get(&next).await.body;
    assert_eq!(second.matches("class=\"order-link\"").count(), 10);
    assert!(row(&second, &last).is_none() && row(&second, &first).is_none());
    stop_and_check_log(&ws, &mut child).await;
}

/// Debian's chromium and its driver, found on `PATH`.
fn browser_tools() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    };
    match (find("chromium"), find("chromedriver")) {
        (Some(browser), Some(driver)) => Ok((browser, driver)),
        _ => Err("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)".into()),
    }
}

/// chromedriver on a free port of 127.0.0.1, ended with the test.
async fn chromedriver(path: &std::path::Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = tokio::process::Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually_async("chromedriver ready", Duration::from_secs(30), || async {
        match http.get(format!("{url}/status")).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|s| s["value"]["ready"] == true),
            Err(_) => false,
        }
    })
    .await;
    (child, url)
}

/// Saves the page as a PNG under target/ui-screenshots/.
async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot saved");
}

/// The element `what` once the page shows it (a click's page loads after
/// the click returns).
async fn shown(
    browser: &fantoccini::Client,
    what: fantoccini::Locator<'_>,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(what)
        .await
}

/// Clicks the button labelled `label`.
async fn press(browser: &fantoccini::Client, label: &str) {
    let xpath = format!("//button[normalize-space()='{label}']");
    let button = shown(browser, fantoccini::Locator::XPath(&xpath)).await;
    button.expect(label).click().await.expect(label);
}

/// The notice the last action left on the page.
async fn notice(browser: &fantoccini::Client) -> String {
    let notice = shown(browser, fantoccini::Locator::Css(".notice")).await;
    notice.expect("a notice").text().await.expect("its text")
}

/// Whether a delivery of an event of order `id` reached the receiver.
fn delivered_for(hook: &Receiver, id: &str) -> bool {
    hook.delivered()
        .iter()
        .any(|r| r.json()["data"]["order_id"] == id)
}

#[tokio::test]
async fn in_a_browser_an_operator_reads_an_order_replays_a_dead_letter_and_pauses_a_sink() {
    let required = std::env::var("ORDERWATCH_BROWSER_TESTS").as_deref() == Ok("1");
    let (chromium, driver_path) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if required => panic!("ORDERWATCH_BROWSER_TESTS=1 but {why}"),
        Err(why) => {
            skipped(
                "ui::in_a_browser_an_operator_reads_an_order_replays_a_dead_letter_and_pauses_a_sink",
                &why,
            );
            return;
        }
    };
    let sim = simulator(8).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let source = source_yaml(
        "tracking",
        "order-tracking",
        &sim.base_url(),
        "    closed_statuses: [Closed]\n",
    );
    let ws = Workspace::new(&source, &webhook_sink_yaml("hook", &hook.url), &api_rest());
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let open: Vec<String> = admin
        .orders(TRACKING, "")
        .await
        .iter()
        .filter(|o| o["status"] != "Closed")
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect();
    assert!(open.len() >= 3, "open orders: {open:?}");
    let (read, dead, held) = (&open[0], &open[1], &open[2]);

    let (_driver, driver_url) = chromedriver(&driver_path).await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860"],
        }),
    );
    let browser =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a chromium session");
    use fantoccini::Locator::Css;
    let base = &api.base;

    // A wrong token is refused; the right one opens the orders.
    browser.goto(&format!("{base}/ui/")).await.unwrap();
    let token = shown(&browser, Css("#token")).await.unwrap();
    token.send_keys("not-the-token").await.unwrap();
    press(&browser, "Log in").await;
    let refused = shown(&browser, Css("p.error")).await.unwrap();
    assert_eq!(refused.text().await.unwrap(), "That token was refused.");
    screenshot(&browser, "login").await;
    browser
        .find(Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    press(&browser, "Log in").await;
    shown(&browser, Css("input[name=q]")).await.unwrap();
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/ui/orders");
    screenshot(&browser, "orders").await;

    // A status change, found by search, with its delivery on the timeline.
    admin
        .patch("order-tracking", read, json!({"status": "Closed"}))
        .await;
    eventually("the change delivered", Duration::from_secs(20), || {
        delivered_for(&hook, read)
    })
    .await;
    let search = shown(&browser, Css("input[name=q]")).await.unwrap();
    search.send_keys(read).await.unwrap();
    press(&browser, "Search").await;
    // The answer to the search, not the page it was typed in.
    let answered = format!("input[name=q][value='{read}']");
    shown(&browser, Css(&answered)).await.unwrap();
    let links = browser.find_all(Css("a.order-link")).await.unwrap();
    assert_eq!(links.len(), 1, "{}", browser.source().await.unwrap());
    assert_eq!(links[0].text().await.unwrap(), *read);
    links[0].click().await.unwrap();
    let event = shown(&browser, Css("li.event")).await.unwrap();
    let told = event.text().await.unwrap();
    assert!(told.contains("order.status_changed"), "{told}");
    assert!(told.contains("Closed"), "{told}");
    assert!(
        told.contains("hook") && told.contains("delivered"),
        "{told}"
    );
    let badge = event.find(Css(".badge.delivery-delivered")).await.unwrap();
    assert_eq!(badge.text().await.unwrap(), "delivered");
    screenshot(&browser, "order").await;

    // A change the receiver refuses for good is a dead letter; replayed
    // from the page once the receiver takes it again, it arrives.
    hook.script(&[400]);
    admin
        .patch("order-tracking", dead, json!({"status": "Closed"}))
        .await;
    eventually_async("the dead letter", Duration::from_secs(20), || async {
        let letters = api.ok("/dead-letters").await;
        letters["dead_letters"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    })
    .await;
    assert!(!delivered_for(&hook, dead));
    hook.clear_script();
    browser
        .goto(&format!("{base}/ui/dead-letters"))
        .await
        .unwrap();
    let row = shown(&browser, Css("table.list tbody tr")).await.unwrap();
    assert!(row.text().await.unwrap().contains(dead.as_str()));
    screenshot(&browser, "dead-letters").await;
    row.find(Css("button.replay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        notice(&browser).await,
        "1 dead letter was put back in the outbox."
    );
    eventually("the replayed delivery", Duration::from_secs(20), || {
        delivered_for(&hook, dead)
    })
    .await;

    // Paused, the sink holds the next change in its outbox; resumed, it
    // delivers it.
    browser.goto(&format!("{base}/ui/sinks")).await.unwrap();
    press(&browser, "Pause").await;
    let paused = notice(&browser).await;
    assert!(paused.contains("hook is paused"), "{paused}");
    admin
        .patch("order-tracking", held, json!({"status": "Closed"}))
        .await;
    eventually_async(
        "the change held in the outbox",
        Duration::from_secs(20),
        || async { api.ok("/outbox").await["sinks"][0]["depth"] == 1 },
    )
    .await;
    assert!(!delivered_for(&hook, held), "a paused sink delivered");
    browser.refresh().await.unwrap();
    screenshot(&browser, "sinks").await;
    press(&browser, "Resume").await;
    assert_eq!(notice(&browser).await, "hook is resumed.");
    eventually("the held change delivered", Duration::from_secs(20), || {
        delivered_for(&hook, held)
    })
    .await;

    // Sources, with "poll now".
    browser.goto(&format!("{base}/ui/sources")).await.unwrap();
    let health = shown(&browser, Css(".badge.health-ok")).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    press(&browser, "Poll now").await;
    assert_eq!(notice(&browser).await, "A poll of tracking was requested.");
    screenshot(&browser, "sources").await;

    browser.close().await.unwrap();
    stop_and_check_log(&ws, &mut child).await;
}
