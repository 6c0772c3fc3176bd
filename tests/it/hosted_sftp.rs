//! Ferry's hosted SFTP server, driven by the real OpenSSH `sftp` client (key authentication in
//! batch mode, password authentication through `sshpass`), with the server running in-process
//! on 127.0.0.1 and a port chosen by the system. Each test has its own server, data directory
//! and client keys; the client pins the server's host key (`StrictHostKeyChecking=yes`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry::api::HostedAccess;
use ferry::hosted_sftp::{
    self, Connection, HostedSftpConfig, HostedSftpServer, LockoutPolicy, Users, UsersUpdate,
};
use ferry::ssh::{self, KeyType};

// ---- logs ------------------------------------------------------------------------------------

/// Everything the server logged, from every test of this binary (tests look for their own
/// user names).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines_with(needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().expect("log buffer")).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

// ---- the server ------------------------------------------------------------------------------

/// A client key pair, the private key in a file the `sftp` client can use.
struct ClientKey {
    path: PathBuf,
    public_line: String,
}

fn client_key(dir: &Path, name: &str) -> ClientKey {
    let key = ssh::generate_key(KeyType::Ed25519, name, None).expect("generate a client key");
    let path = dir.join(name);
    std::fs::write(&path, &key.private_openssh).expect("write the client key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    ClientKey {
        path,
        public_line: key.public_line.clone(),
    }
}

fn connection(user: &str, dir: &str, access: HostedAccess, keys: &[&ClientKey]) -> Connection {
    Connection {
        namespace: "default".into(),
        target_name: format!("{user}-{}", dir.trim_end_matches('/')),
        connection_name: format!("{user}-{}", dir.trim_end_matches('/')),
        display_name: None,
        user: user.into(),
        public_keys: keys.iter().map(|k| k.public_line.clone()).collect(),
        directory: dir.into(),
        access,
    }
}

/// A server in its own runtime, with a data directory and a client directory (keys,
/// `known_hosts`, batch files) in one temporary directory.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: Option<HostedSftpServer>,
    temp: tempfile::TempDir,
    known_hosts: PathBuf,
}

/// A lock-out policy fast enough for tests.
fn quick_lockout() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 3,
        window: Duration::from_secs(600),
        lockout: Duration::from_secs(600),
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        ..LockoutPolicy::default()
    }
}

impl Fixture {
    fn new() -> Self {
        logs();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(temp.path().join("client")).expect("client dir");
        let known_hosts = temp.path().join("client/known_hosts");
        Fixture {
            runtime,
            server: None,
            temp,
            known_hosts,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.temp.path().join("data")
    }

    fn client_dir(&self) -> PathBuf {
        self.temp.path().join("client")
    }

    fn config(&self) -> HostedSftpConfig {
        let mut config =
            HostedSftpConfig::new("127.0.0.1:0".parse().expect("address"), self.data_dir());
        config.lockout = quick_lockout();
        config
    }

    /// Starts the server with `users` and pins its host key for the client.
    fn start_with(&mut self, config: HostedSftpConfig, users: Users) {
        let server = self
            .runtime
            .block_on(hosted_sftp::start(config, users))
            .expect("start the hosted SFTP server");
        let line = format!(
            "[127.0.0.1]:{} {}\n",
            server.local_addr().port(),
            server.host_key_line()
        );
        std::fs::write(&self.known_hosts, line).expect("write known_hosts");
        self.server = Some(server);
    }

    fn start(&mut self, connections: &[Connection], passwords: &BTreeMap<String, String>) {
        let users = Users::new(connections, passwords).expect("valid users");
        let config = self.config();
        self.start_with(config, users);
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }

    fn server(&self) -> &HostedSftpServer {
        self.server.as_ref().expect("server started")
    }

    fn addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    fn update(
        &self,
        connections: &[Connection],
        passwords: &BTreeMap<String, String>,
    ) -> UsersUpdate {
        let users = Users::new(connections, passwords).expect("valid users");
        self.server().update_users(users)
    }

    /// The directory of `user`'s jail on disk.
    fn jail(&self, user: &str) -> PathBuf {
        self.data_dir().join("users").join(user)
    }

    /// The common `sftp` options: the pinned host key only, no agent, no config files.
    fn sftp_command(&self) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.args(["-F", "/dev/null", "-P", &self.addr().port().to_string()])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "IdentityAgent=none"])
            .args(["-o", "ConnectTimeout=20"])
            .args(["-o", "LogLevel=ERROR"]);
        cmd
    }

    /// Runs `batch` as `user` with `key` (`sftp -b`: a failing command ends the batch with a
    /// non-zero exit, unless prefixed with `-`). The working directory is the client dir, so
    /// `get`/`put` use local files there.
    fn sftp_key(&self, user: &str, key: &ClientKey, batch: &str) -> Output {
        let file = self.batch_file(batch);
        let mut cmd = self.sftp_command();
        cmd.args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
        ])
        .arg("-i")
        .arg(&key.path)
        .arg("-b")
        .arg(&file)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(self.client_dir());
        run(cmd)
    }

    /// Runs `batch` as `user` logging in with `password` (through `sshpass`).
    fn sftp_password(&self, user: &str, password: &str, batch: &str) -> Output {
        let file = self.batch_file(batch);
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", password]).arg("sftp");
        let sftp = self.sftp_command();
        cmd.args(sftp.get_args())
            .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
            .args(["-o", "PreferredAuthentications=password"])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .arg("-b")
            .arg(&file)
            .arg(format!("{user}@127.0.0.1"))
            .current_dir(self.client_dir());
        run(cmd)
    }

    /// An interactive-like session: `sftp -b -` reading commands from a pipe, its output
    /// read line by line.
    fn sftp_session(&self, user: &str, key: &ClientKey) -> Session {
        let mut cmd = self.sftp_command();
        cmd.args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
        ])
        .arg("-i")
        .arg(&key.path)
        .args(["-b", "-"])
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(self.client_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start sftp");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Session {
            child,
            stdin: Some(stdin),
            lines,
            seen: Vec::new(),
        }
    }

    fn batch_file(&self, batch: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.temp.path().join(format!("batch-{n}"));
        std::fs::write(&path, batch).expect("write batch file");
        path
    }

    /// Waits until the server has exactly `n` logged-in sessions.
    fn wait_sessions(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.server().sessions().len() == n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "sftp failed:\n{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "sftp should have failed:\n{}",
        text(out)
    );
    text(out)
}

