//! Operations endpoints: Prometheus metrics, liveness and readiness, and the log format.
//!
//! - A process-wide metrics registry. The runner, the daemon and the PSA syncer record into it
//!   with plain functions ([`run_finished`], [`slot_missed`], [`delivery_finished`],
//!   [`psa_sync_finished`], ...), each an in-memory update under a short lock: cheap, no I/O,
//!   never a panic. [`render`] writes it in the Prometheus text exposition format 0.0.4.
//! - [`serve`]: a small HTTP/1.1 server answering `GET /metrics`, `GET /healthz` (the process
//!   loop ticked its [`Health`] heartbeat recently) and `GET /readyz` (the daemon applied its
//!   files; the controller leads or stands by).
//! - [`init_logging`]: human-readable or JSON log lines on standard error.
//!
//! Series are kept for the life of the process: a schedule or mapping deleted while Ferry runs
//! keeps its last values until the next restart (as Prometheus client libraries do).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use jiff::Timestamp;

use crate::{Error, Result};

/// `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long `/healthz` tolerates the process loop not ticking, by default.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(5 * 60);

/// Buckets of `ferry_run_duration_seconds`, in seconds.
pub const RUN_DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

// ---------------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------------

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
    m.deliveries.render(&mut out);
    m.delivered_bytes.render(&mut out);
    m.psa_syncs.render(&mut out);
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

fn timestamp_seconds(t: Timestamp) -> f64 {
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
    delivered_bytes: Counter<2>,
    psa_syncs: Counter<4>,
    psa_last_success: Gauge<3>,
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

// ---------------------------------------------------------------------------------------------
// Metric families and the exposition format
// ---------------------------------------------------------------------------------------------

/// A metric family: one series per distinct set of label values (in the order of `labels`).
struct Family<const N: usize, V> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    series: Mutex<BTreeMap<[String; N], V>>,
}

impl<const N: usize, V: Default> Family<N, V> {
    const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Family {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn update(&self, values: [&str; N], f: impl FnOnce(&mut V)) {
        let mut series = lock(&self.series);
        f(series.entry(values.map(str::to_owned)).or_default());
    }

    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }
}

/// A monotonic counter of whole numbers.
struct Counter<const N: usize>(Family<N, u64>);

impl<const N: usize> Counter<N> {
    const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Counter(Family::new(name, help, labels))
    }

    fn add(&self, values: [&str; N], n: u64) {
        self.0.update(values, |v| *v = v.saturating_add(n));
    }

    fn render(&self, out: &mut String) {
        self.0.header(out, "counter");
        for (values, v) in lock(&self.0.series).iter() {
            sample(
                out,
                self.0.name,
                "",
                &self.0.labels,
                values,
                None,
                &v.to_string(),
            );
        }
    }
}

/// A value that goes up and down.
struct Gauge<const N: usize>(Family<N, f64>);

impl<const N: usize> Gauge<N> {
    const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Gauge(Family::new(name, help, labels))
    }

    fn set(&self, values: [&str; N], value: f64) {
        self.0.update(values, |v| *v = value);
    }

    fn render(&self, out: &mut String) {
        self.0.header(out, "gauge");
        for (values, v) in lock(&self.0.series).iter() {
            sample(
                out,
                self.0.name,
                "",
                &self.0.labels,
                values,
                None,
                &number(*v),
            );
        }
    }
}

/// Observations counted into fixed buckets (upper bounds, ascending; `+Inf` implied).
struct Histogram<const N: usize> {
    family: Family<N, HistogramSeries>,
    buckets: &'static [f64],
}

#[derive(Default)]
struct HistogramSeries {
    /// Observations per bucket, not cumulative: `counts[i]` fell in `(buckets[i-1], buckets[i]]`;
    /// one more slot for those above the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl<const N: usize> Histogram<N> {
    const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        buckets: &'static [f64],
    ) -> Self {
        Histogram {
            family: Family::new(name, help, labels),
            buckets,
        }
    }

    fn observe(&self, values: [&str; N], value: f64) {
        let slot = self
            .buckets
            .iter()
            .position(|le| value <= *le)
            .unwrap_or(self.buckets.len());
        self.family.update(values, |s| {
            if s.counts.len() != self.buckets.len() + 1 {
                s.counts = vec![0; self.buckets.len() + 1];
            }
            s.counts[slot] += 1;
            s.sum += value;
            s.count += 1;
        });
    }

    fn render(&self, out: &mut String) {
        let f = &self.family;
        f.header(out, "histogram");
        for (values, s) in lock(&f.series).iter() {
            let mut cumulative = 0;
            for (i, le) in self.buckets.iter().enumerate() {
                cumulative += s.counts.get(i).copied().unwrap_or(0);
                let le = number(*le);
                let extra = Some(("le", le.as_str()));
                let value = cumulative.to_string();
                sample(out, f.name, "_bucket", &f.labels, values, extra, &value);
            }
            let count = s.count.to_string();
            let inf = Some(("le", "+Inf"));
            sample(out, f.name, "_bucket", &f.labels, values, inf, &count);
            sample(out, f.name, "_sum", &f.labels, values, None, &number(s.sum));
            sample(out, f.name, "_count", &f.labels, values, None, &count);
        }
    }
}

