//! SFTP delivery and SSH keys through the library API, against a real OpenSSH sshd started by
//! `scripts/test-servers/sshd.sh` (once per test binary; a server that cannot start fails the
//! tests, it never skips them). The server's users, keys and directories come from the
//! script's `env` output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry::api::{PartialNaming, SecretRef, SftpTarget};
use ferry::deliver::sftp::SftpTransport;
use ferry::deliver::{About, Outgoing, Receipt, Transport};
use ferry::secrets::FileSecrets;
use ferry::ssh::{self, KeyType};
use sha2::{Digest, Sha256};

// ---- the server ------------------------------------------------------------------------------

/// The `KEY=VALUE` settings of the test sshd, started on first use.
fn server() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let script = crate::common::servers_root().join("scripts/test-servers/sshd.sh");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .expect("run scripts/test-servers/sshd.sh start");
        assert!(
            out.status.success(),
            "sshd.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&script)
            .arg("env")
            .output()
            .expect("run scripts/test-servers/sshd.sh env");
        assert!(out.status.success(), "sshd.sh env failed: {out:?}");
        String::from_utf8(out.stdout)
            .expect("utf-8 env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// One setting of the test sshd.
fn env(key: &str) -> String {
    server()
        .get(key)
        .unwrap_or_else(|| panic!("sshd.sh env has no {key}"))
        .clone()
}

fn port() -> u16 {
    env("SFTP_PORT").parse().expect("port")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory of the key user's home, emptied for this test.
fn fresh_dir_of(home_key: &str, name: &str) -> PathBuf {
    let dir = Path::new(&env(home_key)).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---- a target and its secrets ----------------------------------------------------------------

/// A secrets directory and a DeliveryTarget being built.
struct Setup {
    secrets_dir: tempfile::TempDir,
    target: SftpTarget,
}

const NS: &str = "default";

impl Setup {
    /// A target for `user` delivering into `directory`, pinning the server's ed25519 key.
    fn new(user: &str, directory: &str) -> Self {
        Setup {
            secrets_dir: tempfile::tempdir().expect("tempdir"),
            target: SftpTarget {
                host: env("SFTP_HOST"),
                port: port(),
                directory: directory.to_string(),
                username: user.to_string(),
                private_key_secret_ref: None,
                passphrase_secret_ref: None,
                password_secret_ref: None,
                host_keys: vec![env("SFTP_HOST_KEY_ED25519")],
                partial: Default::default(),
                check: Default::default(),
                max_connections: None,
            },
        }
    }

    /// Writes a secret file `<dir>/default/<name>/<key>` and returns its reference.
    fn secret(&self, name: &str, key: &str, value: &str) -> SecretRef {
        let dir = self.secrets_dir.path().join(NS).join(name);
        std::fs::create_dir_all(&dir).expect("secret dir");
        std::fs::write(dir.join(key), value).expect("secret file");
        SecretRef {
            name: name.to_string(),
            key: key.to_string(),
        }
    }

    /// Logs in with the private key held in the file `key_path`.
    fn key_file(self, key_path: &str) -> Self {
        let pem = read(key_path);
        self.key(&pem)
    }

    /// Logs in with a private key.
    fn key(mut self, pem: &str) -> Self {
        self.target.private_key_secret_ref = Some(self.secret("sftp-login", "id", pem));
        self
    }

    /// Decrypts the key with a passphrase.
    fn passphrase(mut self, passphrase: &str) -> Self {
        self.target.passphrase_secret_ref =
            Some(self.secret("sftp-login", "passphrase", passphrase));
        self
    }

    /// Logs in with a password.
    fn password(mut self, password: &str) -> Self {
        self.target.password_secret_ref = Some(self.secret("sftp-login", "password", password));
        self
    }

    /// Pins these host key lines instead.
    fn host_keys(mut self, lines: Vec<String>) -> Self {
        self.target.host_keys = lines;
        self
    }

    fn transport(&self) -> ferry::Result<SftpTransport> {
        SftpTransport::new(
            NS,
            "partner-sftp",
            &self.target,
            &FileSecrets::new(self.secrets_dir.path()),
        )
    }

    /// Delivers `contents` as `file_name` for run `run_id`.
    async fn deliver(
        &self,
        file_name: &str,
        contents: &[u8],
        run_id: i64,
    ) -> ferry::Result<Receipt> {
        let transport = self.transport()?;
        deliver_with(&transport, file_name, contents, run_id).await
    }
}

async fn deliver_with(
    transport: &dyn Transport,
    file_name: &str,
    contents: &[u8],
    run_id: i64,
) -> ferry::Result<Receipt> {
    let staging = tempfile::tempdir().expect("staging");
    let staged = staging.path().join("staged");
    std::fs::write(&staged, contents).expect("stage");
    let sha256 = hex::encode(Sha256::digest(contents));
    let about = About {
        namespace: NS.into(),
        schedule: "daily-orders".into(),
        slot: jiff::Zoned::now(),
        rows: 1,
    };
    let file = Outgoing {
        staged: &staged,
        file_name,
        bytes: contents.len() as u64,
        sha256: &sha256,
        run_id,
        about: &about,
        sharing: ferry::deliver::Sharing::Several,
        delivery_key: None,
        stale_runs: &[],
        commit: Default::default(),
    };
    transport.deliver(&file).await
}

/// Asserts a delivery succeeded and returns its receipt.
#[track_caller]
fn delivered(result: ferry::Result<Receipt>) -> Receipt {
    match result {
        Ok(r) => r,
        Err(e) => panic!("delivery failed: {e}"),
    }
}

/// Asserts a delivery failed and returns the message.
#[track_caller]
fn refused(result: ferry::Result<Receipt>) -> String {
    match result {
        Ok(r) => panic!("delivery should have failed, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

const CSV: &[u8] = b"id,name\n1,Ada\n2,Grace\n";

/// Delivers a small CSV as the key user with the key in `key_env`, checks it on disk.
async fn key_user_delivers_with(key_env: &str, passphrase: Option<&str>, dir_name: &str) {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", dir_name);
    let mut setup = Setup::new(&env("SFTP_KEY_USER"), dir_name).key_file(&env(key_env));
    if let Some(p) = passphrase {
        setup = setup.passphrase(p);
    }
    let receipt = delivered(setup.deliver("orders.csv", CSV, 1).await);
    assert_eq!(
        std::fs::read(dir.join("orders.csv")).expect("delivered file"),
        CSV
    );
    assert_eq!(listing(&dir), ["orders.csv"]);
    assert_eq!(receipt.bytes, CSV.len() as u64);
    assert_eq!(receipt.sha256, hex::encode(Sha256::digest(CSV)));
    let remote = format!("{}/orders.csv", dir.display());
    assert_eq!(receipt.details["remotePath"], remote);
    assert_eq!(
        receipt.location,
        format!(
            "sftp://{}@127.0.0.1:{}{remote}",
            env("SFTP_KEY_USER"),
            port()
        )
    );
    assert_eq!(
        receipt.details["hostKey"],
        ssh::fingerprint_line(&env("SFTP_HOST_KEY_ED25519")).expect("fingerprint")
    );
}

// ---- authentication --------------------------------------------------------------------------

#[tokio::test]
async fn an_ed25519_key_logs_in_and_the_file_arrives() {
    key_user_delivers_with("SFTP_KEY_ED25519", None, "auth-ed25519").await;
}

#[tokio::test]
async fn an_rsa_key_logs_in_with_rsa_sha2() {
    key_user_delivers_with("SFTP_KEY_RSA", None, "auth-rsa").await;
}

#[tokio::test]
async fn an_ecdsa_key_logs_in() {
    key_user_delivers_with("SFTP_KEY_ECDSA", None, "auth-ecdsa").await;
}

#[tokio::test]
async fn an_encrypted_key_logs_in_with_its_passphrase() {
    let passphrase = env("SFTP_KEY_PASSPHRASE");
    key_user_delivers_with(
        "SFTP_KEY_ED25519_ENCRYPTED",
        Some(&passphrase),
        "auth-encrypted",
    )
    .await;
}

#[tokio::test]
async fn an_encrypted_key_without_its_passphrase_is_reported_before_connecting() {
    let setup =
        Setup::new(&env("SFTP_KEY_USER"), "never").key_file(&env("SFTP_KEY_ED25519_ENCRYPTED"));
    let message = setup.transport().expect_err("no passphrase").to_string();
    assert!(message.contains("encrypted"), "{message}");
    assert!(message.contains("passphraseSecretRef"), "{message}");
    assert!(!message.contains("PRIVATE KEY-----\n"), "{message}");
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused_without_showing_it() {
    let setup = Setup::new(&env("SFTP_KEY_USER"), "never")
        .key_file(&env("SFTP_KEY_ED25519_ENCRYPTED"))
        .passphrase("not-the-passphrase-31337");
    let message = setup.transport().expect_err("wrong passphrase").to_string();
    assert!(message.contains("wrong passphrase?"), "{message}");
    assert!(!message.contains("not-the-passphrase-31337"), "{message}");
}

#[tokio::test]
async fn a_password_logs_in() {
    let dir = fresh_dir_of("SFTP_PASSWORD_USER_HOME", "auth-password");
    let setup = Setup::new(&env("SFTP_PASSWORD_USER"), "auth-password")
        .password(&format!("{}\n", env("SFTP_PASSWORD")));
    let receipt = delivered(setup.deliver("orders.csv", CSV, 7).await);
    assert_eq!(
        std::fs::read(dir.join("orders.csv")).expect("delivered"),
        CSV
    );
    assert_eq!(receipt.bytes, CSV.len() as u64);
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let dir = fresh_dir_of("SFTP_PASSWORD_USER_HOME", "auth-wrong-password");
    let setup = Setup::new(&env("SFTP_PASSWORD_USER"), "auth-wrong-password")
        .password("hunter2-wrong-Password");
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    assert!(message.contains("delivery to partner-sftp"), "{message}");
    assert!(
        message.contains("authentication as `ferrypass`"),
        "{message}"
    );
    assert!(message.contains("127.0.0.1:2222"), "{message}");
    assert!(message.contains("refused the password"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!dir.exists(), "nothing may be created before logging in");
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_refused_with_its_fingerprint() {
    let stranger = ssh::generate_key(KeyType::Ed25519, "stranger", None).expect("keygen");
    let setup = Setup::new(&env("SFTP_KEY_USER"), "never").key(&stranger.private_openssh);
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    assert!(message.contains("refused the ssh-ed25519 key"), "{message}");
    assert!(message.contains(&stranger.fingerprint), "{message}");
    assert!(message.contains("it accepts: publickey"), "{message}");
}

// ---- host keys -------------------------------------------------------------------------------

#[tokio::test]
async fn a_server_whose_host_key_is_not_pinned_is_refused_and_nothing_is_uploaded() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "hostkey-mismatch");
    let impostor = ssh::generate_key(KeyType::Ed25519, "", None).expect("keygen");
    let setup = Setup::new(&env("SFTP_KEY_USER"), "hostkey-mismatch")
        .key_file(&env("SFTP_KEY_ED25519"))
        .host_keys(vec![impostor.public_line.clone()]);
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    let offered = ssh::fingerprint_line(&env("SFTP_HOST_KEY_ED25519")).expect("fingerprint");
    assert!(
        message.contains("host key verification failed for 127.0.0.1:2222"),
        "{message}"
    );
    assert!(
        message.contains(&format!("ssh-ed25519 key {offered}")),
        "{message}"
    );
    assert!(message.contains(&impostor.fingerprint), "{message}");
    assert!(
        message.contains("ferry keyscan 127.0.0.1:2222"),
        "{message}"
    );
    assert!(
        !dir.exists(),
        "nothing may be uploaded to an unverified server"
    );
}

#[tokio::test]
async fn a_pinned_key_of_a_type_the_server_lacks_reports_what_it_offers() {
    // P-384: the test server has ed25519, P-256 and RSA host keys only.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p384");
    ssh_keygen(&[
        "-q",
        "-t",
        "ecdsa",
        "-b",
        "384",
        "-N",
        "",
        "-f",
        path.to_str().expect("path"),
    ]);
    let line = read(path.with_extension("pub"));
    let line = key_part(&line);
    let setup = Setup::new(&env("SFTP_KEY_USER"), "never")
        .key_file(&env("SFTP_KEY_ED25519"))
        .host_keys(vec![line.to_string()]);
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    assert!(
        message.contains("host key verification failed"),
        "{message}"
    );
    assert!(message.contains("the server offered the"), "{message}");
    assert!(
        message.contains("pinned: ecdsa-sha2-nistp384 SHA256:"),
        "{message}"
    );
}

#[tokio::test]
async fn an_empty_host_key_list_is_refused_before_connecting() {
    let setup = Setup::new(&env("SFTP_KEY_USER"), "never")
        .key_file(&env("SFTP_KEY_ED25519"))
        .host_keys(vec![]);
    let message = setup.transport().expect_err("no pinned key").to_string();
    assert!(message.contains("no host key is pinned"), "{message}");
    assert!(
        message.contains("ferry keyscan 127.0.0.1:2222"),
        "{message}"
    );
}

#[tokio::test]
async fn scanned_host_keys_are_the_servers_and_each_pinned_alone_lets_a_delivery_through() {
    let keys = ssh::scan_host_keys("127.0.0.1", port(), Duration::from_secs(10))
        .await
        .expect("scan");
    let lines: Vec<&str> = keys.iter().map(|k| k.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            env("SFTP_HOST_KEY_ED25519"),
            env("SFTP_HOST_KEY_ECDSA"),
            env("SFTP_HOST_KEY_RSA")
        ]
    );
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "hostkey-scanned");
    for (i, key) in keys.iter().enumerate() {
        let keygen = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(key.line.as_bytes())?;
                child.wait_with_output()
            })
            .expect("ssh-keygen -l");
        let shown = String::from_utf8_lossy(&keygen.stdout);
        assert!(shown.contains(&key.fingerprint), "{shown} vs {key:?}");

        let setup = Setup::new(&env("SFTP_KEY_USER"), "hostkey-scanned")
            .key_file(&env("SFTP_KEY_ED25519"))
            .host_keys(vec![key.line.clone()]);
        let receipt = delivered(
            setup
                .deliver(&format!("with-{}.csv", key.key_type), CSV, i as i64)
                .await,
        );
        assert_eq!(receipt.details["hostKey"], key.fingerprint);
    }
    assert_eq!(listing(&dir).len(), 3);
}

#[tokio::test]
async fn scanning_a_closed_port_says_it_cannot_connect() {
    let e = ssh::scan_host_keys("127.0.0.1", 1, Duration::from_secs(5))
        .await
        .expect_err("nothing listens on port 1");
    let message = e.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.contains("cannot read the host keys"), "{message}");
}

// ---- directories, atomicity, content ---------------------------------------------------------

#[tokio::test]
async fn a_chrooted_user_delivers_into_its_upload_folder() {
    let dir = Path::new(&env("SFTP_CHROOT_DIR")).join("upload/chrooted");
    let _ = std::fs::remove_dir_all(&dir);
    let setup =
        Setup::new(&env("SFTP_CHROOT_USER"), "/upload/chrooted").key_file(&env("SFTP_KEY_RSA"));
    let receipt = delivered(setup.deliver("orders.csv", CSV, 3).await);
    assert_eq!(
        std::fs::read(dir.join("orders.csv")).expect("delivered"),
        CSV
    );
    assert_eq!(receipt.details["remotePath"], "/upload/chrooted/orders.csv");
    assert_eq!(
        receipt.location,
        format!(
            "sftp://ferrychroot@127.0.0.1:{}/upload/chrooted/orders.csv",
            port()
        )
    );
}

#[tokio::test]
async fn a_chrooted_user_cannot_write_outside_its_upload_folder() {
    let setup = Setup::new(&env("SFTP_CHROOT_USER"), "/").key_file(&env("SFTP_KEY_ED25519"));
    let message = refused(setup.deliver("orders.csv", CSV, 3).await);
    assert!(
        message.contains(
            "cannot create sftp://ferrychroot@127.0.0.1:2222/.orders.csv.ferry-partial-3"
        ),
        "{message}"
    );
    assert!(message.contains("Permission denied"), "{message}");
}

#[tokio::test]
async fn missing_nested_directories_are_created() {
    let base = fresh_dir_of("SFTP_KEY_USER_HOME", "nested");
    let setup =
        Setup::new(&env("SFTP_KEY_USER"), "nested/2026/07/").key_file(&env("SFTP_KEY_ED25519"));
    let receipt = delivered(setup.deliver("orders.csv", CSV, 1).await);
    let file = base.join("2026/07/orders.csv");
    assert_eq!(std::fs::read(&file).expect("delivered"), CSV);
    assert_eq!(receipt.details["remotePath"], file.display().to_string());
}

#[tokio::test]
async fn an_absolute_directory_is_used_as_given() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "absolute");
    let setup = Setup::new(&env("SFTP_KEY_USER"), &dir.display().to_string())
        .key_file(&env("SFTP_KEY_ECDSA"));
    delivered(setup.deliver("orders.csv", CSV, 1).await);
    assert_eq!(listing(&dir), ["orders.csv"]);
}

#[tokio::test]
async fn a_directory_that_is_a_file_is_reported() {
    let base = fresh_dir_of("SFTP_KEY_USER_HOME", "not-a-dir");
    std::fs::create_dir_all(&base).expect("mkdir");
    std::fs::write(base.join("file"), "x").expect("write");
    let setup =
        Setup::new(&env("SFTP_KEY_USER"), "not-a-dir/file/sub").key_file(&env("SFTP_KEY_ED25519"));
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    assert!(message.contains("cannot create directory"), "{message}");
    assert!(
        message.contains(": not-a-dir/file exists and is not a directory"),
        "{message}"
    );
}

#[tokio::test]
async fn delivering_the_same_run_again_replaces_the_file_and_leaves_no_partial() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "redeliver");
    let setup = Setup::new(&env("SFTP_KEY_USER"), "redeliver").key_file(&env("SFTP_KEY_ED25519"));
    delivered(
        setup
            .deliver("orders.csv", b"first version, longer than the second\n", 42)
            .await,
    );
    // A crashed attempt of the same run left a partial file behind.
    let leftover = dir.join(".orders.csv.ferry-partial-42");
    std::fs::write(&leftover, vec![b'x'; 100_000]).expect("leftover");
    let owner = std::fs::metadata(&dir).expect("stat dir");
    use std::os::unix::fs::MetadataExt;
    std::os::unix::fs::chown(&leftover, Some(owner.uid()), Some(owner.gid())).expect("chown");
    let receipt = delivered(setup.deliver("orders.csv", CSV, 42).await);
    assert_eq!(listing(&dir), ["orders.csv"]);
    assert_eq!(
        std::fs::read(dir.join("orders.csv")).expect("delivered"),
        CSV
    );
    assert_eq!(receipt.bytes, CSV.len() as u64);
}

