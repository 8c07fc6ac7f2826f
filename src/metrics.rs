//! Every metric orderwatch exports, named and described in one place:
//! the use sites name them through these constants, and [`describe`] gives
//! each its `# HELP` line on `/metrics`.

pub const POLLS_TOTAL: &str = "orderwatch_polls_total";
pub const POLL_DURATION_SECONDS: &str = "orderwatch_poll_duration_seconds";
pub const ORDERS_TRACKED: &str = "orderwatch_orders_tracked";
pub const EVENTS_TOTAL: &str = "orderwatch_events_total";
pub const LIST_ITEMS_SKIPPED_TOTAL: &str = "orderwatch_list_items_skipped_total";
pub const API_REQUESTS_TOTAL: &str = "orderwatch_api_requests_total";
pub const API_THROTTLED_SECONDS_TOTAL: &str = "orderwatch_api_throttled_seconds_total";
pub const DELIVERIES_TOTAL: &str = "orderwatch_deliveries_total";
pub const OUTBOX_DEPTH: &str = "orderwatch_outbox_depth";
pub const DEAD_LETTERS: &str = "orderwatch_dead_letters";
pub const TASK_RESTARTS_TOTAL: &str = "orderwatch_task_restarts_total";
pub const CONFIG_RELOADS_TOTAL: &str = "orderwatch_config_reloads_total";
pub const TIMER_EVALUATIONS_TOTAL: &str = "orderwatch_timer_evaluations_total";
pub const TIMER_EVALUATION_SECONDS: &str = "orderwatch_timer_evaluation_seconds";

/// Give every metric its description; called once the recorder is set.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(POLLS_TOTAL, "Poll cycles per source, by outcome");
    describe_histogram!(
        POLL_DURATION_SECONDS,
        Unit::Seconds,
        "How long a poll cycle took, per source"
    );
    describe_gauge!(ORDERS_TRACKED, "Orders the store holds, per source");
    describe_counter!(EVENTS_TOTAL, "Events detected, per source and type");
    describe_counter!(
        LIST_ITEMS_SKIPPED_TOTAL,
        "Items of a page that are not orders with a usable id, per source"
    );
    describe_counter!(
        API_REQUESTS_TOTAL,
        "Calls to Orange, per source and HTTP status"
    );
    describe_counter!(
        API_THROTTLED_SECONDS_TOTAL,
        Unit::Seconds,
        "Whole seconds calls waited for the request budget, rate-limit waits included, per source"
    );
    describe_counter!(
        DELIVERIES_TOTAL,
        "Delivery attempts, per sink and outcome (delivered, retry, dead_letter)"
    );
    describe_gauge!(OUTBOX_DEPTH, "Entries waiting in the outbox, per sink");
    describe_gauge!(DEAD_LETTERS, "Entries in the dead letters, per sink");
    describe_counter!(
        TASK_RESTARTS_TOTAL,
        "Restarts of a loop that ended unexpectedly, per task"
    );
    describe_counter!(
        TIMER_EVALUATIONS_TOTAL,
        "Evaluations of the timers (due dates, stalled orders), by outcome (ok, error)"
    );
    describe_histogram!(
        TIMER_EVALUATION_SECONDS,
        Unit::Seconds,
        "How long an evaluation of the timers took"
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Config reloads (SIGHUP or the API), by outcome (ok, error)"
    );
}
