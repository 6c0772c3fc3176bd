//! The SSH side of the hosted SFTP server: listening, admission, the host key,
//! authentication with throttling, the session registry that lets a registry update close
//! sessions at once, and the plumbing between a channel and its [`SftpSession`] thread.
//!
//! A connection first waits in the unauthenticated pool of the [`admission`] gate (its own
//! limits, globally and per source, with penalties for sources that hold connections without
//! logging in), and must log in within the login grace counted from the moment it connected.
//! Logging in takes a session slot (global and per user), so idle sockets never keep real
//! users out.
//!
//! Per SFTP channel three parts run: an async reader that cuts the channel's byte stream into
//! request frames, a thread that answers them in order ([`SftpSession`], blocking file I/O),
//! and an async writer that sends the answers (waiting for the client's window). The reader
//! never waits for the thread: russh delivers channel data from its session loop, and a reader
//! stuck behind a full queue would stall that loop and with it the writer. Instead what waits
//! for the thread is bounded per session ([`SessionLimits`]): requests waiting per channel and
//! bytes waiting across the session's channels. The answers are bounded by a short queue and
//! the client's window. A client that keeps sending without reading its answers past those
//! limits is disconnected, with a log line saying which limit.
//!
//! [`admission`]: super::admission

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, Disconnect, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::admission::{AdmissionPolicy, Gate, PendingEnd, SessionRefusal};
use super::jail;
use super::sftp::{MAX_FRAME, Outcome, SessionContext, SftpSession};
use super::throttle::{Lockout, LockoutPolicy, Logins, Refused, Subject};
use super::users::{self, SharedUsers, User, Users};
use crate::ssh::{self, PublicKey};
use crate::{Error, Result};

/// Answers queued between a session thread and the channel writer (each at most 256 KiB).
const ANSWER_QUEUE: usize = 8;
/// What a queued request costs beyond its bytes (its allocation and queue slot), so that a
/// flood of tiny requests is bounded by memory, not by count alone.
const REQUEST_OVERHEAD: usize = 64;
/// Time to wait for sessions to end at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// How often the gauges of connections, sessions and penalized sources are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

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
            host_key_path: data_dir.join("ssh_host_ed25519_key"),
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

/// The credential a session logged in with, re-checked at every registry update.
#[derive(Clone, Debug)]
enum Credential {
    Key(PublicKey),
    /// The PHC string the password was verified against: a rotated password changes it.
    Password(String),
}

#[derive(Clone, Debug)]
struct Login {
    user: String,
    credential: Credential,
}

impl Login {
    fn authorized_by(&self, users: &Users) -> bool {
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

    fn method(&self) -> String {
        match &self.credential {
            Credential::Key(key) => format!("publickey {}", ssh::fingerprint(key)),
            Credential::Password(_) => "password".into(),
        }
    }
}

struct LiveSession {
    login: Login,
    peer: SocketAddr,
    handle: russh::server::Handle,
    revoked: Arc<AtomicBool>,
    since: SystemTime,
}

/// State shared by the listener, every connection and the server handle.
struct Shared {
    data_dir: PathBuf,
    users: SharedUsers,
    sessions: Mutex<HashMap<u64, LiveSession>>,
    logins: Arc<Logins>,
    gate: Gate,
    limits: SessionLimits,
    /// Connection tasks running (unauthenticated or not), waited for at shutdown.
    connections: AtomicUsize,
    /// A hash of a random password, verified against when the user is unknown, so an unknown
    /// user takes as long to refuse as a wrong password.
    decoy_hash: String,
    runtime: tokio::runtime::Handle,
    next_id: AtomicU64,
    threads: Arc<AtomicUsize>,
    /// Per user, the lock its sessions hold around path-based requests (see
    /// [`SessionContext::namespace_lock`]).
    namespace_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running hosted SFTP server. Dropping it stops listening; [`HostedSftpServer::shutdown`]
/// also closes the sessions and waits for them.
pub struct HostedSftpServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    host_key: PublicKey,
    host_key_path: PathBuf,
    shutdown_tx: watch::Sender<bool>,
    accept_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for HostedSftpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedSftpServer")
            .field("local_addr", &self.local_addr)
            .field("host_key", &ssh::fingerprint(&self.host_key))
            .field("data_dir", &self.shared.data_dir)
            .finish()
    }
}