/// A running `sftp -b -`.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Session {
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        // A session that was closed makes this fail: the caller checks the outcome.
        let _ = writeln!(stdin, "{command}");
        let _ = stdin.flush();
    }

    /// Waits for an output line containing `needle`.
    fn expect_line(&mut self, needle: &str, within: Duration) -> bool {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for an output line starting with `prefix` (not the echo of a command).
    fn expect_line_starting(&mut self, prefix: &str, within: Duration) -> bool {
        if self.seen.iter().any(|l| l.starts_with(prefix)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the process to exit; its status, or None if it is still running.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin.take();
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn no_passwords() -> BTreeMap<String, String> {
    BTreeMap::new()
}

// ---- tests -----------------------------------------------------------------------------------

#[test]
fn a_key_user_lists_gets_puts_renames_and_removes_in_a_read_write_connection() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "alice_key");
    fx.start(
        &[connection(
            "alice",
            "drop/",
            HostedAccess::ReadWrite,
            &[&key],
        )],
        &no_passwords(),
    );
    std::fs::write(fx.jail("alice").join("drop/report.csv"), "id,qty\n1,2\n").expect("seed");
    std::fs::write(fx.client_dir().join("upload.csv"), "uploaded\n").expect("local file");

    let out = succeeded(&fx.sftp_key(
        "alice",
        &key,
        "pwd\nls /\ncd drop\nls -l\nget report.csv got.csv\nput upload.csv\n\
         rename upload.csv renamed.csv\nmkdir sub\nput upload.csv sub/inner.csv\nrm sub/inner.csv\n\
         rmdir sub\nls\n",
    ));
    assert!(out.contains("Remote working directory: /"), "{out}");
    assert!(out.contains("report.csv"), "{out}");
    assert!(out.contains(" alice "), "ls -l shows the owner: {out}");
    assert_eq!(
        std::fs::read_to_string(fx.client_dir().join("got.csv")).expect("downloaded"),
        "id,qty\n1,2\n"
    );
    let drop = fx.jail("alice").join("drop");
    assert_eq!(
        std::fs::read_to_string(drop.join("renamed.csv")).expect("uploaded and renamed"),
        "uploaded\n"
    );
    assert!(!drop.join("upload.csv").exists());
    assert!(!drop.join("sub").exists());

    // OpenSSH's `rename` uses posix-rename@openssh.com, which the server offers: the target
    // is replaced atomically.
    std::fs::write(drop.join("other.csv"), "x").expect("seed");
    succeeded(&fx.sftp_key(
        "alice",
        &key,
        "rename drop/renamed.csv drop/other.csv\nput upload.csv drop/renamed.csv\n",
    ));
    assert_eq!(
        std::fs::read_to_string(drop.join("other.csv")).expect("replaced"),
        "uploaded\n"
    );
    succeeded(&fx.sftp_key("alice", &key, "rm drop/renamed.csv\n"));
    assert!(!drop.join("renamed.csv").exists());
}

#[test]
fn a_password_user_logs_in_with_the_generated_password_and_not_with_another() {
    let mut fx = Fixture::new();
    let password = hosted_sftp::generate_password();
    let hash = hosted_sftp::hash_password(&password).expect("hash");
    let passwords = BTreeMap::from([("bob".to_string(), hash)]);
    fx.start(
        &[connection("bob", "reports", HostedAccess::Read, &[])],
        &passwords,
    );
    std::fs::write(fx.jail("bob").join("reports/r.csv"), "r\n").expect("seed");
    let out = succeeded(&fx.sftp_password("bob", &password, "ls reports\n"));
    assert!(out.contains("r.csv"), "{out}");
    failed(&fx.sftp_password("bob", "not-the-password", "ls reports\n"));
}

#[test]
fn a_read_only_connection_refuses_every_write() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "carol_key");
    fx.start(
        &[connection("carol", "reports/", HostedAccess::Read, &[&key])],
        &no_passwords(),
    );
    let reports = fx.jail("carol").join("reports");
    std::fs::write(reports.join("r.csv"), "r\n").expect("seed");
    std::fs::create_dir(reports.join("old")).expect("seed dir");
    std::fs::write(fx.client_dir().join("local.csv"), "l\n").expect("local file");

    // Reading works.
    succeeded(&fx.sftp_key("carol", &key, "ls reports\nget reports/r.csv\n"));
    // Every kind of write is refused, one command per session (a batch stops at the first
    // failure).
    for command in [
        "put local.csv reports/new.csv",
        "put local.csv reports/r.csv",
        "mkdir reports/newdir",
        "rmdir reports/old",
        "rm reports/r.csv",
        "rename reports/r.csv reports/moved.csv",
        "chmod 777 reports/r.csv",
        "put local.csv new-at-root.csv",
        "rmdir reports",
        "rename reports elsewhere",
    ] {
        let out = fx.sftp_key("carol", &key, &format!("{command}\n"));
        let t = failed(&out);
        assert!(
            t.contains("Permission denied") || t.contains("No such file"),
            "{command}: {t}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(reports.join("r.csv")).expect("kept"),
        "r\n"
    );
    assert_eq!(
        std::fs::metadata(reports.join("r.csv"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    let mut names: Vec<_> = std::fs::read_dir(&reports)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    names.sort();
    assert_eq!(names, ["old", "r.csv"]);
    assert!(!fx.jail("carol").join("new-at-root.csv").exists());
}

#[test]
fn dot_dot_and_absolute_paths_cannot_leave_the_jail() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "dave_key");
    let other = client_key(&fx.client_dir(), "erin_key");
    fx.start(
        &[
            connection("dave", "up", HostedAccess::ReadWrite, &[&key]),
            connection("erin", "secret", HostedAccess::ReadWrite, &[&other]),
        ],
        &no_passwords(),
    );
    std::fs::write(fx.jail("erin").join("secret/s.txt"), "erin's\n").expect("seed");
    std::fs::write(fx.data_dir().join("outside.txt"), "outside\n").expect("seed");
    std::fs::write(fx.client_dir().join("local.txt"), "l\n").expect("local");

    for command in [
        "get ../../../../../etc/hostname",
        "get /etc/hostname",
        "get ../erin/secret/s.txt",
        "get /../erin/secret/s.txt",
        "get up/../../outside.txt",
        "get ../../outside.txt",
        "ls ../erin",
        "put local.txt ../../escaped.txt",
        "put local.txt /../escaped.txt",
        "put local.txt up/../../../escaped.txt",
        "mkdir ../escaped-dir",
        "cd /etc",
    ] {
        let out = fx.sftp_key("dave", &key, &format!("{command}\n"));
        let t = failed(&out);
        assert!(
            !t.contains("erin's") && !t.contains("outside\n"),
            "{command} leaked: {t}"
        );
    }
    // `..` stops at the jail root, like a chroot: what is listed is dave's own root.
    let out = succeeded(&fx.sftp_key("dave", &key, "ls /..\ncd ../../..\npwd\nls\n"));
    assert!(out.contains("Remote working directory: /"), "{out}");
    assert!(out.contains("up"), "{out}");
    assert!(!out.contains("erin") && !out.contains("secret"), "{out}");
    assert!(!fx.data_dir().join("escaped.txt").exists());
    assert!(!fx.data_dir().join("users/escaped.txt").exists());
    assert!(!fx.data_dir().join("users/escaped-dir").exists());
    assert!(!fx.client_dir().join("hostname").exists());
    assert!(!fx.client_dir().join("s.txt").exists());
    assert!(!fx.client_dir().join("outside.txt").exists());
}

#[test]
fn a_symlink_placed_in_the_jail_is_never_followed() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "frank_key");
    fx.start(
        &[connection("frank", "box", HostedAccess::ReadWrite, &[&key])],
        &no_passwords(),
    );
    let outside = fx.temp.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    std::fs::write(outside.join("secret.txt"), "top secret\n").expect("outside file");
    let jailed = fx.jail("frank").join("box");
    std::os::unix::fs::symlink(outside.join("secret.txt"), jailed.join("file-link"))
        .expect("file symlink");
    std::os::unix::fs::symlink(&outside, jailed.join("dir-link")).expect("dir symlink");
    std::fs::write(fx.client_dir().join("local.txt"), "l\n").expect("local");

    for command in [
        "get box/file-link",
        "get box/dir-link/secret.txt",
        "ls box/dir-link/secret.txt",
        "put local.txt box/dir-link/planted.txt",
        "put local.txt box/file-link",
        "mkdir box/dir-link/newdir",
        "rm box/dir-link/secret.txt",
        "chmod 777 box/file-link",
        "cd box/dir-link",
        "rename box/dir-link box/moved-link",
    ] {
        let out = fx.sftp_key("frank", &key, &format!("{command}\n"));
        let t = failed(&out);
        assert!(!t.contains("top secret"), "{command} leaked: {t}");
    }
    assert!(!fx.client_dir().join("file-link").exists());
    assert!(!fx.client_dir().join("secret.txt").exists());
    assert!(!outside.join("planted.txt").exists());
    assert!(!outside.join("newdir").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).expect("kept"),
        "top secret\n"
    );
    assert_eq!(
        std::fs::metadata(outside.join("secret.txt"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // The links are listed as what they are, and can be removed (the link, not its target).
    let out = succeeded(&fx.sftp_key(
        "frank",
        &key,
        "ls -l box\nls -l box/dir-link\nls box/dir-link/\nrm box/file-link\n",
    ));
    assert!(out.contains("lrwxrwxrwx"), "{out}");
    assert!(out.contains("file-link"), "{out}");
    assert!(!out.contains("secret.txt"), "{out}");
    assert!(outside.join("secret.txt").exists());
}

#[test]
fn sftp_ln_commands_are_refused() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "gina_key");
    fx.start(
        &[connection("gina", "box", HostedAccess::ReadWrite, &[&key])],
        &no_passwords(),
    );
    let jailed = fx.jail("gina").join("box");
    std::fs::write(jailed.join("f.txt"), "f\n").expect("seed");
    for command in [
        "ln -s /etc/passwd box/passwd",
        "ln -s ../../.. box/up",
        "symlink /etc box/etc",
        "ln box/f.txt box/hard.txt",
    ] {
        let out = fx.sftp_key("gina", &key, &format!("{command}\n"));
        failed(&out);
    }
    let names: Vec<_> = std::fs::read_dir(&jailed)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    assert_eq!(names, ["f.txt"]);
}

