//! The SFTP protocol (version 3, as OpenSSH speaks it) over one channel, confined to a jail.
//!
//! Requests are handled one at a time, in order, by a plain synchronous [`SftpSession`] on its
//! own thread (file I/O blocks; keeping it off the async runtime keeps the SSH side of every
//! session responsive). The codec ([`super::wire`]) is our own rather than a library so that the
//! two hot paths copy nothing they need not: a READ reads the file straight into the reply
//! frame, a WRITE writes straight from the received frame.
//!
//! Every request looks up the user in the registry current at that moment, so a removed user
//! is refused at its next request and an access change applies to the next operation.
//!
//! Reports Ferry delivered are never changed in place, whatever the connection's access: a
//! regular file without its owner-write bit (Ferry delivers with mode 0440) or with more than
//! one link (a report hard-linked into several read-only connections) is *protected*: it can
//! be read, renamed or removed by a `readWrite` user (which changes only that user's own
//! directory entry), but not opened for writing, truncated or have its attributes changed.
//! Files a client creates always keep their owner-write bit, so everything a client uploaded
//! stays writable by it. One recipient can therefore never change what another receives.

use std::collections::HashMap;
use std::fs::{File, FileTimes, Metadata, OpenOptions, Permissions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::jail::{self, Jail, Refusal, VPath};
use super::wire::*;

use super::users::SharedUsers;

/// The largest frame (after its length) a client may send: OpenSSH's 256 KiB message limit,
/// plus room for headers.
pub(crate) const MAX_FRAME: usize = 256 * 1024 + 4096;
/// The largest READ answered, and the largest WRITE the client is told to send
/// (OpenSSH's sftp-server: 256 KiB minus 1 KiB).
pub(crate) const MAX_READ: u32 = 256 * 1024 - 1024;
/// Open handles per session.
const MAX_HANDLES: usize = 256;
/// Directory entries per READDIR answer.
const NAMES_PER_READDIR: usize = 128;

/// What the session thread does with a request's answer.
pub(crate) enum Outcome {
    /// Send this frame and go on.
    Reply(Bytes),
    /// Send this frame and end the session (access was revoked).
    Close(Bytes),
}

/// What a session knows about its user and place.
pub(crate) struct SessionContext {
    /// The registry, read at every request.
    pub users: SharedUsers,
    /// The logged-in user.
    pub user: String,
    /// The user's root on disk (canonical).
    pub root: PathBuf,
    /// Set by the server when the session's credential no longer authorizes it.
    pub revoked: Arc<AtomicBool>,
    /// The client's address, for logs.
    pub peer: SocketAddr,
    /// One per user, shared by all its sessions: held from the checks of a path-based request
    /// to its system call, so another session of the same user cannot rename something into
    /// a path between the moment it is checked and the moment it is used.
    pub namespace_lock: Arc<Mutex<()>>,
}

enum OpenHandle {
    File {
        file: File,
        path: VPath,
        writable: bool,
        read_bytes: u64,
        written_bytes: u64,
    },
    Dir {
        entries: Vec<(String, Metadata)>,
        pos: usize,
    },
}

/// Totals of a session, logged when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    /// Bytes sent to the client from files.
    pub read: u64,
    /// Bytes written to files.
    pub written: u64,
}

/// One SFTP session: its handles and the context it checks every request against.
pub(crate) struct SftpSession {
    ctx: SessionContext,
    handles: HashMap<u32, OpenHandle>,
    next_handle: u32,
    initialized: bool,
    totals: Totals,
}

impl SftpSession {
    /// A session for `ctx`, waiting for the client's INIT.
    pub fn new(ctx: SessionContext) -> Self {
        SftpSession {
            ctx,
            handles: HashMap::new(),
            next_handle: 1,
            initialized: false,
            totals: Totals::default(),
        }
    }

