//! Delivery to an FTP server: plain FTP, explicit FTPS (`AUTH TLS`) or implicit FTPS, with
//! suppaftp's tokio client over tokio-rustls.
//!
//! The file is uploaded under a hidden temporary name in the target directory
//! (`.<name>.ferry-partial-<run id>`, the same on a retry of the same run, so an interrupted
//! attempt's leftover is overwritten rather than duplicated), its size is checked, and only then
//! is it renamed to its final name, so a consumer polling the directory never sees a partial
//! file under the final name. After the rename the size is confirmed again for the receipt.
//!
//! Notes on the client:
//! - suppaftp logs every command at trace level through `log`, `PASS <password>` included:
//!   Ferry's logging setup always filters the `suppaftp` target out;
//! - every step runs under a timeout (suppaftp has none); a step that fails other than by a
//!   refusal from the server leaves the control connection unusable;
//! - TLS session reuse: servers such as vsftpd (`require_ssl_reuse=YES`, its default) refuse a
//!   data connection that does not resume the control connection's TLS session. One rustls
//!   `ClientConfig` (so one session cache) serves the control and the data connections of a
//!   delivery; suppaftp reads a reply on the control connection after its handshake (`PBSZ`,
//!   `PROT`, or the implicit greeting) and the data command's `150` before a data handshake, so
//!   the server's TLS 1.3 session tickets have been received by then, and it reads an upload's
//!   data connection to its end, which takes in the ticket each data connection brings.
//!
//! Certificates are always verified (system roots plus the target's `caSecretRef`), and the
//! receipt names the fingerprint of the certificate the server presented.
//!
//! Parts: [`upload`] (the delivery sequence) over [`session`] (one FTP control connection).

use std::fmt;
use std::time::Duration;

use suppaftp::tokio::AsyncRustlsFtpStream;

use super::spec::TargetSpec;
use super::{BoxFuture, Confirmation, Outgoing, Receipt, Transport};
use crate::api::TargetKind;
use crate::api::{FtpTarget, FtpTls, PartialNaming};
use crate::secrets::{FileSecrets, SecretValue};
use crate::tls::parse_pem_certificates;
use crate::validate::fields::{
    PORT_ZERO, Problems, check_host, check_max_connections, check_remote_dir,
};
use crate::{Error, Result};

mod session;
mod upload;

pub(super) const CHUNK: usize = 1 << 20;
/// Opening a connection: TCP (and TLS for implicit FTPS) and the greeting; a data connection.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// A command's reply (with its data connection for a listing or a `STOR`).
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A data connection making no progress (one chunk not accepted, the end not confirmed).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Best-effort steps: deleting the temporary file after a failure, `QUIT`.
pub(super) const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// suppaftp's client; with TLS only after `into_secure` (or implicit), else plain.
pub(super) type Ftp = AsyncRustlsFtpStream;

/// An `ftp` target: where and how to connect, with its secrets resolved.
pub struct FtpTransport {
    name: String,
    host: String,
    port: u16,
    tls: FtpTls,
    directory: String,
    username: String,
    password: Option<SecretValue>,
    ca_pem: Option<SecretValue>,
    /// The name a file has while it is uploaded.
    partial: PartialNaming,
    /// How a check tries the target.
    check: crate::api::TargetCheck,
}

impl fmt::Debug for FtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpTransport")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("directory", &self.directory)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl FtpTransport {
    /// The transport of target `namespace/name`: reads its password and CA secrets now, so a
    /// missing secret or an unreadable CA fails before any connection is made.
    pub fn new(
        namespace: &str,
        name: &str,
        target: &FtpTarget,
        secrets: &FileSecrets,
    ) -> Result<Self> {
        let password = target
            .password_secret_ref
            .as_ref()
            .map(|r| secrets.require(namespace, r))
            .transpose()?;
        if let (Some(p), Some(r)) = (&password, &target.password_secret_ref)
            && p.expose_str().is_err()
        {
            return Err(Error::Secret(format!(
                "secret {}/{} (passwordSecretRef of DeliveryTarget {name}): not UTF-8 text",
                r.name, r.key
            )));
        }
        let ca_pem = target
            .ca_secret_ref
            .as_ref()
            .map(|r| secrets.require(namespace, r))
            .transpose()?;
        if let Some(pem) = &ca_pem {
            parse_pem_certificates(pem.expose()).map_err(|e| Error::Delivery {
                target: name.to_string(),
                message: format!("caSecretRef: {e}"),
            })?;
        }
        Ok(FtpTransport {
            name: name.to_string(),
            host: target.host.clone(),
            port: target.effective_port(),
            tls: target.tls,
            directory: target.directory.clone(),
            partial: target.partial,
            check: target.check,
            username: target.username.clone(),
            password,
            ca_pem,
        })
    }

    /// `host:port`, for messages.
    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn tls_name(&self) -> &'static str {
        match self.tls {
            FtpTls::None => "none",
            FtpTls::Explicit => "explicit",
            FtpTls::Implicit => "implicit",
        }
    }

    /// A delivery error, with the password scrubbed from the message just in case a server
    /// echoes it.
    fn error(&self, message: String) -> Error {
        Error::Delivery {
            target: self.name.clone(),
            message: self.scrub(message),
        }
    }

    /// `message` with the password replaced, should a server have echoed it.
    fn scrub(&self, message: String) -> String {
        match self.password.as_ref().and_then(|p| p.expose_str().ok()) {
            Some(p) if p.len() >= 4 && message.contains(p) => message.replace(p, "(sensitive)"),
            _ => message,
        }
    }
}

