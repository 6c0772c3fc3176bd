//! SFTP's part of the delivery sequence ([`crate::deliver::atomic::place_remote`]): the
//! directory (created when missing), uploads with many writes in flight, sizes from STAT,
//! renames over the final name (POSIX rename where offered).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use russh::Disconnect;
use russh::client::Handle;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{
    MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES, POSIX_RENAME, REQUEST_TIMEOUT_SECS, Sftp, SftpTransport,
    join, normalize_dir,
};
use crate::Result;
use crate::deliver::atomic::{
    RemoteDir, SizeUnknown, UploadFailed, confirm_remote, confirmation, place_remote, probe_remote,
};
use crate::deliver::{Confirmation, Outgoing, Receipt};
use crate::ssh::HostKeyCheck;

impl SftpTransport {
    /// Makes sure `self.directory` exists (creating missing parents) and returns its absolute
    /// path as the server sees it (`/` is the root of a chroot).
    pub(super) async fn ensure_directory(&self, sftp: &Sftp) -> Result<String> {
        let dir = normalize_dir(&self.directory);
        match sftp.raw.stat(dir.as_str()).await {
            Ok(a) if a.attrs.is_dir() => {}
            Ok(_) => {
                return Err(self.error(format!("{} exists and is not a directory", self.url(&dir))));
            }
            Err(_) => self.create_directories(sftp, &dir).await?,
        }
        // The absolute path, for the receipt; keep the given one if the server cannot say.
        let absolute = match sftp.raw.realpath(dir.as_str()).await {
            Ok(name) => name
                .files
                .into_iter()
                .next()
                .map(|f| f.filename)
                .filter(|p| p.starts_with('/')),
            Err(_) => None,
        };
        Ok(absolute.unwrap_or(dir))
    }

