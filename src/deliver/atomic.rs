//! The one rule of atomic delivery, for every transport: a file is written under a temporary
//! name in its destination directory, then renamed to its final name, so a reader sees no file,
//! the previous file or the complete new one, never a part. The temporary name is
//! `.<file>.ferry-partial-<run id>`: hidden, and the same for every attempt of one run, so an
//! interrupted upload leaves at most one leftover, replaced by the next attempt. Ferry's own
//! SFTP server never lists nor serves such names.
//!
//! The sequence is written here once, in two flavours, and transports only declare what
//! their protocol can do:
//! - remote ones (FTP, SFTP) implement [`RemoteDir`] (upload, size, rename over, remove) and
//!   hand it to [`place_remote`]: upload under the temporary name, size checked when the
//!   server can tell, renamed over the final name, size confirmed after the rename, leftover
//!   removed after any failure before the rename (as rclone writes partial-upload handling
//!   once, in `fs/operations/copy.go`, and its backends only declare capabilities);
//! - local ones (a directory, a hosted SFTP jail) hand the whole sequence to
//!   [`place_in_dir`]: leftover removed, file placed, size checked, renamed, directory
//!   synced, temporary file removed on any failure, size confirmed after the rename.

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::api::PartialNaming;
use crate::deliver::transport::{Confirmation, Outgoing, Receipt};

/// The temporary name of `file_name` for run `run_id`.
pub fn partial_name(file_name: &str, run_id: i64) -> String {
    format!(".{file_name}.ferry-partial-{run_id}")
}

/// The staging directory of [`PartialNaming::Directory`], inside the target directory.
pub const PARTIAL_DIR: &str = "ferry-partial";

/// The temporary name (a path relative to the target directory) of `file_name` for run
/// `run_id` under `naming`; `None` when the file is written in place.
pub fn temporary_name(naming: PartialNaming, file_name: &str, run_id: i64) -> Option<String> {
    match naming {
        PartialNaming::Hidden => Some(partial_name(file_name, run_id)),
        PartialNaming::Suffix => Some(format!("{file_name}.ferry-partial-{run_id}")),
        PartialNaming::Directory => {
            Some(format!("{PARTIAL_DIR}/{file_name}.ferry-partial-{run_id}"))
        }
        PartialNaming::InPlace => None,
    }
}

/// What a plan says of a naming other than the default, after a target's one-line summary.
pub fn naming_summary(naming: PartialNaming) -> String {
    match naming {
        PartialNaming::Hidden => String::new(),
        PartialNaming::InPlace => {
            ", written in place (partial: none): a consumer may see a partial file".into()
        }
        other => format!(", partial: {}", other.key()),
    }
}

/// The plan notes of a naming change.
pub fn naming_change_notes(old: PartialNaming, new: PartialNaming, notes: &mut Vec<String>) {
    if old != new {
        notes.push(format!("partial {} -> {}", old.key(), new.key()));
        if new == PartialNaming::InPlace {
            notes.push(
                "WARNING: files are written in place: a consumer may see a partial file".into(),
            );
        }
    }
}

/// Whether `name` is one of Ferry's temporary names ([`partial_name`]).
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".ferry-partial-")
}

/// How long removing a failed attempt's temporary file may take, reconnecting included.
pub const REMOVE_LEFTOVER_WITHIN: Duration = Duration::from_secs(30);

/// Why an upload failed, and whether the server may hold something under the name written.
#[derive(Debug)]
pub struct UploadFailed {
    /// A complete sentence naming the step and the file.
    pub message: String,
    /// `false` when the server refused before any file was created (e.g. STOR refused, an
    /// OPEN refused): there is nothing to remove and nothing to warn about.
    pub may_have_written: bool,
}

impl UploadFailed {
    /// Refused before anything was created.
    pub fn refused(message: String) -> Self {
        UploadFailed {
            message,
            may_have_written: false,
        }
    }

    /// Failed once a file may exist.
    pub fn written(message: String) -> Self {
        UploadFailed {
            message,
            may_have_written: true,
        }
    }
}