    /// What was transferred so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Handles one request frame (without its length) and returns the answer.
    pub fn handle(&mut self, frame: Bytes) -> Outcome {
        let mut r = Reader(frame);
        let Some(kind) = r.u8() else {
            return Outcome::Reply(status(0, &Status::bad()));
        };
        if kind == SSH_FXP_INIT {
            self.initialized = true;
            return Outcome::Reply(version_frame());
        }
        let Some(id) = r.u32() else {
            return Outcome::Reply(status(0, &Status::bad()));
        };
        if !self.initialized {
            return Outcome::Reply(status(id, &Status::bad()));
        }
        let users = super::users::current(&self.ctx.users);
        let user = match users.get(&self.ctx.user) {
            Some(user) if !self.ctx.revoked.load(Ordering::Acquire) => user.clone(),
            _ => {
                return Outcome::Close(status(
                    id,
                    &Status::new(Code::PermissionDenied, "Access revoked"),
                ));
            }
        };
        let root = self.ctx.root.clone();
        let jail = Jail {
            root: &root,
            user: &user,
        };
        let lock = self.ctx.namespace_lock.clone();
        let _guard = uses_paths(kind).then(|| lock.lock().unwrap_or_else(|e| e.into_inner()));
        let answer = self
            .dispatch(&jail, kind, id, &mut r)
            .unwrap_or_else(|s| status(id, &s));
        Outcome::Reply(answer)
    }

    fn dispatch(&mut self, jail: &Jail<'_>, kind: u8, id: u32, r: &mut Reader) -> Reply {
        match kind {
            SSH_FXP_READ => self.read(jail, id, r),
            SSH_FXP_WRITE => self.write(jail, r).map(|()| ok(id)),
            SSH_FXP_OPEN => self.open(jail, id, r),
            SSH_FXP_CLOSE => self.close(r).map(|()| ok(id)),
            SSH_FXP_LSTAT | SSH_FXP_STAT => self.stat(jail, id, r),
            SSH_FXP_FSTAT => self.fstat(jail, id, r),
            SSH_FXP_SETSTAT => self.setstat(jail, r).map(|()| ok(id)),
            SSH_FXP_FSETSTAT => self.fsetstat(jail, r).map(|()| ok(id)),
            SSH_FXP_OPENDIR => self.opendir(jail, id, r),
            SSH_FXP_READDIR => self.readdir(jail, id, r),
            SSH_FXP_REMOVE => remove(jail, r).map(|()| ok(id)),
            SSH_FXP_MKDIR => mkdir(jail, r).map(|()| ok(id)),
            SSH_FXP_RMDIR => rmdir(jail, r).map(|()| ok(id)),
            SSH_FXP_REALPATH => realpath(id, r),
            SSH_FXP_RENAME => {
                let (from, to) = (r.path()?, r.path()?);
                rename(jail, &from, &to, false).map(|()| ok(id))
            }
            SSH_FXP_READLINK => Err(Status::new(
                Code::PermissionDenied,
                "Symbolic links are not supported",
            )),
            SSH_FXP_SYMLINK => Err(Status::new(
                Code::PermissionDenied,
                "Permission denied: symbolic links cannot be created",
            )),
            SSH_FXP_EXTENDED => self.extended(jail, id, r),
            _ => Err(Status::new(Code::OpUnsupported, "Operation unsupported")),
        }
    }