/// Starts the server: prepares the data directory and the users' directories, loads (or
/// generates) the host key, binds `config.listen` and accepts connections in the background
/// on the current Tokio runtime. Fails when the data directory or host key cannot be used or
/// the address cannot be bound.
pub async fn start(config: HostedSftpConfig, users: Users) -> Result<HostedSftpServer> {
    let data_dir = prepare_data_dir(&config.data_dir)?;
    let key = load_or_create_host_key(&config.host_key_path)?;
    let host_key = key.public_key().clone();
    for e in ensure_directories(&data_dir, &users) {
        tracing::warn!("hosted SFTP: {e}");
    }
    let decoy_hash = {
        let decoy = users::generate_password();
        tokio::task::spawn_blocking(move || users::hash_password(&decoy))
            .await
            .map_err(|e| Error::Secret(format!("hashing failed: {e}")))??
    };
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        Error::Usage(format!(
            "hosted SFTP: cannot listen on {}: {e}",
            config.listen
        ))
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("hosted SFTP: {e}")))?;

    let user_count = users.len();
    let shared = Arc::new(Shared {
        data_dir,
        users: Arc::new(RwLock::new(Arc::new(users))),
        sessions: Mutex::new(HashMap::new()),
        logins: Arc::new(Logins::new(config.lockout.clone())),
        gate: Gate::new(config.admission.clone()),
        limits: config.limits.clone(),
        connections: AtomicUsize::new(0),
        decoy_hash,
        runtime: tokio::runtime::Handle::current(),
        next_id: AtomicU64::new(1),
        threads: Arc::new(AtomicUsize::new(0)),
        namespace_locks: Mutex::new(HashMap::new()),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ssh_config = Arc::new(ssh_config(&config, key));
    let accept_task = tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        ssh_config,
        config.login_grace,
        shutdown_rx.clone(),
    ));
    tokio::spawn(refresh_gauges(Arc::downgrade(&shared), shutdown_rx));
    tracing::info!(
        address = %local_addr,
        host_key = %ssh::fingerprint(&host_key),
        users = user_count,
        data_dir = %shared.data_dir.display(),
        "hosted SFTP: listening"
    );
    Ok(HostedSftpServer {
        shared,
        local_addr,
        host_key,
        host_key_path: config.host_key_path,
        shutdown_tx,
        accept_task: Some(accept_task),
    })
}

impl HostedSftpServer {
    /// The address the server listens on (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's host key.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key as an OpenSSH line without comment (`ssh-ed25519 AAAA...`), what a client
    /// pins (`known_hosts`: `[host]:port ssh-ed25519 AAAA...`).
    pub fn host_key_line(&self) -> String {
        ssh::public_line(&self.host_key)
    }

    /// The host key's `SHA256:` fingerprint, to give to the people who log in.
    pub fn host_key_fingerprint(&self) -> String {
        ssh::fingerprint(&self.host_key)
    }

    /// Where the host key is stored.
    pub fn host_key_path(&self) -> &Path {
        &self.host_key_path
    }

    /// The data directory (canonical).
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The registry in force.
    pub fn users(&self) -> Arc<Users> {
        users::current(&self.shared.users)
    }

