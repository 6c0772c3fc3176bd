//! How many deliveries may go to one DeliveryTarget at once (`maxConnections`), shared by
//! every run of this process: a semaphore per target, taken for each attempt (its lookup after
//! a crash included) and given back before a retry's backoff, so a failing target does not
//! hold its turns while it waits. Tokio's semaphore is fair: waiting deliveries go in the
//! order they asked. A changed limit takes effect for deliveries that start after the change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A target's limit and its semaphore, by (namespace, name).
type Semaphores = HashMap<(String, String), (u32, Arc<Semaphore>)>;

/// The per-target semaphores of one process.
#[derive(Debug, Default)]
pub struct TargetLimits {
    targets: Mutex<Semaphores>,
}

impl TargetLimits {
    /// Waits for a turn to deliver to `namespace/target`, at most `max` at once; the turn
    /// ends when the permit is dropped.
    pub async fn turn(&self, namespace: &str, target: &str, max: u32) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut targets = self.targets.lock().expect("target limits");
            let key = (namespace.to_string(), target.to_string());
            match targets.get(&key) {
                Some((limit, semaphore)) if *limit == max => semaphore.clone(),
                _ => {
                    let semaphore = Arc::new(Semaphore::new(max.max(1) as usize));
                    targets.insert(key, (max, semaphore.clone()));
                    semaphore
                }
            }
        };
        if semaphore.available_permits() == 0 {
            tracing::debug!(
                namespace,
                target,
                max,
                "waiting for a connection to the target"
            );
        }
        crate::observe::delivery_waiting(namespace, target, 1);
        let permit = semaphore.acquire_owned().await.expect("never closed");
        crate::observe::delivery_waiting(namespace, target, -1);
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_more_than_the_limit_deliver_at_once_and_the_others_wait_their_turn() {
        let limits = Arc::new(TargetLimits::default());
        let busy = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (limits, busy, peak) = (limits.clone(), busy.clone(), peak.clone());
            tasks.spawn(async move {
                let _turn = limits.turn("shop", "partner", 3).await;
                let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Another target has turns of its own.
        let a = limits.turn("shop", "partner", 1).await;
        let b = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            limits.turn("shop", "archive", 1),
        )
        .await;
        assert!(b.is_ok(), "a different target does not wait");
        drop(a);
    }
}