impl Transport for FtpTransport {
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

/// A file name FTP can carry: one path component, no line break.
pub(super) fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!("`{name}` is not a plain file name"));
    }
    if name.contains(['\r', '\n', '\0']) {
        return Err(format!("file name {name:?} contains a control character"));
    }
    Ok(())
}

impl TargetSpec for FtpTarget {
    fn check(&self, p: &mut Problems) {
        p.check("spec.ftp.host", check_host(&self.host));
        p.check(
            "spec.ftp.maxConnections",
            check_max_connections(self.max_connections),
        );
        p.non_empty("spec.ftp.username", &self.username);
        if self.port == Some(0) {
            p.error("spec.ftp.port", PORT_ZERO);
        }
        p.check("spec.ftp.directory", check_remote_dir(&self.directory));
    }

    fn summary(&self) -> String {
        format!(
            "FTP{} {}@{}:{}{}{}",
            match self.tls {
                FtpTls::None => "",
                FtpTls::Explicit => "S (explicit TLS)",
                FtpTls::Implicit => "S (implicit TLS)",
            },
            self.username,
            self.host,
            self.effective_port(),
            self.directory,
            crate::deliver::atomic::naming_summary(self.partial)
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::Ftp(x), y) = (old, self) else {
            return;
        };
        super::spec::max_connections_notes(x.max_connections, y.max_connections, notes);
        if x.tls != y.tls {
            notes.push(format!("TLS mode {:?} -> {:?}", x.tls, y.tls));
            if y.tls == FtpTls::None {
                notes.push("WARNING: plain FTP sends the password and reports unencrypted".into());
            }
        }
        if x.host != y.host || x.effective_port() != y.effective_port() {
            notes.push(format!(
                "server {}:{} -> {}:{}",
                x.host,
                x.effective_port(),
                y.host,
                y.effective_port()
            ));
        }
        if x.username != y.username {
            notes.push(format!("login user {} -> {}", x.username, y.username));
        }
        if x.directory != y.directory {
            notes.push(format!("directory {} -> {}", x.directory, y.directory));
        }
        if x.ca_secret_ref != y.ca_secret_ref {
            notes.push("trusted CA certificate changed".into());
        }
        crate::deliver::atomic::naming_change_notes(x.partial, y.partial, notes);
    }
}

#[cfg(test)]
mod tests {
    use super::session::*;
    use super::*;
    use suppaftp::types::Response;
    use suppaftp::{FtpError, Status};

    #[test]
    fn errors_read_as_the_server_reply_or_the_cause() {
        let refused = FtpError::UnexpectedResponse(Response::new(
            Status::FileUnavailable,
            b"550-No such file.\r\n550 Really.\r\n".to_vec(),
        ));
        assert_eq!(describe(&refused), "550-No such file.\n550 Really.");
        let tls = FtpError::SecureError("Secure error: invalid peer certificate: x".into());
        assert_eq!(describe(&tls), "invalid peer certificate: x");
    }

    #[test]
    fn sizes_come_from_a_listing() {
        let unix: Vec<String> = [
            "-rw-r--r--    1 1001     1001         4096 Nov 21 10:30 report.csv",
            "-rw-r--r--    1 1001     1001           12 Nov 21 10:30 other.csv",
        ]
        .map(String::from)
        .into();
        assert_eq!(size_in_listing(&unix, "report.csv"), Some(4096));
        assert_eq!(size_in_listing(&unix, "missing.csv"), None);
        let dos = vec!["11-21-25  10:30AM                 2048 report.csv".to_string()];
        assert_eq!(size_in_listing(&dos, "report.csv"), Some(2048));
    }

    #[test]
    fn remote_paths_join_and_render_as_url_paths() {
        assert_eq!(join_remote("/", "a.csv"), "/a.csv");
        assert_eq!(join_remote("/in/x", "a.csv"), "/in/x/a.csv");
        assert_eq!(url_path("/in/a b#1.csv"), "/in/a%20b%231.csv");
        assert_eq!(url_path("rel/日報.csv"), "/rel/日報.csv");
    }

    #[test]
    fn certificate_errors_come_with_a_hint() {
        let e = explain_tls_error("invalid peer certificate: UnknownIssuer", "ftp.example");
        assert!(e.contains("caSecretRef"), "{e}");
        let e = explain_tls_error(
            "invalid peer certificate: certificate not valid for name \"x\"; \
             certificate is only valid for IpAddress(127.0.0.1)",
            "x",
        );
        assert!(e.contains("not valid for `x`"), "{e}");
        assert_eq!(
            explain_tls_error("connection reset", "x"),
            "connection reset"
        );
    }

    #[test]
    fn file_names_must_be_one_plain_component() {
        assert!(check_name("report.csv").is_ok());
        for bad in ["", ".", "..", "a/b.csv", "a\r\nDELE x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
