//! FTP's part of the delivery sequence ([`crate::deliver::atomic::place_remote`]): a
//! directory entered on a control connection, with STOR, SIZE (else a listing), RNFR/RNTO and
//! DELE; a leftover is removed on a fresh connection when the first one broke.

use std::collections::BTreeMap;
use std::time::Instant;

use super::session::{Session, join_remote, url_path};
use super::{CLEANUP_TIMEOUT, FtpTransport, IDLE_TIMEOUT, REPLY_TIMEOUT, check_name};
use crate::Result;
use crate::api::FtpTls;
use crate::api::TargetCheck;
use crate::deliver::atomic::{
    RemoteDir, SizeUnknown, UploadFailed, confirm_remote, confirmation, place_remote, probe_remote,
};
use crate::deliver::{Confirmation, Outgoing, Receipt};
use crate::tls::ClientTls;

impl FtpTransport {
    pub(super) async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
        let naming = self.partial;
        let (receipt, bytes) = self
            .in_directory(file, async |remote| {
                place_remote(remote, file, naming).await
            })
            .await?;
        Ok(Receipt { bytes, ..receipt })
    }

    /// A check's probe: delivered like a report, then removed (see `Transport::probe`).
    /// With `check: list`, the directory is only listed (`listedEntries`).
    pub(super) async fn probe_file(&self, probe: &Outgoing<'_>) -> Result<Receipt> {
        let naming = self.partial;
        if self.check == TargetCheck::List {
            let (mut receipt, entries) = self
                .in_directory(probe, async |remote| {
                    let listing = remote
                        .session
                        .step(IDLE_TIMEOUT, async |f| f.list(None).await)
                        .await
                        .map_err(|e| format!("listing {}: {e}", remote.locate("")))?;
                    Ok(listing.len())
                })
                .await?;
            receipt
                .details
                .insert("listedEntries".to_string(), entries.to_string());
            return Ok(receipt);
        }
        let (receipt, bytes) = self
            .in_directory(probe, async |remote| {
                probe_remote(remote, probe, naming).await
            })
            .await?;
        Ok(Receipt { bytes, ..receipt })
    }

    /// After a crash at the point of no return: is the file there (its size, then its
    /// SHA-256 read back when the login may read)?
    pub(super) async fn confirm_file(&self, file: &Outgoing<'_>) -> Result<Confirmation> {
        let naming = self.partial;
        let (receipt, found) = self
            .in_directory(file, async |remote| {
                confirm_remote(remote, file, naming).await
            })
            .await?;
        Ok(confirmation(receipt, file, found))
    }

    /// Connects, enters the target's directory, runs `op` there and says goodbye. Returns
    /// the receipt of `file` there (its `bytes` left for the caller) and `op`'s result.
    async fn in_directory<T>(
        &self,
        file: &Outgoing<'_>,
        op: impl AsyncFnOnce(&mut FtpDir<'_>) -> std::result::Result<T, String>,
    ) -> Result<(Receipt, T)> {
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
        let dir = match session.enter_directory(&self.directory).await {
            Ok(dir) => dir,
            Err(e) => {
                session.quit().await;
                return Err(self.error(e));
            }
        };
        let mut remote = FtpDir {
            transport: self,
            tls: tls.as_ref(),
            session,
            dir,
        };
        let done = op(&mut remote).await;
        let FtpDir { session, dir, .. } = remote;
        session.quit().await;
        let value = done.map_err(|e| self.error(e))?;

        let remote_path = join_remote(&dir, file.file_name);
        let scheme = match self.tls {
            FtpTls::None => "ftp",
            _ => "ftps",
        };
        let mut details = BTreeMap::new();
        details.insert("tls".to_string(), self.tls_name().to_string());
        details.insert("remotePath".to_string(), remote_path.clone());
        if let Some(fp) = tls.as_ref().and_then(ClientTls::peer_fingerprint) {
            details.insert("certificateSha256".into(), fp);
        }
        let receipt = Receipt {
            location: format!("{scheme}://{}{}", self.endpoint(), url_path(&remote_path)),
            bytes: 0,
            sha256: file.sha256.to_string(),
            details,
        };
        Ok((receipt, value))
    }
}

/// The target's directory, entered on a logged-in control connection.
struct FtpDir<'a> {
    transport: &'a FtpTransport,
    /// The TLS configuration (and session cache) of the delivery, for a second connection.
    tls: Option<&'a ClientTls>,
    session: Session,
    /// The directory as the server names it.
    dir: String,
}

impl FtpDir<'_> {
    fn path(&self, name: &str) -> String {
        join_remote(&self.dir, name)
    }
}

impl RemoteDir for FtpDir<'_> {
    fn target(&self) -> &str {
        &self.transport.name
    }

    fn locate(&self, name: &str) -> String {
        format!("{} on {}", self.path(name), self.transport.endpoint())
    }

    async fn upload(&mut self, name: &str, file: &Outgoing<'_>) -> Result<u64, UploadFailed> {
        let started = Instant::now();
        let sent = self
            .session
            .upload(name, file.staged, file.bytes)
            .await
            .map_err(|mut failed| {
                failed.message = format!(
                    "upload of {} to {}: {}",
                    self.path(name),
                    self.transport.endpoint(),
                    failed.message
                );
                failed
            })?;
        let elapsed = started.elapsed().as_secs_f64();
        tracing::debug!(
            target_name = %self.transport.name,
            bytes = sent,
            seconds = elapsed,
            mib_per_s = sent as f64 / (1024.0 * 1024.0) / elapsed.max(1e-9),
            "ftp upload finished"
        );
        Ok(sent)
    }

    async fn size(&mut self, name: &str) -> Result<u64, SizeUnknown> {
        self.session.remote_size(name).await.map_err(|e| {
            if self.session.broken() {
                SizeUnknown::Failed(e)
            } else {
                SizeUnknown::NotOffered(e)
            }
        })
    }

    async fn rename_over(&mut self, temp: &str, name: &str) -> Result<(), String> {
        self.session.rename_over(temp, name).await.map_err(|e| {
            format!(
                "rename of {} to {} on {}: {e}",
                self.path(temp),
                self.path(name),
                self.transport.endpoint()
            )
        })
    }

    /// On the same control connection when it still works, else on a new one: some servers
    /// close the control connection after a failed data connection.
    async fn remove(&mut self, temp: &str) -> Result<(), String> {
        let mut removed = self
            .session
            .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
            .await;
        if self.session.broken() {
            self.session = Session::open(self.transport, self.tls).await?;
            self.session
                .enter_directory(&self.transport.directory)
                .await?;
            removed = self
                .session
                .step(CLEANUP_TIMEOUT, async |f| f.rm(temp).await)
                .await;
        }
        // A server may echo what it was sent: never let the password through.
        removed.map_err(|e| self.transport.scrub(e))
    }

    async fn read_sha256(&mut self, name: &str) -> Result<Option<String>, String> {
        self.session
            .read_sha256(name)
            .await
            .map_err(|e| self.transport.scrub(e))
    }

    /// MKD; a refusal is fine when the directory is there (CWD into it and back succeeds).
    async fn make_dir(&mut self, name: &str) -> Result<(), String> {
        let made = self
            .session
            .step(REPLY_TIMEOUT, async |f| f.mkdir(name).await)
            .await;
        let Err(refused) = made else { return Ok(()) };
        if self.session.broken() {
            return Err(refused);
        }
        self.session
            .step(REPLY_TIMEOUT, async |f| f.cwd(name).await)
            .await
            .map_err(|_| refused)?;
        self.session
            .step(REPLY_TIMEOUT, async |f| f.cdup().await)
            .await
    }
}
