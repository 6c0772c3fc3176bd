//! Email delivery: a report announced by mail, with an expiring link (default) or attached.
//!
//! Why a link by default: reports are often larger than mail servers accept, mailboxes keep
//! copies forever, and a link that expires limits how long a forwarded mail exposes the data.
//! Link mode uploads the file to an S3-compatible bucket (submodule `s3`), presigns a GET URL
//! valid for `link.expiresIn` (at most 7 days, SigV4's limit) and mails it; attach mode
//! (`attach: true`) sends the file itself, base64-encoded (bytes exact, line endings
//! untouched), with its MIME type from the extension.
//!
//! SMTP is spoken step by step (lettre's connection, not its all-in-one transport) so that a
//! failure says which step failed: connecting, the TLS handshake (certificates are always
//! verified: system roots plus `smtp.caSecretRef`), STARTTLS (required when `tls: starttls`;
//! never silently skipped), AUTH (PLAIN or LOGIN; refused over an unencrypted connection, where
//! it would expose the password), the sender, each recipient, the message. A rejected recipient
//! fails the delivery before DATA, so nobody receives a mail the others did not, and a retry
//! does not send duplicates. Ferry generates the Message-ID and records it, with the server's
//! final reply and the TLS certificate's SHA-256 fingerprint, in the receipt.
//!
//! Templates: the subject renders the file-name date tokens, `{schedule}`, `{namespace}` and
//! `{fileName}`; the body also `{link}`, `{expires}` (RFC 3339 in the slot's time zone) and
//! `{rows}`. The link is never rendered into the subject (subjects end up in notifications
//! and logs). In attach mode `{link}` renders as `attached to this email` and `{expires}` as
//! `never`.
//!
//! Secrets (SMTP password, S3 keys) and the presigned URL (it grants access to the report)
//! never appear in errors, logs or receipts; the receipt records the object, its bucket and
//! the link's expiry instead.

mod s3;
mod smtp;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lettre::Message;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use sha2::{Digest, Sha256};

use super::spec::TargetSpec;
use super::transport::content_type_for;
use super::{BoxFuture, Confirmation, Outgoing, Receipt, Transport};
use crate::api::TargetKind;
use crate::api::{EmailTarget, SmtpTls};
use crate::filename;
use crate::filename::{TemplateContext, render};
use crate::schedule;
use crate::secrets::{FileSecrets, SecretValue};
use crate::validate::fields::{
    PORT_ZERO, Problems, check_host, check_http_url, check_mailbox, check_max_connections,
};
use crate::{Error, Result};

/// Largest file sent as an attachment. Base64 adds a third, and most mail servers refuse
/// messages above 25-35 MB: larger reports should use a link.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;

/// Time allowed for connecting and for each SMTP command.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Minimum transfer rate assumed when sending the message itself.
const MIN_BYTES_PER_SECOND: u64 = 256 * 1024;

/// An `email` target with its secrets resolved.
pub struct EmailTransport {
    name: String,
    smtp: Smtp,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    body: String,
    mode: Mode,
}

/// Link mode (the bucket), attach mode, or neither: a target that only takes alerts.
enum Mode {
    Link(s3::LinkStore),
    Attach,
    AlertsOnly,
}

/// Why an email target without `link` or `attach` cannot take a report.
pub const ALERTS_ONLY: &str = "no link storage and attach: false, so this email target takes alerts only: give link.s3 for an expiring link, or set attach: true";

/// How to reach and log in to the SMTP server.
struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// Built once: it checks the CA secret and loads the system roots.
    tls_parameters: Option<TlsParameters>,
    login: Option<(String, SecretValue)>,
}

