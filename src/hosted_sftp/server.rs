//! The SSH side of the hosted SFTP server: listening, the host key, authentication with
//! throttling, the session registry that lets a registry update close sessions at once, and
//! the plumbing between a channel and its [`SftpSession`] thread.
//!
//! Per SFTP channel three parts run: an async reader that cuts the channel's byte stream into
//! request frames, a thread that answers them in order ([`SftpSession`], blocking file I/O),
//! and an async writer that sends the answers (waiting for the client's window). The reader
//! never waits for the thread: russh delivers channel data from its session loop, and a reader
//! stuck behind a full queue would stall that loop and with it the writer. Instead the bytes
//! queued ahead of the thread are counted, and a client that keeps sending without reading
//! its answers past [`MAX_QUEUED_BYTES`] is disconnected.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, Disconnect, MethodKind, MethodSet};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::jail;
use super::sftp::{MAX_FRAME, Outcome, SessionContext, SftpSession};
use super::throttle::{Lockout, LockoutPolicy, Subject, Throttle};
use super::users::{self, SharedUsers, User, Users};
use crate::ssh::{self, PublicKey};
use crate::{Error, Result};

/// Bytes of requests a client may have queued ahead of its session thread.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
/// Answers queued between a session thread and the channel writer.
const ANSWER_QUEUE: usize = 32;
/// SFTP channels (and other session channels) one connection may open.
const MAX_CHANNELS_PER_CONNECTION: usize = 4;
/// Time to wait for sessions to end at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

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
    /// Time a client has to log in after connecting. Default 60 seconds.
    pub login_grace: Duration,
    /// Connections (logged in or not) open at once; more are refused at once, with a log
    /// line. Default 64.
    pub max_sessions: usize,
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
            login_grace: Duration::from_secs(60),
            max_sessions: 64,
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
    throttle: Mutex<Throttle>,
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
    slots: Arc<Semaphore>,
    max_sessions: usize,
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
        throttle: Mutex::new(Throttle::new(config.lockout.clone())),
        decoy_hash,
        runtime: tokio::runtime::Handle::current(),
        next_id: AtomicU64::new(1),
        threads: Arc::new(AtomicUsize::new(0)),
        namespace_locks: Mutex::new(HashMap::new()),
    });
    let max_sessions = config.max_sessions.max(1);
    let slots = Arc::new(Semaphore::new(max_sessions));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ssh_config = Arc::new(ssh_config(&config, key));
    let accept_task = tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        ssh_config,
        config.login_grace,
        shutdown_rx,
        slots.clone(),
        max_sessions,
    ));
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
        slots,
        max_sessions,
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
        lock(&self.shared.throttle).lockouts(Instant::now())
    }

    /// Stops listening, closes every session and waits (up to 10 s) for them to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
        let all = u32::try_from(self.max_sessions).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, self.slots.acquire_many(all)).await;
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.shared.threads.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
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
    slots: Arc<Semaphore>,
    max_sessions: usize,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(connection(
                            shared.clone(),
                            ssh_config.clone(),
                            stream,
                            peer,
                            login_grace,
                            permit,
                            shutdown.clone(),
                        ));
                    }
                    Err(_) => {
                        tracing::warn!(
                            address = %peer,
                            max_sessions,
                            "hosted SFTP: connection refused: the maximum number of sessions is reached"
                        );
                        tokio::spawn(refuse(stream));
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "hosted SFTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Tells a client over the session limit why it is turned away (a line before the SSH
/// version, which clients show in verbose mode), then closes.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream
            .write_all(b"Ferry hosted SFTP: too many sessions, try again later\r\n")
            .await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(
    shared: Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    login_grace: Duration,
    permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let authenticated = Arc::new(AtomicBool::new(false));
    let handler = Client {
        shared: shared.clone(),
        id,
        peer,
        authenticated: authenticated.clone(),
        login: None,
        revoked: Arc::new(AtomicBool::new(false)),
        channels: HashMap::new(),
        opened: 0,
    };
    let started = tokio::time::timeout(
        login_grace,
        russh::server::run_stream(ssh_config, stream, handler),
    )
    .await;
    let session = match started {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection failed");
            return;
        }
        Err(_) => {
            tracing::debug!(address = %peer, "hosted SFTP: no SSH greeting in time");
            return;
        }
    };
    let handle = session.handle();
    let grace = tokio::time::sleep(login_grace);
    tokio::pin!(session);
    tokio::pin!(grace);
    let mut grace_pending = true;
    loop {
        tokio::select! {
            ended = &mut session => {
                if let Err(e) = ended {
                    tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection ended");
                }
                break;
            }
            () = &mut grace, if grace_pending => {
                grace_pending = false;
                if !authenticated.load(Ordering::Acquire) {
                    tracing::info!(address = %peer, "hosted SFTP: no login in time; disconnecting");
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "login grace time over".into(), String::new())
                        .await;
                }
            }
            _ = shutdown.changed() => {
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "server shutting down".into(), String::new())
                    .await;
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, &mut session).await;
                break;
            }
        }
    }
    if let Some(live) = lock(&shared.sessions).remove(&id) {
        tracing::info!(
            user = %live.login.user,
            address = %peer,
            "hosted SFTP: logged out"
        );
    }
    drop(permit);
}

