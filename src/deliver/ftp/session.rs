//! One FTP control connection as a delivery uses it: connect (plain, explicit or implicit
//! TLS, one TLS session cache for control and data), every step under a timeout, directory
//! changes, the upload stream, sizes (SIZE, else a listing), renames, and errors in words.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use suppaftp::tokio::AsyncRustlsConnector;
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Mode, Status};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::{
    CHUNK, CLEANUP_TIMEOUT, CONNECT_TIMEOUT, Ftp, FtpTransport, IDLE_TIMEOUT, REPLY_TIMEOUT,
};
use crate::api::FtpTls;
use crate::deliver::atomic::UploadFailed;
use crate::tls::ClientTls;

/// `f` within `limit`, a timeout being a connection error.
pub(super) async fn within<T>(
    limit: Duration,
    f: impl Future<Output = FtpResult<T>>,
) -> FtpResult<T> {
    timeout(limit, f).await.unwrap_or_else(|_| {
        Err(FtpError::ConnectionError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("timed out after {} s", limit.as_secs()),
        )))
    })
}

/// An error for a message: a refusal is the server's reply (`550 Permission denied.`).
pub(super) fn describe(e: &FtpError) -> String {
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
pub(super) fn explain_tls_error(e: &str, host: &str) -> String {
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
pub(super) async fn connect(
    t: &FtpTransport,
    tls: Option<&ClientTls>,
) -> std::result::Result<Ftp, String> {
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
pub(super) fn data_connection(
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
pub(super) struct Session {
    ftp: Ftp,
    /// `host:port`, for messages.
    at: String,
    /// Why the control connection failed (I/O error, timeout), if it did: it cannot be used
    /// again, and every later step fails with this.
    failed: Option<String>,
}

impl Session {
    /// Connects, secures, logs in, selects binary transfers and passive mode.
    pub(super) async fn open(
        t: &FtpTransport,
        tls: Option<&ClientTls>,
    ) -> std::result::Result<Self, String> {
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
    pub(super) async fn step<T>(
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
    pub(super) fn broken(&self) -> bool {
        self.failed.is_some()
    }

    /// Changes to `dir`, creating the missing components (like `mkdir -p`). Returns the
    /// directory's path as the server names it.
    pub(super) async fn enter_directory(
        &mut self,
        dir: &str,
    ) -> std::result::Result<String, String> {
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

    /// Uploads the staged file as `name` (in the current directory). Returns the bytes sent;
    /// a refused STOR is an error that wrote nothing.
    pub(super) async fn upload(
        &mut self,
        name: &str,
        staged: &Path,
        expected: u64,
    ) -> std::result::Result<u64, UploadFailed> {
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
                    return Err(UploadFailed::refused(format!(
                        "the server refused it: {refused}"
                    )));
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
                return Err(UploadFailed::written(match said {
                    Err(reply @ FtpError::UnexpectedResponse(_)) => {
                        format!("{e}; the server said: {}", describe(&reply))
                    }
                    _ => e,
                }));
            }
            Err(refused) => {
                return Err(UploadFailed::refused(format!(
                    "the server refused it: {refused}"
                )));
            }
        };
        let sent = match send_file(staged, &mut data).await {
            Ok(sent) if sent == expected => sent,
            // Dropping the data connection without finishing aborts the transfer; suppaftp reads
            // its reply before the next command.
            Ok(sent) => {
                return Err(UploadFailed::written(format!(
                    "{} has {sent} bytes, expected {expected} (did it change after staging?)",
                    staged.display()
                )));
            }
            Err(e) => return Err(UploadFailed::written(e)),
        };
        // End of data (TLS close_notify, then FIN) and the server's confirmation.
        self.step(IDLE_TIMEOUT, async |_| data.finish().await)
            .await
            .map_err(|e| {
                UploadFailed::written(format!("the server did not confirm the transfer: {e}"))
            })?;
        Ok(sent)
    }

    /// The SHA-256 (hex) of `name` in the current directory, read back with `RETR`.
    /// `Ok(None)` when the server refuses (missing, or a write-only drop box).
    pub(super) async fn read_sha256(
        &mut self,
        name: &str,
    ) -> std::result::Result<Option<String>, String> {
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncReadExt;
        let mut data = match self
            .step(REPLY_TIMEOUT, async |f| f.retr_as_stream(name).await)
            .await
        {
            Ok(data) => data,
            Err(_) if !self.broken() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match timeout(IDLE_TIMEOUT, data.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => hasher.update(&buf[..n]),
                Ok(Err(e)) => {
                    let message = format!("reading {name} back failed: {e}");
                    self.failed = Some(message.clone());
                    return Err(message);
                }
                Err(_) => {
                    let message = format!(
                        "reading {name} back stalled for {} s",
                        IDLE_TIMEOUT.as_secs()
                    );
                    self.failed = Some(message.clone());
                    return Err(message);
                }
            }
        }
        self.step(IDLE_TIMEOUT, async |_| data.finish().await)
            .await
            .map_err(|e| format!("reading {name} back: {e}"))?;
        Ok(Some(hex::encode(hasher.finalize())))
    }

    /// The size of `name` in the current directory: `SIZE`, else a listing.
    pub(super) async fn remote_size(&mut self, name: &str) -> std::result::Result<u64, String> {
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
    pub(super) async fn rename_over(
        &mut self,
        from: &str,
        to: &str,
    ) -> std::result::Result<(), String> {
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
    pub(super) async fn rename(
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
    pub(super) async fn quit(mut self) {
        let _ = self.step(CLEANUP_TIMEOUT, async |f| f.quit().await).await;
    }
}

/// Copies the staged file to the data connection in [`CHUNK`]s, the next chunk being read on
/// a blocking thread while the current one is sent.
pub(super) async fn send_file<W: AsyncWrite + Unpin>(
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
pub(super) fn size_in_listing(lines: &[String], name: &str) -> Option<u64> {
    lines
        .iter()
        .filter_map(|line| suppaftp::list::File::from_str(line.trim_end()).ok())
        .find(|f| f.is_file() && (f.name() == name || f.name().rsplit('/').next() == Some(name)))
        .map(|f| f.size() as u64)
}

/// `dir` joined with `name`, `/`-separated.
pub(super) fn join_remote(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A remote path as the path of a URL: starts with `/`, and the characters that would end or
/// change a URL path percent-encoded (others, including non-ASCII, kept readable).
pub(super) fn url_path(path: &str) -> String {
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
