//! The one small trait every transport implements, and what passes through it: a staged file
//! ([`Outgoing`]) in, a [`Receipt`] out. A leaf: transports build on it, `deliver` picks one.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Result;

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
    /// Names this delivery across retries, resumes and processes: the state's lineage,
    /// namespace, schedule, slot and target (and the run, for a `--resend`). An email's Message-ID derives from it, so a
    /// message sent twice is recognisably the same. `None` for a file sent by hand.
    pub delivery_key: Option<&'a str>,
    /// Earlier runs of this file that ended without delivering it here: their temporary files
    /// (under this target's naming) are removed once this delivery succeeded.
    pub stale_runs: &'a [i64],
    /// Told when the delivery reaches its point of no return (see [`CommitHook`]).
    pub commit: CommitHook,
}

/// The callback of [`CommitHook`]: evidence in, a future that records it.
type CommitFn = dyn Fn(BTreeMap<String, String>) -> BoxFuture<'static, Result<()>> + Send + Sync;

/// Called by a transport at the point of no return of a delivery: the file is complete
/// under its temporary name and the rename comes next (or, written in place, the first byte;
/// or, for email, DATA). The runner records `delivering` in the ledger there, so that after a
/// crash it knows to look at the destination ([`Transport::confirm`]) before sending again.
/// A failed hook fails the delivery before anything becomes visible.
#[derive(Clone, Default)]
pub struct CommitHook(Option<Arc<CommitFn>>);

impl std::fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CommitHook(set)"
        } else {
            "CommitHook(none)"
        })
    }
}

impl CommitHook {
    /// A hook that calls `f` with the transport's evidence (e.g. an email's Message-ID).
    pub fn new(
        f: impl Fn(BTreeMap<String, String>) -> BoxFuture<'static, Result<()>> + Send + Sync + 'static,
    ) -> Self {
        CommitHook(Some(Arc::new(f)))
    }

    /// Tells the hook, if any.
    pub async fn reached(&self, evidence: BTreeMap<String, String>) -> Result<()> {
        match &self.0 {
            Some(f) => f(evidence).await,
            None => Ok(()),
        }
    }

    /// [`CommitHook::reached`] from blocking code (a `spawn_blocking` thread), as an I/O error.
    pub fn reached_blocking(&self, evidence: BTreeMap<String, String>) -> std::io::Result<()> {
        let Some(f) = &self.0 else { return Ok(()) };
        tokio::runtime::Handle::current()
            .block_on(f(evidence))
            .map_err(|e| std::io::Error::other(format!("recording the delivery: {e}")))
    }
}

/// What the destination holds of a delivery interrupted at its point of no return.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirmation {
    /// The file is there, complete: it is recorded as delivered and not sent again.
    Present(Receipt),
    /// It is not (or something else is): it is delivered again.
    Absent,
    /// The destination cannot be asked (a sent email): the outcome stays unknown, and only
    /// an explicit `--resend` sends again. The text says why.
    Unknown(String),
}

/// An [`Outgoing`] that owns its parts, to move into a blocking task.
#[derive(Clone, Debug)]
pub struct OwnedOutgoing {
    staged: std::path::PathBuf,
    file_name: String,
    bytes: u64,
    sha256: String,
    run_id: i64,
    about: About,
    sharing: Sharing,
    delivery_key: Option<String>,
    stale_runs: Vec<i64>,
    commit: CommitHook,
}

impl OwnedOutgoing {
    /// A copy of `file`.
    pub fn of(file: &Outgoing<'_>) -> Self {
        OwnedOutgoing {
            staged: file.staged.to_path_buf(),
            file_name: file.file_name.to_string(),
            bytes: file.bytes,
            sha256: file.sha256.to_string(),
            run_id: file.run_id,
            about: file.about.clone(),
            sharing: file.sharing,
            delivery_key: file.delivery_key.map(str::to_string),
            stale_runs: file.stale_runs.to_vec(),
            commit: file.commit.clone(),
        }
    }

    /// `f` of the file as an [`Outgoing`].
    pub fn with<T>(&self, f: impl FnOnce(&Outgoing<'_>) -> T) -> T {
        f(&Outgoing {
            staged: &self.staged,
            file_name: &self.file_name,
            bytes: self.bytes,
            sha256: &self.sha256,
            run_id: self.run_id,
            about: &self.about,
            sharing: self.sharing,
            delivery_key: self.delivery_key.as_deref(),
            stale_runs: &self.stale_runs,
            commit: self.commit.clone(),
        })
    }
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
    /// Name of the ReportSchedule; empty for a file sent by hand ([`About::by_hand`]).
    pub schedule: String,
    /// The slot the run is for, in the schedule's time zone (date tokens render from it).
    pub slot: jiff::Zoned,
    /// Data rows in the file.
    pub rows: u64,
}

/// What `{schedule}` says of a file sent by hand.
pub const BY_HAND_LABEL: &str = "ferry deliver";
/// The object-path segment of files sent by hand: no schedule's name can hold `_`.
pub const BY_HAND_SEGMENT: &str = "_deliver";

impl About {
    /// A file sent by hand (`ferry deliver`): no schedule, no row count, the slot is `now`.
    pub fn by_hand(namespace: &str, now: jiff::Zoned) -> About {
        About {
            namespace: namespace.to_string(),
            schedule: String::new(),
            slot: now,
            rows: 0,
        }
    }

    /// The schedule's name for people (`{schedule}` in an email's subject and body).
    pub fn schedule_label(&self) -> &str {
        if self.schedule.is_empty() {
            BY_HAND_LABEL
        } else {
            &self.schedule
        }
    }

    /// The schedule's segment in an object path, never mistaken for a schedule's own.
    pub fn schedule_segment(&self) -> &str {
        if self.schedule.is_empty() {
            BY_HAND_SEGMENT
        } else {
            &self.schedule
        }
    }
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// Puts files somewhere.
pub trait Transport: Send + Sync {
    /// Delivers one file atomically and confirms it.
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>>;

    /// After a crash at the point of no return: whether `file` already arrived (same name,
    /// same size, same SHA-256 where the destination lets it be read back). The default,
    /// for a destination that cannot be asked, is [`Confirmation::Absent`]: sent again
    /// (at least once).
    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        let _ = file;
        Box::pin(async { Ok(Confirmation::Absent) })
    }

    /// Checks ahead that a delivery would succeed now, without delivering (`ferry check`):
    /// the same connection, server identity, login and directory as a delivery, then `probe`
    /// (an empty file named by `crate::check`) delivered exactly as a report is (temporary
    /// name, rename, size confirmed) and removed, so nothing is left. Email: the SMTP session
    /// up to AUTH, then QUIT, nothing sent. Returns what was reached. The default, for a
    /// destination that cannot be probed, is an error saying so.
    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        let _ = probe;
        Box::pin(async {
            Err(crate::Error::Delivery {
                target: String::new(),
                message: "this destination cannot be checked ahead".into(),
            })
        })
    }
}

/// The MIME type of a report, from its extension.
pub fn content_type_for(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => "text/csv",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}
