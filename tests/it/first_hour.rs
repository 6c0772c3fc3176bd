//! A newcomer's first hour (issue 22), through the binary, one test per finding: symlink
//! loops, empty input, colour in files, messages in words, hosts, queries, missed slots, the
//! quick start, `ferry` on PATH, the test script, and the help and names.

use crate::common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs ferry under bash's `time`, bounded by `timeout`: the run, and the CPU seconds (user +
/// system) it used. A hang fails the test after `limit` instead of hanging it.
fn timed(sb: &Sandbox, args: &[&str], limit: Duration) -> (Run, f64) {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"TIMEFORMAT='cpu %3U %3S'; time timeout "$0" "$@""#)
        .arg(format!("{}s", limit.as_secs()))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FERRY_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("FERRY_NOW", NOW).env("NO_COLOR", "1");
    let out = cmd.output().expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (stderr, cpu) = stderr
        .trim_end()
        .rsplit_once('\n')
        .map_or(("", stderr.trim_end()), |(a, b)| (a, b));
    let cpu: f64 = cpu
        .strip_prefix("cpu ")
        .unwrap_or_else(|| panic!("no `time` line in: {cpu}"))
        .split(' ')
        .map(|s| s.parse::<f64>().expect("seconds"))
        .sum();
    let run = Run {
        code: out.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: format!("{stderr}\n"),
    };
    (run, cpu)
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("a symlink");
}

// 1 -------------------------------------------------------------------------------------------

