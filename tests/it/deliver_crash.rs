//! A kill -9 of Ferry in the middle of a large SFTP upload, then a restart or the same slot
//! run again by hand: exactly one complete file at the destination, no leftover, one run in the
//! history, and no partial file is ever listed under the final name. Runs against the private
//! OpenSSH sshd of `scripts/test-servers/sshd.sh`, through the binary.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sandbox, listing, s};

fn var(key: &str) -> &'static str {
    common::test_server("sshd")
        .get(key)
        .unwrap_or_else(|| panic!("sshd.sh env has no {key}"))
}

/// A schedule exporting `rows` generated rows (~110 bytes each) to the SFTP target, whose
/// directory is `dir` under the key user's home.
fn big_sftp_export(sb: &Sandbox, dir: &str, rows: u32) -> PathBuf {
    let key = std::fs::read_to_string(var("SFTP_KEY_ED25519")).unwrap();
    sb.write_secret("default", "sftp-key", "id_ed25519", &key);
    // An empty database file: the rows come from a recursive query.
    std::fs::write(sb.root().join("empty.db"), "").unwrap();
    let target = format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner}}
spec:
  sftp:
    host: {host}
    port: {port}
    directory: {dir}
    username: {user}
    privateKeySecretRef: {{name: sftp-key, key: id_ed25519}}
    hostKeys: ["{host_key}"]
"#,
        host = var("SFTP_HOST"),
        port = var("SFTP_PORT"),
        user = var("SFTP_KEY_USER"),
        host_key = var("SFTP_HOST_KEY_ED25519"),
    );
    let schedule = common::generated_export(
        "big",
        rows,
        "row %09d of a report that is large enough to be killed mid-upload",
        "partner",
        1,
    );
    sb.write("big.yaml", &format!("{target}---\n{schedule}"))
}

/// The runs of `rs/big`, newest first (`ferry history -o json`).
fn history(sb: &Sandbox) -> Vec<serde_json::Value> {
    let runs = sb
        .ferry(["history", "rs/big", "-o", "json"])
        .success()
        .json();
    runs.as_array().expect("a list of runs").clone()
}

/// The slot every test here runs.
const SLOT: &str = "2026-07-31T00:30:00+09:00";

/// `ferry run-now rs/big --slot SLOT`, killed with SIGKILL once the temporary file at
/// `local_dir` holds some MiB. Returns that temporary file's name and size.
fn run_and_kill_mid_upload(sb: &Sandbox, local_dir: &Path) -> (String, u64) {
    let mut child = spawn_run_now(sb);
    // Kill -9 once the upload is under way: the temporary file holds some MiB.
    let partial = upload_under_way(&mut child, local_dir, 4 << 20);
    child.kill().expect("kill -9");
    child.wait().unwrap();
    partial
}

/// `ferry run-now rs/big --slot SLOT`, started in the background.
fn spawn_run_now(sb: &Sandbox) -> std::process::Child {
    common::ferry_command()
        .args(["run-now", "rs/big", "--slot", SLOT])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry starts")
}