#[tokio::test]
async fn a_multi_mebibyte_file_arrives_byte_identical() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "large");
    // 12 MiB + 123 bytes of pseudo-random data: many write requests, a short last one.
    let mut contents = vec![0u8; 12 * 1024 * 1024 + 123];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in contents.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    let setup = Setup::new(&env("SFTP_KEY_USER"), "large").key_file(&env("SFTP_KEY_ED25519"));
    let receipt = delivered(setup.deliver("big.bin", &contents, 5).await);
    let arrived = std::fs::read(dir.join("big.bin")).expect("delivered");
    assert_eq!(arrived.len(), contents.len());
    assert!(arrived == contents, "the delivered bytes differ");
    assert_eq!(receipt.bytes, contents.len() as u64);
    assert_eq!(listing(&dir), ["big.bin"]);
}

#[tokio::test]
async fn a_failed_upload_publishes_nothing_and_removes_its_partial_file() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "failed-upload");
    let setup =
        Setup::new(&env("SFTP_KEY_USER"), "failed-upload").key_file(&env("SFTP_KEY_ED25519"));
    let transport = setup.transport().expect("transport");
    let staging = tempfile::tempdir().expect("staging");
    let staged = staging.path().join("staged");
    std::fs::write(&staged, CSV).expect("stage");
    let about = About {
        namespace: NS.into(),
        schedule: "daily-orders".into(),
        slot: jiff::Zoned::now(),
        rows: 1,
    };
    // The staged file is shorter than announced (truncated by a failing disk, say).
    let file = Outgoing {
        staged: &staged,
        file_name: "orders.csv",
        bytes: CSV.len() as u64 + 10,
        sha256: "0",
        run_id: 9,
        about: &about,
        sharing: ferry::deliver::Sharing::Several,
        delivery_key: None,
        stale_runs: &[],
        commit: Default::default(),
    };
    let message = refused(transport.deliver(&file).await);
    assert!(
        message.contains("upload to sftp://ferrykey@127.0.0.1:2222/"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "has {} bytes, expected {}",
            CSV.len(),
            CSV.len() + 10
        )),
        "{message}"
    );
    assert!(listing(&dir).is_empty(), "left behind: {:?}", listing(&dir));
}

