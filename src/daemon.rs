//! `ferry run`: apply the files, then fire runs when due. Reloads when a file changes or on
//! SIGHUP; on SIGTERM/SIGINT stops scheduling and lets running exports finish for a grace
//! period (an export cut short leaves only a staged file no consumer sees; the next start
//! completes it). `--once` runs what is due now and exits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use tokio::task::JoinSet;

use crate::api::{ConcurrencyPolicy, ResourceKey};
use crate::check::periodic::ConditionChange;
use crate::ledger::Outcome;
use crate::runner::{RunReport, RunRequest, Runner, ScheduleView, Timetable};
use crate::{Error, Result};

/// Where a due or resumed run executes once it has a run slot: in this process
/// ([`InProcess`], `ferry run` and the controller's default), or handed to something that
/// executes it elsewhere and reports back (the controller's Kubernetes Job executor). The
/// daemon decides, queues and counts the same way for all of them.
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// Executes `request` for `view` to its end and reports it; only state-store failures
    /// are `Err` (see [`Runner::execute`]).
    fn execute(
        &self,
        runner: Runner,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<RunReport>>;
}

/// Runs execute in this process.
#[derive(Debug, Default)]
pub struct InProcess;

impl Executor for InProcess {
    fn execute(
        &self,
        runner: Runner,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<RunReport>> {
        Box::pin(async move { runner.execute(&view, request).await })
    }
}

/// The run slots of `--max-concurrent-runs`: a due run waits for one (fairly, in the order
/// runs came due) before it exports, and counts in `ferry_runs_queued` meanwhile.
#[derive(Clone)]
struct RunSlots {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RunSlots {
    fn new(max: u32) -> Self {
        RunSlots {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max as usize)),
            queued: Default::default(),
        }
    }

    /// Waits for a slot for `view`'s run of `request`; records how long after its slot it
    /// starts.
    async fn wait(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
    ) -> tokio::sync::OwnedSemaphorePermit {
        use std::sync::atomic::Ordering;
        crate::observe::runs_queued(self.queued.fetch_add(1, Ordering::SeqCst) + 1);
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        crate::observe::runs_queued(self.queued.fetch_sub(1, Ordering::SeqCst) - 1);
        if let Ok(now) = crate::clock::now() {
            let late = now.duration_since(request.slot.timestamp());
            crate::observe::run_started(
                &view.key.namespace,
                &view.key.name,
                Duration::try_from(late).unwrap_or_default(),
            );
        }
        slot
    }
}

/// How long files must stay unchanged before a reload reads them.
const SETTLE: Duration = Duration::from_millis(300);

/// A reload that failed for another reason than invalid files (e.g. a CustomerMapping with
/// `deletionPolicy: Delete` whose PSA could not be reached, so nothing was applied) is tried
/// again after this pause, without waiting for the files to change.
const RELOAD_RETRY: Duration = Duration::from_secs(60);

/// How `ferry run` behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The resource files (re-read on change).
    pub files: Vec<PathBuf>,
    /// Run what is due now (and resume interrupted runs), then exit.
    pub once: bool,
    /// How long running exports may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How often files are checked for changes.
    pub poll: Duration,
    /// Run Ferry's SFTP server for the `hostedSftp` connections, with these settings.
    pub sftp: Option<crate::hosted_sftp::HostedSftpConfig>,
    /// Liveness and readiness, ticked by the loop and served with the metrics (a private one
    /// when not given).
    pub health: Option<crate::observe::Health>,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this address (not with `once`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Told of every finished run and PSA sync (the controller turns them into Events).
    pub notify: Option<tokio::sync::mpsc::UnboundedSender<Happened>>,
    /// How many runs may go at once; due runs beyond wait their turn in order (0: the
    /// default, [`DEFAULT_MAX_CONCURRENT_RUNS`]).
    pub max_concurrent_runs: u32,
    /// Where runs execute (none: [`InProcess`]).
    pub executor: Option<Arc<dyn Executor>>,
    /// Check the applied resources periodically (`ferry check`'s checks; not with `once`).
    pub checks: Option<crate::check::periodic::Periodic>,
}