/// Waits until a temporary file at `local_dir` holds more than `bytes`; returns its name and
/// size.
fn upload_under_way(
    child: &mut std::process::Child,
    local_dir: &Path,
    bytes: u64,
) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let under_way = listing(local_dir)
            .into_iter()
            .find(|(name, size)| name.contains(".ferry-partial-") && *size > bytes);
        if let Some(p) = under_way {
            return p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ferry finished before the upload could be caught: make the file larger"
        );
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A sandbox with the big export applied (the slot's day is "tomorrow"), its resource file
/// and the destination directory on this machine.
fn applied_big_export() -> (Sandbox, PathBuf, PathBuf) {
    let mut sb = Sandbox::new();
    let (remote_dir, local_dir) = unique_dir();
    let files = big_sftp_export(&sb, &remote_dir, 2_500_000);
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    (sb, files, local_dir)
}

/// A directory of its own under the key user's home: (remote, local).
fn unique_dir() -> (String, PathBuf) {
    let remote_dir = format!("upload/{}", common::unique_name("crash"));
    let local_dir = Path::new(var("SFTP_KEY_USER_HOME")).join(&remote_dir);
    (remote_dir, local_dir)
}

#[test]
fn a_slot_run_again_by_hand_after_a_kill_continues_the_interrupted_run_and_leaves_no_partial() {
    let (sb, files, local_dir) = applied_big_export();
    let final_name = "big_20260731.csv";
    let (partial, _) = run_and_kill_mid_upload(&sb, &local_dir);

    // Run by hand again, the slot's interrupted run is continued: same run id, so the same
    // temporary name, overwritten and renamed; nothing of the first attempt is left.
    let again = sb.ferry(["run-now", "rs/big", "--slot", SLOT]).success();
    assert!(again.stdout.contains(": succeeded,"), "{again:#?}");
    // A later start finds nothing left to resume.
    sb.ferry(["run", "--once", "-f", s(&files)]).success();

    let runs = history(&sb);
    assert_eq!(runs.len(), 1, "one run for the slot: {runs:#?}");
    assert_eq!(runs[0]["outcome"], "succeeded");
    let deliveries = runs[0]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{runs:#?}");
    assert_eq!(deliveries[0]["outcome"], "succeeded");
    let bytes = runs[0]["bytes"].as_u64().unwrap();
    assert_eq!(
        listing(&local_dir),
        [(final_name.to_string(), bytes)],
        "the complete file and no leftover of {partial}"
    );
    let _ = std::fs::remove_dir_all(&local_dir);
}

#[test]
fn a_kill_during_a_large_sftp_upload_then_a_restart_leaves_exactly_one_complete_file() {
    let (sb, files, local_dir) = applied_big_export();
    let final_name = "big_20260731.csv";

    // A watcher lists the destination the whole time, as a consumer polling it would, and
    // records every size seen under the final name.
    let stop = Arc::new(AtomicBool::new(false));
    let seen_final: Arc<Mutex<Vec<u64>>> = Arc::default();
    let watcher = {
        let (stop, seen_final, dir) = (stop.clone(), seen_final.clone(), local_dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (name, size) in listing(&dir) {
                    if name == final_name {
                        seen_final.lock().unwrap().push(size);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let partial = run_and_kill_mid_upload(&sb, &local_dir);
    let after_kill = listing(&local_dir);
    assert!(
        after_kill.iter().all(|(name, _)| name != final_name),
        "nothing may appear under the final name before the upload completed: {after_kill:?}"
    );
    assert!(partial.0.starts_with(".big_20260731.csv.ferry-partial-"));

    // The next start resumes the interrupted run and completes the delivery, once.
    for _ in 0..2 {
        sb.ferry(["run", "--once", "-f", s(&files)]).success();
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    let runs = history(&sb);
    assert_eq!(runs.len(), 1, "one run for the slot: {runs:#?}");
    assert_eq!(runs[0]["outcome"], "succeeded");
    assert_eq!(runs[0]["trigger"], "backfill");
    let bytes = runs[0]["bytes"].as_u64().unwrap();
    let sha = runs[0]["sha256"].as_str().unwrap();
    let delivery = &runs[0]["deliveries"][0];
    assert_eq!(delivery["outcome"], "succeeded");
    assert_eq!(delivery["receipt"]["bytes"], bytes);
    assert!(
        delivery["receipt"]["details"]["hostKey"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    assert_eq!(
        listing(&local_dir),
        [(final_name.to_string(), bytes)],
        "exactly one complete file and no leftover"
    );
    let on_disk = Command::new("sha256sum")
        .arg(local_dir.join(final_name))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&on_disk.stdout).starts_with(sha));
    let seen = seen_final.lock().unwrap();
    assert!(!seen.is_empty(), "the watcher saw the final file");
    assert!(
        seen.iter().all(|&size| size == bytes),
        "a consumer only ever saw the complete file under the final name"
    );
    let _ = std::fs::remove_dir_all(&local_dir);
}

#[test]
fn a_resend_after_a_kill_supersedes_the_interrupted_run_and_removes_its_partial_upload() {
    let (sb, files, local_dir) = applied_big_export();
    let final_name = "big_20260731.csv";
    let (partial, _) = run_and_kill_mid_upload(&sb, &local_dir);

    // A re-send is a run of its own (a new run id, so a new temporary name): once it has
    // delivered, the interrupted run's partial upload is removed, and that run is cancelled
    // rather than resumed later to deliver a second time.
    let resent = sb
        .ferry(["run-now", "rs/big", "--slot", SLOT, "--resend"])
        .success();
    assert!(resent.stdout.contains(": succeeded,"), "{resent:#?}");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();

    let runs = history(&sb);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["outcome"], "succeeded", "the re-send: {runs:#?}");
    assert_eq!(
        runs[1]["outcome"], "cancelled",
        "the interrupted run: {runs:#?}"
    );
    assert!(
        runs[1]["error"].as_str().unwrap().contains("superseded"),
        "{runs:#?}"
    );
    let bytes = runs[0]["bytes"].as_u64().unwrap();
    assert_eq!(
        listing(&local_dir),
        [(final_name.to_string(), bytes)],
        "the complete file, and {partial} removed"
    );
    let _ = std::fs::remove_dir_all(&local_dir);
}

#[test]
fn a_slot_run_by_hand_while_another_process_runs_it_is_skipped_not_raced() {
    let (sb, _files, local_dir) = applied_big_export();
    let final_name = "big_20260731.csv";
    let mut first = spawn_run_now(&sb);
    upload_under_way(&mut first, &local_dir, 1 << 20);

    let second = sb.ferry(["run-now", "rs/big", "--slot", SLOT]).failure();
    assert!(second.stderr.contains("in flight"), "{second:#?}");
    assert!(first.wait().unwrap().success(), "the first run completes");

    let runs = history(&sb);
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["skipped", "succeeded"], "{runs:#?}");
    let bytes = runs[1]["bytes"].as_u64().unwrap();
    assert_eq!(listing(&local_dir), [(final_name.to_string(), bytes)]);
    let _ = std::fs::remove_dir_all(&local_dir);
}
