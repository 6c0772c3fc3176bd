//! Exactly once where the destination can tell. Ferry is killed with SIGKILL (the failpoint
//! `delivered-unrecorded`: the file is at its destination, the ledger does not know yet) and
//! started again: for FTP, SFTP, a local directory and a hosted SFTP connection the file is
//! found complete (same size, same SHA-256 read back) and recorded as delivered without being
//! sent again (the file on disk is the same inode, untouched); for email the outcome is
//! recorded `unknown`, no second message goes out, and only `--resend` sends one. Killed one
//! step earlier (`delivering-recorded`: complete under its temporary name, not renamed), the
//! resume delivers it. All through the binary, against the servers of `scripts/test-servers`.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{Sandbox, s};

const SLOT: &str = "2026-07-31T00:30:00+09:00";
const FILE: &str = "eo_20260731.csv";

fn server(name: &str, key: &str) -> String {
    common::test_server(name)
        .get(key)
        .unwrap_or_else(|| panic!("{name}.sh env has no {key}"))
        .clone()
}

/// A ReportSchedule `eo` exporting 20,000 generated rows (about 1 MB) to `target`.
fn schedule(target: &str) -> String {
    common::generated_export("eo", 20_000, "row %09d, delivered exactly once", target, 2)
}

/// A sandbox with `target_yaml` (a DeliveryTarget named `dest`) and the schedule applied.
fn applied(target_yaml: &str, prepare: impl FnOnce(&Sandbox)) -> (Sandbox, PathBuf) {
    let mut sb = Sandbox::new();
    std::fs::write(sb.root().join("empty.db"), "").unwrap();
    prepare(&sb);
    let files = sb.write(
        "eo.yaml",
        &format!("{target_yaml}\n---\n{}", schedule("dest")),
    );
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    (sb, files)
}

/// `ferry run-now rs/eo --slot SLOT` with failpoint `point`: it must die of SIGKILL there.
fn killed_at(sb: &Sandbox, point: &str) {
    common::run_now_killed_at(sb, "eo", SLOT, point);
}

/// The only run of the slot, from `ferry history`.
fn the_run(sb: &Sandbox) -> serde_json::Value {
    let runs = sb
        .ferry(["history", "rs/eo", "-o", "json"])
        .success()
        .json();
    let runs = runs.as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "one run for the slot: {runs:#?}");
    runs[0].clone()
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    common::listing(dir)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Killed between the rename and the ledger write, then started again: the file at
/// `delivered` is recognised, not sent again, and the run succeeds with one delivery.
fn resumes_without_sending_again(sb: &Sandbox, files: &Path, delivered: &Path) {
    killed_at(sb, "delivered-unrecorded");
    let run = the_run(sb);
    assert_eq!(run["outcome"], "running", "{run:#}");
    assert_eq!(run["deliveries"][0]["outcome"], "delivering", "{run:#}");
    let before = std::fs::metadata(delivered).expect("the file was delivered before the kill");
    assert_eq!(Some(before.len()), run["bytes"].as_u64());

    sb.ferry(["run", "--once", "-f", s(files)]).success();

    let run = the_run(sb);
    assert_eq!(run["outcome"], "succeeded", "{run:#}");
    let deliveries = run["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{run:#}");
    assert_eq!(deliveries[0]["outcome"], "succeeded", "{run:#}");
    assert_eq!(
        deliveries[0]["receipt"]["details"]["confirmedBy"], "sha256",
        "recognised by its SHA-256, read back: {run:#}"
    );
    let after = std::fs::metadata(delivered).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "the file was not sent again"
    );
    let dir = delivered.parent().unwrap();
    assert_eq!(names(dir), [FILE], "one file, no temporary left");
    // Running the slot again by hand sends nothing either.
    let again = sb.ferry(["run-now", "rs/eo", "--slot", SLOT]).success();
    assert!(again.stdout.contains("nothing to deliver"), "{again:#?}");
    let unchanged = std::fs::metadata(delivered).unwrap();
    assert_eq!(unchanged.ino(), before.ino());
}

