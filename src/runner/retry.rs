//! Delivery of a staged file to one target with retries (exponential backoff with jitter),
//! and the applied DeliveryTargets a run delivers to (a PSA target through the customer's
//! CustomerMapping).

use std::path::Path;
use std::time::Duration;

use jiff::Zoned;

use crate::api::{Kind, ResourceKey, Spec};
use crate::deliver::{self, Outgoing};
use crate::ledger::SlotKey;
use crate::schedule;
use crate::state::StateStore;
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
        applied_target(&self.store, namespace, name).await
    }

    /// Delivers with `retry.attempts` attempts and exponential backoff with jitter. Returns
    /// `Ok(Ok(location))` or `Ok(Err(message))`; `Err` only for ledger failures.
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
    ) -> Result<std::result::Result<String, String>> {
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
                return Ok(Err(message));
            }
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
        };
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            match transport.deliver(&outgoing).await {
                Ok(receipt) => {
                    let location = receipt.location.clone();
                    let receipt = serde_json::to_value(&receipt).expect("receipts serialize");
                    if !record("succeeded", attempt, Some(receipt), None).await? {
                        tracing::warn!(
                            target = name,
                            "slot already delivered by another run; not recorded twice"
                        );
                    }
                    tracing::info!(schedule = %view.key, target = name, attempt, "delivered");
                    return Ok(Ok(location));
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
        Ok(Err(last_error))
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

/// `d` varied by up to ±20 %, so that many failing targets do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = u16::from_le_bytes(crate::fsutil::random_bytes::<2>()) as f64 / u16::MAX as f64;
    d.mul_f64(0.8 + 0.4 * r)
}

/// The applied spec of DeliveryTarget `namespace/name`, if it is applied.
pub async fn applied_target(
    store: &StateStore,
    namespace: &str,
    name: &str,
) -> Result<Option<crate::api::DeliveryTargetSpec>> {
    let key = ResourceKey::new(Kind::DeliveryTarget, namespace, name);
    let Some(stored) = store.get(&key).await? else {
        return Ok(None);
    };
    match stored.decoded()? {
        Spec::DeliveryTarget(spec) => Ok(Some((**spec).clone())),
        _ => Ok(None),
    }
}
