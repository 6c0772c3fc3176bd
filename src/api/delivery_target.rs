//! `DeliveryTarget`: where reports go (FTP/FTPS, SFTP, email, a local directory, Ferry's own
//! hosted SFTP) and the PSA connections CustomerMappings sync through.
// Repeated `printcolumn(type_ = ...)` arguments of the kube derive are not duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Schedule, SecretRef, default_time_zone, default_true};
use super::report_schedule::SqlSource;

/// A place reports are delivered to, or a PSA connection. Exactly one key is set.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "DeliveryTarget",
    plural = "deliverytargets",
    shortname = "dt",
    namespaced,
    status = "DeliveryTargetStatus",
    derive = "PartialEq",
    doc = "A delivery destination (FTP/FTPS, SFTP, email, local directory, hosted SFTP, object store) or a PSA connection (ConnectWise Manage, Autotask).",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    // `-o wide`: where it points (each variant has one of these fields: ftp/sftp `host`, email
    // `smtp.host` (and its link's `bucket`), localDir `path`, hostedSftp `user`, objectStore
    // `bucket` or `container`, connectwise `site` or `baseUrl`, autotask
    // `zoneDiscoveryUrl`). JSONPath cannot print the variant's key itself.
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec..['host','path','user','bucket','container','site','baseUrl','zoneDiscoveryUrl']",
        priority = 1
    ),
    printcolumn(
        name = "PasswordSecret",
        type_ = "string",
        json_path = ".status.passwordSecretName",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct DeliveryTargetSpec {
    /// An FTP server, plain or FTPS (explicit AUTH TLS on port 21, implicit TLS on port 990).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<FtpTarget>,
    /// An SFTP server, with key or password authentication and a pinned host key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<SftpTarget>,
    /// Email recipients, receiving an expiring link to the report (or the file attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTarget>,
    /// A directory on the machine running Ferry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_dir: Option<LocalDirTarget>,
    /// A connection on Ferry's own SFTP server, where a partner logs in to fetch reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_sftp: Option<HostedSftpTarget>,
    /// A bucket of an object store: Amazon S3 or S3-compatible, Google Cloud Storage, Azure
    /// Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreTarget>,
    /// An HTTPS endpoint told of runs and syncs that fail, recover or succeed (a schedule's or
    /// mapping's `notify`): Slack, Microsoft Teams or anything that takes a JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
    /// A ConnectWise Manage (PSA) connection, referenced by CustomerMappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectwise: Option<ConnectWiseTarget>,
    /// An Autotask (PSA) connection, referenced by CustomerMappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autotask: Option<AutotaskTarget>,
}

/// Which variant a DeliveryTarget is, borrowed from its spec.
#[derive(Clone, Copy, Debug)]
pub enum TargetKind<'a> {
    /// See [`DeliveryTargetSpec::ftp`].
    Ftp(&'a FtpTarget),
    /// See [`DeliveryTargetSpec::sftp`].
    Sftp(&'a SftpTarget),
    /// See [`DeliveryTargetSpec::email`].
    Email(&'a EmailTarget),
    /// See [`DeliveryTargetSpec::local_dir`].
    LocalDir(&'a LocalDirTarget),
    /// See [`DeliveryTargetSpec::hosted_sftp`].
    HostedSftp(&'a HostedSftpTarget),
    /// See [`DeliveryTargetSpec::object_store`].
    ObjectStore(&'a ObjectStoreTarget),
    /// See [`DeliveryTargetSpec::webhook`].
    Webhook(&'a WebhookTarget),
    /// See [`DeliveryTargetSpec::connectwise`].
    ConnectWise(&'a ConnectWiseTarget),
    /// See [`DeliveryTargetSpec::autotask`].
    Autotask(&'a AutotaskTarget),
}

impl TargetKind<'_> {
    /// Every variant's spec key, in the order messages list them.
    pub const KEYS: [&'static str; 9] = [
        "ftp",
        "sftp",
        "email",
        "localDir",
        "hostedSftp",
        "objectStore",
        "webhook",
        "connectwise",
        "autotask",
    ];

    /// The spec key of this variant, as written in YAML.
    pub fn key(&self) -> &'static str {
        match self {
            TargetKind::Ftp(_) => "ftp",
            TargetKind::Sftp(_) => "sftp",
            TargetKind::Email(_) => "email",
            TargetKind::LocalDir(_) => "localDir",
            TargetKind::HostedSftp(_) => "hostedSftp",
            TargetKind::ObjectStore(_) => "objectStore",
            TargetKind::Webhook(_) => "webhook",
            TargetKind::ConnectWise(_) => "connectwise",
            TargetKind::Autotask(_) => "autotask",
        }
    }

    /// PSA connections are referenced by CustomerMappings; they receive report files only for
    /// a schedule labelled with a mapped customer (see [`PsaReports`]).
    pub fn is_psa(&self) -> bool {
        matches!(self, TargetKind::ConnectWise(_) | TargetKind::Autotask(_))
    }

    /// How many deliveries to this target may run at once ([`DEFAULT_MAX_CONNECTIONS`] for
    /// a server that counts logins); `None`: no limit (a directory on this machine, a hosted
    /// connection, a PSA API with its own rate limits).
    pub fn max_connections(&self) -> Option<u32> {
        let set = match self {
            TargetKind::Ftp(t) => t.max_connections,
            TargetKind::Sftp(t) => t.max_connections,
            TargetKind::Email(t) => t.max_connections,
            TargetKind::ObjectStore(t) => t.max_connections,
            _ => return None,
        };
        Some(set.unwrap_or(DEFAULT_MAX_CONNECTIONS))
    }
}

/// `maxConnections` when not given.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// The largest `maxConnections`.
pub const MAX_MAX_CONNECTIONS: u32 = 256;

impl DeliveryTargetSpec {
    /// Every variant that is set, in declaration order. A valid spec has exactly one.
    pub fn kinds(&self) -> Vec<TargetKind<'_>> {
        let mut kinds = Vec::with_capacity(1);
        if let Some(t) = &self.ftp {
            kinds.push(TargetKind::Ftp(t));
        }
        if let Some(t) = &self.sftp {
            kinds.push(TargetKind::Sftp(t));
        }
        if let Some(t) = &self.email {
            kinds.push(TargetKind::Email(t));
        }
        if let Some(t) = &self.local_dir {
            kinds.push(TargetKind::LocalDir(t));
        }
        if let Some(t) = &self.hosted_sftp {
            kinds.push(TargetKind::HostedSftp(t));
        }
        if let Some(t) = &self.object_store {
            kinds.push(TargetKind::ObjectStore(t));
        }
        if let Some(t) = &self.webhook {
            kinds.push(TargetKind::Webhook(t));
        }
        if let Some(t) = &self.connectwise {
            kinds.push(TargetKind::ConnectWise(t));
        }
        if let Some(t) = &self.autotask {
            kinds.push(TargetKind::Autotask(t));
        }
        kinds
    }

    /// The single variant of a validated spec.
    pub fn kind(&self) -> Option<TargetKind<'_>> {
        let kinds = self.kinds();
        if kinds.len() == 1 {
            Some(kinds[0])
        } else {
            None
        }
    }
}

/// FTP transport security.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FtpTls {
    /// Plain FTP: credentials and data travel unencrypted.
    None,
    /// Explicit FTPS: the client upgrades with `AUTH TLS`, usually on port 21 (default).
    #[default]
    Explicit,
    /// Implicit FTPS: TLS from the first byte, usually on port 990.
    Implicit,
}

/// How a target is tried by a check (`ferry check`, the periodic checks).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TargetCheck {
    /// Deliver an empty probe file exactly as a report, then remove it.
    #[default]
    Probe,
    /// Only list the directory.
    List,
}

impl TargetCheck {
    /// Whether this is the default, [`TargetCheck::Probe`].
    pub fn is_default(&self) -> bool {
        *self == TargetCheck::Probe
    }
}

/// How a file is named on a server while it is being written (rclone's `--partial-suffix`
/// and `--inplace`). Every mode but `none` renames the complete file to its final name, so a
/// consumer never sees a part of it there.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PartialNaming {
    /// `.<file>.ferry-partial-<run id>` beside the final file: hidden (the default).
    #[default]
    Hidden,
    /// `<file>.ferry-partial-<run id>` beside the final file, for servers that refuse names
    /// starting with a dot.
    Suffix,
    /// `ferry-partial/<file>.ferry-partial-<run id>`: a staging directory inside the target
    /// directory (created when missing), for consumers that pick up every file they see.
    Directory,
    /// The final name from the first byte, for servers that cannot rename: a consumer may
    /// see a partial file, and a failed upload's remains are deleted.
    #[serde(rename = "none")]
    InPlace,
}

impl PartialNaming {
    /// Whether this is the default (left out of stored specs, so plans stay as they were).
    pub fn is_default(&self) -> bool {
        *self == PartialNaming::Hidden
    }

    /// The word the resource files use.
    pub fn key(&self) -> &'static str {
        match self {
            PartialNaming::Hidden => "hidden",
            PartialNaming::Suffix => "suffix",
            PartialNaming::Directory => "directory",
            PartialNaming::InPlace => "none",
        }
    }
}

/// An FTP or FTPS server. Passive mode; uploads go to a temporary name and are renamed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FtpTarget {
    /// Host name or IP address.
    pub host: String,
    /// Control port. Default: 21, or 990 when `tls: implicit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `none`, `explicit` (default) or `implicit`.
    #[serde(default)]
    pub tls: FtpTls,
    /// Remote directory the reports are placed in, e.g. `/impact/reports/`.
    #[serde(default = "default_remote_dir")]
    pub directory: String,
    /// Login user.
    pub username: String,
    /// The login password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
    /// A PEM CA certificate trusted in addition to the system roots (e.g. for a self-signed
    /// server certificate). Certificates are always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// The name a file has while it is uploaded, before the rename to its final name:
    /// `hidden` (default: `.<file>.ferry-partial-<run id>`), `suffix`
    /// (`<file>.ferry-partial-<run id>`, for servers that refuse names starting with a dot),
    /// `directory` (`ferry-partial/<file>.ferry-partial-<run id>`, a staging subdirectory) or
    /// `none` (the final name from the first byte, for servers that cannot rename: a
    /// consumer may see a partial file).
    #[serde(default, skip_serializing_if = "PartialNaming::is_default")]
    pub partial: PartialNaming,
    /// How `ferry check` and the periodic checks try this target: `probe` (the default: an
    /// empty `.ferry-check-<n>` file delivered like a report, then removed) or `list` (the
    /// directory only listed, for a server whose consumers take every file that appears).
    #[serde(default, skip_serializing_if = "TargetCheck::is_default")]
    pub check: TargetCheck,
    /// At most this many deliveries to this target at once, across every run of this Ferry
    /// process (default 4, as rclone's `--transfers`): servers cap logins (OpenSSH's
    /// `MaxStartups 10:30:100` refuses unauthenticated connections beyond 10), so when many
    /// schedules fall due together, the others wait their turn, in order. 1 to 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_connections: Option<u32>,
}