#[test]
fn rename_cannot_move_files_out_of_the_jail_or_into_a_read_only_connection() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "hank_key");
    fx.start(
        &[
            connection("hank", "rw", HostedAccess::ReadWrite, &[&key]),
            connection("hank", "ro", HostedAccess::Read, &[&key]),
        ],
        &no_passwords(),
    );
    let root = fx.jail("hank");
    std::fs::write(root.join("rw/f.txt"), "f\n").expect("seed");
    std::fs::write(root.join("ro/r.txt"), "r\n").expect("seed");
    for command in [
        "rename rw/f.txt ../../f.txt",
        "rename rw/f.txt /../../../tmp/f.txt",
        "rename rw/f.txt ro/f.txt",
        "rename ro/r.txt rw/r.txt",
        "rename rw/f.txt f.txt",
        "rename rw ../rw2",
        "rename rw/f.txt rw/.f.txt.ferry-partial-1",
    ] {
        let out = fx.sftp_key("hank", &key, &format!("{command}\n"));
        failed(&out);
    }
    assert!(root.join("rw/f.txt").exists());
    assert!(root.join("ro/r.txt").exists());
    assert!(!root.join("ro/f.txt").exists());
    assert!(!root.join("f.txt").exists());
    assert!(!fx.data_dir().join("users/f.txt").exists());
    assert!(!fx.data_dir().join("f.txt").exists());
    // A rename inside the read-write connection works.
    succeeded(&fx.sftp_key("hank", &key, "rename rw/f.txt rw/g.txt\n"));
    assert!(root.join("rw/g.txt").exists());
}

