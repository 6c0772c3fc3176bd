//! Email delivery against real servers: the aiosmtpd capture server of
//! `scripts/test-servers/smtp.sh` (started once per test binary; plain + STARTTLS on one port,
//! implicit TLS on another, a private CA) and, for links, an in-process S3 server (s3s +
//! s3s-fs) that checks SigV4 signatures and expiry for real.
//!
//! Each test builds the transport directly, with its secrets in a temporary directory, and
//! delivers a staged file whose `about` has a real slot. Mails are found in the capture
//! folder by the Message-ID the receipt records.

use crate::common;

use std::path::PathBuf;
use std::sync::OnceLock;

use ferry::api::{EmailTarget, SecretRef};
use ferry::deliver::email::EmailTransport;
use ferry::deliver::{About, Outgoing, Receipt, Transport};
use ferry::secrets::FileSecrets;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::s3::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, start_s3};

const NS: &str = "shop";
/// The slot every test's file is for: 00:30 in Tokyo, still 30 July in UTC.
const SLOT: &str = "2026-07-31T00:30:00+09:00[Asia/Tokyo]";

// ---- the SMTP capture server -----------------------------------------------------------------

/// What `smtp.sh env` prints.
struct SmtpServer {
    port: u16,
    tls_port: u16,
    user: String,
    password: String,
    ca: PathBuf,
    mail_dir: PathBuf,
}

/// The capture server, started once per test binary. Fails loudly when it cannot start.
fn smtp() -> &'static SmtpServer {
    static SERVER: OnceLock<SmtpServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let env = common::test_server("smtp");
        let get = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("smtp.sh env printed no {k}"))
                .clone()
        };
        SmtpServer {
            port: get("SMTP_PORT").parse().expect("SMTP_PORT"),
            tls_port: get("SMTP_TLS_PORT").parse().expect("SMTP_TLS_PORT"),
            user: get("SMTP_USER"),
            password: get("SMTP_PASSWORD"),
            ca: get("SMTP_CA").into(),
            mail_dir: get("SMTP_MAIL_DIR").into(),
        }
    })
}

// ---- a test's world: secrets, a staged file, the transport -----------------------------------

/// One test's temporary directory: secrets under `secrets/`, the staged file under `staged/`.
struct World {
    dir: tempfile::TempDir,
    secrets: FileSecrets,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = FileSecrets::new(dir.path().join("secrets"));
        World { dir, secrets }
    }

    /// Stores a secret and returns its reference.
    fn secret(&self, name: &str, key: &str, value: &[u8]) -> Value {
        let r = SecretRef {
            name: name.to_string(),
            key: key.to_string(),
        };
        self.secrets.put(NS, &r, value).expect("write secret");
        json!({"name": name, "key": key})
    }

    fn stage(&self, file_name: &str, content: &[u8]) -> Staged {
        let dir = self.dir.path().join("staged");
        std::fs::create_dir_all(&dir).expect("staging dir");
        let path = dir.join(file_name);
        std::fs::write(&path, content).expect("stage the file");
        Staged {
            path,
            sha256: hex::encode(Sha256::digest(content)),
            bytes: content.len() as u64,
        }
    }

    fn transport(&self, target: &str, spec: Value) -> ferry::Result<EmailTransport> {
        let spec: EmailTarget = serde_json::from_value(spec).expect("a valid email target");
        EmailTransport::new(NS, target, &spec, &self.secrets)
    }
}

struct Staged {
    path: PathBuf,
    sha256: String,
    bytes: u64,
}

fn about(schedule: &str, rows: u64) -> About {
    About {
        namespace: NS.to_string(),
        schedule: schedule.to_string(),
        slot: SLOT.parse().expect("slot"),
        rows,
    }
}

async fn deliver(
    transport: &EmailTransport,
    staged: &Staged,
    file_name: &str,
    about: &About,
    run_id: i64,
) -> ferry::Result<Receipt> {
    let outgoing = Outgoing {
        staged: &staged.path,
        file_name,
        bytes: staged.bytes,
        sha256: &staged.sha256,
        run_id,
        about,
        sharing: ferry::deliver::Sharing::Several,
        delivery_key: None,
        stale_runs: &[],
        commit: Default::default(),
    };
    transport.deliver(&outgoing).await
}