    /// Replaces the registry, live: a new user can log in at once; the connection directories
    /// are created; the sessions of a user that is gone, or whose login credential (key,
    /// password) no longer authorizes it, are closed now; access changes apply to every
    /// session's next operation. Files of removed users stay on disk. Never fails: what could
    /// not be done is reported in the result (and logged).
    pub fn update_users(&self, users: Users) -> UsersUpdate {
        let mut update = UsersUpdate {
            directory_errors: ensure_directories(&self.shared.data_dir, &users),
            ..UsersUpdate::default()
        };
        let new = Arc::new(users);
        let mut to_close = Vec::new();
        {
            let sessions = lock(&self.shared.sessions);
            let old = {
                let mut slot = self.shared.users.write().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut *slot, new.clone())
            };
            for (name, user) in new.iter().map(|u| (&u.name, u)) {
                match old.get(name) {
                    None => update.added.push(name.clone()),
                    Some(before) if !same_user(before, user) => update.changed.push(name.clone()),
                    Some(_) => {}
                }
            }
            update.removed = old
                .iter()
                .filter(|u| new.get(&u.name).is_none())
                .map(|u| u.name.clone())
                .collect();
            for live in sessions.values() {
                if !live.login.authorized_by(&new) {
                    live.revoked.store(true, Ordering::Release);
                    update
                        .sessions_closed
                        .push((live.login.user.clone(), live.peer));
                    to_close.push(live.handle.clone());
                }
            }
        }
        for handle in to_close {
            self.shared.runtime.spawn(async move {
                let _ = handle
                    .disconnect(
                        Disconnect::ByApplication,
                        "access revoked".into(),
                        String::new(),
                    )
                    .await;
            });
        }
        for e in &update.directory_errors {
            tracing::warn!("hosted SFTP: {e}");
        }
        for (user, address) in &update.sessions_closed {
            tracing::info!(
                user = %user,
                address = %address,
                "hosted SFTP: session closed: access revoked"
            );
        }
        if !(update.added.is_empty() && update.removed.is_empty() && update.changed.is_empty()) {
            tracing::info!(
                added = ?update.added,
                removed = ?update.removed,
                changed = ?update.changed,
                "hosted SFTP: users updated"
            );
        }
        update
    }

    /// The sessions logged in now.
    pub fn sessions(&self) -> Vec<ActiveSession> {
        let mut out: Vec<ActiveSession> = lock(&self.shared.sessions)
            .values()
            .map(|s| ActiveSession {
                user: s.login.user.clone(),
                address: s.peer,
                method: s.login.method(),
                since: s.since,
            })
            .collect();
        out.sort_by(|a, b| (&a.user, a.address).cmp(&(&b.user, b.address)));
        out
    }

    /// The lock-outs in force.
    pub fn lockouts(&self) -> Vec<Lockout> {
        self.shared.logins.lockouts()
    }

    /// Connections open now that have not logged in.
    pub fn unauthenticated_connections(&self) -> usize {
        self.shared.gate.counts(Instant::now()).unauthenticated
    }

    /// Sources (IPv4 addresses, IPv6 /64s) refused now for a penalty.
    pub fn penalized_sources(&self) -> usize {
        self.shared.gate.counts(Instant::now()).penalized
    }

    /// Stops listening, closes every session and waits (up to 10 s) for them to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while (self.shared.connections.load(Ordering::Acquire) > 0
            || self.shared.threads.load(Ordering::Acquire) > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(address = %self.local_addr, "hosted SFTP: stopped");
    }
}

impl Drop for HostedSftpServer {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

fn same_user(a: &User, b: &User) -> bool {
    a.keys.len() == b.keys.len()
        && a.keys.iter().all(|k| b.has_key(k))
        && a.password_hash == b.password_hash
        && a.grants == b.grants
}

/// The russh server configuration: our host key; public key and password only; Ferry's
/// rejection timing; the idle timeout; no compression.
fn ssh_config(config: &HostedSftpConfig, key: PrivateKey) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Ferry_hosted_SFTP".into()),
        methods,
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        inactivity_timeout: Some(config.idle_timeout),
        keepalive_interval: None,
        max_auth_attempts: 10,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32 * 1024,
        channel_buffer_size: 256,
        event_buffer_size: 64,
        nodelay: true,
        preferred: russh::Preferred {
            compression: std::borrow::Cow::Borrowed(&[russh::compression::NONE]),
            ..russh::Preferred::default()
        },
        ..Default::default()
    }
}

/// Creates the data directory (mode 0750) and its `users/` directory; returns its canonical
/// path.
fn prepare_data_dir(dir: &Path) -> Result<PathBuf> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o750);
    builder.create(dir).map_err(|e| Error::io(dir, e))?;
    let canonical = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    jail::create_dirs_nofollow(&canonical, &["users".to_string()])
        .map_err(|e| Error::io(canonical.join("users"), e))?;
    Ok(canonical)
}