impl Smtp {
    fn at(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What the SMTP server said when it accepted the message.
struct Accepted {
    response: String,
    certificate_sha256: Option<String>,
}

impl EmailTransport {
    /// Resolves the target's secrets (SMTP password and CA, S3 keys), parses the addresses and
    /// builds the TLS settings and the S3 client. Fails early on anything a delivery could
    /// only fail on later.
    pub fn new(
        namespace: &str,
        name: &str,
        target: &EmailTarget,
        secrets: &FileSecrets,
    ) -> Result<Self> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        let parse_mailbox = |field: &str, s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| fail(format!("{field}: `{s}` is not a valid address: {e}")))
        };
        let from = parse_mailbox("from", &target.from)?;
        if target.to.is_empty() {
            return Err(fail("to: list at least one recipient".into()));
        }
        let to = target
            .to
            .iter()
            .enumerate()
            .map(|(i, s)| parse_mailbox(&format!("to[{i}]"), s))
            .collect::<Result<Vec<_>>>()?;

        let server = &target.smtp;
        let port = server.effective_port();
        let login = match (&server.username, &server.password_secret_ref) {
            (Some(user), Some(r)) => Some((user.clone(), secrets.require(namespace, r)?)),
            (Some(user), None) => {
                return Err(fail(format!(
                    "smtp: username `{user}` is set but passwordSecretRef is missing"
                )));
            }
            (None, Some(_)) => return Err(fail("smtp: a password needs a username".into())),
            (None, None) => None,
        };
        if login.is_some() && server.tls == SmtpTls::None {
            return Err(fail(format!(
                "smtp {}:{port}: AUTH over an unencrypted connection (tls: none) would send \
                 the password in clear; use tls: starttls or implicit",
                server.host
            )));
        }
        let tls_parameters = match server.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Implicit => {
                crate::tls::install_crypto_provider();
                let mut builder = TlsParameters::builder(server.host.clone());
                if let Some(r) = &server.ca_secret_ref {
                    let pem = secrets.require(namespace, r)?;
                    let certs = crate::tls::parse_pem_certificates(pem.expose())
                        .map_err(|m| fail(format!("smtp.caSecretRef {}/{}: {m}", r.name, r.key)))?;
                    for der in certs {
                        let cert = Certificate::from_der(der.to_vec()).map_err(|e| {
                            fail(format!("smtp.caSecretRef {}/{}: {e}", r.name, r.key))
                        })?;
                        builder = builder.add_root_certificate(cert);
                    }
                }
                Some(
                    builder.build_rustls().map_err(|e| {
                        fail(format!("TLS settings for {}:{port}: {e}", server.host))
                    })?,
                )
            }
        };
        let mode = match (&target.link, target.attach) {
            (_, true) => Mode::Attach,
            (Some(link), false) => Mode::Link(s3::LinkStore::new(namespace, name, link, secrets)?),
            (None, false) => Mode::AlertsOnly,
        };
        Ok(EmailTransport {
            name: name.to_string(),
            smtp: Smtp {
                host: server.host.clone(),
                port,
                tls: server.tls,
                tls_parameters,
                login,
            },
            from,
            to,
            subject: target.subject.clone(),
            body: target.body.clone(),
            mode,
        })
    }

    fn fail(&self, message: String) -> Error {
        Error::Delivery {
            target: self.name.clone(),
            message: self.scrub(&message),
        }
    }

    /// `message` without the SMTP password, should a server have echoed it.
    fn scrub(&self, message: &str) -> String {
        match &self.smtp.login {
            Some((_, password)) => super::bucket::scrub(message, &[password]),
            None => message.to_string(),
        }
    }

    async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
        let content_type = content_type_for(file.file_name);
        let mut details = BTreeMap::new();
        let rows = file.about.rows.to_string();

        // The file's way into the mail: a presigned link, or the bytes themselves.
        let (link_text, expires_text, attachment, confirmed_bytes) = match &self.mode {
            Mode::Link(store) => {
                let stored = store
                    .put(file, content_type)
                    .await
                    .map_err(|m| self.fail(m))?;
                let link = store.presign(&stored).await.map_err(|m| self.fail(m))?;
                let expires = rfc3339_in(&link.expires, &file.about.slot);
                details.insert(
                    "object".to_string(),
                    format!("s3://{}/{}", store.bucket(), stored.key),
                );
                details.insert("linkExpires".to_string(), expires.clone());
                details.insert("objectReused".to_string(), stored.reused.to_string());
                (link.url, expires, None, stored.bytes)
            }
            Mode::Attach => {
                let data = self.read_attachment(file).await?;
                details.insert("attached".to_string(), "true".to_string());
                let n = data.len() as u64;
                (
                    "attached to this email".to_string(),
                    "never".to_string(),
                    Some(data),
                    n,
                )
            }
            Mode::AlertsOnly => return Err(self.fail(ALERTS_ONLY.to_string())),
        };

        let subject_tokens = [("fileName", file.file_name)];
        let ctx = TemplateContext {
            slot: &file.about.slot,
            schedule: file.about.schedule_label(),
            namespace: &file.about.namespace,
            extra: &subject_tokens,
        };
        // Headers cannot hold line breaks; a template's stray control character becomes a space.
        let subject: String = render(&self.subject, &ctx)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let body_tokens = [
            ("fileName", file.file_name),
            ("link", link_text.as_str()),
            ("expires", expires_text.as_str()),
            ("rows", rows.as_str()),
        ];
        let body = render(
            &self.body,
            &TemplateContext {
                extra: &body_tokens,
                ..ctx
            },
        );

        let message_id = self.message_id(file)?;
        let message = self.build_message(
            &subject,
            body,
            &message_id,
            attachment.map(|data| (file.file_name, content_type, data)),
        )?;
        drop(link_text);
        let mut evidence = BTreeMap::new();
        evidence.insert("messageId".to_string(), message_id.clone());
        let accepted = self
            .send(
                message.envelope(),
                &message.formatted(),
                &file.commit,
                evidence,
            )
            .await
            .map_err(|m| self.fail(m))?;

        let recipients: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        details.insert("messageId".to_string(), message_id);
        details.insert("recipients".to_string(), recipients.join(","));
        details.insert("smtpServer".to_string(), self.smtp.at());
        details.insert(
            "smtpTls".to_string(),
            match self.smtp.tls {
                SmtpTls::None => "none",
                SmtpTls::Starttls => "starttls",
                SmtpTls::Implicit => "implicit",
            }
            .to_string(),
        );
        details.insert("smtpResponse".to_string(), accepted.response);
        if let Some(fp) = accepted.certificate_sha256 {
            details.insert("tlsCertificateSha256".to_string(), fp);
        }
        Ok(Receipt {
            location: mailto(&recipients),
            bytes: confirmed_bytes,
            sha256: file.sha256.to_string(),
            details,
        })
    }

    /// The staged file, checked against the size and hash the run recorded.
    async fn read_attachment(&self, file: &Outgoing<'_>) -> Result<Vec<u8>> {
        if file.bytes > MAX_ATTACHMENT_BYTES {
            return Err(self.fail(format!(
                "{} has {} bytes, more than the {} MiB Ferry attaches (most mail servers refuse \
                 larger messages): send a link instead (link.s3, attach: false)",
                file.file_name,
                file.bytes,
                MAX_ATTACHMENT_BYTES / (1024 * 1024)
            )));
        }
        let data = tokio::fs::read(file.staged)
            .await
            .map_err(|e| Error::io(file.staged, e))?;
        let sha256 = hex::encode(Sha256::digest(&data));
        if data.len() as u64 != file.bytes || !sha256.eq_ignore_ascii_case(file.sha256) {
            return Err(self.fail(format!(
                "{} changed since it was staged ({} bytes, SHA-256 {sha256}; expected {} bytes, \
                 {})",
                file.staged.display(),
                data.len(),
                file.bytes,
                file.sha256
            )));
        }
        Ok(data)
    }

    /// `<ferry.<runId>.<id>@<sender's domain>>`, traceable to the run. `<id>` derives from the
    /// delivery's key (state lineage, namespace, schedule, slot, target): every attempt and resume of one
    /// delivery sends the same Message-ID, so a message that did go twice (a connection lost
    /// after the server took it) is recognisably one, and mail clients fold it. A file sent
    /// by hand gets a random one.
    fn message_id(&self, file: &Outgoing<'_>) -> Result<String> {
        let id = match file.delivery_key {
            Some(key) => hex::encode(&Sha256::digest(key.as_bytes())[..12]),
            None => {
                let mut random = [0u8; 12];
                getrandom::fill(&mut random)
                    .map_err(|e| self.fail(format!("no randomness for a Message-ID: {e}")))?;
                hex::encode(random)
            }
        };
        Ok(format!(
            "<ferry.{}.{id}@{}>",
            file.run_id,
            self.from.email.domain()
        ))
    }

    /// Sends an alert (a schedule's or mapping's `notify`): `subject` and a plain `body` to the
    /// target's recipients, with no report, link or attachment. Returns the server's answer.
    pub async fn send_alert(&self, subject: &str, body: String) -> Result<String> {
        let mut random = [0u8; 12];
        getrandom::fill(&mut random)
            .map_err(|e| self.fail(format!("no randomness for a Message-ID: {e}")))?;
        let message_id = format!(
            "<ferry.alert.{}@{}>",
            hex::encode(random),
            self.from.email.domain()
        );
        let message = self.build_message(subject, body, &message_id, None)?;
        let accepted = self
            .send(
                message.envelope(),
                &message.formatted(),
                &crate::deliver::CommitHook::default(),
                BTreeMap::new(),
            )
            .await
            .map_err(|m| self.fail(m))?;
        Ok(accepted.response)
    }

    fn build_message(
        &self,
        subject: &str,
        body: String,
        message_id: &str,
        attachment: Option<(&str, &str, Vec<u8>)>,
    ) -> Result<Message> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id.to_string()))
            .date_now()
            .header(AutoSubmitted);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let text = SinglePart::plain(body);
        let built = match attachment {
            None => builder.singlepart(text),
            Some((file_name, content_type, data)) => {
                let content_type = ContentType::parse(content_type)
                    .map_err(|e| self.fail(format!("content type `{content_type}`: {e}")))?;
                // Base64 keeps the bytes exact (a CSV's CRLF included) through any relay.
                let data = Body::new_with_encoding(data, ContentTransferEncoding::Base64)
                    .map_err(|_| self.fail("the attachment cannot be base64-encoded".into()))?;
                let part = Attachment::new(file_name.to_string()).body(data, content_type);
                builder.multipart(MultiPart::mixed().singlepart(text).singlepart(part))
            }
        };
        built.map_err(|e| self.fail(format!("building the message: {e}")))
    }
}