impl FtpTarget {
    /// The port in force, with the TLS-dependent default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            FtpTls::Implicit => 990,
            _ => 21,
        })
    }
}

fn default_remote_dir() -> String {
    "/".to_string()
}

/// An SFTP server. Give exactly one of `privateKeySecretRef` and `passwordSecretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SftpTarget {
    /// Host name or IP address.
    pub host: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Remote directory (created when missing), e.g. `/upload`.
    #[serde(default = "default_sftp_dir")]
    pub directory: String,
    /// Login user.
    pub username: String,
    /// An OpenSSH private key (RSA, Ed25519 or ECDSA), e.g. one made by `ferry keygen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_secret_ref: Option<SecretRef>,
    /// The passphrase of an encrypted private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_secret_ref: Option<SecretRef>,
    /// The login password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
    /// Pinned server host keys as OpenSSH public key lines (`ssh-ed25519 AAAA...`), e.g. from
    /// `ferry keyscan`. Required: a server offering any other key is refused.
    pub host_keys: Vec<String>,
    /// The name a file has while it is uploaded, before the rename to its final name:
    /// `hidden` (default: `.<file>.ferry-partial-<run id>`), `suffix`
    /// (`<file>.ferry-partial-<run id>`, for servers that refuse names starting with a dot),
    /// `directory` (`ferry-partial/<file>.ferry-partial-<run id>`, a staging subdirectory) or
    /// `none` (the final name from the first byte, for servers that cannot rename: a
    /// consumer may see a partial file).
    #[serde(default, skip_serializing_if = "PartialNaming::is_default")]
    pub partial: PartialNaming,
    /// How `ferry check` and the periodic checks try this target: `probe` (the default: an
    /// empty `.ferry-check-<n>` file delivered like a report, then removed) or `list` (the
    /// directory only listed, for a server whose consumers take every file that appears).
    #[serde(default, skip_serializing_if = "TargetCheck::is_default")]
    pub check: TargetCheck,
    /// At most this many deliveries to this target at once, across every run of this Ferry
    /// process (default 4, as rclone's `--transfers`): servers cap logins (OpenSSH's
    /// `MaxStartups 10:30:100` refuses unauthenticated connections beyond 10), so when many
    /// schedules fall due together, the others wait their turn, in order. 1 to 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_connections: Option<u32>,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_sftp_dir() -> String {
    ".".to_string()
}