    /// `mkdir -p`: creates each missing component of `dir` in turn.
    pub(super) async fn create_directories(&self, sftp: &Sftp, dir: &str) -> Result<()> {
        let mut path = if dir.starts_with('/') {
            String::from("/")
        } else {
            String::new()
        };
        for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if !path.is_empty() && !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
            match sftp.raw.stat(path.as_str()).await {
                Ok(a) if a.attrs.is_dir() => continue,
                Ok(_) => {
                    return Err(self.error(format!(
                        "cannot create directory {}: {path} exists and is not a directory",
                        self.url(dir)
                    )));
                }
                Err(_) => {}
            }
            if let Err(e) = sftp.raw.mkdir(path.as_str(), FileAttributes::empty()).await {
                // Someone else may have created it meanwhile.
                match sftp.raw.stat(path.as_str()).await {
                    Ok(a) if a.attrs.is_dir() => {}
                    _ => {
                        return Err(self.error(format!(
                            "cannot create directory {}: {}",
                            self.url(&path),
                            describe_sftp_error(&e)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

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
    /// With the free space of the directory's file system where the server says it
    /// (`statvfs@openssh.com`), as `freeBytes`.
    /// With `check: list`, the directory is only listed (`listedEntries`).
    pub(super) async fn probe_file(&self, probe: &Outgoing<'_>) -> Result<Receipt> {
        let naming = self.partial;
        let list_only = self.check == crate::api::TargetCheck::List;
        let (mut receipt, (bytes, free)) = self
            .in_directory(probe, async |remote| {
                let bytes = if list_only {
                    remote.list().await?
                } else {
                    probe_remote(remote, probe, naming).await?
                };
                let free = match remote.sftp.extensions.contains_key("statvfs@openssh.com") {
                    true => remote
                        .unless_closed(remote.sftp.raw.statvfs(remote.dir.as_str()))
                        .await?
                        .ok()
                        .map(|fs| fs.blocks_avail.saturating_mul(fs.fragment_size)),
                    false => None,
                };
                Ok((bytes, free))
            })
            .await?;
        if let Some(free) = free {
            receipt
                .details
                .insert("freeBytes".to_string(), free.to_string());
        }
        if list_only {
            receipt
                .details
                .insert("listedEntries".to_string(), bytes.to_string());
            return Ok(receipt);
        }
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

    /// Connects, opens the target's directory (creating it), runs `op` there and
    /// disconnects. Returns the receipt of `file` there (its `bytes` left for the caller)
    /// and `op`'s result.
    async fn in_directory<T>(
        &self,
        file: &Outgoing<'_>,
        op: impl AsyncFnOnce(&mut SftpDir<'_>) -> std::result::Result<T, String>,
    ) -> Result<(Receipt, T)> {
        let (mut handle, host_key) = self.connect().await?;
        self.authenticate(&mut handle).await?;
        let sftp = self.open_sftp(&handle).await?;
        let result = async {
            let dir = self.ensure_directory(&sftp).await?;
            let mut remote = SftpDir {
                transport: self,
                ssh: &handle,
                sftp: &sftp,
                dir,
            };
            let value = op(&mut remote).await.map_err(|e| self.error(e))?;
            Ok::<_, crate::Error>((join(&remote.dir, file.file_name), value))
        }
        .await;
        drop(sftp);
        hang_up(handle).await;
        let (remote_path, value) = result?;
        let mut details = std::collections::BTreeMap::new();
        details.insert("hostKey".to_string(), host_key);
        details.insert("remotePath".to_string(), remote_path.clone());
        let receipt = Receipt {
            location: self.url(&remote_path),
            bytes: 0,
            sha256: file.sha256.to_string(),
            details,
        };
        Ok((receipt, value))
    }
}

/// The target's directory on an open SFTP session.
struct SftpDir<'a> {
    transport: &'a SftpTransport,
    /// The SSH connection, watched: see [`SftpDir::unless_closed`].
    ssh: &'a Handle<HostKeyCheck>,
    sftp: &'a Sftp,
    /// Its absolute path when the server told it.
    dir: String,
}

impl SftpDir<'_> {
    /// Lists the directory (the first batch of names is enough): how many entries came.
    async fn list(&self) -> std::result::Result<u64, String> {
        let at = self.transport.url(&self.dir);
        let handle = self
            .unless_closed(self.sftp.raw.opendir(self.dir.as_str()))
            .await?
            .map_err(|e| format!("listing {at}: {}", describe_sftp_error(&e)))?
            .handle;
        let names = self
            .unless_closed(self.sftp.raw.readdir(handle.as_str()))
            .await?;
        let _ = self
            .unless_closed(self.sftp.raw.close(handle.as_str()))
            .await;
        match names {
            Ok(names) => Ok(names
                .files
                .iter()
                .filter(|f| f.filename != "." && f.filename != "..")
                .count() as u64),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => Ok(0),
            Err(e) => Err(format!("listing {at}: {}", describe_sftp_error(&e))),
        }
    }

    fn path(&self, name: &str) -> String {
        join(&self.dir, name)
    }

    /// `op`, or an error as soon as the SSH connection is gone. russh does not wake a write
    /// waiting for window space when its connection dies (a reset, a cut), so a request in
    /// flight would otherwise only fail at [`REQUEST_TIMEOUT_SECS`].
    async fn unless_closed<T>(&self, op: impl Future<Output = T>) -> Result<T, String> {
        let closed = async {
            while !self.ssh.is_closed() {
                tokio::time::sleep(CLOSED_POLL).await;
            }
        };
        tokio::select! {
            done = op => Ok(done),
            () = closed => Err(format!(
                "the connection to {} was lost",
                self.transport.host_port()
            )),
        }
    }

    /// Streams the staged file into the open `handle`, pipelined. Returns the bytes written.
    async fn write_all(&self, handle: &str, file: &Outgoing<'_>) -> Result<u64, String> {
        let chunk = self.sftp.chunk;
        let depth = MAX_IN_FLIGHT.min(MAX_IN_FLIGHT_BYTES / chunk).max(1);
        // A reader thread fills buffers ahead of the writes, so disk reads overlap the network.
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(depth);
        let staged = file.staged.to_path_buf();
        let reader = tokio::spawn(read_chunks(staged, chunk, tx));
        let raw = &self.sftp.raw;
        let mut in_flight = FuturesUnordered::new();
        let mut offset = 0u64;
        let mut eof = false;
        let result = loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                    Ok(_) => {}
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Failure => {
                        break Err(format!(
                            "the server could not write the data ({}): its disk may be full or \
                             a quota exceeded",
                            describe_sftp_error(&SftpError::Status(s))
                        ));
                    }
                    Err(e) => break Err(describe_sftp_error(&e)),
                },
                next = rx.recv(), if !eof && in_flight.len() < depth => match next {
                    Some(Ok(buf)) => {
                        let at = offset;
                        offset += buf.len() as u64;
                        in_flight.push(raw.write(handle, at, buf));
                    }
                    Some(Err(e)) => {
                        break Err(format!("reading {}: {e}", file.staged.display()));
                    }
                    None => eof = true,
                },
                else => break Ok(offset),
            }
        };
        drop(rx);
        reader.abort();
        result
    }
}

impl RemoteDir for SftpDir<'_> {
    fn target(&self) -> &str {
        &self.transport.name
    }

    fn locate(&self, name: &str) -> String {
        self.transport.url(&self.path(name))
    }

    /// Opened with truncate (a leftover of an earlier attempt of the same run is overwritten),
    /// written with up to [`MAX_IN_FLIGHT`] requests in flight, closed.
    async fn upload(&mut self, name: &str, file: &Outgoing<'_>) -> Result<u64, UploadFailed> {
        let temp = self.path(name);
        let raw = &self.sftp.raw;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("{what} {}: {e}", self.transport.url(&temp))
        };
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let opened = match self
            .unless_closed(raw.open(temp.as_str(), flags, FileAttributes::empty()))
            .await
            .map_err(|e| UploadFailed::refused(fail("cannot create", &e)))?
        {
            // A leftover we may not write (another owner, read-only) may still be removable.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::PermissionDenied => {
                match raw.remove(temp.as_str()).await {
                    Ok(_) => {
                        raw.open(temp.as_str(), flags, FileAttributes::empty())
                            .await
                    }
                    Err(_) => Err(SftpError::Status(s)),
                }
            }
            other => other,
        };
        // Refused to open: nothing was created.
        let handle = opened
            .map_err(|e| UploadFailed::refused(fail("cannot create", &describe_sftp_error(&e))))?
            .handle;
        let written = match self.unless_closed(self.write_all(&handle, file)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) | Err(e) => {
                let _ = self.unless_closed(raw.close(handle.as_str())).await;
                return Err(UploadFailed::written(fail("upload to", &e)));
            }
        };
        self.unless_closed(raw.close(handle.as_str()))
            .await
            .and_then(|closed| closed.map_err(|e| describe_sftp_error(&e)))
            .map_err(|e| UploadFailed::written(fail("cannot finish writing", &e)))?;
        if written != file.bytes {
            return Err(UploadFailed::written(fail(
                "upload to",
                &format!(
                    "the staged file {} has {written} bytes, expected {}",
                    file.staged.display(),
                    file.bytes
                ),
            )));
        }
        Ok(written)
    }

