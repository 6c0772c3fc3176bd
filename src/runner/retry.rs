//! Delivery of a staged file to one target with retries (exponential backoff with jitter),
//! and the applied DeliveryTargets a run delivers to (a PSA target through the customer's
//! CustomerMapping).

use std::path::Path;
use std::time::Duration;

use jiff::Zoned;

use crate::deliver::{self, CommitHook, Confirmation, Outgoing};
use crate::ledger::SlotKey;
use crate::schedule;
use crate::{Error, Result};

use super::decide::ScheduleView;
use super::engine::Runner;

impl Runner {
    /// The applied spec of one DeliveryTarget (not the whole state: a run needs only its own).
    pub(super) async fn target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::api::DeliveryTargetSpec>> {
        self.store.delivery_target(namespace, name).await
    }

    /// Delivers with `retry.attempts` attempts and exponential backoff with jitter. A
    /// delivery this run left at its point of no return (`delivering`, after a crash) is first
    /// looked for at the destination ([`deliver::Transport::confirm`]). `Err` only for ledger
    /// failures.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn deliver_with_retries(
        &self,
        view: &ScheduleView,
        run_id: i64,
        slot: &Zoned,
        key: &SlotKey<'_>,
        name: &str,
        spec: &crate::api::DeliveryTargetSpec,
        staged: &Path,
        file_name: &str,
        exported: &crate::export::job::ExportOutput,
        resend: bool,
    ) -> Result<TargetOutcome> {
        let attempts = view.spec.retry.attempts.max(1);
        let mut backoff =
            schedule::parse_duration(&view.spec.retry.backoff).unwrap_or(Duration::from_secs(30));
        let record = |outcome: &'static str,
                      attempt: u32,
                      receipt: Option<serde_json::Value>,
                      error: Option<String>| async move {
            self.ledger
                .record_delivery(
                    run_id,
                    key,
                    name,
                    resend,
                    outcome,
                    attempt,
                    receipt.as_ref(),
                    error.as_deref(),
                    &crate::clock::now()?.to_string(),
                )
                .await
        };
        let built = if spec.kind().is_some_and(|k| k.is_psa()) {
            self.psa_transport(view, name, spec).await
        } else {
            deliver::transport_for(
                &view.key.namespace,
                name,
                spec,
                &self.secrets,
                &self.hosted_sftp_data,
            )
        };
        let transport = match built {
            Ok(t) => t,
            Err(e) => {
                let message = e.to_string();
                record("failed", 0, None, Some(message.clone())).await?;
                return Ok(TargetOutcome::Failed(message));
            }
        };
        let mut interrupted =
            self.ledger.delivery_outcome(run_id, name).await?.as_deref() == Some("delivering");
        let week_ago = crate::clock::now()?
            .checked_sub(jiff::SignedDuration::from_hours(24 * 7))
            .map_err(|e| Error::State(e.to_string()))?;
        let stale_runs = self
            .ledger
            .stale_runs(
                &view.key.namespace,
                &view.key.name,
                file_name,
                name,
                run_id,
                &week_ago.to_string(),
            )
            .await?;
        // Unique across installations (the state's lineage), stable across attempts.
        let delivery_key = {
            let mut k = format!(
                "{}/{}/{}/{}/{name}",
                self.lineage
                    .get_or_try_init(|| self.store.lineage())
                    .await?,
                key.namespace,
                key.schedule,
                key.slot.timestamp().as_second()
            );
            if resend {
                k.push_str(&format!("/resend-{run_id}"));
            }
            k
        };
        let outgoing = Outgoing {
            staged,
            file_name,
            bytes: exported.bytes,
            sha256: &exported.sha256,
            run_id,
            about: &deliver::About {
                namespace: view.key.namespace.clone(),
                schedule: view.key.name.clone(),
                slot: slot.clone(),
                rows: exported.rows,
            },
            sharing: if view.spec.deliver_to.len() == 1 {
                deliver::Sharing::Sole
            } else {
                deliver::Sharing::Several
            },
            delivery_key: Some(&delivery_key),
            stale_runs: &stale_runs,
            commit: self.commit_hook(run_id, key, name, resend),
        };
        let limit = spec.kind().and_then(|k| k.max_connections());
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            // A turn per attempt (`maxConnections`), given back before the backoff.
            let turn = match limit {
                Some(max) => Some(self.limits.turn(&view.key.namespace, name, max).await),
                None => None,
            };
            if interrupted {
                match transport.confirm(&outgoing).await {
                    Ok(Confirmation::Present(receipt)) => {
                        let location = receipt.location.clone();
                        let receipt = serde_json::to_value(&receipt).expect("receipts serialize");
                        record("succeeded", attempt, Some(receipt), None).await?;
                        tracing::info!(schedule = %view.key, target = name, "found delivered after the interruption; not sent again");
                        return Ok(TargetOutcome::Found(location));
                    }
                    Ok(Confirmation::Absent) => interrupted = false,
                    Ok(Confirmation::Unknown(why)) => {
                        record("unknown", attempt, None, Some(why.clone())).await?;
                        return Ok(TargetOutcome::Unknown(why));
                    }
                    Err(e) => {
                        drop(turn);
                        last_error =
                            format!("cannot tell whether the interrupted delivery arrived: {e}");
                        if attempt < attempts {
                            tracing::warn!(schedule = %view.key, target = name, attempt, attempts, "{last_error}; retrying");
                            tokio::time::sleep(jitter(backoff)).await;
                            backoff = backoff.saturating_mul(2);
                            continue;
                        }
                        record("failed", attempt, None, Some(last_error.clone())).await?;
                        break;
                    }
                }
            }
            let delivered = transport.deliver(&outgoing).await;
            drop(turn);
            match delivered {
                Ok(receipt) => {
                    // Tests stop here with kill -9: the file is at its destination, the
                    // ledger does not know yet.
                    crate::failpoint::hit("delivered-unrecorded");
                    let location = receipt.location.clone();
                    let receipt = serde_json::to_value(&receipt).expect("receipts serialize");
                    if !record("succeeded", attempt, Some(receipt), None).await? {
                        tracing::warn!(
                            target = name,
                            "slot already delivered by another run; not recorded twice"
                        );
                    }
                    tracing::info!(schedule = %view.key, target = name, attempt, "delivered");
                    return Ok(TargetOutcome::Delivered(location));
                }
                Err(e) => {
                    last_error = e.to_string();
                    // The last failure is in the run's report (logged once by the daemon,
                    // printed by `run-now`); an attempt that will be retried is logged here.
                    if attempt < attempts {
                        tracing::warn!(schedule = %view.key, target = name, attempt, attempts, "delivery attempt failed, retrying: {last_error}");
                    }
                    record("failed", attempt, None, Some(last_error.clone())).await?;
                    if attempt < attempts {
                        tokio::time::sleep(jitter(backoff)).await;
                        backoff = backoff.saturating_mul(2);
                    }
                }
            }
        }
        Ok(TargetOutcome::Failed(last_error))
    }

    /// The hook a transport calls at its point of no return: records `delivering` (with the
    /// transport's evidence) so that a crash from here on is resolved by asking the
    /// destination, not by sending again.
    fn commit_hook(
        &self,
        run_id: i64,
        key: &SlotKey<'_>,
        target: &str,
        resend: bool,
    ) -> CommitHook {
        let ledger = self.ledger.clone();
        let (namespace, schedule, slot, target) = (
            key.namespace.to_string(),
            key.schedule.to_string(),
            key.slot.clone(),
            target.to_string(),
        );
        CommitHook::new(move |evidence| {
            let (ledger, namespace, schedule, slot, target) = (
                ledger.clone(),
                namespace.clone(),
                schedule.clone(),
                slot.clone(),
                target.clone(),
            );
            Box::pin(async move {
                let key = SlotKey {
                    namespace: &namespace,
                    schedule: &schedule,
                    slot: &slot,
                };
                let evidence = serde_json::to_value(evidence).expect("strings serialize");
                let now = crate::clock::now()?.to_string();
                ledger
                    .mark_delivering(run_id, &key, &target, resend, &evidence, &now)
                    .await?;
                crate::failpoint::hit("delivering-recorded");
                Ok(())
            })
        })
    }

    /// The delivery of a schedule's file to PSA target `name`: the customer is the
    /// schedule's `ferry.dev/customer` label, the company that of the customer's
    /// CustomerMapping on that target.
    pub(super) async fn psa_transport(
        &self,
        view: &ScheduleView,
        name: &str,
        spec: &crate::api::DeliveryTargetSpec,
    ) -> Result<Box<dyn deliver::Transport>> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        let customer = self
            .store
            .get(&view.key)
            .await?
            .and_then(|s| s.meta.labels.get(crate::psa::sync::CUSTOMER_LABEL).cloned());
        let actual = self.store.snapshot().await?;
        let mappings: Vec<crate::psa::sync::MappingView> =
            crate::psa::sync::MappingView::all(&actual)
                .into_iter()
                .filter(|m| m.key.namespace == view.key.namespace && m.spec.psa.target == name)
                .collect();
        deliver::psa::check_schedule_delivery(name, spec, customer.as_deref(), |c| {
            mappings.iter().any(|m| m.spec.customer == c)
        })
        .map_err(fail)?;
        let customer = customer.unwrap_or_default();
        let mapping = mappings
            .into_iter()
            .find(|m| m.spec.customer == customer)
            .ok_or_else(|| fail(format!("no CustomerMapping for customer `{customer}`")))?;
        Ok(Box::new(deliver::psa::PsaDelivery::new(
            &view.key.namespace,
            name,
            spec,
            &customer,
            mapping.spec,
            &self.secrets,
        )?))
    }
}

