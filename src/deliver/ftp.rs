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

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, Instant};

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Mode, Status};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::spec::TargetSpec;
use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::TargetKind;
use crate::api::{FtpTarget, FtpTls};
use crate::secrets::{FileSecrets, SecretValue};
use crate::tls::{ClientTls, parse_pem_certificates};
use crate::validate::fields::{PORT_ZERO, Problems, check_host, check_remote_dir};
use crate::{Error, Result};

/// Size of the chunks the staged file is read in and written to the data connection.
const CHUNK: usize = 1 << 20;
/// Opening a connection: TCP (and TLS for implicit FTPS) and the greeting; a data connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// A command's reply (with its data connection for a listing or a `STOR`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A data connection making no progress (one chunk not accepted, the end not confirmed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Best-effort steps: deleting the temporary file after a failure, `QUIT`.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// suppaftp's client; with TLS only after `into_secure` (or implicit), else plain.
type Ftp = AsyncRustlsFtpStream;

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
        let mut message = message;
        if let Some(p) = self.password.as_ref().and_then(|p| p.expose_str().ok())
            && p.len() >= 4
            && message.contains(p)
        {
            message = message.replace(p, "(sensitive)");
        }
        Error::Delivery {
            target: self.name.clone(),
            message,
        }
    }

    async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
        check_name(file.file_name).map_err(|e| self.error(e))?;
        // One TLS configuration, so one session cache, for every connection of this delivery.
        let tls = match self.tls {
            FtpTls::None => None,
            _ => Some(
                ClientTls::new(self.ca_pem.as_ref().map(|p| p.expose()))
                    .map_err(|e| self.error(e))?,
            ),
        };
        let mut session = Session::open(self, tls.as_ref())
            .await
            .map_err(|e| self.error(e))?;
        let temp = super::atomic::partial_name(file.file_name, file.run_id);
        match self.place(&mut session, file, &temp).await {
            Ok(mut receipt) => {
                session.quit().await;
                if let Some(fp) = tls.as_ref().and_then(ClientTls::peer_fingerprint) {
                    receipt.details.insert("certificateSha256".into(), fp);
                }
                Ok(receipt)
            }
            Err(Failure { message, uploading }) => {
                if uploading {
                    self.remove_leftover(session, tls.as_ref(), &temp).await;
                } else {
                    session.quit().await;
                }
                Err(self.error(message))
            }
        }
    }

    /// Enters the directory, uploads under `temp`, checks, renames, confirms.
    async fn place(
        &self,
        session: &mut Session,
        file: &Outgoing<'_>,
        temp: &str,
    ) -> std::result::Result<Receipt, Failure> {
        let dir = session
            .enter_directory(&self.directory)
            .await
            .map_err(Failure::before_upload)?;
        let remote_path = join_remote(&dir, file.file_name);
        let temp_path = join_remote(&dir, temp);
        let at = self.endpoint();

        let started = Instant::now();
        let sent = session
            .upload(temp, file.staged, file.bytes)
            .await
            .map_err(|e| Failure::uploading(format!("upload of {temp_path} to {at}: {e}")))?;
        let elapsed = started.elapsed().as_secs_f64();
        tracing::debug!(
            target_name = %self.name,
            bytes = sent,
            seconds = elapsed,
            mib_per_s = sent as f64 / (1024.0 * 1024.0) / elapsed.max(1e-9),
            "ftp upload finished"
        );

        // The temporary file must be complete before anyone can see it under its final name.
        // (A server without SIZE may also leave hidden files out of its listings: then the
        // transfer's own confirmation has to do, and the size is checked after the rename.)
        match session.remote_size(temp).await {
            Ok(size) if size == file.bytes => {}
            Ok(size) => {
                return Err(Failure::uploading(format!(
                    "size check of {temp_path} on {at}: the server has {size} bytes, {} were sent",
                    file.bytes
                )));
            }
            Err(e) if session.broken() => {
                return Err(Failure::uploading(format!(
                    "size check of {temp_path} on {at}: {e}"
                )));
            }
            Err(e) => tracing::debug!("size of {temp_path} unknown before the rename: {e}"),
        }
        session
            .rename_over(temp, file.file_name)
            .await
            .map_err(|e| {
                Failure::uploading(format!(
                    "rename of {temp_path} to {remote_path} on {at}: {e}"
                ))
            })?;
        let bytes = session
            .remote_size(file.file_name)
            .await
            .map_err(|e| Failure::placed(format!("size check of {remote_path} on {at}: {e}")))?;
        if bytes != file.bytes {
            return Err(Failure::placed(format!(
                "size check of {remote_path} on {at}: the server has {bytes} bytes after the \
                 rename, {} were sent",
                file.bytes
            )));
        }

        let scheme = match self.tls {
            FtpTls::None => "ftp",
            _ => "ftps",
        };
        let mut details = BTreeMap::new();
        details.insert("tls".to_string(), self.tls_name().to_string());
        details.insert("remotePath".to_string(), remote_path.clone());
        Ok(Receipt {
            location: format!("{scheme}://{at}{}", url_path(&remote_path)),
            bytes,
            sha256: file.sha256.to_string(),
            details,
        })
    }

    /// Best effort: deletes the temporary file after a failed attempt, on the same control
    /// connection when it still works, else on a new one. A leftover is harmless anyway: the
    /// next attempt of the run overwrites it under the same name.
    async fn remove_leftover(&self, mut session: Session, tls: Option<&ClientTls>, temp: &str) {
        let removed = async {
            let mut removed = session
                .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
                .await;
            // (Some servers close the control connection after a failed data connection.)
            if session.broken() {
                session = Session::open(self, tls).await?;
                session.enter_directory(&self.directory).await?;
                removed = session
                    .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
                    .await;
            }
            session.quit().await;
            removed
        };
        match timeout(CLEANUP_TIMEOUT * 2, removed).await {
            Ok(Ok(())) => {
                tracing::debug!(target_name = %self.name, temp, "removed the partial upload")
            }
            Ok(Err(e)) => tracing::warn!(
                target_name = %self.name,
                temp,
                "could not remove the partial upload: {}",
                self.error(e)
            ),
            Err(_) => tracing::warn!(
                target_name = %self.name,
                temp,
                "could not remove the partial upload: timed out"
            ),
        }
    }
}

