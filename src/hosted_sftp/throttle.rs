//! Slowing down and locking out password guessing, in a way that holds under concurrency.
//!
//! Failed logins are counted per client address and per user. Each failure makes the next
//! answer slower (doubling from [`LockoutPolicy::base_delay`] up to
//! [`LockoutPolicy::max_delay`]); [`LockoutPolicy::max_failures`] failures within
//! [`LockoutPolicy::window`] lock the address or the user out for
//! [`LockoutPolicy::lockout`], and the lock-out is logged once (user and address, never the
//! password). While locked out every attempt is refused without checking it, the right
//! password included.
//!
//! An attempt is counted when it *starts*, not when its check ends: [`Logins::begin`] refuses
//! a new attempt when the failures already recorded plus the attempts still being checked
//! reach the threshold, so a burst of simultaneous guesses (30 connections each trying one
//! password while the first Argon2 checks run) gets at most `max_failures` of them checked.
//! Checks also queue: at most [`LockoutPolicy::concurrent_per_user`] per user and
//! [`LockoutPolicy::concurrent_per_address`] per address run at once, the others wait their
//! turn (within the connection's login grace). Waiting rather than refusing keeps a client
//! that opens several connections at once with the right password (rclone does) working.
//!
//! Public keys and passwords go through the same path. Only attempts that could have
//! succeeded count against a *user* (a wrong password of a password user): a key cannot be
//! guessed, so counting wrong keys against a key user would only let anyone who knows the
//! user name lock it out. Every failed attempt counts against the address, except an unknown
//! public key merely *offered* (clients offer each key of their agent in turn; that is not
//! guessing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// Login checks of one user running at once; more wait. Default 2.
    pub concurrent_per_user: u32,
    /// Login checks from one address running at once; more wait. Default 4.
    pub concurrent_per_address: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            concurrent_per_user: 2,
            concurrent_per_address: 4,
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

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Address(a) => write!(f, "address {a}"),
            Subject::User(u) => write!(f, "user {u}"),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
    /// Attempts begun and not finished.
    in_flight: u32,
}

impl Record {
    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Forgets failures older than the window and a lock-out that is over.
    fn expire(&mut self, policy: &LockoutPolicy, now: Instant) {
        if self.locked_until.is_some_and(|until| until <= now) {
            self.locked_until = None;
            self.failures = 0;
        }
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) > policy.window)
        {
            self.failures = 0;
        }
    }
}

/// The result of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether this failure locked the address out.
    pub address_locked_now: bool,
    /// Whether this failure locked the user out.
    pub user_locked_now: bool,
}

/// Why an attempt was refused before being checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The address or the user is locked out.
    Locked(Subject),
    /// The failures recorded plus the attempts being checked reach the threshold: one more
    /// check could exceed it.
    AttemptsInFlight(Subject),
}

/// A lock-out in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `address 1.2.3.4` or `user alice`.
    pub subject: String,
    /// How much longer it lasts.
    pub remaining: Duration,
}

/// Above this many records, expired ones are swept on the next attempt.
const SWEEP_ABOVE: usize = 4096;

