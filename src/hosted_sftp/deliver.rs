//! Delivery of a report into a hosted SFTP connection's directory.
//!
//! The same contract as every transport: the file appears under its final name complete or
//! not at all. It is first placed under the hidden temporary name
//! `.<file>.ferry-partial-<run id>`, then renamed.
//!
//! One recipient must never change what another receives. A delivered file is read-only
//! (mode 0440), and the server never writes such a file in place (see `sftp`). Its bytes are
//! a hard link to the staged file (none copied) only where nobody can write: into a `read`
//! connection, or when the connection is the run's sole destination; everywhere else a copy of
//! its own (a reflink where the file system offers one), so no inode is ever shared between a
//! `readWrite` jail and another jail or another target. The SFTP server
//! never lists nor serves such names, so a partner sees either no file, the previous file,
//! or the new one. A retry with the same run id reuses the same temporary name, so an
//! interrupted delivery leaves at most one hidden leftover, replaced on the next attempt.
//!
//! This is blocking file-system work: call it from `spawn_blocking`.

use std::io;
use std::path::{Path, PathBuf};

use super::jail;
use super::users::{check_user_name, directory_components};
use crate::fsutil::{Placement, copy_private};
use crate::{Error, Result};

/// What a delivery into a connection produced, for the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The file on disk, `<data_dir>/users/<user>/<directory>/<file>`.
    pub path: PathBuf,
    /// The file as the SFTP user sees it, e.g. `/reports/orders.csv`.
    pub remote_path: String,
    /// Its size, read back after the rename.
    pub bytes: u64,
    /// Whether it is a hard link of the staged file or a copy of its own.
    pub placement: Placement,
}

/// Mode of a delivered file: readable by the server's user and group, writable by nobody.
pub const DELIVERED_MODE: u32 = 0o440;

/// Puts `staged` into the directory `directory` of `user`'s jail under `data_dir` (the
/// server's data directory, which need not be running) as `file_name`, atomically, and
/// returns where it is and its size. `link_allowed`: nobody can write where the file goes or
/// no one else receives it, so it may be a hard link of `staged` (made read-only). The
/// directory is created when missing, never through a symbolic link. Fails when the size
/// after the rename is not `expected_bytes`.
/// Puts `staged` into the directory `directory` of `user`'s jail under `data_dir` (the
/// server's data directory, which need not be running) as `file_name`, atomically, and
/// returns where it is and its size. `link_allowed`: nobody can write where the file goes or
/// no one else receives it, so it may be a hard link of `staged` (made read-only). The
/// directory is created when missing, never through a symbolic link. Fails when the size
/// after the rename is not `expected_bytes`. `commit` is called just before the file is
/// placed (the delivery's point of no return); its error fails the delivery.
#[allow(clippy::too_many_arguments)]
pub fn deliver_into(
    data_dir: &Path,
    user: &str,
    directory: &str,
    staged: &Path,
    file_name: &str,
    run_id: i64,
    expected_bytes: u64,
    link_allowed: bool,
    commit: impl FnOnce() -> io::Result<()>,
) -> Result<Delivered> {
    let fail = failure(user);
    let components = checked_components(user, directory)?;
    if file_name.is_empty()
        || file_name == "."
        || file_name == ".."
        || file_name.contains(['/', '\0'])
        || crate::deliver::atomic::is_partial_name(file_name)
    {
        return Err(fail(format!("invalid file name `{file_name}`")));
    }
    let io_fail = |what: &str, e: io::Error| fail(format!("{what}: {e}"));
    std::fs::create_dir_all(data_dir).map_err(|e| io_fail("creating the data directory", e))?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| io_fail("the data directory", e))?;
    let root = jail::create_dirs_nofollow(&data_dir, &["users".into(), user.to_string()])
        .map_err(|e| io_fail("creating the user's root", e))?;
    let dir = jail::create_dirs_nofollow(&root, &components)
        .map_err(|e| io_fail("creating the connection directory", e))?;

    let final_path = dir.join(file_name);
    // The point of no return, before placing (see `deliver::local_dir`).
    commit().map_err(|e| io_fail("placing the file", e))?;
    let mut placement = Placement::Copy;
    let bytes = crate::deliver::atomic::place_in_dir(
        &dir,
        file_name,
        run_id,
        // Ferry's own server never lists nor serves the hidden temporary name.
        crate::api::PartialNaming::Hidden,
        expected_bytes,
        |temp| {
            let (copied, how) = place(staged, temp, link_allowed)?;
            placement = how;
            Ok(copied)
        },
        |final_path| match std::fs::symlink_metadata(final_path) {
            // rename() would replace the link itself, but refuse anyway: someone put a link
            // where a report goes.
            Ok(m) if m.file_type().is_symlink() => Err(jail::symlink_error()),
            _ => Ok(()),
        },
    )
    .map_err(|e| io_fail("placing the file", e))?;
    let mut remote_path = String::from("/");
    for c in &components {
        remote_path.push_str(c);
        remote_path.push('/');
    }
    remote_path.push_str(file_name);
    Ok(Delivered {
        path: final_path,
        remote_path,
        bytes,
        placement,
    })
}

/// An error of a delivery to `user`.
fn failure(user: &str) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Delivery {
        target: format!("hostedSftp user {user}"),
        message,
    }
}

