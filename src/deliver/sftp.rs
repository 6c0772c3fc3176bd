//! Delivery to an SFTP server (SSH File Transfer Protocol v3, as OpenSSH speaks it).
//!
//! One connection per file: connect, check the server's host key against the pinned
//! `hostKeys` (mandatory), log in with a private key or a password, create the directory,
//! upload under a hidden temporary name with many write requests in flight, rename to the final
//! name (atomically replacing an existing file), and confirm the size. A reader of the
//! directory sees either no file, the previous file, or the complete new file: never a partial
//! one under the final name.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{Disconnect, MethodKind};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::spec::TargetSpec;
use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::TargetKind;
use crate::api::{SecretRef, SftpTarget};
use crate::secrets::{FileSecrets, SecretValue};
use crate::ssh::{self, HostKeyCheck, PublicKey};
use crate::validate::fields::{PORT_ZERO, Problems, check_host, check_remote_dir};
use crate::{Error, Result};

/// Time allowed to open the TCP connection and complete the SSH handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for any one SFTP request to be answered (a write counts from when it is queued,
/// so this also bounds how long a full pipeline may take to drain on a slow link).
const REQUEST_TIMEOUT_SECS: u64 = 300;
/// Write size when the server does not announce its limits (OpenSSH's sftp default).
const DEFAULT_CHUNK: usize = 32 * 1024;
/// Largest write size used even if the server allows more (OpenSSH's sftp caps at its
/// 256 KiB message limit minus headers, as here).
const MAX_CHUNK: usize = 256 * 1024 - 1024;
/// Write requests kept in flight (OpenSSH's sftp: 64).
const MAX_IN_FLIGHT: usize = 64;
/// Upper bound on the bytes queued in flight, whatever the chunk size.
const MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;
/// The server's answer to `SSH_FXP_INIT` may list this extension: rename that replaces.
const POSIX_RENAME: &str = "posix-rename@openssh.com";
/// Extension announcing the server's packet and write size limits.
const LIMITS: &str = "limits@openssh.com";

/// How the transport logs in. Never printed.
enum Credentials {
    /// A private key, and optionally a password to try when the key is refused.
    Key {
        key: Arc<PrivateKey>,
        password: Option<SecretValue>,
    },
    /// A password (tried as `password`, then as `keyboard-interactive`).
    Password(SecretValue),
}

/// An `sftp` target, with its secrets resolved and host keys parsed.
pub struct SftpTransport {
    name: String,
    host: String,
    port: u16,
    directory: String,
    username: String,
    credentials: Credentials,
    pinned: Arc<Vec<PublicKey>>,
}

impl std::fmt::Debug for SftpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpTransport")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("directory", &self.directory)
            .field("username", &self.username)
            .field("credentials", &"(sensitive)")
            .finish()
    }
}

