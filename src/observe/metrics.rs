//! The process-wide metrics registry: every metric Ferry exports, the functions the runner,
//! the daemon, the PSA syncer and the hosted SFTP server record with ([`run_finished`],
//! [`slot_missed`], ...), and [`render`], which writes them all for `/metrics`.

use std::time::Duration;

use jiff::Timestamp;

use super::exposition::{Counter, Gauge, Histogram, render_constant};

/// Buckets of `ferry_run_duration_seconds`, in seconds.
pub const RUN_DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Records a finished run of ReportSchedule `namespace/schedule`: `trigger` (`schedule`,
/// `catch-up`, `run-now`, `backfill`, `resume`), `outcome` (`succeeded`, `partial`, `failed`,
/// ...), how long it took, the rows and bytes it exported, and when it finished (the
/// last-success gauge moves only for `succeeded`).
#[allow(clippy::too_many_arguments)]
pub fn run_finished(
    namespace: &str,
    schedule: &str,
    trigger: &str,
    outcome: &str,
    duration: Duration,
    rows: u64,
    bytes: u64,
    finished_at: Timestamp,
) {
    let m = &METRICS;
    m.runs.add([namespace, schedule, trigger, outcome], 1);
    m.run_duration
        .observe([namespace, schedule], duration.as_secs_f64());
    m.rows.add([namespace, schedule], rows);
    m.bytes.add([namespace, schedule], bytes);
    if outcome == "succeeded" {
        m.last_success
            .set([namespace, schedule], timestamp_seconds(finished_at));
    }
}

/// Records a slot of `namespace/schedule` that came while its previous run was still going and
/// was not run (`concurrencyPolicy: Forbid`): `ferry_runs_total{outcome="skipped"}`, with no
/// duration, rows or bytes.
pub fn run_skipped(namespace: &str, schedule: &str, trigger: &str) {
    METRICS
        .runs
        .add([namespace, schedule, trigger, "skipped"], 1);
}

/// Records a slot of `namespace/schedule` that will never run (missed beyond
/// `startingDeadline`, or superseded by a later slot after downtime).
pub fn slot_missed(namespace: &str, schedule: &str) {
    METRICS.slots_missed.add([namespace, schedule], 1);
}

/// Counts deliveries waiting for a turn at DeliveryTarget `namespace/target`
/// (`maxConnections`): `change` is +1 when one starts waiting, -1 when it gets its turn.
pub fn delivery_waiting(namespace: &str, target: &str, change: i64) {
    METRICS
        .deliveries_waiting
        .add([namespace, target], change as f64);
}

/// Records a periodic check of `kind/namespace/name` (`check`: `source`, `delivery`, ...):
/// `ferry_check_failures_total` counts the failed ones, `ferry_check_failing` is 1 while the
/// last one failed.
pub fn check_finished(kind: &str, namespace: &str, name: &str, check: &str, failed: bool) {
    if failed {
        METRICS
            .check_failures
            .add([kind, namespace, name, check], 1);
    }
    METRICS
        .check_failing
        .set([kind, namespace, name, check], f64::from(u8::from(failed)));
}

/// Records an alert (a schedule's `notify`) sent to DeliveryTarget `target`, or not.
pub fn alert_sent(namespace: &str, target: &str, event: &str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    METRICS.alerts.add([namespace, target, event, outcome], 1);
}

/// Sets how many due runs wait for a run slot (`--max-concurrent-runs`).
pub fn runs_queued(n: usize) {
    METRICS.runs_queued.set([], n as f64);
}

/// Records how long after its slot a run started (the queue and the scheduler's tick).
pub fn run_started(namespace: &str, schedule: &str, delay: Duration) {
    METRICS
        .run_start_delay
        .observe([namespace, schedule], delay.as_secs_f64());
}

/// Records the result of delivering one run of `namespace/schedule` to DeliveryTarget
/// `target`, after its retries: `outcome` is `succeeded`, `failed` or `already-delivered`.
/// `bytes` (the file's size) count as delivered only for `succeeded`.
pub fn delivery_finished(namespace: &str, schedule: &str, target: &str, outcome: &str, bytes: u64) {
    let m = &METRICS;
    m.deliveries.add([namespace, schedule, target, outcome], 1);
    if outcome == "succeeded" {
        m.delivered_bytes.add([namespace, target], bytes);
    }
}

/// Records a finished sync of CustomerMapping `namespace/mapping`: `kind` is `usage` or
/// `billing`; the last-success gauge moves only when it succeeded.
pub fn psa_sync_finished(
    namespace: &str,
    mapping: &str,
    kind: &str,
    succeeded: bool,
    finished_at: Timestamp,
) {
    let m = &METRICS;
    let outcome = if succeeded { "succeeded" } else { "failed" };
    m.psa_syncs.add([namespace, mapping, kind, outcome], 1);
    if succeeded {
        m.psa_last_success
            .set([namespace, mapping, kind], timestamp_seconds(finished_at));
    }
}

/// Records a connection to the hosted SFTP server turned away: `reason` is `penalized`,
/// `source-limit` or `startups` (before login), `sessions`, `user-sessions` or `evicted` (at
/// login).
pub fn sftp_connection_refused(reason: &str) {
    METRICS.sftp_refused.add([reason], 1);
}

/// Records a hosted SFTP connection that ended without logging in: `reason` is
/// `grace-exceeded`, `noauth`, `authfail`, `evicted` or `shutdown`.
pub fn sftp_unauthenticated_closed(reason: &str) {
    METRICS.sftp_unauthenticated_closed.add([reason], 1);
}

/// Sets the hosted SFTP server's gauges: connections waiting to log in, logged-in sessions,
/// and sources refused now for a penalty.
pub fn sftp_connections(unauthenticated: usize, sessions: usize, penalized_sources: usize) {
    let m = &METRICS;
    m.sftp_unauthenticated.set([], unauthenticated as f64);
    m.sftp_sessions.set([], sessions as f64);
    m.sftp_penalized.set([], penalized_sources as f64);
}

/// Records a hosted SFTP login attempt: `method` `publickey` or `password`, `outcome`
/// `succeeded`, `failed` (checked and wrong) or `refused` (not checked: locked out, or too
/// many attempts under way).
pub fn sftp_login(method: &str, outcome: &str) {
    METRICS.sftp_logins.add([method, outcome], 1);
}

/// Records a hosted SFTP lock-out starting, of an `address` or a `user`.
pub fn sftp_lockout(subject: &str) {
    METRICS.sftp_lockouts.add([subject], 1);
}

/// Records a hosted SFTP session disconnected for exceeding a per-session limit: `limit` is
/// `requests` or `buffer`.
pub fn sftp_session_limit_exceeded(limit: &str) {
    METRICS.sftp_limit_disconnects.add([limit], 1);
}

/// Every metric of the process, in the Prometheus text exposition format 0.0.4.
pub fn render() -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(4096);
    m.runs.render(&mut out);
    m.run_duration.render(&mut out);
    m.rows.render(&mut out);
    m.bytes.render(&mut out);
    m.last_success.render(&mut out);
    m.slots_missed.render(&mut out);
    m.runs_queued.render(&mut out);
    m.run_start_delay.render(&mut out);
    m.deliveries.render(&mut out);
    m.deliveries_waiting.render(&mut out);
    m.delivered_bytes.render(&mut out);
    m.psa_syncs.render(&mut out);
    m.check_failures.render(&mut out);
    m.alerts.render(&mut out);
    m.check_failing.render(&mut out);
    m.psa_last_success.render(&mut out);
    m.sftp_unauthenticated.render(&mut out);
    m.sftp_sessions.render(&mut out);
    m.sftp_penalized.render(&mut out);
    m.sftp_refused.render(&mut out);
    m.sftp_unauthenticated_closed.render(&mut out);
    m.sftp_logins.render(&mut out);
    m.sftp_lockouts.render(&mut out);
    m.sftp_limit_disconnects.render(&mut out);
    render_constant(
        &mut out,
        "ferry_build_info",
        "Ferry's version; always 1.",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    render_constant(
        &mut out,
        "ferry_up",
        "1 while this Ferry process serves metrics.",
        &[],
    );
    out
}

pub(super) fn timestamp_seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

struct Metrics {
    runs: Counter<4>,
    run_duration: Histogram<2>,
    rows: Counter<2>,
    bytes: Counter<2>,
    last_success: Gauge<2>,
    slots_missed: Counter<2>,
    deliveries: Counter<4>,
    deliveries_waiting: Gauge<2>,
    runs_queued: Gauge<0>,
    run_start_delay: Histogram<2>,
    delivered_bytes: Counter<2>,
    psa_syncs: Counter<4>,
    psa_last_success: Gauge<3>,
    check_failures: Counter<4>,
    check_failing: Gauge<4>,
    alerts: Counter<4>,
    sftp_unauthenticated: Gauge<0>,
    sftp_sessions: Gauge<0>,
    sftp_penalized: Gauge<0>,
    sftp_refused: Counter<1>,
    sftp_unauthenticated_closed: Counter<1>,
    sftp_logins: Counter<2>,
    sftp_lockouts: Counter<1>,
    sftp_limit_disconnects: Counter<1>,
}

static METRICS: Metrics = Metrics {
    check_failures: Counter::new(
        "ferry_check_failures_total",
        "Periodic checks (the daemon's ferry check) that failed, by resource and check.",
        ["kind", "namespace", "name", "check"],
    ),
    check_failing: Gauge::new(
        "ferry_check_failing",
        "1 while the last periodic check of a resource failed, 0 once it passes.",
        ["kind", "namespace", "name", "check"],
    ),
    alerts: Counter::new(
        "ferry_alerts_total",
        "Alerts (notify) to a webhook or email target, by event and outcome (sent, failed).",
        ["namespace", "target", "event", "outcome"],
    ),
    runs: Counter::new(
        "ferry_runs_total",
        "ReportSchedule runs finished, by trigger and outcome (skipped: the previous run was still going).",
        ["namespace", "schedule", "trigger", "outcome"],
    ),
    run_duration: Histogram::new(
        "ferry_run_duration_seconds",
        "How long ReportSchedule runs took, export and deliveries.",
        ["namespace", "schedule"],
        RUN_DURATION_BUCKETS,
    ),
    rows: Counter::new(
        "ferry_rows_exported_total",
        "Rows exported by ReportSchedule runs.",
        ["namespace", "schedule"],
    ),
    bytes: Counter::new(
        "ferry_bytes_exported_total",
        "Bytes of report files exported by ReportSchedule runs.",
        ["namespace", "schedule"],
    ),
    last_success: Gauge::new(
        "ferry_last_success_timestamp_seconds",
        "When the last successful run of a ReportSchedule finished (Unix time).",
        ["namespace", "schedule"],
    ),
    slots_missed: Counter::new(
        "ferry_slots_missed_total",
        "ReportSchedule slots that never ran (beyond startingDeadline, or superseded after downtime).",
        ["namespace", "schedule"],
    ),
    deliveries: Counter::new(
        "ferry_deliveries_total",
        "Deliveries of a run to a DeliveryTarget, after retries, by outcome.",
        ["namespace", "schedule", "target", "outcome"],
    ),
    deliveries_waiting: Gauge::new(
        "ferry_deliveries_waiting",
        "Deliveries waiting for a turn at a DeliveryTarget (maxConnections).",
        ["namespace", "target"],
    ),
    runs_queued: Gauge::new(
        "ferry_runs_queued",
        "Due runs waiting for a run slot (--max-concurrent-runs).",
        [],
    ),
    run_start_delay: Histogram::new(
        "ferry_run_start_delay_seconds",
        "How long after its slot a run started (queueing included).",
        ["namespace", "schedule"],
        RUN_DURATION_BUCKETS,
    ),
    delivered_bytes: Counter::new(
        "ferry_delivered_bytes_total",
        "Bytes delivered to a DeliveryTarget.",
        ["namespace", "target"],
    ),
    psa_syncs: Counter::new(
        "ferry_psa_syncs_total",
        "CustomerMapping syncs (usage, billing) finished, by outcome.",
        ["namespace", "mapping", "kind", "outcome"],
    ),
    psa_last_success: Gauge::new(
        "ferry_psa_last_success_timestamp_seconds",
        "When the last successful sync of a CustomerMapping finished (Unix time).",
        ["namespace", "mapping", "kind"],
    ),
    sftp_unauthenticated: Gauge::new(
        "ferry_sftp_unauthenticated_connections",
        "Hosted SFTP connections open and not logged in yet.",
        [],
    ),
    sftp_sessions: Gauge::new("ferry_sftp_sessions", "Hosted SFTP sessions logged in.", []),
    sftp_penalized: Gauge::new(
        "ferry_sftp_penalized_sources",
        "Source addresses whose hosted SFTP connections are refused for a penalty now.",
        [],
    ),
    sftp_refused: Counter::new(
        "ferry_sftp_connections_refused_total",
        "Hosted SFTP connections turned away, by reason (penalized, source-limit, startups before login; sessions, user-sessions, evicted at login).",
        ["reason"],
    ),
    sftp_unauthenticated_closed: Counter::new(
        "ferry_sftp_unauthenticated_closed_total",
        "Hosted SFTP connections that ended without logging in, by reason (grace-exceeded, noauth, authfail, evicted, shutdown).",
        ["reason"],
    ),
    sftp_logins: Counter::new(
        "ferry_sftp_logins_total",
        "Hosted SFTP login attempts by method and outcome (refused: not checked, locked out or too many under way).",
        ["method", "outcome"],
    ),
    sftp_lockouts: Counter::new(
        "ferry_sftp_lockouts_total",
        "Hosted SFTP lock-outs started, of an address or a user.",
        ["subject"],
    ),
    sftp_limit_disconnects: Counter::new(
        "ferry_sftp_limit_disconnects_total",
        "Hosted SFTP sessions disconnected for exceeding a per-session limit (requests, buffer).",
        ["limit"],
    ),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_shows_in_every_run_metric() {
        let (ns, s) = ("obs-run", "orders");
        let at: Timestamp = "2026-07-30T15:30:07Z".parse().unwrap();
        run_finished(
            ns,
            s,
            "schedule",
            "succeeded",
            Duration::from_millis(1200),
            42,
            1000,
            at,
        );
        run_finished(
            ns,
            s,
            "catch-up",
            "failed",
            Duration::from_millis(300),
            0,
            0,
            at + jiff::SignedDuration::from_secs(60),
        );
        run_skipped(ns, s, "schedule");
        slot_missed(ns, s);
        slot_missed(ns, s);
        let out = render();
        let l = "namespace=\"obs-run\",schedule=\"orders\"";
        for line in [
            format!("ferry_runs_total{{{l},trigger=\"schedule\",outcome=\"succeeded\"}} 1"),
            format!("ferry_runs_total{{{l},trigger=\"catch-up\",outcome=\"failed\"}} 1"),
            format!("ferry_runs_total{{{l},trigger=\"schedule\",outcome=\"skipped\"}} 1"),
            format!("ferry_run_duration_seconds_bucket{{{l},le=\"0.1\"}} 0"),
            format!("ferry_run_duration_seconds_bucket{{{l},le=\"0.5\"}} 1"),
            format!("ferry_run_duration_seconds_bucket{{{l},le=\"5\"}} 2"),
            format!("ferry_run_duration_seconds_bucket{{{l},le=\"+Inf\"}} 2"),
            format!("ferry_run_duration_seconds_sum{{{l}}} 1.5"),
            format!("ferry_run_duration_seconds_count{{{l}}} 2"),
            format!("ferry_rows_exported_total{{{l}}} 42"),
            format!("ferry_bytes_exported_total{{{l}}} 1000"),
            // The failed run a minute later does not move the last success.
            format!("ferry_last_success_timestamp_seconds{{{l}}} 1785425407"),
            format!("ferry_slots_missed_total{{{l}}} 2"),
        ] {
            assert!(
                out.contains(&format!("\n{line}\n")),
                "missing {line} in\n{out}"
            );
        }
    }

    #[test]
    fn deliveries_count_by_outcome_and_only_successes_add_bytes() {
        delivery_finished("obs-dlv", "orders", "sftp-acme", "succeeded", 500);
        delivery_finished("obs-dlv", "orders", "sftp-acme", "failed", 500);
        delivery_finished("obs-dlv", "orders", "sftp-acme", "already-delivered", 500);
        delivery_finished("obs-dlv", "refunds", "sftp-acme", "succeeded", 20);
        let out = render();
        for line in [
            "ferry_deliveries_total{namespace=\"obs-dlv\",schedule=\"orders\",target=\"sftp-acme\",outcome=\"succeeded\"} 1",
            "ferry_deliveries_total{namespace=\"obs-dlv\",schedule=\"orders\",target=\"sftp-acme\",outcome=\"failed\"} 1",
            "ferry_deliveries_total{namespace=\"obs-dlv\",schedule=\"orders\",target=\"sftp-acme\",outcome=\"already-delivered\"} 1",
            "ferry_delivered_bytes_total{namespace=\"obs-dlv\",target=\"sftp-acme\"} 520",
        ] {
            assert!(
                out.contains(&format!("\n{line}\n")),
                "missing {line} in\n{out}"
            );
        }
    }

    #[test]
    fn psa_syncs_count_by_outcome_and_only_successes_move_the_timestamp() {
        let at: Timestamp = "2026-08-01T06:00:00Z".parse().unwrap();
        psa_sync_finished("obs-psa", "acme", "usage", true, at);
        psa_sync_finished(
            "obs-psa",
            "acme",
            "usage",
            false,
            at + jiff::SignedDuration::from_secs(5),
        );
        psa_sync_finished("obs-psa", "acme", "billing", false, at);
        let out = render();
        let l = "namespace=\"obs-psa\",mapping=\"acme\"";
        for line in [
            format!("ferry_psa_syncs_total{{{l},kind=\"usage\",outcome=\"succeeded\"}} 1"),
            format!("ferry_psa_syncs_total{{{l},kind=\"usage\",outcome=\"failed\"}} 1"),
            format!("ferry_psa_syncs_total{{{l},kind=\"billing\",outcome=\"failed\"}} 1"),
            format!("ferry_psa_last_success_timestamp_seconds{{{l},kind=\"usage\"}} 1785564000"),
        ] {
            assert!(
                out.contains(&format!("\n{line}\n")),
                "missing {line} in\n{out}"
            );
        }
        assert!(!out.contains("ferry_psa_last_success_timestamp_seconds{namespace=\"obs-psa\",mapping=\"acme\",kind=\"billing\"}"));
    }

    #[test]
    fn the_registry_declares_every_family_once_and_ends_with_build_info_and_up() {
        let out = render();
        for (name, kind) in [
            ("ferry_runs_total", "counter"),
            ("ferry_run_duration_seconds", "histogram"),
            ("ferry_rows_exported_total", "counter"),
            ("ferry_bytes_exported_total", "counter"),
            ("ferry_last_success_timestamp_seconds", "gauge"),
            ("ferry_slots_missed_total", "counter"),
            ("ferry_deliveries_total", "counter"),
            ("ferry_delivered_bytes_total", "counter"),
            ("ferry_psa_syncs_total", "counter"),
            ("ferry_psa_last_success_timestamp_seconds", "gauge"),
            ("ferry_build_info", "gauge"),
            ("ferry_up", "gauge"),
        ] {
            let type_line = format!("# TYPE {name} {kind}\n");
            assert_eq!(out.matches(&type_line).count(), 1, "{type_line}");
            assert_eq!(out.matches(&format!("# HELP {name} ")).count(), 1, "{name}");
        }
        let version = env!("CARGO_PKG_VERSION");
        assert!(out.ends_with(&format!(
            "ferry_build_info{{version=\"{version}\"}} 1\n\
             # HELP ferry_up 1 while this Ferry process serves metrics.\n\
             # TYPE ferry_up gauge\n\
             ferry_up 1\n"
        )));
    }
}
