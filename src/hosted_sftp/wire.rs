//! The SFTP version 3 wire format, as OpenSSH speaks it: message and flag numbers, status
//! codes and how errors map to them, file attributes, directory entry lines (`ls -l`), and a
//! reader and writer of frames that copy nothing they need not. A leaf under [`super::sftp`].

use std::borrow::Cow;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::jail::{self, Refusal, VPath};

pub(super) const SSH_FXP_INIT: u8 = 1;
pub(super) const SSH_FXP_VERSION: u8 = 2;
pub(super) const SSH_FXP_OPEN: u8 = 3;
pub(super) const SSH_FXP_CLOSE: u8 = 4;
pub(super) const SSH_FXP_READ: u8 = 5;
pub(super) const SSH_FXP_WRITE: u8 = 6;
pub(super) const SSH_FXP_LSTAT: u8 = 7;
pub(super) const SSH_FXP_FSTAT: u8 = 8;
pub(super) const SSH_FXP_SETSTAT: u8 = 9;
pub(super) const SSH_FXP_FSETSTAT: u8 = 10;
pub(super) const SSH_FXP_OPENDIR: u8 = 11;
pub(super) const SSH_FXP_READDIR: u8 = 12;
pub(super) const SSH_FXP_REMOVE: u8 = 13;
pub(super) const SSH_FXP_MKDIR: u8 = 14;
pub(super) const SSH_FXP_RMDIR: u8 = 15;
pub(super) const SSH_FXP_REALPATH: u8 = 16;
pub(super) const SSH_FXP_STAT: u8 = 17;
pub(super) const SSH_FXP_RENAME: u8 = 18;
pub(super) const SSH_FXP_READLINK: u8 = 19;
pub(super) const SSH_FXP_SYMLINK: u8 = 20;
pub(super) const SSH_FXP_STATUS: u8 = 101;
pub(super) const SSH_FXP_HANDLE: u8 = 102;
pub(super) const SSH_FXP_DATA: u8 = 103;
pub(super) const SSH_FXP_NAME: u8 = 104;
pub(super) const SSH_FXP_ATTRS: u8 = 105;
pub(super) const SSH_FXP_EXTENDED: u8 = 200;
pub(super) const SSH_FXP_EXTENDED_REPLY: u8 = 201;

pub(super) const SSH_FXF_READ: u32 = 0x01;
pub(super) const SSH_FXF_WRITE: u32 = 0x02;
pub(super) const SSH_FXF_APPEND: u32 = 0x04;
pub(super) const SSH_FXF_CREAT: u32 = 0x08;
pub(super) const SSH_FXF_TRUNC: u32 = 0x10;
pub(super) const SSH_FXF_EXCL: u32 = 0x20;

pub(super) const ATTR_SIZE: u32 = 0x01;
pub(super) const ATTR_UIDGID: u32 = 0x02;
pub(super) const ATTR_PERMISSIONS: u32 = 0x04;
pub(super) const ATTR_ACMODTIME: u32 = 0x08;
pub(super) const ATTR_EXTENDED: u32 = 0x8000_0000;

pub(super) const POSIX_RENAME: &str = "posix-rename@openssh.com";
pub(super) const LIMITS: &str = "limits@openssh.com";
pub(super) const FSYNC: &str = "fsync@openssh.com";

/// SFTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Code {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

/// A failed request: the status sent back.
#[derive(Debug)]
pub(super) struct Status {
    pub(super) code: Code,
    pub(super) message: Cow<'static, str>,
}