/// Why a server did not give a file's size.
#[derive(Debug)]
pub enum SizeUnknown {
    /// It cannot or will not say (no `SIZE` command, no size attribute, a refusal); the
    /// connection still works. Before the rename the check is skipped; after it, it fails.
    NotOffered(String),
    /// Asking failed (the connection broke, a timeout): the delivery fails.
    Failed(String),
}

/// A directory on a remote server, entered and ready: what a remote transport offers to the
/// one delivery sequence, [`place_remote`]. Names are plain file names in that directory.
/// Error messages are complete sentences naming the step and the file.
pub trait RemoteDir {
    /// The delivery target's name, for logs.
    fn target(&self) -> &str;
    /// Where `name` is, for messages: `sftp://user@host:22/dir/name`, `/dir/name on host:21`.
    fn locate(&self, name: &str) -> String;
    /// Writes the staged file as `name` (a temporary name, or the final one when written in
    /// place), replacing what is there, and returns the bytes sent.
    fn upload(
        &mut self,
        name: &str,
        file: &Outgoing<'_>,
    ) -> impl Future<Output = Result<u64, UploadFailed>> + Send;
    /// The size of `name` as the server sees it.
    fn size(&mut self, name: &str) -> impl Future<Output = Result<u64, SizeUnknown>> + Send;
    /// Renames `temp` to `name`, replacing an existing `name`.
    fn rename_over(
        &mut self,
        temp: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Deletes `temp`, on a new connection when the current one is broken.
    fn remove(&mut self, temp: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Creates the directory `name` in this directory unless it exists ([`PARTIAL_DIR`]).
    fn make_dir(&mut self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// The SHA-256 (hex) of `name`, read back; `Ok(None)` when the server refuses to let it
    /// be read (a drop box) or it is not there, the connection still working.
    fn read_sha256(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// Delivers `file` into `dir` by the rule above, its temporary name chosen by `naming`, and
/// returns its size after the rename. After a failure before the rename completes, what the
/// attempt wrote is removed (best effort, within [`REMOVE_LEFTOVER_WITHIN`]); a leftover is
/// harmless anyway: the run's next attempt writes the same temporary name. Written in place
/// ([`PartialNaming::InPlace`]), a failed upload's remains under the final name are removed
/// the same way.
pub async fn place_remote(
    dir: &mut impl RemoteDir,
    file: &Outgoing<'_>,
    naming: PartialNaming,
) -> Result<u64, String> {
    let temp = temporary_name(naming, file.file_name, file.run_id);
    let written = temp.as_deref().unwrap_or(file.file_name);
    if naming == PartialNaming::Directory {
        dir.make_dir(PARTIAL_DIR).await.map_err(|e| {
            format!(
                "cannot create the staging directory {}: {e}",
                dir.locate(PARTIAL_DIR)
            )
        })?;
    }
    if temp.is_none() {
        commit(file).await.map_err(|e| e.message)?;
    }
    if let Err(failed) = upload_and_rename(dir, file, written, temp.is_some()).await {
        if failed.may_have_written {
            remove_leftover(dir, written).await;
        }
        return Err(failed.message);
    }
    let confirmed = match dir.size(file.file_name).await {
        Ok(bytes) if bytes == file.bytes => Ok(bytes),
        Ok(bytes) => Err(format!(
            "size check of {}: the server has {bytes} bytes after the rename, {} were sent",
            dir.locate(file.file_name),
            file.bytes
        )),
        Err(SizeUnknown::NotOffered(why) | SizeUnknown::Failed(why)) => Err(format!(
            "size check of {}: {why}",
            dir.locate(file.file_name)
        )),
    };
    if confirmed.is_ok() {
        remove_stale(dir, file, naming).await;
    }
    confirmed
}

/// [`place_remote`] of a check's probe file, then its removal: the probe ends where a report
/// would, and leaves nothing.
pub async fn probe_remote(
    dir: &mut impl RemoteDir,
    probe: &Outgoing<'_>,
    naming: PartialNaming,
) -> Result<u64, String> {
    let bytes = place_remote(dir, probe, naming).await?;
    dir.remove(probe.file_name).await.map_err(|e| {
        format!(
            "the probe file {} was delivered but cannot be removed (remove it by hand): {e}",
            dir.locate(probe.file_name)
        )
    })?;
    Ok(bytes)
}

/// Tells the delivery's [`crate::deliver::CommitHook`]; a failure fails the attempt before
/// anything is visible under the final name.
async fn commit(file: &Outgoing<'_>) -> Result<(), UploadFailed> {
    file.commit
        .reached(Default::default())
        .await
        .map_err(|e| UploadFailed::written(format!("recording the delivery: {e}")))
}

/// The temporary names earlier runs of this file may have left here ([`Outgoing::stale_runs`]):
/// exact names, never a pattern, so nothing but Ferry's own leftovers can match.
pub fn stale_names(file: &Outgoing<'_>, naming: PartialNaming) -> Vec<String> {
    file.stale_runs
        .iter()
        .filter(|run| **run != file.run_id)
        .filter_map(|run| temporary_name(naming, file.file_name, *run))
        .collect()
}

/// Best effort, after a delivery: removes what earlier runs of this file left behind.
async fn remove_stale(dir: &mut impl RemoteDir, file: &Outgoing<'_>, naming: PartialNaming) {
    for name in stale_names(file, naming) {
        match tokio::time::timeout(REMOVE_LEFTOVER_WITHIN, dir.remove(&name)).await {
            Ok(Ok(())) => tracing::info!(
                target_name = dir.target(),
                file = %name,
                "removed an earlier run's partial upload"
            ),
            // Usually: not there (that run's own cleanup removed it).
            Ok(Err(why)) => tracing::debug!(target_name = dir.target(), file = %name, "{why}"),
            Err(_) => return,
        }
    }
}

/// How a delivery found at its destination was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recognised {
    /// Read back: the same SHA-256.
    Sha256,
    /// Same size; the server would not let it be read back.
    Size,
}

impl Recognised {
    /// The receipt's spelling (`details.confirmedBy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Recognised::Sha256 => "sha256",
            Recognised::Size => "size",
        }
    }
}

/// A found delivery's [`Confirmation`], its receipt saying how it was recognised.
pub fn present(mut receipt: Receipt, how: Recognised) -> Confirmation {
    receipt
        .details
        .insert("confirmedBy".into(), how.as_str().into());
    Confirmation::Present(receipt)
}

/// What [`confirm_remote`] found, as a transport's [`Confirmation`]; `receipt` names the
/// final file at the destination.
pub fn confirmation(
    receipt: Receipt,
    file: &Outgoing<'_>,
    found: Option<Recognised>,
) -> Confirmation {
    match found {
        Some(how) => present(
            Receipt {
                bytes: file.bytes,
                ..receipt
            },
            how,
        ),
        None => Confirmation::Absent,
    }
}

/// After a crash at the point of no return: whether the final file in `dir` is this
/// delivery's (its size, then its SHA-256 read back where the server allows reading).
/// `Ok(None)`: it is not there, or it is another file. `Err`: the server could not be asked.
/// A found delivery also gets earlier runs' leftovers removed.
pub async fn confirm_remote(
    dir: &mut impl RemoteDir,
    file: &Outgoing<'_>,
    naming: PartialNaming,
) -> Result<Option<Recognised>, String> {
    let size_matches = match dir.size(file.file_name).await {
        Ok(bytes) if bytes != file.bytes => return Ok(None),
        Ok(_) => true,
        Err(SizeUnknown::NotOffered(_)) => false,
        Err(SizeUnknown::Failed(why)) => return Err(why),
    };
    let found = match dir.read_sha256(file.file_name).await? {
        Some(hash) if hash.eq_ignore_ascii_case(file.sha256) => Some(Recognised::Sha256),
        Some(_) => None,
        None if size_matches => Some(Recognised::Size),
        None => None,
    };
    if found.is_some() {
        remove_stale(dir, file, naming).await;
    }
    Ok(found)
}

/// [`confirm_remote`] for a file on this machine.
pub fn confirm_local(
    dir: &Path,
    file: &Outgoing<'_>,
    naming: PartialNaming,
) -> io::Result<Option<Recognised>> {
    let path = dir.join(file.file_name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() || meta.len() != file.bytes {
        return Ok(None);
    }
    let (hash, _) = crate::export::hash_file(&path).map_err(|e| io::Error::other(e.to_string()))?;
    if !hex::encode(hash).eq_ignore_ascii_case(file.sha256) {
        return Ok(None);
    }
    remove_stale_local(dir, file, naming);
    Ok(Some(Recognised::Sha256))
}

/// Best effort, after a delivery on this machine: removes what earlier runs left behind.
pub fn remove_stale_local(dir: &Path, file: &Outgoing<'_>, naming: PartialNaming) {
    for name in stale_names(file, naming) {
        if std::fs::remove_file(dir.join(&name)).is_ok() {
            tracing::info!(file = %name, dir = %dir.display(), "removed an earlier run's partial file");
        }
    }
}

/// Best effort: deletes what a failed attempt wrote, with a warning when that fails.
async fn remove_leftover(dir: &mut impl RemoteDir, written: &str) {
    match tokio::time::timeout(REMOVE_LEFTOVER_WITHIN, dir.remove(written)).await {
        Ok(Ok(())) => tracing::debug!(
            target_name = dir.target(),
            file = written,
            "removed the partial upload"
        ),
        Ok(Err(why)) => tracing::warn!(
            target_name = dir.target(),
            file = written,
            "could not remove the partial upload: {why}"
        ),
        Err(_) => tracing::warn!(
            target_name = dir.target(),
            file = written,
            "could not remove the partial upload: timed out"
        ),
    }
}

/// Upload, size check of what was written, rename when `rename`: the steps after which a
/// failure may leave a file behind.
async fn upload_and_rename(
    dir: &mut impl RemoteDir,
    file: &Outgoing<'_>,
    written: &str,
    rename: bool,
) -> Result<(), UploadFailed> {
    let sent = dir.upload(written, file).await?;
    if sent != file.bytes {
        return Err(UploadFailed::written(format!(
            "upload of {}: {sent} bytes sent, {} expected",
            dir.locate(written),
            file.bytes
        )));
    }
    // The temporary file must be complete before anyone can see it under its final name (and
    // a file written in place is removed when it is not). A server without SIZE may also leave
    // hidden files out of its listings: then the transfer's own confirmation has to do, and
    // the size is checked after the rename.
    match dir.size(written).await {
        Ok(size) if size == file.bytes => {}
        Ok(size) => {
            return Err(UploadFailed::written(format!(
                "size check of {}: the server has {size} bytes, {} were sent",
                dir.locate(written),
                file.bytes
            )));
        }
        Err(SizeUnknown::Failed(why)) => {
            return Err(UploadFailed::written(format!(
                "size check of {}: {why}",
                dir.locate(written)
            )));
        }
        Err(SizeUnknown::NotOffered(why)) => {
            tracing::debug!(
                "size of {} unknown before the rename: {why}",
                dir.locate(written)
            );
        }
    }
    if rename {
        commit(file).await?;
        dir.rename_over(written, file.file_name)
            .await
            .map_err(UploadFailed::written)?;
    }
    Ok(())
}

/// Places a file in the local directory `dir` as `file_name` by the rule above, its temporary
/// name chosen by `naming`, and returns its size after the rename. `write_temp` puts the bytes
/// at the temporary path it is given (a copy, a reflink or a hard link; a path that does not
/// exist) and returns how many it placed; `before_rename` may refuse the final path (e.g. a
/// symbolic link someone put there). Fails, leaving no temporary file, when either size is not
/// `expected_bytes`. Written in place, the previous file goes first and a failed placement
/// leaves nothing under the final name.
pub fn place_in_dir(
    dir: &Path,
    file_name: &str,
    run_id: i64,
    naming: PartialNaming,
    expected_bytes: u64,
    write_temp: impl FnOnce(&Path) -> io::Result<u64>,
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<u64> {
    let final_path = dir.join(file_name);
    let temp = match temporary_name(naming, file_name, run_id) {
        Some(name) => dir.join(name),
        None => {
            before_rename(&final_path)?;
            return place_in_place(dir, &final_path, expected_bytes, write_temp);
        }
    };
    if naming == PartialNaming::Directory {
        std::fs::create_dir_all(dir.join(PARTIAL_DIR))?;
    }
    let _ = std::fs::remove_file(&temp); // a leftover of an interrupted attempt
    let placed = write_temp(&temp).and_then(|placed| {
        if placed != expected_bytes {
            return Err(io::Error::other(format!(
                "placed {placed} bytes, expected {expected_bytes}"
            )));
        }
        before_rename(&final_path)?;
        std::fs::rename(&temp, &final_path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    let bytes = std::fs::symlink_metadata(&final_path)?.len();
    if bytes != expected_bytes {
        return Err(io::Error::other(format!(
            "{} has {bytes} bytes after the rename, expected {expected_bytes}",
            final_path.display()
        )));
    }
    Ok(bytes)
}

/// [`place_in_dir`] without a temporary name ([`PartialNaming::InPlace`]).
fn place_in_place(
    dir: &Path,
    final_path: &Path,
    expected_bytes: u64,
    write: impl FnOnce(&Path) -> io::Result<u64>,
) -> io::Result<u64> {
    match std::fs::remove_file(final_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let placed = write(final_path).and_then(|placed| match placed == expected_bytes {
        true => Ok(placed),
        false => Err(io::Error::other(format!(
            "placed {placed} bytes, expected {expected_bytes}"
        ))),
    });
    match placed {
        Ok(bytes) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(bytes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(final_path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::CommitHook;

    #[test]
    fn a_temporary_name_is_hidden_per_run_and_recognized() {
        let name = partial_name("orders.csv", 42);
        assert_eq!(name, ".orders.csv.ferry-partial-42");
        assert!(is_partial_name(&name));
        assert!(!is_partial_name("orders.csv"));
        assert!(!is_partial_name(".profile"));
    }

    #[test]
    fn a_short_placement_leaves_neither_the_file_nor_its_temporary_name() {
        let dir = std::env::temp_dir().join(format!("ferry-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = place_in_dir(
            &dir,
            "orders.csv",
            7,
            PartialNaming::Hidden,
            10,
            |temp| std::fs::write(temp, b"12345").map(|()| 5),
            |_| Ok(()),
        );
        assert!(
            short
                .unwrap_err()
                .to_string()
                .contains("placed 5 bytes, expected 10")
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let placed = place_in_dir(
            &dir,
            "orders.csv",
            7,
            PartialNaming::Hidden,
            5,
            |temp| std::fs::write(temp, b"12345").map(|()| 5),
            |_| Ok(()),
        );
        assert_eq!(placed.unwrap(), 5);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["orders.csv"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A remote directory in memory that can be told to misbehave at one step.
    #[derive(Default)]
    struct FakeDir {
        files: std::collections::BTreeMap<String, u64>,
        /// Bytes the server keeps of an upload (a truncating disk), when set.
        keeps: Option<u64>,
        no_size_command: bool,
        refuses_rename: bool,
        /// Refuses to create names starting with a dot (pure-ftpd `-x`).
        refuses_dot_files: bool,
        removed: Vec<String>,
        dirs: Vec<String>,
    }

    impl RemoteDir for FakeDir {
        fn target(&self) -> &str {
            "fake"
        }
        fn locate(&self, name: &str) -> String {
            format!("/out/{name} on fake:21")
        }
        async fn upload(&mut self, temp: &str, file: &Outgoing<'_>) -> Result<u64, UploadFailed> {
            if self.refuses_dot_files && temp.starts_with('.') {
                return Err(UploadFailed::refused(format!(
                    "upload of {temp}: 550 dot files are not allowed"
                )));
            }
            let kept = self.keeps.unwrap_or(file.bytes);
            self.files.insert(temp.to_string(), kept);
            Ok(file.bytes)
        }
        async fn size(&mut self, name: &str) -> Result<u64, SizeUnknown> {
            if self.no_size_command {
                return Err(SizeUnknown::NotOffered("500 SIZE not understood".into()));
            }
            self.files
                .get(name)
                .copied()
                // As FTP's 550 and SFTP's NoSuchFile: a refusal, the connection still works.
                .ok_or_else(|| SizeUnknown::NotOffered(format!("{name}: no such file")))
        }
        async fn rename_over(&mut self, temp: &str, name: &str) -> Result<(), String> {
            if self.refuses_rename {
                return Err(format!("rename of {temp}: 553 not allowed"));
            }
            let bytes = self.files.remove(temp).ok_or("no temp")?;
            self.files.insert(name.to_string(), bytes);
            Ok(())
        }
        async fn remove(&mut self, temp: &str) -> Result<(), String> {
            self.removed.push(temp.to_string());
            self.files
                .remove(temp)
                .map(drop)
                .ok_or("no such file".into())
        }
        async fn make_dir(&mut self, name: &str) -> Result<(), String> {
            self.dirs.push(name.to_string());
            Ok(())
        }
        async fn read_sha256(&mut self, name: &str) -> Result<Option<String>, String> {
            Ok(self.files.get(name).map(|_| "ab".repeat(32)))
        }
    }

    fn deliver_to(dir: &mut FakeDir, bytes: u64) -> Result<u64, String> {
        deliver_named(dir, bytes, PartialNaming::Hidden)
    }

    fn deliver_named(dir: &mut FakeDir, bytes: u64, naming: PartialNaming) -> Result<u64, String> {
        deliver_with(dir, bytes, naming, &[], CommitHook::default())
    }

    fn about() -> crate::deliver::About {
        crate::deliver::About {
            namespace: "shop".into(),
            schedule: "daily".into(),
            slot: jiff::Zoned::now(),
            rows: 1,
        }
    }

    fn outgoing<'a>(
        about: &'a crate::deliver::About,
        bytes: u64,
        stale_runs: &'a [i64],
        commit: CommitHook,
    ) -> Outgoing<'a> {
        Outgoing {
            staged: Path::new("/nonexistent/staged"),
            file_name: "orders.csv",
            bytes,
            sha256: "abababababababababababababababababababababababababababababababab",
            run_id: 9,
            about,
            sharing: crate::deliver::Sharing::Sole,
            delivery_key: Some("shop/daily/0/fake"),
            stale_runs,
            commit,
        }
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn deliver_with(
        dir: &mut FakeDir,
        bytes: u64,
        naming: PartialNaming,
        stale_runs: &[i64],
        commit: CommitHook,
    ) -> Result<u64, String> {
        let about = about();
        let file = outgoing(&about, bytes, stale_runs, commit);
        block_on(place_remote(dir, &file, naming))
    }

    #[test]
    fn the_commit_hook_runs_before_the_rename_and_its_failure_leaves_nothing_visible() {
        let mut dir = FakeDir::default();
        let refusing = CommitHook::new(|_| {
            Box::pin(async { Err(crate::Error::State("the ledger is gone".into())) })
        });
        let failed = deliver_with(&mut dir, 10, PartialNaming::Hidden, &[], refusing).unwrap_err();
        assert!(failed.contains("recording the delivery"), "{failed}");
        assert!(dir.files.is_empty(), "{:?}", dir.files);
        assert_eq!(dir.removed, [".orders.csv.ferry-partial-9"]);

        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = calls.clone();
        let counting = CommitHook::new(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        });
        assert_eq!(
            deliver_with(&mut dir, 10, PartialNaming::Hidden, &[], counting),
            Ok(10)
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_delivery_removes_earlier_runs_leftovers_by_their_exact_names_only() {
        let mut dir = FakeDir::default();
        for name in [
            ".orders.csv.ferry-partial-3",
            ".orders.csv.ferry-partial-5",
            ".orders.csv.ferry-partial-77",
            ".other.csv.ferry-partial-3",
        ] {
            dir.files.insert(name.into(), 1);
        }
        let placed = deliver_with(
            &mut dir,
            10,
            PartialNaming::Hidden,
            &[3, 5, 9],
            CommitHook::default(),
        );
        assert_eq!(placed, Ok(10));
        let left: Vec<_> = dir.files.keys().cloned().collect();
        // Run 77 is not one the ledger named (in flight elsewhere, or not ours): kept.
        assert_eq!(
            left,
            [
                ".orders.csv.ferry-partial-77",
                ".other.csv.ferry-partial-3",
                "orders.csv"
            ]
        );
    }

    #[test]
    fn an_interrupted_delivery_is_recognised_by_size_and_hash_and_nothing_else() {
        let about = about();
        let file = outgoing(&about, 10, &[], CommitHook::default());
        let mut dir = FakeDir::default();
        let absent = block_on(confirm_remote(&mut dir, &file, PartialNaming::Hidden));
        assert_eq!(absent, Ok(None));
        dir.files.insert("orders.csv".into(), 7);
        let other_size = block_on(confirm_remote(&mut dir, &file, PartialNaming::Hidden));
        assert_eq!(other_size, Ok(None));
        dir.files.insert("orders.csv".into(), 10);
        let found = block_on(confirm_remote(&mut dir, &file, PartialNaming::Hidden));
        assert_eq!(found, Ok(Some(Recognised::Sha256)));
        let other_hash = Outgoing {
            sha256: "cd",
            ..outgoing(&about, 10, &[], CommitHook::default())
        };
        let found = block_on(confirm_remote(&mut dir, &other_hash, PartialNaming::Hidden));
        assert_eq!(found, Ok(None));
    }

    #[test]
    fn a_remote_delivery_renames_a_complete_upload_and_confirms_its_size() {
        let mut dir = FakeDir::default();
        assert_eq!(deliver_to(&mut dir, 10), Ok(10));
        assert_eq!(
            dir.files.into_iter().collect::<Vec<_>>(),
            [("orders.csv".to_string(), 10)]
        );
        assert!(dir.removed.is_empty());
    }

    #[test]
    fn a_short_remote_upload_is_never_renamed_and_its_temporary_file_is_removed() {
        let mut dir = FakeDir {
            keeps: Some(4),
            ..FakeDir::default()
        };
        let err = deliver_to(&mut dir, 10).unwrap_err();
        assert_eq!(
            err,
            "size check of /out/.orders.csv.ferry-partial-9 on fake:21: the server has 4 bytes, \
             10 were sent"
        );
        assert!(dir.files.is_empty(), "{:?}", dir.files);
        assert_eq!(dir.removed, [".orders.csv.ferry-partial-9"]);
    }

    #[test]
    fn a_refused_rename_removes_the_temporary_file_and_keeps_the_servers_words() {
        let mut dir = FakeDir {
            refuses_rename: true,
            ..FakeDir::default()
        };
        let err = deliver_to(&mut dir, 10).unwrap_err();
        assert!(err.contains("553 not allowed"), "{err}");
        assert!(dir.files.is_empty(), "{:?}", dir.files);
        assert_eq!(dir.removed, [".orders.csv.ferry-partial-9"]);
    }

    #[test]
    fn a_server_without_sizes_gets_its_file_renamed_but_the_delivery_cannot_be_confirmed() {
        let mut dir = FakeDir {
            no_size_command: true,
            ..FakeDir::default()
        };
        let err = deliver_to(&mut dir, 10).unwrap_err();
        assert_eq!(
            err,
            "size check of /out/orders.csv on fake:21: 500 SIZE not understood"
        );
        // Renamed (the transfer's own confirmation had to do), nothing left to remove.
        assert_eq!(dir.files.keys().collect::<Vec<_>>(), ["orders.csv"]);
        assert!(dir.removed.is_empty());
    }

    #[test]
    fn a_refusal_before_anything_was_written_leaves_nothing_to_remove() {
        let mut dir = FakeDir {
            refuses_dot_files: true,
            ..FakeDir::default()
        };
        let err = deliver_to(&mut dir, 10).unwrap_err();
        assert!(err.contains("550 dot files are not allowed"), "{err}");
        assert!(dir.removed.is_empty(), "no removal, so no false warning");
    }

    #[test]
    fn each_naming_writes_its_own_temporary_name_and_ends_with_the_final_name_only() {
        for (naming, written) in [
            (PartialNaming::Suffix, "orders.csv.ferry-partial-9"),
            (
                PartialNaming::Directory,
                "ferry-partial/orders.csv.ferry-partial-9",
            ),
            (PartialNaming::InPlace, "orders.csv"),
        ] {
            assert_eq!(
                temporary_name(naming, "orders.csv", 9)
                    .as_deref()
                    .unwrap_or("orders.csv"),
                written
            );
            let mut dir = FakeDir {
                refuses_dot_files: true,
                ..FakeDir::default()
            };
            assert_eq!(deliver_named(&mut dir, 10, naming), Ok(10), "{naming:?}");
            assert_eq!(
                dir.files.keys().collect::<Vec<_>>(),
                ["orders.csv"],
                "{naming:?}"
            );
            let staging = usize::from(naming == PartialNaming::Directory);
            assert_eq!(dir.dirs.len(), staging, "{naming:?}");
        }
    }

    #[test]
    fn a_short_file_written_in_place_is_removed_from_under_its_final_name() {
        let mut dir = FakeDir {
            keeps: Some(4),
            ..FakeDir::default()
        };
        let err = deliver_named(&mut dir, 10, PartialNaming::InPlace).unwrap_err();
        assert!(
            err.contains("the server has 4 bytes, 10 were sent"),
            "{err}"
        );
        assert!(dir.files.is_empty(), "{:?}", dir.files);
        assert_eq!(dir.removed, ["orders.csv"]);
    }

    #[test]
    fn a_local_placement_by_every_naming_leaves_the_final_file_alone() {
        let dir = std::env::temp_dir().join(format!("ferry-namings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for naming in [
            PartialNaming::Hidden,
            PartialNaming::Suffix,
            PartialNaming::Directory,
            PartialNaming::InPlace,
        ] {
            let mut written_at = None;
            let placed = place_in_dir(
                &dir,
                "orders.csv",
                8,
                naming,
                5,
                |at| {
                    written_at = Some(at.strip_prefix(&dir).unwrap().to_path_buf());
                    std::fs::write(at, b"12345").map(|()| 5)
                },
                |_| Ok(()),
            );
            assert_eq!(placed.unwrap(), 5, "{naming:?}");
            let expected =
                temporary_name(naming, "orders.csv", 8).unwrap_or_else(|| "orders.csv".into());
            assert_eq!(written_at.unwrap(), Path::new(&expected), "{naming:?}");
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n != PARTIAL_DIR)
                .collect();
            names.sort();
            assert_eq!(names, ["orders.csv"], "{naming:?}");
        }
        assert_eq!(std::fs::read_dir(dir.join(PARTIAL_DIR)).unwrap().count(), 0);

        // Written in place and short: nothing is left under the final name.
        let short = place_in_dir(
            &dir,
            "orders.csv",
            9,
            PartialNaming::InPlace,
            10,
            |at| std::fs::write(at, b"12345").map(|()| 5),
            |_| Ok(()),
        );
        assert!(short.is_err());
        assert!(!dir.join("orders.csv").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