/// The path components of `user`'s `directory`, both checked.
fn checked_components(user: &str, directory: &str) -> Result<Vec<String>> {
    let fail = failure(user);
    check_user_name(user).map_err(&fail)?;
    directory_components(directory).map_err(|e| fail(format!("directory: {e}")))
}

/// Where [`deliver_into`] puts `file_name` for `user`'s `directory`: the path on disk and the
/// path the SFTP user sees. Creates nothing.
pub fn delivery_path(
    data_dir: &Path,
    user: &str,
    directory: &str,
    file_name: &str,
) -> Result<(PathBuf, String)> {
    let components = checked_components(user, directory)?;
    let mut path = data_dir.join("users").join(user);
    let mut remote_path = String::from("/");
    for c in &components {
        path.push(c);
        remote_path.push_str(c);
        remote_path.push('/');
    }
    remote_path.push_str(file_name);
    Ok((path.join(file_name), remote_path))
}

/// A hard link of `staged` (made read-only first) when `link_allowed` and on the same file
/// system, an independent read-only copy otherwise. Returns the size now at `to` and how.
fn place(staged: &Path, to: &Path, link_allowed: bool) -> io::Result<(u64, Placement)> {
    if link_allowed {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staged, std::fs::Permissions::from_mode(DELIVERED_MODE))?;
        if std::fs::hard_link(staged, to).is_ok() {
            return Ok((std::fs::symlink_metadata(to)?.len(), Placement::HardLink));
        }
    }
    copy_private(staged, to, DELIVERED_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_file_replaces_the_previous_one_and_leaves_no_temporary() {
        let data = tempfile::tempdir().expect("tempdir");
        let staging = tempfile::tempdir().expect("tempdir");
        let staged = staging.path().join("r.csv");
        std::fs::write(&staged, "a,b\n1,2\n").expect("write");
        let d = deliver_into(
            data.path(),
            "alice",
            "reports/",
            &staged,
            "r.csv",
            7,
            8,
            true,
            || Ok(()),
        )
        .expect("deliver");
        assert_eq!(d.remote_path, "/reports/r.csv");
        assert_eq!(d.bytes, 8);
        assert_eq!(
            std::fs::read_to_string(&d.path).expect("read"),
            "a,b\n1,2\n"
        );
        let staged2 = staging.path().join("r2.csv");
        std::fs::write(&staged2, "new\n").expect("write");
        let d = deliver_into(
            data.path(),
            "alice",
            "reports",
            &staged2,
            "r.csv",
            8,
            4,
            false,
            || Ok(()),
        )
        .expect("deliver again");
        assert_eq!(std::fs::read_to_string(&d.path).expect("read"), "new\n");
        let names: Vec<_> = std::fs::read_dir(d.path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        assert_eq!(names, ["r.csv"]);
    }

    #[test]
    fn a_file_is_linked_only_where_allowed_and_always_read_only() {
        use std::os::unix::fs::MetadataExt;
        let data = tempfile::tempdir().expect("tempdir");
        let staged = data.path().join("staged.csv");
        std::fs::write(&staged, "a\n").expect("write");
        let linked = deliver_into(
            data.path(),
            "bob",
            "in",
            &staged,
            "r.csv",
            1,
            2,
            true,
            || Ok(()),
        )
        .expect("bob");
        let copied = deliver_into(
            data.path(),
            "carol",
            "in",
            &staged,
            "r.csv",
            1,
            2,
            false,
            || Ok(()),
        )
        .expect("carol");
        assert_eq!(linked.placement, Placement::HardLink);
        assert_ne!(copied.placement, Placement::HardLink);
        let ino = |p: &Path| std::fs::metadata(p).expect("meta").ino();
        assert_eq!(ino(&linked.path), ino(&staged));
        assert_ne!(ino(&copied.path), ino(&staged), "a copy has its own inode");
        for path in [&linked.path, &copied.path] {
            let mode = std::fs::metadata(path).expect("meta").mode() & 0o777;
            assert_eq!(mode, DELIVERED_MODE, "{}", path.display());
        }
    }

    #[test]
    fn a_wrong_size_fails_and_cleans_up() {
        let data = tempfile::tempdir().expect("tempdir");
        let staging = tempfile::tempdir().expect("tempdir");
        let staged = staging.path().join("r.csv");
        std::fs::write(&staged, "abc").expect("write");
        let e = deliver_into(
            data.path(),
            "bob",
            "",
            &staged,
            "r.csv",
            1,
            99,
            false,
            || Ok(()),
        )
        .expect_err("size");
        assert!(e.to_string().contains("expected 99"), "{e}");
        let root = data.path().join("users/bob");
        assert_eq!(std::fs::read_dir(root).expect("list").count(), 0);
    }

    #[test]
    fn bad_names_are_refused() {
        let data = tempfile::tempdir().expect("tempdir");
        let staged = data.path().join("x");
        std::fs::write(&staged, "x").expect("write");
        for name in ["", "..", "a/b", ".a.ferry-partial-1"] {
            assert!(
                deliver_into(data.path(), "u", "d", &staged, name, 1, 1, false, || Ok(())).is_err()
            );
        }
        assert!(
            deliver_into(data.path(), "../u", "d", &staged, "f", 1, 1, false, || Ok(
                ()
            ))
            .is_err()
        );
        assert!(
            deliver_into(data.path(), "u", "../d", &staged, "f", 1, 1, false, || Ok(
                ()
            ))
            .is_err()
        );
    }
}
