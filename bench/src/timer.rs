//! The timer at rest (`--timer N`): a simulator of N Order Tracking orders,
//! each with a due date weeks ahead (the simulator's `keyDates.expectedAt`),
//! a source with `due: { warn_before: 3d }` and `stalled_after: 365d`, so
//! every open order has its timers armed and none is due. After the
//! baseline, `orderwatch run` (interval 1h: no poll in the window) is
//! watched for a window: the time its timer spent evaluating, from its own
//! `orderwatch_timer_evaluation_seconds` (CPU-bound when nothing is due:
//! a range read that finds nothing), per minute, against the target of
//! 5 ms per minute; and the whole process's CPU over the window.

use crate::{
    Row, Setup, Simulator, check_exit, clock_ticks, free_port, measure, proc_cpu_ticks,
    start_receiver, start_run, stop_run,
};
use std::path::Path;
use std::time::{Duration, Instant};

const TIMER_KEYS: &str =
    "    due: { field: /keyDates/expectedAt, warn_before: 3d }\n    stalled_after: 365d\n";
/// The target: CPU spent evaluating per minute with nothing due.
const TARGET_MS_PER_MINUTE: f64 = 5.0;

/// `name{labels} value` lines of a Prometheus text answer, summed over
/// labels, for the metric named exactly `name`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(listen: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://{listen}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?)
}

pub(crate) async fn at_rest(
    binary: &Path,
    root: &Path,
    n: usize,
    window: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    eprintln!("== timer at rest, {n} orders with due dates ahead");
    let dir = root.join(format!("timer-{n}"));
    std::fs::create_dir_all(&dir)?;
    let sim = Simulator::start(binary, n, &dir.join("simulator.log"))?;
    let (hook, _) = start_receiver().await?;
    let setup = Setup {
        binary: binary.to_owned(),
        dir: dir.clone(),
        sim_base: sim.base.clone(),
        hook,
        concurrency: 2,
        store: None,
    };
    let listen = format!("127.0.0.1:{}", free_port()?);
    let cfg = setup.config("timer", "1h", Some(&listen))?;
    let yaml =
        std::fs::read_to_string(&cfg)?.replacen("sinks:\n", &format!("{TIMER_KEYS}sinks:\n"), 1);
    std::fs::write(&cfg, yaml)?;
    eprintln!("   baseline");
    let m = measure(setup.command(&cfg, &["once"])?, None).await?;
    check_exit("timer baseline", &m)?;

    eprintln!("   run: timer at rest for {} s", window.as_secs());
    let child = start_run(&setup, &cfg, &listen).await?;
    let pid = child.id();
    // Past the first cycle's tail and the evaluation that follows it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = scrape(&listen).await?;
    let cpu0 = proc_cpu_ticks(pid).unwrap_or(0);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after = scrape(&listen).await?;
    let cpu1 = proc_cpu_ticks(pid).unwrap_or(0);
    let elapsed = t0.elapsed();
    stop_run(child);
    drop(sim);

    let evaluations = metric(&after, "orderwatch_timer_evaluation_seconds_count")
        - metric(&before, "orderwatch_timer_evaluation_seconds_count");
    let spent = metric(&after, "orderwatch_timer_evaluation_seconds_sum")
        - metric(&before, "orderwatch_timer_evaluation_seconds_sum");
    let tracked = metric(&after, "orderwatch_orders_tracked");
    let minutes = elapsed.as_secs_f64() / 60.0;
    let per_minute_ms = spent * 1000.0 / minutes;
    let process = Duration::from_secs_f64(cpu1.saturating_sub(cpu0) as f64 / clock_ticks() as f64);
    let verdict = if per_minute_ms <= TARGET_MS_PER_MINUTE {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "timer at rest: {tracked:.0} orders tracked, {evaluations:.0} evaluations in {:.0} s, {per_minute_ms:.3} ms evaluating per minute (target ≤ {TARGET_MS_PER_MINUTE} ms: {verdict}); the whole process {:.1} ms CPU per minute",
        elapsed.as_secs_f64(),
        process.as_secs_f64() * 1000.0 / minutes,
    );
    rows.push(Row {
        n,
        phase: "timer at rest",
        wall: Some(elapsed),
        cpu: Some(process),
        extra: format!(
            "{evaluations:.0} evaluations, {per_minute_ms:.3} ms evaluating per minute (target ≤ {TARGET_MS_PER_MINUTE} ms: {verdict}); CPU is the whole process over the window"
        ),
        ..Default::default()
    });
    Ok(())
}
