//! Small file-system helpers shared by the state store, secrets and local delivery.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, then
/// rename. A crash leaves either the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ferry-tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    buf
}

/// How a delivered file got its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A hard link to the staged file: the same inode, allowed only where nobody can write it.
    HardLink,
    /// A copy sharing the staged file's blocks copy-on-write (`FICLONE`, on Btrfs, XFS and
    /// the like): no bytes copied, and a write to either file never reaches the other.
    Reflink,
    /// A copy of the bytes (in the kernel with `copy_file_range` where it can).
    Copy,
}

impl Placement {
    /// `hardlink`, `reflink` or `copy`, as receipts say it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Placement::HardLink => "hardlink",
            Placement::Reflink => "reflink",
            Placement::Copy => "copy",
        }
    }
}

/// Makes `to` (which must not exist) an independent copy of `from` with permissions `mode`
/// (before the umask), synced: a reflink where the file system offers one, else a copy.
/// Returns its size and how it was made. Nothing written to `to` afterwards reaches `from`, nor
/// the other way round.
pub fn copy_private(from: &Path, to: &Path, mode: u32) -> std::io::Result<(u64, Placement)> {
    let mut src = std::fs::File::open(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut dst = options.open(to)?;
    let placement = if reflink(&src, &dst) {
        Placement::Reflink
    } else {
        std::io::copy(&mut src, &mut dst)?;
        Placement::Copy
    };
    dst.flush()?;
    dst.sync_all()?;
    Ok((dst.metadata()?.len(), placement))
}

/// `ioctl(FICLONE)`: `dst` shares `src`'s blocks copy-on-write. False where the file system
/// (or the platform) cannot.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reflink(src: &std::fs::File, dst: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the source
    // descriptor as its argument and touches no memory of ours.
    unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) == 0 }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn reflink(_src: &std::fs::File, _dst: &std::fs::File) -> bool {
    false
}

/// A file being written that the kernel starts writing to disk every
/// [`WritebackFile::STEP`] bytes (`sync_file_range`, Linux), instead of all at the final
/// fsync: a report's fsync then waits for the last few megabytes, not for the whole file.
/// Durability is unchanged: only the final `sync_all` promises anything.
pub struct WritebackFile {
    file: std::fs::File,
    written: u64,
    /// Bytes handed to writeback so far.
    started: u64,
}

impl WritebackFile {
    /// Bytes written between two writeback requests.
    pub const STEP: u64 = 8 * 1024 * 1024;

    /// Wraps a file opened for writing, at offset 0.
    pub fn new(file: std::fs::File) -> WritebackFile {
        WritebackFile {
            file,
            written: 0,
            started: 0,
        }
    }

    /// The file, to fsync.
    pub fn into_inner(self) -> std::fs::File {
        self.file
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; the flag only starts writeback of
        // the dirty pages in the range and does not wait. A failure is harmless: the final
        // fsync writes whatever is left.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.started as libc::off64_t,
                (self.written - self.started) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started = self.written;
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&mut self) {
        self.started = self.written;
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::STEP {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
