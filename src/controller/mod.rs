//! `ferry controller`: the same resources, reconciled from a Kubernetes cluster.
//!
//! One kube-runtime controller per kind, each reconcile wrapped in kube's [`finalizer`]: the
//! object and the others of its namespace (from the controllers' caches) are handed, typed, to
//! the very pipeline file mode uses ([`crate::pipeline`]: validate -> desired state -> plan ->
//! apply); only where desired state comes from differs. Secrets referenced by the objects are read from the cluster and mirrored into
//! a private directory in the layout of a mounted Secret, so exports, deliveries and PSA syncs
//! read them exactly as in file mode. Status is written with server-side apply on the status
//! subresource: `observedGeneration`, `Ready` (validation) and what the runs and syncs report.
//!
//! Runs and syncs are the daemon's ([`crate::daemon`]): the controller starts it on the same
//! state, without files, so schedules, PSA syncs and the hosted SFTP server behave exactly as
//! under `ferry run`.

pub mod events;
pub mod jobs;
mod leadership;
pub mod lease;
pub mod objects;
pub mod plan;
mod reconcile;
pub mod secrets;
mod writes;

pub use leadership::ROLE_LABEL;
pub use objects::{FerryObject, Namespace, RUN_NOW_ANNOTATION, key_of, origin_label, resource_of};
pub use reconcile::{
    Backoff, Caches, Context, FINALIZER, INVALID_REQUEUE, ReconcileError, STATUS_REQUEUE, apply,
    cleanup, error_policy, password_secret_name, reconcile,
};
pub use writes::{
    Applied, FIELD_MANAGER, apply_object, event, forget_object, patch_status, status_for,
};

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;

use crate::api::{CustomerMapping, DeliveryTarget, ReportSchedule};
use crate::state::StateStore;
use crate::{Error, Result};
use leadership::{label_pod, lead, lock_shared_state};

/// How `ferry controller` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Where referenced Secrets are mirrored (a private, preferably memory-backed directory).
    pub secrets_dir: std::path::PathBuf,
    /// The hosted SFTP server, when enabled.
    pub sftp: Option<crate::hosted_sftp::HostedSftpConfig>,
    /// The pod's name, for Events.
    pub instance: String,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Take part in leader election on this Lease: only the leader reconciles and runs.
    pub leader_election: Option<lease::LeaseConfig>,
    /// Once elected, take this (shared PostgreSQL) state's lock before running anything.
    pub lock_when_elected: Option<std::path::PathBuf>,
    /// Runs at once (see [`crate::daemon::Options::max_concurrent_runs`]).
    pub max_concurrent_runs: u32,
    /// Execute each run in a Kubernetes Job made like this ([`jobs`]) instead of in this
    /// process.
    pub jobs: Option<jobs::JobSettings>,
    /// Check the applied resources periodically (see [`crate::check::periodic`]).
    pub checks: Option<crate::check::periodic::Periodic>,
}

