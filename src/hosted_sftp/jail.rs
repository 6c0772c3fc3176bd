//! The jail: how a path sent by an SFTP client becomes a file under the user's root, and what
//! the user may do there.
//!
//! Each user's root is `<data_dir>/users/<user>/`, and the client sees it as `/`. A path is
//! first resolved *lexically* (`.` and `..` folded, clamped at `/` the way a chroot does), so
//! `..` and absolute paths can never name anything outside the root. The resolved path is
//! then classified against the user's connection directories ([`Grant`]s): inside one (the
//! longest that contains it decides the access), an ancestor of one (visible as a directory
//! whose listing shows only the way to the connection directories), or invisible.
//!
//! Symbolic links are never followed: SFTP clients cannot create any (SYMLINK is refused) nor
//! move one (RENAME of a link is refused), every existing component of a path is checked with
//! `lstat` before use, the last one is opened with `O_NOFOLLOW`, and an opened file is checked
//! once more through `/proc/self/fd` to be under the root. The checks and the system call of a
//! path-based request run under a per-user lock, so another session of the same user cannot
//! swap a directory between them. Hard links cannot be made by clients either. What remains
//! possible is only what a local administrator does to the data directory by hand while it is
//! in use.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::api::HostedAccess;

use super::users::{Grant, User};
use crate::deliver::atomic::is_partial_name;

/// `O_NOFOLLOW`: fail with `ELOOP` when the last component is a symbolic link.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64"
    )
))]
const O_NOFOLLOW: i32 = 0o100000;
/// `O_NOFOLLOW`: fail with `ELOOP` when the last component is a symbolic link.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64"
    ))
))]
const O_NOFOLLOW: i32 = 0o400000;
/// `O_NOFOLLOW` on the BSDs and macOS.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const O_NOFOLLOW: i32 = 0x100;

/// `O_NONBLOCK`: opening a FIFO someone left in a jail must not hang the session.
#[cfg(any(target_os = "linux", target_os = "android"))]
const O_NONBLOCK: i32 = 0o4000;
/// `O_NONBLOCK` on the BSDs and macOS.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const O_NONBLOCK: i32 = 0x4;

/// `ELOOP`, what `O_NOFOLLOW` fails with on a symbolic link.
#[cfg(any(target_os = "linux", target_os = "android"))]
const ELOOP: i32 = 40;
/// `ELOOP` on the BSDs and macOS.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const ELOOP: i32 = 62;

/// A path inside the jail, resolved lexically: its components below `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VPath(pub Vec<String>);

impl VPath {
    /// Resolves `path` as sent by a client: relative paths start at `/` (the user's home is
    /// the jail root), `.` is dropped, `..` goes up but never above `/`. Empty components are
    /// ignored. NUL bytes are refused.
    pub fn parse(path: &str) -> Result<VPath, Refusal> {
        if path.contains('\0') {
            return Err(Refusal::BadPath);
        }
        let mut out: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                name => out.push(name.to_string()),
            }
        }
        Ok(VPath(out))
    }

    /// The path as the client sees it, `/a/b`.
    pub fn display(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// The last component (none for `/`).
    pub fn name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// The child `name` of this path.
    pub fn child(&self, name: &str) -> VPath {
        let mut v = self.0.clone();
        v.push(name.to_string());
        VPath(v)
    }

    fn starts_with(&self, prefix: &[String]) -> bool {
        self.0.len() >= prefix.len() && self.0[..prefix.len()] == *prefix
    }
}

/// Why an operation is refused, before the file system is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The path is not visible to this user (answered as "no such file", so nothing about
    /// other users' or hidden files is revealed).
    Hidden,
    /// The path is visible but the operation would write where the user may not.
    ReadOnly,
    /// The path names a connection directory or one of its ancestors, which the user may not
    /// remove, rename or change.
    Structural,
    /// A symbolic link was met.
    Symlink,
    /// The path contains a NUL byte or similar.
    BadPath,
}

impl Refusal {
    /// The message sent to the client.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Hidden => "No such file",
            Refusal::ReadOnly => "Permission denied: this connection is read-only",
            Refusal::Structural => "Permission denied: connection directories cannot be changed",
            Refusal::Symlink => "Permission denied: symbolic links are not followed",
            Refusal::BadPath => "Bad path",
        }
    }
}

/// Where a path lies relative to the user's connection directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Outside every connection directory and not on the way to one.
    Hidden,
    /// A strict ancestor of a connection directory (e.g. `/` when the connection is
    /// `reports/`): a directory the user may list, seeing only the way to its connections.
    Ancestor,
    /// A connection directory itself, with its access.
    GrantRoot(HostedAccess),
    /// Strictly inside a connection directory, with the access of the longest one containing
    /// it.
    Inside(HostedAccess),
}

/// What one user may see and do, for one operation (built from the registry current at the
/// time of the operation, so access changes apply to the next operation).
pub(crate) struct Jail<'a> {
    /// The user's root on disk, `<data_dir>/users/<user>` (canonical).
    pub root: &'a Path,
    /// The user, with its grants.
    pub user: &'a User,
}

