//! The one small trait every transport implements, and what passes through it: a staged file
//! ([`Outgoing`]) in, a [`Receipt`] out. A leaf: transports build on it, `deliver` picks one.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

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
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
}

/// Puts files somewhere.
pub trait Transport: Send + Sync {
    /// Delivers one file atomically and confirms it.
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>>;
}