impl SftpTransport {
    /// Reads the target's secrets (private key and passphrase, or password) from `secrets` and
    /// parses its pinned host keys. Fails when a secret is missing or unreadable, the key cannot
    /// be decoded (or decrypted with the passphrase), or no valid host key is pinned.
    pub fn new(
        namespace: &str,
        name: &str,
        target: &SftpTarget,
        secrets: &FileSecrets,
    ) -> Result<Self> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        if target.host_keys.is_empty() {
            return Err(fail(format!(
                "no host key is pinned (hostKeys is empty); get the server's keys with \
                 `ferry keyscan {}`, verify a fingerprint with the server's administrator, and \
                 pin the line",
                ssh::host_port(&target.host, target.port)
            )));
        }
        let mut pinned = Vec::with_capacity(target.host_keys.len());
        for (i, line) in target.host_keys.iter().enumerate() {
            let key =
                ssh::parse_public_key(line).map_err(|e| fail(format!("hostKeys[{i}]: {e}")))?;
            pinned.push(key);
        }
        let password = target
            .password_secret_ref
            .as_ref()
            .map(|r| secrets.require(namespace, r))
            .transpose()?;
        let credentials = match &target.private_key_secret_ref {
            Some(key_ref) => {
                let pem = secrets.require(namespace, key_ref)?;
                let passphrase = target
                    .passphrase_secret_ref
                    .as_ref()
                    .map(|r| secrets.require(namespace, r).map(|v| (r, v)))
                    .transpose()?;
                let key = decode_key(key_ref, &pem, passphrase.as_ref().map(|(r, v)| (*r, v)))
                    .map_err(fail)?;
                Credentials::Key {
                    key: Arc::new(key),
                    password,
                }
            }
            None => match password {
                Some(p) => Credentials::Password(p),
                None => {
                    return Err(fail(
                        "no credentials: give privateKeySecretRef or passwordSecretRef".into(),
                    ));
                }
            },
        };
        Ok(SftpTransport {
            name: name.to_string(),
            host: target.host.clone(),
            port: target.port,
            directory: target.directory.clone(),
            username: target.username.clone(),
            credentials,
            pinned: Arc::new(pinned),
        })
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Delivery {
            target: self.name.clone(),
            message: message.into(),
        }
    }

    fn host_port(&self) -> String {
        ssh::host_port(&self.host, self.port)
    }

    /// `sftp://user@host:port/path` of a remote path (made absolute when it is not).
    fn url(&self, path: &str) -> String {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        format!(
            "sftp://{}@{}{}",
            percent_encode(&self.username, false),
            self.host_port(),
            percent_encode(&path, true)
        )
    }

    /// Connects and checks the host key. Returns the session and the key's fingerprint.
    async fn connect(&self) -> Result<(Handle<HostKeyCheck>, String)> {
        let algorithms = ssh::host_key_algorithms_for(&self.pinned);
        let config = Arc::new(ssh::client_config(algorithms.clone()));
        let (handler, offered) = HostKeyCheck::new(self.pinned.clone());
        let attempt = russh::client::connect(config, (self.host.as_str(), self.port), handler);
        let result = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await;
        let seen = offered.lock().ok().and_then(|s| s.clone());
        match result {
            Err(_) => Err(self.error(format!(
                "cannot connect to {}: no SSH handshake within {}s",
                self.host_port(),
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Ok(handle)) => match seen {
                Some(key) => Ok((handle, ssh::fingerprint(&key))),
                None => Err(self.error(format!(
                    "{}: the server did not prove a host key",
                    self.host_port()
                ))),
            },
            Ok(Err(russh::Error::UnknownKey)) => Err(self.host_key_mismatch(seen.as_slice())),
            Ok(Err(russh::Error::NoCommonAlgo {
                kind: russh::AlgorithmKind::Key,
                ..
            })) => {
                // The server has no key of a pinned type: show what it has instead.
                let others = ssh::offered_host_key(
                    &self.host,
                    self.port,
                    ssh::all_host_key_algorithms(),
                    CONNECT_TIMEOUT,
                )
                .await
                .ok()
                .flatten();
                Err(self.host_key_mismatch(others.as_slice()))
            }
            Ok(Err(e)) => Err(self.error(format!(
                "cannot connect to {}: {}",
                self.host_port(),
                ssh::describe_connect_error(&e)
            ))),
        }
    }

    /// The error for a server whose host key is not pinned.
    fn host_key_mismatch(&self, offered: &[PublicKey]) -> Error {
        let pinned = self
            .pinned
            .iter()
            .map(|k| format!("{} {}", k.algorithm().as_str(), ssh::fingerprint(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let offered = match offered.first() {
            Some(k) => format!(
                "the server offered the {} key {}",
                k.algorithm().as_str(),
                ssh::fingerprint(k)
            ),
            None => "the server offered no host key of a pinned type".to_string(),
        };
        self.error(format!(
            "host key verification failed for {hp}: {offered}, which is not pinned in hostKeys \
             (pinned: {pinned}); nothing was uploaded and no credentials were sent. This can mean someone is intercepting the \
             connection. If the server's key was changed on purpose, verify the new fingerprint \
             with its administrator (out of band), then pin the line printed by \
             `ferry keyscan {hp}`",
            hp = self.host_port()
        ))
    }

    /// Logs in with the key (then the password if one is also given) or the password.
    async fn authenticate(&self, handle: &mut Handle<HostKeyCheck>) -> Result<()> {
        let user = self.username.as_str();
        let mut refused: Vec<String> = Vec::new();
        let mut methods = None;
        let failed = |e: russh::Error| {
            self.error(format!(
                "authentication as `{user}` at {}: {}",
                self.host_port(),
                ssh::describe_connect_error(&e)
            ))
        };
        let password = match &self.credentials {
            Credentials::Key { key, password } => {
                let hash = if key.algorithm().is_rsa() {
                    match handle.best_supported_rsa_hash().await.map_err(failed)? {
                        Some(alg) => alg,
                        None => Some(HashAlg::Sha512),
                    }
                } else {
                    None
                };
                let attempt = PrivateKeyWithHashAlg::new(key.clone(), hash);
                match handle
                    .authenticate_publickey(user, attempt)
                    .await
                    .map_err(failed)?
                {
                    AuthResult::Success => return Ok(()),
                    AuthResult::Failure {
                        remaining_methods, ..
                    } => {
                        refused.push(format!(
                            "the server refused the {} key {}",
                            key.algorithm().as_str(),
                            ssh::fingerprint(key.public_key())
                        ));
                        methods = Some(remaining_methods);
                    }
                }
                password.as_ref()
            }
            Credentials::Password(p) => Some(p),
        };
        if let Some(secret) = password {
            let password = secret
                .expose_str()
                .map_err(|_| self.error("the password secret is not UTF-8 text"))?;
            match handle
                .authenticate_password(user, password)
                .await
                .map_err(failed)?
            {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure {
                    remaining_methods, ..
                } => {
                    let interactive = remaining_methods.contains(&MethodKind::KeyboardInteractive);
                    methods = Some(remaining_methods);
                    if interactive
                        && self
                            .keyboard_interactive(handle, password)
                            .await
                            .map_err(failed)?
                    {
                        return Ok(());
                    }
                    refused.push("the server refused the password".into());
                }
            }
        }
        let accepts = methods
            .map(|m| m.iter().map(<&str>::from).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .map(|s| format!(" (it accepts: {s})"))
            .unwrap_or_default();
        Err(self.error(format!(
            "authentication as `{user}` at {} failed: {}{accepts}",
            self.host_port(),
            refused.join("; ")
        )))
    }

    /// Answers keyboard-interactive prompts that do not echo (password prompts) with the
    /// password. `Ok(true)` when that logged in.
    async fn keyboard_interactive(
        &self,
        handle: &mut Handle<HostKeyCheck>,
        password: &str,
    ) -> Result<bool, russh::Error> {
        let mut response = handle
            .authenticate_keyboard_interactive_start(self.username.as_str(), None)
            .await?;
        for _ in 0..4 {
            match response {
                KeyboardInteractiveAuthResponse::Success => return Ok(true),
                KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|p| {
                            if p.echo {
                                String::new()
                            } else {
                                password.to_string()
                            }
                        })
                        .collect();
                    response = handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await?;
                }
            }
        }
        Ok(false)
    }

    /// Opens the `sftp` subsystem and negotiates the protocol.
    async fn open_sftp(&self, handle: &Handle<HostKeyCheck>) -> Result<Sftp> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            self.error(format!(
                "{what} at {} as `{}`: {e}",
                self.host_port(),
                self.username
            ))
        };
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| fail("cannot open an SSH session channel", &e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| fail("cannot start the sftp subsystem", &e))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        let raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = raw
            .init()
            .await
            .map_err(|e| fail("the sftp subsystem did not start (is SFTP enabled?)", &e))?;
        let extensions = version.extensions;
        let mut chunk = DEFAULT_CHUNK;
        if extensions.contains_key(LIMITS)
            && let Ok(limits) = raw.limits().await
        {
            // Room for the packet header and handle within the server's packet limit.
            let by_packet = usize::try_from(limits.max_packet_len)
                .unwrap_or(usize::MAX)
                .saturating_sub(1024);
            let by_write = usize::try_from(limits.max_write_len).unwrap_or(usize::MAX);
            let allowed = match (limits.max_packet_len, limits.max_write_len) {
                (0, 0) => DEFAULT_CHUNK,
                (0, _) => by_write,
                (_, 0) => by_packet,
                _ => by_write.min(by_packet),
            };
            chunk = allowed.clamp(4096, MAX_CHUNK);
        }
        Ok(Sftp {
            raw,
            extensions,
            chunk,
        })
    }

    /// Makes sure `self.directory` exists (creating missing parents) and returns its absolute
    /// path as the server sees it (`/` is the root of a chroot).
    async fn ensure_directory(&self, sftp: &Sftp) -> Result<String> {
        let dir = normalize_dir(&self.directory);
        match sftp.raw.stat(dir.as_str()).await {
            Ok(a) if a.attrs.is_dir() => {}
            Ok(_) => {
                return Err(self.error(format!("{} exists and is not a directory", self.url(&dir))));
            }
            Err(_) => self.create_directories(sftp, &dir).await?,
        }
        // The absolute path, for the receipt; keep the given one if the server cannot say.
        let absolute = match sftp.raw.realpath(dir.as_str()).await {
            Ok(name) => name
                .files
                .into_iter()
                .next()
                .map(|f| f.filename)
                .filter(|p| p.starts_with('/')),
            Err(_) => None,
        };
        Ok(absolute.unwrap_or(dir))
    }

    /// `mkdir -p`: creates each missing component of `dir` in turn.
    async fn create_directories(&self, sftp: &Sftp, dir: &str) -> Result<()> {
        let mut path = if dir.starts_with('/') {
            String::from("/")
        } else {
            String::new()
        };
        for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if !path.is_empty() && !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
            match sftp.raw.stat(path.as_str()).await {
                Ok(a) if a.attrs.is_dir() => continue,
                Ok(_) => {
                    return Err(self.error(format!(
                        "cannot create directory {}: {path} exists and is not a directory",
                        self.url(dir)
                    )));
                }
                Err(_) => {}
            }
            if let Err(e) = sftp.raw.mkdir(path.as_str(), FileAttributes::empty()).await {
                // Someone else may have created it meanwhile.
                match sftp.raw.stat(path.as_str()).await {
                    Ok(a) if a.attrs.is_dir() => {}
                    _ => {
                        return Err(self.error(format!(
                            "cannot create directory {}: {}",
                            self.url(&path),
                            describe_sftp_error(&e)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Uploads the staged file to `temp`: opened with truncate (a leftover of an earlier
    /// attempt of the same run is overwritten), written with up to [`MAX_IN_FLIGHT`] requests
    /// in flight, size checked on the open handle, closed.
    async fn upload(&self, sftp: &Sftp, file: &Outgoing<'_>, temp: &str) -> Result<()> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            self.error(format!("{what} {}: {e}", self.url(temp)))
        };
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let opened = match sftp.raw.open(temp, flags, FileAttributes::empty()).await {
            // A leftover we may not write (another owner, read-only) may still be removable.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::PermissionDenied => {
                match sftp.raw.remove(temp).await {
                    Ok(_) => sftp.raw.open(temp, flags, FileAttributes::empty()).await,
                    Err(_) => Err(SftpError::Status(s)),
                }
            }
            other => other,
        };
        let handle = opened
            .map_err(|e| fail("cannot create", &describe_sftp_error(&e)))?
            .handle;
        let written = self.write_all(sftp, &handle, file).await;
        let written = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = sftp.raw.close(handle.as_str()).await;
                return Err(fail("upload to", &e));
            }
        };
        let size = sftp.raw.fstat(handle.as_str()).await;
        let closed = sftp.raw.close(handle.as_str()).await;
        closed.map_err(|e| fail("cannot finish writing", &describe_sftp_error(&e)))?;
        if written != file.bytes {
            return Err(fail(
                "upload to",
                &format!(
                    "the staged file {} has {written} bytes, expected {}",
                    file.staged.display(),
                    file.bytes
                ),
            ));
        }
        if let Ok(attrs) = size
            && let Some(size) = attrs.attrs.size
            && size != file.bytes
        {
            return Err(fail(
                "size check of",
                &format!("the server has {size} bytes, {} were sent", file.bytes),
            ));
        }
        Ok(())
    }

    /// Streams the staged file into the open `handle`, pipelined. Returns the bytes written.
    async fn write_all(
        &self,
        sftp: &Sftp,
        handle: &str,
        file: &Outgoing<'_>,
    ) -> Result<u64, String> {
        let chunk = sftp.chunk;
        let depth = MAX_IN_FLIGHT.min(MAX_IN_FLIGHT_BYTES / chunk).max(1);
        // A reader thread fills buffers ahead of the writes, so disk reads overlap the network.
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(depth);
        let staged = file.staged.to_path_buf();
        let reader = tokio::spawn(read_chunks(staged, chunk, tx));
        let raw = &sftp.raw;
        let mut in_flight = FuturesUnordered::new();
        let mut offset = 0u64;
        let mut eof = false;
        let result = loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                    Ok(_) => {}
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Failure => {
                        break Err(format!(
                            "the server could not write the data ({}): its disk may be full or \
                             a quota exceeded",
                            describe_sftp_error(&SftpError::Status(s))
                        ));
                    }
                    Err(e) => break Err(describe_sftp_error(&e)),
                },
                next = rx.recv(), if !eof && in_flight.len() < depth => match next {
                    Some(Ok(buf)) => {
                        let at = offset;
                        offset += buf.len() as u64;
                        in_flight.push(raw.write(handle, at, buf));
                    }
                    Some(Err(e)) => {
                        break Err(format!("reading {}: {e}", file.staged.display()));
                    }
                    None => eof = true,
                },
                else => break Ok(offset),
            }
        };
        drop(rx);
        reader.abort();
        result
    }

    /// Renames `temp` to `target`, replacing an existing file: with `posix-rename@openssh.com`
    /// (an atomic `rename(2)`) when offered, else remove then rename.
    async fn rename(&self, sftp: &Sftp, temp: &str, target: &str) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| {
            self.error(format!(
                "cannot rename {} to {}: {e}",
                self.url(temp),
                self.url(target)
            ))
        };
        if sftp.extensions.contains_key(POSIX_RENAME) {
            let mut data = Vec::with_capacity(8 + temp.len() + target.len());
            for s in [temp, target] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match sftp.raw.extended(POSIX_RENAME, data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(fail(&describe_sftp_error(&SftpError::Status(s)))),
                Ok(_) => Err(fail(&"unexpected answer to posix-rename")),
                Err(e) => Err(fail(&describe_sftp_error(&e))),
            };
        }
        // Plain SFTP v3 rename fails when the target exists.
        match sftp.raw.remove(target).await {
            Ok(_) => {}
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
            Err(e) => {
                // Maybe it did not exist under another code; the rename will tell.
                tracing::debug!(target = %self.name, "removing {target} before rename: {e}");
            }
        }
        sftp.raw
            .rename(temp, target)
            .await
            .map(drop)
            .map_err(|e| fail(&describe_sftp_error(&e)))
    }

    async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
        let (mut handle, host_key) = self.connect().await?;
        self.authenticate(&mut handle).await?;
        let sftp = self.open_sftp(&handle).await?;
        let result = self.transfer(&sftp, file).await;
        drop(sftp);
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
        let (remote_path, bytes) = result?;
        let mut details = std::collections::BTreeMap::new();
        details.insert("hostKey".to_string(), host_key);
        details.insert("remotePath".to_string(), remote_path.clone());
        Ok(Receipt {
            location: self.url(&remote_path),
            bytes,
            sha256: file.sha256.to_string(),
            details,
        })
    }

    /// Directory, upload, rename, confirm. Returns the final path and its size.
    async fn transfer(&self, sftp: &Sftp, file: &Outgoing<'_>) -> Result<(String, u64)> {
        let dir = self.ensure_directory(sftp).await?;
        let temp = join(
            &dir,
            &super::atomic::partial_name(file.file_name, file.run_id),
        );
        let target = join(&dir, file.file_name);
        let placed = async {
            self.upload(sftp, file, &temp).await?;
            self.rename(sftp, &temp, &target).await
        }
        .await;
        if let Err(e) = placed {
            // Best effort: the connection may be gone.
            let cleanup = sftp.raw.remove(temp.as_str());
            let _ = tokio::time::timeout(Duration::from_secs(10), cleanup).await;
            return Err(e);
        }
        let attrs = sftp.raw.stat(target.as_str()).await.map_err(|e| {
            self.error(format!(
                "size check of {}: {}",
                self.url(&target),
                describe_sftp_error(&e)
            ))
        })?;
        match attrs.attrs.size {
            Some(size) if size == file.bytes => Ok((target, size)),
            Some(size) => Err(self.error(format!(
                "size check of {}: the server has {size} bytes after the rename, {} were sent",
                self.url(&target),
                file.bytes
            ))),
            None => Err(self.error(format!(
                "size check of {}: the server did not report a size",
                self.url(&target)
            ))),
        }
    }
}