#[test]
fn a_removed_user_loses_access_immediately_including_an_active_session() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "ivan_key");
    let keep = client_key(&fx.client_dir(), "jane_key");
    let ivan = connection("ivan", "reports", HostedAccess::Read, &[&key]);
    let jane = connection("jane", "reports", HostedAccess::Read, &[&keep]);
    fx.start(&[ivan, jane.clone()], &no_passwords());
    std::fs::write(fx.jail("ivan").join("reports/r.csv"), "r\n").expect("seed");

    let mut session = fx.sftp_session("ivan", &key);
    session.send("ls reports");
    assert!(
        session.expect_line("r.csv", Duration::from_secs(20)),
        "the session works before: {}",
        session.output()
    );
    assert!(fx.wait_sessions(1, Duration::from_secs(5)));

    let update = fx.update(&[jane], &no_passwords());
    assert_eq!(update.removed, ["ivan"]);
    assert_eq!(update.sessions_closed.len(), 1);
    assert_eq!(update.sessions_closed[0].0, "ivan");
    // The session is closed by the server, without waiting for the client's next command.
    assert!(
        fx.wait_sessions(0, Duration::from_secs(5)),
        "the session is still open: {:?}",
        fx.server().sessions()
    );
    session.send("ls reports");
    let status = session.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "sftp should end with an error: {status:?}\n{}",
        session.output()
    );
    // And a new login is refused.
    failed(&fx.sftp_key("ivan", &key, "ls\n"));
    assert!(!log_lines_with("access revoked").is_empty());
}

