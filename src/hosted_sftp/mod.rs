//! Hosted SFTP: the SFTP server Ferry runs itself.
//!
//! Some partners cannot run a server to receive reports; they log in to ours instead. The
//! connections are `hostedSftp` DeliveryTargets, so who may log in, with which key, and to
//! which directory is declared in Git and reconciled like everything else: `ferry run` (and the
//! controller) start the server with [`start`] and call [`HostedSftpServer::update_users`]
//! whenever the applied targets change, which takes effect at once, closing the sessions of
//! users that lost access. Reports are put into a connection's directory by [`deliver_into`],
//! atomically, so a partner never downloads half a file.
//!
//! The pieces:
//! - [`users`]: the registry built from the connections (users merged by name, keys, Argon2id
//!   password hashes) and the password helpers [`generate_password`] and [`hash_password`];
//! - `jail`: how a client's path maps to the user's root and what it may do there (`..`,
//!   absolute paths, symbolic links and renames cannot leave the root; `read` connections
//!   cannot be written);
//! - [`admission`]: who may connect and who gets a session (unauthenticated connections
//!   counted apart, per-source limits and penalties, session caps global and per user);
//! - `throttle`: slow-down and lock-out of repeated login failures, counted when attempts
//!   start;
//! - `sftp`: the SFTP v3 protocol, with zero-copy reads and writes;
//! - `server`: SSH (russh), the host key, authentication and live sessions;
//! - [`deliver`]: atomic delivery of a report into a connection.
//!
//! Unix only: the jail relies on `O_NOFOLLOW` and `/proc/self/fd`.

#![cfg(unix)]

pub mod admission;
mod channel;
mod config;
mod connection;
pub mod deliver;
mod jail;
mod server;
mod session;
mod sftp;
mod throttle;
pub mod users;
mod wire;

pub use deliver::{Delivered, deliver_into, delivery_path};

use std::path::{Path, PathBuf};

/// The hosted SFTP server's data directory for the state at `state_path`: the environment
/// variable `FERRY_HOSTED_SFTP_DATA` when set, else `hosted-sftp/` next to the state database.
/// Deliveries into `hostedSftp` targets and the server must agree on it.
pub fn data_dir_for_state(state_path: &Path) -> PathBuf {
    data_dir_in(&crate::state::work_dir_for(state_path))
}

/// The hosted SFTP data directory under a state's work directory (or `FERRY_HOSTED_SFTP_DATA`).
pub fn data_dir_in(work_dir: &Path) -> PathBuf {
    match std::env::var_os("FERRY_HOSTED_SFTP_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => work_dir.join("hosted-sftp"),
    }
}
pub use crate::deliver::atomic::is_partial_name;
pub use admission::{AddressBlock, AdmissionPolicy, PenaltyPolicy, Startups};
pub use config::{ActiveSession, HOST_KEY_FILE, HostedSftpConfig, SessionLimits, UsersUpdate};
pub use server::{HostedSftpServer, start};
pub use throttle::{Lockout, LockoutPolicy};
pub use users::{
    Connection, Grant, User, Users, generate_password, hash_password, hash_password_off_thread,
    issue_password, users_needing_password, verify_password, verify_password_off_thread,
};
