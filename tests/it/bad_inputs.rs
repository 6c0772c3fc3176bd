//! Every class of bad input a newcomer can write, one file each in `tests/bad-input/`, with
//! the expected location on the file's first line (`# expect: LINE:COL TEXT`). For each file,
//! `validate`, `plan`, `apply` and `run --once` must exit 1 with exactly one diagnostic at
//! that location that says TEXT, never panic, create no state where there was none, and leave
//! an existing state byte for byte as it was.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// A fixture and what it promises.
struct Fixture {
    path: PathBuf,
    line: usize,
    col: usize,
    text: String,
}

fn fixtures() -> Vec<Fixture> {
    let dir = repo().join("tests/bad-input");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/bad-input")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            // Read as bytes: one fixture is not UTF-8 (its first line is).
            let bytes = std::fs::read(&path).expect("a fixture");
            let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first).into_owned();
            let expect = first
                .strip_prefix("# expect: ")
                .unwrap_or_else(|| panic!("{}: no `# expect: LINE:COL TEXT` line", path.display()));
            let (at, text) = expect.split_once(' ').expect("LINE:COL TEXT");
            let (line, col) = at.split_once(':').expect("LINE:COL");
            Fixture {
                line: line.parse().expect("a line number"),
                col: col.parse().expect("a column number"),
                text: text.to_string(),
                path,
            }
        })
        .collect()
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("a state file"));
            }
        }
    }
    out
}

/// Asserts that a refused run said exactly one thing, at the fixture's place, in its words.
#[track_caller]
fn refused_at(run: &Run, f: &Fixture, command: &str) {
    let name = f.path.display();
    assert_eq!(run.code, 1, "{command} {name}: exit 1 expected: {run:#?}");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{command} {name} panicked: {run:#?}"
    );
    assert!(
        !run.stdout.contains("Apply complete") && !run.stdout.contains("Ferry will perform"),
        "{command} {name} went on to plan: {run:#?}"
    );
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{command} {name}: one diagnostic: {run:#?}");
    let prefix = format!("{}:{}:{}: ", f.path.display(), f.line, f.col);
    let message = lines[0].strip_prefix(&prefix).unwrap_or_else(|| {
        panic!(
            "{command}: expected the diagnostic at `{prefix}`, got:\n{}",
            lines[0]
        )
    });
    assert!(
        message.contains(&f.text),
        "{command} {name}: `{}` expected in:\n{message}",
        f.text
    );
}

#[test]
fn every_class_of_bad_input_is_refused_at_its_place_and_changes_nothing() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 40,
        "at least 40 classes of bad input, found {}",
        fixtures.len()
    );
    // A state that holds something, on SQLite (its files are compared byte for byte).
    let dir = tempfile::tempdir().expect("a tempdir");
    let state = dir.path().join("applied/state.db");
    let baseline = dir.path().join("baseline.yaml");
    std::fs::write(&baseline, stream(&[local_dir("baseline-out")])).expect("write");
    let ferry = |args: &[&str], state: &Path| {
        let mut cmd = ferry_command();
        cmd.args(args)
            .arg("--state")
            .arg(state)
            .arg("--secrets-dir")
            .arg(dir.path().join("secrets"))
            .current_dir(dir.path());
        let out = cmd.output().expect("ferry runs");
        Run {
            code: out
                .status
                .code()
                .expect("ferry exits, not killed by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let applied = ferry(&["apply", "-f", s(&baseline), "--auto-approve"], &state);
    assert_eq!(applied.code, 0, "{applied:#?}");
    let before = files_under(state.parent().expect("the state's directory"));
    assert!(!before.is_empty());

    let fresh_dir = dir.path().join("fresh");
    let fresh = fresh_dir.join("state.db");
    for f in &fixtures {
        let file = s(&f.path);
        let validate = ferry(&["validate", "-f", file], &fresh);
        refused_at(&validate, f, "validate");
        assert_eq!(validate.stdout, "", "diagnostics go to standard error only");
        for args in [
            &["plan", "-f", file][..],
            &["apply", "-f", file, "--auto-approve"][..],
            &["run", "--once", "-f", file][..],
        ] {
            let run = ferry(args, &fresh);
            refused_at(&run, f, args[0]);
            assert_eq!(
                run.stderr, validate.stderr,
                "{} says what validate says",
                args[0]
            );
            assert!(
                !fresh_dir.exists(),
                "{} {file} created a state (or its directory)",
                args[0]
            );
        }
        let apply = ferry(&["apply", "-f", file, "--auto-approve"], &state);
        refused_at(&apply, f, "apply");
        assert!(
            files_under(state.parent().unwrap()) == before,
            "apply {file} changed the applied state's files"
        );
    }
}