/// An SMTP section for the capture server.
fn smtp_spec(world: &World, tls: &str, auth: bool, ca: bool) -> Value {
    let server = smtp();
    let mut spec = json!({
        "host": "127.0.0.1",
        "port": if tls == "implicit" { server.tls_port } else { server.port },
        "tls": tls,
    });
    if auth {
        spec["username"] = json!(server.user);
        spec["passwordSecretRef"] = world.secret(
            "smtp",
            "password",
            format!("{}\n", server.password).as_bytes(),
        );
    }
    if ca {
        let pem = std::fs::read(&server.ca).expect("read the test CA");
        spec["caSecretRef"] = world.secret("smtp", "ca.pem", &pem);
    }
    spec
}

/// A `link.s3` section for the in-process server.
fn link_spec(world: &World, s3: &S3Server, expires_in: &str) -> Value {
    json!({
        "s3": {
            "endpoint": s3.endpoint,
            "region": "us-east-1",
            "bucket": BUCKET,
            "prefix": "partner/",
            "accessKeyIdSecretRef": world.secret("s3", "access-key-id", S3_ACCESS_KEY.as_bytes()),
            "secretAccessKeySecretRef": world.secret("s3", "secret-access-key", S3_SECRET_KEY.as_bytes()),
        },
        "expiresIn": expires_in,
    })
}

// ---- reading captured mail -------------------------------------------------------------------

/// A MIME entity: unfolded headers and the raw body.
#[derive(Debug)]
struct Part {
    headers: Vec<(String, String)>,
    body: String,
}

