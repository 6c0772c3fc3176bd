//! Delivery to an FTP server: plain FTP, explicit FTPS (`AUTH TLS`) or implicit FTPS.
//!
//! The file is uploaded under a hidden temporary name in the target directory
//! (`.<name>.ferry-partial-<run id>`, the same on a retry of the same run, so an interrupted
//! attempt's leftover is overwritten rather than duplicated), its size is checked, and only then
//! is it renamed to its final name, so a consumer polling the directory never sees a partial
//! file under the final name. After the rename the size is confirmed again for the receipt.
//!
//! The FTP client is this module's own, on tokio and tokio-rustls, rather than suppaftp's:
//! - suppaftp logs every control command at trace level through `log`, `PASS <password>`
//!   included, and `ferry -vvv` forwards `log` records to the terminal: a password would leak;
//! - the upload path needs large writes straight from a pipelined file reader onto the data
//!   socket (1 MiB chunks) to keep up with `curl -T`, and timeouts on every step;
//! - TLS session reuse must be right: servers such as vsftpd (`require_ssl_reuse=YES`, its
//!   default) refuse a data connection that does not resume the control connection's TLS
//!   session. One rustls `ClientConfig` (and so one session cache) serves the control and the
//!   data connections of a delivery, and the control connection always reads a reply after its
//!   handshake before a data connection is opened, so the server's TLS 1.3 session tickets have
//!   been received and stored by then. Each data connection consumes one ticket and usually
//!   brings a new one, which is read by draining the data connection to its end.
//!
//! Certificates are always verified (system roots plus the target's `caSecretRef`), and the
//! receipt names the fingerprint of the certificate the server presented.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    ReadBuf,
};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::{FtpTarget, FtpTls};
use crate::secrets::{FileSecrets, SecretValue};
use crate::tls::{ClientTls, parse_pem_certificates};
use crate::{Error, Result};

/// Size of the chunks the staged file is read in and written to the data connection.
const CHUNK: usize = 1 << 20;
/// Chunks read ahead of the network (the reader runs on a blocking thread).
const READ_AHEAD: usize = 2;
/// Opening a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake, a command's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A data connection making no progress (one chunk not accepted, the end not confirmed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Best-effort steps: deleting the temporary file after a failure, `QUIT`.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest reply accepted on the control connection.
const MAX_REPLY: usize = 64 * 1024;
/// Longest listing accepted for the size check fallback.
const MAX_LISTING: u64 = 1 << 20;

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
        let temp = format!(".{}.ferry-partial-{}", file.file_name, file.run_id);
        let outcome = self.place(&mut session, file, &temp).await;
        match outcome {
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
            Err(e) if session.broken => {
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
            if session.broken {
                session = Session::open(self, tls).await?;
                session.enter_directory(&self.directory).await?;
            }
            let reply = session.command(&format!("DELE {temp}")).await?;
            session.quit().await;
            Ok::<_, String>(reply)
        };
        match timeout(CLEANUP_TIMEOUT * 2, removed).await {
            Ok(Ok(reply)) if reply.is_ok() => {
                tracing::debug!(target_name = %self.name, temp, "removed the partial upload")
            }
            Ok(Ok(reply)) => {
                tracing::debug!(target_name = %self.name, temp, %reply, "partial upload not removed")
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

// ---- the control connection ------------------------------------------------------------------

/// A TCP connection, with or without TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A server reply: its code and its text (all lines).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    /// 2xx: the command succeeded.
    fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 1xx: a transfer is starting.
    fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text starts with the code already (`550 Permission denied.`).
        f.write_str(self.text.trim_end())
    }
}

/// Reads one reply (RFC 959: `123 text`, or `123-text` ... `123 text` over several lines).
async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut text = String::new();
    let mut code: Option<u16> = None;
    loop {
        let mut line = Vec::new();
        let limit = (MAX_REPLY - text.len().min(MAX_REPLY)) as u64 + 1;
        let n = (&mut *r).take(limit).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the control connection",
            ));
        }
        if text.len() + line.len() > MAX_REPLY {
            return Err(bad(format!("reply longer than {MAX_REPLY} bytes")));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let starts_with_code =
            line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        let sep = line.as_bytes().get(3).copied();
        match code {
            None => {
                if !starts_with_code || !matches!(sep, None | Some(b' ') | Some(b'-')) {
                    return Err(bad(format!("not an FTP reply: {line:?}")));
                }
                let c: u16 = line[..3].parse().map_err(|_| bad(line.to_string()))?;
                text.push_str(line);
                if sep != Some(b'-') {
                    return Ok(Reply { code: c, text });
                }
                code = Some(c);
            }
            Some(c) => {
                text.push('\n');
                text.push_str(line);
                if starts_with_code
                    && matches!(sep, None | Some(b' '))
                    && line[..3].parse::<u16>().ok() == Some(c)
                {
                    return Ok(Reply { code: c, text });
                }
            }
        }
    }
}