/// `--max-concurrent-runs` when not given: enough to keep a few databases and servers busy,
/// few enough that thousands of schedules due at one slot do not open thousands of
/// connections and staged files at once.
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 16;

/// Something the daemon did that others may want to report.
#[derive(Clone, Debug)]
pub enum Happened {
    /// A run finished (scheduled, caught up or resumed).
    Run(RunReport),
    /// A usage sync or billing push finished.
    Sync(crate::psa::sync::SyncReport),
    /// A periodic check changed a resource's `Reachable` or `SourceReady` condition.
    Checked(crate::check::periodic::ConditionChange),
}

/// What a pass over the schedules did, for `--once`'s exit code.
#[derive(Debug, Default)]
pub struct Summary {
    /// Runs that delivered everywhere.
    pub succeeded: usize,
    /// Runs that failed or delivered only partly.
    pub failed: usize,
    /// CustomerMapping syncs (usage and billing) that succeeded.
    pub syncs_succeeded: usize,
    /// CustomerMapping syncs that failed.
    pub syncs_failed: usize,
}

/// The daemon's loop. `apply` re-applies the files (the CLI's plan + apply) and returns
/// whether they were valid.
pub async fn run<F, Fut>(runner: Runner, options: Options, mut apply: F) -> Result<Summary>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let health = options.health.clone().unwrap_or_default();
    health.stall_limit_at_least(options.poll.saturating_mul(3));
    let metrics = match options.metrics_listen {
        Some(listen) if !options.once => Some(start_metrics(listen, &health).await?),
        _ => None,
    };
    // Taken before the first apply: a file changed while it runs is reloaded, not missed.
    let mut fingerprint = files_fingerprint(&options.files);
    apply().await?;
    health.set_ready(true);
    let sftp = match &options.sftp {
        Some(config) if !options.once => Some(start_sftp(&runner, config.clone()).await?),
        _ => None,
    };
    let mut summary = Summary::default();
    let executor: Arc<dyn Executor> = options.executor.clone().unwrap_or(Arc::new(InProcess));
    let run_slots = RunSlots::new(match options.max_concurrent_runs {
        0 => DEFAULT_MAX_CONCURRENT_RUNS,
        n => n,
    });
    let mut tasks: Tasks = JoinSet::new();
    // Interrupted runs are completed before anything new is decided (as many at once as
    // the run slots allow), so a schedule's next slot never races its resumed one.
    for (view, request) in runner.interrupted_requests().await? {
        let launch = Launch::new(&runner, &executor, &run_slots);
        launch.spawn(&mut tasks, Arc::new(view), request);
    }
    while let Some(joined) = tasks.join_next().await {
        collect(joined, &mut summary, &options.notify);
    }
    let mut running: HashMap<ResourceKey, Vec<tokio::task::AbortHandle>> = HashMap::new();
    let mut retry_reload: Option<std::time::Instant> = None;
    let mut signals = Signals::new()?;
    // When each schedule next needs a decision. Specs change only by an apply (which moves
    // the serial): they are decoded and (re)timed only then.
    let mut timetable = Timetable::new();
    // The serial moves with every apply; the credentials counter when a password is rotated.
    // Read before the timetable and the mappings: an apply meanwhile (the controller's
    // reconcilers run alongside) moves it again and is looked at on the first turn.
    let (mut serial, mut credentials) = runner.store().change_marks().await?;
    runner.retime(&mut timetable).await?;
    // CustomerMapping syncs: one cycle at a time, in the background; due syncs are looked up
    // again when a cycle ends, after an apply, or when the next slot or retry may have come.
    let syncer = std::sync::Arc::new(crate::psa::sync::Syncer::new(
        runner.store().clone(),
        runner.secrets().clone(),
    ));
    let mut mappings = crate::psa::sync::MappingView::all(&runner.store().snapshot().await?);
    let mut sync_cycle: Option<tokio::task::JoinHandle<Vec<crate::psa::sync::SyncReport>>> = None;
    let mut next_sync_check = Timestamp::MIN;
    // Periodic checks: one round at a time, in the background; the first one right away.
    let checks = options
        .checks
        .clone()
        .filter(|c| !c.interval.is_zero() && !options.once);
    let mut check_round: Option<tokio::task::JoinHandle<Result<Vec<ConditionChange>>>> = None;
    // Check alerts go out in the order of the rounds, one round's after the other's: a slow
    // receiver must not hear "passes again" before "failed".
    let check_alerts = Arc::new(tokio::sync::Mutex::new(()));
    let mut last_round = Timestamp::MIN;
    let mut next_round = checks.as_ref().map(|_| Timestamp::MIN);
    // Something was applied while a round ran: another round follows it at once.
    let mut recheck = false;
    loop {
        health.heartbeat();
        let now = crate::clock::now()?;
        let (current, current_credentials) = runner.store().change_marks().await?;
        if current != serial {
            runner.retime(&mut timetable).await?;
            mappings = crate::psa::sync::MappingView::all(&runner.store().snapshot().await?);
            next_sync_check = Timestamp::MIN;
            // What was just applied is checked now, not at the next round.
            if checks.is_some() {
                match check_round {
                    Some(_) => recheck = true,
                    None => next_round = Some(now),
                }
            }
        }
        if check_round.as_ref().is_some_and(|t| t.is_finished()) {
            let finished = check_round.take().expect("checked").await;
            match finished {
                Ok(Ok(changes)) => {
                    for change in changes {
                        tracing::info!(
                            resource = %change.key,
                            condition = change.condition,
                            holds = change.holds,
                            "check: {}",
                            change.message
                        );
                        if let Some(tx) = &options.notify {
                            let _ = tx.send(Happened::Checked(change));
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!("periodic check failed: {e}"),
                Err(e) => tracing::warn!("periodic check task failed: {e}"),
            }
            if std::mem::take(&mut recheck) {
                next_round = Some(now);
            } else if let Some(periodic) = &checks {
                let state = runner.store().snapshot().await?;
                next_round = crate::check::periodic::next_round(last_round, periodic, &state);
            }
        }
        if check_round.is_none()
            && let (Some(periodic), Some(at)) = (&checks, next_round)
            && now >= at
        {
            last_round = now;
            let (store, secrets, periodic, in_order) = (
                runner.store().clone(),
                runner.secrets().clone(),
                periodic.clone(),
                check_alerts.clone(),
            );
            check_round = Some(tokio::spawn(async move {
                let changes =
                    crate::check::periodic::round(&store, &secrets, &periodic, now).await?;
                // Alerts on their own: a slow receiver does not hold the conditions' Events.
                let told = changes.clone();
                tokio::spawn(async move {
                    let _turn = in_order.lock().await;
                    crate::check::periodic::alert(&store, &secrets, &told).await;
                });
                Ok(changes)
            }));
        }
        if sync_cycle.as_ref().is_some_and(|t| t.is_finished()) {
            let reports = sync_cycle
                .take()
                .expect("checked")
                .await
                .unwrap_or_default();
            count_syncs(&mut summary, &reports, &options.notify);
            next_sync_check = Timestamp::MIN;
        }
        if sync_cycle.is_none() && now >= next_sync_check && !mappings.is_empty() {
            let jobs = syncer.due(&mappings, now).await?;
            next_sync_check = next_sync_time(&mappings, now);
            if !jobs.is_empty() {
                tracing::info!(syncs = jobs.len(), "PSA syncs due");
                let syncer = syncer.clone();
                sync_cycle = Some(tokio::spawn(async move { syncer.run(jobs).await }));
            }
        }
        if (current, current_credentials) != (serial, credentials) {
            serial = current;
            credentials = current_credentials;
            if let Some(server) = &sftp {
                sync_sftp_users(&runner, server).await;
            }
        }
        for view in timetable.due(now) {
            let decided = runner.plan_due(&view, now).await?;
            timetable.settled(&view.key, now);
            let Some(request) = decided else {
                continue;
            };
            let busy = running
                .get(&view.key)
                .is_some_and(|h| h.iter().any(|h| !h.is_finished()));
            if busy {
                match view.spec.concurrency_policy {
                    ConcurrencyPolicy::Forbid => {
                        tracing::warn!(schedule = %view.key, "previous run still going: slot skipped");
                        runner.record_skipped(&view, &request, now).await?;
                        continue;
                    }
                    ConcurrencyPolicy::Replace => {
                        tracing::warn!(schedule = %view.key, "previous run still going: replaced");
                        for handle in running.remove(&view.key).unwrap_or_default() {
                            handle.abort();
                        }
                        runner
                            .ledger()
                            .cancel_running(
                                &view.key.namespace,
                                &view.key.name,
                                "replaced by a newer run",
                            )
                            .await?;
                    }
                    ConcurrencyPolicy::Allow => {}
                }
            }
            let key = view.key.clone();
            let handle =
                Launch::new(&runner, &executor, &run_slots).spawn(&mut tasks, view, request);
            running.entry(key).or_default().push(handle);
        }
        if options.once {
            while let Some(joined) = tasks.join_next().await {
                collect(joined, &mut summary, &options.notify);
            }
            if let Some(cycle) = sync_cycle.take() {
                count_syncs(
                    &mut summary,
                    &cycle.await.unwrap_or_default(),
                    &options.notify,
                );
            }
            return Ok(summary);
        }
        let mut wake = next_wake(&mut timetable, now).min(options.poll);
        if let Some(at) = next_round.filter(|_| check_round.is_none()) {
            let until = Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0));
            wake = wake.min(until);
        }
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => collect(joined, &mut summary, &options.notify),
            signal = signals.next() => match signal {
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading the files");
                    retry_reload = reload(&mut apply).await;
                }
                Signal::Stop => {
                    tracing::info!(grace = ?options.shutdown_grace, "stopping: letting running exports finish");
                    health.set_not_ready("shutting down");
                    let drain = async {
                        while let Some(joined) = tasks.join_next().await {
                            collect(joined, &mut summary, &options.notify);
                        }
                    };
                    if tokio::time::timeout(options.shutdown_grace, drain).await.is_err() {
                        tracing::warn!("grace period over: unfinished runs resume on the next start");
                    }
                    if let Some(cycle) = sync_cycle.take() {
                        match tokio::time::timeout(options.shutdown_grace, cycle).await {
                            Ok(reports) => count_syncs(&mut summary, &reports.unwrap_or_default(), &options.notify),
                            Err(_) => tracing::warn!("grace period over: unfinished PSA syncs run again on the next start"),
                        }
                    }
                    if let Some(server) = sftp {
                        server.shutdown().await;
                    }
                    if let Some(server) = metrics {
                        server.shutdown().await;
                    }
                    return Ok(summary);
                }
            },
        }
        running.retain(|_, handles| {
            handles.retain(|h| !h.is_finished());
            !handles.is_empty()
        });
        let current = files_fingerprint(&options.files);
        if current != fingerprint {
            // An editor may still be writing: reload once the files hold still.
            tokio::time::sleep(SETTLE).await;
            if files_fingerprint(&options.files) == current {
                fingerprint = current;
                tracing::info!("files changed: reloading");
                retry_reload = reload(&mut apply).await;
            }
        } else if retry_reload.is_some_and(|at| std::time::Instant::now() >= at) {
            tracing::info!("retrying the reload that failed");
            retry_reload = reload(&mut apply).await;
        }
    }
}