impl Transport for EmailTransport {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.deliver_file(file))
    }

    /// The SMTP relay up to AUTH, then QUIT: nothing is sent. With a link store, `probe` is
    /// uploaded, fetched through its presigned link and deleted.
    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let certificate = self.probe_session().await.map_err(|m| self.fail(m))?;
            let mut details = BTreeMap::new();
            if let Mode::Link(store) = &self.mode {
                let object = store.check(probe).await.map_err(|m| self.fail(m))?;
                details.insert("linkChecked".to_string(), object);
            }
            details.insert("smtpServer".to_string(), self.smtp.at());
            if let Some(fp) = certificate {
                details.insert("tlsCertificateSha256".to_string(), fp);
            }
            let recipients: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
            Ok(Receipt {
                location: mailto(&recipients),
                bytes: 0,
                sha256: probe.sha256.to_string(),
                details,
            })
        })
    }

    /// A mailbox cannot be asked whether a message arrived: after a crash once the message
    /// was handed over (DATA), the outcome is unknown and only `--resend` sends it again.
    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        Box::pin(async move {
            let message_id = self.message_id(file)?;
            Ok(Confirmation::Unknown(format!(
                "Ferry stopped while the SMTP server {} was taking the message {message_id}: \
                 it may have been delivered; not sent again (`--resend` sends it again)",
                self.smtp.at()
            )))
        })
    }
}