    /// A refusal (any status) means the server will not say; anything else is a failure.
    async fn size(&mut self, name: &str) -> Result<u64, SizeUnknown> {
        let stat = self
            .unless_closed(self.sftp.raw.stat(self.path(name)))
            .await
            .map_err(SizeUnknown::Failed)?;
        match stat {
            Ok(attrs) => attrs
                .attrs
                .size
                .ok_or_else(|| SizeUnknown::NotOffered("the server did not report a size".into())),
            Err(e @ SftpError::Status(_)) => Err(SizeUnknown::NotOffered(describe_sftp_error(&e))),
            Err(e) => Err(SizeUnknown::Failed(describe_sftp_error(&e))),
        }
    }

    /// With `posix-rename@openssh.com` (an atomic `rename(2)`) when offered, else remove
    /// then rename.
    async fn rename_over(&mut self, temp: &str, name: &str) -> Result<(), String> {
        let (temp, target) = (self.path(temp), self.path(name));
        let fail = |e: &dyn std::fmt::Display| {
            format!(
                "cannot rename {} to {}: {e}",
                self.transport.url(&temp),
                self.transport.url(&target)
            )
        };
        let raw = &self.sftp.raw;
        if self.sftp.extensions.contains_key(POSIX_RENAME) {
            let mut data = Vec::with_capacity(8 + temp.len() + target.len());
            for s in [&temp, &target] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            let renamed = self
                .unless_closed(raw.extended(POSIX_RENAME, data))
                .await
                .map_err(|e| fail(&e))?;
            return match renamed {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(fail(&describe_sftp_error(&SftpError::Status(s)))),
                Ok(_) => Err(fail(&"unexpected answer to posix-rename")),
                Err(e) => Err(fail(&describe_sftp_error(&e))),
            };
        }
        // Plain SFTP v3 rename fails when the target exists.
        match raw.remove(target.as_str()).await {
            Ok(_) => {}
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
            Err(e) => {
                // Maybe it did not exist under another code; the rename will tell.
                tracing::debug!(target = %self.transport.name, "removing {target} before rename: {e}");
            }
        }
        self.unless_closed(raw.rename(temp.as_str(), target.as_str()))
            .await
            .map_err(|e| fail(&e))?
            .map(drop)
            .map_err(|e| fail(&describe_sftp_error(&e)))
    }