impl Part {
    fn parse(text: &str) -> Part {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Part {
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with its Content-Transfer-Encoding undone.
    fn decoded(&self) -> Vec<u8> {
        match self
            .header("Content-Transfer-Encoding")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("base64") => base64_decode(&self.body),
            Some("quoted-printable") => quoted_printable_decode(&self.body),
            _ => self.body.replace('\n', "\r\n").into_bytes(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.decoded()).expect("a UTF-8 text part")
    }

    /// The parts of a multipart entity.
    fn parts(&self) -> Vec<Part> {
        let content_type = self.header("Content-Type").expect("a Content-Type");
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .expect("a multipart boundary")
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        self.body
            .split(&delimiter)
            .skip(1)
            .take_while(|chunk| !chunk.starts_with("--"))
            .map(|chunk| Part::parse(chunk.trim_start_matches('\n')))
            .collect()
    }
}

/// A captured message and the server's record of its envelope.
#[derive(Debug)]
struct Captured {
    mail: Part,
    raw: String,
    envelope: Value,
}

/// The captured mail with this Message-ID (written before the server answered DATA).
fn captured(message_id: &str) -> Captured {
    let dir = &smtp().mail_dir;
    for entry in std::fs::read_dir(dir).expect("read the mail folder") {
        let path = entry.expect("mail folder entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let raw = std::fs::read_to_string(&path).expect("read a captured mail");
        let mail = Part::parse(&raw);
        if mail.header("Message-ID") == Some(message_id) {
            let json = std::fs::read_to_string(path.with_extension("json"))
                .expect("the envelope JSON next to the mail");
            return Captured {
                mail,
                raw,
                envelope: serde_json::from_str(&json).expect("envelope JSON"),
            };
        }
    }
    panic!(
        "no captured mail with Message-ID {message_id} in {}",
        dir.display()
    );
}

/// Whether any captured mail mentions `needle` (e.g. a test's unique schedule name).
fn any_mail_mentions(needle: &str) -> bool {
    std::fs::read_dir(&smtp().mail_dir)
        .expect("read the mail folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("eml"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|s| s.contains(needle))
                .unwrap_or(false)
        })
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let text = text.replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("QP escape");
            out.push(u8::from_str_radix(hex, 16).expect("QP hex"));
            i += 3;
        } else if bytes[i] == b'\n' {
            out.extend_from_slice(b"\r\n");
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The first `http://` URL in `text`.
fn find_link(text: &str) -> String {
    let start = text.find("http://").expect("a link in the body");
    text[start..]
        .split_whitespace()
        .next()
        .expect("a link")
        .to_string()
}

fn http_client() -> reqwest::Client {
    ferry::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// Asserts that nothing in the receipt leaks a secret or the link.
#[track_caller]
fn assert_receipt_is_clean(receipt: &Receipt, forbidden: &[&str]) {
    let text = serde_json::to_string(receipt).expect("receipt JSON");
    for f in forbidden {
        assert!(!text.contains(f), "the receipt contains `{f}`: {text}");
    }
    assert!(
        !text.contains("X-Amz-Signature"),
        "the receipt holds a link: {text}"
    );
    assert!(
        !text.contains("X-Amz-Credential"),
        "the receipt holds a link: {text}"
    );
}

const CSV: &[u8] = b"id,name,amount\r\n1,Alice,10.50\r\n2,\"Bob, Jr.\",7\r\n";

// ---- SMTP ------------------------------------------------------------------------------------

#[tokio::test]
async fn starttls_with_auth_delivers_to_several_recipients_with_the_tokens_rendered() {
    let world = World::new();
    let staged = world.stage("orders_20260731.csv", CSV);
    let transport = world
        .transport(
            "mail-starttls",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "Ferry Reports <reports@ferry.example>",
                "to": ["alice@customer.example", "Bob <bob@customer.example>", "carol@other.example"],
                "subject": "{schedule} {yyyy}-{MM}-{dd}: {fileName} {{literal}}",
                "body": "Report {fileName} for {yyyyMMdd} {HH}:{mm} ({rows} rows) from {namespace}/{schedule}: {link}, expires {expires}.",
                "attach": true,
            }),
        )
        .expect("transport");
    let about = about("starttls-daily", 2);
    let receipt = deliver(&transport, &staged, "orders_20260731.csv", &about, 101)
        .await
        .expect("delivered");

    let message_id = &receipt.details["messageId"];
    assert!(message_id.starts_with("<ferry.101.") && message_id.ends_with("@ferry.example>"));
    let got = captured(message_id);
    assert_eq!(
        got.mail.header("Subject"),
        Some("starttls-daily 2026-07-31: orders_20260731.csv {literal}")
    );
    assert_eq!(got.mail.header("Auto-Submitted"), Some("auto-generated"));
    let text = got.mail.parts()[0].text();
    assert_eq!(
        text.trim_end(),
        "Report orders_20260731.csv for 20260731 00:30 (2 rows) from shop/starttls-daily: \
         attached to this email, expires never."
    );
    assert_eq!(got.envelope["auth_user"], json!(smtp().user));
    assert_eq!(got.envelope["tls"], json!(true));
    assert_eq!(got.envelope["port"], json!(smtp().port));
    assert_eq!(got.envelope["mail_from"], json!("reports@ferry.example"));
    assert_eq!(
        got.envelope["rcpt_tos"],
        json!([
            "alice@customer.example",
            "bob@customer.example",
            "carol@other.example"
        ])
    );

    assert_eq!(
        receipt.location,
        "mailto:alice@customer.example,bob@customer.example,carol@other.example"
    );
    assert_eq!(
        receipt.details["recipients"],
        "alice@customer.example,bob@customer.example,carol@other.example"
    );
    assert_eq!(receipt.bytes, CSV.len() as u64);
    assert_eq!(receipt.sha256, staged.sha256);
    assert_eq!(receipt.details["smtpTls"], "starttls");
    assert!(
        receipt.details["smtpResponse"].starts_with("250 ")
            && receipt.details["smtpResponse"].contains("queued as"),
        "{:?}",
        receipt.details
    );
    let fingerprint = &receipt.details["tlsCertificateSha256"];
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert_receipt_is_clean(&receipt, &[&smtp().password]);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let world = World::new();
    let staged = world.stage("implicit.csv", CSV);
    let transport = world
        .transport(
            "mail-implicit",
            json!({
                "smtp": smtp_spec(&world, "implicit", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "attach": true,
            }),
        )
        .expect("transport");
    let receipt = deliver(
        &transport,
        &staged,
        "implicit.csv",
        &about("implicit-daily", 2),
        102,
    )
    .await
    .expect("delivered over implicit TLS");
    let got = captured(&receipt.details["messageId"]);
    assert_eq!(got.envelope["tls"], json!(true));
    assert_eq!(got.envelope["auth_user"], json!(smtp().user));
    assert_eq!(got.envelope["port"], json!(smtp().tls_port));
    assert_eq!(receipt.details["smtpTls"], "implicit");
    assert!(receipt.details.contains_key("tlsCertificateSha256"));
}

#[tokio::test]
async fn plain_smtp_without_auth_delivers() {
    let world = World::new();
    let staged = world.stage("plain.csv", CSV);
    let transport = world
        .transport(
            "mail-plain",
            json!({
                "smtp": smtp_spec(&world, "none", false, false),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "attach": true,
            }),
        )
        .expect("transport");
    let receipt = deliver(
        &transport,
        &staged,
        "plain.csv",
        &about("plain-daily", 2),
        103,
    )
    .await
    .expect("delivered over plain SMTP");
    let got = captured(&receipt.details["messageId"]);
    assert_eq!(got.envelope["tls"], json!(false));
    assert_eq!(got.envelope["auth_user"], Value::Null);
    assert_eq!(receipt.details["smtpTls"], "none");
    assert!(!receipt.details.contains_key("tlsCertificateSha256"));
}

#[tokio::test]
async fn a_password_is_never_sent_over_an_unencrypted_connection() {
    let world = World::new();
    let err = world
        .transport(
            "mail-plain-auth",
            json!({
                "smtp": smtp_spec(&world, "none", true, false),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "attach": true,
            }),
        )
        .err()
        .expect("AUTH over tls: none is refused")
        .to_string();
    assert!(
        err.contains("mail-plain-auth") && err.contains("tls: none"),
        "{err}"
    );
    assert!(!err.contains(&smtp().password), "{err}");
}

#[tokio::test]
async fn the_servers_certificate_is_refused_without_ca_secret_ref() {
    for tls in ["starttls", "implicit"] {
        let world = World::new();
        let staged = world.stage("untrusted.csv", CSV);
        let transport = world
            .transport(
                "mail-untrusted",
                json!({
                    "smtp": smtp_spec(&world, tls, true, false),
                    "from": "reports@ferry.example",
                    "to": ["ops@customer.example"],
                    "subject": "untrusted-{schedule}",
                    "attach": true,
                }),
            )
            .expect("transport");
        let schedule = format!("untrusted-{tls}");
        let err = deliver(
            &transport,
            &staged,
            "untrusted.csv",
            &about(&schedule, 2),
            104,
        )
        .await
        .expect_err("an untrusted certificate is refused")
        .to_string();
        assert!(
            err.starts_with(
                "delivery to mail-untrusted: TLS handshake with SMTP server 127.0.0.1:"
            ),
            "{tls}: {err}"
        );
        assert!(err.contains("caSecretRef"), "{tls}: {err}");
        assert!(!err.contains(&smtp().password), "{tls}: {err}");
        assert!(
            !any_mail_mentions(&format!("untrusted-{schedule}")),
            "{tls}: a mail got through"
        );
    }
}

#[tokio::test]
async fn a_wrong_smtp_password_is_refused_without_revealing_it() {
    let world = World::new();
    let staged = world.stage("wrong.csv", CSV);
    let mut smtp_section = smtp_spec(&world, "starttls", true, true);
    let wrong = "not-the-Password-9931";
    smtp_section["passwordSecretRef"] = world.secret("smtp-wrong", "password", wrong.as_bytes());
    let transport = world
        .transport(
            "mail-wrong-password",
            json!({
                "smtp": smtp_section,
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "wrong-password {fileName}",
                "attach": true,
            }),
        )
        .expect("transport");
    let err = deliver(
        &transport,
        &staged,
        "wrong.csv",
        &about("wrong-password", 2),
        105,
    )
    .await
    .expect_err("a wrong password is refused")
    .to_string();
    assert!(
        err.contains(&format!("SMTP AUTH as `{}` at 127.0.0.1:", smtp().user))
            && err.contains("535"),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");
    assert!(!err.contains(&smtp().password), "{err}");
}

#[tokio::test]
async fn a_rejected_recipient_is_named_and_nobody_gets_the_mail() {
    let world = World::new();
    let staged = world.stage("rejected.csv", CSV);
    let transport = world
        .transport(
            "mail-rejected",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "reports@ferry.example",
                "to": ["ok@customer.example", "rejected@customer.example"],
                "subject": "{schedule}",
                "attach": true,
            }),
        )
        .expect("transport");
    let err = deliver(
        &transport,
        &staged,
        "rejected.csv",
        &about("rejected-recipient-daily", 2),
        106,
    )
    .await
    .expect_err("the recipient is rejected")
    .to_string();
    assert!(
        err.contains("refused recipient rejected@customer.example"),
        "{err}"
    );
    assert!(err.contains("550"), "{err}");
    assert!(
        !any_mail_mentions("rejected-recipient-daily"),
        "a partial mail was sent"
    );
}

// ---- attach mode -----------------------------------------------------------------------------

#[tokio::test]
async fn attach_mode_attaches_the_exact_bytes_with_the_right_content_type() {
    let world = World::new();
    // Bytes that a text transfer encoding could alter: CRLF, a bare LF, NUL, high bytes.
    let mut binary = b"PK\x03\x04\x00\x00\r\n\n\xff\xfe".to_vec();
    binary.extend((0..=255u8).cycle().take(70_000));
    for (file_name, content, content_type) in [
        ("orders.csv", CSV.to_vec(), "text/csv"),
        (
            "orders.xlsx",
            binary.clone(),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (
            "orders.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec(),
            "application/pdf",
        ),
    ] {
        let staged = world.stage(file_name, &content);
        let transport = world
            .transport(
                "mail-attach",
                json!({
                    "smtp": smtp_spec(&world, "starttls", true, true),
                    "from": "reports@ferry.example",
                    "to": ["ops@customer.example"],
                    "subject": "{fileName}",
                    "attach": true,
                }),
            )
            .expect("transport");
        let receipt = deliver(
            &transport,
            &staged,
            file_name,
            &about("attach-daily", 7),
            107,
        )
        .await
        .expect("delivered");
        assert_eq!(receipt.details["attached"], "true");
        assert!(!receipt.details.contains_key("object"));
        let got = captured(&receipt.details["messageId"]);
        let parts = got.mail.parts();
        assert_eq!(parts.len(), 2, "{}", got.raw);
        let attachment = &parts[1];
        assert_eq!(attachment.header("Content-Type"), Some(content_type));
        assert_eq!(
            attachment.header("Content-Disposition"),
            Some(format!("attachment; filename=\"{file_name}\"").as_str())
        );
        assert_eq!(attachment.decoded(), content, "{file_name}");
    }
}

// ---- link mode -------------------------------------------------------------------------------

#[tokio::test]
async fn link_mode_mails_a_link_that_returns_the_file_and_refuses_tampering() {
    let s3 = start_s3().await;
    let world = World::new();
    let staged = world.stage("orders_20260731.csv", CSV);
    let transport = world
        .transport(
            "mail-link",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example", "cfo@customer.example"],
                "subject": "{fileName} is ready {link}",
                "body": "Download {fileName} ({rows} rows): {link}\nThe link expires {expires}.",
                "link": link_spec(&world, &s3, "7d"),
            }),
        )
        .expect("transport");
    let about = about("link-daily", 2);
    let before = jiff::Timestamp::now();
    let receipt = deliver(&transport, &staged, "orders_20260731.csv", &about, 201)
        .await
        .expect("delivered");

    assert_eq!(
        receipt.details["object"],
        "s3://reports/partner/shop/link-daily/201/orders_20260731.csv"
    );
    assert_eq!(receipt.details["objectReused"], "false");
    assert_eq!(receipt.bytes, CSV.len() as u64);
    let expires: jiff::Timestamp = receipt.details["linkExpires"].parse().expect("RFC 3339");
    assert!(
        receipt.details["linkExpires"].ends_with("+09:00"),
        "{:?}",
        receipt.details
    );
    let week = jiff::SignedDuration::from_hours(7 * 24);
    assert!(expires >= before + week - jiff::SignedDuration::from_secs(1));
    assert!(expires <= jiff::Timestamp::now() + week);

    let got = captured(&receipt.details["messageId"]);
    // The link never goes into the subject: the token stays as written.
    assert_eq!(
        got.mail.header("Subject"),
        Some("orders_20260731.csv is ready {link}")
    );
    let body = got.mail.text();
    let link = find_link(&body);
    assert!(link.starts_with(&format!(
        "{}/reports/partner/shop/link-daily/201/orders_20260731.csv?",
        s3.endpoint
    )));
    assert!(
        body.contains(&format!(
            "The link expires {}.",
            receipt.details["linkExpires"]
        )),
        "{body}"
    );
    assert!(
        body.starts_with("Download orders_20260731.csv (2 rows): http://"),
        "{body}"
    );
    assert_receipt_is_clean(
        &receipt,
        &[&link, S3_ACCESS_KEY, S3_SECRET_KEY, &smtp().password],
    );

    let http = http_client();
    let response = http.get(&link).send().await.expect("GET the link");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/csv"[..])
    );
    assert_eq!(response.bytes().await.expect("link body").as_ref(), CSV);