    fn handle_of(&mut self, r: &mut Reader) -> Result<(u32, &mut OpenHandle), Status> {
        let raw = r.bytes().ok_or_else(Status::bad)?;
        let key = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| Status::new(Code::Failure, "Invalid handle"))?;
        match self.handles.get_mut(&key) {
            Some(h) => Ok((key, h)),
            None => Err(Status::new(Code::Failure, "Invalid handle")),
        }
    }

    fn add_handle(&mut self, id: u32, handle: OpenHandle) -> Reply {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Status::new(Code::Failure, "Too many open handles"));
        }
        let key = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.handles.insert(key, handle);
        let mut w = Writer::new(SSH_FXP_HANDLE, id);
        w.string(key.to_string().as_bytes());
        Ok(w.finish())
    }

    fn read(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let (_, handle) = self.handle_of(r)?;
        let offset = r.u64().ok_or_else(Status::bad)?;
        let len = r.u32().ok_or_else(Status::bad)?.min(MAX_READ) as usize;
        let OpenHandle::File {
            file,
            path,
            read_bytes,
            ..
        } = handle
        else {
            return Err(Status::new(Code::Failure, "Is a directory"));
        };
        jail.readable(path)?;
        // The answer frame: length, type, id, data length, then the data read in place.
        const HEADER: usize = 4 + 1 + 4 + 4;
        let mut buf = BytesMut::with_capacity(HEADER + len);
        buf.put_u32(0);
        buf.put_u8(SSH_FXP_DATA);
        buf.put_u32(id);
        buf.put_u32(0);
        buf.resize(HEADER + len, 0);
        let mut n = 0;
        while n < len {
            match file.read_at(&mut buf[HEADER + n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if n == 0 {
            return Err(Status::new(Code::Eof, "End of file"));
        }
        buf.truncate(HEADER + n);
        buf[0..4].copy_from_slice(&((1 + 4 + 4 + n) as u32).to_be_bytes());
        buf[9..13].copy_from_slice(&(n as u32).to_be_bytes());
        *read_bytes += n as u64;
        self.totals.read += n as u64;
        Ok(buf.freeze())
    }

    fn write(&mut self, jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
        let (_, handle) = self.handle_of(r)?;
        let offset = r.u64().ok_or_else(Status::bad)?;
        let data = r.bytes().ok_or_else(Status::bad)?;
        let OpenHandle::File {
            file,
            path,
            writable,
            written_bytes,
            ..
        } = handle
        else {
            return Err(Status::new(Code::Failure, "Is a directory"));
        };
        if !*writable {
            return Err(Status::new(
                Code::PermissionDenied,
                "Permission denied: the file was not opened for writing",
            ));
        }
        jail.writable(path)?;
        file.write_all_at(&data, offset)?;
        *written_bytes += data.len() as u64;
        self.totals.written += data.len() as u64;
        Ok(())
    }

    fn open(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let path = r.path()?;
        let flags = r.u32().ok_or_else(Status::bad)?;
        let attrs = Attrs::read(r)?;
        let wants_write =
            flags & (SSH_FXF_WRITE | SSH_FXF_APPEND | SSH_FXF_CREAT | SSH_FXF_TRUNC) != 0;
        if wants_write {
            jail.writable(&path)?;
            // Said clearly before trying (as root the kernel would not refuse), and checked
            // again on what was opened.
            if let Some(meta) = jail.check_components(&path, true)?
                && is_protected(&meta)
            {
                return Err(protected());
            }
        } else {
            jail.readable(&path)?;
        }
        if path.name().is_none() {
            return Err(Status::new(Code::Failure, "Is a directory"));
        }
        let mut options = OpenOptions::new();
        options.read(flags & SSH_FXF_READ != 0 || !wants_write);
        if wants_write {
            options.write(true);
            if flags & SSH_FXF_APPEND != 0 {
                options.append(true);
            }
            if flags & SSH_FXF_CREAT != 0 {
                if flags & SSH_FXF_EXCL != 0 {
                    options.create_new(true);
                } else {
                    options.create(true);
                }
            }
            // Truncation waits until the opened file is known not to be protected.
            options.mode(client_file_mode(attrs.permissions.unwrap_or(0o644)));
        }
        let file = jail.open(&path, &mut options)?;
        let meta = file.metadata()?;
        if !jail::is_regular(&meta) {
            return Err(Status::new(Code::Failure, "Not a regular file"));
        }
        if wants_write {
            if is_protected(&meta) {
                return Err(protected());
            }
            if flags & SSH_FXF_TRUNC != 0 {
                file.set_len(0)?;
            }
        }
        self.add_handle(
            id,
            OpenHandle::File {
                file,
                path,
                writable: wants_write,
                read_bytes: 0,
                written_bytes: 0,
            },
        )
    }

    fn close(&mut self, r: &mut Reader) -> Result<(), Status> {
        let (key, _) = self.handle_of(r)?;
        if let Some(OpenHandle::File {
            path,
            writable,
            read_bytes,
            written_bytes,
            ..
        }) = self.handles.remove(&key)
        {
            if writable {
                tracing::info!(
                    user = %self.ctx.user,
                    address = %self.ctx.peer,
                    path = %path.display(),
                    bytes = written_bytes,
                    "hosted SFTP: file written"
                );
            } else if read_bytes > 0 {
                tracing::debug!(
                    user = %self.ctx.user,
                    address = %self.ctx.peer,
                    path = %path.display(),
                    bytes = read_bytes,
                    "hosted SFTP: file read"
                );
            }
        }
        Ok(())
    }

    fn stat(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let path = r.path()?;
        jail.readable(&path)?;
        let meta = match jail.check_components(&path, false)? {
            Some(m) => m,
            None if path.0.is_empty() => std::fs::symlink_metadata(jail.root)?,
            None => return Err(Status::new(Code::NoSuchFile, "No such file")),
        };
        let mut w = Writer::new(SSH_FXP_ATTRS, id);
        Attrs::of(&meta).write(&mut w);
        Ok(w.finish())
    }

    fn fstat(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let (_, handle) = self.handle_of(r)?;
        let OpenHandle::File { file, path, .. } = handle else {
            return Err(Status::new(Code::Failure, "Is a directory"));
        };
        jail.readable(path)?;
        let meta = file.metadata()?;
        let mut w = Writer::new(SSH_FXP_ATTRS, id);
        Attrs::of(&meta).write(&mut w);
        Ok(w.finish())
    }

    fn setstat(&mut self, jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
        let path = r.path()?;
        let attrs = Attrs::read(r)?;
        jail.writable(&path)?;
        if let Some(meta) = jail.check_components(&path, true)?
            && is_protected(&meta)
        {
            return Err(protected());
        }
        let mut options = OpenOptions::new();
        options.read(true);
        if attrs.size.is_some() {
            options.write(true);
        }
        let file = jail.open(&path, &mut options)?;
        apply_attrs(&file, &attrs)
    }

    fn fsetstat(&mut self, jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
        let (_, handle) = self.handle_of(r)?;
        let attrs = Attrs::read(r)?;
        let OpenHandle::File {
            file,
            path,
            writable,
            ..
        } = handle
        else {
            return Err(Status::new(Code::Failure, "Is a directory"));
        };
        jail.writable(path)?;
        if attrs.size.is_some() && !*writable {
            return Err(Status::new(
                Code::PermissionDenied,
                "Permission denied: the file was not opened for writing",
            ));
        }
        apply_attrs(file, &attrs)
    }

    fn opendir(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let path = r.path()?;
        jail.readable(&path)?;
        let mut options = OpenOptions::new();
        options.read(true);
        let dir = jail.open(&path, &mut options)?;
        if !dir.metadata()?.is_dir() {
            return Err(Status::new(Code::Failure, "Not a directory"));
        }
        let entries = list_dir(&dir, &jail.real(&path))?
            .into_iter()
            .filter(|(name, _)| jail.lists(&path, name))
            .collect();
        self.add_handle(id, OpenHandle::Dir { entries, pos: 0 })
    }

    fn readdir(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let owner = jail.user.name.clone();
        let (_, handle) = self.handle_of(r)?;
        let OpenHandle::Dir { entries, pos } = handle else {
            return Err(Status::new(Code::Failure, "Not a directory"));
        };
        if *pos >= entries.len() {
            return Err(Status::new(Code::Eof, "End of directory"));
        }
        let end = (*pos + NAMES_PER_READDIR).min(entries.len());
        let now = SystemTime::now();
        let mut w = Writer::new(SSH_FXP_NAME, id);
        w.u32((end - *pos) as u32);
        for (name, meta) in &entries[*pos..end] {
            w.string(name.as_bytes());
            w.string(longname(name, meta, &owner, now).as_bytes());
            Attrs::of(meta).write(&mut w);
        }
        *pos = end;
        Ok(w.finish())
    }

    fn extended(&mut self, jail: &Jail<'_>, id: u32, r: &mut Reader) -> Reply {
        let name = r.bytes().ok_or_else(Status::bad)?;
        match &name[..] {
            b if b == POSIX_RENAME.as_bytes() => {
                let (from, to) = (r.path()?, r.path()?);
                rename(jail, &from, &to, true).map(|()| ok(id))
            }
            b if b == LIMITS.as_bytes() => {
                let mut w = Writer::new(SSH_FXP_EXTENDED_REPLY, id);
                w.u64(MAX_FRAME as u64 - 4096);
                w.u64(u64::from(MAX_READ));
                w.u64(u64::from(MAX_READ));
                w.u64(MAX_HANDLES as u64);
                Ok(w.finish())
            }
            b if b == FSYNC.as_bytes() => {
                let (_, handle) = self.handle_of(r)?;
                match handle {
                    OpenHandle::File { file, .. } => {
                        file.sync_all().map(|()| ok(id)).map_err(Into::into)
                    }
                    OpenHandle::Dir { .. } => Err(Status::new(Code::Failure, "Is a directory")),
                }
            }
            _ => Err(Status::new(Code::OpUnsupported, "Operation unsupported")),
        }
    }
}

/// Whether requests of this kind resolve a path (rather than use an open handle).
fn uses_paths(kind: u8) -> bool {
    matches!(
        kind,
        SSH_FXP_OPEN
            | SSH_FXP_LSTAT
            | SSH_FXP_STAT
            | SSH_FXP_SETSTAT
            | SSH_FXP_OPENDIR
            | SSH_FXP_REMOVE
            | SSH_FXP_MKDIR
            | SSH_FXP_RMDIR
            | SSH_FXP_RENAME
            | SSH_FXP_EXTENDED
    )
}

/// Reads a directory through its opened descriptor (`/proc/self/fd/N` names exactly the
/// directory that was opened and checked), with each entry's `lstat`.
fn list_dir(dir: &File, real: &std::path::Path) -> io::Result<Vec<(String, Metadata)>> {
    use std::os::fd::AsRawFd;
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let iter = match std::fs::read_dir(&via_fd) {
        Ok(iter) => iter,
        Err(_) => std::fs::read_dir(real)?,
    };
    let mut out = Vec::new();
    for entry in iter {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not representable in SFTP v3 as OpenSSH clients expect (UTF-8)
        };
        match entry.metadata() {
            Ok(meta) => out.push((name, meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whether `meta` is a file a client may not change in place: a delivered report (no
/// owner-write bit) or a file with several links (shared with other recipients).
fn is_protected(meta: &Metadata) -> bool {
    meta.file_type().is_file() && (meta.mode() & 0o200 == 0 || meta.nlink() > 1)
}

fn protected() -> Status {
    Status::new(
        Code::PermissionDenied,
        "Permission denied: reports delivered by Ferry are read-only; download it, or remove or \
         rename it and upload a new file",
    )
}

/// The mode of a file a client creates or changes: what it asks for, but always writable by
/// its owner (the server), so that only delivered reports are ever read-only.
fn client_file_mode(requested: u32) -> u32 {
    (requested & 0o666) | 0o200
}

fn apply_attrs(file: &File, attrs: &Attrs) -> Result<(), Status> {
    if attrs.uid_gid.is_some() {
        return Err(Status::new(
            Code::PermissionDenied,
            "Permission denied: owners cannot be changed",
        ));
    }
    let meta = file.metadata()?;
    if is_protected(&meta) {
        return Err(protected());
    }
    if let Some(size) = attrs.size {
        file.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        let mode = if meta.is_dir() {
            (mode & 0o777) | 0o700
        } else {
            client_file_mode(mode) | (mode & 0o111)
        };
        file.set_permissions(Permissions::from_mode(mode))?;
    }
    if let Some((atime, mtime)) = attrs.times {
        let at = UNIX_EPOCH + Duration::from_secs(u64::from(atime));
        let mt = UNIX_EPOCH + Duration::from_secs(u64::from(mtime));
        file.set_times(FileTimes::new().set_accessed(at).set_modified(mt))?;
    }
    Ok(())
}

fn remove(jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
    let path = r.path()?;
    jail.writable(&path)?;
    match jail.check_components(&path, false)? {
        None => Err(Status::new(Code::NoSuchFile, "No such file")),
        Some(m) if m.is_dir() => Err(Status::new(Code::Failure, "Is a directory")),
        Some(_) => Ok(std::fs::remove_file(jail.real(&path))?),
    }
}

fn mkdir(jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
    let path = r.path()?;
    let attrs = Attrs::read(r)?;
    jail.writable(&path)?;
    if jail.check_components(&path, true)?.is_some() {
        return Err(Status::new(Code::Failure, "File exists"));
    }
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(
        &mut builder,
        attrs.permissions.map_or(0o755, |p| p & 0o777),
    );
    Ok(builder.create(jail.real(&path))?)
}

fn rmdir(jail: &Jail<'_>, r: &mut Reader) -> Result<(), Status> {
    let path = r.path()?;
    jail.writable(&path)?;
    match jail.check_components(&path, true)? {
        None => Err(Status::new(Code::NoSuchFile, "No such file")),
        Some(m) if !m.is_dir() => Err(Status::new(Code::Failure, "Not a directory")),
        Some(_) => Ok(std::fs::remove_dir(jail.real(&path))?),
    }
}

fn realpath(id: u32, r: &mut Reader) -> Reply {
    let path = r.path()?;
    let shown = path.display();
    let mut w = Writer::new(SSH_FXP_NAME, id);
    w.u32(1);
    w.string(shown.as_bytes());
    w.string(shown.as_bytes());
    w.u32(0);
    Ok(w.finish())
}

/// RENAME (`overwrite` false: refused when the target exists, as SFTP v3 and OpenSSH's
/// server do) and `posix-rename@openssh.com` (`overwrite` true: replaces atomically). Both
/// ends must be writable for the user.
fn rename(jail: &Jail<'_>, from: &VPath, to: &VPath, overwrite: bool) -> Result<(), Status> {
    jail.writable(from)?;
    jail.writable(to)?;
    let Some(meta) = jail.check_components(from, false)? else {
        return Err(Status::new(Code::NoSuchFile, "No such file"));
    };
    if meta.file_type().is_symlink() {
        // Links cannot be created by clients; they cannot be moved either, so one placed in a
        // jail by hand stays where every check sees it.
        return Err(Refusal::Symlink.into());
    }
    let target = jail.check_components(to, false)?;
    let (src, dst) = (jail.real(from), jail.real(to));
    if overwrite {
        return Ok(std::fs::rename(src, dst)?);
    }
    if target.is_some() {
        return Err(Status::new(Code::Failure, "File exists"));
    }
    if jail::is_regular(&meta) {
        // link() fails if the target appeared meanwhile: no file is ever replaced.
        std::fs::hard_link(&src, &dst)?;
        std::fs::remove_file(&src)?;
        Ok(())
    } else {
        Ok(std::fs::rename(src, dst)?)
    }
}