impl Transport for FtpTransport {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.deliver_file(file))
    }
}

/// Why a delivery stopped, and whether a temporary file may have been left behind.
struct Failure {
    message: String,
    uploading: bool,
}

impl Failure {
    fn before_upload(message: String) -> Self {
        Failure {
            message,
            uploading: false,
        }
    }

    fn uploading(message: String) -> Self {
        Failure {
            message,
            uploading: true,
        }
    }

    /// After the rename: the file is in place, nothing temporary is left to remove.
    fn placed(message: String) -> Self {
        Failure {
            message,
            uploading: false,
        }
    }
}

/// A file name FTP can carry: one path component, no line break.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!("`{name}` is not a plain file name"));
    }
    if name.contains(['\r', '\n', '\0']) {
        return Err(format!("file name {name:?} contains a control character"));
    }
    Ok(())
}

// ---- the session -----------------------------------------------------------------------------

/// `f` within `limit`, a timeout being a connection error.
async fn within<T>(limit: Duration, f: impl Future<Output = FtpResult<T>>) -> FtpResult<T> {
    timeout(limit, f).await.unwrap_or_else(|_| {
        Err(FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("timed out after {} s", limit.as_secs()),
        )))
    })
}

/// An error for a message: a refusal is the server's reply (`550 Permission denied.`).
fn describe(e: &FtpError) -> String {
    match e {
        FtpError::UnexpectedResponse(reply) => String::from_utf8_lossy(&reply.body)
            .trim_end()
            .replace("\r\n", "\n"),
        FtpError::ConnectionError(e) => e.to_string(),
        // suppaftp wraps a TLS error once per layer it goes through.
        FtpError::SecureError(e) => e.trim_start_matches("Secure error: ").to_string(),
        FtpError::BadResponse => "the server's reply could not be understood".into(),
        e => e.to_string(),
    }
}