/// The items of `rx` as a stream.
fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Runs the three controllers and the scheduler until SIGTERM.
pub async fn run(store: StateStore, options: Options) -> Result<()> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Usage(format!("cannot reach the Kubernetes API: {e}")))?;
    let mirror = secrets::SecretMirror::new(&options.secrets_dir)?;
    let runner = crate::runner::Runner::new(store.clone(), mirror.files().clone());
    let executor: Arc<dyn crate::daemon::Executor> = match options.jobs.clone() {
        Some(settings) => Arc::new(jobs::JobExecutor::new(client.clone(), settings)),
        None => Arc::new(jobs::InProcessMirrored::new(client.clone(), mirror.clone())),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(options.instance.clone()),
        },
    );
    fn api<K: FerryObject>(client: &Client, ns: &Option<String>) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    // A check that changes a condition reconciles its object at once (see `events::publish`).
    let (schedule_checked, schedules_rechecked) = tokio::sync::mpsc::unbounded_channel();
    let (target_checked, targets_rechecked) = tokio::sync::mpsc::unbounded_channel();
    let schedules = Controller::new(
        api::<ReportSchedule>(&client, &options.namespace),
        watcher::Config::default(),
    )
    .reconcile_on(receiver_stream(schedules_rechecked));
    let targets = Controller::new(
        api::<DeliveryTarget>(&client, &options.namespace),
        watcher::Config::default(),
    )
    .reconcile_on(receiver_stream(targets_rechecked));
    let mappings = Controller::new(
        api::<CustomerMapping>(&client, &options.namespace),
        watcher::Config::default(),
    );
    let (schedules_cache, mappings_cache, targets_cache) =
        (schedules.store(), mappings.store(), targets.store());
    let caches = Caches {
        schedules: Some(schedules.store()),
        targets: Some(targets.store()),
        mappings: Some(mappings.store()),
    };
    let ctx = Arc::new((
        Context {
            client: client.clone(),
            store: store.clone(),
            secrets: mirror,
            recorder,
            runner: runner.clone(),
            executor: Some(executor.clone()),
            backoff: Backoff::default(),
        },
        caches,
    ));
    let health = crate::observe::Health::new();
    let observe_server = match options.metrics_listen {
        Some(listen) => {
            let server = crate::observe::serve(listen, health.clone()).await?;
            eprintln!("Metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    if let Some(config) = options.leader_election.clone() {
        label_pod(&client, &config.namespace, &options.instance, "standby").await;
        lead(&client, config, &health).await?;
    }
    let _state_lock = match &options.lock_when_elected {
        Some(state) => Some(lock_shared_state(state, &health).await?),
        None => None,
    };
    if let Some(config) = &options.leader_election {
        label_pod(&client, &config.namespace, &options.instance, "leader").await;
    }
    // Runs, PSA syncs and the hosted SFTP server: the daemon, fed by the state the
    // reconciles write instead of by files. It ticks the liveness heartbeat and reports ready
    // once it runs.
    // What the scheduler does on its own becomes Events on the objects.
    let (notify, happened) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn(events::publish(
        happened,
        ctx.0.recorder.clone(),
        events::Caches {
            schedules: schedules_cache,
            mappings: mappings_cache,
            targets: targets_cache,
        },
        events::Rechecks {
            schedules: schedule_checked,
            targets: target_checked,
        },
    ));
    let scheduler = crate::daemon::run(
        runner,
        crate::daemon::Options {
            files: Vec::new(),
            once: false,
            shutdown_grace: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            sftp: options.sftp.clone(),
            health: Some(health.clone()),
            notify: Some(notify),
            max_concurrent_runs: options.max_concurrent_runs,
            executor: Some(executor),
            checks: options.checks.clone(),
            ..Default::default()
        },
        || async { Ok(()) },
    );
    // Said when it happens, not only at shutdown: a scheduler that stopped (its state store
    // unreachable) leaves the reconcilers running and nothing else would tell.
    let daemon = tokio::spawn(async move {
        let result = scheduler.await;
        if let Err(e) = &result {
            tracing::error!("the scheduler stopped: {e}");
        }
        result
    });
    let s = schedules
        .shutdown_on_signal()
        .run(
            reconcile::<ReportSchedule>,
            error_policy::<ReportSchedule>,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(kind = "ReportSchedule", "reconcile: {e}");
            }
        });
    let t = targets
        .shutdown_on_signal()
        .run(
            reconcile::<DeliveryTarget>,
            error_policy::<DeliveryTarget>,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(kind = "DeliveryTarget", "reconcile: {e}");
            }
        });
    let m = mappings
        .shutdown_on_signal()
        .run(
            reconcile::<CustomerMapping>,
            error_policy::<CustomerMapping>,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(kind = "CustomerMapping", "reconcile: {e}");
            }
        });
    tokio::join!(s, t, m);
    // The daemon stops on the same signal, letting running exports finish.
    let finished = daemon.await;
    publisher.abort();
    if let Some(server) = observe_server {
        server.shutdown().await;
    }
    match finished {
        Ok(result) => result.map(|_| ()),
        Err(e) => Err(Error::State(format!("the scheduler task failed: {e}"))),
    }
}