#[test]
fn a_replaced_key_closes_its_sessions_and_the_new_key_works_at_once() {
    let mut fx = Fixture::new();
    let old = client_key(&fx.client_dir(), "kim_old");
    let new = client_key(&fx.client_dir(), "kim_new");
    fx.start(
        &[connection("kim", "d", HostedAccess::Read, &[&old])],
        &no_passwords(),
    );
    let mut session = fx.sftp_session("kim", &old);
    session.send("pwd");
    assert!(session.expect_line("Remote working directory", Duration::from_secs(20)));
    let update = fx.update(
        &[connection("kim", "d", HostedAccess::Read, &[&new])],
        &no_passwords(),
    );
    assert_eq!(update.changed, ["kim"]);
    assert_eq!(update.sessions_closed.len(), 1);
    assert!(fx.wait_sessions(0, Duration::from_secs(5)));
    failed(&fx.sftp_key("kim", &old, "ls\n"));
    succeeded(&fx.sftp_key("kim", &new, "ls\n"));
}

#[test]
fn an_access_change_applies_to_the_next_operation_of_an_open_session() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "lena_key");
    fx.start(
        &[connection("lena", "d", HostedAccess::Read, &[&key])],
        &no_passwords(),
    );
    std::fs::write(fx.client_dir().join("a.txt"), "a\n").expect("local");
    let mut session = fx.sftp_session("lena", &key);
    session.send("-put a.txt d/first.txt");
    session.send("pwd");
    assert!(session.expect_line("Remote working directory", Duration::from_secs(20)));
    assert!(!fx.jail("lena").join("d/first.txt").exists());

    let update = fx.update(
        &[connection("lena", "d", HostedAccess::ReadWrite, &[&key])],
        &no_passwords(),
    );
    assert!(
        update.sessions_closed.is_empty(),
        "same key: the session stays"
    );
    session.send("put a.txt d/second.txt");
    session.send("ls d");
    assert!(
        session.expect_line("sftp> ls d", Duration::from_secs(20)),
        "{}",
        session.output()
    );
    assert!(
        session.expect_line_starting("d/second.txt", Duration::from_secs(20)),
        "{}",
        session.output()
    );
    assert!(fx.jail("lena").join("d/second.txt").exists());
}

