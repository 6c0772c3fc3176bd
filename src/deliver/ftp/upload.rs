//! The delivery sequence: upload under the temporary name, check the size, rename over the
//! final name, confirm the size; after a failure, remove the leftover on a fresh connection.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::time::timeout;

use super::session::{Session, join_remote, url_path};
use super::{CLEANUP_TIMEOUT, FtpTransport, check_name};
use crate::Result;
use crate::api::FtpTls;
use crate::deliver::{Outgoing, Receipt};
use crate::tls::ClientTls;

impl FtpTransport {
    pub(super) async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
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
        let temp = crate::deliver::atomic::partial_name(file.file_name, file.run_id);
        match self.place(&mut session, file, &temp).await {
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
    pub(super) async fn place(
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
            Err(e) if session.broken() => {
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
    pub(super) async fn remove_leftover(
        &self,
        mut session: Session,
        tls: Option<&ClientTls>,
        temp: &str,
    ) {
        let removed = async {
            let mut removed = session
                .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
                .await;
            // (Some servers close the control connection after a failed data connection.)
            if session.broken() {
                session = Session::open(self, tls).await?;
                session.enter_directory(&self.directory).await?;
                removed = session
                    .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
                    .await;
            }
            session.quit().await;
            removed
        };
        match timeout(CLEANUP_TIMEOUT * 2, removed).await {
            Ok(Ok(())) => {
                tracing::debug!(target_name = %self.name, temp, "removed the partial upload")
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

/// Why a delivery stopped, and whether a temporary file may have been left behind.
pub(super) struct Failure {
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
