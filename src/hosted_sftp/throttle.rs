//! Slowing down and locking out password guessing.
//!
//! Failed logins are counted per client address and per user. Each failure makes the next
//! answer slower (doubling from [`LockoutPolicy::base_delay`] up to
//! [`LockoutPolicy::max_delay`]); [`LockoutPolicy::max_failures`] failures within
//! [`LockoutPolicy::window`] lock the address or the user out for
//! [`LockoutPolicy::lockout`], and the lock-out is logged (user and address, never the
//! password). While locked out every attempt is refused without checking it.
//!
//! Only attempts that could have succeeded count against a user (a wrong password of a
//! password user): a key user cannot be locked out by someone guessing passwords for it. Every
//! failed attempt counts against the address, except an unknown public key merely *offered*
//! (clients offer each key of their agent in turn; that is not guessing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How repeated login failures are slowed down and locked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures (per address, or per user) that cause a lock-out. Default 5.
    pub max_failures: u32,
    /// Failures older than this are forgotten. Default 15 minutes.
    pub window: Duration,
    /// How long a lock-out lasts. Default 15 minutes.
    pub lockout: Duration,
    /// The delay added after the first failure, doubled after each further one. Default
    /// 250 ms.
    pub base_delay: Duration,
    /// The largest delay added. Default 4 s.
    pub max_delay: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

/// What is counted: an address or a user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// A client address.
    Address(IpAddr),
    /// A login user.
    User(String),
}

#[derive(Debug, Default)]
struct Record {
    failures: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
}

/// The result of recording a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether this failure started a lock-out.
    pub locked_now: bool,
}

/// A lock-out in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `address 1.2.3.4` or `user alice`.
    pub subject: String,
    /// How much longer it lasts.
    pub remaining: Duration,
}

/// Failure counts per address and per user.
#[derive(Debug)]
pub(crate) struct Throttle {
    policy: LockoutPolicy,
    records: HashMap<Subject, Record>,
}

/// Above this many records, expired ones are swept on the next failure.
const SWEEP_ABOVE: usize = 4096;

impl Throttle {
    /// A throttle applying `policy`.
    pub fn new(policy: LockoutPolicy) -> Self {
        Throttle {
            policy,
            records: HashMap::new(),
        }
    }

    /// Whether `subject` is locked out at `now`.
    pub fn is_locked(&self, subject: &Subject, now: Instant) -> bool {
        self.records
            .get(subject)
            .and_then(|r| r.locked_until)
            .is_some_and(|until| until > now)
    }

    /// Records a failure of `subject` at `now`.
    pub fn fail(&mut self, subject: Subject, now: Instant) -> Verdict {
        if self.records.len() > SWEEP_ABOVE {
            self.sweep(now);
        }
        let policy = &self.policy;
        let record = self.records.entry(subject).or_default();
        if record
            .last
            .is_some_and(|last| now.saturating_duration_since(last) > policy.window)
        {
            record.failures = 0;
        }
        if record.locked_until.is_some_and(|until| until <= now) {
            record.locked_until = None;
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = Some(now);
        let shift = record.failures.saturating_sub(1).min(20);
        let delay = policy
            .base_delay
            .saturating_mul(1u32 << shift)
            .min(policy.max_delay);
        let locked_now = record.locked_until.is_none() && record.failures >= policy.max_failures;
        if locked_now {
            record.locked_until = Some(now + policy.lockout);
        }
        Verdict { delay, locked_now }
    }

    /// Forgets the failures of `subject` (a successful login of a user).
    pub fn succeed(&mut self, subject: &Subject) {
        if let Some(r) = self.records.get(subject)
            && r.locked_until.is_none()
        {
            self.records.remove(subject);
        }
    }

    /// The lock-outs in force at `now`.
    pub fn lockouts(&self, now: Instant) -> Vec<Lockout> {
        let mut out: Vec<Lockout> = self
            .records
            .iter()
            .filter_map(|(s, r)| {
                let until = r.locked_until.filter(|u| *u > now)?;
                Some(Lockout {
                    subject: match s {
                        Subject::Address(a) => format!("address {a}"),
                        Subject::User(u) => format!("user {u}"),
                    },
                    remaining: until - now,
                })
            })
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    fn sweep(&mut self, now: Instant) {
        let window = self.policy.window;
        self.records.retain(|_, r| {
            r.locked_until.is_some_and(|u| u > now)
                || r.last
                    .is_some_and(|l| now.saturating_duration_since(l) <= window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_lock_out_for_a_while() {
        let policy = LockoutPolicy::default();
        let mut t = Throttle::new(policy.clone());
        let who = Subject::User("alice".into());
        let now = Instant::now();
        let delays: Vec<_> = (0..5)
            .map(|i| t.fail(who.clone(), now + Duration::from_secs(i)))
            .collect();
        assert_eq!(delays[0].delay, Duration::from_millis(250));
        assert_eq!(delays[1].delay, Duration::from_millis(500));
        assert_eq!(delays[4].delay, Duration::from_secs(4));
        assert!(!delays[3].locked_now);
        assert!(delays[4].locked_now);
        assert!(t.is_locked(&who, now + Duration::from_secs(60)));
        assert_eq!(t.lockouts(now + Duration::from_secs(60)).len(), 1);
        assert!(!t.is_locked(&who, now + policy.lockout + Duration::from_secs(10)));
        // After the lock-out the count starts again.
        let v = t.fail(who.clone(), now + policy.lockout + Duration::from_secs(10));
        assert!(!v.locked_now);
    }

    #[test]
    fn old_failures_are_forgotten_and_success_resets_a_user() {
        let mut t = Throttle::new(LockoutPolicy::default());
        let who = Subject::Address("127.0.0.1".parse().expect("ip"));
        let now = Instant::now();
        for i in 0..4 {
            t.fail(who.clone(), now + Duration::from_secs(i));
        }
        let later = now + Duration::from_secs(3600);
        assert!(!t.fail(who.clone(), later).locked_now);
        let user = Subject::User("bob".into());
        for _ in 0..4 {
            t.fail(user.clone(), now);
        }
        t.succeed(&user);
        assert!(!t.fail(user, now).locked_now);
    }
}