/// Starts Ferry's SFTP server with the applied connections and says where it listens and
/// which host key clients should pin.
async fn start_sftp(
    runner: &Runner,
    config: crate::hosted_sftp::HostedSftpConfig,
) -> Result<crate::hosted_sftp::HostedSftpServer> {
    let users = sftp_users(runner).await?;
    let server = crate::hosted_sftp::start(config, users).await?;
    tracing::info!(
        listen = %server.local_addr(),
        host_key = %server.host_key_line(),
        fingerprint = %server.host_key_fingerprint(),
        "hosted SFTP server started"
    );
    eprintln!(
        "Hosted SFTP on {} (host key {} {})",
        server.local_addr(),
        server.host_key_line(),
        server.host_key_fingerprint()
    );
    Ok(server)
}

/// Starts the metrics and health endpoints and says where.
async fn start_metrics(
    listen: std::net::SocketAddr,
    health: &crate::observe::Health,
) -> Result<crate::observe::ObserveServer> {
    let server = crate::observe::serve(listen, health.clone()).await?;
    tracing::info!(listen = %server.local_addr(), "metrics and health endpoints started");
    eprintln!("Metrics on http://{}/metrics", server.local_addr());
    Ok(server)
}

/// The SFTP users of the applied `hostedSftp` connections, with the hashes of their generated
/// passwords. A user without keys whose password was never issued cannot log in (warned).
async fn sftp_users(runner: &Runner) -> Result<crate::hosted_sftp::Users> {
    let connections = runner.hosted_connections().await?;
    let hashes = runner.store().password_hashes().await?;
    for user in crate::hosted_sftp::users_needing_password(&connections) {
        if !hashes.contains_key(&user) {
            tracing::warn!(
                user,
                "hosted SFTP user has no public key and no password yet: it cannot log in until \
                 `ferry apply` or `ferry rotate-password` issues one"
            );
        }
    }
    crate::hosted_sftp::Users::new(&connections, &hashes)
}

