//! The crash loop: `orderwatch run` against a churning simulator, killed
//! with SIGKILL at random moments (mid-poll, mid-commit, mid-delivery) at
//! least 30 times and restarted each time; then churn stops, the daemon
//! settles, and what the receiver got is compared with the simulator's
//! change log exactly, by `change_log::assert_told_exactly` (see there for
//! what it asserts).

use crate::change_log::{self, State};
use crate::helpers::*;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

const KILLS: usize = 32;

#[tokio::test]
#[ignore = "long: run by .ci/run separately"]
async fn crash_loop_against_churn_delivers_every_change_exactly_as_it_happened() {
    let mut sim = change_log::churning_simulator().await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &change_log::churned_source(&sim),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    ws.once_ok().await;
    // The baseline, exactly as the store recorded it.
    let baseline = change_log::baseline(&ws).await;
    assert!(baseline.len() >= 100, "{}", baseline.len());

    let mut killed_in = BTreeMap::<&str, usize>::new();
    for round in 0..KILLS {
        let mut child = ws.spawn_run();
        if round % 4 == 1 {
            hook.script(&[503, 503]);
        }
        let pause = rand::rng().random_range(150..1600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let phase = change_log::phase_by_log(&ws);
        *killed_in.entry(phase).or_default() += 1;
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
    }

    // Settle: churn stops; a daemon polls and drains until the receiver
    // believes what the simulator holds.
    sim.stop_churn().await;
    let expected: BTreeMap<String, State> = change_log::final_states(&admin).await;
    let child = ws.spawn_run();
    let cycles_before = log_count(&ws, "poll cycle done");
    let hook2 = hook.clone();
    let baseline2 = baseline.clone();
    let expected2 = expected.clone();
    let settled = move || change_log::settled(&hook2, &baseline2, &expected2);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !settled() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And one more complete cycle, to be sure nothing else comes.
    eventually(
        "two cycles of the settled daemon",
        Duration::from_secs(30),
        || log_count(&ws, "poll cycle done") >= cycles_before + 2,
    )
    .await;
    let mut child = child;
    let status = terminate(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "clean exit: {status:?}");

    let log = std::fs::read_to_string(ws.dir.path().join("run.log")).unwrap_or_default();
    let compared = change_log::assert_told_exactly(&admin, &hook, &baseline, &expected).await;
    println!("crash loop: {KILLS} kills ({killed_in:?}), {compared}");
    assert!(compared.unique > 0, "churn made changes: {log}");
    sim.shutdown().await;
}