    // A tampered signature.
    let at = link.find("X-Amz-Signature=").expect("a signature") + "X-Amz-Signature=".len();
    let mut forged = link.clone();
    let c = if &link[at..at + 1] == "0" { "1" } else { "0" };
    forged.replace_range(at..at + 1, c);
    let status = http.get(&forged).send().await.expect("GET").status();
    assert!(status.is_client_error(), "tampered signature: {status}");

    // The same signature on another key.
    let other = link.replace("/201/orders_20260731.csv?", "/201/other.csv?");
    assert_ne!(other, link);
    let status = http.get(&other).send().await.expect("GET").status();
    assert!(status.is_client_error(), "tampered key: {status}");
}

#[tokio::test]
async fn a_file_name_with_spaces_hash_and_japanese_gets_a_readable_key_and_a_working_link() {
    let s3 = start_s3().await;
    let world = World::new();
    let file_name = "売上 #1 (7月).csv";
    let staged = world.stage("sales.csv", CSV);
    let transport = world
        .transport(
            "mail-unicode",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "レポート <reports@ferry.example>",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "body": "{fileName}: {link}",
                "link": link_spec(&world, &s3, "1h"),
            }),
        )
        .expect("transport");
    let receipt = deliver(
        &transport,
        &staged,
        file_name,
        &about("unicode-daily", 2),
        207,
    )
    .await
    .expect("delivered");
    assert_eq!(
        receipt.details["object"],
        format!("s3://reports/partner/shop/unicode-daily/207/{file_name}")
    );
    let got = captured(&receipt.details["messageId"]);
    let body = got.mail.text();
    assert!(body.starts_with(&format!("{file_name}: http://")), "{body}");
    let link = find_link(&body);
    let response = http_client().get(&link).send().await.expect("GET");
    assert_eq!(response.status(), 200, "{link}");
    assert_eq!(response.bytes().await.expect("body").as_ref(), CSV);
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let s3 = start_s3().await;
    let world = World::new();
    let staged = world.stage("short.csv", CSV);
    let transport = world
        .transport(
            "mail-short-link",
            json!({
                "smtp": smtp_spec(&world, "implicit", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "link": link_spec(&world, &s3, "4s"),
            }),
        )
        .expect("transport");
    let receipt = deliver(
        &transport,
        &staged,
        "short.csv",
        &about("short-link", 2),
        202,
    )
    .await
    .expect("delivered");
    let expires: jiff::Timestamp = receipt.details["linkExpires"].parse().expect("RFC 3339");
    let link = find_link(&captured(&receipt.details["messageId"]).mail.text());
    let http = http_client();
    // Before the expiry the link works (on a machine too loaded to get here within the 4s,
    // the link test above covers this with a 7-day link).
    if jiff::Timestamp::now() < expires - jiff::SignedDuration::from_secs(1) {
        let status = http.get(&link).send().await.expect("GET").status();
        assert_eq!(status, 200, "the link works before it expires");
    }
    // The stated expiry is at most a second before the signed one.
    let wait =
        (expires + jiff::SignedDuration::from_millis(1500)).duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let status = http.get(&link).send().await.expect("GET").status();
    assert_eq!(status, 403, "an expired link is refused");
}