#[test]
fn repeated_wrong_passwords_lock_the_user_out_and_the_lock_out_is_logged() {
    let mut fx = Fixture::new();
    let password = hosted_sftp::generate_password();
    let passwords = BTreeMap::from([(
        "mallory-target".to_string(),
        hosted_sftp::hash_password(&password).expect("hash"),
    )]);
    fx.start(
        &[connection("mallory-target", "d", HostedAccess::Read, &[])],
        &passwords,
    );
    // The policy of this fixture: 3 failures lock out.
    for guess in ["guess-1", "guess-2", "guess-3"] {
        failed(&fx.sftp_password("mallory-target", guess, "ls\n"));
    }
    // Now even the right password is refused.
    let out = fx.sftp_password("mallory-target", &password, "ls\n");
    failed(&out);
    let lockouts = fx.server().lockouts();
    let subjects: Vec<_> = lockouts.iter().map(|l| l.subject.as_str()).collect();
    assert!(subjects.contains(&"user mallory-target"), "{lockouts:?}");
    assert!(subjects.contains(&"address 127.0.0.1"), "{lockouts:?}");
    let lines = log_lines_with("locked out");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mallory-target") && l.contains("127.0.0.1")),
        "{lines:#?}"
    );
    // The log never holds a password.
    let all = log_lines_with("mallory-target").join("\n");
    assert!(!all.contains("guess-") && !all.contains(&password), "{all}");
}

#[test]
fn two_connections_sharing_a_user_show_both_directories_with_their_own_access() {
    let mut fx = Fixture::new();
    let laptop = client_key(&fx.client_dir(), "nora_laptop");
    let server = client_key(&fx.client_dir(), "nora_server");
    fx.start(
        &[
            connection("nora", "reports/daily", HostedAccess::Read, &[&laptop]),
            connection("nora", "inbox", HostedAccess::ReadWrite, &[&server]),
        ],
        &no_passwords(),
    );
    std::fs::write(fx.jail("nora").join("reports/daily/d.csv"), "d\n").expect("seed");
    // A directory left by a connection that no longer exists is not shown.
    std::fs::create_dir(fx.jail("nora").join("gone")).expect("old dir");
    std::fs::write(fx.client_dir().join("u.csv"), "u\n").expect("local");

    // Either key logs in, and sees both directories.
    for key in [&laptop, &server] {
        let out = succeeded(&fx.sftp_key("nora", key, "ls /\nls /reports\nls /reports/daily\n"));
        assert!(out.contains("inbox"), "{out}");
        assert!(out.contains("reports"), "{out}");
        assert!(out.contains("daily"), "{out}");
        assert!(out.contains("d.csv"), "{out}");
        assert!(!out.contains("gone"), "{out}");
    }
    succeeded(&fx.sftp_key("nora", &laptop, "put u.csv inbox/u.csv\n"));
    failed(&fx.sftp_key("nora", &laptop, "put u.csv reports/daily/u.csv\n"));
    failed(&fx.sftp_key("nora", &laptop, "put u.csv reports/u.csv\n"));
    failed(&fx.sftp_key("nora", &laptop, "ls gone\n"));
    assert!(fx.jail("nora").join("inbox/u.csv").exists());
}