/// Applies the current connections to the running server: added users can log in at once,
/// removed users' sessions are closed.
async fn sync_sftp_users(runner: &Runner, server: &crate::hosted_sftp::HostedSftpServer) {
    match sftp_users(runner).await {
        Ok(users) => {
            let update = server.update_users(users);
            tracing::info!(
                added = ?update.added,
                removed = ?update.removed,
                changed = ?update.changed,
                sessions_closed = update.sessions_closed.len(),
                "hosted SFTP users updated"
            );
            for e in &update.directory_errors {
                tracing::error!("hosted SFTP: {e}");
            }
        }
        Err(e) => tracing::error!("hosted SFTP users not updated: {e}"),
    }
}

/// Applies the files again. Returns when to try again: after [`RELOAD_RETRY`] when the apply
/// failed for another reason than invalid files (those wait for the next change).
async fn reload<F, Fut>(apply: &mut F) -> Option<std::time::Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    match apply().await {
        Ok(()) => None,
        Err(Error::Invalid(diags)) => {
            for d in &diags {
                tracing::error!("{d}");
            }
            tracing::error!("files are invalid: keeping the previous resources");
            None
        }
        Err(Error::NoResources(paths)) => {
            // A checkout in progress looks like this: wait for the next change.
            let paths: Vec<String> = paths.iter().map(|d| d.file.display().to_string()).collect();
            tracing::warn!(
                "the files hold no resources ({}): keeping the previous resources (a checkout \
                 in progress?); start ferry run with --allow-empty to let an empty reload delete them",
                paths.join(", ")
            );
            None
        }
        Err(e) => {
            tracing::error!(
                retry_in = ?RELOAD_RETRY,
                "reload failed, keeping the previous resources: {e}"
            );
            Some(std::time::Instant::now() + RELOAD_RETRY)
        }
    }
}