#[tokio::test]
async fn a_retry_after_a_failed_mail_reuses_the_uploaded_object() {
    let s3 = start_s3().await;
    let world = World::new();
    let staged = world.stage("retry.csv", CSV);
    let spec = |to: &str| {
        json!({
            "smtp": smtp_spec(&world, "starttls", true, true),
            "from": "reports@ferry.example",
            "to": [to],
            "subject": "{fileName}",
            "link": link_spec(&world, &s3, "1h"),
        })
    };
    let about = about("retry-daily", 2);
    let failing = world
        .transport("mail-retry", spec("rejected@customer.example"))
        .expect("transport");
    let err = deliver(&failing, &staged, "retry.csv", &about, 203)
        .await
        .expect_err("the mail fails after the upload");
    assert!(err.to_string().contains("refused recipient"), "{err}");

    let working = world
        .transport("mail-retry", spec("ops@customer.example"))
        .expect("transport");
    let receipt = deliver(&working, &staged, "retry.csv", &about, 203)
        .await
        .expect("the retry delivers");
    assert_eq!(receipt.details["objectReused"], "true");
    let link = find_link(&captured(&receipt.details["messageId"]).mail.text());
    let body = http_client()
        .get(&link)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.as_ref(), CSV);

    // Another run of the same slot gets its own object.
    let receipt = deliver(&working, &staged, "retry.csv", &about, 204)
        .await
        .expect("a second run delivers");
    assert_eq!(receipt.details["objectReused"], "false");
    assert_eq!(
        receipt.details["object"],
        "s3://reports/partner/shop/retry-daily/204/retry.csv"
    );
}