/// A TLS error with a hint at what to do when it is about the server's certificate.
fn explain_tls_error(e: &str, host: &str) -> String {
    let hint = if e.contains("UnknownIssuer") || e.contains("BadSignature") {
        "the server's certificate could not be verified: if it comes from a private CA or is \
         self-signed, trust that CA with caSecretRef"
            .to_string()
    } else if e.contains("NotValidForName") || e.contains("not valid for name") {
        format!(
            "the server's certificate could not be verified: it is not valid for `{host}`; \
             connect with a name it lists"
        )
    } else if ["Expired", "expired", "NotValidYet", "not valid yet"]
        .iter()
        .any(|w| e.contains(w))
    {
        "the server's certificate could not be verified: check its dates and this machine's \
         clock"
            .to_string()
    } else if e.contains("certificate") {
        "the server's certificate could not be verified".to_string()
    } else {
        return e.to_string();
    };
    format!("{e} ({hint})")
}

/// Connects and, with TLS, secures the control connection and the data connections
/// (`PBSZ 0`, `PROT P`).
async fn connect(t: &FtpTransport, tls: Option<&ClientTls>) -> std::result::Result<Ftp, String> {
    let at = t.endpoint();
    let host = t.host.as_str();
    let failed = |what: &str, e: FtpError| match e {
        FtpError::SecureError(_) => format!(
            "TLS handshake with {at}: {}",
            explain_tls_error(&describe(&e), host)
        ),
        FtpError::UnexpectedResponse(_) => format!("{what}: the server refused: {}", describe(&e)),
        e => format!("{what}: {}", describe(&e)),
    };
    let connecting = format!("connect to {at}");
    let tcp = async || within(CONNECT_TIMEOUT, Ftp::connect((host, t.port))).await;
    let connector =
        |tls: &ClientTls| AsyncRustlsConnector::from(TlsConnector::from(tls.config.clone()));
    match (t.tls, tls) {
        (FtpTls::None, _) => tcp().await.map_err(|e| failed(&connecting, e)),
        (_, None) => Err(format!("TLS with {at}: no TLS configuration")),
        (FtpTls::Explicit, Some(tls)) => {
            let ftp = tcp().await.map_err(|e| failed(&connecting, e))?;
            within(REPLY_TIMEOUT, ftp.into_secure(connector(tls), host))
                .await
                .map_err(|e| failed(&format!("TLS (AUTH TLS, PBSZ 0, PROT P) with {at}"), e))
        }
        (FtpTls::Implicit, Some(tls)) => {
            let implicit = Ftp::connect_secure_implicit((host, t.port), connector(tls), host);
            let mut ftp = within(CONNECT_TIMEOUT, implicit)
                .await
                .map_err(|e| failed(&connecting, e))?;
            // Unlike `into_secure`, suppaftp's implicit connection leaves data connections
            // unprotected, which servers such as vsftpd refuse.
            for cmd in ["PBSZ 0", "PROT P"] {
                within(REPLY_TIMEOUT, ftp.custom_command(cmd, &[Status::CommandOk]))
                    .await
                    .map_err(|e| failed(&format!("TLS ({cmd}) with {at}"), e))?;
            }
            Ok(ftp)
        }
    }
}

