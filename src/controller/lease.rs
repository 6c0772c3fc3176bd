//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the leader
//! renews the Lease every few seconds; a standby takes it over once it has not been renewed
//! for `leaseDurationSeconds`; every write carries the `resourceVersion` it read, so of two
//! candidates only one wins (the other gets 409 Conflict). Only the leader runs schedules and
//! syncs; a leader that cannot renew stops leading at once (the process exits and restarts as
//! a standby), and the ledger's (schedule, slot, target) key keeps a slot from being delivered
//! twice across the handover.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::{Error, Result};

/// How a candidate takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name, e.g. `ferry-controller`.
    pub name: String,
    /// Its namespace (the controller's own).
    pub namespace: String,
    /// This candidate (the pod's name).
    pub identity: String,
    /// How long a Lease stays valid without renewal; a standby takes over after it.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the leader renews (a third of the duration), and a standby retries.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

/// What an election round found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This candidate holds the Lease (acquired or renewed now).
    Leading,
    /// Another candidate holds a valid Lease.
    Standby {
        /// The holder.
        holder: String,
    },
}

impl LeaderElector {
    /// A candidate on `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One round at `now`: create the Lease if there is none, renew it if it is ours, take it
    /// over if its holder let it expire; otherwise stand by.
    pub async fn round(&self, now: Timestamp) -> Result<Leadership> {
        let me = &self.config.identity;
        let seconds = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(kube_error)?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Leadership::Leading),
                Err(e) if is_conflict(&e) => Ok(lost_race()),
                Err(e) => Err(kube_error(e)),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let valid_for = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
        );
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let expired = renewed.is_none_or(|r| {
            now.duration_since(r).unsigned_abs() >= valid_for
                || r > now + jiff::SignedDuration::from_secs(3600)
        });
        if holder != *me && !holder.is_empty() && !expired {
            return Ok(Leadership::Standby { holder });
        }
        let taking_over = holder != *me;
        let mut next = current.clone();
        let mut spec = spec;
        spec.holder_identity = Some(me.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        if taking_over {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(Leadership::Leading),
            Err(e) if is_conflict(&e) => Ok(lost_race()),
            Err(e) => Err(kube_error(e)),
        }
    }
}

/// After losing a write race: whoever won holds the Lease now.
fn lost_race() -> Leadership {
    Leadership::Standby {
        holder: "another candidate (write conflict)".into(),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

fn kube_error(e: kube::Error) -> Error {
    Error::State(format!("leader election: {e}"))
}