impl Status {
    pub(super) fn new(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad() -> Self {
        Status::new(Code::BadMessage, "Bad message")
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        let code = match r {
            Refusal::Hidden => Code::NoSuchFile,
            Refusal::BadPath => Code::BadMessage,
            Refusal::ReadOnly | Refusal::Structural | Refusal::Symlink => Code::PermissionDenied,
        };
        Status::new(code, r.message())
    }
}

impl From<io::Error> for Status {
    fn from(e: io::Error) -> Self {
        if jail::is_symlink_error(&e) {
            return Refusal::Symlink.into();
        }
        match e.kind() {
            io::ErrorKind::NotFound => Status::new(Code::NoSuchFile, "No such file"),
            io::ErrorKind::PermissionDenied => {
                Status::new(Code::PermissionDenied, "Permission denied")
            }
            io::ErrorKind::AlreadyExists => Status::new(Code::Failure, "File exists"),
            io::ErrorKind::DirectoryNotEmpty => Status::new(Code::Failure, "Directory not empty"),
            io::ErrorKind::NotADirectory => Status::new(Code::Failure, "Not a directory"),
            io::ErrorKind::IsADirectory => Status::new(Code::Failure, "Is a directory"),
            io::ErrorKind::StorageFull => Status::new(Code::Failure, "No space left on device"),
            _ => Status::new(Code::Failure, e.to_string()),
        }
    }
}

pub(super) type Reply = Result<Bytes, Status>;

/// `ls -l`-style line for a directory entry, as OpenSSH's `ls -l` prints it.
pub(super) fn longname(name: &str, meta: &Metadata, owner: &str, now: SystemTime) -> String {
    let mode = meta.mode();
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o100000 => '-',
        0o010000 => 'p',
        0o140000 => 's',
        0o020000 => 'c',
        0o060000 => 'b',
        _ => '?',
    };
    let mut perms = String::with_capacity(9);
    for (bit, c) in [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ] {
        perms.push(if mode & bit != 0 { c } else { '-' });
    }
    let mtime = meta.mtime();
    let when = jiff::Timestamp::from_second(mtime)
        .map(|t| {
            let recent = now
                .duration_since(UNIX_EPOCH)
                .map(|d| (d.as_secs() as i64 - mtime).abs() < 180 * 24 * 3600)
                .unwrap_or(false);
            let z = t.to_zoned(jiff::tz::TimeZone::UTC);
            if recent {
                z.strftime("%b %e %H:%M").to_string()
            } else {
                z.strftime("%b %e  %Y").to_string()
            }
        })
        .unwrap_or_else(|_| "Jan  1  1970".to_string());
    format!(
        "{kind}{perms} {:>4} {owner:<8} {owner:<8} {:>8} {when} {name}",
        meta.nlink(),
        meta.size()
    )
}

pub(super) fn ok(id: u32) -> Bytes {
    status(id, &Status::new(Code::Ok, "Success"))
}

pub(super) fn status(id: u32, s: &Status) -> Bytes {
    let mut w = Writer::new(SSH_FXP_STATUS, id);
    w.u32(s.code as u32);
    w.string(s.message.as_bytes());
    w.string(b"en");
    w.finish()
}

pub(super) fn version_frame() -> Bytes {
    let mut w = Writer::untagged(SSH_FXP_VERSION);
    w.u32(3);
    for ext in [POSIX_RENAME, LIMITS, FSYNC] {
        w.string(ext.as_bytes());
        w.string(b"1");
    }
    w.finish()
}

/// File attributes as SFTP v3 carries them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Attrs {
    pub(super) size: Option<u64>,
    pub(super) uid_gid: Option<(u32, u32)>,
    pub(super) permissions: Option<u32>,
    pub(super) times: Option<(u32, u32)>,
}

impl Attrs {
    pub(super) fn of(meta: &Metadata) -> Self {
        Attrs {
            size: Some(meta.size()),
            uid_gid: Some((meta.uid(), meta.gid())),
            permissions: Some(meta.mode()),
            times: Some((
                meta.atime().clamp(0, i64::from(u32::MAX)) as u32,
                meta.mtime().clamp(0, i64::from(u32::MAX)) as u32,
            )),
        }
    }