impl Transport for SftpTransport {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.deliver_file(file))
    }
}

/// An open SFTP session and what the server said it supports.
struct Sftp {
    raw: RawSftpSession,
    extensions: HashMap<String, String>,
    /// Bytes per write request.
    chunk: usize,
}

/// Reads `path` in `chunk`-sized buffers into `tx` until the end, on the blocking pool.
async fn read_chunks(path: PathBuf, chunk: usize, tx: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    // Large reads from the file, split into write-sized buffers.
    let block = (chunk * 16).max(1024 * 1024);
    let mut big = vec![0u8; block];
    loop {
        let mut filled = 0;
        while filled < block {
            match file.read(&mut big[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        for piece in big[..filled].chunks(chunk) {
            if tx.send(Ok(piece.to_vec())).await.is_err() {
                return;
            }
        }
        if filled < block {
            return;
        }
    }
}

/// Decodes an OpenSSH (or PKCS#1/PKCS#8 PEM) private key. Errors name the secrets, never
/// their values.
fn decode_key(
    key_ref: &SecretRef,
    pem: &SecretValue,
    passphrase: Option<(&SecretRef, &SecretValue)>,
) -> Result<PrivateKey, String> {
    let text = pem.expose_str().map_err(|_| {
        format!(
            "the private key (secret {}/{}) is not text: expected an OpenSSH private key \
             (-----BEGIN OPENSSH PRIVATE KEY-----)",
            key_ref.name, key_ref.key
        )
    })?;
    let pass = match passphrase {
        Some((r, v)) => Some(v.expose_str().map_err(|_| {
            format!(
                "the passphrase (secret {}/{}) is not UTF-8 text",
                r.name, r.key
            )
        })?),
        None => None,
    };
    russh::keys::decode_secret_key(text, pass).map_err(|e| match (e, passphrase) {
        (russh::keys::Error::KeyIsEncrypted, None) => format!(
            "the private key (secret {}/{}) is encrypted: give its passphrase with \
             passphraseSecretRef",
            key_ref.name, key_ref.key
        ),
        (e, Some((r, _))) => format!(
            "cannot read the private key (secret {}/{}) with the passphrase (secret {}/{}): \
             {e} (wrong passphrase?)",
            key_ref.name, key_ref.key, r.name, r.key
        ),
        (e, None) => format!(
            "cannot read the private key (secret {}/{}): {e} (expected an OpenSSH private key, \
             -----BEGIN OPENSSH PRIVATE KEY-----)",
            key_ref.name, key_ref.key
        ),
    })
}

/// An SFTP error in words: the server's status message when it sent one.
fn describe_sftp_error(e: &SftpError) -> String {
    match e {
        SftpError::Status(s)
            if !s.error_message.is_empty()
                && !s
                    .error_message
                    .eq_ignore_ascii_case(&s.status_code.to_string()) =>
        {
            format!("{} ({})", s.error_message, s.status_code)
        }
        SftpError::Status(s) => s.status_code.to_string(),
        SftpError::Timeout => format!("no answer from the server within {REQUEST_TIMEOUT_SECS}s"),
        // The session's reader stopped: the channel or the connection is gone.
        SftpError::UnexpectedBehavior(m)
            if m.contains("sender dropped") || m.contains("session closed") =>
        {
            "the server closed the connection".into()
        }
        other => other.to_string(),
    }
}

/// The directory as given, without trailing slashes; `.` (the login directory) when empty.
fn normalize_dir(dir: &str) -> String {
    let dir = dir.trim();
    if dir.is_empty() {
        return ".".into();
    }
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

/// `dir/name`.
fn join(dir: &str, name: &str) -> String {
    match dir {
        "." => name.to_string(),
        d if d.ends_with('/') => format!("{d}{name}"),
        d => format!("{d}/{name}"),
    }
}

/// Percent-encodes what may not appear literally in a URL's user or path.
fn percent_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
            )
            || matches!(b, b'*' | b'+' | b',' | b';' | b'=')
            || (path && matches!(b, b'/' | b':' | b'@'));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TargetSpec for SftpTarget {
    fn check(&self, p: &mut Problems) {
        p.check("spec.sftp.host", check_host(&self.host));
        p.non_empty("spec.sftp.username", &self.username);
        if self.port == 0 {
            p.error("spec.sftp.port", PORT_ZERO);
        }
        p.check("spec.sftp.directory", check_remote_dir(&self.directory));
        match (&self.private_key_secret_ref, &self.password_secret_ref) {
            (Some(_), Some(_)) => p.error(
                "spec.sftp.passwordSecretRef",
                "give either privateKeySecretRef or passwordSecretRef, not both",
            ),
            (None, None) => p.error(
                "spec.sftp",
                "missing credentials: give privateKeySecretRef (recommended) or passwordSecretRef",
            ),
            _ => {}
        }
        if self.passphrase_secret_ref.is_some() && self.private_key_secret_ref.is_none() {
            p.error(
                "spec.sftp.passphraseSecretRef",
                "a passphrase needs privateKeySecretRef",
            );
        }
        if self.host_keys.is_empty() {
            p.error(
                "spec.sftp.hostKeys",
                "pin at least one host key (get it with `ferry keyscan HOST:PORT`)",
            );
        }
        for (i, k) in self.host_keys.iter().enumerate() {
            p.check(
                &format!("spec.sftp.hostKeys[{i}]"),
                ssh::parse_public_key(k).map(|_| ()),
            );
        }
    }

    fn summary(&self) -> String {
        format!(
            "SFTP {}@{}:{} {} ({} pinned host key(s))",
            self.username,
            self.host,
            self.port,
            self.directory,
            self.host_keys.len()
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::Sftp(x), y) = (old, self) else {
            return;
        };
        if x.host != y.host || x.port != y.port {
            notes.push(format!(
                "server {}:{} -> {}:{}",
                x.host, x.port, y.host, y.port
            ));
        }
        if x.username != y.username {
            notes.push(format!("login user {} -> {}", x.username, y.username));
        }
        if x.directory != y.directory {
            notes.push(format!("directory {} -> {}", x.directory, y.directory));
        }
        let old: BTreeSet<String> = x.host_keys.iter().map(|k| ssh::key_material(k)).collect();
        let new: BTreeSet<String> = y.host_keys.iter().map(|k| ssh::key_material(k)).collect();
        if old != new {
            notes.push("host key pin changed: connections to a server offering an unpinned key will be refused".into());
            for k in y
                .host_keys
                .iter()
                .filter(|k| !old.contains(&ssh::key_material(k)))
            {
                notes.push(format!("host key pinned: {}", ssh::key_label(k)));
            }
            for k in x
                .host_keys
                .iter()
                .filter(|k| !new.contains(&ssh::key_material(k)))
            {
                notes.push(format!(
                    "host key no longer accepted: {}",
                    ssh::key_label(k)
                ));
            }
        }
        if x.private_key_secret_ref.is_some() != y.private_key_secret_ref.is_some() {
            notes.push(if y.private_key_secret_ref.is_some() {
                "authentication switches to a private key".into()
            } else {
                "authentication switches to a password".into()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_normalized() {
        assert_eq!(normalize_dir(""), ".");
        assert_eq!(normalize_dir("."), ".");
        assert_eq!(normalize_dir("/"), "/");
        assert_eq!(normalize_dir("/upload/"), "/upload");
        assert_eq!(normalize_dir("a/b//"), "a/b");
    }

    #[test]
    fn paths_join_like_posix() {
        assert_eq!(join(".", "f.csv"), "f.csv");
        assert_eq!(join("/", "f.csv"), "/f.csv");
        assert_eq!(join("/upload", "f.csv"), "/upload/f.csv");
    }

    #[test]
    fn urls_escape_what_urls_cannot_hold() {
        assert_eq!(percent_encode("/a b/r%.csv", true), "/a%20b/r%25.csv");
        assert_eq!(percent_encode("me@corp", false), "me%40corp");
    }
}
