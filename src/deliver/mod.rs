//! Delivery: one small [`Transport`] trait, one module per transport. A transport receives a
//! finished, staged file and must make it appear at the destination atomically (temporary
//! name, then rename) and confirm what arrived in a [`Receipt`]. [`psa`] files reports in a
//! customer's PSA company (built by the runner, which knows the customer).
//!
//! Each transport's file also holds its kind's [`TargetSpec`] (checks, summary, plan notes);
//! [`spec_of`] and [`transport_for`] are the registry. A new transport is a new file here, its
//! spec type in `api::delivery_target`, and a line in each of those two functions.

pub mod atomic;
pub mod bucket;
pub mod email;
pub mod ftp;
pub mod hosted_sftp;
pub mod local_dir;
pub mod psa;
pub mod sftp;
pub mod spec;
pub mod transport;
pub mod webhook;

pub use spec::TargetSpec;
pub use transport::{
    About, BoxFuture, CommitHook, Confirmation, Outgoing, Receipt, Sharing, Transport,
};

use crate::api::{DeliveryTargetSpec, TargetKind};
use crate::secrets::FileSecrets;
use crate::{Error, Result};

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
        Some(TargetKind::LocalDir(t)) => Ok(Box::new(
            local_dir::LocalDir::new(&t.path).with_naming(t.partial),
        )),
        Some(TargetKind::Ftp(t)) => Ok(Box::new(ftp::FtpTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::Sftp(t)) => Ok(Box::new(sftp::SftpTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::Email(t)) => Ok(Box::new(email::EmailTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::ObjectStore(t)) => Ok(Box::new(bucket::ObjectStoreTransport::new(
            namespace, name, t, secrets,
        )?)),
        Some(TargetKind::HostedSftp(t)) => Ok(Box::new(hosted_sftp::HostedSftp::new(
            name,
            t,
            hosted_sftp_data,
        ))),
        Some(TargetKind::Webhook(_)) => Err(Error::Delivery {
            target: name.to_string(),
            message: "a webhook target receives alerts (a schedule's or mapping's notify), not \
                      report files"
                .into(),
        }),
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

/// The rules of a target's kind (the registry of [`TargetSpec`]s).
pub fn spec_of<'a>(kind: TargetKind<'a>) -> &'a dyn TargetSpec {
    match kind {
        TargetKind::LocalDir(t) => t,
        TargetKind::Ftp(t) => t,
        TargetKind::Sftp(t) => t,
        TargetKind::Email(t) => t,
        TargetKind::HostedSftp(t) => t,
        TargetKind::ObjectStore(t) => t,
        TargetKind::Webhook(t) => t,
        TargetKind::ConnectWise(t) => t,
        TargetKind::Autotask(t) => t,
    }
}