/// SMTP transport security.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Unencrypted SMTP (default port 25).
    None,
    /// STARTTLS upgrade, required (default; default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (default port 465).
    Implicit,
}

/// An SMTP submission server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpServer {
    /// Host name or IP address.
    pub host: String,
    /// Port. Default: 587 for `starttls`, 465 for `implicit`, 25 for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `implicit`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// AUTH user. No AUTH when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// AUTH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
    /// A PEM CA certificate trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

impl SmtpServer {
    /// The port in force, with the TLS-dependent default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
        })
    }
}

/// Email delivery: by default the report is uploaded to S3-compatible storage and the mail
/// carries a link that expires; with `attach: true` the file is attached instead.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailTarget {
    /// The SMTP server to submit through.
    pub smtp: SmtpServer,
    /// Sender, e.g. `"Reports <reports@example.com>"`.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Subject of a report's mail (default `Report {fileName}`). Tokens: the file name date
    /// tokens, `{schedule}`, `{fileName}`. Alerts have subjects of their own.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Plain-text body. Tokens: those of `subject`, plus `{link}` (the expiring link),
    /// `{expires}` (when it expires) and `{rows}`.
    #[serde(default = "default_body")]
    pub body: String,
    /// Where the report is uploaded for the link. Without it and without `attach: true`,
    /// the target takes alerts only (a schedule's `notify`), not reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<EmailLink>,
    /// Attach the file to the mail instead of sending a link.
    #[serde(default)]
    pub attach: bool,
    /// At most this many SMTP sessions to this target at once, across every run of this Ferry
    /// process (default 4, as rclone's `--transfers`): servers cap logins (OpenSSH's
    /// `MaxStartups 10:30:100` refuses unauthenticated connections beyond 10), so when many
    /// schedules fall due together, the others wait their turn, in order. 1 to 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_connections: Option<u32>,
}

