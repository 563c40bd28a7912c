//! Every metric snapsched exports: its name, its label set, its help text,
//! and one typed function per thing that happened. Other modules record
//! through these functions and never spell a metric name or a label key.
//!
//! Invariants:
//! - A metric name appears in this file only (`describe` gives each its
//!   help text, so a new metric is one constant, one `describe_*` line and
//!   one recording function).
//! - A series about a definition carries its whole identity, always:
//!   `definition`, `provider`, `target`, `disk` ([`identity_labels`]). Two
//!   definitions may share a name on different VMs; a series labelled by
//!   the name alone would add them together or let one hide the other.
//! - Recording never fails and never blocks: without the Prometheus
//!   recorder installed (no `[metrics] listen`), every call is a no-op.
//!
//! Depends on the domain only, so every layer (providers, the run engine,
//! pruning, the scheduler) may record.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{Identity, Node, RunState};

/// Definitions the scheduler knows.
pub const DEFINITIONS: &str = "snapsched_definitions";
/// Runs creating, waiting for or pruning snapshots.
pub const RUNS_IN_FLIGHT: &str = "snapsched_runs_in_flight";
/// Unix time of a definition's next scheduled run (0 once it is gone).
pub const NEXT_RUN: &str = "snapsched_next_run_timestamp_seconds";
/// Finished runs by result.
pub const RUNS: &str = "snapsched_runs_total";
/// Unix time a definition's latest successful run finished.
pub const LAST_SUCCESS: &str = "snapsched_last_success_timestamp_seconds";
/// Unix time a definition's latest failed run finished.
pub const LAST_FAILURE: &str = "snapsched_last_failure_timestamp_seconds";
/// Always 1, labelled with the running version.
pub const BUILD_INFO: &str = "snapsched_build_info";
/// Present snapshots a definition owns, per the store.
pub const SNAPSHOTS: &str = "snapsched_snapshots";
/// A definition's nominal interval.
pub const INTERVAL: &str = "snapsched_interval_seconds";
/// Snapshots deleted by retention.
pub const SNAPSHOTS_PRUNED: &str = "snapsched_snapshots_pruned_total";
/// Provider API requests by HTTP status code (or transport failure:
/// `timeout`, `connect`, `error`).
pub const PROVIDER_REQUESTS: &str = "snapsched_provider_requests_total";
/// Provider API request duration (histogram).
pub const PROVIDER_REQUEST_DURATION: &str = "snapsched_provider_request_duration_seconds";

/// Time requests waited for the client-side request budget (histogram;
/// its `_sum` is the total time spent waiting).
pub const API_BUDGET_WAIT: &str = "snapsched_api_budget_wait_seconds";
/// Requests waiting for the client-side request budget now.
pub const API_BUDGET_WAITING: &str = "snapsched_api_budget_waiting_requests";

/// 1 for a node holding its lease (live, fresh heartbeat), 0 for one still
/// listed that is stale, expired or stopped.
pub const NODE_UP: &str = "snapsched_node_up";
/// Seconds since a node's last heartbeat, by the store's clock.
pub const NODE_HEARTBEAT_AGE: &str = "snapsched_node_heartbeat_age_seconds";
/// Runs in flight a node owns.
pub const NODE_RUNS_HELD: &str = "snapsched_node_runs_held";
/// 1 when the daemon's latest store read succeeded, else 0.
pub const STORE_UP: &str = "snapsched_store_up";
/// 1 while this daemon's config file differs from the version the store
/// holds (and was not applied because it is not newer), else 0.
pub const CONFIG_DRIFT: &str = "snapsched_config_drift";
/// Notifications the webhook receiver accepted (2xx), by event.
pub const NOTIFY_SENT: &str = "snapsched_notify_sent_total";
/// Webhook delivery attempts that failed (no answer, or not 2xx); each is
/// retried.
pub const NOTIFY_FAILED: &str = "snapsched_notify_failed_total";
/// Notifications dropped because the queue was full (the store's count,
/// over every process on it).
pub const NOTIFY_DROPPED: &str = "snapsched_notify_dropped_total";
/// Notifications waiting in the store's queue.
pub const NOTIFY_QUEUE_DEPTH: &str = "snapsched_notify_queue_depth";
/// 1 while a definition's latest prune was blocked by `max_deletes_per_run`.
pub const PRUNE_BLOCKED: &str = "snapsched_prune_blocked";
/// 1 while the copy of a definition's latest snapshot to a region failed.
pub const COPY_FAILED: &str = "snapsched_copy_failed";
/// Finished copies of snapshots to other regions, by region and result.
pub const COPIES: &str = "snapsched_copies_total";

