//! `ferry run --sftp-listen`: the daemon runs Ferry's SFTP server for the applied `hostedSftp`
//! connections and reconciles them live. Driven with the real OpenSSH `sftp` client.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Sandbox;

/// A key pair made by OpenSSH's ssh-keygen: (private key path, public key line).
fn client_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("partner_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "partner", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sftp -b` with `commands` as user partner01; (success, stdout + stderr).
fn sftp(port: u16, key: &Path, known_hosts: &Path, commands: &str) -> (bool, String) {
    let mut child = Command::new("sftp")
        .args(["-b", "-", "-P", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("partner01@127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sftp runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(commands.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_daemon_serves_hosted_connections_and_a_connection_removed_from_the_files_loses_access() {
    let sb = Sandbox::new();
    let (key, public) = client_key(sb.root());
    let known_hosts = sb.root().join("known_hosts");
    let files = sb.write("drop.yaml", &connection(&public));
    let port = free_port();
    let mut child = common::ferry_command()
        .args(["run", "-f"])
        .arg(&files)
        .args([
            "--poll",
            "1s",
            "--sftp-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.root().join("daemon.log")).unwrap())
        .spawn()
        .expect("ferry run starts");

    // A report dropped into the connection's directory is what the partner sees.
    let data = sb.state.parent().unwrap().join("hosted-sftp");
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

    // Remove the connection from the files: the daemon re-applies, and the user is gone.
    std::fs::write(&files, "").unwrap();
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "the daemon stops cleanly");
    // The host key persists for the next start, so pinned clients keep working.
    assert!(data.join("ssh_host_ed25519_key").exists());
}