/// Where [`Happened`] goes, if anywhere.
type Notify = Option<tokio::sync::mpsc::UnboundedSender<Happened>>;

fn collect(
    joined: std::result::Result<(ResourceKey, Result<RunReport>), tokio::task::JoinError>,
    summary: &mut Summary,
    notify: &Notify,
) {
    match joined {
        Ok((_, Ok(report))) => count(summary, &report, notify),
        Ok((key, Err(e))) => {
            summary.failed += 1;
            tracing::error!(schedule = %key, "run could not be recorded: {e}");
        }
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            summary.failed += 1;
            tracing::error!("run task failed: {e}");
        }
    }
}

fn count_syncs(summary: &mut Summary, reports: &[crate::psa::sync::SyncReport], notify: &Notify) {
    for r in reports {
        if let Some(tx) = notify {
            let _ = tx.send(Happened::Sync(r.clone()));
        }
        if r.succeeded {
            summary.syncs_succeeded += 1;
        } else {
            summary.syncs_failed += 1;
        }
    }
}

/// When to look for due syncs again: the earliest next slot of any mapping, and at least
/// every minute (failed syncs are retried with backoff).
fn next_sync_time(mappings: &[crate::psa::sync::MappingView], now: Timestamp) -> Timestamp {
    let minute = now + jiff::SignedDuration::from_secs(60);
    mappings
        .iter()
        .flat_map(|m| {
            [
                crate::psa::ledger::SyncKind::Usage,
                crate::psa::ledger::SyncKind::Billing,
            ]
            .into_iter()
            .filter_map(|k| m.schedule(k)?.next_after(now).map(|z| z.timestamp()))
        })
        .fold(minute, Timestamp::min)
}

