//! The one rule of atomic delivery, for every transport: a file is written under a temporary
//! name in its destination directory, then renamed to its final name, so a reader sees no file,
//! the previous file or the complete new one, never a part. The temporary name is
//! `.<file>.ferry-partial-<run id>`: hidden, and the same for every attempt of one run, so an
//! interrupted upload leaves at most one leftover, replaced by the next attempt. Ferry's own
//! SFTP server never lists nor serves such names.
//!
//! The remote transports (FTP, SFTP) follow the rule over their protocol with
//! [`partial_name`]; the local ones (a directory, a hosted SFTP jail) hand the whole sequence
//! to [`place_in_dir`]: leftover removed, file placed, size checked, renamed, directory
//! synced, temporary file removed on any failure, size confirmed after the rename.

use std::io;
use std::path::Path;

/// The temporary name of `file_name` for run `run_id`.
pub fn partial_name(file_name: &str, run_id: i64) -> String {
    format!(".{file_name}.ferry-partial-{run_id}")
}

/// Whether `name` is one of Ferry's temporary names ([`partial_name`]).
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".ferry-partial-")
}

/// Places a file in the local directory `dir` as `file_name` by the rule above and returns its
/// size after the rename. `write_temp` puts the bytes at the temporary path it is given (a
/// copy, a reflink or a hard link) and returns how many it placed; `before_rename` may refuse
/// the final path (e.g. a symbolic link someone put there). Fails, leaving no temporary file,
/// when either size is not `expected_bytes`.
pub fn place_in_dir(
    dir: &Path,
    file_name: &str,
    run_id: i64,
    expected_bytes: u64,
    write_temp: impl FnOnce(&Path) -> io::Result<u64>,
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<u64> {
    let final_path = dir.join(file_name);
    let temp = dir.join(partial_name(file_name, run_id));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