fn default_subject() -> String {
    "Report {fileName}".to_string()
}

fn default_body() -> String {
    "Your report {fileName} is ready: {link}".to_string()
}

/// An expiring link to the report in S3-compatible storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailLink {
    /// The bucket the report is uploaded to.
    pub s3: S3Store,
    /// How long the presigned link stays valid, e.g. `7d` (at most 7 days, SigV4's limit).
    #[serde(default = "default_expires_in")]
    pub expires_in: String,
}

fn default_expires_in() -> String {
    "7d".to_string()
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph, ...), addressed path-style.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Store {
    /// Endpoint URL, e.g. `https://s3.example`.
    pub endpoint: String,
    /// Region used in the SigV4 signature.
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, e.g. `partner/`.
    #[serde(default)]
    pub prefix: String,
    /// Access key id.
    pub access_key_id_secret_ref: SecretRef,
    /// Secret access key.
    pub secret_access_key_secret_ref: SecretRef,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

/// An HTTPS endpoint that receives alerts as POSTs of a JSON body (see the README's **Alerts**):
/// Ferry's own document, or a message in Slack's or Microsoft Teams' incoming-webhook format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTarget {
    /// The endpoint, e.g. `https://alerts.example/ferry`. Give `url` or `urlSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The endpoint kept in a Secret: Slack's and Teams' webhook URLs are credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretRef>,
    /// The body: `ferry` (default: Ferry's alert document), `slack` (`{"text": ...}`) or
    /// `teams` (a MessageCard).
    #[serde(default, skip_serializing_if = "WebhookFormat::is_default")]
    pub format: WebhookFormat,
    /// A shared key: each request is signed with HMAC-SHA256 over `<timestamp>.<body>`,
    /// sent as `X-Ferry-Signature: sha256=<hex>` with `X-Ferry-Timestamp: <unix seconds>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretRef>,
    /// A PEM CA certificate trusted in addition to the system roots, for an endpoint with a
    /// private CA. Certificates are always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

/// The body a webhook receives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WebhookFormat {
    /// Ferry's alert document (`ferry.dev/alert/v1`).
    #[default]
    Ferry,
    /// Slack's incoming webhook: `{"text": ...}`.
    Slack,
    /// Microsoft Teams' incoming webhook: a MessageCard.
    Teams,
}