#[test]
fn the_host_key_is_generated_once_and_persists_across_restarts() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "olga_key");
    let connections = [connection("olga", "d", HostedAccess::Read, &[&key])];
    fx.start(&connections, &no_passwords());
    let first = fx.server().host_key_fingerprint();
    let path = fx.server().host_key_path().to_path_buf();
    assert_eq!(
        std::fs::metadata(&path)
            .expect("host key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    succeeded(&fx.sftp_key("olga", &key, "ls\n"));
    let known_hosts = std::fs::read_to_string(&fx.known_hosts).expect("known_hosts");
    fx.stop();

    fx.start(&connections, &no_passwords());
    assert_eq!(fx.server().host_key_fingerprint(), first);
    // The client's pinned line (from the first start) still matches, on the new port.
    let line = known_hosts
        .split_once(' ')
        .map(|(_, key)| format!("[127.0.0.1]:{} {key}", fx.addr().port()))
        .expect("known_hosts line");
    std::fs::write(&fx.known_hosts, line).expect("known_hosts");
    succeeded(&fx.sftp_key("olga", &key, "ls\n"));

    // A server with another host key is refused by the pinned client.
    fx.stop();
    let mut config = fx.config();
    config.host_key_path = fx.temp.path().join("another_host_key");
    fx.start_with(
        config,
        Users::new(&connections, &no_passwords()).expect("users"),
    );
    assert_ne!(fx.server().host_key_fingerprint(), first);
    let line = known_hosts
        .split_once(' ')
        .map(|(_, key)| format!("[127.0.0.1]:{} {key}", fx.addr().port()))
        .expect("known_hosts line");
    std::fs::write(&fx.known_hosts, line).expect("known_hosts");
    let t = failed(&fx.sftp_key("olga", &key, "ls\n"));
    assert!(t.contains("Host key verification failed"), "{t}");
}

#[test]
fn a_delivered_file_appears_atomically_and_its_temporary_name_is_never_listed() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "paul_key");
    fx.start(
        &[connection("paul", "reports/", HostedAccess::Read, &[&key])],
        &no_passwords(),
    );
    let staging = fx.temp.path().join("staging");
    std::fs::create_dir(&staging).expect("staging");
    let staged = staging.join("orders.csv");
    let content = "id,qty\n".to_string() + &"1,2\n".repeat(10_000);
    std::fs::write(&staged, &content).expect("staged");

    // What an interrupted delivery leaves behind: a hidden temporary file.
    let reports = fx.jail("paul").join("reports");
    std::fs::write(reports.join(".orders.csv.ferry-partial-41"), "half").expect("leftover");
    let out = succeeded(&fx.sftp_key("paul", &key, "ls -la reports\n"));
    assert!(!out.contains("ferry-partial"), "{out}");
    assert!(!out.contains("orders.csv"), "{out}");
    for command in [
        "get reports/.orders.csv.ferry-partial-41",
        "ls reports/.orders.csv.ferry-partial-41",
    ] {
        failed(&fx.sftp_key("paul", &key, &format!("{command}\n")));
    }

    // Deliveries of two versions, back and forth, while a client keeps listing and
    // downloading: every download is one complete version, no temporary name is ever listed.
    let versions = [
        content.clone(),
        "id,qty\n".to_string() + &"3,4\n".repeat(30_000),
    ];
    for (i, v) in versions.iter().enumerate() {
        std::fs::write(staging.join(format!("v{i}.csv")), v).expect("staged version");
    }
    let mut batch = String::new();
    for i in 0..40 {
        batch.push_str(&format!(
            "ls -la reports\n-get reports/orders.csv got-{i}.csv\n"
        ));
    }
    let batch_file = fx.batch_file(&batch);
    let mut client = fx.sftp_command();
    client
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
        ])
        .arg("-i")
        .arg(&key.path)
        .arg("-b")
        .arg(&batch_file)
        .arg("paul@127.0.0.1")
        .current_dir(fx.client_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = client.spawn().expect("start sftp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut run_id = 42;
    while client.try_wait().expect("sftp status").is_none() && Instant::now() < deadline {
        let i = (run_id % 2) as usize;
        let delivered = hosted_sftp::deliver_into(
            &fx.data_dir(),
            "paul",
            "reports/",
            &staging.join(format!("v{i}.csv")),
            "orders.csv",
            run_id,
            versions[i].len() as u64,
            true,
            || Ok(()),
        )
        .expect("deliver");
        assert_eq!(delivered.remote_path, "/reports/orders.csv");
        assert_eq!(delivered.bytes, versions[i].len() as u64);
        assert_eq!(delivered.path, reports.join("orders.csv"));
        run_id += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = client.wait_with_output().expect("sftp output");
    let listing = succeeded(&out);
    assert!(listing.contains("orders.csv"), "{listing}");
    assert!(!listing.contains("ferry-partial"), "{listing}");
    let mut downloads = 0;
    for i in 0..40 {
        if let Ok(got) = std::fs::read_to_string(fx.client_dir().join(format!("got-{i}.csv"))) {
            assert!(
                versions.contains(&got),
                "download {i} is not a complete version ({} bytes)",
                got.len()
            );
            downloads += 1;
        }
    }
    assert!(downloads > 0, "{listing}");
    let names: Vec<_> = std::fs::read_dir(&reports)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .filter(|n| n.contains("ferry-partial"))
        .collect();
    assert_eq!(
        names,
        [".orders.csv.ferry-partial-41"],
        "only the old leftover"
    );
}

#[test]
fn an_idle_session_is_closed_after_the_idle_timeout() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "tess_key");
    let mut config = fx.config();
    config.idle_timeout = Duration::from_secs(1);
    fx.start_with(
        config,
        Users::new(
            &[connection("tess", "d", HostedAccess::Read, &[&key])],
            &no_passwords(),
        )
        .expect("users"),
    );
    let mut session = fx.sftp_session("tess", &key);
    session.send("pwd");
    assert!(session.expect_line("Remote working directory", Duration::from_secs(20)));
    assert!(
        fx.wait_sessions(0, Duration::from_secs(10)),
        "the idle session is still open"
    );
}