#[tokio::test]
async fn an_empty_file_is_delivered() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "empty");
    let setup = Setup::new(&env("SFTP_KEY_USER"), "empty").key_file(&env("SFTP_KEY_ED25519"));
    let receipt = delivered(setup.deliver("empty.csv", b"", 1).await);
    assert_eq!(receipt.bytes, 0);
    assert_eq!(listing(&dir), ["empty.csv"]);
}

#[tokio::test]
async fn a_closed_port_is_reported_with_host_and_port() {
    let mut setup = Setup::new(&env("SFTP_KEY_USER"), "never").key_file(&env("SFTP_KEY_ED25519"));
    setup.target.port = 1;
    let message = refused(setup.deliver("orders.csv", CSV, 1).await);
    assert!(
        message.contains("cannot connect to 127.0.0.1:1"),
        "{message}"
    );
}

// ---- generated keys --------------------------------------------------------------------------

/// Runs `ssh-keygen` and returns its standard output.
fn ssh_keygen(args: &[&str]) -> String {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The first two fields of a public key line (type and key data).
fn key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn generated_keys_are_accepted_by_openssh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds = [
        (KeyType::Ed25519, None),
        (KeyType::Ecdsa, None),
        (KeyType::Rsa { bits: 4096 }, None),
        (KeyType::Ed25519, Some("correct horse battery staple")),
    ];
    for (kind, passphrase) in kinds {
        let started = Instant::now();
        let key = ssh::generate_key(kind, "ferry@test", passphrase).expect("generate");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(60), "{kind:?} took {took:?}");
        let private = dir
            .path()
            .join(format!("{}-{}", key.file_stem, passphrase.is_some()));
        let public = private.with_extension("pub");
        std::fs::write(&private, &key.private_openssh).expect("write key");
        std::fs::write(&public, format!("{}\n", key.public_line)).expect("write pub");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let private = private.to_str().expect("path");

        // `ssh-keygen -l` on the public key shows our fingerprint and comment.
        let listed = ssh_keygen(&["-l", "-E", "sha256", "-f", public.to_str().expect("path")]);
        assert!(listed.contains(&key.fingerprint), "{listed} vs {key:?}");
        assert!(listed.contains("ferry@test"), "{listed}");
        // `ssh-keygen -y` derives the same public key from the private key.
        let derived = ssh_keygen(&["-y", "-P", passphrase.unwrap_or(""), "-f", private]);
        assert_eq!(key_part(&derived), key_part(&key.public_line), "{kind:?}");
        let expected_type = match kind {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::Ecdsa => "ecdsa-sha2-nistp256",
            KeyType::Rsa { .. } => "ssh-rsa",
        };
        assert!(
            key.public_line
                .starts_with(&format!("{expected_type} AAAA"))
        );
        if let KeyType::Rsa { bits } = kind {
            assert!(listed.starts_with(&format!("{bits} ")), "{listed}");
        }
        if passphrase.is_some() {
            // Encrypted: OpenSSH needs the passphrase.
            let out = Command::new("ssh-keygen")
                .args(["-y", "-P", "wrong", "-f", private])
                .output()
                .expect("ssh-keygen");
            assert!(
                !out.status.success(),
                "a wrong passphrase must not open the key"
            );
        }
    }
}