impl Jail<'_> {
    /// Classifies `path`.
    pub fn place(&self, path: &VPath) -> Place {
        if path.0.iter().any(|c| is_partial_name(c)) {
            return Place::Hidden;
        }
        let mut best: Option<&Grant> = None;
        let mut ancestor = false;
        for grant in &self.user.grants {
            if path.starts_with(&grant.components) {
                if best.is_none_or(|b| grant.components.len() > b.components.len()) {
                    best = Some(grant);
                }
            } else if grant.components.starts_with(&path.0) {
                ancestor = true;
            }
        }
        match best {
            Some(g) if g.components.len() == path.0.len() => Place::GrantRoot(g.access),
            Some(g) => Place::Inside(g.access),
            None if ancestor => Place::Ancestor,
            None => Place::Hidden,
        }
    }

    /// Whether `path` is a connection directory or an ancestor of one (such paths keep the
    /// structure the connections rely on: never removed, renamed or changed by a client).
    fn is_structural(&self, path: &VPath) -> bool {
        self.user
            .grants
            .iter()
            .any(|g| g.components.starts_with(&path.0))
    }

    /// Checks that `path` may be read (listed, downloaded, stat'ed).
    pub fn readable(&self, path: &VPath) -> Result<Place, Refusal> {
        match self.place(path) {
            Place::Hidden => Err(Refusal::Hidden),
            place => Ok(place),
        }
    }

    /// Checks that `path` may be created, written, removed or renamed: strictly inside a
    /// `readWrite` connection directory (the longest containing one decides), and neither a
    /// connection directory nor an ancestor of one.
    pub fn writable(&self, path: &VPath) -> Result<(), Refusal> {
        match self.place(path) {
            Place::Hidden => Err(Refusal::Hidden),
            Place::Ancestor | Place::GrantRoot(_) => Err(Refusal::Structural),
            Place::Inside(HostedAccess::Read) => Err(Refusal::ReadOnly),
            Place::Inside(HostedAccess::ReadWrite) => {
                if self.is_structural(path) {
                    Err(Refusal::Structural)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Whether the entry `name` of directory `dir` is shown in a listing.
    pub fn lists(&self, dir: &VPath, name: &str) -> bool {
        !is_partial_name(name) && self.place(&dir.child(name)) != Place::Hidden
    }

    /// The file on disk for `path`.
    pub fn real(&self, path: &VPath) -> PathBuf {
        let mut p = self.root.to_path_buf();
        for c in &path.0 {
            p.push(c);
        }
        p
    }

    /// Checks that no existing component of `path` below the root is a symbolic link; the
    /// last one is checked too when `last` is true. Missing components end the check (what
    /// does not exist cannot be a link; the operation itself then fails or creates it).
    /// Returns the `lstat` of the last component when it exists.
    pub fn check_components(&self, path: &VPath, last: bool) -> io::Result<Option<Metadata>> {
        let mut p = self.root.to_path_buf();
        let n = path.0.len();
        for (i, c) in path.0.iter().enumerate() {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) => {
                    if m.file_type().is_symlink() && (i + 1 < n || last) {
                        return Err(symlink_error());
                    }
                    if i + 1 == n {
                        return Ok(Some(m));
                    }
                    if !m.is_dir() {
                        return Err(io::Error::from(io::ErrorKind::NotADirectory));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return if i + 1 == n { Ok(None) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
        }
        std::fs::symlink_metadata(&p).map(Some)
    }

    /// Opens `path` with `options` without following a symbolic link anywhere, and checks that
    /// what was opened is under the root.
    pub fn open(&self, path: &VPath, options: &mut OpenOptions) -> io::Result<File> {
        self.check_components(path, true)?;
        let real = self.real(path);
        let file = options.custom_flags(O_NOFOLLOW | O_NONBLOCK).open(&real)?;
        self.check_opened(&file)?;
        Ok(file)
    }

    /// Checks, through `/proc/self/fd`, that an opened file lies under the root. Where there is
    /// no `/proc` the component checks stand alone.
    fn check_opened(&self, file: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match std::fs::read_link(&link) {
            Ok(target) => {
                if target.starts_with(self.root) {
                    Ok(())
                } else {
                    Err(symlink_error())
                }
            }
            Err(_) => Ok(()),
        }
    }
}

/// The error for a symbolic link met on the way.
pub(crate) fn symlink_error() -> io::Error {
    io::Error::from_raw_os_error(ELOOP)
}

/// Whether `e` says a symbolic link was refused.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ELOOP)
}

/// Creates `dir` (a directory under `base`, given as components) and every missing parent,
/// refusing to go through a symbolic link or a non-directory. `base` must exist.
pub(crate) fn create_dirs_nofollow(base: &Path, components: &[String]) -> io::Result<PathBuf> {
    let mut p = base.to_path_buf();
    for c in components {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_error()),
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io::Error::from(io::ErrorKind::NotADirectory)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut builder = std::fs::DirBuilder::new();
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o750);
                match builder.create(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let m = std::fs::symlink_metadata(&p)?;
                        if !m.is_dir() {
                            return Err(io::Error::from(io::ErrorKind::NotADirectory));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(p)
}

/// The root of `user` under the data directory: `<data_dir>/users/<user>`.
pub(crate) fn user_root(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("users").join(user)
}

/// Whether a file's metadata says it is a regular file.
pub(crate) fn is_regular(m: &Metadata) -> bool {
    m.mode() & 0o170000 == 0o100000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(grants: &[(&str, HostedAccess)]) -> User {
        User {
            name: "u".into(),
            keys: Vec::new(),
            password_hash: None,
            grants: grants
                .iter()
                .map(|(d, a)| Grant {
                    components: super::super::users::directory_components(d).expect("dir"),
                    access: *a,
                    targets: vec![],
                })
                .collect(),
        }
    }

    fn p(s: &str) -> VPath {
        VPath::parse(s).expect("path")
    }

    #[test]
    fn paths_are_folded_and_clamped_at_the_root() {
        assert_eq!(p("/a/./b/../c").display(), "/a/c");
        assert_eq!(p("../../etc/passwd").display(), "/etc/passwd");
        assert_eq!(p("/..").display(), "/");
        assert_eq!(p("").display(), "/");
        assert_eq!(p("a//b/").display(), "/a/b");
        assert!(VPath::parse("a\0b").is_err());
    }

    #[test]
    fn places_follow_the_longest_grant() {
        let u = user(&[
            ("", HostedAccess::ReadWrite),
            ("reports/daily", HostedAccess::Read),
        ]);
        let root = PathBuf::from("/nonexistent");
        let jail = Jail {
            root: &root,
            user: &u,
        };
        assert_eq!(
            jail.place(&p("/")),
            Place::GrantRoot(HostedAccess::ReadWrite)
        );
        assert_eq!(jail.place(&p("/x")), Place::Inside(HostedAccess::ReadWrite));
        assert_eq!(
            jail.place(&p("/reports")),
            Place::Inside(HostedAccess::ReadWrite)
        );
        assert_eq!(
            jail.place(&p("/reports/daily/f")),
            Place::Inside(HostedAccess::Read)
        );
        assert_eq!(jail.writable(&p("/x")), Ok(()));
        assert_eq!(jail.writable(&p("/reports")), Err(Refusal::Structural));
        assert_eq!(
            jail.writable(&p("/reports/daily")),
            Err(Refusal::Structural)
        );
        assert_eq!(
            jail.writable(&p("/reports/daily/f")),
            Err(Refusal::ReadOnly)
        );
        assert_eq!(jail.writable(&p("/")), Err(Refusal::Structural));
    }

    #[test]
    fn outside_the_grants_nothing_is_visible() {
        let u = user(&[("a/b", HostedAccess::ReadWrite), ("c", HostedAccess::Read)]);
        let root = PathBuf::from("/nonexistent");
        let jail = Jail {
            root: &root,
            user: &u,
        };
        assert_eq!(jail.place(&p("/")), Place::Ancestor);
        assert_eq!(jail.place(&p("/a")), Place::Ancestor);
        assert_eq!(jail.place(&p("/a/x")), Place::Hidden);
        assert_eq!(jail.place(&p("/d")), Place::Hidden);
        assert!(jail.lists(&p("/"), "a"));
        assert!(jail.lists(&p("/"), "c"));
        assert!(!jail.lists(&p("/"), "old-connection"));
        assert!(!jail.lists(&p("/a/b"), ".f.csv.ferry-partial-12"));
        assert_eq!(
            jail.readable(&p("/a/b/.f.ferry-partial-1")),
            Err(Refusal::Hidden)
        );
        assert_eq!(jail.writable(&p("/c/new")), Err(Refusal::ReadOnly));
        assert_eq!(jail.writable(&p("/a/b/new")), Ok(()));
        assert_eq!(jail.writable(&p("/a/new")), Err(Refusal::Hidden));
    }

    #[test]
    fn symlinks_inside_the_root_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canon");
        std::fs::create_dir_all(root.join("d")).expect("mkdir");
        std::fs::write(root.join("d/f"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", root.join("d/etc")).expect("symlink");
        std::os::unix::fs::symlink("/etc/hostname", root.join("d/h")).expect("symlink");
        let u = user(&[("d", HostedAccess::ReadWrite)]);
        let jail = Jail {
            root: &root,
            user: &u,
        };
        let mut read = OpenOptions::new();
        read.read(true);
        assert!(jail.open(&p("/d/f"), &mut read).is_ok());
        let e = jail.open(&p("/d/h"), &mut read).expect_err("link");
        assert!(is_symlink_error(&e), "{e}");
        let e = jail
            .open(&p("/d/etc/hostname"), &mut read)
            .expect_err("link dir");
        assert!(is_symlink_error(&e), "{e}");
        let e = create_dirs_nofollow(&root, &["d".into(), "etc".into(), "x".into()])
            .expect_err("mkdir through link");
        assert!(is_symlink_error(&e), "{e}");
    }
}