/// `mailto:a@x,b@y` (RFC 6068), addresses percent-encoded where needed.
pub fn mailto(addresses: &[String]) -> String {
    let mut out = String::from("mailto:");
    for (i, address) in addresses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for b in address.bytes() {
            if b.is_ascii_alphanumeric() || b"@.-_+!$'*=^`|~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// `ts` as RFC 3339 with the offset of `zone_of`'s time zone at that instant.
fn rfc3339_in(ts: &jiff::Timestamp, zone_of: &jiff::Zoned) -> String {
    let offset = zone_of.time_zone().to_offset(*ts);
    ts.display_with_offset(offset).to_string()
}

/// `Auto-Submitted: auto-generated` (RFC 3834): auto-responders do not answer report mails.
#[derive(Clone, Copy, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_s: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

impl TargetSpec for EmailTarget {
    fn check(&self, p: &mut Problems) {
        p.check("spec.email.smtp.host", check_host(&self.smtp.host));
        p.check(
            "spec.email.maxConnections",
            check_max_connections(self.max_connections),
        );
        if self.smtp.port == Some(0) {
            p.error("spec.email.smtp.port", PORT_ZERO);
        }
        if self.smtp.password_secret_ref.is_some() && self.smtp.username.is_none() {
            p.error("spec.email.smtp.username", "a password needs a username");
        }
        if self.smtp.username.is_some() && self.smtp.password_secret_ref.is_none() {
            p.error(
                "spec.email.smtp.passwordSecretRef",
                "AUTH needs a password: give passwordSecretRef, or remove username",
            );
        }
        if self.smtp.username.is_some() && self.smtp.tls == SmtpTls::None {
            p.error(
                "spec.email.smtp.tls",
                "AUTH over an unencrypted connection would send the password in clear: use tls: starttls or implicit, or remove username",
            );
        }
        p.check("spec.email.from", check_mailbox(&self.from));
        if self.to.is_empty() {
            p.error("spec.email.to", "list at least one recipient");
        }
        let mut seen = BTreeSet::new();
        for (i, to) in self.to.iter().enumerate() {
            let field = format!("spec.email.to[{i}]");
            p.check(&field, check_mailbox(to));
            if !seen.insert(to.to_ascii_lowercase()) {
                p.error(&field, format!("recipient `{to}` is listed twice"));
            }
        }
        let mut subject_tokens: Vec<&str> = filename::FILE_NAME_TOKENS.to_vec();
        subject_tokens.push("fileName");
        p.check(
            "spec.email.subject",
            filename::check_template(&self.subject, &subject_tokens),
        );
        let mut body_tokens = subject_tokens.clone();
        body_tokens.extend(["link", "expires", "rows"]);
        p.check(
            "spec.email.body",
            filename::check_template(&self.body, &body_tokens),
        );
        match (&self.link, self.attach) {
            // Alerts only; a schedule's deliverTo refuses it (crate::validate).
            (None, false) => {}
            (Some(link), _) => {
                p.check(
                    "spec.email.link.s3.endpoint",
                    check_http_url(&link.s3.endpoint),
                );
                p.non_empty("spec.email.link.s3.bucket", &link.s3.bucket);
                if link
                    .s3
                    .prefix
                    .split('/')
                    .any(|seg| seg == "." || seg == ".." || seg.chars().any(char::is_control))
                {
                    p.error(
                        "spec.email.link.s3.prefix",
                        "a key prefix cannot contain `.` or `..` segments or control characters",
                    );
                }
                match schedule::parse_duration(&link.expires_in) {
                    Err(m) => p.error("spec.email.link.expiresIn", m),
                    Ok(d) if d.is_zero() || d.as_secs() > 7 * 24 * 3600 => p.error(
                        "spec.email.link.expiresIn",
                        format!(
                            "`{}` is out of range: a presigned link lasts from 1s to 7d",
                            link.expires_in
                        ),
                    ),
                    Ok(_) => {}
                }
                if self.attach {
                    p.error(
                        "spec.email.attach",
                        "attach: true sends the file itself; remove link, or set attach: false",
                    );
                }
            }
            (None, true) => {}
        }
        if self.link.is_some() && !self.body.contains("{link}") && !self.attach {
            p.error(
                "spec.email.body",
                "the body must contain {link}, or recipients never see where the report is",
            );
        }
    }

    fn summary(&self) -> String {
        format!(
            "email to {} ({})",
            self.to.join(", "),
            match (&self.link, self.attach) {
                (_, true) => "attached",
                (Some(_), false) => "expiring link",
                (None, false) => "alerts only",
            }
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::Email(x), y) = (old, self) else {
            return;
        };
        super::spec::max_connections_notes(x.max_connections, y.max_connections, notes);
        let old: BTreeSet<String> = x.to.iter().map(|s| s.to_ascii_lowercase()).collect();
        let new: BTreeSet<String> = y.to.iter().map(|s| s.to_ascii_lowercase()).collect();
        for r in new.difference(&old) {
            notes.push(format!("new recipient {r}"));
        }
        for r in old.difference(&new) {
            notes.push(format!("recipient removed: {r}"));
        }
        if x.attach != y.attach {
            notes.push(if y.attach {
                "reports are attached instead of linked".into()
            } else {
                "reports are linked instead of attached".into()
            });
        }
        if x.from != y.from {
            notes.push(format!("sender {} -> {}", x.from, y.from));
        }
        if x.smtp.host != y.smtp.host
            || x.smtp.effective_port() != y.smtp.effective_port()
            || x.smtp.tls != y.smtp.tls
        {
            notes.push(format!(
                "SMTP server {}:{} ({:?}) -> {}:{} ({:?})",
                x.smtp.host,
                x.smtp.effective_port(),
                x.smtp.tls,
                y.smtp.host,
                y.smtp.effective_port(),
                y.smtp.tls
            ));
        }
        if let (Some(lx), Some(ly)) = (&x.link, &y.link) {
            if lx.expires_in != ly.expires_in {
                notes.push(format!(
                    "links expire after {} instead of {}",
                    ly.expires_in, lx.expires_in
                ));
            }
            if lx.s3.endpoint != ly.s3.endpoint || lx.s3.bucket != ly.s3.bucket {
                notes.push(format!(
                    "reports are stored in bucket {} at {} instead of {} at {}",
                    ly.s3.bucket, ly.s3.endpoint, lx.s3.bucket, lx.s3.endpoint
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type_for("r.csv"), "text/csv");
        assert_eq!(content_type_for("R.CSV"), "text/csv");
        assert_eq!(
            content_type_for("r_20260731.xlsx"),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        assert_eq!(content_type_for("r.pdf"), "application/pdf");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }

    #[test]
    fn mailto_lists_every_recipient_and_escapes_what_it_must() {
        assert_eq!(
            mailto(&["a@x.example".into(), "b c@y.example".into()]),
            "mailto:a@x.example,b%20c@y.example"
        );
    }

    #[test]
    fn expiry_is_written_with_the_slot_zones_offset() {
        let slot: jiff::Zoned = "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap();
        let ts: jiff::Timestamp = "2026-08-06T15:30:00Z".parse().unwrap();
        assert_eq!(rfc3339_in(&ts, &slot), "2026-08-07T00:30:00+09:00");
    }
}
