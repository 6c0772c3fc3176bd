//! Delivery to an SFTP server (SSH File Transfer Protocol v3, as OpenSSH speaks it).
//!
//! One connection per file: connect, check the server's host key against the pinned
//! `hostKeys` (mandatory), log in with a private key or a password, create the directory,
//! upload under a hidden temporary name with many write requests in flight, rename to the final
//! name (atomically replacing an existing file), and confirm the size. A reader of the
//! directory sees either no file, the previous file, or the complete new file: never a partial
//! one under the final name.
//!
//! Parts: [`connect`] (host key, login, the SFTP subsystem) and [`upload`] (the delivery
//! sequence).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh_sftp::client::RawSftpSession;

use super::spec::TargetSpec;
use super::{BoxFuture, Confirmation, Outgoing, Receipt, Transport};
use crate::api::TargetKind;
use crate::api::{PartialNaming, SecretRef, SftpTarget};
use crate::secrets::{FileSecrets, SecretValue};
use crate::ssh::{self, PublicKey};
use crate::validate::fields::{
    PORT_ZERO, Problems, check_host, check_max_connections, check_remote_dir,
};
use crate::{Error, Result};

mod connect;
mod upload;

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
    /// The name a file has while it is uploaded.
    partial: PartialNaming,
    /// How a check tries the target.
    check: crate::api::TargetCheck,
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
            partial: target.partial,
            check: target.check,
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
}

impl Transport for SftpTransport {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.deliver_file(file))
    }

    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        Box::pin(self.confirm_file(file))
    }

    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.probe_file(probe))
    }
}

/// An open SFTP session and what the server said it supports.
struct Sftp {
    raw: RawSftpSession,
    extensions: HashMap<String, String>,
    /// Bytes per write request.
    chunk: usize,
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
        p.check(
            "spec.sftp.maxConnections",
            check_max_connections(self.max_connections),
        );
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
            "SFTP {}@{}:{} {} ({} pinned host key(s)){}",
            self.username,
            self.host,
            self.port,
            self.directory,
            self.host_keys.len(),
            crate::deliver::atomic::naming_summary(self.partial)
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::Sftp(x), y) = (old, self) else {
            return;
        };
        super::spec::max_connections_notes(x.max_connections, y.max_connections, notes);
        crate::deliver::atomic::naming_change_notes(x.partial, y.partial, notes);
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