/// A gauge family of one constant series, valued 1.
fn render_constant(out: &mut String, name: &str, help: &str, labels: &[(&str, &str)]) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} gauge");
    let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
    let values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
    sample(out, name, "", &names, &values, None, "1");
}

/// One sample line: `name{label="value",...} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[&str],
    values: &[String],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = labels
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .chain(extra);
    let mut first = true;
    for (label, v) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A label value escaped for the text format: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text escaped for the text format: `\` -> `\\`, newline -> `\n`.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value or bucket bound as the text format spells it (`+Inf`, `-Inf`, `NaN`;
/// otherwise the shortest decimal that reads back the same, e.g. `0.1`, `1`, `3600`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Locks, also after a panic elsewhere poisoned the lock (the data stays consistent: no update
/// can panic half-way).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// Liveness and readiness of the process, shared between its loop (which ticks
/// [`Health::heartbeat`] each iteration and says when it is ready) and the HTTP server.
/// Cheap to clone: every clone is the same state.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    /// The origin of `last_beat`.
    origin: Instant,
    /// Milliseconds from `origin` to the last heartbeat, plus one; 0: no heartbeat yet.
    last_beat: AtomicU64,
    stall_limit_ms: AtomicU64,
    alive: AtomicBool,
    ready: AtomicBool,
    /// Why not ready.
    reason: Mutex<String>,
}

/// What `/healthz` or `/readyz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Healthy (`/healthz`) or ready (`/readyz`).
    pub ok: bool,
    /// The response body: `ok`, or why not.
    pub message: String,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Alive, not ready ("starting"), with the default stall limit (5 minutes).
    pub fn new() -> Health {
        Health {
            inner: Arc::new(HealthInner {
                origin: Instant::now(),
                last_beat: AtomicU64::new(0),
                stall_limit_ms: AtomicU64::new(millis(DEFAULT_STALL_LIMIT)),
                alive: AtomicBool::new(true),
                ready: AtomicBool::new(false),
                reason: Mutex::new("starting".into()),
            }),
        }
    }

    /// How long the loop may go without a heartbeat before `/healthz` fails.
    pub fn with_stall_limit(self, limit: Duration) -> Health {
        self.inner
            .stall_limit_ms
            .store(millis(limit), Ordering::Relaxed);
        self
    }

    /// Raises the stall limit to at least `limit` (e.g. for a loop that sleeps that long).
    pub fn stall_limit_at_least(&self, limit: Duration) {
        self.inner
            .stall_limit_ms
            .fetch_max(millis(limit), Ordering::Relaxed);
    }

    /// The process loop is alive: called each iteration. `/healthz` fails when it has not been
    /// called for longer than the stall limit (the clock starts at the first heartbeat, so a
    /// long start-up, such as resuming interrupted exports, is not a stall).
    pub fn heartbeat(&self) {
        let since = self.inner.origin.elapsed().as_millis();
        let since = u64::try_from(since).unwrap_or(u64::MAX - 1);
        self.inner.last_beat.store(since + 1, Ordering::Relaxed);
    }

    /// Marks the process alive or not (`false`: `/healthz` fails whatever the heartbeat).
    pub fn set_alive(&self, alive: bool) {
        self.inner.alive.store(alive, Ordering::Relaxed);
    }

    /// Ready (`/readyz` answers 200) or not, e.g. the daemon after its first apply.
    pub fn set_ready(&self, ready: bool) {
        if !ready {
            self.set_not_ready("not ready");
        } else {
            self.inner.ready.store(true, Ordering::Relaxed);
        }
    }

    /// Not ready, for `reason` (shown by `/readyz`), e.g. "waiting for leadership".
    pub fn set_not_ready(&self, reason: &str) {
        *lock(&self.inner.reason) = reason.to_string();
        self.inner.ready.store(false, Ordering::Relaxed);
    }

    /// Whether [`Health::set_ready`] said so.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// What `/healthz` answers now.
    pub fn liveness(&self) -> Probe {
        self.liveness_at(Instant::now())
    }

    fn liveness_at(&self, now: Instant) -> Probe {
        if !self.inner.alive.load(Ordering::Relaxed) {
            return Probe::fail("not alive");
        }
        let beat = self.inner.last_beat.load(Ordering::Relaxed);
        if beat == 0 {
            return Probe::pass();
        }
        let since_origin =
            u64::try_from(now.saturating_duration_since(self.inner.origin).as_millis())
                .unwrap_or(u64::MAX);
        let quiet = since_origin.saturating_sub(beat - 1);
        let limit = self.inner.stall_limit_ms.load(Ordering::Relaxed);
        if quiet > limit {
            return Probe::fail(&format!(
                "stalled: the process loop has not ticked for {}s (limit {}s)",
                quiet / 1000,
                limit / 1000
            ));
        }
        Probe::pass()
    }

    /// What `/readyz` answers now.
    pub fn readiness(&self) -> Probe {
        if self.is_ready() {
            Probe::pass()
        } else {
            Probe::fail(&format!("not ready: {}", lock(&self.inner.reason)))
        }
    }
}