/// Opens a passive data connection to `addr`, within [`CONNECT_TIMEOUT`].
fn data_connection(
    addr: SocketAddr,
) -> Pin<Box<dyn Future<Output = FtpResult<TcpStream>> + Send + Sync>> {
    Box::pin(async move {
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            .map_err(|e| {
                FtpError::ConnectionError(std::io::Error::new(
                    e.kind(),
                    format!("data connection to {addr}: {e}"),
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    })
}

/// A logged-in control connection.
struct Session {
    ftp: Ftp,
    /// `host:port`, for messages.
    at: String,
    /// Why the control connection failed (I/O error, timeout), if it did: it cannot be used
    /// again, and every later step fails with this.
    failed: Option<String>,
}

impl Session {
    /// Connects, secures, logs in, selects binary transfers and passive mode.
    async fn open(t: &FtpTransport, tls: Option<&ClientTls>) -> std::result::Result<Self, String> {
        let at = t.endpoint();
        let mut ftp = connect(t, tls)
            .await?
            .passive_stream_builder(data_connection);
        // Data connections go to the control connection's address (a PASV reply's address is
        // ignored, as curl does, so a server behind NAT works and no other host is reached).
        ftp.set_passive_nat_workaround(true);
        let mut session = Session {
            ftp,
            at: at.clone(),
            failed: None,
        };

        let user = t.username.as_str();
        let password = match &t.password {
            Some(p) => p.expose_str().map_err(|e| e.to_string())?,
            None => "",
        };
        if let Err(e) = session
            .step(REPLY_TIMEOUT, async |f| f.login(user, password).await)
            .await
        {
            let hint = if e.starts_with("332") {
                " (the server wants an account, ACCT, which ferry does not support)"
            } else if e.starts_with("530") && t.password.is_none() {
                " (the target has no passwordSecretRef)"
            } else {
                ""
            };
            return Err(format!("login as {user} at {at}: {e}{hint}"));
        }
        session
            .step(REPLY_TIMEOUT, async |f| {
                f.transfer_type(FileType::Binary).await
            })
            .await
            .map_err(|e| format!("binary mode (TYPE I) on {at}: {e}"))?;
        // EPSV when the server has it (and always over IPv6), else PASV.
        let epsv = match session.step(REPLY_TIMEOUT, async |f| f.feat().await).await {
            Ok(features) => features.keys().any(|k| k.eq_ignore_ascii_case("EPSV")),
            Err(e) if session.broken() => return Err(format!("FEAT on {at}: {e}")),
            Err(_) => false,
        };
        let ipv6 = session
            .ftp
            .get_ref()
            .await
            .peer_addr()
            .is_ok_and(|a| a.is_ipv6());
        session.ftp.set_mode(if epsv || ipv6 {
            Mode::ExtendedPassive
        } else {
            Mode::Passive
        });
        // File names are UTF-8; some servers (IIS, FileZilla) want to be told. Refusal is fine.
        let utf8 = session.step(REPLY_TIMEOUT, async |f| f.opts("UTF8", Some("ON")).await);
        if let Err(e) = utf8.await
            && session.broken()
        {
            return Err(format!("OPTS UTF8 ON on {at}: {e}"));
        }
        Ok(session)
    }

    /// Runs one step of the conversation within `limit`. Any failure but a refusal from the
    /// server breaks the session.
    async fn step<T>(
        &mut self,
        limit: Duration,
        op: impl AsyncFnOnce(&mut Ftp) -> FtpResult<T>,
    ) -> std::result::Result<T, String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        within(limit, op(&mut self.ftp)).await.map_err(|e| {
            let message = describe(&e);
            if !matches!(e, FtpError::UnexpectedResponse(_) | FtpError::BadResponse) {
                self.failed = Some(message.clone());
            }
            message
        })
    }

    /// Whether the control connection failed.
    fn broken(&self) -> bool {
        self.failed.is_some()
    }

    /// Changes to `dir`, creating the missing components (like `mkdir -p`). Returns the
    /// directory's path as the server names it.
    async fn enter_directory(&mut self, dir: &str) -> std::result::Result<String, String> {
        let dir = dir.trim();
        let named = !(dir.is_empty() || dir == ".");
        let at = self.at.clone();
        let fail = |what: String, e: String| format!("{what} on {at}: {e}");
        if named && let Err(e) = self.step(REPLY_TIMEOUT, async |f| f.cwd(dir).await).await {
            if self.broken() {
                return Err(fail(format!("cannot enter directory {dir}"), e));
            }
            let mut so_far = String::new();
            if dir.starts_with('/') {
                so_far.push('/');
                self.step(REPLY_TIMEOUT, async |f| f.cwd("/").await)
                    .await
                    .map_err(|e| fail("cannot enter /".into(), e))?;
            }
            for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
                if !so_far.is_empty() && !so_far.ends_with('/') {
                    so_far.push('/');
                }
                so_far.push_str(part);
                if self
                    .step(REPLY_TIMEOUT, async |f| f.cwd(part).await)
                    .await
                    .is_ok()
                {
                    continue;
                }
                // A refusal may just mean it exists (created concurrently): CWD decides.
                let made = self
                    .step(REPLY_TIMEOUT, async |f| f.mkdir(part).await)
                    .await;
                if let Err(e) = self.step(REPLY_TIMEOUT, async |f| f.cwd(part).await).await {
                    return Err(match made {
                        Ok(()) => {
                            fail(format!("created directory {so_far} but cannot enter it"), e)
                        }
                        Err(made) => fail(format!("cannot create directory {so_far}"), made),
                    });
                }
            }
        }
        match self.step(REPLY_TIMEOUT, async |f| f.pwd().await).await {
            Ok(path) => Ok(path),
            // The server does not say where it is: name the directory as configured.
            Err(e) if !self.broken() && named => {
                tracing::debug!("PWD: {e}: naming the directory as configured");
                Ok(dir.to_string())
            }
            Err(e) => Err(fail("PWD".into(), e)),
        }
    }

    /// Uploads the staged file as `name` (in the current directory). Returns the bytes sent.
    async fn upload(
        &mut self,
        name: &str,
        staged: &Path,
        expected: u64,
    ) -> std::result::Result<u64, String> {
        let store = async |f: &mut Ftp| f.put_with_stream(name).await;
        let opened = match self.step(REPLY_TIMEOUT, store).await {
            Err(refused) if !self.broken() => {
                // A leftover this login cannot overwrite (another owner, read-only) may still
                // be deletable: then try once more.
                if self
                    .step(REPLY_TIMEOUT, async |f| f.rm(name).await)
                    .await
                    .is_err()
                {
                    return Err(format!("the server refused it: {refused}"));
                }
                self.step(REPLY_TIMEOUT, store).await
            }
            opened => opened,
        };
        let mut data = match opened {
            Ok(data) => data,
            Err(e) if self.broken() => {
                // A failed data connection's reason comes on the control connection (e.g.
                // vsftpd's `522 SSL connection failed: session reuse required`).
                let said = within(Duration::from_secs(5), self.ftp.read_response_in(&[])).await;
                return Err(match said {
                    Err(reply @ FtpError::UnexpectedResponse(_)) => {
                        format!("{e}; the server said: {}", describe(&reply))
                    }
                    _ => e,
                });
            }
            Err(refused) => return Err(format!("the server refused it: {refused}")),
        };
        let sent = match send_file(staged, &mut data).await {
            Ok(sent) if sent == expected => sent,
            // Dropping the data connection without finishing aborts the transfer; suppaftp reads
            // its reply before the next command.
            Ok(sent) => {
                return Err(format!(
                    "{} has {sent} bytes, expected {expected} (did it change after staging?)",
                    staged.display()
                ));
            }
            Err(e) => return Err(e),
        };
        // End of data (TLS close_notify, then FIN) and the server's confirmation.
        self.step(IDLE_TIMEOUT, async |_| data.finish().await)
            .await
            .map_err(|e| format!("the server did not confirm the transfer: {e}"))?;
        Ok(sent)
    }

    /// The size of `name` in the current directory: `SIZE`, else a listing.
    async fn remote_size(&mut self, name: &str) -> std::result::Result<u64, String> {
        let size_error = match self.step(REPLY_TIMEOUT, async |f| f.size(name).await).await {
            Ok(size) => return Ok(size as u64),
            Err(e) if self.broken() => return Err(e),
            Err(e) => e,
        };
        tracing::debug!("SIZE not available ({size_error}), listing the file instead");
        let listing = self
            .step(IDLE_TIMEOUT, async |f| f.list(Some(name)).await)
            .await
            .map_err(|e| format!("SIZE: {size_error}; LIST: {e}"))?;
        size_in_listing(&listing, name)
            .ok_or_else(|| format!("SIZE: {size_error}; LIST: {name} is not in the listing"))
    }

    /// Renames `from` to `to`, replacing `to`. A server that refuses to rename over an
    /// existing file gets it deleted first.
    async fn rename_over(&mut self, from: &str, to: &str) -> std::result::Result<(), String> {
        let refused = match self.rename(from, to).await? {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        if let Err(e) = self.step(REPLY_TIMEOUT, async |f| f.rm(to).await).await {
            return Err(format!(
                "{refused}; deleting the existing file first failed too: {e}"
            ));
        }
        match self.rename(from, to).await? {
            Ok(()) => Ok(()),
            Err(again) => Err(format!(
                "{refused}; again after deleting the existing file: {again}"
            )),
        }
    }

    /// `RNFR` then `RNTO`. A refused `RNFR` is an error (there is nothing to rename); a refused
    /// `RNTO` is `Ok(Err(reply))`.
    async fn rename(
        &mut self,
        from: &str,
        to: &str,
    ) -> std::result::Result<std::result::Result<(), String>, String> {
        self.step(REPLY_TIMEOUT, async |f| {
            f.custom_command(format!("RNFR {from}"), &[Status::RequestFilePending])
                .await
        })
        .await
        .map_err(|e| format!("RNFR: {e}"))?;
        let renamed = self
            .step(REPLY_TIMEOUT, async |f| {
                let done = [Status::RequestedFileActionOk, Status::CommandOk];
                f.custom_command(format!("RNTO {to}"), &done).await
            })
            .await;
        match renamed {
            Ok(_) => Ok(Ok(())),
            Err(e) if self.broken() => Err(format!("RNTO: {e}")),
            Err(e) => Ok(Err(format!("RNTO: {e}"))),
        }
    }

    /// Says goodbye, best effort.
    async fn quit(mut self) {
        let _ = self.step(CLEANUP_TIMEOUT, async |f| f.quit().await).await;
    }
}

/// Copies the staged file to the data connection in [`CHUNK`]s, the next chunk being read on
/// a blocking thread while the current one is sent.
async fn send_file<W: AsyncWrite + Unpin>(
    staged: &Path,
    out: &mut W,
) -> std::result::Result<u64, String> {
    let reading = |e: std::io::Error| format!("reading {}: {e}", staged.display());
    let read = |mut file: std::fs::File, mut buf: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let n = file.read(&mut buf);
            (file, buf, n)
        })
    };
    let file = std::fs::File::open(staged).map_err(reading)?;
    let mut next = read(file, vec![0; CHUNK]);
    let mut spare = vec![0; CHUNK];
    let mut sent: u64 = 0;
    loop {
        let (file, buf, n) = next.await.map_err(|e| e.to_string())?;
        let n = n.map_err(reading)?;
        if n == 0 {
            return Ok(sent);
        }
        next = read(file, std::mem::take(&mut spare));
        match timeout(IDLE_TIMEOUT, out.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("sending failed after {sent} bytes: {e}")),
            Err(_) => {
                return Err(format!(
                    "sending stalled for {} s after {sent} bytes",
                    IDLE_TIMEOUT.as_secs()
                ));
            }
        }
        sent += n as u64;
        spare = buf;
    }
}