    pub(super) fn read(r: &mut Reader) -> Result<Self, Status> {
        let flags = r.u32().ok_or_else(Status::bad)?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(r.u64().ok_or_else(Status::bad)?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((
                r.u32().ok_or_else(Status::bad)?,
                r.u32().ok_or_else(Status::bad)?,
            ));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(r.u32().ok_or_else(Status::bad)?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((
                r.u32().ok_or_else(Status::bad)?,
                r.u32().ok_or_else(Status::bad)?,
            ));
        }
        if flags & ATTR_EXTENDED != 0 {
            let count = r.u32().ok_or_else(Status::bad)?;
            for _ in 0..count {
                r.bytes().ok_or_else(Status::bad)?;
                r.bytes().ok_or_else(Status::bad)?;
            }
        }
        Ok(a)
    }

    pub(super) fn write(&self, w: &mut Writer) {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if self.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if self.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        w.u32(flags);
        if let Some(size) = self.size {
            w.u64(size);
        }
        if let Some((uid, gid)) = self.uid_gid {
            w.u32(uid);
            w.u32(gid);
        }
        if let Some(p) = self.permissions {
            w.u32(p);
        }
        if let Some((a, m)) = self.times {
            w.u32(a);
            w.u32(m);
        }
    }
}

/// Reads the fields of a request frame; slices share the frame's memory.
pub(super) struct Reader(pub(super) Bytes);

impl Reader {
    pub(super) fn u8(&mut self) -> Option<u8> {
        let b = *self.0.first()?;
        self.0 = self.0.slice(1..);
        Some(b)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        let v = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?);
        self.0 = self.0.slice(4..);
        Some(v)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        let v = u64::from_be_bytes(self.0.get(..8)?.try_into().ok()?);
        self.0 = self.0.slice(8..);
        Some(v)
    }

    pub(super) fn bytes(&mut self) -> Option<Bytes> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return None;
        }
        let v = self.0.slice(..len);
        self.0 = self.0.slice(len..);
        Some(v)
    }

    /// A path: UTF-8 (what OpenSSH clients send on UTF-8 systems), resolved in the jail.
    pub(super) fn path(&mut self) -> Result<VPath, Status> {
        let raw = self.bytes().ok_or_else(Status::bad)?;
        let s = std::str::from_utf8(&raw)
            .map_err(|_| Status::new(Code::Failure, "File names must be UTF-8"))?;
        Ok(VPath::parse(s)?)
    }
}

/// Builds an answer frame, length first.
pub(super) struct Writer(BytesMut);

impl Writer {
    pub(super) fn new(kind: u8, id: u32) -> Self {
        let mut w = Writer::untagged(kind);
        w.u32(id);
        w
    }

    pub(super) fn untagged(kind: u8) -> Self {
        let mut b = BytesMut::with_capacity(64);
        b.put_u32(0);
        b.put_u8(kind);
        Writer(b)
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.put_u64(v);
    }

    pub(super) fn string(&mut self, v: &[u8]) {
        self.0.put_u32(v.len() as u32);
        self.0.put_slice(v);
    }

    pub(super) fn finish(mut self) -> Bytes {
        let len = (self.0.len() - 4) as u32;
        self.0[0..4].copy_from_slice(&len.to_be_bytes());
        self.0.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let a = Attrs {
            size: Some(7),
            uid_gid: Some((1, 2)),
            permissions: Some(0o100644),
            times: Some((3, 4)),
        };
        let mut w = Writer::new(SSH_FXP_ATTRS, 9);
        a.write(&mut w);
        let frame = w.finish();
        let mut r = Reader(frame.slice(4..));
        assert_eq!(r.u8(), Some(SSH_FXP_ATTRS));
        assert_eq!(r.u32(), Some(9));
        assert_eq!(Attrs::read(&mut r).expect("attrs"), a);
        assert!(r.0.is_empty());
    }

    #[test]
    fn truncated_strings_are_bad_messages() {
        let mut r = Reader(Bytes::from_static(&[0, 0, 0, 9, b'a']));
        assert!(r.bytes().is_none());
    }

    #[test]
    fn status_frames_carry_their_length() {
        let f = status(5, &Status::new(Code::NoSuchFile, "No such file"));
        let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(f[4], SSH_FXP_STATUS);
    }

    #[test]
    fn directory_entries_are_described_like_ls_l() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "abc").expect("write");
        let meta = std::fs::metadata(dir.path().join("f")).expect("meta");
        let line = longname("f", &meta, "alice", SystemTime::now());
        assert!(line.starts_with("-rw"), "{line}");
        assert!(line.contains(" alice "), "{line}");
        assert!(line.ends_with(" f"), "{line}");
    }
}