impl Probe {
    fn pass() -> Probe {
        Probe {
            ok: true,
            message: "ok".into(),
        }
    }

    fn fail(message: &str) -> Probe {
        Probe {
            ok: false,
            message: message.to_string(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// The running operations server.
pub struct ObserveServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ObserveServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and closes the open ones. (Dropping the server stops it
    /// too, without waiting.)
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds `listen` (port 0: any free port) and serves `/metrics`, `/healthz` and `/readyz`
/// until [`ObserveServer::shutdown`].
pub async fn serve(listen: SocketAddr, health: Health) -> Result<ObserveServer> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Usage(format!("metrics: cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("metrics: {e}")))?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        // Dropped with the accept loop: open connections close when the server stops.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => return,
            };
            // Reap finished connections.
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = accepted else {
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let health = health.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let health = health.clone();
                    async move { Ok::<_, Infallible>(answer(&health, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(ObserveServer { addr, stop, task })
}

fn answer(health: &Health, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(404, "not found\n");
    }
    if req.method() != hyper::Method::GET {
        let mut response = text(405, "method not allowed: use GET\n");
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = text(200, &render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        "/healthz" => probe(health.liveness()),
        _ => probe(health.readiness()),
    }
}

fn probe(p: Probe) -> hyper::Response<Full<Bytes>> {
    text(if p.ok { 200 } else { 503 }, &format!("{}\n", p.message))
}

fn text(status: u16, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the event's
    /// fields), for log collectors.
    Json,
}

/// Installs the global log subscriber (once; later calls do nothing): level from `-v` (warn,
/// info, debug, trace) unless `FERRY_LOG` holds a filter, lines on standard error in `format`,
/// with ANSI colours only when `ansi` (see `cli::use_color`: a file or pipe never gets them).
pub fn init_logging(verbose: u8, format: LogFormat, ansi: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // suppaftp traces every FTP command it sends, the password of `PASS` included: never
        // let those records through, whatever the level asked for.
        .add_directive("suppaftp=off".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered<F: FnOnce(&mut String)>(f: F) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn a_counter_renders_help_type_and_one_sorted_line_per_label_set() {
        let c = Counter::new("t_things_total", "Things counted.", ["a", "b"]);
        c.add(["x", "y"], 2);
        c.add(["x", "y"], 3);
        c.add(["m", "z"], 1);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_things_total Things counted.\n\
             # TYPE t_things_total counter\n\
             t_things_total{a=\"m\",b=\"z\"} 1\n\
             t_things_total{a=\"x\",b=\"y\"} 5\n"
        );
    }

    #[test]
    fn a_family_without_series_still_renders_its_help_and_type() {
        let c = Counter::new("t_empty_total", "Nothing yet.", ["a"]);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_empty_total Nothing yet.\n# TYPE t_empty_total counter\n"
        );
    }

    #[test]
    fn a_gauge_keeps_the_last_value_set() {
        let g = Gauge::new("t_when_seconds", "When.", ["job"]);
        g.set(["j"], 1.0);
        g.set(
            ["j"],
            timestamp_seconds("2026-07-30T15:30:01.5Z".parse().unwrap()),
        );
        assert_eq!(
            rendered(|o| g.render(o)),
            "# HELP t_when_seconds When.\n\
             # TYPE t_when_seconds gauge\n\
             t_when_seconds{job=\"j\"} 1785425401.5\n"
        );
    }

    #[test]
    fn a_histogram_counts_cumulative_buckets_with_inf_sum_and_count() {
        let h = Histogram::new("t_took_seconds", "Took.", ["s"], &[0.1, 0.5, 1.0]);
        for v in [0.05, 0.5, 0.7, 2.0] {
            h.observe(["r"], v);
        }
        assert_eq!(
            rendered(|o| h.render(o)),
            "# HELP t_took_seconds Took.\n\
             # TYPE t_took_seconds histogram\n\
             t_took_seconds_bucket{s=\"r\",le=\"0.1\"} 1\n\
             t_took_seconds_bucket{s=\"r\",le=\"0.5\"} 2\n\
             t_took_seconds_bucket{s=\"r\",le=\"1\"} 3\n\
             t_took_seconds_bucket{s=\"r\",le=\"+Inf\"} 4\n\
             t_took_seconds_sum{s=\"r\"} 3.25\n\
             t_took_seconds_count{s=\"r\"} 4\n"
        );
    }

    #[test]
    fn an_observation_on_a_bucket_bound_counts_in_that_bucket() {
        let h = Histogram::new("t_bound_seconds", "Bound.", ["s"], RUN_DURATION_BUCKETS);
        h.observe(["r"], 3600.0);
        h.observe(["r"], 3600.5);
        let out = rendered(|o| h.render(o));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"900\"} 0\n"));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"3600\"} 1\n"));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("t_bound_seconds_count{s=\"r\"} 2\n"));
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let c = Counter::new("t_escaped_total", "Escaped.", ["v"]);
        c.add(["a\\b\"c\nd"], 1);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_escaped_total Escaped.\n\
             # TYPE t_escaped_total counter\n\
             t_escaped_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
        );
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        let out = rendered(|o| render_constant(o, "t_c", "a\\b\nc \"q\"", &[]));
        assert_eq!(
            out,
            "# HELP t_c a\\\\b\\nc \"q\"\n# TYPE t_c gauge\nt_c 1\n"
        );
    }

    #[test]
    fn special_values_are_spelled_as_the_format_requires() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(60.0), "60");
    }

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

    #[test]
    fn health_is_alive_until_the_loop_stops_ticking_for_longer_than_the_stall_limit() {
        let h = Health::new().with_stall_limit(Duration::from_secs(10));
        let start = Instant::now();
        // No heartbeat yet: starting up is not a stall.
        assert!(h.liveness_at(start + Duration::from_secs(3600)).ok);
        h.heartbeat();
        let beat = Instant::now();
        assert!(h.liveness_at(beat + Duration::from_secs(5)).ok);
        let stalled = h.liveness_at(beat + Duration::from_secs(20));
        assert!(!stalled.ok);
        assert!(
            stalled.message.starts_with("stalled:"),
            "{}",
            stalled.message
        );
        h.stall_limit_at_least(Duration::from_secs(60));
        assert!(h.liveness_at(beat + Duration::from_secs(20)).ok);
        h.stall_limit_at_least(Duration::from_secs(1));
        assert!(
            h.liveness_at(beat + Duration::from_secs(20)).ok,
            "never lowered"
        );
        h.set_alive(false);
        assert_eq!(h.liveness(), Probe::fail("not alive"));
    }

    #[test]
    fn health_clones_share_readiness_and_say_why_they_are_not_ready() {
        let h = Health::default();
        let other = h.clone();
        assert_eq!(h.readiness(), Probe::fail("not ready: starting"));
        other.set_ready(true);
        assert!(h.readiness().ok);
        other.set_not_ready("waiting for leadership");
        assert_eq!(
            h.readiness(),
            Probe::fail("not ready: waiting for leadership")
        );
    }

    /// One HTTP/1.1 request on a fresh connection: (status, headers lower-cased, body).
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn the_server_answers_metrics_health_and_readiness_and_refuses_the_rest() {
        let health = Health::new();
        let server = serve("127.0.0.1:0".parse().unwrap(), health.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        slot_missed("obs-http", "orders");

        let (status, head, body) = request(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains(
                "\nferry_slots_missed_total{namespace=\"obs-http\",schedule=\"orders\"} 1\n"
            ),
            "{body}"
        );
        assert!(body.ends_with("ferry_up 1\n"));

        let (status, _, body) = request(addr, "GET", "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, _, body) = request(addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready: starting\n"));
        health.set_ready(true);
        let (status, _, body) = request(addr, "GET", "/readyz?verbose").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let (status, _, _) = request(addr, "GET", "/nope").await;
        assert_eq!(status, 404);
        let (status, head, _) = request(addr, "POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(head.contains("allow: get"), "{head}");

        health.set_alive(false);
        let (status, _, body) = request(addr, "GET", "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "not alive\n"));

        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn serving_on_an_address_in_use_fails_with_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Health::new()).await.err().unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
