//! Walking the paths given with `-f`: each directory and file once (by device and inode, so a
//! symlink loop is a warning, not a hang), within the limits on files, bytes and entries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;

/// At most this many YAML files are read for one command: `-f` pointed at the wrong
/// directory (a home directory, `/`) fails with a clear error instead of reading for minutes.
pub const MAX_FILES: usize = 50_000;

/// At most this many bytes of YAML are read for one command (10,000 resources are about
/// 9 MiB).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// At most this many directory entries are looked at while walking the `-f` directories.
pub const MAX_ENTRIES: usize = 500_000;

/// The YAML files under some paths, each once, with what was skipped and why.
#[derive(Debug, Default)]
pub struct FileList {
    /// The files to read, in order: each `-f` path in turn, directories walked in name order.
    pub files: Vec<PathBuf>,
    /// The sum of their sizes (as listed; a file that grows is cut at [`MAX_BYTES`]).
    pub bytes: u64,
    /// Paths that cannot be read, and a bound exceeded.
    pub errors: Vec<Diagnostic>,
    /// Entries skipped: symlink loops, directories or files reached twice, special files.
    pub warnings: Vec<Diagnostic>,
}

/// Lists the YAML files under `paths` (`-` is left out: standard input is not a file). A file
/// given directly is read whatever its extension (a pipe such as `<(...)` too); directories
/// are walked in name order, skipping hidden entries such as `.git` and `.ferry`, following
/// symlinks, but visiting each directory and file once (by device and inode): a symlink that
/// leads back to a directory being walked is a loop, reported as a warning and skipped.
pub fn list_files(paths: &[PathBuf]) -> FileList {
    let mut walk = Walk::default();
    for path in paths {
        if path.as_os_str() == "-" {
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk.directory(path, &m),
            Ok(m) => walk.file(path, &m, true),
            Err(e) => walk
                .list
                .errors
                .push(Diagnostic::file(path, format!("cannot read: {e}"))),
        }
        if walk.stopped {
            break;
        }
    }
    walk.list
}

/// The state of one [`list_files`].
#[derive(Default)]
pub(super) struct Walk {
    list: FileList,
    /// Directories seen, by (device, inode), with the path they were first reached by.
    dirs: HashMap<(u64, u64), PathBuf>,
    /// Files seen, likewise.
    seen_files: HashMap<(u64, u64), PathBuf>,
    entries: usize,
    /// A bound was exceeded: nothing more is listed.
    stopped: bool,
}

pub(super) fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Walk {
    fn warn(&mut self, path: &Path, message: String) {
        self.list.warnings.push(Diagnostic::path(path, message));
    }

    fn stop(&mut self, path: &Path, message: String) {
        self.list.errors.push(Diagnostic::path(path, message));
        self.stopped = true;
    }

    /// A file to read; `explicit` when named by `-f` (then any kind of file is read).
    fn file(&mut self, path: &Path, meta: &std::fs::Metadata, explicit: bool) {
        if !meta.is_file() && !explicit {
            self.warn(
                path,
                "not a regular file (a pipe, socket or device): skipped".to_string(),
            );
            return;
        }
        if meta.is_file() {
            if let Some(first) = self.seen_files.get(&file_id(meta)) {
                let message = format!(
                    "the same file as {} (a link, or given twice): read once",
                    first.display()
                );
                self.warn(path, message);
                return;
            }
            self.seen_files.insert(file_id(meta), path.to_path_buf());
            self.list.bytes += meta.len();
        }
        self.list.files.push(path.to_path_buf());
        if self.list.files.len() > MAX_FILES {
            self.stop(
                path,
                format!(
                    "more than {MAX_FILES} YAML files to read: point -f at the directory that holds the resources"
                ),
            );
        } else if self.list.bytes > MAX_BYTES {
            self.stop(
                path,
                format!(
                    "more than {} MiB of YAML to read: point -f at the directory that holds the resources",
                    MAX_BYTES / (1024 * 1024)
                ),
            );
        }
    }

    /// Walks a directory depth-first in name order, without recursion (a deep tree cannot
    /// exhaust the stack). Each frame holds the directory's identity, so a symlink that leads
    /// to one of them is recognised as a loop.
    fn directory(&mut self, root: &Path, meta: &std::fs::Metadata) {
        let id = file_id(meta);
        if let Some(first) = self.dirs.get(&id) {
            let message = format!(
                "the same directory as {} (given twice, or inside another -f path): read once",
                first.display()
            );
            self.warn(root, message);
            return;
        }
        self.dirs.insert(id, root.to_path_buf());
        let mut stack: Vec<(PathBuf, (u64, u64), std::vec::IntoIter<PathBuf>)> = Vec::new();
        match self.entries_of(root) {
            Some(entries) => stack.push((root.to_path_buf(), id, entries.into_iter())),
            None => return,
        }
        while let Some((_, _, entries)) = stack.last_mut() {
            if self.stopped {
                return;
            }
            let Some(path) = entries.next() else {
                stack.pop();
                continue;
            };
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // A dangling symlink: an error only where a resource file was expected.
                Err(e) if is_yaml => {
                    self.list
                        .errors
                        .push(Diagnostic::file(&path, format!("cannot read: {e}")));
                    continue;
                }
                Err(_) => continue,
            };
            if meta.is_dir() {
                let id = file_id(&meta);
                if let Some((ancestor, _, _)) = stack.iter().find(|(_, a, _)| *a == id) {
                    let message = format!(
                        "symlink loop: leads back to {}, which is being read: skipped",
                        ancestor.display()
                    );
                    self.warn(&path, message);
                    continue;
                }
                if let Some(first) = self.dirs.get(&id) {
                    let message = format!(
                        "the same directory as {} (a symlink): read once",
                        first.display()
                    );
                    self.warn(&path, message);
                    continue;
                }
                self.dirs.insert(id, path.clone());
                if let Some(entries) = self.entries_of(&path) {
                    stack.push((path, id, entries.into_iter()));
                }
            } else if is_yaml {
                self.file(&path, &meta, false);
            }
        }
    }

    /// The non-hidden entries of a directory, sorted by name; counts them against
    /// [`MAX_ENTRIES`].
    fn entries_of(&mut self, dir: &Path) -> Option<Vec<PathBuf>> {
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) => {
                self.list
                    .errors
                    .push(Diagnostic::path(dir, format!("cannot read directory: {e}")));
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in read.flatten() {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                self.stop(
                    dir,
                    format!(
                        "more than {MAX_ENTRIES} directory entries to look at: point -f at the directory that holds the resources"
                    ),
                );
                return None;
            }
            let name = entry.file_name();
            if !name.as_encoded_bytes().starts_with(b".") {
                names.push(name);
            }
        }
        names.sort();
        Some(names.into_iter().map(|n| dir.join(n)).collect())
    }
}
