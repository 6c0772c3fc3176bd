//! Delivery into a connection of Ferry's own SFTP server (`hostedSftp`): the file is placed in
//! the connection's directory inside its user's jail, atomically, whether or not the server is
//! running at that moment (it serves whatever is on disk).

use std::path::{Path, PathBuf};

use super::atomic::{confirm_local, present, remove_stale_local};
use super::spec::TargetSpec;
use super::transport::OwnedOutgoing;
use super::{BoxFuture, Confirmation, Outgoing, Receipt, Sharing, Transport};
use crate::api::{HostedAccess, HostedSftpTarget};
use crate::api::{PartialNaming, TargetKind};
use crate::ssh;
use crate::validate::fields::{Problems, check_jail_dir, check_login_user};
use crate::{Error, Result};

/// A `hostedSftp` target.
pub struct HostedSftp {
    name: String,
    target: HostedSftpTarget,
    data_dir: PathBuf,
}

impl HostedSftp {
    /// Delivers into `target`'s directory under the server's `data_dir`.
    pub fn new(name: &str, target: &HostedSftpTarget, data_dir: &Path) -> HostedSftp {
        HostedSftp {
            name: name.to_string(),
            target: target.clone(),
            data_dir: data_dir.to_path_buf(),
        }
    }
}

impl Transport for HostedSftp {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let data_dir = self.data_dir.clone();
            let user = self.target.user.clone();
            let directory = self.target.directory.clone();
            let staged = file.staged.to_path_buf();
            let file_name = file.file_name.to_string();
            let (run_id, bytes) = (file.run_id, file.bytes);
            // The staged file itself only where nobody can write it, or where nobody else gets
            // it (see `hosted_sftp::deliver`).
            let link_allowed = match file.sharing {
                Sharing::Sole => true,
                Sharing::Several => self.target.access == HostedAccess::Read,
                Sharing::Foreign => false,
            };
            let commit = file.commit.clone();
            let delivered = tokio::task::spawn_blocking(move || {
                crate::hosted_sftp::deliver_into(
                    &data_dir,
                    &user,
                    &directory,
                    &staged,
                    &file_name,
                    run_id,
                    bytes,
                    link_allowed,
                    || commit.reached_blocking(Default::default()),
                )
            })
            .await
            .map_err(|e| Error::Delivery {
                target: self.name.clone(),
                message: format!("delivery task failed: {e}"),
            })??;
            if let Some(dir) = delivered.path.parent() {
                remove_stale_local(dir, file, PartialNaming::Hidden);
            }
            Ok(self.receipt(&delivered, file, delivered.placement.as_str()))
        })
    }

    /// Delivered like a report into the connection's directory, then removed; the
    /// connection's public keys read, and the server's host key (once the server made it)
    /// read and named by its fingerprint (`hostKey`), for the people who pin it.
    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            for (i, line) in self.target.public_keys.iter().enumerate() {
                crate::ssh::parse_public_key(line)
                    .map_err(|e| self.fail(format!("publicKeys[{i}]: {e}")))?;
            }
            let host_key = self.data_dir.join(crate::hosted_sftp::HOST_KEY_FILE);
            let fingerprint = match std::fs::read_to_string(&host_key) {
                Ok(pem) => {
                    let key = russh::keys::decode_secret_key(&pem, None).map_err(|e| {
                        self.fail(format!(
                            "{}: cannot read the server's host key: {e}",
                            host_key.display()
                        ))
                    })?;
                    Some(crate::ssh::fingerprint(key.public_key()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(self.fail(format!("{}: {e}", host_key.display())));
                }
            };
            let mut receipt = self.deliver(probe).await?;
            receipt.details.insert(
                "hostKey".into(),
                fingerprint
                    .unwrap_or_else(|| "none yet (made when the server first starts)".into()),
            );
            let (path, _) = crate::hosted_sftp::delivery_path(
                &self.data_dir,
                &self.target.user,
                &self.target.directory,
                probe.file_name,
            )?;
            std::fs::remove_file(&path)
                .map_err(|e| self.fail(format!("removing the probe {}: {e}", path.display())))?;
            Ok(receipt)
        })
    }

    /// The connection's directory holds the file already (same size and SHA-256)?
    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        Box::pin(async move {
            let (path, remote_path) = crate::hosted_sftp::delivery_path(
                &self.data_dir,
                &self.target.user,
                &self.target.directory,
                file.file_name,
            )?;
            let Some(dir) = path.parent() else {
                return Ok(Confirmation::Absent);
            };
            let (dir, owned) = (dir.to_path_buf(), OwnedOutgoing::of(file));
            let found = tokio::task::spawn_blocking(move || {
                owned.with(|file| confirm_local(&dir, file, PartialNaming::Hidden))
            })
            .await
            .map_err(|e| self.fail(format!("confirmation task failed: {e}")))?
            .map_err(|e| self.fail(format!("looking for {}: {e}", path.display())))?;
            Ok(match found {
                Some(how) => {
                    let delivered = crate::hosted_sftp::Delivered {
                        path,
                        remote_path,
                        bytes: file.bytes,
                        placement: crate::fsutil::Placement::Copy,
                    };
                    present(self.receipt(&delivered, file, "found"), how)
                }
                None => Confirmation::Absent,
            })
        })
    }
}