#[test]
fn a_symlink_loop_is_skipped_with_a_located_warning_in_well_under_a_second_of_cpu() {
    let sb = Sandbox::new();
    let dir = sb.files.join("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("good.yaml"), stream(&[local_dir("out")])).unwrap();
    symlink("../dir", &dir.join("self"));
    symlink("..", &dir.join("sub/up"));
    for command in [
        &["validate", "-f", s(&dir)][..],
        &["plan", "-f", s(&dir)][..],
        &["apply", "-f", s(&dir), "--auto-approve"][..],
        &["run", "--once", "-f", s(&dir)][..],
    ] {
        let (run, cpu) = timed(&sb, command, Duration::from_secs(60));
        assert_eq!(run.code, 0, "{command:?}: {run:#?}");
        assert!(cpu < 1.0, "{command:?} used {cpu:.3} s of CPU");
        for link in ["self", "sub/up"] {
            let warning = format!(
                "{}: warning: symlink loop: leads back to {}",
                dir.join(link).display(),
                dir.display()
            );
            assert!(
                run.stderr.contains(&warning),
                "{command:?}: {warning}\n{run:#?}"
            );
        }
        assert!(!run.stderr.contains("duplicate"), "{run:#?}");
    }
    // `me -> .`: the directory itself again, once, not 80 copies of its files.
    let loop2 = sb.files.join("loop2");
    std::fs::create_dir_all(&loop2).unwrap();
    std::fs::write(loop2.join("good.yaml"), stream(&[local_dir("out")])).unwrap();
    symlink(".", &loop2.join("me"));
    let (run, cpu) = timed(&sb, &["validate", "-f", s(&loop2)], Duration::from_secs(60));
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(cpu < 1.0, "{cpu:.3} s of CPU");
    assert!(run.stdout.starts_with("Valid: 1 resource(s)"), "{run:#?}");
    assert_eq!(
        run.stderr.lines().filter(|l| !l.is_empty()).count(),
        1,
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("loop2/me: warning: symlink loop"),
        "{run:#?}"
    );
}

#[test]
fn a_directory_given_twice_is_read_once() {
    let sb = Sandbox::new();
    let file = sb.write("one/target.yaml", &stream(&[local_dir("out")]));
    let dir = file.parent().unwrap();
    let run = sb
        .ferry(["validate", "-f", s(dir), "-f", s(&file)])
        .success();
    assert!(run.stdout.starts_with("Valid: 1 resource(s)"), "{run:#?}");
    assert!(run.stderr.contains("warning: the same file as"), "{run:#?}");
}

// 2 -------------------------------------------------------------------------------------------

/// Every file of the sandbox's state directory, with its bytes.
fn state_files(sb: &Sandbox) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(sb.state.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

/// A sandbox on a SQLite state whatever `FERRY_TEST_STATE` says: bytes are compared.
fn sqlite_state() -> Sandbox {
    let mut sb = Sandbox::new();
    sb.state = sb.root().join("state/state.db");
    sb
}

#[test]
fn empty_input_is_refused_and_leaves_the_state_byte_identical() {
    let sb = sqlite_state();
    let files = sb.write(
        "resources.yaml",
        &stream(&[local_dir("out"), report_schedule("daily", "out")]),
    );
    sb.apply(&[&files]);
    let before = state_files(&sb);
    let empty_dir = sb.root().join("emptydir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let empty_file = sb.write("empty/empty.yaml", "");
    let comments = sb.write(
        "comments/only.yaml",
        "# nothing here yet\n---\n# still nothing\n",
    );
    for path in [&empty_dir, &empty_file, &comments] {
        for command in [
            &["validate", "-f", s(path)][..],
            &["plan", "-f", s(path)][..],
            &["apply", "-f", s(path), "--auto-approve"][..],
            &["run", "--once", "-f", s(path)][..],
        ] {
            let run = sb.ferry(command).failure();
            let line = format!("{}: no resources here", path.display());
            assert!(run.stderr.starts_with(&line), "{command:?}: {run:#?}");
            assert!(run.stderr.contains("--allow-empty"), "{run:#?}");
            assert!(!run.stdout.contains("Apply complete"), "{run:#?}");
            assert_eq!(
                state_files(&sb),
                before,
                "{command:?} changed the state's bytes"
            );
        }
    }
    // Asked for, the wipe is planned, said first, and done.
    let plan = sb
        .ferry(["plan", "-f", s(&empty_dir), "--allow-empty"])
        .success();
    assert!(
        plan.stdout.starts_with(
            "Warning: this plan deletes every resource in the state (2): the files hold no resources"
        ),
        "{plan:#?}"
    );
    sb.ferry([
        "apply",
        "-f",
        s(&empty_dir),
        "--allow-empty",
        "--auto-approve",
    ])
    .success();
    assert_eq!(sb.snapshot().len(), 0);
}

#[test]
fn a_run_reload_that_finds_no_resources_keeps_the_previous_ones_and_warns() {
    let sb = Sandbox::new();
    let dir = sb.files.join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("resources.yaml");
    std::fs::write(&file, stream(&[local_dir("out")])).unwrap();
    let log = sb.root().join("daemon.log");
    let mut cmd = ferry_command();
    cmd.args(["run", "-f"])
        .arg(&dir)
        .args(["--poll", "1s"])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().expect("ferry run starts");
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let content = std::fs::read_to_string(&log).unwrap_or_default();
            if content.contains(text) {
                return content;
            }
            assert!(
                Instant::now() < deadline,
                "`{text}` never logged:\n{content}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("Applied: 1 created");
    // A checkout in progress: the file is gone for a moment.
    std::fs::remove_file(&file).unwrap();
    let content = wait_for("keeping the previous resources");
    assert!(content.contains("hold no resources"), "{content}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    assert_eq!(sb.snapshot().len(), 1, "the target is still applied");
}

// 3 -------------------------------------------------------------------------------------------

/// A state with a schedule whose export fails (its table is missing), so a run logs an error.
fn failing_schedule(sb: &Sandbox) -> PathBuf {
    let db = sb.root().join("shop.db");
    let status = Command::new(python())
        .args([
            "-c",
            "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('create table t (a)')",
        ])
        .arg(&db)
        .status()
        .expect("python runs");
    assert!(status.success());
    let files = sb.write(
        "failing.yaml",
        &stream(&[
            local_dir("out"),
            report_schedule("daily", "out").set(
                "source",
                "sql:\n  url: \"sqlite://shop.db\"\n  query: \"SELECT id FROM orders\"\nwindow: previousDay\n",
            ),
        ]),
    );
    sb.apply(&[&files]);
    files
}

#[test]
fn logs_in_a_file_or_a_pipe_and_with_no_color_hold_no_escape_codes() {
    let sb = Sandbox::new();
    let files = failing_schedule(&sb);
    let base = |extra: &[&str]| {
        let mut cmd = ferry_command();
        cmd.env_remove("NO_COLOR")
            .env("FERRY_NOW", "2026-07-30T15:31:00Z") // just after the 00:30 Tokyo slot
            .args(["run", "--once", "-v", "-f", s(&files)])
            .args(extra)
            .arg("--state")
            .arg(&sb.state)
            .arg("--secrets-dir")
            .arg(&sb.secrets)
            .current_dir(sb.root());
        cmd
    };
    // `ferry run --once 2>file`.
    let log = sb.root().join("run.log");
    let status = base(&[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "the run failed");
    let text = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("ERROR"),
        "a log to check"
    );
    assert!(!text.contains(&0x1b), "an escape code in the log file");
    // On a terminal (a pseudo-terminal made by `script`), colour is used unless asked not to.
    let on_terminal = |extra: &str, no_color_env: bool, now: &str| {
        let command = base(&[]);
        let mut line = format!("{}", command.get_program().to_string_lossy());
        for arg in command.get_args() {
            line.push_str(&format!(" '{}'", arg.to_string_lossy()));
        }
        line.push_str(extra);
        let mut script = Command::new("script");
        script
            .args(["-qec", &line, "/dev/null"])
            .current_dir(sb.root())
            .env("FERRY_NOW", now)
            .stdin(Stdio::null());
        if no_color_env {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let out = script.output().expect("script runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Each at the next day's slot, so that each run fails and logs.
    let plain = on_terminal("", false, "2026-07-31T15:31:00Z");
    assert!(plain.contains('\u{1b}'), "a terminal gets colour: {plain}");
    let flagged = on_terminal(" --no-color", false, "2026-08-01T15:31:00Z");
    assert!(flagged.contains("ERROR"), "{flagged}");
    assert!(!flagged.contains('\u{1b}'), "--no-color: {flagged}");
    let env = on_terminal("", true, "2026-08-02T15:31:00Z");
    assert!(env.contains("ERROR"), "{env}");
    assert!(!env.contains('\u{1b}'), "NO_COLOR: {env}");
}

// 4 -------------------------------------------------------------------------------------------

#[test]
fn messages_say_what_was_expected_and_what_was_found_where_it_is() {
    let sb = Sandbox::new();
    let check = |name: &str, text: &[u8], at: (usize, usize), message: &str| {
        let path = sb.files.join(name);
        std::fs::write(&path, text).unwrap();
        let run = sb.ferry(["validate", "-f", s(&path)]).failure();
        assert_eq!(diag_at(&run.stderr, &path, at.0, at.1), message, "{run:#?}");
    };
    let text = stream(&[report_schedule("r", "out").set("retry", "attempts: \"five\"\n")]);
    check(
        "attempts.yaml",
        text.as_bytes(),
        line_col(&text, "\"five\""),
        "ReportSchedule/r: spec.retry.attempts: expected a whole number from 1 to 4294967295, found the text \"five\"",
    );
    for port in ["70000", "0"] {
        let text = stream(&[Doc::new("DeliveryTarget", "ftp").set(
            "ftp",
            &format!("host: ftp.example.com\nport: {port}\nusername: u\n"),
        )]);
        check(
            "port.yaml",
            text.as_bytes(),
            line_col(&text, &format!("port: {port}")).add_cols(6),
            &format!(
                "DeliveryTarget/ftp: spec.ftp.port: expected a port number from 1 to 65535, found `{port}`"
            ),
        );
    }
    let text = stream(&[Doc::new("DeliveryTarget", "ftp").set(
        "ftp",
        "host: ftp.example.com\nusername: u\nhost: other.example.com\n",
    )]);
    let (first_line, first_col) = line_col(&text, "ftp.example.com");
    check(
        "duplicate.yaml",
        text.as_bytes(),
        line_col(&text, "host: other"),
        &format!(
            "DeliveryTarget/ftp: spec.ftp.host: duplicate key `host`: it is already given at line {first_line}, column {first_col} (each key once per mapping)"
        ),
    );
    let mut bomb = stream(&[local_dir("out")]) + "status:\n  a: &a [x, x, x, x, x, x, x, x, x]\n";
    for (n, prev) in ["b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g"])
    {
        bomb.push_str(&format!(
            "  {n}: &{n} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    let path = sb.files.join("bomb.yaml");
    std::fs::write(&path, &bomb).unwrap();
    let run = sb.ferry(["validate", "-f", s(&path)]).failure();
    let (_, _, message) = diag_for(&run.stderr, &path, "DeliveryTarget/out", "status.f");
    assert!(
        message.starts_with("the document holds more than 250000 values")
            && message.contains("YAML input is limited")
            && !message.contains("Nodes {"),
        "{message}"
    );
    // A Latin-1 byte on line 17.
    let mut text = stream(&[local_dir("out"), local_dir("other")]).into_bytes();
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines.insert(16, b"# r\xe9sum\xe9".to_vec());
    text = lines.join(&b'\n');
    check(
        "latin1.yaml",
        &text,
        (17, 4),
        "byte 0xE9 is not UTF-8 text: save the file as UTF-8",
    );
}

/// Moves a (line, col) position right.
trait AddCols {
    fn add_cols(self, n: usize) -> Self;
}

impl AddCols for (usize, usize) {
    fn add_cols(self, n: usize) -> Self {
        (self.0, self.1 + n)
    }
}

// 5 -------------------------------------------------------------------------------------------

#[test]
fn a_host_that_is_not_a_host_name_is_refused_at_validate_with_a_hint() {
    let sb = Sandbox::new();
    for (host, says) in [
        (
            "\"ftp .example com\"",
            "`ftp .example com` is not a host name: it contains a space",
        ),
        (
            "ftp://ftp.example.com",
            "`ftp://ftp.example.com` is a URL: write the host without ftp:// (`ftp.example.com`); the port goes in `port`",
        ),
        (
            "ftp.example.com:2121",
            "`ftp.example.com:2121` holds a port: write the host alone (`ftp.example.com`); the port goes in `port`",
        ),
    ] {
        let text =
            stream(&[Doc::new("DeliveryTarget", "ftp")
                .set("ftp", &format!("host: {host}\nusername: u\n"))]);
        let path = sb.write("host.yaml", &text);
        for command in ["validate", "plan", "apply"] {
            let run = sb.ferry([command, "-f", s(&path)]).failure();
            let (l, c) = line_col(&text, host);
            let message = diag_at(&run.stderr, &path, l, c);
            assert!(
                message.starts_with(&format!("DeliveryTarget/ftp: spec.ftp.host: {says}")),
                "{command}: {message}"
            );
        }
    }
    let ok =
        stream(&[Doc::new("DeliveryTarget", "ftp").set("ftp", "host: 192.0.2.10\nusername: u\n")]);
    let path = sb.write("ip.yaml", &ok);
    sb.ferry(["validate", "-f", s(&path)]).success();
}

// 6 -------------------------------------------------------------------------------------------

#[test]
fn a_query_that_writes_or_does_not_parse_is_refused_at_validate_inside_the_yaml() {
    let sb = Sandbox::new();
    for (query, offending, says) in [
        (
            "DROP TABLE orders",
            "DROP",
            "DROP TABLE is not a read statement",
        ),
        (
            "\"INSERT INTO orders (id) VALUES (1)\"",
            "INSERT",
            "INSERT is not a read statement",
        ),
        (
            "|\n    SELECT 1;\n    UPDATE orders SET total = 0",
            "UPDATE",
            "the query holds 2 statements",
        ),
        (
            "PRAGMA journal_mode = WAL",
            "PRAGMA",
            "`PRAGMA journal_mode = WAL` sets a value, which changes the database",
        ),
        (
            "|\n    SELECT id, total\n    FROM orders\n    WHERE total > > 3",
            "> 3",
            "not valid SQLite SQL: expected an expression, found `>`",
        ),
    ] {
        let text = stream(&[
            local_dir("out"),
            report_schedule("orders", "out").set(
                "source",
                &format!("sql:\n  url: \"sqlite://shop.db\"\n  query: {query}\nwindow: all\n"),
            ),
        ]);
        let path = sb.write("query.yaml", &text);
        let (l, c) = line_col(&text, offending);
        for command in ["validate", "plan", "apply"] {
            let run = sb.ferry([command, "-f", s(&path)]).failure();
            let message = diag_at(&run.stderr, &path, l, c);
            assert!(
                message.starts_with("ReportSchedule/orders: spec.source.sql.query: ")
                    && message.contains(says),
                "{command} {query}: {message}"
            );
        }
    }
}

// 7 -------------------------------------------------------------------------------------------

#[test]
fn the_quick_start_prints_the_plan_once_and_ends_with_a_short_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::copy(
        repo().join("scripts/quickstart.sh"),
        dir.path().join("scripts/quickstart.sh"),
    )
    .unwrap();
    let examples = dir.path().join("examples/quickstart");
    std::fs::create_dir_all(&examples).unwrap();
    for e in std::fs::read_dir(repo().join("examples/quickstart"))
        .unwrap()
        .flatten()
    {
        if e.path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "sql")
        {
            std::fs::copy(e.path(), examples.join(e.file_name())).unwrap();
        }
    }
    let mut cmd = Command::new("bash");
    cmd.arg(dir.path().join("scripts/quickstart.sh"))
        .env("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"))
        .env("NO_COLOR", "1")
        .env("PATH", "/usr/bin:/bin")
        .env("FERRY_NOW", NOW)
        .env_remove("FERRY_STATE")
        .stdin(Stdio::null());
    let out = cmd.output().expect("quickstart.sh runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("Ferry will perform the following actions")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.lines().count() < 150,
        "{} lines:\n{text}",
        text.lines().count()
    );
    let tail: Vec<&str> = text.lines().rev().take(9).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    for needle in [
        "Done. In short:",
        env!("CARGO_BIN_EXE_ferry"),
        "cargo install --path . --locked",
        "out/quickstart/order_items_20250616003000.csv",
        "out/quickstart/sales-weekly-xlsx_20250616.xlsx",
        "column -s, -t <",
        "history reportschedule/order-items-daily",
        "run -f examples/quickstart",
    ] {
        assert!(
            tail.contains(needle),
            "`{needle}` not in the summary:\n{tail}"
        );
    }
    assert!(
        dir.path()
            .join("out/quickstart/order_items_20250616003000.csv")
            .exists()
    );
    // Its "keep running" hint, a week later: no flood of missed slots.
    let run = ferry_command()
        .args([
            "--state",
            ".ferry/quickstart/state.db",
            "run",
            "--once",
            "-f",
            "examples/quickstart",
        ])
        .env("FERRY_NOW", "2026-08-06T00:00:00Z")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.lines().count() <= 3, "{stderr}");
}

// 8 -------------------------------------------------------------------------------------------

/// The `ferry ...` lines of a README's `sh` blocks.
fn ferry_lines(readme: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(readme).unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if in_sh && line.starts_with("ferry ") {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn with_ferry_on_path_every_example_readme_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("cargo install --path . --locked"));
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferry"), bin.path().join("ferry")).unwrap();
    let mut ran = 0;
    for entry in std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .flatten()
    {
        let readme = entry.path().join("README.md");
        if !readme.exists() {
            continue;
        }
        // Each example from a fresh directory, as the repository root it is run from.
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(repo().join("examples"), root.path().join("examples")).unwrap();
        // The simulator dry runs (a background `ferry psa-sim` and files under /tmp) are left
        // out: tests/it/psa_sync.rs runs the simulators.
        for line in ferry_lines(&readme)
            .into_iter()
            .filter(|l| !l.contains("psa-sim") && !l.contains("/tmp/"))
        {
            let out = Command::new("bash")
                .args(["-c", &line])
                .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
                .env("FERRY_NOW", NOW)
                .env("NO_COLOR", "1")
                .env_remove("FERRY_STATE")
                .env_remove("FERRY_SECRETS_DIR")
                .current_dir(root.path())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: `{line}` failed:\n{}{}",
                readme.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(
        ran >= 20,
        "only {ran} commands found in the examples' READMEs"
    );
}

// 9 -------------------------------------------------------------------------------------------

#[test]
fn the_test_script_keeps_python_packages_in_a_virtualenv_and_cleans_up_after_apt() {
    let script = std::fs::read_to_string(repo().join("scripts/test.sh")).unwrap();
    assert!(
        !script.contains("python3 -m pip install"),
        "a system python3 refuses pip (PEP 668)"
    );
    assert!(script.contains("python3 -m venv \"$TEST_VENV\""));
    assert!(script.contains("TEST_VENV=target/"));
    assert!(script.contains("export FERRY_TEST_PYTHON"));
    for package in ["openpyxl", "paramiko", "asyncssh", "aiosmtpd"] {
        assert!(script.contains(package), "{package}");
    }
    assert!(script.contains("rm -f /usr/sbin/policy-rc.d"));
    assert!(script.contains("rustup component add rustfmt"));
    assert!(script.contains("rustup component add clippy"));
    // When scripts/test.sh runs the tests, its interpreter is the one they use.
    if let Some(python) = std::env::var_os("FERRY_TEST_PYTHON") {
        let ok = Command::new(&python)
            .args(["-c", "import openpyxl, paramiko, asyncssh, aiosmtpd"])
            .status()
            .unwrap();
        assert!(ok.success(), "{python:?} lacks a test package");
    }
}

// 10 ------------------------------------------------------------------------------------------

const COMMANDS: &[&str] = &[
    "validate",
    "plan",
    "apply",
    "next",
    "run",
    "controller",
    "exec-run",
    "run-now",
    "history",
    "deliver",
    "keygen",
    "keyscan",
    "rotate-password",
    "psa-sim",
    "get",
    "crds",
];

#[test]
fn help_names_what_each_command_takes_with_one_set_of_placeholders() {
    let sb = Sandbox::new();
    let allowed = [
        "PATH|URL",
        "DIR",
        "DURATION",
        "FORMAT",
        "FILES",
        "RESOURCE",
        "NS",
        "N",
        "FILE",
        "NAME",
        "ADDR:PORT",
        "HOST[:PORT]",
        "RFC3339",
        "TYPE",
        "COMMENT",
        "BOOL",
        "OUTCOME",
        "STATE",
        "TARGET",
        "KIND",
        "PLAN_FILE",
        "COMMAND",
        // The hosted SFTP server's limits: OpenSSH's MaxStartups form, address blocks, sizes.
        "START:RATE:FULL",
        "CIDR",
        "SIZE",
    ];
    for command in COMMANDS {
        let help = sb.ferry([command, "--help"]).success().stdout;
        let mut rest = help.as_str();
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').map_or(rest.len(), |e| start + e);
            let placeholder = &rest[start + 1..end];
            rest = &rest[end..];
            if placeholder
                .chars()
                .all(|c| c.is_ascii_uppercase() || "_:|[]".contains(c))
                && !placeholder.is_empty()
            {
                assert!(
                    allowed.contains(&placeholder),
                    "`ferry {command} --help` uses <{placeholder}>"
                );
            }
        }
        assert!(help.contains("--state <PATH|URL>"), "{command}");
    }
    for command in ["run-now", "history"] {
        let help = sb.ferry([command, "--help"]).success().stdout;
        assert!(help.contains("customermapping/NAME"), "{command}: {help}");
    }
    let run = sb.ferry(["run", "--help"]).success().stdout;
    assert!(run.contains("CustomerMapping sync"), "{run}");
    let keyscan = sb.ferry(["keyscan", "--help"]).success().stdout;
    let timeout = keyscan.split("--timeout <DURATION>").nth(1).unwrap();
    assert!(
        timeout
            .trim_start()
            .starts_with("How long to wait for the server to accept"),
        "{keyscan}"
    );
}

#[test]
fn a_failed_run_says_so_once_and_names_no_file_it_did_not_write() {
    let sb = Sandbox::new();
    failing_schedule(&sb);
    let run = sb.ferry(["run-now", "reportschedule/daily"]).failure();
    assert!(run.stdout.contains(": failed, no file written"), "{run:#?}");
    assert!(!run.stdout.contains(".csv"), "{run:#?}");
    assert_eq!(
        run.stderr.matches("no such table: orders").count(),
        1,
        "{run:#?}"
    );
}

#[test]
fn keyscan_errors_name_the_scan_not_a_delivery() {
    let sb = Sandbox::new();
    let run = sb
        .ferry(["keyscan", "127.0.0.1:1", "--timeout", "2s"])
        .failure();
    assert!(run.stderr.contains("keyscan 127.0.0.1:1: "), "{run:#?}");
    assert!(!run.stderr.contains("delivery"), "{run:#?}");
}

#[test]
fn the_repository_root_holds_no_stray_report_and_the_readme_names_the_scripts_subcommands() {
    assert!(!repo().join("orders.csv").exists());
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("and `env` (`url` for `postgres.sh`)"));
    let postgres =
        std::fs::read_to_string(repo().join("scripts/test-servers/postgres.sh")).unwrap();
    assert!(postgres.contains("start|stop|status|url"));
    let _ = std::io::stdout().flush();
}