/// Buckets for [`PROVIDER_REQUEST_DURATION`]: cloud API calls take from
/// tens of milliseconds to the request timeout (a minute).
pub(crate) const PROVIDER_REQUEST_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Give every metric its help text (and unit). Called once, after the
/// recorder is installed.
pub(crate) fn describe() {
    metrics::describe_histogram!(
        API_BUDGET_WAIT,
        metrics::Unit::Seconds,
        "Time provider requests waited for the client-side API request budget"
    );
    metrics::describe_gauge!(
        API_BUDGET_WAITING,
        "Provider requests waiting for the client-side API request budget now"
    );
    metrics::describe_gauge!(DEFINITIONS, "Definitions the scheduler knows");
    metrics::describe_gauge!(NEXT_RUN, "Unix time of a definition's next scheduled run");
    metrics::describe_gauge!(
        RUNS_IN_FLIGHT,
        "Runs currently creating, waiting for or pruning snapshots"
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        "Unix time a definition's latest successful run finished"
    );
    metrics::describe_gauge!(
        LAST_FAILURE,
        "Unix time a definition's latest failed run finished"
    );
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build"
    );
    metrics::describe_gauge!(
        SNAPSHOTS,
        "Snapshots a definition owns at the provider, per the store"
    );
    metrics::describe_gauge!(
        INTERVAL,
        metrics::Unit::Seconds,
        "A definition's nominal interval: the longest gap between its fires over the coming week"
    );
    metrics::describe_gauge!(
        NODE_UP,
        "1 for a node holding its lease (live, fresh heartbeat), 0 for a stale, expired or stopped one"
    );
    metrics::describe_gauge!(
        NODE_HEARTBEAT_AGE,
        metrics::Unit::Seconds,
        "Time since a node's last heartbeat, by the store's clock"
    );
    metrics::describe_gauge!(NODE_RUNS_HELD, "Runs in flight a node owns");
    metrics::describe_gauge!(
        STORE_UP,
        "1 when the daemon's latest read of the store succeeded, else 0"
    );
    metrics::describe_gauge!(
        CONFIG_DRIFT,
        "1 while this daemon's config file differs from the applied version in the store and is not newer, else 0"
    );
    metrics::describe_counter!(
        NOTIFY_SENT,
        "Notifications the webhook receiver accepted, by event"
    );
    metrics::describe_counter!(
        NOTIFY_FAILED,
        "Webhook delivery attempts that failed and will be retried"
    );
    metrics::describe_counter!(
        NOTIFY_DROPPED,
        "Notifications dropped because the queue was full (queue_limit), counted in the store"
    );
    metrics::describe_gauge!(
        NOTIFY_QUEUE_DEPTH,
        "Notifications waiting in the store's queue"
    );
    metrics::describe_gauge!(
        PRUNE_BLOCKED,
        "1 while a definition's latest prune was blocked by max_deletes_per_run (apply it with snapsched prune NAME --yes), else 0"
    );
    metrics::describe_gauge!(
        COPY_FAILED,
        "1 while the copy of a definition's latest copied snapshot to the region failed (the snapshot is not there), else 0"
    );
    metrics::describe_counter!(
        COPIES,
        "Finished copies of snapshots to other regions, by region and result (done or failed)"
    );
    metrics::describe_counter!(RUNS, "Finished runs by result");
    metrics::describe_counter!(SNAPSHOTS_PRUNED, "Snapshots deleted by retention");
    metrics::describe_counter!(
        PROVIDER_REQUESTS,
        "Provider API requests by HTTP status code, or timeout, connect or error"
    );
    metrics::describe_histogram!(
        PROVIDER_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Provider API request duration"
    );
}

