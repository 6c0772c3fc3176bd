//! The hosted SFTP server's handle: [`start`] prepares the data directory and the users'
//! directories, loads (or generates) the host key and listens; [`HostedSftpServer`] applies
//! registry updates (closing at once the sessions whose credential no longer authorizes them),
//! lists sessions and lock-outs, and shuts down.
//!
//! The rest of the server, bottom up: [`super::config`] (settings and reports, plain data),
//! [`super::session`] (the state every part shares), [`super::channel`] (one SFTP channel:
//! frame reader, session thread, answer writer) and [`super::connection`] (one SSH
//! connection: admission, login grace, authentication with lock-out, the session slot).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use russh::{Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admission::Gate;
use super::config::{ActiveSession, HostedSftpConfig, UsersUpdate};
use super::connection::{accept_loop, refresh_gauges};
use super::jail;
use super::session::{SHUTDOWN_WAIT, Shared, lock};
use super::throttle::{Lockout, Logins};
use super::users::{self, User, Users};
use crate::ssh::{self, PublicKey};
use crate::{Error, Result};

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