fn ftp_target(dir: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: dest}}
spec:
  ftp:
    host: {host}
    port: {port}
    tls: explicit
    directory: /{dir}
    username: {user}
    passwordSecretRef: {{name: ftp, key: password}}
    caSecretRef: {{name: ftp, key: ca.pem}}"#,
        host = server("vsftpd", "FTP_HOST"),
        port = server("vsftpd", "FTP_PORT"),
        user = server("vsftpd", "FTP_USER"),
    )
}

fn ftp_secrets(sb: &Sandbox) {
    sb.write_secret(
        "default",
        "ftp",
        "password",
        &server("vsftpd", "FTP_PASSWORD"),
    );
    let ca = std::fs::read_to_string(server("vsftpd", "FTP_CA_CERT")).unwrap();
    sb.write_secret("default", "ftp", "ca.pem", &ca);
}

fn sftp_target(dir: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: dest}}
spec:
  sftp:
    host: {host}
    port: {port}
    directory: {dir}
    username: {user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{host_key}"]"#,
        host = server("sshd", "SFTP_HOST"),
        port = server("sshd", "SFTP_PORT"),
        user = server("sshd", "SFTP_KEY_USER"),
        host_key = server("sshd", "SFTP_HOST_KEY_ED25519"),
    )
}

fn sftp_secrets(sb: &Sandbox) {
    let key = std::fs::read_to_string(server("sshd", "SFTP_KEY_ED25519")).unwrap();
    sb.write_secret("default", "sftp", "id_ed25519", &key);
}

#[test]
fn ftp_a_kill_between_the_rename_and_the_ledger_write_sends_nothing_again() {
    let dir = common::unique_name("eo-ftp");
    let (sb, files) = applied(&ftp_target(&dir), ftp_secrets);
    let delivered = Path::new(&server("vsftpd", "FTP_ROOT"))
        .join(&dir)
        .join(FILE);
    resumes_without_sending_again(&sb, &files, &delivered);
    let _ = std::fs::remove_dir_all(delivered.parent().unwrap());
}

#[test]
fn sftp_a_kill_between_the_rename_and_the_ledger_write_sends_nothing_again() {
    let dir = format!("upload/{}", common::unique_name("eo-sftp"));
    let (sb, files) = applied(&sftp_target(&dir), sftp_secrets);
    let delivered = Path::new(&server("sshd", "SFTP_KEY_USER_HOME"))
        .join(&dir)
        .join(FILE);
    resumes_without_sending_again(&sb, &files, &delivered);
    let _ = std::fs::remove_dir_all(delivered.parent().unwrap());
}

#[test]
fn local_dir_a_kill_between_the_rename_and_the_ledger_write_sends_nothing_again() {
    let target = "apiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata: {name: dest}\n\
                  spec:\n  localDir: {path: out}";
    let (sb, files) = applied(target, |_| {});
    let delivered = sb.root().join("out").join(FILE);
    resumes_without_sending_again(&sb, &files, &delivered);
}

#[test]
fn hosted_sftp_a_kill_between_the_rename_and_the_ledger_write_sends_nothing_again() {
    let target = "apiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata: {name: dest}\n\
                  spec:\n  hostedSftp:\n    connectionName: drop\n    user: partner07\n    \
                  directory: reports";
    let (sb, files) = applied(target, |_| {});
    let delivered = sb
        .work_dir()
        .join("hosted-sftp/users/partner07/reports")
        .join(FILE);
    resumes_without_sending_again(&sb, &files, &delivered);
}