impl WebhookFormat {
    /// Whether this is the default.
    pub fn is_default(&self) -> bool {
        *self == WebhookFormat::Ferry
    }
}

/// A bucket of an object store. Give exactly one of `s3`, `gcs` and `azure`. A report is the
/// object `<prefix>/<fileName>`, written by one PUT (a multipart upload completed last above
/// 8 MiB), so it appears whole or not at all and never under a temporary name; its size is
/// confirmed after the upload and its SHA-256 is kept in the object's metadata (`sha256`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStoreTarget {
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph, Cloudflare R2, Wasabi, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Bucket>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsBucket>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureContainer>,
    /// The folder the reports go to inside the bucket, e.g. `partner/{yyyy}/{MM}/`: the
    /// file name's date tokens and `{schedule}` and `{namespace}` may be used. Empty: the
    /// bucket's top level.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// How `ferry check` and the periodic checks try this target: `probe` (the default: an
    /// empty `.ferry-check-<n>` object written like a report, read back and deleted) or `list`
    /// (the prefix only listed, for credentials that may not delete, or consumers that take
    /// every object that appears).
    #[serde(default, skip_serializing_if = "TargetCheck::is_default")]
    pub check: TargetCheck,
    /// At most this many deliveries to this target at once, across every run of this Ferry
    /// process (default 4). 1 to 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_connections: Option<u32>,
}