/// Failure counts, attempts in flight and check slots per address and per user, shared by
/// every connection of a server.
#[derive(Debug)]
pub(crate) struct Logins {
    policy: LockoutPolicy,
    records: Mutex<HashMap<Subject, Record>>,
    slots: Mutex<HashMap<Subject, Arc<Semaphore>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logins {
    /// Applies `policy`.
    pub fn new(policy: LockoutPolicy) -> Self {
        Logins {
            policy,
            records: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `subject` is locked out now.
    pub fn is_locked(&self, subject: &Subject) -> bool {
        lock(&self.records)
            .get(subject)
            .is_some_and(|r| r.is_locked(Instant::now()))
    }

    /// Starts an attempt by `address`, counted against `user` too when given: waits for a
    /// check slot of each (address first, then user: always the same order, so two attempts
    /// never hold one slot each and wait for the other), then counts it. Refused, without a
    /// check, when either is locked out or already has as many failures plus attempts in
    /// flight as the threshold.
    pub async fn begin(
        self: &Arc<Self>,
        address: IpAddr,
        user: Option<&str>,
    ) -> Result<Attempt, Refused> {
        let mut subjects = vec![Subject::Address(address)];
        if let Some(user) = user {
            subjects.push(Subject::User(user.to_string()));
        }
        // Refuse at once what is locked: no need to wait for a slot to say no.
        self.check(&subjects, Instant::now())?;
        let mut permits = Vec::with_capacity(subjects.len());
        for subject in &subjects {
            let semaphore = self.slot(subject);
            let permit = semaphore
                .acquire_owned()
                .await
                .expect("check slots are never closed");
            permits.push(permit);
        }
        let counted = self.count_start(&subjects, Instant::now());
        if let Err(refused) = counted {
            drop(permits);
            self.release_slots(&subjects);
            return Err(refused);
        }
        Ok(Attempt {
            logins: self.clone(),
            subjects,
            permits,
            finished: false,
        })
    }

    /// Counts an attempt of `subjects` as in flight, unless one of them is locked out or at
    /// its threshold.
    fn count_start(&self, subjects: &[Subject], now: Instant) -> Result<(), Refused> {
        let mut records = lock(&self.records);
        if records.len() > SWEEP_ABOVE {
            let policy = &self.policy;
            records.retain(|_, r| {
                r.expire(policy, now);
                r.in_flight > 0 || r.failures > 0 || r.locked_until.is_some()
            });
        }
        for subject in subjects {
            let record = records.entry(subject.clone()).or_default();
            record.expire(&self.policy, now);
            if record.is_locked(now) {
                return Err(Refused::Locked(subject.clone()));
            }
            if record.failures + record.in_flight >= self.policy.max_failures {
                return Err(Refused::AttemptsInFlight(subject.clone()));
            }
        }
        for subject in subjects {
            records.entry(subject.clone()).or_default().in_flight += 1;
        }
        Ok(())
    }

    fn check(&self, subjects: &[Subject], now: Instant) -> Result<(), Refused> {
        let records = lock(&self.records);
        for subject in subjects {
            if records.get(subject).is_some_and(|r| r.is_locked(now)) {
                return Err(Refused::Locked(subject.clone()));
            }
        }
        Ok(())
    }

    fn slot(&self, subject: &Subject) -> Arc<Semaphore> {
        let permits = match subject {
            Subject::Address(_) => self.policy.concurrent_per_address,
            Subject::User(_) => self.policy.concurrent_per_user,
        }
        .max(1) as usize;
        let mut slots = lock(&self.slots);
        if slots.len() > SWEEP_ABOVE {
            // Slots left by attempts abandoned while waiting.
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots
            .entry(subject.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }

    /// Drops the check slots nobody holds or waits for.
    fn release_slots(&self, subjects: &[Subject]) {
        let mut slots = lock(&self.slots);
        for subject in subjects {
            if slots
                .get(subject)
                .is_some_and(|s| Arc::strong_count(s) == 1)
            {
                slots.remove(subject);
            }
        }
    }

    /// The lock-outs in force.
    pub fn lockouts(&self) -> Vec<Lockout> {
        let now = Instant::now();
        let mut out: Vec<Lockout> = lock(&self.records)
            .iter()
            .filter_map(|(s, r)| {
                let until = r.locked_until.filter(|u| *u > now)?;
                Some(Lockout {
                    subject: s.to_string(),
                    remaining: until - now,
                })
            })
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }
}

/// An attempt being checked. Finish it with [`Attempt::succeeded`] or [`Attempt::failed`];
/// dropped unfinished (the client went away during the check, which it will never learn the
/// result of), it only stops counting as in flight.
#[derive(Debug)]
pub(crate) struct Attempt {
    logins: Arc<Logins>,
    subjects: Vec<Subject>,
    permits: Vec<OwnedSemaphorePermit>,
    finished: bool,
}

impl Attempt {
    /// The check succeeded: the user's failures are forgotten (the address's are not: an
    /// attacker with one valid account must not reset the count of its guesses at others).
    pub fn succeeded(mut self) {
        self.finished = true;
        let mut records = lock(&self.logins.records);
        for subject in &self.subjects {
            if let Some(r) = records.get_mut(subject) {
                r.in_flight = r.in_flight.saturating_sub(1);
                if matches!(subject, Subject::User(_)) && r.locked_until.is_none() {
                    r.failures = 0;
                }
            }
        }
    }

    /// The check failed: counts a failure against every subject of the attempt.
    pub fn failed(mut self) -> Verdict {
        self.finished = true;
        let now = Instant::now();
        let policy = &self.logins.policy;
        let mut verdict = Verdict {
            delay: Duration::ZERO,
            address_locked_now: false,
            user_locked_now: false,
        };
        let mut records = lock(&self.logins.records);
        for subject in &self.subjects {
            let record = records.entry(subject.clone()).or_default();
            record.in_flight = record.in_flight.saturating_sub(1);
            record.expire(policy, now);
            record.failures = record.failures.saturating_add(1);
            record.last = Some(now);
            let shift = record.failures.saturating_sub(1).min(20);
            let delay = policy
                .base_delay
                .saturating_mul(1u32 << shift)
                .min(policy.max_delay);
            verdict.delay = verdict.delay.max(delay);
            if record.locked_until.is_none() && record.failures >= policy.max_failures {
                record.locked_until = Some(now + policy.lockout);
                match subject {
                    Subject::Address(_) => verdict.address_locked_now = true,
                    Subject::User(_) => verdict.user_locked_now = true,
                }
            }
        }
        verdict
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            let mut records = lock(&self.logins.records);
            for subject in &self.subjects {
                if let Some(r) = records.get_mut(subject) {
                    r.in_flight = r.in_flight.saturating_sub(1);
                }
            }
        }
        // Release the slots first, then drop those nobody else holds or waits for.
        self.permits.clear();
        let subjects = std::mem::take(&mut self.subjects);
        self.logins.release_slots(&subjects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            base_delay: Duration::from_millis(250),
            ..LockoutPolicy::default()
        }
    }

    fn address() -> IpAddr {
        "127.0.0.1".parse().expect("ip")
    }

    #[tokio::test]
    async fn failures_slow_down_then_lock_out_even_the_right_answer() {
        let logins = Arc::new(Logins::new(policy()));
        let mut delays = Vec::new();
        for _ in 0..5 {
            let attempt = logins.begin(address(), Some("alice")).await.expect("begin");
            delays.push(attempt.failed());
        }
        assert_eq!(delays[0].delay, Duration::from_millis(250));
        assert_eq!(delays[1].delay, Duration::from_millis(500));
        assert_eq!(delays[4].delay, Duration::from_secs(4));
        assert!(!delays[3].user_locked_now);
        assert!(delays[4].user_locked_now && delays[4].address_locked_now);
        assert_eq!(
            logins
                .begin(address(), Some("alice"))
                .await
                .expect_err("locked"),
            Refused::Locked(Subject::Address(address()))
        );
        assert!(logins.is_locked(&Subject::User("alice".into())));
        assert_eq!(logins.lockouts().len(), 2);
    }

    #[tokio::test]
    async fn attempts_are_counted_when_they_start() {
        let logins = Arc::new(Logins::new(LockoutPolicy {
            concurrent_per_user: 10,
            concurrent_per_address: 10,
            ..policy()
        }));
        let mut started = Vec::new();
        let mut refused = 0;
        for _ in 0..30 {
            match logins.begin(address(), Some("bob")).await {
                Ok(a) => started.push(a),
                Err(Refused::AttemptsInFlight(_)) => refused += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(started.len(), 5, "no more checks than the threshold");
        assert_eq!(refused, 25);
        for a in started {
            a.failed();
        }
        assert!(logins.is_locked(&Subject::User("bob".into())));
    }

    #[tokio::test]
    async fn checks_of_one_user_queue_beyond_the_concurrency_cap() {
        let logins = Arc::new(Logins::new(policy()));
        let a = logins.begin(address(), Some("carol")).await.expect("1");
        let b = logins.begin(address(), Some("carol")).await.expect("2");
        let third = {
            let logins = logins.clone();
            tokio::spawn(async move { logins.begin(address(), Some("carol")).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the third check waits for a slot");
        a.succeeded();
        assert!(third.await.expect("join"), "and runs once one is free");
        b.succeeded();
    }

    #[tokio::test]
    async fn a_success_resets_the_user_but_not_the_address_and_old_failures_are_forgotten() {
        let logins = Arc::new(Logins::new(LockoutPolicy {
            window: Duration::from_millis(50),
            ..policy()
        }));
        for _ in 0..4 {
            logins
                .begin(address(), Some("dave"))
                .await
                .expect("b")
                .failed();
        }
        logins
            .begin(address(), Some("dave"))
            .await
            .expect("b")
            .succeeded();
        let record_failures = |s: Subject| lock(&logins.records).get(&s).map(|r| r.failures);
        assert_eq!(record_failures(Subject::User("dave".into())), Some(0));
        assert_eq!(record_failures(Subject::Address(address())), Some(4));
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = logins.begin(address(), None).await.expect("b").failed();
        assert!(
            !v.address_locked_now,
            "failures older than the window are forgotten"
        );
    }

    #[tokio::test]
    async fn an_abandoned_attempt_counts_nothing_and_frees_its_slots() {
        let logins = Arc::new(Logins::new(policy()));
        drop(logins.begin(address(), Some("erin")).await.expect("b"));
        assert!(lock(&logins.slots).is_empty());
        let records = lock(&logins.records);
        assert!(
            records
                .values()
                .all(|r| r.failures == 0 && r.in_flight == 0)
        );
    }
}