/// Connects to the first address of `host` that accepts, within [`CONNECT_TIMEOUT`].
async fn connect(host: &str, port: u16) -> std::result::Result<TcpStream, String> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect();
        let mut last = format!("`{host}` has no address");
        let several = addrs.len() > 1;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) if several => last = format!("{e} (last tried {addr})"),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    };
    timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()))?
}

/// Runs a client TLS handshake over `tcp`.
async fn handshake(
    connector: &TlsConnector,
    name: &ServerName<'static>,
    tcp: TcpStream,
) -> std::result::Result<TlsStream<TcpStream>, String> {
    match timeout(REPLY_TIMEOUT, connector.connect(name.clone(), tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(explain_tls_error(&e.to_string(), &name.to_str())),
        Err(_) => Err(format!(
            "the TLS handshake timed out after {} s",
            REPLY_TIMEOUT.as_secs()
        )),
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

/// Turns a plain control connection into a TLS one (implicit FTPS, or after `AUTH TLS`).
async fn secure(
    ctl: BufReader<Conn>,
    connector: &TlsConnector,
    name: &ServerName<'static>,
    at: &str,
) -> std::result::Result<BufReader<Conn>, String> {
    if !ctl.buffer().is_empty() {
        return Err(format!(
            "TLS with {at}: the server sent data before the TLS handshake"
        ));
    }
    let tcp = match ctl.into_inner() {
        Conn::Plain(tcp) => tcp,
        Conn::Tls(tls) => return Ok(BufReader::new(Conn::Tls(tls))),
    };
    let tls = handshake(connector, name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {at}: {e}"))?;
    Ok(BufReader::new(Conn::Tls(Box::new(tls))))
}

/// Sends one command line (never logging a password).
async fn send_line(ctl: &mut BufReader<Conn>, line: &str) -> std::result::Result<(), String> {
    if line.contains(['\r', '\n']) {
        return Err("a command must not contain a line break".into());
    }
    if line.starts_with("PASS ") {
        tracing::trace!("ftp> PASS (sensitive)");
    } else {
        tracing::trace!("ftp> {line}");
    }
    let mut bytes = Vec::with_capacity(line.len() + 2);
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    let w = ctl.get_mut();
    let sent = async {
        w.write_all(&bytes).await?;
        w.flush().await
    };
    match timeout(REPLY_TIMEOUT, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("sending a command failed: {e}")),
        Err(_) => Err(format!(
            "sending a command timed out after {} s",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}

/// Reads one reply within `limit`.
async fn recv_reply(
    ctl: &mut BufReader<Conn>,
    limit: Duration,
) -> std::result::Result<Reply, String> {
    match timeout(limit, read_reply(ctl)).await {
        Ok(Ok(reply)) => {
            tracing::trace!("ftp< {reply}");
            Ok(reply)
        }
        Ok(Err(e)) => Err(format!("reading the server's reply failed: {e}")),
        Err(_) => Err(format!(
            "no reply from the server within {} s",
            limit.as_secs()
        )),
    }
}

/// Reads the greeting (`220`).
async fn greeting(ctl: &mut BufReader<Conn>, at: &str) -> std::result::Result<(), String> {
    let reply = recv_reply(ctl, REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("connect to {at}: {e}"))?;
    if reply.code != 220 {
        return Err(format!("connect to {at}: the server is not ready: {reply}"));
    }
    Ok(())
}

/// A logged-in control connection.
struct Session {
    ctl: BufReader<Conn>,
    /// `host:port`, for messages.
    at: String,
    /// The server's address: data connections go there too (a PASV reply's address is
    /// ignored, as curl does, so a server behind NAT works and no other host can be reached).
    peer: SocketAddr,
    /// Set when data connections are protected (`PROT P`): the connector holds the one
    /// `ClientConfig` whose session cache the data connections resume from.
    data_tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Try `EPSV` first; cleared when the server does not support it.
    epsv: bool,
    /// The control connection failed (I/O error, timeout): it cannot be used again.
    broken: bool,
}

impl Session {
    /// Connects, secures, logs in and selects binary transfers.
    async fn open(t: &FtpTransport, tls: Option<&ClientTls>) -> std::result::Result<Self, String> {
        let at = t.endpoint();
        let tcp = connect(&t.host, t.port)
            .await
            .map_err(|e| format!("connect to {at}: {e}"))?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| format!("connect to {at}: {e}"))?;
        let mut ctl = BufReader::new(Conn::Plain(tcp));
        let data_tls = match (t.tls, tls) {
            (FtpTls::None, _) => {
                greeting(&mut ctl, &at).await?;
                None
            }
            (mode, Some(tls)) => {
                let name = ServerName::try_from(t.host.clone()).map_err(|e| {
                    format!(
                        "TLS with {at}: `{}` is not a valid server name: {e}",
                        t.host
                    )
                })?;
                let connector = TlsConnector::from(tls.config.clone());
                if mode == FtpTls::Explicit {
                    greeting(&mut ctl, &at).await?;
                    send_line(&mut ctl, "AUTH TLS")
                        .await
                        .map_err(|e| format!("TLS with {at}: {e}"))?;
                    let reply = recv_reply(&mut ctl, REPLY_TIMEOUT)
                        .await
                        .map_err(|e| format!("TLS with {at}: {e}"))?;
                    if reply.code != 234 {
                        return Err(format!(
                            "TLS with {at}: the server refused AUTH TLS (explicit FTPS): {reply}"
                        ));
                    }
                }
                ctl = secure(ctl, &connector, &name, &at).await?;
                if mode == FtpTls::Implicit {
                    // Also reads the TLS 1.3 session tickets the server sent after the handshake.
                    greeting(&mut ctl, &at).await?;
                }
                Some((connector, name))
            }
            (_, None) => return Err(format!("TLS with {at}: no TLS configuration")),
        };
        let mut session = Session {
            ctl,
            at: at.clone(),
            peer,
            data_tls: None,
            epsv: true,
            broken: false,
        };

        session.login(&t.username, t.password.as_ref()).await?;

        if let Some(data_tls) = data_tls {
            for cmd in ["PBSZ 0", "PROT P"] {
                let reply = session.command(cmd).await?;
                if !reply.is_ok() {
                    return Err(format!(
                        "TLS with {at}: the server refused `{cmd}` (protected data connections): \
                         {reply}"
                    ));
                }
            }
            session.data_tls = Some(data_tls);
        }
        let reply = session.command("TYPE I").await?;
        if !reply.is_ok() {
            return Err(format!("binary mode (TYPE I) on {at}: {reply}"));
        }
        // File names are UTF-8; some servers (IIS, FileZilla) want to be told. Refusal is fine.
        session.command("OPTS UTF8 ON").await?;
        Ok(session)
    }

    /// Sends a command and reads its reply. A failure (not a refusal) breaks the session.
    async fn command(&mut self, line: &str) -> std::result::Result<Reply, String> {
        self.send(line).await?;
        self.reply(REPLY_TIMEOUT).await
    }

    async fn send(&mut self, line: &str) -> std::result::Result<(), String> {
        let sent = send_line(&mut self.ctl, line).await;
        self.broken |= sent.is_err();
        sent
    }

    async fn reply(&mut self, limit: Duration) -> std::result::Result<Reply, String> {
        let reply = recv_reply(&mut self.ctl, limit).await;
        self.broken |= reply.is_err();
        reply
    }

    /// `USER`, then `PASS` when the server asks for it.
    async fn login(
        &mut self,
        user: &str,
        password: Option<&SecretValue>,
    ) -> std::result::Result<(), String> {
        let at = self.at.clone();
        let fail = |e: String| format!("login as {user} at {at}: {e}");
        if user.contains(['\r', '\n']) {
            return Err(fail("the user name contains a line break".into()));
        }
        let mut reply = self.command(&format!("USER {user}")).await.map_err(fail)?;
        if reply.code == 331 {
            let password = match password {
                Some(p) => p.expose_str().map_err(|e| fail(e.to_string()))?,
                None => "",
            };
            if password.contains(['\r', '\n']) {
                return Err(fail("the password contains a line break".into()));
            }
            // Built here and dropped at once; `send_line` never logs it.
            let line = format!("PASS {password}");
            reply = self.command(&line).await.map_err(fail)?;
        }
        match reply.code {
            230 | 202 => Ok(()),
            332 => Err(fail(format!(
                "the server wants an account (ACCT), which ferry does not support: {reply}"
            ))),
            _ if password.is_none() && reply.code == 530 => Err(fail(format!(
                "{reply} (the target has no passwordSecretRef)"
            ))),
            _ => Err(fail(reply.to_string())),
        }
    }

    /// The current directory (`PWD`).
    async fn pwd(&mut self) -> std::result::Result<String, String> {
        let reply = self.command("PWD").await?;
        if reply.code != 257 {
            return Err(format!("PWD: {reply}"));
        }
        parse_pwd(&reply.text).ok_or_else(|| format!("PWD: cannot read the path in {reply}"))
    }

    /// Changes to `dir`, creating the missing components (like `mkdir -p`). Returns the
    /// directory's path as the server names it.
    async fn enter_directory(&mut self, dir: &str) -> std::result::Result<String, String> {
        let at = self.at.clone();
        if dir.contains(['\r', '\n']) {
            return Err(format!("directory {dir:?} contains a line break"));
        }
        let dir = dir.trim();
        if dir.is_empty() || dir == "." {
            return self
                .pwd()
                .await
                .map_err(|e| format!("directory on {at}: {e}"));
        }
        if !self.command(&format!("CWD {dir}")).await?.is_ok() {
            let mut so_far = String::new();
            if dir.starts_with('/') {
                so_far.push('/');
                let reply = self.command("CWD /").await?;
                if !reply.is_ok() {
                    return Err(format!("cannot enter / on {at}: {reply}"));
                }
            }
            for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
                if !so_far.is_empty() && !so_far.ends_with('/') {
                    so_far.push('/');
                }
                so_far.push_str(part);
                if self.command(&format!("CWD {part}")).await?.is_ok() {
                    continue;
                }
                // A refusal may just mean it exists (created concurrently): CWD decides.
                let made = self.command(&format!("MKD {part}")).await?;
                let entered = self.command(&format!("CWD {part}")).await?;
                if !entered.is_ok() {
                    return Err(if made.is_ok() {
                        format!("created directory {so_far} on {at} but cannot enter it: {entered}")
                    } else {
                        format!("cannot create directory {so_far} on {at}: {made}")
                    });
                }
            }
        }
        match self.pwd().await {
            Ok(path) => Ok(path),
            // The server does not say where it is: name the directory as configured.
            Err(e) if !self.broken => {
                tracing::debug!("{e}: naming the directory as configured");
                Ok(dir.to_string())
            }
            Err(e) => Err(format!("directory {dir} on {at}: {e}")),
        }
    }

    /// Opens a passive data connection (`EPSV`, else `PASV`).
    async fn open_data(&mut self) -> std::result::Result<TcpStream, String> {
        let mut port = None;
        if self.epsv {
            let reply = self.command("EPSV").await?;
            if reply.code == 229 {
                port = Some(
                    parse_epsv(&reply.text)
                        .ok_or_else(|| format!("cannot read the port in {reply}"))?,
                );
            } else {
                tracing::debug!(%reply, "EPSV refused, using PASV");
                self.epsv = false;
            }
        }
        let port = match port {
            Some(p) => p,
            None => {
                let reply = self.command("PASV").await?;
                if reply.code != 227 {
                    return Err(format!("passive mode refused: {reply}"));
                }
                parse_pasv(&reply.text).ok_or_else(|| format!("cannot read the port in {reply}"))?
            }
        };
        let addr = SocketAddr::new(self.peer.ip(), port);
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                format!(
                    "data connection to {addr}: timed out after {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("data connection to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Opens a data connection for `command` (`STOR`, `LIST`): passive connection, the command,
    /// its `150`, then TLS when data is protected, resuming the control connection's session.
    async fn data_command(&mut self, command: &str) -> std::result::Result<Conn, String> {
        match self.try_data_command(command).await? {
            Ok(conn) => Ok(conn),
            Err(reply) => Err(format!("the server refused it: {reply}")),
        }
    }

    /// [`data_command`](Self::data_command), telling the server's refusal of the command apart.
    async fn try_data_command(
        &mut self,
        command: &str,
    ) -> std::result::Result<std::result::Result<Conn, Reply>, String> {
        let tcp = self.open_data().await?;
        let reply = self.command(command).await?;
        if !reply.is_preliminary() {
            return Ok(Err(reply));
        }
        let Some((connector, name)) = &self.data_tls else {
            return Ok(Ok(Conn::Plain(tcp)));
        };
        match handshake(connector, name, tcp).await {
            Ok(tls) => Ok(Ok(Conn::Tls(Box::new(tls)))),
            Err(e) => {
                // The server says why on the control connection (e.g. vsftpd's
                // `522 SSL connection failed: session reuse required`).
                let why = match self.reply(Duration::from_secs(5)).await {
                    Ok(reply) => format!("; the server said: {reply}"),
                    Err(_) => String::new(),
                };
                Err(format!("TLS on the data connection: {e}{why}"))
            }
        }
    }

    /// Uploads the staged file as `name` (in the current directory). Returns the bytes sent.
    async fn upload(
        &mut self,
        name: &str,
        staged: &Path,
        expected: u64,
    ) -> std::result::Result<u64, String> {
        let store = format!("STOR {name}");
        let mut data = match self.try_data_command(&store).await? {
            Ok(data) => data,
            Err(refused) => {
                // A leftover this login cannot overwrite (another owner, read-only) may still
                // be deletable: then try once more.
                let deleted = self.command(&format!("DELE {name}")).await?;
                if !deleted.is_ok() {
                    return Err(format!("the server refused it: {refused}"));
                }
                self.data_command(&store).await?
            }
        };
        let sent = match send_file(staged, &mut data, expected).await {
            Ok(sent) => sent,
            Err(e) => {
                drop(data);
                let why = match self.reply(Duration::from_secs(10)).await {
                    Ok(reply) => format!("; the server said: {reply}"),
                    Err(_) => String::new(),
                };
                return Err(format!("{e}{why}"));
            }
        };
        // End of data: TLS close_notify, then FIN.
        let closed = timeout(IDLE_TIMEOUT, data.shutdown()).await;
        let closed = match closed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("closing the data connection failed: {e}")),
            Err(_) => Err("closing the data connection timed out".to_string()),
        };
        let reply = if closed.is_ok() {
            self.finish_upload(&mut data).await
        } else {
            drop(data);
            self.reply(Duration::from_secs(10)).await
        };
        let reply = match (closed, reply) {
            (Ok(()), Ok(reply)) => reply,
            (Err(e), Ok(reply)) => return Err(format!("{e}; the server said: {reply}")),
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
        };
        if !reply.is_ok() {
            return Err(format!("the server did not confirm the transfer: {reply}"));
        }
        Ok(sent)
    }

    /// Waits for the transfer's reply while reading the data connection to its end: the
    /// server may have sent something (a TLS session ticket) that, left unread, would make the
    /// socket close with a reset, which can reach the server before the end of the data.
    async fn finish_upload(&mut self, data: &mut Conn) -> std::result::Result<Reply, String> {
        let drained = async {
            let mut buf = [0u8; 4096];
            while matches!(data.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let wait = async {
            let mut reply = std::pin::pin!(read_reply(&mut self.ctl));
            tokio::select! {
                r = &mut reply => r,
                () = drained => reply.await,
            }
        };
        let reply = match timeout(IDLE_TIMEOUT, wait).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(format!("reading the server's reply failed: {e}")),
            Err(_) => Err(format!(
                "the server did not confirm the transfer within {} s",
                IDLE_TIMEOUT.as_secs()
            )),
        };
        self.broken |= reply.is_err();
        reply
    }

    /// The size of `name` in the current directory: `SIZE`, else a listing.
    async fn remote_size(&mut self, name: &str) -> std::result::Result<u64, String> {
        let reply = self.command(&format!("SIZE {name}")).await?;
        if reply.code == 213
            && let Some(size) = parse_size(&reply.text)
        {
            return Ok(size);
        }
        tracing::debug!(%reply, "SIZE not available, listing the file instead");
        self.listed_size(name)
            .await
            .map_err(|e| format!("SIZE: {reply}; LIST: {e}"))
    }

    /// The size of `name` from `LIST name`.
    async fn listed_size(&mut self, name: &str) -> std::result::Result<u64, String> {
        let mut data = self.data_command(&format!("LIST {name}")).await?;
        let mut listing = Vec::new();
        let read = timeout(
            IDLE_TIMEOUT,
            (&mut data).take(MAX_LISTING).read_to_end(&mut listing),
        )
        .await;
        // Answer the server's close_notify with ours (best effort), then close.
        let _ = timeout(Duration::from_secs(5), data.shutdown()).await;
        drop(data);
        let reply = self.reply(REPLY_TIMEOUT).await?;
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("reading the listing failed: {e}")),
            Err(_) => return Err("reading the listing timed out".into()),
        }
        if !reply.is_ok() {
            return Err(reply.to_string());
        }
        size_in_listing(&String::from_utf8_lossy(&listing), name)
            .ok_or_else(|| format!("{name} is not in the listing"))
    }

    /// Renames `from` to `to`, replacing `to`. A server that refuses to rename over an
    /// existing file gets it deleted first.
    async fn rename_over(&mut self, from: &str, to: &str) -> std::result::Result<(), String> {
        let refused = match self.rename(from, to).await? {
            Renamed::Done => return Ok(()),
            Renamed::FromRefused(reply) => return Err(format!("RNFR: {reply}")),
            Renamed::ToRefused(reply) => reply,
        };
        let deleted = self.command(&format!("DELE {to}")).await?;
        if !deleted.is_ok() {
            return Err(format!(
                "RNTO: {refused}; deleting the existing file first failed too: {deleted}"
            ));
        }
        match self.rename(from, to).await? {
            Renamed::Done => Ok(()),
            Renamed::FromRefused(reply) | Renamed::ToRefused(reply) => Err(format!(
                "RNTO: {refused}; again after deleting the existing file: {reply}"
            )),
        }
    }

    async fn rename(&mut self, from: &str, to: &str) -> std::result::Result<Renamed, String> {
        let reply = self.command(&format!("RNFR {from}")).await?;
        if reply.code != 350 {
            return Ok(Renamed::FromRefused(reply));
        }
        let reply = self.command(&format!("RNTO {to}")).await?;
        Ok(if reply.is_ok() {
            Renamed::Done
        } else {
            Renamed::ToRefused(reply)
        })
    }

    /// Says goodbye, best effort.
    async fn quit(mut self) {
        if self.broken {
            return;
        }
        let _ = timeout(CLEANUP_TIMEOUT, async {
            if self.send("QUIT").await.is_ok() {
                let _ = self.reply(CLEANUP_TIMEOUT).await;
            }
            let _ = self.ctl.get_mut().shutdown().await;
        })
        .await;
    }
}

/// What a rename attempt came to.
enum Renamed {
    Done,
    FromRefused(Reply),
    ToRefused(Reply),
}

/// Copies the staged file to the data connection: a blocking thread reads 1 MiB chunks ahead
/// while the previous ones are written, and the buffers go back and forth without copies.
async fn send_file<W: AsyncWrite + Unpin>(
    staged: &Path,
    out: &mut W,
    expected: u64,
) -> std::result::Result<u64, String> {
    let (full_tx, mut full_rx) =
        tokio::sync::mpsc::channel::<std::io::Result<(Vec<u8>, usize)>>(READ_AHEAD);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let path: PathBuf = staged.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = full_tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = empty_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            let mut filled = 0;
            let result = loop {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let done = filled < buf.len() || result.is_err();
            let item = result.map(|()| (buf, filled));
            if full_tx.blocking_send(item).is_err() || done {
                return;
            }
        }
    });

    let mut sent: u64 = 0;
    let outcome = async {
        while let Some(item) = full_rx.recv().await {
            let (buf, n) = item.map_err(|e| format!("reading {}: {e}", staged.display()))?;
            if n == 0 {
                break;
            }
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
            let _ = empty_tx.send(buf);
        }
        Ok(())
    }
    .await;
    drop(full_rx);
    let _ = reader.await;
    outcome?;
    if sent != expected {
        return Err(format!(
            "{} has {sent} bytes, expected {expected} (did it change after staging?)",
            staged.display()
        ));
    }
    Ok(sent)
}

// ---- parsing ---------------------------------------------------------------------------------

/// The path in a `257 "/a/b" is the current directory` reply (`""` stands for `"`).
fn parse_pwd(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// The port in `229 Entering Extended Passive Mode (|||30001|)`.
fn parse_epsv(text: &str) -> Option<u16> {
    let inner = &text[text.find('(')? + 1..];
    let inner = &inner[..inner.find(')')?];
    let delim = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(delim).collect();
    // "", "", "", port, ""
    if parts.len() != 5 {
        return None;
    }
    parts[3].parse().ok()
}

/// The port in `227 Entering Passive Mode (127,0,0,1,117,48).` (the address is not used).
fn parse_pasv(text: &str) -> Option<u16> {
    let body = text.get(3..)?;
    let start = body.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u16> = body[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|s| !s.is_empty())
        .take(6)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    Some(nums[4] * 256 + nums[5])
}

/// The number in `213 12345`.
fn parse_size(text: &str) -> Option<u64> {
    text.get(4..)?.split_whitespace().next()?.parse().ok()
}

/// The size of `name` in a `LIST` output (Unix `ls -l` or DOS style).
fn size_in_listing(listing: &str, name: &str) -> Option<u64> {
    listing
        .lines()
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply_of(bytes: &[u8]) -> std::io::Result<Reply> {
        let mut r = bytes;
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn single_and_multi_line_replies_are_read_whole() {
        let r = reply_of(b"220 ready\r\nnext").await.unwrap();
        assert_eq!((r.code, r.text.as_str()), (220, "220 ready"));
        let r = reply_of(b"211-Features:\r\n EPSV\r\n 211 not the end\r\n211 End\r\n")
            .await
            .unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.text, "211-Features:\n EPSV\n 211 not the end\n211 End");
    }

    #[tokio::test]
    async fn garbage_and_a_closed_connection_are_errors() {
        assert!(reply_of(b"hello\r\n").await.is_err());
        assert!(reply_of(b"").await.is_err());
        assert!(reply_of(b"150-started\r\n").await.is_err());
        let long = vec![b'x'; MAX_REPLY + 10];
        let mut line = b"200 ".to_vec();
        line.extend_from_slice(&long);
        assert!(reply_of(&line).await.is_err());
    }

    #[test]
    fn passive_replies_give_the_port() {
        assert_eq!(
            parse_pasv("227 Entering Passive Mode (127,0,0,1,117,48)."),
            Some(117 * 256 + 48)
        );
        assert_eq!(parse_pasv("227 =10,0,0,5,4,1"), Some(1025));
        assert_eq!(parse_pasv("227 nothing"), None);
        assert_eq!(
            parse_epsv("229 Entering Extended Passive Mode (|||30001|)"),
            Some(30001)
        );
        assert_eq!(parse_epsv("229 Extended (!!!2121!)"), Some(2121));
        assert_eq!(parse_epsv("229 weird (|||x|)"), None);
    }

    #[test]
    fn pwd_replies_give_the_path() {
        assert_eq!(
            parse_pwd("257 \"/a/b\" is the current directory").as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            parse_pwd("257 \"/say \"\"hi\"\"\" ok").as_deref(),
            Some("/say \"hi\"")
        );
        assert_eq!(parse_pwd("257 no quotes"), None);
    }

    #[test]
    fn sizes_come_from_size_or_a_listing() {
        assert_eq!(parse_size("213 1048576"), Some(1_048_576));
        assert_eq!(parse_size("213 "), None);
        let unix = "-rw-r--r--    1 1001     1001         4096 Nov 21 10:30 report.csv\r\n\
                    -rw-r--r--    1 1001     1001           12 Nov 21 10:30 other.csv";
        assert_eq!(size_in_listing(unix, "report.csv"), Some(4096));
        assert_eq!(size_in_listing(unix, "missing.csv"), None);
        let dos = "11-21-25  10:30AM                 2048 report.csv";
        assert_eq!(size_in_listing(dos, "report.csv"), Some(2048));
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