    /// On this session while it works, else on a new connection (as FTP does): a cut
    /// connection must not leave the temporary file behind.
    async fn remove(&mut self, temp: &str) -> Result<(), String> {
        let path = self.path(temp);
        match self
            .unless_closed(self.sftp.raw.remove(path.as_str()))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            // The server's answer (no such file, permission denied): final.
            Ok(Err(e @ SftpError::Status(_))) => return Err(describe_sftp_error(&e)),
            // No answer: the session is gone.
            Ok(Err(_)) | Err(_) => {}
        }
        let t = self.transport;
        let message = |e: crate::Error| match e {
            crate::Error::Delivery { message, .. } => message,
            other => other.to_string(),
        };
        let (mut handle, _) = t.connect().await.map_err(message)?;
        let removed = async {
            t.authenticate(&mut handle).await.map_err(message)?;
            let sftp = t.open_sftp(&handle).await.map_err(message)?;
            sftp.raw
                .remove(path.as_str())
                .await
                .map(drop)
                .map_err(|e| describe_sftp_error(&e))
        }
        .await;
        hang_up(handle).await;
        removed
    }

    /// Read back in [`REQUEST_TIMEOUT_SECS`]-bounded requests; a refused OPEN is `None`.
    async fn read_sha256(&mut self, name: &str) -> Result<Option<String>, String> {
        use sha2::{Digest, Sha256};
        let raw = &self.sftp.raw;
        let path = self.path(name);
        let opened = self
            .unless_closed(raw.open(path.as_str(), OpenFlags::READ, FileAttributes::empty()))
            .await?;
        let handle = match opened {
            Ok(h) => h.handle,
            Err(SftpError::Status(_)) => return Ok(None),
            Err(e) => return Err(describe_sftp_error(&e)),
        };
        let chunk = self.sftp.chunk as u32;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let read = loop {
            let data = self
                .unless_closed(raw.read(handle.as_str(), offset, chunk))
                .await?;
            match data {
                Ok(data) if data.data.is_empty() => break Ok(()),
                Ok(data) => {
                    offset += data.data.len() as u64;
                    hasher.update(&data.data);
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(describe_sftp_error(&e)),
            }
        };
        let _ = self.unless_closed(raw.close(handle.as_str())).await;
        read.map(|()| Some(hex::encode(hasher.finalize())))
            .map_err(|e| format!("reading {} back: {e}", self.transport.url(&path)))
    }

    async fn make_dir(&mut self, name: &str) -> Result<(), String> {
        let path = self.path(name);
        match self.sftp.raw.stat(path.as_str()).await {
            Ok(a) if a.attrs.is_dir() => Ok(()),
            Ok(_) => Err(format!("{path} exists and is not a directory")),
            Err(_) => self
                .transport
                .create_directories(self.sftp, &path)
                .await
                .map_err(|e| match e {
                    crate::Error::Delivery { message, .. } => message,
                    other => other.to_string(),
                }),
        }
    }
}

/// Says goodbye and waits (at most [`HANG_UP_WITHIN`]) until the connection is closed, so
/// that a delivery's turn at the target (`maxConnections`) ends with its session.
async fn hang_up(handle: Handle<HostKeyCheck>) {
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    // The handle resolves when russh's session task has ended: its socket shut down and
    // closed (the task closes its command channel first, so `is_closed` is too early).
    let _ = tokio::time::timeout(HANG_UP_WITHIN, handle).await;
}

/// How long [`hang_up`] waits for the server to close the connection.
const HANG_UP_WITHIN: Duration = Duration::from_secs(2);

/// How often a waiting request looks whether the SSH connection is still there.
const CLOSED_POLL: Duration = Duration::from_millis(250);

/// Reads `path` in `chunk`-sized buffers into `tx` until the end, on the blocking pool.
pub(super) async fn read_chunks(
    path: PathBuf,
    chunk: usize,
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    // Large reads from the file, split into write-sized buffers.
    let block = (chunk * 16).max(1024 * 1024);
    let mut big = vec![0u8; block];
    loop {
        let mut filled = 0;
        while filled < block {
            match file.read(&mut big[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        for piece in big[..filled].chunks(chunk) {
            if tx.send(Ok(piece.to_vec())).await.is_err() {
                return;
            }
        }
        if filled < block {
            return;
        }
    }
}

/// An SFTP error in words: the server's status message when it sent one.
pub(super) fn describe_sftp_error(e: &SftpError) -> String {
    match e {
        SftpError::Status(s)
            if !s.error_message.is_empty()
                && !s
                    .error_message
                    .eq_ignore_ascii_case(&s.status_code.to_string()) =>
        {
            format!("{} ({})", s.error_message, s.status_code)
        }
        SftpError::Status(s) => s.status_code.to_string(),
        SftpError::Timeout => format!("no answer from the server within {REQUEST_TIMEOUT_SECS}s"),
        // The session's reader stopped: the channel or the connection is gone.
        SftpError::UnexpectedBehavior(m)
            if m.contains("sender dropped") || m.contains("session closed") =>
        {
            "the server closed the connection".into()
        }
        other => other.to_string(),
    }
}