/// Creates every user's root and connection directories, never through a symbolic link.
/// Returns what failed.
fn ensure_directories(data_dir: &Path, users: &Users) -> Vec<String> {
    let mut errors = Vec::new();
    for user in users.iter() {
        let root = match jail::create_dirs_nofollow(data_dir, &["users".into(), user.name.clone()])
        {
            Ok(root) => root,
            Err(e) => {
                errors.push(format!("user `{}`: cannot create its root: {e}", user.name));
                continue;
            }
        };
        for grant in &user.grants {
            if let Err(e) = jail::create_dirs_nofollow(&root, &grant.components) {
                errors.push(format!(
                    "user `{}`: cannot create {}: {e}",
                    user.name,
                    grant.virtual_path()
                ));
            }
        }
    }
    errors
}

/// Loads the host key at `path`, or generates an Ed25519 key there (mode 0600) when there is
/// none. Two servers starting at once agree on one key: the new key is linked into place only
/// if no key appeared meanwhile.
pub(crate) fn load_or_create_host_key(path: &Path) -> Result<PrivateKey> {
    let decode = |pem: &str| {
        russh::keys::decode_secret_key(pem, None).map_err(|e| {
            Error::Secret(format!(
                "{}: cannot read the hosted SFTP host key: {e}",
                path.display()
            ))
        })
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            if let Ok(meta) = std::fs::metadata(path) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        "hosted SFTP: the host key is readable by other users; make it mode 0600"
                    );
                }
            }
            return decode(&pem);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let generated = ssh::generate_key(ssh::KeyType::Ed25519, "ferry-hosted-sftp", None)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.ferry-tmp-{}-{}",
        std::process::id(),
        hex::encode(crate::fsutil::random_bytes::<4>())
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(generated.private_openssh.as_bytes())?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = written.map_err(|e| Error::io(path, e))?;
    if created {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        tracing::info!(
            path = %path.display(),
            fingerprint = %generated.fingerprint,
            "hosted SFTP: generated a new host key"
        );
        decode(&generated.private_openssh)
    } else {
        let pem = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        decode(&pem)
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    ssh_config: Arc<russh::server::Config>,
    login_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    match shared.gate.admit(id, peer.ip(), Instant::now()) {
                        Ok(admitted) => {
                            shared.connections.fetch_add(1, Ordering::AcqRel);
                            tokio::spawn(connection(
                                shared.clone(),
                                ssh_config.clone(),
                                stream,
                                peer,
                                id,
                                admitted.evicted,
                                login_grace,
                                shutdown.clone(),
                            ));
                        }
                        Err(refusal) => {
                            // Closed at once, without a word: an SSH server owes nothing to a
                            // source over its limits (sshd does the same).
                            tracing::debug!(
                                address = %peer,
                                reason = refusal.label(),
                                "hosted SFTP: connection refused"
                            );
                            crate::observe::sftp_connection_refused(refusal.label());
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "hosted SFTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Keeps the gauges of unauthenticated connections, sessions and penalized sources current
/// (penalties expire on their own), until the server stops.
async fn refresh_gauges(shared: std::sync::Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let counts = shared.gate.counts(Instant::now());
        drop(shared);
        crate::observe::sftp_connections(counts.unauthenticated, counts.sessions, counts.penalized);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
    }
}

/// What a connection's task and its SSH handler both know.
#[derive(Default)]
struct ConnectionState {
    /// Logged in and holding a session slot.
    authenticated: AtomicBool,
    /// A login was attempted (for the penalty of connections that never try).
    auth_tried: AtomicBool,
    /// The user once logged in.
    user: Mutex<Option<String>>,
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    shared: Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    evicted: oneshot::Receiver<()>,
    login_grace: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnectionState::default());
    let ended = serve_connection(
        &shared,
        ssh_config,
        stream,
        peer,
        id,
        &state,
        evicted,
        login_grace,
        shutdown,
    )
    .await;
    if state.authenticated.load(Ordering::Acquire) {
        let user = lock(&state.user).clone().unwrap_or_default();
        shared.gate.end_session(&user);
        if let Some(live) = lock(&shared.sessions).remove(&id) {
            tracing::info!(
                user = %live.login.user,
                address = %peer,
                "hosted SFTP: logged out"
            );
        }
    } else {
        let how = ended.unwrap_or(if state.auth_tried.load(Ordering::Acquire) {
            PendingEnd::AuthFailed
        } else {
            PendingEnd::NoAuth
        });
        shared.gate.end_pending(id, peer.ip(), how, Instant::now());
        crate::observe::sftp_unauthenticated_closed(how.label());
    }
    shared.connections.fetch_sub(1, Ordering::AcqRel);
}

/// Runs one connection until it ends; says how, when the connection itself did not end it
/// (the login grace ran out, it was evicted, the server stops).
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    shared: &Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    state: &Arc<ConnectionState>,
    mut evicted: oneshot::Receiver<()>,
    login_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<PendingEnd> {
    // The grace runs from the first byte: a client that connects and says nothing, or stalls
    // in the handshake, is out when it ends.
    let deadline = tokio::time::Instant::now() + login_grace;
    let _ = stream.set_nodelay(true);
    let handler = Client {
        shared: shared.clone(),
        id,
        peer,
        state: state.clone(),
        login: None,
        revoked: Arc::new(AtomicBool::new(false)),
        channels: HashMap::new(),
        opened: 0,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    let handshake = tokio::time::timeout_at(
        deadline,
        russh::server::run_stream(ssh_config, stream, handler),
    );
    let session = tokio::select! {
        started = handshake => match started {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection failed");
                return None;
            }
            Err(_) => {
                tracing::info!(address = %peer, "hosted SFTP: no SSH greeting within the login grace; disconnected");
                return Some(PendingEnd::GraceExceeded);
            }
        },
        _ = &mut evicted => return Some(PendingEnd::Evicted),
        _ = shutdown.changed() => return Some(PendingEnd::Shutdown),
    };
    let handle = session.handle();
    tokio::pin!(session);
    let grace = tokio::time::sleep_until(deadline);
    tokio::pin!(grace);
    let mut grace_pending = true;
    let mut evict_pending = true;
    let mut ended = None;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection ended");
                }
                return ended;
            }
            () = &mut grace, if grace_pending => {
                grace_pending = false;
                if !state.authenticated.load(Ordering::Acquire) {
                    tracing::info!(address = %peer, "hosted SFTP: no login within the login grace; disconnected");
                    ended = Some(PendingEnd::GraceExceeded);
                    break;
                }
            }
            result = &mut evicted, if evict_pending => {
                evict_pending = false;
                if result.is_ok() && !state.authenticated.load(Ordering::Acquire) {
                    tracing::debug!(address = %peer, "hosted SFTP: waiting connection evicted for another source");
                    ended = Some(PendingEnd::Evicted);
                    break;
                }
            }
            _ = shutdown.changed() => {
                ended = Some(PendingEnd::Shutdown);
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "server shutting down".into(), String::new())
                    .await;
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, &mut session).await;
                return ended;
            }
        }
    }
    // Grace over or evicted: say so if the client listens, but never wait on it for long (a
    // client that reads nothing would hold the task until the idle timeout).
    let reason = match ended {
        Some(PendingEnd::Evicted) => "too many connections waiting to log in",
        _ => "login grace time over",
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = handle
            .disconnect(Disconnect::ByApplication, reason.into(), String::new())
            .await;
        let _ = (&mut session).await;
    })
    .await;
    ended
}

