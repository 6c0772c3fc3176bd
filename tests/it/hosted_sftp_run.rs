//! `ferry run --sftp-listen`: the daemon runs Ferry's SFTP server for the applied `hostedSftp`
//! connections and reconciles them live. Driven with the real OpenSSH `sftp` client.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Sandbox;
use common::hosted::{self, free_port, issued_password, start_daemon};

/// The partner's key pair: (private key path, public key line).
fn client_key(dir: &Path) -> (PathBuf, String) {
    hosted::client_key(dir, "partner_key")
}

fn connection(public_key: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-drop}}
spec:
  hostedSftp:
    connectionName: partner-drop
    displayName: Partner drop box
    user: partner01
    publicKeys: ["{public_key}"]
    directory: reports
"#
    )
}

/// `sftp -b` with `commands` as user partner01, learning the host key on first use (the test
/// then checks it against the one the daemon logs); (success, stdout + stderr).
fn sftp(port: u16, key: &Path, known_hosts: &Path, commands: &str) -> (bool, String) {
    let mut cmd = Command::new("sftp");
    cmd.args(["-b", "-", "-P", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ])
        .args(["-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("partner01@127.0.0.1")
        // A `get` lands in the sandbox, not in the repository.
        .current_dir(known_hosts.parent().expect("the sandbox"));
    hosted::batch(cmd, commands)
}

/// An open `sftp -b -` session reading commands from a pipe.
struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Session {
    /// Starts `cmd` (an `sftp -b -` command) and waits until it answers a `pwd`.
    fn open(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sftp runs");
        let mut stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        writeln!(stdin, "pwd").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the session answers");
            if line.contains("Remote working directory") {
                break;
            }
        }
        Session {
            child,
            stdin,
            lines,
        }
    }

    /// Asserts that the server cut this session (its log says so) and that the session lists
    /// nothing any more: sftp notices the cut at its next command.
    fn assert_cut(mut self, sb: &Sandbox, dir: &str, file: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(sb.root().join("daemon.log")).unwrap();
            if log.contains("session closed: access revoked") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the open session was not cut: {log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = writeln!(self.stdin, "ls {dir}");
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the cut session never ended");
            std::thread::sleep(Duration::from_millis(100));
        }
        let after: Vec<String> = self.lines.try_iter().collect();
        assert!(
            !after.iter().any(|l| l.contains(file)),
            "the cut session still listed files: {after:?}"
        );
    }
}

#[test]
fn the_daemon_serves_hosted_connections_and_a_connection_removed_from_the_files_loses_access() {
    let sb = Sandbox::new();
    let (key, public) = client_key(sb.root());
    let known_hosts = sb.root().join("known_hosts");
    let files = sb.write("drop.yaml", &connection(&public));
    let port = free_port();
    let mut child = start_daemon(&sb, &files, port, &[], &[("FERRY_LOG", "info")]);

    // A report dropped into the connection's directory is what the partner sees.
    let data = sb.work_dir().join("hosted-sftp");
    let reports = data.join("users/partner01/reports");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        if reports.exists() {
            std::fs::write(reports.join("orders.csv"), "id\r\n1\r\n").unwrap();
            let (ok, out) = sftp(
                port,
                &key,
                &known_hosts,
                "ls /reports\nget /reports/orders.csv\n",
            );
            if ok {
                break out;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server never served the connection: {}",
            std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(listing.contains("orders.csv"), "{listing}");
    let log = std::fs::read_to_string(sb.root().join("daemon.log")).unwrap();
    assert!(log.contains("Hosted SFTP on 127.0.0.1:"), "{log}");
    let host_key = std::fs::read_to_string(&known_hosts).unwrap();
    let offered = host_key.split_whitespace().nth(2).unwrap();
    assert!(
        log.contains(offered),
        "the log names the host key to pin: {log}"
    );

    // Remove the connection from the files while a session is open: the daemon re-applies,
    // the session is cut and the user is gone.
    let mut cmd = Command::new("sftp");
    cmd.args(["-P", &port.to_string(), "-i"])
        .arg(&key)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-b", "-", "partner01@127.0.0.1"]);
    let session = Session::open(cmd);
    // (Another resource stays: files that hold none look like a checkout in progress, and
    // the daemon keeps what it had.)
    std::fs::write(&files, common::stream(&[common::local_dir("out")])).unwrap();
    session.assert_cut(&sb, "/reports", "orders.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = sftp(port, &key, &known_hosts, "ls /reports\n");
        if !ok {
            assert!(
                out.contains("Permission denied") || out.contains("Connection closed"),
                "{out}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the removed user kept access");
        std::thread::sleep(Duration::from_millis(300));
    }

    child.stop();
    // The host key persists for the next start, so pinned clients keep working.
    assert!(data.join("ssh_host_ed25519_key").exists());
}

/// A `hostedSftp` connection without keys: its user logs in with a generated password.
const PASSWORD_CONNECTION: &str = r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: finance-drop}
spec:
  hostedSftp:
    connectionName: finance-drop
    user: finance01
    directory: payouts
    access: readWrite
"#;

/// `sftp -b -` as finance01 with `password`, `commands` on stdin: (success, stdout + stderr).
fn sftp_password(port: u16, known_hosts: &Path, password: &str, commands: &str) -> (bool, String) {
    hosted::sftp_with_password(port, known_hosts, "finance01", password, commands)
}

/// Every byte Ferry keeps about the state (database, WAL) and the daemon's log.
fn kept_bytes(sb: &Sandbox) -> Vec<u8> {
    let mut all = Vec::new();
    let dir = sb.state.parent().unwrap();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all.extend(std::fs::read(sb.root().join("daemon.log")).unwrap_or_default());
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_generated_password_is_shown_once_works_through_the_daemon_and_rotation_replaces_it() {
    let mut sb = Sandbox::new();
    // Every ferry command of this test logs at trace level, libraries included.
    sb.set_env("FERRY_LOG", "trace");
    let files = sb.write("finance.yaml", PASSWORD_CONNECTION);
    let known_hosts = sb.root().join("known_hosts");

    // The plan announces the password; it never shows one.
    let plan = sb.ferry(["plan", "-f", files.to_str().unwrap()]).success();
    assert!(
        plan.stdout
            .contains("+ user \"finance01\": new login via default/finance-drop; a password is generated at apply and shown once"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("1 password to generate"),
        "{}",
        plan.stdout
    );

    // Apply shows it once; a second apply has nothing to do and shows nothing.
    let applied = sb.apply(&[&files]);
    let password = issued_password(&applied.stdout, "finance01");
    assert_eq!(password.len(), 32, "{}", applied.stdout);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(
        !applied.stderr.contains(&password),
        "the apply log shows the password"
    );
    let again = sb.apply(&[&files]);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert!(!again.stdout.contains("password"), "{}", again.stdout);

    // The daemon serves the user with that password, at trace level.
    let port = free_port();
    let mut daemon = start_daemon(&sb, &files, port, &[], &[("FERRY_LOG", "trace")]);
    hosted::wait_for_server(&sb, port, &known_hosts);
    let deadline = Instant::now() + Duration::from_secs(30);
    let uploaded = sb.write("payout.csv", "id;amount\r\n1;10.00\r\n");
    let batch = format!(
        "put {} /payouts/payout.csv\nls -l /payouts\n",
        uploaded.display()
    );
    let out = loop {
        let (ok, out) = sftp_password(port, &known_hosts, &password, &batch);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the password never worked: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(out.contains("payout.csv"), "{out}");
    let data = sb.work_dir().join("hosted-sftp");
    assert_eq!(
        std::fs::read(data.join("users/finance01/payouts/payout.csv")).unwrap(),
        b"id;amount\r\n1;10.00\r\n"
    );
    let (ok, out) = sftp_password(port, &known_hosts, "not-the-password", "ls /payouts\n");
    assert!(!ok, "a wrong password is refused: {out}");

    // An open session, then a rotation while the daemon holds the state: the session is closed,
    // the old password refused, the new one accepted.
    let session = Session::open(hosted::password_command(
        port,
        &known_hosts,
        "finance01",
        &password,
    ));

    let rotated = sb
        .ferry(["rotate-password", "deliverytarget/finance-drop"])
        .success();
    let new_password = rotated.stdout.lines().last().unwrap().trim().to_string();
    assert_eq!(new_password.len(), 32, "{}", rotated.stdout);
    assert_ne!(new_password, password);
    assert!(
        rotated.stdout.contains("shown this once"),
        "{}",
        rotated.stdout
    );
    assert!(
        !rotated.stderr.contains(&new_password),
        "the rotation log shows the password"
    );

    session.assert_cut(&sb, "/payouts", "payout.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _) = sftp_password(port, &known_hosts, &new_password, "ls /payouts\n");
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated password never worked"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, out) = sftp_password(port, &known_hosts, &password, "ls /payouts\n");
    assert!(!ok, "the old password is refused after the rotation: {out}");

    daemon.stop();
    // Neither password is kept anywhere, nor logged at trace level; only the Argon2id hash is.
    let kept = kept_bytes(&sb);
    assert!(contains(&kept, "$argon2id$"), "the state keeps the hash");
    for p in [&password, &new_password] {
        assert!(
            !contains(&kept, p),
            "a password was found in the state or the log"
        );
    }
}

#[test]
fn rotate_password_refuses_users_that_log_in_with_keys_and_targets_that_are_not_hosted() {
    let sb = Sandbox::new();
    let (_, public) = client_key(sb.root());
    let files = sb.write("drop.yaml", &connection(&public));
    sb.apply(&[&files]);
    let refused = sb
        .ferry(["rotate-password", "deliverytarget/partner-drop"])
        .failure();
    assert!(
        refused
            .stderr
            .contains("logs in with the public keys of default/partner-drop"),
        "{}",
        refused.stderr
    );
    let missing = sb
        .ferry(["rotate-password", "deliverytarget/nope"])
        .failure();
    assert!(
        missing.stderr.contains("is not applied"),
        "{}",
        missing.stderr
    );

    // Giving the password user a key drops its password at the next apply.
    let files = sb.write("finance.yaml", PASSWORD_CONNECTION);
    let applied = sb.apply(&[&files]);
    issued_password(&applied.stdout, "finance01");
    let with_key = PASSWORD_CONNECTION.replace(
        "    access: readWrite\n",
        &format!("    access: readWrite\n    publicKeys: [\"{public}\"]\n"),
    );
    std::fs::write(&files, with_key).unwrap();
    let plan = sb.ferry(["plan", "-f", files.to_str().unwrap()]).success();
    assert!(
        plan.stdout
            .contains("its password stops working: it logs in with a key now"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("1 password to drop"),
        "{}",
        plan.stdout
    );
}
