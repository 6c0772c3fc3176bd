//! Who may connect, and who gets a session: connections that have not logged in yet are
//! counted apart from sessions, so that idle sockets can never keep real users out.
//!
//! Modelled on OpenSSH's sshd (`MaxStartups`, `PerSourceMaxStartups`, `LoginGraceTime`,
//! `PerSourcePenalties` of OpenSSH 9.8, see sshd_config(5)) and SFTPGo's per-host limits and
//! "defender":
//! - **Unauthenticated connections** have their own pool, `start:rate:full` as `MaxStartups`
//!   (default 10:30:100): below `start` every connection is admitted; from `start` a new
//!   connection is dropped with probability `rate` %, rising linearly to 100 % at `full`.
//!   Unlike sshd, the random drop applies only to a source that already has a connection
//!   waiting to log in: a source with none is always admitted, and when the pool is full it
//!   takes the place of the oldest waiting connection of the source that holds the most. An
//!   attacker holding the whole pool therefore cannot keep out a client from another address;
//!   it only competes with itself.
//! - **Per source** (an IPv4 address, an IPv6 /64): at most `per_source` unauthenticated
//!   connections at once (default 10).
//! - **Penalties** per source: seconds added when a connection exceeds the login grace
//!   (default 10) or ends without trying to log in (1). A source whose penalty reaches `min`
//!   (15 s) is refused at once until it decays (one second per second, at most `max`, 10
//!   minutes); it is logged once when it starts. Connections refused for the per-source limit
//!   add nothing (a legitimate client opening many connections at once is only refused, and
//!   retries), and failed logins are not penalized here either: the lock-out of the `throttle`
//!   module handles them, per address and per user.
//! - **Sessions** (logged in) have their own limits, global and per user, checked at login:
//!   an unauthenticated connection never holds a session slot, and one customer's runaway
//!   client cannot take every slot.
//!
//! The gate is plain bookkeeping under one short lock; the server calls it at accept, login
//! and close.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// `start:rate:full` of unauthenticated connections, as OpenSSH's `MaxStartups`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Startups {
    /// Below this many unauthenticated connections, every new one is admitted.
    pub start: usize,
    /// Drop probability (percent) at `start`.
    pub rate: u8,
    /// At this many, the pool is full.
    pub full: usize,
}

impl Default for Startups {
    fn default() -> Self {
        Startups {
            start: 10,
            rate: 30,
            full: 100,
        }
    }
}

impl std::str::FromStr for Startups {
    type Err = String;

    /// `N` (no early drop: full at N) or `start:rate:full`, e.g. `10:30:100`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let number = |p: &str| -> Result<usize, String> {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{p}` is not a whole number"))
        };
        let startups = match parts.as_slice() {
            [n] => {
                let n = number(n)?;
                Startups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [start, rate, full] => {
                let rate = number(rate)?;
                if rate > 100 {
                    return Err(format!("the rate is a percentage (0-100), not {rate}"));
                }
                Startups {
                    start: number(start)?,
                    rate: rate as u8,
                    full: number(full)?,
                }
            }
            _ => return Err("expected N or start:rate:full, e.g. 10:30:100".into()),
        };
        if startups.full == 0 {
            return Err("full must be at least 1".into());
        }
        if startups.start > startups.full {
            return Err(format!(
                "start ({}) must not exceed full ({})",
                startups.start, startups.full
            ));
        }
        Ok(startups)
    }
}

impl std::fmt::Display for Startups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

/// An address block exempt from penalties, `ADDRESS[/BITS]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressBlock {
    address: IpAddr,
    bits: u8,
}

impl AddressBlock {
    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical(self.address), canonical(ip)) {
            (IpAddr::V4(block), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(block) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(block), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(block) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for AddressBlock {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (address, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let address = canonical(address);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`/{b}`: the prefix length must be 0-{max}"))?,
        };
        Ok(AddressBlock { address, bits })
    }
}

/// Penalties of sources that misbehave before logging in (OpenSSH's `PerSourcePenalties`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PenaltyPolicy {
    /// Added when a connection does not log in within the login grace. Default 10 s.
    pub grace_exceeded: Duration,
    /// Added when a connection ends without trying to log in. Default 1 s.
    pub noauth: Duration,
    /// A source is refused once its penalty reaches this. Default 15 s.
    pub min: Duration,
    /// The largest penalty; zero turns penalties off. Default 10 minutes.
    pub max: Duration,
    /// Sources never penalized (a load balancer's health checks, a trusted NAT).
    pub exempt: Vec<AddressBlock>,
}

