//! One SMTP session, step by step (lettre's connection, not its all-in-one transport), so
//! that a failure names its step: connect, TLS, STARTTLS, AUTH, MAIL, each RCPT, DATA, QUIT.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use super::{Accepted, EmailTransport, MIN_BYTES_PER_SECOND, STEP_TIMEOUT};
use crate::Result;
use crate::api::SmtpTls;
use crate::deliver::CommitHook;

impl EmailTransport {
    /// One SMTP session: connect (TLS), STARTTLS, AUTH, MAIL, RCPT for each recipient, DATA.
    /// Errors name the step, the server and, for recipients, the address.
    pub(super) async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
        commit: &CommitHook,
        evidence: BTreeMap<String, String>,
    ) -> Result<Accepted, String> {
        let hello = ClientId::default();
        let (mut conn, certificate_sha256) = self.open(&hello).await?;
        let result = self
            .session(
                &mut conn,
                envelope,
                message,
                certificate_sha256,
                commit,
                evidence,
            )
            .await;
        let close = Duration::from_secs(10);
        match result {
            Ok(accepted) => {
                let _ = tokio::time::timeout(close, conn.quit()).await;
                Ok(accepted)
            }
            Err(Halt::Abort(message)) => {
                let _ = tokio::time::timeout(close, conn.abort()).await;
                Err(message)
            }
            // A failed STARTTLS leaves lettre's connection without a stream: drop it.
            Err(Halt::Drop(message)) => Err(message),
        }
    }

    /// A check of the SMTP relay (`ferry check`): connect (TLS), STARTTLS, AUTH, then QUIT,
    /// nothing sent. Returns the server certificate's SHA-256 fingerprint, if TLS.
    pub(super) async fn probe_session(&self) -> Result<Option<String>, String> {
        let (mut conn, certificate_sha256) = self.open(&ClientId::default()).await?;
        step(conn.quit(), STEP_TIMEOUT)
            .await
            .map_err(|e| format!("SMTP server {} did not answer QUIT: {e}", self.smtp.at()))?;
        Ok(certificate_sha256)
    }

    /// Connects (TLS), STARTTLS and AUTH: a session ready for MAIL, and the server
    /// certificate's SHA-256 fingerprint when the session is encrypted.
    async fn open(
        &self,
        hello: &ClientId,
    ) -> Result<(AsyncSmtpConnection, Option<String>), String> {
        let s = &self.smtp;
        let at = s.at();
        let implicit = match s.tls {
            SmtpTls::Implicit => s.tls_parameters.clone(),
            _ => None,
        };
        let mut conn = step(
            AsyncSmtpConnection::connect_tokio1(
                (s.host.as_str(), s.port),
                Some(STEP_TIMEOUT),
                hello,
                implicit,
                None,
            ),
            STEP_TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            Failed::Smtp(e) if tls_error_in(&e).is_some() => tls_failure(&at, &e),
            e => format!("SMTP connection to {at} failed: {e}"),
        })?;
        match self.secure_and_log_in(&mut conn, hello).await {
            Ok(certificate_sha256) => Ok((conn, certificate_sha256)),
            Err(Halt::Abort(message)) => {
                let close = Duration::from_secs(10);
                let _ = tokio::time::timeout(close, conn.abort()).await;
                Err(message)
            }
            Err(Halt::Drop(message)) => Err(message),
        }
    }

    /// STARTTLS when configured, then AUTH when there is a login.
    async fn secure_and_log_in(
        &self,
        conn: &mut AsyncSmtpConnection,
        hello: &ClientId,
    ) -> Result<Option<String>, Halt> {
        let s = &self.smtp;
        let at = s.at();
        if s.tls == SmtpTls::Starttls {
            if !conn.server_info().supports_feature(Extension::StartTls) {
                return Err(Halt::Abort(format!(
                    "SMTP server {at} does not offer STARTTLS, which tls: starttls requires \
                     (port 465 usually wants tls: implicit)"
                )));
            }
            let parameters = s
                .tls_parameters
                .clone()
                .ok_or_else(|| "internal: STARTTLS without TLS settings".to_string())?;
            step(conn.starttls(parameters, hello), STEP_TIMEOUT)
                .await
                .map_err(|e| {
                    Halt::Drop(match e {
                        Failed::Smtp(e) if tls_error_in(&e).is_some() => tls_failure(&at, &e),
                        e => format!("STARTTLS with {at} failed: {e}"),
                    })
                })?;
        }
        let certificate_sha256 = if conn.is_encrypted() {
            conn.peer_certificate()
                .ok()
                .map(|der| crate::tls::certificate_fingerprint(&der))
        } else {
            None
        };

        if let Some((user, password)) = &s.login {
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if conn.server_info().get_auth_mechanism(&mechanisms).is_none() {
                return Err(Halt::Abort(format!(
                    "SMTP server {at} offers no AUTH mechanism Ferry supports (PLAIN, LOGIN) to \
                     log in as `{user}`"
                )));
            }
            let password = password
                .expose_str()
                .map_err(|_| "the SMTP password secret is not UTF-8 text".to_string())?;
            let credentials = Credentials::new(user.clone(), password.to_string());
            step(conn.auth(&mechanisms, &credentials), STEP_TIMEOUT)
                .await
                .map_err(|e| format!("SMTP AUTH as `{user}` at {at} refused: {e}"))?;
        }
        Ok(certificate_sha256)
    }

    /// MAIL, RCPT for each recipient, DATA, on a session [`EmailTransport::open`] made.
    async fn session(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
        certificate_sha256: Option<String>,
        commit: &CommitHook,
        evidence: BTreeMap<String, String>,
    ) -> Result<Accepted, Halt> {
        let at = self.smtp.at();

        let mut parameters = Vec::new();
        let non_ascii_addresses = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_addresses {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Halt::Abort(format!(
                    "SMTP server {at} does not support SMTPUTF8, needed for non-ASCII addresses"
                )));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(Halt::Abort(format!(
                    "SMTP server {at} does not support 8BITMIME, needed for this message"
                )));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let sender: Option<Address> = envelope.from().cloned();
        let sender_text = sender
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "<>".to_string());
        step(conn.command(Mail::new(sender, parameters)), STEP_TIMEOUT)
            .await
            .map_err(|e| format!("SMTP server {at} refused sender {sender_text}: {e}"))?;
        for rcpt in envelope.to() {
            step(conn.command(Rcpt::new(rcpt.clone(), vec![])), STEP_TIMEOUT)
                .await
                .map_err(|e| format!("SMTP server {at} refused recipient {rcpt}: {e}"))?;
        }
        // Every recipient accepted: from DATA on, the message may reach them.
        commit
            .reached(evidence)
            .await
            .map_err(|e| Halt::Abort(format!("recording the delivery: {e}")))?;
        step(conn.command(Data), STEP_TIMEOUT)
            .await
            .map_err(|e| format!("SMTP server {at} refused DATA: {e}"))?;
        let transfer =
            STEP_TIMEOUT + Duration::from_secs(message.len() as u64 / MIN_BYTES_PER_SECOND);
        let response = step(conn.message(message), transfer)
            .await
            .map_err(|e| format!("SMTP server {at} did not accept the message: {e}"))?;
        let mut text = response.code().to_string();
        for line in response.message() {
            text.push(' ');
            text.push_str(line);
        }
        Ok(Accepted {
            response: text,
            certificate_sha256,
        })
    }
}

