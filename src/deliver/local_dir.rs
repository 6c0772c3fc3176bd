//! Delivery to a directory on this machine: copy under a temporary name (hidden unless the
//! target's `partial` says otherwise), fsync, rename.
//! A reader of the directory sees either no file or the complete file, never a partial one.
//!
//! The file is the staged file itself (a hard link, no bytes copied) only when this directory
//! is the run's sole destination; otherwise it is a copy of its own (a reflink where the file
//! system offers one), so that whoever can write this directory can never change what another
//! destination receives.

use std::path::{Path, PathBuf};

use super::spec::TargetSpec;
use super::transport::OwnedOutgoing;
use super::{BoxFuture, Confirmation, Outgoing, Receipt, Sharing, Transport};
use crate::api::{LocalDirTarget, PartialNaming, TargetKind};
use crate::fsutil::{Placement, copy_private};
use crate::validate::fields::Problems;
use crate::{Error, Result};

/// A `localDir` target.
#[derive(Clone, Debug)]
pub struct LocalDir {
    dir: PathBuf,
    partial: PartialNaming,
}

impl LocalDir {
    /// Delivers into `dir` (created when missing), under the hidden temporary name.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalDir {
            dir: dir.into(),
            partial: PartialNaming::Hidden,
        }
    }

    /// The same with another temporary naming.
    pub fn with_naming(self, partial: PartialNaming) -> Self {
        LocalDir { partial, ..self }
    }

    fn deliver_blocking(&self, file: &Outgoing<'_>) -> std::io::Result<Receipt> {
        std::fs::create_dir_all(&self.dir)?;
        // On this machine the point of no return is taken before placing: a ledger write
        // between the (instant) placement and the rename would only hold the temporary name
        // in sight longer. A crash before the rename still finds no final file, and resends.
        file.commit.reached_blocking(Default::default())?;
        let mut placement = Placement::Copy;
        let bytes = super::atomic::place_in_dir(
            &self.dir,
            file.file_name,
            file.run_id,
            self.partial,
            file.bytes,
            |temp| {
                let (copied, how) = place(file.staged, temp, file.sharing)?;
                placement = how;
                Ok(copied)
            },
            |_| Ok(()),
        )?;
        super::atomic::remove_stale_local(&self.dir, file, self.partial);
        Ok(self.receipt(file, bytes, placement.as_str()))
    }

    fn receipt(&self, file: &Outgoing<'_>, bytes: u64, placement: &str) -> Receipt {
        let final_path = self.dir.join(file.file_name);
        let location = std::path::absolute(&final_path).unwrap_or(final_path);
        let mut details = std::collections::BTreeMap::new();
        details.insert("placement".into(), placement.into());
        Receipt {
            location: location.display().to_string(),
            bytes,
            sha256: file.sha256.to_string(),
            details,
        }
    }

    /// Runs `f` on a blocking thread, its errors as the target's.
    async fn blocking<T: Send + 'static>(
        &self,
        file: &Outgoing<'_>,
        f: impl FnOnce(&LocalDir, &Outgoing<'_>) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let owned = OwnedOutgoing::of(file);
        tokio::task::spawn_blocking(move || owned.with(|file| f(&this, file)))
            .await
            .map_err(|e| Error::Delivery {
                target: self.dir.display().to_string(),
                message: format!("delivery task failed: {e}"),
            })?
            .map_err(|e| Error::Delivery {
                target: self.dir.display().to_string(),
                message: e.to_string(),
            })
    }
}

/// Puts the staged file at `to`: a hard link when this is its sole destination and staging and
/// target share a file system, an independent synced copy otherwise. Returns the size now at
/// `to` and how it was placed.
fn place(staged: &Path, to: &Path, sharing: Sharing) -> std::io::Result<(u64, Placement)> {
    if sharing == Sharing::Sole && std::fs::hard_link(staged, to).is_ok() {
        return Ok((std::fs::metadata(to)?.len(), Placement::HardLink));
    }
    copy_private(staged, to, 0o666)
}

impl Transport for LocalDir {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.blocking(file, |this, file| this.deliver_blocking(file)))
    }

    /// Delivered like a report, then removed.
    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.blocking(probe, |this, probe| {
            let receipt = this.deliver_blocking(probe)?;
            std::fs::remove_file(this.dir.join(probe.file_name))?;
            Ok(receipt)
        }))
    }

    /// The directory holds the file already (same size and SHA-256)?
    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        Box::pin(self.blocking(file, |this, file| {
            Ok(
                match super::atomic::confirm_local(&this.dir, file, this.partial)? {
                    Some(how) => {
                        super::atomic::present(this.receipt(file, file.bytes, "found"), how)
                    }
                    None => Confirmation::Absent,
                },
            )
        }))
    }
}

impl TargetSpec for LocalDirTarget {
    fn check(&self, p: &mut Problems) {
        p.non_empty("spec.localDir.path", &self.path);
    }

    fn summary(&self) -> String {
        format!(
            "local directory {}{}",
            self.path,
            super::atomic::naming_summary(self.partial)
        )
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        if let TargetKind::LocalDir(x) = old {
            super::atomic::naming_change_notes(x.partial, self.partial, notes);
        }
    }
}
