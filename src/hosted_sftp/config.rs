//! How the hosted SFTP server runs ([`HostedSftpConfig`], [`SessionLimits`]) and what it
//! reports back ([`UsersUpdate`], [`ActiveSession`]): plain data, no behaviour.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::admission::AdmissionPolicy;
use super::throttle::LockoutPolicy;

/// The server's host key, in its data directory (made when the server first starts).
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// What one logged-in connection may hold in memory. [`SessionLimits::default`] gives the
/// defaults; a client exceeding one is disconnected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// SFTP channels one connection may open at once. Default 4.
    pub max_channels: usize,
    /// Requests of one channel waiting for their turn. Default 16,384 (paramiko's prefetch
    /// asks for a whole file at once, one READ per 32 KiB: that covers a 512 MiB download).
    pub max_requests: usize,
    /// Bytes of requests waiting across a session's channels, each counted with 64 bytes of
    /// overhead. Default 32 MiB (OpenSSH's client keeps 64 writes of up to 255 KiB in flight:
    /// 16 MiB per transfer).
    pub max_buffer: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_channels: 4,
            max_requests: 16_384,
            max_buffer: 32 * 1024 * 1024,
        }
    }
}

/// How the hosted SFTP server runs. [`HostedSftpConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct HostedSftpConfig {
    /// Address and port to listen on (port 0: any free port, see
    /// [`HostedSftpServer::local_addr`]).
    pub listen: SocketAddr,
    /// Data directory: the users' jails live in `<data_dir>/users/<user>/`. Created when
    /// missing.
    pub data_dir: PathBuf,
    /// The server's Ed25519 host key (OpenSSH format). Generated on first start (mode 0600)
    /// and reused afterwards, so clients can pin it. Default `<data_dir>/ssh_host_ed25519_key`.
    pub host_key_path: PathBuf,
    /// A connection with no traffic for this long is closed. Default 10 minutes.
    pub idle_timeout: Duration,
    /// Time a client has to log in, counted from the moment it connects (not from the end of
    /// the SSH handshake). Default 30 seconds.
    pub login_grace: Duration,
    /// Unauthenticated connections, sessions and penalties.
    pub admission: AdmissionPolicy,
    /// What one session may hold in memory.
    pub limits: SessionLimits,
    /// Slow-down and lock-out of repeated login failures.
    pub lockout: LockoutPolicy,
}

impl HostedSftpConfig {
    /// The defaults, listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        HostedSftpConfig {
            listen,
            host_key_path: data_dir.join(HOST_KEY_FILE),
            data_dir,
            idle_timeout: Duration::from_secs(600),
            login_grace: Duration::from_secs(30),
            admission: AdmissionPolicy::default(),
            limits: SessionLimits::default(),
            lockout: LockoutPolicy::default(),
        }
    }
}

/// What a registry update changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsersUpdate {
    /// Users that did not exist before.
    pub added: Vec<String>,
    /// Users that no longer exist (their files stay on disk).
    pub removed: Vec<String>,
    /// Users whose keys, password or directories changed.
    pub changed: Vec<String>,
    /// Sessions closed because their credential no longer authorizes them: `(user, address)`.
    pub sessions_closed: Vec<(String, SocketAddr)>,
    /// Connection directories that could not be created (the users exist anyway; their
    /// operations there fail until the problem is fixed).
    pub directory_errors: Vec<String>,
}

/// A logged-in session, as [`HostedSftpServer::sessions`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveSession {
    /// The user.
    pub user: String,
    /// The client's address.
    pub address: SocketAddr,
    /// `publickey SHA256:...` or `password`.
    pub method: String,
    /// When it logged in.
    pub since: SystemTime,
}