/// One connection's SSH handler.
struct Client {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    state: Arc<ConnectionState>,
    login: Option<Login>,
    revoked: Arc<AtomicBool>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    opened: usize,
    /// Bytes of requests waiting across this session's channels.
    queued: Arc<AtomicUsize>,
}

impl Client {
    fn ip(&self) -> IpAddr {
        self.peer.ip()
    }

    /// Whether the address, or `user` when given, is locked out.
    fn locked(&self, user: Option<&str>) -> bool {
        let logins = &self.shared.logins;
        logins.is_locked(&Subject::Address(self.ip()))
            || user.is_some_and(|u| logins.is_locked(&Subject::User(u.to_string())))
    }

    /// Logs and counts an attempt refused before its check.
    fn refused(&self, user: &str, method: &str, refused: &Refused) {
        let (reason, subject) = match refused {
            Refused::Locked(s) => ("locked out", s),
            Refused::AttemptsInFlight(s) => ("too many attempts under way", s),
        };
        // Each lock-out is logged once, when it starts; the attempts it refuses only at debug.
        tracing::debug!(
            user = ?user,
            address = %self.peer,
            method,
            subject = %subject,
            "hosted SFTP: login refused: {reason}"
        );
        crate::observe::sftp_login(method, "refused");
    }

    /// Records a failed check; returns how long to wait before answering.
    fn failed(&self, user: &str, method: &str, verdict: super::throttle::Verdict) -> Duration {
        tracing::info!(user = ?user, address = %self.peer, method, "hosted SFTP: login failed");
        crate::observe::sftp_login(method, "failed");
        if verdict.address_locked_now {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins from this address: locked out"
            );
            crate::observe::sftp_lockout("address");
        }
        if verdict.user_locked_now {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins for this user: locked out"
            );
            crate::observe::sftp_lockout("user");
        }
        verdict.delay
    }

    fn succeeded(&mut self, user: &str, credential: Credential, method: &str) {
        crate::observe::sftp_login(method, "succeeded");
        self.login = Some(Login {
            user: user.to_string(),
            credential,
        });
    }

    fn start_sftp(&mut self, channel: Channel<Msg>, handle: russh::server::Handle) -> bool {
        let Some(login) = &self.login else {
            return false;
        };
        let namespace_lock = lock(&self.shared.namespace_locks)
            .entry(login.user.clone())
            .or_default()
            .clone();
        let ctx = SessionContext {
            users: self.shared.users.clone(),
            user: login.user.clone(),
            root: jail::user_root(&self.shared.data_dir, &login.user),
            revoked: self.revoked.clone(),
            peer: self.peer,
            namespace_lock,
        };
        run_sftp_channel(&self.shared, channel, ctx, self.queued.clone(), handle)
    }
}