impl Default for PenaltyPolicy {
    fn default() -> Self {
        PenaltyPolicy {
            grace_exceeded: Duration::from_secs(10),
            noauth: Duration::from_secs(1),
            min: Duration::from_secs(15),
            max: Duration::from_secs(600),
            exempt: Vec::new(),
        }
    }
}

/// The limits the gate applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Unauthenticated connections, globally.
    pub startups: Startups,
    /// Unauthenticated connections per source. Default 10.
    pub per_source: usize,
    /// Logged-in sessions, globally. Default 64.
    pub max_sessions: usize,
    /// Logged-in sessions per user. Default 16 (rclone opens up to 12 by default).
    pub max_sessions_per_user: usize,
    /// Penalties of misbehaving sources.
    pub penalties: PenaltyPolicy,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        AdmissionPolicy {
            startups: Startups::default(),
            per_source: 10,
            max_sessions: 64,
            max_sessions_per_user: 16,
            penalties: PenaltyPolicy::default(),
        }
    }
}

/// Where a connection comes from, as limits and penalties count it: an IPv4 address, or an
/// IPv6 /64 (one customer's network usually gets a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    /// The source of a peer address.
    pub fn of(ip: IpAddr) -> Source {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let masked = u128::from(v6) & (u128::MAX << 64);
                Source(IpAddr::V6(Ipv6Addr::from(masked)))
            }
            v4 => Source(v4),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a new connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source is penalized.
    Penalized,
    /// Its source has as many unauthenticated connections as allowed.
    SourceLimit,
    /// Dropped early: the unauthenticated pool is filling and its source already waits.
    Startups,
}

impl Refusal {
    /// The label of `ferry_sftp_connections_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Penalized => "penalized",
            Refusal::SourceLimit => "source-limit",
            Refusal::Startups => "startups",
        }
    }
}

/// Why a login could not become a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    /// Every session slot is taken (at most this many).
    Full(usize),
    /// The user has as many sessions as it may (at most this many).
    User(usize),
    /// The connection was evicted while logging in.
    Evicted,
}

impl SessionRefusal {
    /// The message sent to the client with the disconnection.
    pub fn message(&self, user: &str) -> String {
        match self {
            SessionRefusal::Full(n) => {
                format!("too many sessions on this server (at most {n}); try again later")
            }
            SessionRefusal::User(n) => {
                format!("too many sessions for user {user} (at most {n}); close one and try again")
            }
            SessionRefusal::Evicted => "too many connections waiting to log in".into(),
        }
    }

    /// The label of `ferry_sftp_connections_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SessionRefusal::Full(_) => "sessions",
            SessionRefusal::User(_) => "user-sessions",
            SessionRefusal::Evicted => "evicted",
        }
    }
}

/// How an unauthenticated connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PendingEnd {
    /// It did not log in within the login grace.
    GraceExceeded,
    /// It closed without trying to log in.
    NoAuth,
    /// It tried and did not succeed (the lock-out counts that).
    AuthFailed,
    /// Another source's newcomer took its place.
    Evicted,
    /// The server is stopping.
    Shutdown,
}

impl PendingEnd {
    /// The label of `ferry_sftp_unauthenticated_closed_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PendingEnd::GraceExceeded => "grace-exceeded",
            PendingEnd::NoAuth => "noauth",
            PendingEnd::AuthFailed => "authfail",
            PendingEnd::Evicted => "evicted",
            PendingEnd::Shutdown => "shutdown",
        }
    }
}

/// Counts for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Connections waiting to log in.
    pub unauthenticated: usize,
    /// Logged-in sessions.
    pub sessions: usize,
    /// Sources refused for a penalty now.
    pub penalized: usize,
}

struct Pending {
    source: Source,
    since: Instant,
    evict: Option<oneshot::Sender<()>>,
}

