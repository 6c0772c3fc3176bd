//! Helpers of the tests that run Ferry's hosted SFTP server through `ferry run --sftp-listen`:
//! client keys made by OpenSSH, a free port, the daemon (killed if a test fails before stopping
//! it), its log, its memory, and the Python client library scripts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Sandbox;

/// A key pair made by OpenSSH's ssh-keygen in `dir`: (private key path, public key line).
pub fn client_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `ferry run` child, killed if the test fails before stopping it.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Its resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("the daemon runs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// SIGTERM, and a clean exit.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.0.wait().unwrap().success(), "the daemon stops cleanly");
    }
}

/// `ferry run -f FILES --sftp-listen 127.0.0.1:PORT EXTRA...` in the sandbox, its stderr in
/// `daemon.log`.
pub fn start_daemon(
    sb: &Sandbox,
    files: &Path,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let child = super::ferry_command()
        .args(["run", "-f"])
        .arg(files)
        .args([
            "--poll",
            "1s",
            "--sftp-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .envs(env.iter().copied())
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.root().join("daemon.log")).unwrap())
        .spawn()
        .expect("ferry run starts");
    Daemon(child)
}

/// The daemon's log so far.
pub fn daemon_log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
}

/// Waits until the daemon's log contains `needle`; panics with the log after `within`.
#[track_caller]
pub fn wait_for_log(sb: &Sandbox, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !daemon_log(sb).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "`{needle}` never appeared in the daemon's log:\n{}",
            daemon_log(sb)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the server answers on `port`, and writes a `known_hosts` pinning its host key
/// (read from the daemon's log) at `known_hosts`.
pub fn wait_for_server(sb: &Sandbox, port: u16, known_hosts: &Path) {
    wait_for_log(sb, "Hosted SFTP on 127.0.0.1:", Duration::from_secs(60));
    let log = daemon_log(sb);
    let line = log
        .lines()
        .find(|l| l.contains("Hosted SFTP on 127.0.0.1:"))
        .expect("the start line");
    // `Hosted SFTP on ADDR (host key TYPE BASE64 SHA256:...)`
    let key = line
        .split("(host key ")
        .nth(1)
        .and_then(|rest| {
            let mut words = rest.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .expect("the host key on the start line");
    std::fs::write(known_hosts, format!("[127.0.0.1]:{port} {key}\n")).unwrap();
}

/// The Python interpreter that has the test client libraries (paramiko): `FERRY_TEST_PYTHON`
/// (set by scripts/test.sh to its virtualenv), else `python3`.
pub fn python() -> Command {
    Command::new(std::env::var("FERRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// Runs `tests/clients/sftp_abuse.py --port PORT ARGS...` and parses the JSON it prints.
#[track_caller]
pub fn abuse(port: u16, args: &[&str]) -> serde_json::Value {
    let out = abuse_command(port, args)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    parse_abuse(&out)
}

/// The command of [`abuse`], to start it in the background.
pub fn abuse_command(port: u16, args: &[&str]) -> Command {
    let mut cmd = python();
    cmd.arg(super::repo().join("tests/clients/sftp_abuse.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The JSON an `sftp_abuse.py` run printed; panics with its output when it failed.
#[track_caller]
pub fn parse_abuse(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sftp_abuse.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("sftp_abuse.py printed no JSON ({e}): {stdout}"))
}

/// The OpenSSH `sftp` options every test uses: the pinned host key only, no agent, no config.
pub fn sftp_command(port: u16, known_hosts: &Path) -> Command {
    let mut cmd = Command::new("sftp");
    cmd.args(["-F", "/dev/null", "-P", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "IdentityAgent=none"])
        .args(["-o", "ConnectTimeout=20"])
        .args(["-o", "LogLevel=ERROR"]);
    cmd
}

/// `sftp -b -` as `user` with `key`, `commands` on stdin: (success, stdout + stderr).
pub fn sftp_with_key(
    port: u16,
    known_hosts: &Path,
    user: &str,
    key: &Path,
    commands: &str,
) -> (bool, String) {
    let mut cmd = sftp_command(port, known_hosts);
    cmd.args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-i"])
        .arg(key)
        .args(["-b", "-"])
        .arg(format!("{user}@127.0.0.1"));
    batch(cmd, commands)
}

/// `sshpass -p PASSWORD sftp -b -` as `user`, `commands` on stdin: (success, stdout + stderr).
pub fn sftp_with_password(
    port: u16,
    known_hosts: &Path,
    user: &str,
    password: &str,
    commands: &str,
) -> (bool, String) {
    batch(
        password_command(port, known_hosts, user, password),
        commands,
    )
}

/// `sshpass -p PASSWORD sftp -b -` as `user`, reading its commands from standard input.
pub fn password_command(port: u16, known_hosts: &Path, user: &str, password: &str) -> Command {
    let mut cmd = Command::new("sshpass");
    cmd.args(["-p", password]).arg("sftp");
    // `-b` sets BatchMode=yes where it stands, and ssh keeps the first value: BatchMode=no first.
    let sftp = sftp_command(port, known_hosts);
    cmd.args(sftp.get_args())
        .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password"])
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .args(["-b", "-"])
        .arg(format!("{user}@127.0.0.1"));
    cmd
}

/// Runs `cmd` with `commands` on its standard input: (success, stdout + stderr).
pub fn batch(mut cmd: Command, commands: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sftp runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
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

/// The password printed on the line `  user NAME ... PASSWORD` of `ferry apply`'s output.
pub fn issued_password(stdout: &str, user: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("user {user} ")))
        .unwrap_or_else(|| panic!("no password line for {user}: {stdout}"));
    line.split_whitespace().last().unwrap().to_string()
}
