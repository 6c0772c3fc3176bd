//! The one rule of atomic delivery, for every transport: a file is written under a temporary
//! name in its destination directory, then renamed to its final name, so a reader sees no file,
//! the previous file or the complete new one, never a part. The temporary name is
//! `.<file>.ferry-partial-<run id>`: hidden, and the same for every attempt of one run, so an
//! interrupted upload leaves at most one leftover, replaced by the next attempt. Ferry's own
//! SFTP server never lists nor serves such names.

/// The temporary name of `file_name` for run `run_id`.
pub fn partial_name(file_name: &str, run_id: i64) -> String {
    format!(".{file_name}.ferry-partial-{run_id}")
}

/// Whether `name` is one of Ferry's temporary names ([`partial_name`]).
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".ferry-partial-")
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
}
