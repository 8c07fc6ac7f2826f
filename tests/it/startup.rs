//! Starting up: the `listen` port is bound before anything runs, so port 0
//! works (the address bound is known, to the library's caller and in the
//! log) and a port that is taken stops the start before any poll.

use crate::helpers::*;
use orderwatch::{App, Config, Templates};
use std::sync::Arc;
use std::time::Duration;

fn listening_workspace(sim: &orderwatch_simulator::RunningSimulator, hook: &Receiver) -> Workspace {
    current_tracking_workspace(&sim.base_url(), &hook.url, "", "listen: 127.0.0.1:0\n")
}

#[tokio::test]
async fn the_app_binds_port_zero_before_it_runs_and_serves_there_until_shut_down() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let ws = listening_workspace(&sim, &hook);
    let config = Config::load(&ws.config_path()).unwrap_or_else(|e| panic!("{e}"));
    let templates = Templates::compile(&config).expect("templates compile");
    let mut app = App::build(config, Arc::new(templates)).expect("builds");
    assert_eq!(app.local_addr(), None, "nothing is bound by build");

    let addr = app
        .bind()
        .await
        .expect("binds")
        .expect("`listen` is configured");
    assert_ne!(addr.port(), 0, "the port the system chose");
    assert_eq!(app.local_addr(), Some(addr));
    // Held from now on: nobody can take it between bind and run.
    assert!(std::net::TcpListener::bind(addr).is_err());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let healthz = format!("http://{addr}/healthz");
    let client = async {
        eventually_async(
            "/healthz on the bound address",
            Duration::from_secs(30),
            || {
                let url = healthz.clone();
                async move { reqwest::get(url).await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await;
        stop.send(()).expect("the app waits for the shutdown");
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let (ran, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(app.run(shutdown), client)
    })
    .await
    .expect("the app stops when its shutdown future resolves");
    ran.expect("the run ends cleanly");
    // Stopped: the port is free again.
    assert!(std::net::TcpListener::bind(addr).is_ok());
}

#[tokio::test]
async fn a_listen_port_that_is_taken_fails_the_start_before_any_poll() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let ws =
        current_tracking_workspace(&sim.base_url(), &hook.url, "", &format!("listen: {addr}\n"));
    let out = ws.run(&["run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot listen on {addr} (the `listen` key)")),
        "{}",
        text(&out)
    );
    let stats = Admin::new(&sim).stats().await;
    assert_eq!(
        stats["total"], 0,
        "no call before the port is bound: {stats}"
    );
    drop(taken);
}
