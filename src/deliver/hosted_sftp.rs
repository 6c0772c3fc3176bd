//! Delivery into a connection of Ferry's own SFTP server (`hostedSftp`): the file is placed in
//! the connection's directory inside its user's jail, atomically, whether or not the server is
//! running at that moment (it serves whatever is on disk).

use std::path::{Path, PathBuf};

use super::{BoxFuture, Outgoing, Receipt, Sharing, Transport};
use crate::api::{HostedAccess, HostedSftpTarget};
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
                )
            })
            .await
            .map_err(|e| Error::Delivery {
                target: self.name.clone(),
                message: format!("delivery task failed: {e}"),
            })??;
            let mut details = std::collections::BTreeMap::new();
            details.insert("connection".into(), self.target.connection_name.clone());
            details.insert("remotePath".into(), delivered.remote_path.clone());
            details.insert("localPath".into(), delivered.path.display().to_string());
            details.insert("placement".into(), delivered.placement.as_str().into());
            Ok(Receipt {
                location: format!(
                    "hosted-sftp://{}{}",
                    self.target.user, delivered.remote_path
                ),
                bytes: delivered.bytes,
                sha256: file.sha256.to_string(),
                details,
            })
        })
    }
}
