//! Leadership of a replicated controller: waiting to lead on the Lease and renewing it
//! ([`lead`]), labelling the pod with its role ([`ROLE_LABEL`]) and taking the shared state's
//! lock once elected ([`lock_shared_state`]), so two replicas never run schedules at once.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::lease;
use crate::{Error, Result};

/// Waits until this instance leads, then keeps renewing in the background; leadership lost
/// (a renewal refused, or impossible for longer than the Lease is valid) ends the process, so
/// it restarts as a standby and never runs schedules next to a new leader.
pub(super) async fn lead(
    client: &Client,
    config: lease::LeaseConfig,
    health: &crate::observe::Health,
) -> Result<()> {
    let elector = lease::LeaderElector::new(client.clone(), config);
    loop {
        match elector.round(jiff::Timestamp::now()).await {
            Ok(lease::Leadership::Leading) => break,
            Ok(lease::Leadership::Standby { holder }) => {
                // A standby is ready: a rolling update (new pods first) must not wait for it
                // to lead. What only the leader serves (hosted SFTP) selects the leader's pod
                // by its role label instead.
                tracing::debug!(%holder, "standby");
                health.set_ready(true);
            }
            Err(e) => tracing::warn!("{e}"),
        }
        tokio::time::sleep(elector.config().renew_every()).await;
    }
    tracing::info!(lease = %elector.config().name, identity = %elector.config().identity, "leading");
    tokio::spawn(async move {
        // Like client-go's renew deadline: give up at two thirds of the Lease, before any
        // standby may take it over, whatever hangs (each round is bounded too).
        let every = elector.config().renew_every();
        let deadline = elector.config().duration * 2 / 3;
        let mut last_renewal = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let round = tokio::time::timeout(every, elector.round(jiff::Timestamp::now())).await;
            match round {
                Ok(Ok(lease::Leadership::Leading)) => last_renewal = std::time::Instant::now(),
                Ok(Ok(lease::Leadership::Standby { holder })) => {
                    tracing::error!(%holder, "leadership lost: stopping so that a standby takes over");
                    std::process::exit(3);
                }
                Ok(Err(e)) => tracing::warn!("lease not renewed: {e}"),
                Err(_) => {
                    tracing::warn!("lease not renewed: the API server did not answer in time")
                }
            }
            if last_renewal.elapsed() >= deadline {
                tracing::error!("the lease could not be renewed in time: stopping");
                std::process::exit(3);
            }
        }
    });
    Ok(())
}

/// The label that tells the leader's pod from the standbys' (`leader` or `standby`), for the
/// Services of what only the leader serves (hosted SFTP), as Patroni labels its primary.
pub const ROLE_LABEL: &str = "ferry.dev/role";

/// Labels this controller's pod with its role. Outside a pod (no such pod, no permission) it
/// only warns: nothing else depends on it.
pub(super) async fn label_pod(client: &Client, namespace: &str, pod: &str, role: &str) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"labels": {ROLE_LABEL: role}}});
    match pods
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!(pod, role, "pod labelled"),
        Err(e) => tracing::warn!(pod, role, "cannot label the pod with its role: {e}"),
    }
}

/// Waits for the shared state's lock: a deposed leader that has not noticed yet (partitioned
/// from the API server, its clock behind) holds it until it stops, so a new leader never
/// runs schedules next to it. Not ready while waiting.
pub(super) async fn lock_shared_state(
    state: &std::path::Path,
    health: &crate::observe::Health,
) -> Result<crate::state::StateLock> {
    loop {
        match crate::state::lock_state(state, Duration::from_secs(5), "controller").await {
            Ok(lock) => {
                tracing::info!("holding the state lock");
                return Ok(lock);
            }
            Err(Error::Locked(holder)) => {
                health.set_not_ready("elected; waiting for the previous leader's state lock");
                tracing::warn!(%holder, "elected, waiting for the state lock");
            }
            Err(e) => {
                health.set_not_ready(&format!("state unreachable: {e}"));
                tracing::warn!("state lock: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}