/// The label set of every per-definition series: the whole identity.
pub fn identity_labels(id: &Identity) -> [(&'static str, String); 4] {
    [
        ("definition", id.name.clone()),
        ("provider", id.provider.clone()),
        ("target", id.target.clone()),
        ("disk", id.disk_id.to_string()),
    ]
}

/// The identity's labels plus one more.
fn identity_and(id: &Identity, key: &'static str, value: String) -> [(&'static str, String); 5] {
    let [a, b, c, d] = identity_labels(id);
    [a, b, c, d, (key, value)]
}

/// Scheduler summary: how many definitions are scheduled and how many runs
/// are in flight.
pub fn scheduler_status(definitions: usize, in_flight: usize) {
    metrics::gauge!(DEFINITIONS).set(definitions as f64);
    metrics::gauge!(RUNS_IN_FLIGHT).set(in_flight as f64);
}

/// `id` next fires at `at`; `None` once it is no longer scheduled (the
/// recorder cannot drop a series, so it reads 0 until it idles out).
pub fn next_run(id: &Identity, at: Option<DateTime<Utc>>) {
    let value = at.map_or(0.0, |at| at.timestamp() as f64);
    metrics::gauge!(NEXT_RUN, &identity_labels(id)).set(value);
}

/// A run of `id` (scheduled, catch-up, manual or prune) ended in `state`.
pub fn run_finished(id: &Identity, state: RunState) {
    metrics::counter!(RUNS, &identity_and(id, "result", state.as_str().to_owned())).increment(1);
}

/// A run of `id` that made a snapshot succeeded, finishing at `at`.
pub fn last_success(id: &Identity, at: DateTime<Utc>) {
    metrics::gauge!(LAST_SUCCESS, &identity_labels(id)).set(at.timestamp() as f64);
}

/// A run of `id` failed, finishing at `at`.
pub fn last_failure(id: &Identity, at: DateTime<Utc>) {
    metrics::gauge!(LAST_FAILURE, &identity_labels(id)).set(at.timestamp() as f64);
}

/// The running build, as `snapsched_build_info{version} 1`.
pub fn build_info() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// `id` now owns `count` present snapshots.
pub fn snapshot_count(id: &Identity, count: i64) {
    metrics::gauge!(SNAPSHOTS, &identity_labels(id)).set(count as f64);
}

/// The nominal interval of `id`'s schedule.
pub fn definition_interval(id: &Identity, interval: Duration) {
    metrics::gauge!(INTERVAL, &identity_labels(id)).set(interval.as_secs_f64());
}

/// Retention deleted one of `id`'s snapshots.
pub fn snapshot_pruned(id: &Identity) {
    metrics::counter!(SNAPSHOTS_PRUNED, &identity_labels(id)).increment(1);
}

/// `node` as the store lists it; `up` when it holds its lease. Labelled by
/// the node's full id (unique per process start) and its hostname.
pub fn node_status(node: &Node, up: bool) {
    let labels = [
        ("node", node.id.clone()),
        ("hostname", node.hostname.clone()),
    ];
    let [id, host] = &labels;
    let with_role = [
        id.clone(),
        host.clone(),
        ("role", node.role.as_str().to_owned()),
    ];
    metrics::gauge!(NODE_UP, &with_role).set(if up { 1.0 } else { 0.0 });
    metrics::gauge!(NODE_HEARTBEAT_AGE, &labels).set(node.heartbeat_age_ms.max(0) as f64 / 1000.0);
    metrics::gauge!(NODE_RUNS_HELD, &labels).set(node.runs_held as f64);
}

/// Whether a definition's latest prune was blocked by the blast-radius
/// limit.
pub fn prune_blocked(id: &Identity, blocked: bool) {
    metrics::gauge!(PRUNE_BLOCKED, &identity_labels(id)).set(if blocked { 1.0 } else { 0.0 });
}