#[tokio::test]
async fn a_large_file_is_uploaded_in_parts_and_the_link_returns_every_byte() {
    let s3 = start_s3().await;
    let world = World::new();
    // 19 MiB + a bit: three parts, the last one short.
    let mut content = Vec::with_capacity(19 * 1024 * 1024 + 12345);
    let mut x: u32 = 0x1234_5678;
    while content.len() < 19 * 1024 * 1024 + 12345 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        content.extend_from_slice(&x.to_le_bytes());
    }
    content.truncate(19 * 1024 * 1024 + 12345);
    let staged = world.stage("big.csv", &content);
    let transport = world
        .transport(
            "mail-big",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "link": link_spec(&world, &s3, "1d"),
            }),
        )
        .expect("transport");
    let receipt = deliver(&transport, &staged, "big.csv", &about("big-daily", 1), 205)
        .await
        .expect("delivered");
    assert_eq!(receipt.bytes, content.len() as u64);
    let link = find_link(&captured(&receipt.details["messageId"]).mail.text());
    let body = http_client()
        .get(&link)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), content.len());
    assert_eq!(hex::encode(Sha256::digest(&body)), staged.sha256);
}

#[tokio::test]
async fn a_wrong_s3_secret_fails_the_upload_without_revealing_it() {
    let s3 = start_s3().await;
    let world = World::new();
    let staged = world.stage("denied.csv", CSV);
    let mut link = link_spec(&world, &s3, "1h");
    let wrong = "wrong-secret-key-for-the-test-7777";
    link["s3"]["secretAccessKeySecretRef"] = world.secret("s3-wrong", "secret", wrong.as_bytes());
    let transport = world
        .transport(
            "mail-denied",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{schedule}",
                "link": link,
            }),
        )
        .expect("transport");
    let err = deliver(
        &transport,
        &staged,
        "denied.csv",
        &about("s3-denied-daily", 2),
        206,
    )
    .await
    .expect_err("the upload is refused")
    .to_string();
    assert!(
        err.starts_with("delivery to mail-denied: S3 upload of s3://reports/partner/shop/s3-denied-daily/206/denied.csv failed"),
        "{err}"
    );
    assert!(
        !err.contains(wrong) && !err.contains(S3_ACCESS_KEY),
        "{err}"
    );
    assert!(
        !any_mail_mentions("s3-denied-daily"),
        "a mail went out without a file"
    );
}

