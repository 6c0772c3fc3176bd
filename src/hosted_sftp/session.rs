//! The state the listener, every connection and the server handle share: who is logged in
//! with which credential ([`Login`]), the live sessions, the admission gate and the limits.
//! A leaf of the server: the connection code and the server handle both build on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::admission::Gate;
use super::config::SessionLimits;
use super::throttle::Logins;
use super::users::{SharedUsers, Users};
use crate::ssh::{self, PublicKey};

/// Time to wait for sessions to end at shutdown.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The credential a session logged in with, re-checked at every registry update.
#[derive(Clone, Debug)]
pub(super) enum Credential {
    Key(PublicKey),
    /// The PHC string the password was verified against: a rotated password changes it.
    Password(String),
}

#[derive(Clone, Debug)]
pub(super) struct Login {
    pub(super) user: String,
    pub(super) credential: Credential,
}

impl Login {
    pub(super) fn authorized_by(&self, users: &Users) -> bool {
        let Some(user) = users.get(&self.user) else {
            return false;
        };
        match &self.credential {
            Credential::Key(key) => user.has_key(key),
            Credential::Password(hash) => {
                user.uses_password() && user.password_hash.as_deref() == Some(hash.as_str())
            }
        }
    }

    pub(super) fn method(&self) -> String {
        match &self.credential {
            Credential::Key(key) => format!("publickey {}", ssh::fingerprint(key)),
            Credential::Password(_) => "password".into(),
        }
    }
}

pub(super) struct LiveSession {
    pub(super) login: Login,
    pub(super) peer: SocketAddr,
    pub(super) handle: russh::server::Handle,
    pub(super) revoked: Arc<AtomicBool>,
    pub(super) since: SystemTime,
}

/// State shared by the listener, every connection and the server handle.
pub(super) struct Shared {
    pub(super) data_dir: PathBuf,
    pub(super) users: SharedUsers,
    pub(super) sessions: Mutex<HashMap<u64, LiveSession>>,
    pub(super) logins: Arc<Logins>,
    pub(super) gate: Gate,
    pub(super) limits: SessionLimits,
    /// Connection tasks running (unauthenticated or not), waited for at shutdown.
    pub(super) connections: AtomicUsize,
    /// A hash of a random password, verified against when the user is unknown, so an unknown
    /// user takes as long to refuse as a wrong password.
    pub(super) decoy_hash: String,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) next_id: AtomicU64,
    pub(super) threads: Arc<AtomicUsize>,
    /// Per user, the lock its sessions hold around path-based requests (see
    /// [`SessionContext::namespace_lock`]).
    pub(super) namespace_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