/// Why a session stopped, and whether its connection can still say QUIT.
pub(super) enum Halt {
    /// The connection works: send QUIT and close it.
    Abort(String),
    /// The connection is unusable (a failed STARTTLS): just drop it.
    Drop(String),
}

impl From<String> for Halt {
    fn from(message: String) -> Self {
        Halt::Abort(message)
    }
}

/// An SMTP step that failed or took too long.
pub(super) enum Failed {
    Smtp(lettre::transport::smtp::Error),
    Timeout(Duration),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Smtp(e) => write!(f, "{e}"),
            Failed::Timeout(d) => write!(f, "no answer within {}s", d.as_secs()),
        }
    }
}

pub(super) async fn step<T>(
    fut: impl Future<Output = std::result::Result<T, lettre::transport::smtp::Error>>,
    limit: Duration,
) -> std::result::Result<T, Failed> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failed::Smtp(e)),
        Err(_) => Err(Failed::Timeout(limit)),
    }
}

/// The TLS error behind an SMTP error, if that is what it is: a rustls error anywhere in the
/// chain (lettre reports a failed handshake as a TLS error when connecting with implicit TLS,
/// and as a connection error after STARTTLS).
pub(super) fn tls_error_in(e: &lettre::transport::smtp::Error) -> Option<String> {
    if e.is_tls() {
        return Some(e.to_string());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(tls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        source = s.source();
    }
    let text = e.to_string();
    text.contains("invalid peer certificate").then_some(text)
}

/// A TLS failure, with a hint when the certificate was not trusted.
pub(super) fn tls_failure(at: &str, e: &lettre::transport::smtp::Error) -> String {
    let error = tls_error_in(e).unwrap_or_else(|| e.to_string());
    let hint = if error.contains("certificate") || error.contains("Certificate") {
        "; the server's certificate is not trusted: if it is issued by a private CA, give that \
         CA's PEM in smtp.caSecretRef"
    } else {
        ""
    };
    format!("TLS handshake with SMTP server {at} failed: {error}{hint}")
}
