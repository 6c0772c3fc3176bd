//! Delivery: one small [`Transport`] trait, one module per transport. A transport receives a
//! finished, staged file and must make it appear at the destination atomically (temporary
//! name, then rename) and confirm what arrived in a [`Receipt`]. [`psa`] files reports in a
//! customer's PSA company (built by the runner, which knows the customer).

pub mod email;
pub mod ftp;
pub mod hosted_sftp;
pub mod local_dir;
pub mod psa;
pub mod sftp;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::api::{DeliveryTargetSpec, TargetKind};
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// A boxed future, so transports can live behind `dyn Transport`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A file to deliver.
#[derive(Clone, Debug)]
pub struct Outgoing<'a> {
    /// The finished file, in Ferry's staging area.
    pub staged: &'a Path,
    /// The name it must have at the destination.
    pub file_name: &'a str,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: &'a str,
    /// Unique per run: temporary names include it so concurrent runs never collide.
    pub run_id: i64,
    /// What the file is (schedule, slot, rows), for messages such as an email's subject.
    pub about: &'a About,
    /// Who else holds the staged file: whether a destination on this machine may take the
    /// file itself (a hard link) or needs a copy of its own.
    pub sharing: Sharing,
}

/// Who else holds a staged file. A hard link puts the same inode in two places, so whoever can
/// write one changes the other: a destination may take the staged file itself only when it is
/// its sole destination, or when nobody can write there (a read-only hosted SFTP connection).
/// Everywhere else it gets a copy (a reflink where the file system offers one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Ferry's staged file, delivered to this destination only (and removed after the run).
    Sole,
    /// Ferry's staged file, delivered to other destinations too.
    Several,
    /// A file that is not Ferry's (`ferry deliver FILE`): never linked, never changed.
    Foreign,
}

/// The report a file holds, for transports that describe it to people (email).
#[derive(Clone, Debug)]
pub struct About {
    /// Namespace of the ReportSchedule.
    pub namespace: String,
    /// Name of the ReportSchedule.
    pub schedule: String,
    /// The slot the run is for, in the schedule's time zone (date tokens render from it).
    pub slot: jiff::Zoned,
    /// Data rows in the file.
    pub rows: u64,
}

/// What the destination confirmed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Where the file is now (path, URL, mailbox).
    pub location: String,
    /// Size confirmed at the destination.
    pub bytes: u64,
    /// SHA-256 of what was sent.
    pub sha256: String,
    /// Transport-specific evidence (host key or certificate fingerprint, message id, ...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
}

/// Puts files somewhere.
pub trait Transport: Send + Sync {
    /// Delivers one file atomically and confirms it.
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>>;
}

/// The transport of target `namespace/name`, with its secrets resolved from `secrets`;
/// `hosted_sftp_data` is the hosted SFTP server's data directory
/// ([`crate::hosted_sftp::data_dir_for_state`]).
pub fn transport_for(
    namespace: &str,
    name: &str,
    spec: &DeliveryTargetSpec,
    secrets: &FileSecrets,
    hosted_sftp_data: &std::path::Path,
) -> Result<Box<dyn Transport>> {
    match spec.kind() {
        Some(TargetKind::LocalDir(t)) => Ok(Box::new(local_dir::LocalDir::new(&t.path))),
        Some(TargetKind::Ftp(t)) => Ok(Box::new(ftp::FtpTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::Sftp(t)) => Ok(Box::new(sftp::SftpTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::Email(t)) => Ok(Box::new(email::EmailTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::HostedSftp(t)) => Ok(Box::new(hosted_sftp::HostedSftp::new(
            name,
            t,
            hosted_sftp_data,
        ))),
        Some(psa) => Err(Error::Delivery {
            target: name.to_string(),
            message: format!(
                "a {} target is a PSA connection: it receives report files only from a \
                 ReportSchedule labelled with a mapped customer (see deliver::psa)",
                psa.key()
            ),
        }),
        None => Err(Error::Delivery {
            target: name.to_string(),
            message: "the target has no valid transport".into(),
        }),
    }
}