impl HostedSftp {
    fn fail(&self, message: String) -> Error {
        Error::Delivery {
            target: self.name.clone(),
            message,
        }
    }

    fn receipt(
        &self,
        delivered: &crate::hosted_sftp::Delivered,
        file: &Outgoing<'_>,
        placement: &str,
    ) -> Receipt {
        let mut details = std::collections::BTreeMap::new();
        details.insert("connection".into(), self.target.connection_name.clone());
        details.insert("remotePath".into(), delivered.remote_path.clone());
        details.insert("localPath".into(), delivered.path.display().to_string());
        details.insert("placement".into(), placement.into());
        Receipt {
            location: format!(
                "hosted-sftp://{}{}",
                self.target.user, delivered.remote_path
            ),
            bytes: delivered.bytes,
            sha256: file.sha256.to_string(),
            details,
        }
    }
}

impl TargetSpec for HostedSftpTarget {
    fn check(&self, p: &mut Problems) {
        p.non_empty("spec.hostedSftp.connectionName", &self.connection_name);
        p.check("spec.hostedSftp.user", check_login_user(&self.user));
        for (i, k) in self.public_keys.iter().enumerate() {
            p.check(
                &format!("spec.hostedSftp.publicKeys[{i}]"),
                ssh::parse_public_key(k).map(|_| ()),
            );
        }
        p.check("spec.hostedSftp.directory", check_jail_dir(&self.directory));
    }

    fn summary(&self) -> String {
        format!(
            "hosted SFTP connection {} for user {} ({})",
            self.connection_name,
            self.user,
            if self.public_keys.is_empty() {
                "generated password, shown once at apply".to_string()
            } else {
                format!("{} public key(s)", self.public_keys.len())
            }
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let (TargetKind::HostedSftp(x), y) = (old, self) else {
            return;
        };
        if x.user != y.user {
            notes.push(format!("login user {} -> {}", x.user, y.user));
        }
        let material = |keys: &[String]| -> std::collections::BTreeSet<String> {
            keys.iter().map(|k| ssh::key_material(k)).collect()
        };
        let (old, new) = (material(&x.public_keys), material(&y.public_keys));
        for k in y
            .public_keys
            .iter()
            .filter(|k| !old.contains(&ssh::key_material(k)))
        {
            notes.push(format!("public key added: {}", ssh::key_label(k)));
        }
        for k in x
            .public_keys
            .iter()
            .filter(|k| !new.contains(&ssh::key_material(k)))
        {
            notes.push(format!(
                "public key removed, its holder loses access: {}",
                ssh::key_label(k)
            ));
        }
        if x.access != y.access {
            notes.push(format!("access {:?} -> {:?}", x.access, y.access));
        }
    }
}