#[tokio::test]
async fn a_generated_key_installed_in_authorized_keys_logs_in() {
    let key = ssh::generate_key(KeyType::Ed25519, "ferry-generated", Some("s3cret phrase"))
        .expect("generate");
    let authorized =
        Path::new(&env("SFTP_AUTHORIZED_KEYS_DIR")).join(format!("{}.test", env("SFTP_KEY_USER")));
    std::fs::write(&authorized, format!("{}\n", key.public_line)).expect("authorize");
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "generated-key");
    let setup = Setup::new(&env("SFTP_KEY_USER"), "generated-key")
        .key(&key.private_openssh)
        .passphrase("s3cret phrase");
    delivered(setup.deliver("orders.csv", CSV, 1).await);
    assert_eq!(listing(&dir), ["orders.csv"]);
}

#[tokio::test]
async fn every_temporary_naming_ends_with_the_final_file_alone() {
    let dir = fresh_dir_of("SFTP_KEY_USER_HOME", "namings");
    let mut setup = Setup::new(&env("SFTP_KEY_USER"), "namings").key_file(&env("SFTP_KEY_ED25519"));
    for (run, naming) in [
        (31, PartialNaming::Suffix),
        (32, PartialNaming::Directory),
        (33, PartialNaming::InPlace),
    ] {
        setup.target.partial = naming;
        let content = format!("run {run}\n").into_bytes();
        let receipt = delivered(setup.deliver("orders.csv", &content, run).await);
        assert_eq!(receipt.bytes, content.len() as u64, "{naming:?}");
        assert_eq!(
            std::fs::read(dir.join("orders.csv")).expect("delivered"),
            content
        );
        let staging = dir.join("ferry-partial");
        if staging.exists() {
            assert!(
                listing(&staging).is_empty(),
                "{naming:?}: {:?}",
                listing(&staging)
            );
        }
        let mut names = listing(&dir);
        names.retain(|n| n != "ferry-partial");
        assert_eq!(names, ["orders.csv"], "{naming:?}");
    }
}