#[tokio::test]
async fn a_link_lifetime_beyond_seven_days_is_refused() {
    let s3 = start_s3().await;
    let world = World::new();
    let err = world
        .transport(
            "mail-8d",
            json!({
                "smtp": smtp_spec(&world, "starttls", false, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{fileName}",
                "link": link_spec(&world, &s3, "8d"),
            }),
        )
        .err()
        .expect("8d is refused")
        .to_string();
    assert!(err.contains("expiresIn `8d` is out of range"), "{err}");
}

#[tokio::test]
async fn a_file_sent_by_hand_is_named_as_such_not_after_its_file() {
    let s3 = start_s3().await;
    let world = World::new();
    let staged = world.stage("handmade.csv", CSV);
    let transport = world
        .transport(
            "mail-by-hand",
            json!({
                "smtp": smtp_spec(&world, "starttls", true, true),
                "from": "reports@ferry.example",
                "to": ["ops@customer.example"],
                "subject": "{schedule}: {fileName}",
                "body": "{fileName} from {schedule}: {link}",
                "link": link_spec(&world, &s3, "1d"),
            }),
        )
        .expect("transport");
    // What `ferry deliver` describes its file with.
    let about = About::by_hand(NS, SLOT.parse().expect("slot"));
    let receipt = deliver(&transport, &staged, "handmade.csv", &about, 301)
        .await
        .expect("delivered");
    assert_eq!(
        receipt.details["object"], "s3://reports/partner/shop/_deliver/301/handmade.csv",
        "a segment no schedule's name can take"
    );
    let got = captured(&receipt.details["messageId"]);
    assert_eq!(
        got.mail.header("Subject"),
        Some("ferry deliver: handmade.csv")
    );
}