#[test]
fn sftp_a_kill_before_the_rename_delivers_on_resume_and_leaves_no_temporary() {
    let dir = format!("upload/{}", common::unique_name("eo-sftp-pre"));
    let (sb, files) = applied(&sftp_target(&dir), sftp_secrets);
    let local = Path::new(&server("sshd", "SFTP_KEY_USER_HOME")).join(&dir);
    killed_at(&sb, "delivering-recorded");
    let waiting = names(&local);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        waiting[0].starts_with(&format!(".{FILE}.ferry-partial-")),
        "complete under its temporary name, nothing under the final one: {waiting:?}"
    );

    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    let run = the_run(&sb);
    assert_eq!(run["outcome"], "succeeded", "{run:#}");
    let delivery = &run["deliveries"][0];
    assert_eq!(delivery["outcome"], "succeeded", "{run:#}");
    assert!(
        delivery["receipt"]["details"]["confirmedBy"].is_null(),
        "not found, so delivered: {run:#}"
    );
    assert_eq!(names(&local), [FILE], "one file, no temporary left");
    let on_disk = std::fs::read(local.join(FILE)).unwrap();
    assert_eq!(Some(on_disk.len() as u64), run["bytes"].as_u64());
    let _ = std::fs::remove_dir_all(&local);
}

/// Captured messages whose text contains `needle`.
fn messages_with(needle: &str) -> usize {
    let dir = PathBuf::from(server("smtp", "SMTP_MAIL_DIR"));
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .map(|m| m.contains(needle))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn email_a_kill_once_the_message_was_handed_over_is_unknown_and_never_sent_twice_unasked() {
    let subject = common::unique_name("eo-mail");
    let target = format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: dest}}
spec:
  email:
    smtp:
      host: {host}
      port: {port}
      tls: starttls
      username: {user}
      passwordSecretRef: {{name: smtp, key: password}}
      caSecretRef: {{name: smtp, key: ca.pem}}
    from: "Reports <reports@ferry.example>"
    to: [finance@partner.example]
    subject: "{subject}"
    body: "{{rows}} rows attached"
    attach: true"#,
        host = server("smtp", "SMTP_HOST"),
        port = server("smtp", "SMTP_PORT"),
        user = server("smtp", "SMTP_USER"),
    );
    let (sb, files) = applied(&target, |sb| {
        sb.write_secret(
            "default",
            "smtp",
            "password",
            &server("smtp", "SMTP_PASSWORD"),
        );
        let ca = std::fs::read_to_string(server("smtp", "SMTP_CA")).unwrap();
        sb.write_secret("default", "smtp", "ca.pem", &ca);
    });

    killed_at(&sb, "delivered-unrecorded");
    assert_eq!(messages_with(&subject), 1, "the message went out once");
    let run = the_run(&sb);
    assert_eq!(run["deliveries"][0]["outcome"], "delivering", "{run:#}");
    let message_id = run["deliveries"][0]["receipt"]["messageId"]
        .as_str()
        .expect("the Message-ID is recorded before DATA")
        .to_string();

    // The resume cannot ask a mailbox: the outcome is unknown, and nothing is sent again.
    sb.ferry(["run", "--once", "-f", s(&files)]);
    let run = the_run(&sb);
    assert_eq!(run["outcome"], "unknown", "{run:#}");
    let delivery = &run["deliveries"][0];
    assert_eq!(delivery["outcome"], "unknown", "{run:#}");
    assert!(
        delivery["error"].as_str().unwrap().contains(&message_id),
        "the error names the message: {run:#}"
    );
    assert_eq!(messages_with(&subject), 1, "no second message");

    // Nor by hand, unless asked.
    let again = sb.ferry(["run-now", "rs/eo", "--slot", SLOT]).failure();
    assert!(again.stdout.contains("outcome unknown"), "{again:#?}");
    assert_eq!(messages_with(&subject), 1, "no second message");
    let resent = sb
        .ferry(["run-now", "rs/eo", "--slot", SLOT, "--resend"])
        .success();
    assert!(resent.stdout.contains("delivered to"), "{resent:#?}");
    assert_eq!(messages_with(&subject), 2, "--resend sends it again");
    assert_eq!(
        messages_with(&message_id),
        1,
        "the re-send has a Message-ID of its own"
    );
}