/// One connection's SSH handler.
struct Client {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    authenticated: Arc<AtomicBool>,
    login: Option<Login>,
    revoked: Arc<AtomicBool>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    opened: usize,
}

impl Client {
    fn locked(&self, user: Option<&str>) -> bool {
        let throttle = lock(&self.shared.throttle);
        let now = Instant::now();
        throttle.is_locked(&Subject::Address(self.peer.ip()), now)
            || user.is_some_and(|u| throttle.is_locked(&Subject::User(u.to_string()), now))
    }

    /// Records a failed attempt; `user` when it counts against that user too. Returns how
    /// long to wait before answering.
    fn failed(&self, user: &str, count_user: bool, method: &str) -> Duration {
        let now = Instant::now();
        let mut throttle = lock(&self.shared.throttle);
        let by_address = throttle.fail(Subject::Address(self.peer.ip()), now);
        let by_user = count_user.then(|| throttle.fail(Subject::User(user.to_string()), now));
        drop(throttle);
        tracing::info!(user = ?user, address = %self.peer, method, "hosted SFTP: login failed");
        if by_address.locked_now {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins from this address: locked out"
            );
        }
        if by_user.is_some_and(|v| v.locked_now) {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins for this user: locked out"
            );
        }
        by_user.map_or(by_address.delay, |v| v.delay.max(by_address.delay))
    }

    fn succeeded(&mut self, user: &str, credential: Credential) {
        lock(&self.shared.throttle).succeed(&Subject::User(user.to_string()));
        self.login = Some(Login {
            user: user.to_string(),
            credential,
        });
    }

    fn start_sftp(&mut self, channel: Channel<Msg>) -> bool {
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
        run_sftp_channel(&self.shared, channel, ctx)
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
        if self.locked(None) {
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
        if self.locked(None) {
            return Ok(Auth::reject());
        }
        let users = users::current(&self.shared.users);
        if users.get(user).is_some_and(|u| u.has_key(key.public_key)) {
            self.succeeded(user, Credential::Key(key.public_key.clone()));
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, false, "publickey");
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.locked(Some(user)) {
            tracing::info!(
                user = ?user,
                address = %self.peer,
                "hosted SFTP: login refused: locked out"
            );
            return Ok(Auth::reject());
        }
        let users = users::current(&self.shared.users);
        let hash = users
            .get(user)
            .filter(|u| u.uses_password())
            .and_then(|u| u.password_hash.clone());
        let is_password_user = hash.is_some();
        let against = hash
            .clone()
            .unwrap_or_else(|| self.shared.decoy_hash.clone());
        let attempt = password.to_string();
        let matches =
            tokio::task::spawn_blocking(move || users::verify_password(&attempt, &against))
                .await
                .unwrap_or(false);
        if let (true, Some(hash)) = (matches, hash) {
            self.succeeded(user, Credential::Password(hash));
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, is_password_user, "password");
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Err(russh::Error::NotAuthenticated);
        };
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
        self.authenticated.store(true, Ordering::Release);
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
        if self.login.is_none() || self.opened >= MAX_CHANNELS_PER_CONNECTION {
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
            if !self.start_sftp(channel) {
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
/// writer. Returns false when the thread could not be started.
fn run_sftp_channel(shared: &Arc<Shared>, channel: Channel<Msg>, ctx: SessionContext) -> bool {
    let (mut read_half, write_half) = channel.split();
    let (request_tx, mut request_rx) = mpsc::unbounded_channel::<Bytes>();
    let (answer_tx, mut answer_rx) = mpsc::channel::<Bytes>(ANSWER_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let (user, peer) = (ctx.user.clone(), ctx.peer);

    let threads = shared.threads.clone();
    let thread_queued = queued.clone();
    threads.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name("ferry-sftp".into())
        .spawn(move || {
            let mut session = SftpSession::new(ctx);
            while let Some(frame) = request_rx.blocking_recv() {
                thread_queued.fetch_sub(frame.len(), Ordering::AcqRel);
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
            let totals = session.totals();
            drop(session);
            tracing::debug!(
                user = %user,
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
        let mut buf = BytesMut::with_capacity(64 * 1024);
        'channel: while let Some(msg) = read_half.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    buf.extend_from_slice(&data);
                    while buf.len() >= 4 {
                        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        if len == 0 || len > MAX_FRAME {
                            tracing::warn!(
                                address = %peer,
                                len,
                                "hosted SFTP: invalid request length; closing the channel"
                            );
                            break 'channel;
                        }
                        if buf.len() < 4 + len {
                            buf.reserve(4 + len - buf.len());
                            break;
                        }
                        buf.advance(4);
                        let frame = buf.split_to(len).freeze();
                        if queued.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
                            tracing::warn!(
                                address = %peer,
                                "hosted SFTP: the client sends requests without reading the answers; closing the channel"
                            );
                            break 'channel;
                        }
                        if request_tx.send(frame).is_err() {
                            break 'channel;
                        }
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
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