/// Which store an [`ObjectStoreTarget`] is, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub enum StoreKind<'a> {
    /// See [`ObjectStoreTarget::s3`].
    S3(&'a S3Bucket),
    /// See [`ObjectStoreTarget::gcs`].
    Gcs(&'a GcsBucket),
    /// See [`ObjectStoreTarget::azure`].
    Azure(&'a AzureContainer),
}

impl ObjectStoreTarget {
    /// Every store that is set; a valid target has exactly one.
    pub fn stores(&self) -> Vec<StoreKind<'_>> {
        let mut stores = Vec::with_capacity(1);
        if let Some(s) = &self.s3 {
            stores.push(StoreKind::S3(s));
        }
        if let Some(s) = &self.gcs {
            stores.push(StoreKind::Gcs(s));
        }
        if let Some(s) = &self.azure {
            stores.push(StoreKind::Azure(s));
        }
        stores
    }

    /// The single store of a validated target.
    pub fn store(&self) -> Option<StoreKind<'_>> {
        match self.stores()[..] {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// An S3 bucket. Without keys, the credentials come from Ferry's environment as the AWS tools
/// find them (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a web identity token as EKS's IRSA
/// gives, the instance's metadata service).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Bucket {
    /// Bucket name.
    pub bucket: String,
    /// Region, in the SigV4 signature and AWS's endpoint name.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint URL of an S3-compatible store, e.g. `https://minio.example:9000`. Default:
    /// AWS's own for the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How the bucket is addressed: `virtualHosted` (`https://<bucket>.<endpoint>/<key>`, AWS's
    /// way) or `path` (`https://<endpoint>/<bucket>/<key>`, what most S3-compatible stores
    /// expect). Default: `virtualHosted` without an endpoint, `path` with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressing: Option<S3Addressing>,
    /// Access key id (with `secretAccessKeySecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_secret_ref: Option<SecretRef>,
    /// Secret access key (with `accessKeyIdSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretRef>,
    /// Server-side encryption asked for each object (the `x-amz-server-side-encryption`
    /// header): `aes256` (SSE-S3), `awsKms` (SSE-KMS) or `awsKmsDsse` (dual-layer SSE-KMS).
    /// Default: none asked (the bucket's default encryption applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<S3Encryption>,
    /// The KMS key of `awsKms` and `awsKmsDsse` (id, ARN or alias). Default: the account's
    /// AWS-managed key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// How an S3 bucket is addressed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum S3Addressing {
    /// `https://<bucket>.<endpoint>/<key>`.
    VirtualHosted,
    /// `https://<endpoint>/<bucket>/<key>`.
    Path,
}

/// S3 server-side encryption.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum S3Encryption {
    /// SSE-S3 (`AES256`): keys managed by the store.
    Aes256,
    /// SSE-KMS (`aws:kms`).
    AwsKms,
    /// Dual-layer SSE-KMS (`aws:kms:dsse`).
    AwsKmsDsse,
}

impl S3Encryption {
    /// The header's value.
    pub fn header_value(&self) -> &'static str {
        match self {
            S3Encryption::Aes256 => "AES256",
            S3Encryption::AwsKms => "aws:kms",
            S3Encryption::AwsKmsDsse => "aws:kms:dsse",
        }
    }
}

/// A Google Cloud Storage bucket. Without a key, the credentials come from Ferry's
/// environment (`GOOGLE_APPLICATION_CREDENTIALS`, GKE's workload identity, the metadata
/// server).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsBucket {
    /// Bucket name.
    pub bucket: String,
    /// A service account's JSON key (`gcloud iam service-accounts keys create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_secret_ref: Option<SecretRef>,
    /// Endpoint URL. Default: `https://storage.googleapis.com`; set for a private endpoint or
    /// an emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// An Azure Blob Storage container. Give the account's access key or a SAS token; without
