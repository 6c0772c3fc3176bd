//! Sending an [`Alert`] to the targets `notify` names: each on its own, concurrently, with the
//! webhook's own retries. A failed alert is logged and counted (`ferry_alerts_total` with
//! `outcome="failed"`); it never changes the run it is about.

use futures_util::future::join_all;

use super::Alert;
use crate::api::{DeliveryTargetSpec, TargetKind};
use crate::deliver::email::EmailTransport;
use crate::deliver::webhook::Webhook;
use crate::secrets::FileSecrets;
use crate::state::StateStore;

/// What became of an alert at one target: where it went, or why it did not.
pub type Sent = (String, Result<String, String>);

/// Sends `alert` to the DeliveryTargets `names` (in `alert.namespace`), as applied in
/// `store`. A name not applied is logged and skipped.
pub async fn to_named(
    alert: &Alert,
    names: &[String],
    store: &StateStore,
    secrets: &FileSecrets,
) -> Vec<Sent> {
    let mut targets = Vec::new();
    for name in names {
        match store.delivery_target(&alert.namespace, name).await {
            Ok(Some(spec)) => targets.push((name.clone(), spec)),
            Ok(None) => tracing::warn!(
                resource = %alert.resource(),
                target = %name,
                "alert not sent: the DeliveryTarget is not applied"
            ),
            Err(e) => {
                tracing::warn!(resource = %alert.resource(), target = %name, "alert not sent: {e}")
            }
        }
    }
    dispatch(alert, &targets, secrets).await
}

/// Sends `alert` to each of `targets` (name and applied spec, in `alert.namespace`).
pub async fn dispatch(
    alert: &Alert,
    targets: &[(String, DeliveryTargetSpec)],
    secrets: &FileSecrets,
) -> Vec<Sent> {
    let sends = targets.iter().map(|(name, spec)| async move {
        let sent = send_one(alert, name, spec, secrets).await;
        match &sent {
            Ok(how) => tracing::info!(
                event = alert.event.as_str(),
                resource = %alert.resource(),
                target = %name,
                "alert sent: {how}"
            ),
            Err(why) => tracing::warn!(
                event = alert.event.as_str(),
                resource = %alert.resource(),
                target = %name,
                "alert not sent: {why}"
            ),
        }
        crate::observe::alert_sent(&alert.namespace, name, alert.event.as_str(), sent.is_ok());
        (name.clone(), sent)
    });
    join_all(sends).await
}

async fn send_one(
    alert: &Alert,
    name: &str,
    spec: &DeliveryTargetSpec,
    secrets: &FileSecrets,
) -> Result<String, String> {
    match spec.kind() {
        Some(TargetKind::Webhook(w)) => {
            let hook = Webhook::new(&alert.namespace, w, secrets).map_err(|e| e.to_string())?;
            let answer = hook
                .post(&alert.body(w.format), || jiff::Timestamp::now().as_second())
                .await?;
            Ok(format!(
                "{} answered HTTP {} (attempt {})",
                hook.host(),
                answer.status,
                answer.attempts
            ))
        }
        Some(TargetKind::Email(e)) => {
            let mail = EmailTransport::new(&alert.namespace, name, e, secrets)
                .map_err(|e| e.to_string())?;
            let response = mail
                .send_alert(&alert.subject(), alert.text())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("mailed to {} ({response})", e.to.join(", ")))
        }
        Some(other) => Err(format!(
            "a {} target cannot take alerts (webhook or email)",
            other.key()
        )),
        None => Err("the target has no valid kind".into()),
    }
}