impl russh::server::Handler for Client {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer proves nothing (no signature yet): it is answered, never counted.
        if self.locked(Some(user)) {
            return Ok(Auth::reject());
        }
        let users = users::current(&self.shared.users);
        let known = users.get(user).is_some_and(|u| u.has_key(offer.public_key));
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        const METHOD: &str = "publickey";
        self.state.auth_tried.store(true, Ordering::Release);
        if self.locked(Some(user)) {
            self.refused(
                user,
                METHOD,
                &Refused::Locked(Subject::User(user.to_string())),
            );
            return Ok(Auth::reject());
        }
        // Counted against the address only: a key cannot be guessed (see `throttle`).
        let attempt = match self.shared.logins.begin(self.ip(), None).await {
            Ok(attempt) => attempt,
            Err(refused) => {
                self.refused(user, METHOD, &refused);
                return Ok(Auth::reject());
            }
        };
        let users = users::current(&self.shared.users);
        if users.get(user).is_some_and(|u| u.has_key(key.public_key)) {
            attempt.succeeded();
            self.succeeded(user, Credential::Key(key.public_key.clone()), METHOD);
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, METHOD, attempt.failed());
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        const METHOD: &str = "password";
        self.state.auth_tried.store(true, Ordering::Release);
        let users = users::current(&self.shared.users);
        let hash = users
            .get(user)
            .filter(|u| u.uses_password())
            .and_then(|u| u.password_hash.clone());
        let is_password_user = hash.is_some();
        // Counted when it starts, against the address and, when the password could have been
        // right, the user: a burst of guesses gets no more checks than the threshold.
        let attempt = match self
            .shared
            .logins
            .begin(self.ip(), is_password_user.then_some(user))
            .await
        {
            Ok(attempt) => attempt,
            Err(refused) => {
                self.refused(user, METHOD, &refused);
                return Ok(Auth::reject());
            }
        };
        let against = hash
            .clone()
            .unwrap_or_else(|| self.shared.decoy_hash.clone());
        let guess = password.to_string();
        let matches = tokio::task::spawn_blocking(move || users::verify_password(&guess, &against))
            .await
            .unwrap_or(false);
        if let (true, Some(hash)) = (matches, hash) {
            attempt.succeeded();
            self.succeeded(user, Credential::Password(hash), METHOD);
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, METHOD, attempt.failed());
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Err(russh::Error::NotAuthenticated);
        };
        // A session slot, global and per user: refused with a message the client shows.
        if let Err(refusal) = self.shared.gate.promote(self.id, &login.user) {
            let message = refusal.message(&login.user);
            tracing::warn!(
                user = %login.user,
                address = %self.peer,
                "hosted SFTP: session refused: {message}"
            );
            crate::observe::sftp_connection_refused(refusal.label());
            let code = match refusal {
                SessionRefusal::Evicted => Disconnect::ByApplication,
                _ => Disconnect::TooManyConnections,
            };
            session.disconnect(code, &message, "")?;
            return Ok(());
        }
        *lock(&self.state.user) = Some(login.user.clone());
        self.state.authenticated.store(true, Ordering::Release);
        let mut sessions = lock(&self.shared.sessions);
        // Checked again under the sessions lock: an update that removed the user between the
        // check at login and here either sees this session or is seen by this check.
        if !login.authorized_by(&users::current(&self.shared.users)) {
            drop(sessions);
            session.disconnect(Disconnect::ByApplication, "access revoked", "")?;
            return Ok(());
        }
        sessions.insert(
            self.id,
            LiveSession {
                login: login.clone(),
                peer: self.peer,
                handle: session.handle(),
                revoked: self.revoked.clone(),
                since: SystemTime::now(),
            },
        );
        drop(sessions);
        tracing::info!(
            user = %login.user,
            address = %self.peer,
            method = %login.method(),
            "hosted SFTP: logged in"
        );
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_none() || self.opened >= self.shared.limits.max_channels.max(1) {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.opened += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.opened = self.opened.saturating_sub(1);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp"
            && let Some(channel) = self.channels.remove(&channel_id)
        {
            session.channel_success(channel_id)?;
            if !self.start_sftp(channel, session.handle()) {
                session.close(channel_id)?;
            }
            return Ok(());
        }
        session.channel_failure(channel_id)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// Runs the SFTP protocol on `channel`: the frame reader, the session thread and the answer
/// writer. `queued` counts the bytes of requests waiting across the session's channels;
/// `handle` disconnects the session when a limit is exceeded. Returns false when the thread
/// could not be started.
fn run_sftp_channel(
    shared: &Arc<Shared>,
    channel: Channel<Msg>,
    ctx: SessionContext,
    queued: Arc<AtomicUsize>,
    handle: russh::server::Handle,
) -> bool {
    let (mut read_half, write_half) = channel.split();
    let (request_tx, mut request_rx) = mpsc::unbounded_channel::<Bytes>();
    let (answer_tx, mut answer_rx) = mpsc::channel::<Bytes>(ANSWER_QUEUE);
    let waiting = Arc::new(AtomicUsize::new(0));
    let (user, peer) = (ctx.user.clone(), ctx.peer);
    let limits = shared.limits.clone();

    let threads = shared.threads.clone();
    let (thread_queued, thread_waiting) = (queued.clone(), waiting.clone());
    threads.fetch_add(1, Ordering::AcqRel);
    let thread_user = user.clone();
    let spawned = std::thread::Builder::new()
        .name("ferry-sftp".into())
        .spawn(move || {
            let mut session = SftpSession::new(ctx);
            while let Some(frame) = request_rx.blocking_recv() {
                thread_queued.fetch_sub(frame.len() + REQUEST_OVERHEAD, Ordering::AcqRel);
                thread_waiting.fetch_sub(1, Ordering::AcqRel);
                match session.handle(frame) {
                    Outcome::Reply(answer) => {
                        if answer_tx.blocking_send(answer).is_err() {
                            break;
                        }
                    }
                    Outcome::Close(answer) => {
                        let _ = answer_tx.blocking_send(answer);
                        break;
                    }
                }
            }
            // Whatever was still queued no longer counts against the session.
            while let Ok(frame) = request_rx.try_recv() {
                thread_queued.fetch_sub(frame.len() + REQUEST_OVERHEAD, Ordering::AcqRel);
            }
            let totals = session.totals();
            drop(session);
            tracing::debug!(
                user = %thread_user,
                address = %peer,
                read = totals.read,
                written = totals.written,
                "hosted SFTP: SFTP session ended"
            );
            threads.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        shared.threads.fetch_sub(1, Ordering::AcqRel);
        tracing::error!(error = %e, "hosted SFTP: cannot start a session thread");
        return false;
    }

    shared.runtime.spawn(async move {
        let mut frames = Frames::default();
        let mut exceeded = None;
        'channel: while let Some(msg) = read_half.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let mut data: &[u8] = &data;
                    while !data.is_empty() {
                        let frame = match frames.push(&mut data) {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(len) => {
                                tracing::warn!(
                                    user = %user,
                                    address = %peer,
                                    len,
                                    "hosted SFTP: invalid request length; closing the channel"
                                );
                                break 'channel;
                            }
                        };
                        let cost = frame.len() + REQUEST_OVERHEAD;
                        let in_queue = waiting.fetch_add(1, Ordering::AcqRel) + 1;
                        let bytes = queued.fetch_add(cost, Ordering::AcqRel) + cost;
                        if request_tx.send(frame).is_err() {
                            // The thread ended: its leftovers were counted down there.
                            queued.fetch_sub(cost, Ordering::AcqRel);
                            break 'channel;
                        }
                        if in_queue > limits.max_requests {
                            exceeded = Some((
                                "requests",
                                format!(
                                    "more than {} requests waiting on one channel",
                                    limits.max_requests
                                ),
                            ));
                            break 'channel;
                        }
                        if bytes > limits.max_buffer {
                            exceeded = Some((
                                "buffer",
                                format!(
                                    "more than {} MiB of requests waiting",
                                    limits.max_buffer / (1024 * 1024)
                                ),
                            ));
                            break 'channel;
                        }
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        drop(request_tx);
        if let Some((label, what)) = exceeded {
            tracing::warn!(
                user = %user,
                address = %peer,
                "hosted SFTP: disconnecting: the client sent {what} without reading the answers"
            );
            crate::observe::sftp_session_limit_exceeded(label);
            let _ = handle
                .disconnect(
                    Disconnect::ByApplication,
                    format!("{what}; read the answers before sending more"),
                    String::new(),
                )
                .await;
        }
    });

    shared.runtime.spawn(async move {
        while let Some(answer) = answer_rx.recv().await {
            if write_half.data_bytes(answer).await.is_err() {
                break;
            }
        }
        let _ = write_half.eof().await;
        let _ = write_half.close().await;
    });
    true
}

/// Cuts a channel's byte stream into SFTP request frames (without their length). Each frame
/// gets an allocation of exactly its size, filled as its bytes arrive: no frame keeps a larger
/// buffer alive, so what a queue of frames holds is what it counts.
#[derive(Default)]
struct Frames {
    length: [u8; 4],
    have_length: usize,
    body: Option<BytesMut>,
    want: usize,
}

impl Frames {
    /// Takes bytes from `data` (advancing it) until a frame is complete (returned) or `data`
    /// is used up (`None`). `Err(length)` for a length of 0 or above [`MAX_FRAME`].
    fn push(&mut self, data: &mut &[u8]) -> std::result::Result<Option<Bytes>, usize> {
        if self.body.is_none() {
            let take = (4 - self.have_length).min(data.len());
            self.length[self.have_length..self.have_length + take].copy_from_slice(&data[..take]);
            self.have_length += take;
            *data = &data[take..];
            if self.have_length < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.length) as usize;
            self.have_length = 0;
            if len == 0 || len > MAX_FRAME {
                return Err(len);
            }
            self.want = len;
            self.body = Some(BytesMut::with_capacity(len));
        }
        let body = self.body.as_mut().expect("a frame is being filled");
        let take = (self.want - body.len()).min(data.len());
        body.extend_from_slice(&data[..take]);
        *data = &data[take..];
        if body.len() < self.want {
            return Ok(None);
        }
        Ok(self.body.take().map(BytesMut::freeze))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whatever_the_packet_boundaries() {
        let mut stream = Vec::new();
        for body in [&b"abc"[..], &[7u8; 70_000][..], b"z"] {
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for chunk in [1, 3, 5, 32_768, stream.len()] {
            let mut frames = Frames::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut piece = piece;
                while !piece.is_empty() {
                    if let Some(f) = frames.push(&mut piece).expect("valid") {
                        out.push(f);
                    }
                }
            }
            assert_eq!(out.len(), 3, "chunk {chunk}");
            assert_eq!(&out[0][..], b"abc");
            assert_eq!(out[1].len(), 70_000);
            assert_eq!(&out[2][..], b"z");
        }
    }

    #[test]
    fn a_zero_or_huge_length_is_refused() {
        let mut frames = Frames::default();
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert_eq!(frames.push(&mut zero), Err(0));
        let mut frames = Frames::default();
        let mut huge: &[u8] = &[0x7f, 0, 0, 0];
        assert!(frames.push(&mut huge).is_err());
    }
}