fn count(summary: &mut Summary, report: &RunReport, notify: &Notify) {
    if let Some(tx) = notify {
        let _ = tx.send(Happened::Run(report.clone()));
    }
    match report.outcome {
        Outcome::Succeeded => {
            summary.succeeded += 1;
            tracing::info!(
                run = report.run_id,
                outcome = report.outcome.as_str(),
                rows = report.rows,
                bytes = report.bytes,
                file = %report.file_name,
                "run finished"
            );
        }
        _ => {
            summary.failed += 1;
            // The one log line of a failed run (the runner does not log it too).
            tracing::error!(
                schedule = %report.schedule,
                slot = %report.slot,
                run = report.run_id,
                outcome = report.outcome.as_str(),
                "run {}: {}",
                report.outcome.as_str(),
                report.error.as_deref().unwrap_or("no detail")
            );
        }
    }
}

/// Time until the earliest time in the timetable (an hour when it is empty).
fn next_wake(timetable: &mut Timetable, now: Timestamp) -> Duration {
    timetable.next_at().map_or(Duration::from_secs(3600), |at| {
        Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0))
    })
}

/// The daemon's runs in flight, each telling its schedule and report when joined.
type Tasks = JoinSet<(ResourceKey, Result<RunReport>)>;

/// What starting a run needs: it waits for a run slot, then goes to the executor.
struct Launch {
    runner: Runner,
    executor: Arc<dyn Executor>,
    slots: RunSlots,
}

impl Launch {
    fn new(runner: &Runner, executor: &Arc<dyn Executor>, slots: &RunSlots) -> Launch {
        Launch {
            runner: runner.clone(),
            executor: executor.clone(),
            slots: slots.clone(),
        }
    }

    fn spawn(
        self,
        tasks: &mut Tasks,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> tokio::task::AbortHandle {
        tasks.spawn(async move {
            let key = view.key.clone();
            let _slot = self.slots.wait(&view, &request).await;
            let runner = self.runner.clone();
            let report = self
                .executor
                .execute(self.runner, view.clone(), request)
                .await;
            // The schedule's `notify`, before the run counts as done (`--once` waits for it).
            if let Ok(report) = &report {
                runner.alert_run(&view, report).await;
            }
            (key, report)
        })
    }
}

/// Paths, sizes and modification times of the YAML files, to notice edits. The files are
/// those a load reads (each once, symlink loops skipped), so a loop cannot hang the daemon.
fn files_fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = crate::load::list_files(paths)
        .files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect();
    out.sort();
    out
}

enum Signal {
    Reload,
    Stop,
}

struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let make = |kind| signal(kind).map_err(|e| Error::io("<signals>", e));
        Ok(Signals {
            hup: make(SignalKind::hangup())?,
            term: make(SignalKind::terminate())?,
            int: make(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
        }
    }
}