#[test]
fn logins_beyond_max_sessions_are_refused_with_a_message_and_logged() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "quinn_key");
    let connections = [connection("quinn", "d", HostedAccess::Read, &[&key])];
    let mut config = fx.config();
    config.admission.max_sessions = 2;
    fx.start_with(
        config,
        Users::new(&connections, &no_passwords()).expect("users"),
    );
    let mut a = fx.sftp_session("quinn", &key);
    let mut b = fx.sftp_session("quinn", &key);
    a.send("pwd");
    b.send("pwd");
    assert!(a.expect_line("Remote working directory", Duration::from_secs(20)));
    assert!(b.expect_line("Remote working directory", Duration::from_secs(20)));
    failed(&fx.sftp_key("quinn", &key, "ls\n"));
    assert!(
        log_lines_with("too many sessions on this server (at most 2)")
            .iter()
            .any(|l| l.contains("127.0.0.1:")),
        "a log line says why"
    );
    drop(a);
    assert!(fx.wait_sessions(1, Duration::from_secs(5)));
    succeeded(&fx.sftp_key("quinn", &key, "ls\n"));
}

#[test]
fn fifty_concurrent_clients_each_download_a_ten_mib_file() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "rita_key");
    // Fifty logins at once from one address and for one user: beyond the defaults that keep
    // idle connections and runaway clients in check, so this server is told to expect them.
    let mut config = fx.config();
    config.admission.startups = "100".parse().expect("startups");
    config.admission.per_source = 100;
    config.admission.max_sessions_per_user = 100;
    fx.start_with(
        config,
        Users::new(
            &[connection("rita", "big", HostedAccess::Read, &[&key])],
            &no_passwords(),
        )
        .expect("users"),
    );
    let size = 10 * 1024 * 1024;
    let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(fx.jail("rita").join("big/file.bin"), &content).expect("seed");

    let started = Instant::now();
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let out = fx.client_dir().join(format!("file-{i}.bin"));
            let batch = format!("get big/file.bin {}\n", out.display());
            let file = fx.batch_file(&batch);
            let mut cmd = fx.sftp_command();
            cmd.args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "PasswordAuthentication=no",
            ])
            .arg("-i")
            .arg(&key.path)
            .arg("-b")
            .arg(&file)
            .arg("rita@127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            (out, cmd.spawn().expect("start sftp"))
        })
        .collect();
    let mut failures = Vec::new();
    for (path, child) in clients {
        let out = child.wait_with_output().expect("sftp output");
        if !out.status.success() {
            failures.push(text(&out));
            continue;
        }
        let got = std::fs::read(&path).expect("downloaded");
        if got != content {
            failures.push(format!("{} differs", path.display()));
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "50 clients x 10 MiB: {:.1} s, {:.0} MiB/s in total",
        elapsed.as_secs_f64(),
        500.0 / elapsed.as_secs_f64()
    );
}

#[test]
fn shell_and_command_requests_are_refused() {
    let mut fx = Fixture::new();
    let key = client_key(&fx.client_dir(), "sam_key");
    fx.start(
        &[connection("sam", "d", HostedAccess::ReadWrite, &[&key])],
        &no_passwords(),
    );
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-p", &fx.addr().port().to_string()])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", fx.known_hosts.display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .arg("-i")
        .arg(&key.path)
        .arg("sam@127.0.0.1")
        .arg("touch /tmp/ferry-hosted-sftp-should-not-exist")
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!Path::new("/tmp/ferry-hosted-sftp-should-not-exist").exists());
}