/// either, the credentials come from Ferry's environment (a managed identity, AKS's workload
/// identity).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureContainer {
    /// Storage account name.
    pub account: String,
    /// Container name.
    pub container: String,
    /// The storage account's access key (Shared Key authorization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret_ref: Option<SecretRef>,
    /// A shared access signature (the query string, with or without its leading `?`) that
    /// allows create, write, read, list and delete in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token_secret_ref: Option<SecretRef>,
    /// Endpoint URL. Default: `https://<account>.blob.core.windows.net`; set for Azurite
    /// (`http://127.0.0.1:10000/<account>`) or a sovereign cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A directory on the machine running Ferry. Files appear atomically (written under a
/// temporary name, then renamed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalDirTarget {
    /// Directory path, created when missing; relative paths are relative to the working
    /// directory.
    pub path: String,
    /// The name a file has while it is written, before the rename to its final name:
    /// `hidden` (default: `.<file>.ferry-partial-<run id>`), `suffix`
    /// (`<file>.ferry-partial-<run id>`), `directory` (`ferry-partial/<file>.ferry-partial-<run
    /// id>`, a staging subdirectory) or `none` (the final name from the first byte: a consumer
    /// may see a partial file).
    #[serde(default, skip_serializing_if = "PartialNaming::is_default")]
    pub partial: PartialNaming,
}

/// Access granted to a hosted SFTP connection.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HostedAccess {
    /// List and download only (default).
    #[default]
    Read,
    /// Also upload, rename and remove.
    ReadWrite,
}

/// A connection on Ferry's own SFTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostedSftpTarget {
    /// Name of the connection, unique per namespace.
    pub connection_name: String,
    /// Name shown to people for this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Login user. Two connections naming one user share its credentials, and the user sees
    /// both directories.
    pub user: String,
    /// OpenSSH public keys allowed to log in. When none is given a strong password is
    /// generated at apply and shown once (file mode) or stored in a Secret (cluster mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    /// Directory inside the user's jail that reports are delivered to, e.g. `reports/`.
    #[serde(default)]
    pub directory: String,
    /// `read` (default) or `readWrite`.
    #[serde(default)]
    pub access: HostedAccess,
}

/// A ConnectWise Manage (ConnectWise PSA) REST API connection. Give `site` or `baseUrl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectWiseTarget {
    /// API host, e.g. `api-na.myconnectwise.net`; the codebase is discovered from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Full base URL instead of `site`, e.g. `http://127.0.0.1:18080` (a simulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The ConnectWise company id used at login.
    pub company_id: String,
    /// The registered integration's client id (a GUID).
    pub client_id: String,
    /// API member public key.
    pub public_key_secret_ref: SecretRef,
    /// API member private key.
    pub private_key_secret_ref: SecretRef,
    /// The API version sent in `Accept` (`application/vnd.connectwise.com+json; version=...`),
    /// which pins the response models. Default: `2025.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// General settings, used by CustomerMappings with `settings: general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<PsaDefaults>,
    /// Receiving report files: where a ReportSchedule labelled `ferry.dev/customer` that
    /// delivers here puts each run's file in that customer's company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<PsaReports>,
}

/// An Autotask REST API connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutotaskTarget {
    /// API user name; its zone is discovered from it.
    pub username: String,
    /// The API user's secret.
    pub secret_secret_ref: SecretRef,
    /// The integration's tracking identifier (API integration code).
    pub integration_code_secret_ref: SecretRef,
    /// Zone discovery endpoint. Default:
    /// `https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_discovery_url: Option<String>,
    /// How fractional usage becomes whole Autotask units (`unitChange` is an integer): `up`
    /// (default: never under-bill), `down` or `nearest`. A CustomerMapping may set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_rounding: Option<QuantityRounding>,
    /// The date unit adjustments take effect: `periodStart` (default: the whole billing period
    /// at the new count, one units row per period), `nextPeriod` (from the next period on) or
    /// `now` (the sync's day: the period is split and prorated). A CustomerMapping may set its
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<EffectiveDate>,
    /// General settings, used by CustomerMappings with `settings: general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<PsaDefaults>,
    /// Receiving report files: where a ReportSchedule labelled `ferry.dev/customer` that
    /// delivers here puts each run's file in that customer's company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<PsaReports>,
}