/// A copy of `id`'s latest snapshot to `region` ended, in the region or
/// not.
pub fn copy_finished(id: &Identity, region: &str, done: bool) {
    copy_failed(id, region, !done);
    let [a, b, c, d] = identity_labels(id);
    let labels = [a, b, c, d, ("region", region.to_owned())];
    let mut with_result = labels.to_vec();
    with_result.push(("result", if done { "done" } else { "failed" }.to_owned()));
    metrics::counter!(COPIES, &with_result).increment(1);
}

/// Whether the latest copy of `id`'s snapshots to `region` failed.
pub fn copy_failed(id: &Identity, region: &str, failed: bool) {
    let [a, b, c, d] = identity_labels(id);
    let labels = [a, b, c, d, ("region", region.to_owned())];
    metrics::gauge!(COPY_FAILED, &labels).set(if failed { 1.0 } else { 0.0 });
}

/// Whether the daemon's latest read of the store succeeded.
pub fn store_up(up: bool) {
    metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// Whether this daemon's config file differs from the applied version.
pub fn config_drift(drift: bool) {
    metrics::gauge!(CONFIG_DRIFT).set(if drift { 1.0 } else { 0.0 });
}

/// The webhook receiver accepted a notification of `event`.
pub fn notify_sent(event: &str) {
    metrics::counter!(NOTIFY_SENT, "event" => event.to_owned()).increment(1);
}

/// A webhook delivery attempt failed.
pub fn notify_failed() {
    metrics::counter!(NOTIFY_FAILED).increment(1);
}

/// The queue as the store holds it: `depth` waiting, `dropped` ever
/// dropped.
pub fn notify_queue(depth: i64, dropped: u64) {
    metrics::gauge!(NOTIFY_QUEUE_DEPTH).set(depth.max(0) as f64);
    metrics::counter!(NOTIFY_DROPPED).absolute(dropped);
}

/// How a provider API request ended, as its `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// An HTTP response with this status code.
    Status(u16),
    /// No response within the request timeout.
    Timeout,
    /// No connection.
    Connect,
    /// Any other transport failure.
    Error,
}

impl RequestOutcome {
    fn label(self) -> String {
        match self {
            RequestOutcome::Status(code) => code.to_string(),
            RequestOutcome::Timeout => "timeout".to_owned(),
            RequestOutcome::Connect => "connect".to_owned(),
            RequestOutcome::Error => "error".to_owned(),
        }
    }
}

/// One request to the API of provider `provider` took `took` and ended
/// with `outcome`.
/// A request of `provider` waited `waited` for the request budget.
pub fn budget_wait(provider: &str, waited: Duration) {
    metrics::histogram!(API_BUDGET_WAIT, "provider" => provider.to_owned())
        .record(waited.as_secs_f64());
}

/// `n` requests of `provider` are waiting for the request budget.
pub fn budget_waiting(provider: &str, n: usize) {
    metrics::gauge!(API_BUDGET_WAITING, "provider" => provider.to_owned()).set(n as f64);
}

pub fn provider_request(provider: &str, outcome: RequestOutcome, took: Duration) {
    metrics::histogram!(PROVIDER_REQUEST_DURATION, "provider" => provider.to_owned())
        .record(took.as_secs_f64());
    metrics::counter!(PROVIDER_REQUESTS, "provider" => provider.to_owned(), "status" => outcome.label())
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_per_definition_label_set_is_the_whole_identity() {
        let id = Identity {
            provider: "lab".into(),
            target: "web01".into(),
            disk_id: 2,
            name: "daily".into(),
        };
        let keys: Vec<_> = identity_labels(&id).iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["definition", "provider", "target", "disk"]);
        let with = identity_and(&id, "result", "failed".into());
        assert_eq!(with[3], ("disk", "2".to_owned()));
        assert_eq!(with[4], ("result", "failed".to_owned()));
    }

    #[test]
    fn request_outcomes_label_as_before() {
        assert_eq!(RequestOutcome::Status(429).label(), "429");
        assert_eq!(RequestOutcome::Timeout.label(), "timeout");
        assert_eq!(RequestOutcome::Connect.label(), "connect");
        assert_eq!(RequestOutcome::Error.label(), "error");
    }
}
