//! Liveness and readiness: the [`Health`] the process loop ticks and marks ready, and the
//! [`Probe`] answers of `/healthz` and `/readyz` it gives. A leaf, shared by the daemon, the
//! controller and the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::exposition::lock;

/// How long `/healthz` tolerates the process loop not ticking, by default.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(5 * 60);

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