/// How a fractional quantity becomes whole units for Autotask.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum QuantityRounding {
    /// The next whole unit up (default): 10.2 -> 11.
    #[default]
    Up,
    /// The whole unit below: 10.8 -> 10.
    Down,
    /// The nearest whole unit, halves away from zero: 10.5 -> 11.
    Nearest,
}

impl QuantityRounding {
    /// `q` as whole units.
    pub fn apply(self, q: f64) -> f64 {
        match self {
            QuantityRounding::Up => q.ceil(),
            QuantityRounding::Down => q.floor(),
            QuantityRounding::Nearest => q.round(),
        }
    }

    /// `up`, `down` or `nearest`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            QuantityRounding::Up => "up",
            QuantityRounding::Down => "down",
            QuantityRounding::Nearest => "to the nearest unit",
        }
    }
}

/// When an Autotask unit adjustment takes effect, relative to the billing period (units row)
/// holding the sync's day.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EffectiveDate {
    /// The first day of that period (default): the period is billed at the new count.
    #[default]
    PeriodStart,
    /// The first day of the next period: the current period keeps its count.
    NextPeriod,
    /// The sync's day: the period is split into two rows, each billed for its part.
    Now,
}

/// Where report files delivered to a PSA connection go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PsaReports {
    /// ConnectWise service board name, or Autotask queue name, the tickets are opened on.
    pub board: String,
    /// `ticket` (default): one ticket per run with the file attached; `note` (ConnectWise
    /// only): one standing ticket per schedule and company, each run adding a note and the
    /// file to it.
    #[serde(default)]
    pub mode: ReportMode,
}

/// How report files are filed in the PSA.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReportMode {
    /// A new ticket per run.
    #[default]
    Ticket,
    /// A note on the schedule's standing ticket (ConnectWise).
    Note,
}

/// General PSA settings shared by CustomerMappings that use `settings: general`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PsaDefaults {
    /// Usage sync settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_sync: Option<UsageSync>,
    /// Ticket sync settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_sync: Option<TicketSync>,
    /// Billing push settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
}

/// Pushing product usage quantities to the PSA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageSync {
    /// Turn usage sync on or off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When to sync. Default: `{every: 24h}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// IANA time zone of the schedule. Default UTC.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Usage rows: a query returning `customer`, `product`, `quantity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<UsageSource>,
}

/// Where usage quantities come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageSource {
    /// A SQL query returning `customer`, `product`, `quantity`.
    pub sql: SqlSource,
}

/// Opening tickets in the customer's PSA company when a sync or delivery for it fails.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketSync {
    /// Turn ticket sync on or off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// ConnectWise service board name, or Autotask queue name, tickets are opened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// ConnectWise: the name of the board status tickets are opened in. Default: the board's
    /// default status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_status: Option<String>,
    /// ConnectWise: the name of the board status tickets are closed with; it must be a closed
    /// status of the board. Default: the board's closed status named like `Closed`, else its
    /// first closed status. Board statuses are the tenant's own: `>Closed` may not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_status: Option<String>,
}

/// Pushing monthly billing quantities to the PSA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Billing {
    /// Turn billing push on or off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When to push. Default: `{monthly: {day: 1, at: "06:00"}}`; days 29-31 fall back to the
    /// month's last day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// IANA time zone of the schedule. Default UTC.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

/// Observed state of a DeliveryTarget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryTargetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` (the latest delivery) and `Reachable` (the latest periodic check:
    /// connection, login, directory and a probe delivered and removed) conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the target was last checked (RFC 3339; `--check-interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// hostedSftp: SHA-256 fingerprints of the public keys in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_fingerprints: Vec<String>,
    /// hostedSftp in a cluster: the Secret holding the generated password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_name: Option<String>,
}