/// How one target's part of a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetOutcome {
    /// Delivered now, to this location.
    Delivered(String),
    /// Found complete at this location after an interruption; not sent again.
    Found(String),
    /// Delivered before: by this run (`None`) or by run N.
    Already(Option<i64>),
    /// May have been delivered (an email handed over when Ferry stopped): not sent again.
    Unknown(String),
    /// Not delivered, with why.
    Failed(String),
}

impl TargetOutcome {
    /// The metrics label (`ferry_deliveries_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            TargetOutcome::Delivered(_) | TargetOutcome::Found(_) => "succeeded",
            TargetOutcome::Already(_) => "already-delivered",
            TargetOutcome::Unknown(_) => "unknown",
            TargetOutcome::Failed(_) => "failed",
        }
    }

    /// The run report's words for it.
    pub fn describe(&self) -> String {
        match self {
            TargetOutcome::Delivered(location) => format!("delivered to {location}"),
            TargetOutcome::Found(location) => format!(
                "delivered to {location} (found complete after the interruption, not sent again)"
            ),
            TargetOutcome::Already(None) => "already delivered".into(),
            TargetOutcome::Already(Some(run)) => format!("already delivered by run {run}"),
            TargetOutcome::Unknown(why) => format!("outcome unknown: {why}"),
            TargetOutcome::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// `d` varied by up to ±20 %, so that many failing targets do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = u16::from_le_bytes(crate::fsutil::random_bytes::<2>()) as f64 / u16::MAX as f64;
    d.mul_f64(0.8 + 0.4 * r)
}