// ---- paths and listings ----------------------------------------------------------------------

/// The size of `name` in `LIST` lines (Unix `ls -l` or DOS style).
fn size_in_listing(lines: &[String], name: &str) -> Option<u64> {
    lines
        .iter()
        .filter_map(|line| suppaftp::list::File::from_str(line.trim_end()).ok())
        .find(|f| f.is_file() && (f.name() == name || f.name().rsplit('/').next() == Some(name)))
        .map(|f| f.size() as u64)
}

/// `dir` joined with `name`, `/`-separated.
fn join_remote(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A remote path as the path of a URL: starts with `/`, and the characters that would end or
/// change a URL path percent-encoded (others, including non-ASCII, kept readable).
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for c in path.chars() {
        match c {
            ' ' | '%' | '#' | '?' | '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c if c.is_ascii_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl TargetSpec for FtpTarget {
    fn check(&self, p: &mut Problems) {
        p.check("spec.ftp.host", check_host(&self.host));
        p.non_empty("spec.ftp.username", &self.username);
        if self.port == Some(0) {
            p.error("spec.ftp.port", PORT_ZERO);
        }
        p.check("spec.ftp.directory", check_remote_dir(&self.directory));
    }

    fn summary(&self) -> String {
        format!(
            "FTP{} {}@{}:{}{}",
            match self.tls {
                FtpTls::None => "",
                FtpTls::Explicit => "S (explicit TLS)",
                FtpTls::Implicit => "S (implicit TLS)",
            },
            self.username,
            self.host,
            self.effective_port(),
            self.directory
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::Ftp(x), y) = (old, self) else {
            return;
        };
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::types::Response;

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