struct Penalty {
    expires: Instant,
    blocked: bool,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    per_source: HashMap<Source, usize>,
    penalties: HashMap<Source, Penalty>,
    sessions: usize,
    per_user: HashMap<String, usize>,
    random: u64,
}

/// Above this many penalty records, expired ones are swept.
const SWEEP_ABOVE: usize = 4096;

/// The admission bookkeeping of one server.
pub(crate) struct Gate {
    policy: AdmissionPolicy,
    state: Mutex<State>,
}

/// An admitted connection: the signal that tells it to make room for another source.
pub(crate) struct Admitted {
    /// Fires when the connection is evicted.
    pub evicted: oneshot::Receiver<()>,
}

impl Gate {
    /// A gate applying `policy`.
    pub fn new(policy: AdmissionPolicy) -> Gate {
        let seed = u64::from_le_bytes(crate::fsutil::random_bytes::<8>()) | 1;
        Gate {
            policy,
            state: Mutex::new(State {
                random: seed,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides on connection `id` from `ip`, arrived at `now`.
    pub fn admit(&self, id: u64, ip: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let source = Source::of(ip);
        let policy = &self.policy;
        let mut state = self.lock();
        if state.is_penalized(source, now) {
            return Err(Refusal::Penalized);
        }
        let from_source = state.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= policy.per_source.max(1) {
            return Err(Refusal::SourceLimit);
        }
        let waiting = state.pending.len();
        let Startups { start, rate, full } = policy.startups;
        if waiting >= start && from_source > 0 {
            let percent = if waiting >= full {
                100
            } else {
                let span = (full - start).max(1) as u64;
                u64::from(rate) + (100 - u64::from(rate)) * (waiting - start) as u64 / span
            };
            if state.next_random() % 100 < percent {
                return Err(Refusal::Startups);
            }
        }
        if state.pending.len() >= full {
            state.evict_one();
        }
        let (tx, rx) = oneshot::channel();
        state.pending.insert(
            id,
            Pending {
                source,
                since: now,
                evict: Some(tx),
            },
        );
        *state.per_source.entry(source).or_default() += 1;
        Ok(Admitted { evicted: rx })
    }

    /// Connection `id` logged in as `user`: it leaves the unauthenticated pool and takes a
    /// session slot, if one is free.
    pub fn promote(&self, id: u64, user: &str) -> Result<(), SessionRefusal> {
        let mut state = self.lock();
        if !state.remove_pending(id) {
            return Err(SessionRefusal::Evicted);
        }
        let max = self.policy.max_sessions.max(1);
        if state.sessions >= max {
            return Err(SessionRefusal::Full(max));
        }
        let per_user = self.policy.max_sessions_per_user.max(1);
        let of_user = state.per_user.get(user).copied().unwrap_or(0);
        if of_user >= per_user {
            return Err(SessionRefusal::User(per_user));
        }
        state.sessions += 1;
        *state.per_user.entry(user.to_string()).or_default() += 1;
        Ok(())
    }

    /// Unauthenticated connection `id` from `ip` ended as `how`; penalizes its source when
    /// that calls for it.
    pub fn end_pending(&self, id: u64, ip: IpAddr, how: PendingEnd, now: Instant) {
        let policy = &self.policy;
        let mut state = self.lock();
        state.remove_pending(id);
        let source = Source::of(ip);
        match how {
            PendingEnd::GraceExceeded => state.penalize(
                policy,
                source,
                policy.penalties.grace_exceeded,
                "connections that do not log in",
                now,
            ),
            PendingEnd::NoAuth => state.penalize(
                policy,
                source,
                policy.penalties.noauth,
                "connections closed without logging in",
                now,
            ),
            PendingEnd::AuthFailed | PendingEnd::Evicted | PendingEnd::Shutdown => {}
        }
    }

    /// A session of `user` ended.
    pub fn end_session(&self, user: &str) {
        let mut state = self.lock();
        state.sessions = state.sessions.saturating_sub(1);
        if let Some(n) = state.per_user.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_user.remove(user);
            }
        }
    }

    /// The counts now (expired penalties are dropped on the way).
    pub fn counts(&self, now: Instant) -> Counts {
        let mut state = self.lock();
        state.penalties.retain(|_, p| p.expires > now);
        Counts {
            unauthenticated: state.pending.len(),
            sessions: state.sessions,
            penalized: state.penalties.values().filter(|p| p.blocked).count(),
        }
    }

    /// Sessions of `user` now.
    #[cfg(test)]
    pub fn sessions_of(&self, user: &str) -> usize {
        self.lock().per_user.get(user).copied().unwrap_or(0)
    }
}

impl State {
    fn is_penalized(&mut self, source: Source, now: Instant) -> bool {
        match self.penalties.get(&source) {
            Some(p) if p.expires > now => p.blocked,
            Some(_) => {
                self.penalties.remove(&source);
                false
            }
            None => false,
        }
    }

    fn penalize(
        &mut self,
        policy: &AdmissionPolicy,
        source: Source,
        amount: Duration,
        why: &str,
        now: Instant,
    ) {
        let p = &policy.penalties;
        if amount.is_zero() || p.max.is_zero() || p.exempt.iter().any(|b| b.contains(source.0)) {
            return;
        }
        if self.penalties.len() > SWEEP_ABOVE {
            self.penalties.retain(|_, p| p.expires > now);
        }
        let penalty = self.penalties.entry(source).or_insert(Penalty {
            expires: now,
            blocked: false,
        });
        if penalty.expires <= now {
            penalty.expires = now;
            penalty.blocked = false;
        }
        penalty.expires = (penalty.expires + amount).min(now + p.max);
        let remaining = penalty.expires - now;
        if !penalty.blocked && remaining >= p.min {
            penalty.blocked = true;
            tracing::warn!(
                address = %source,
                seconds = remaining.as_secs(),
                "hosted SFTP: address penalized for {why}: its connections are refused for {} s",
                remaining.as_secs()
            );
        }
    }

    fn remove_pending(&mut self, id: u64) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_source.get_mut(&p.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&p.source);
            }
        }
        true
    }

    /// Makes room: evicts the oldest waiting connection of the source holding the most.
    fn evict_one(&mut self) {
        let Some((&busiest, _)) = self.per_source.iter().max_by_key(|(_, n)| **n) else {
            return;
        };
        let victim = self
            .pending
            .iter()
            .filter(|(_, p)| p.source == busiest)
            .min_by_key(|(_, p)| p.since)
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            if let Some(tx) = self.pending.get_mut(&id).and_then(|p| p.evict.take()) {
                let _ = tx.send(());
            }
            self.remove_pending(id);
        }
    }

    /// xorshift64: early drops need a coin, not a cryptographic one.
    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn gate(policy: AdmissionPolicy) -> Gate {
        Gate::new(policy)
    }

    #[test]
    fn max_startups_parses_like_sshd() {
        assert_eq!(
            "10:30:100".parse::<Startups>(),
            Ok(Startups {
                start: 10,
                rate: 30,
                full: 100
            })
        );
        assert_eq!("50".parse::<Startups>().expect("n").full, 50);
        assert!("10:130:100".parse::<Startups>().is_err());
        assert!("20:30:10".parse::<Startups>().is_err());
        assert!("ten".parse::<Startups>().is_err());
    }

    #[test]
    fn address_blocks_match_their_prefix() {
        let block: AddressBlock = "10.1.0.0/16".parse().expect("block");
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        let v6: AddressBlock = "2001:db8::/32".parse().expect("block");
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!("10.0.0.0/33".parse::<AddressBlock>().is_err());
        assert!("all".parse::<AddressBlock>().is_err());
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn one_source_is_held_to_its_limit_and_penalized_when_its_connections_idle() {
        let g = gate(AdmissionPolicy {
            per_source: 3,
            ..AdmissionPolicy::default()
        });
        let now = Instant::now();
        let mut admitted = Vec::new();
        let mut refusals = Vec::new();
        for id in 0..40 {
            match g.admit(id, ip("192.0.2.7"), now) {
                Ok(_) => admitted.push(id),
                Err(r) => refusals.push(r),
            }
        }
        assert_eq!(admitted.len(), 3);
        assert!(refusals.iter().all(|r| *r == Refusal::SourceLimit));
        for id in admitted {
            g.end_pending(id, ip("192.0.2.7"), PendingEnd::GraceExceeded, now);
        }
        assert_eq!(
            g.admit(50, ip("192.0.2.7"), now).err(),
            Some(Refusal::Penalized),
            "30 s of penalty: refused"
        );
        assert!(
            g.admit(100, ip("192.0.2.8"), now).is_ok(),
            "others are not affected"
        );
        assert_eq!(g.counts(now).penalized, 1);
        let later = now + Duration::from_secs(60);
        assert_eq!(g.counts(later).penalized, 0, "the penalty decays");
        assert!(g.admit(101, ip("192.0.2.7"), later).is_ok());
    }

    #[test]
    fn connections_that_exceed_the_grace_penalize_their_source() {
        let g = gate(AdmissionPolicy::default());
        let now = Instant::now();
        for id in 0..2 {
            g.admit(id, ip("198.51.100.1"), now).expect("admitted");
            g.end_pending(id, ip("198.51.100.1"), PendingEnd::GraceExceeded, now);
        }
        assert_eq!(
            g.admit(9, ip("198.51.100.1"), now).err(),
            Some(Refusal::Penalized)
        );
        let exempt = gate(AdmissionPolicy {
            penalties: PenaltyPolicy {
                exempt: vec!["198.51.100.0/24".parse().expect("block")],
                ..PenaltyPolicy::default()
            },
            ..AdmissionPolicy::default()
        });
        for id in 0..5 {
            exempt.admit(id, ip("198.51.100.1"), now).expect("admitted");
            exempt.end_pending(id, ip("198.51.100.1"), PendingEnd::GraceExceeded, now);
        }
        assert!(exempt.admit(9, ip("198.51.100.1"), now).is_ok());
    }

    #[test]
    fn a_new_source_is_admitted_even_when_the_pool_is_full() {
        let g = gate(AdmissionPolicy {
            startups: Startups {
                start: 4,
                rate: 30,
                full: 8,
            },
            per_source: 100,
            ..AdmissionPolicy::default()
        });
        let now = Instant::now();
        let mut receivers = Vec::new();
        // Attackers from two addresses fill the pool (and are dropped early beyond `start`).
        for id in 0..200u64 {
            let from = if id % 2 == 0 {
                "203.0.113.1"
            } else {
                "203.0.113.2"
            };
            if let Ok(a) = g.admit(id, ip(from), now + Duration::from_millis(id)) {
                receivers.push((id, a));
            }
        }
        assert_eq!(g.counts(now).unauthenticated, 8);
        // A client from elsewhere gets in, evicting the oldest of the busiest attacker.
        assert!(g.admit(999, ip("192.0.2.50"), now).is_ok());
        assert_eq!(g.counts(now).unauthenticated, 8);
        let evicted = receivers
            .iter_mut()
            .filter_map(|(_, a)| a.evicted.try_recv().ok())
            .count();
        assert_eq!(evicted, 1);
        // And logs in: a session slot, not a pool slot.
        g.promote(999, "alice").expect("session");
        assert_eq!(g.counts(now).sessions, 1);
        assert_eq!(g.counts(now).unauthenticated, 7);
    }

    #[test]
    fn sessions_are_capped_globally_and_per_user() {
        let g = gate(AdmissionPolicy {
            max_sessions: 3,
            max_sessions_per_user: 2,
            ..AdmissionPolicy::default()
        });
        let now = Instant::now();
        for id in 0..5 {
            g.admit(id, ip("192.0.2.1"), now).expect("admitted");
        }
        g.promote(0, "bob").expect("1st");
        g.promote(1, "bob").expect("2nd");
        assert_eq!(g.promote(2, "bob"), Err(SessionRefusal::User(2)));
        g.promote(3, "carol").expect("another user still logs in");
        assert_eq!(g.promote(4, "dave"), Err(SessionRefusal::Full(3)));
        g.end_session("bob");
        assert_eq!(g.sessions_of("bob"), 1);
        assert_eq!(g.counts(now).unauthenticated, 0);
    }
}
