//! FTP and FTPS delivery against real vsftpd servers, started once per test binary by
//! `scripts/test-servers/vsftpd.sh` (plain + explicit FTPS and implicit FTPS, both requiring
//! TLS session reuse on data connections, and explicit FTPS without that requirement). The
//! transport is built directly and each test checks what arrived on disk in the FTP user's
//! root directory. Every test uses its own remote directory, so they run in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ferry::api::{FtpTarget, FtpTls, PartialNaming, SecretRef};
use ferry::deliver::ftp::FtpTransport;
use ferry::deliver::{About, Outgoing, Receipt, Transport};
use ferry::secrets::FileSecrets;
use sha2::{Digest, Sha256};

// ---- the servers -----------------------------------------------------------------------------

/// What `vsftpd.sh env` says about the running servers.
#[derive(Debug)]
struct Servers {
    host: String,
    /// Plain FTP and explicit FTPS, session reuse required.
    port: u16,
    /// Implicit FTPS, session reuse required, SIZE refused.
    implicit_port: u16,
    /// Explicit FTPS, session reuse not required.
    no_reuse_port: u16,
    /// Refuses names starting with a dot (`deny_file={.*}`).
    no_dot_files_port: u16,
    user: String,
    password: String,
    ca_cert: PathBuf,
    server_cert: PathBuf,
    /// The FTP user's root directory on this machine (`/` on the server).
    root: PathBuf,
}

fn script() -> PathBuf {
    crate::common::servers_root().join("scripts/test-servers/vsftpd.sh")
}

/// Starts the servers (once per test binary) and reads their settings. Fails the test loudly
/// when they cannot start: these tests are never skipped.
fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let out = Command::new(script())
            .arg("start")
            .output()
            .expect("run scripts/test-servers/vsftpd.sh start");
        assert!(
            out.status.success(),
            "vsftpd.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(script())
            .arg("env")
            .output()
            .expect("run scripts/test-servers/vsftpd.sh env");
        assert!(out.status.success(), "vsftpd.sh env failed: {out:?}");
        let env = String::from_utf8(out.stdout).expect("env output is UTF-8");
        let get = |key: &str| -> String {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("vsftpd.sh env does not print {key}:\n{env}"))
                .to_string()
        };
        let port = |key: &str| get(key).parse::<u16>().expect("a port number");
        Servers {
            host: get("FTP_HOST"),
            port: port("FTP_PORT"),
            implicit_port: port("FTPS_IMPLICIT_PORT"),
            no_reuse_port: port("FTPS_NO_REUSE_PORT"),
            no_dot_files_port: port("FTPS_NO_DOT_FILES_PORT"),
            user: get("FTP_USER"),
            password: get("FTP_PASSWORD"),
            ca_cert: get("FTP_CA_CERT").into(),
            server_cert: get("FTP_SERVER_CERT").into(),
            root: get("FTP_ROOT").into(),
        }
    })
}

// ---- helpers ---------------------------------------------------------------------------------

const NS: &str = "default";

/// A delivery set-up: a target, a secrets directory and a staging directory of its own.
struct Setup {
    target: FtpTarget,
    secrets: FileSecrets,
    staging: tempfile::TempDir,
    _secrets_dir: tempfile::TempDir,
}

/// A target on `port` with `tls`, delivering into `directory`, logging in with the right
/// password and trusting the test CA.
fn target(port: u16, tls: FtpTls, directory: &str) -> Setup {
    let s = servers();
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets = FileSecrets::new(secrets_dir.path());
    let password = SecretRef {
        name: "ftp-login".into(),
        key: "password".into(),
    };
    let ca = SecretRef {
        name: "ftp-ca".into(),
        key: "ca.crt".into(),
    };
    // A trailing newline, as `echo` writes secret files.
    secrets
        .put(NS, &password, format!("{}\n", s.password).as_bytes())
        .unwrap();
    secrets
        .put(NS, &ca, &std::fs::read(&s.ca_cert).unwrap())
        .unwrap();
    Setup {
        target: FtpTarget {
            host: s.host.clone(),
            port: Some(port),
            tls,
            directory: directory.to_string(),
            username: s.user.clone(),
            password_secret_ref: Some(password),
            ca_secret_ref: Some(ca),
            partial: Default::default(),
            check: Default::default(),
            max_connections: None,
        },
        secrets,
        staging: tempfile::tempdir().unwrap(),
        _secrets_dir: secrets_dir,
    }
}

impl Setup {
    /// Forgets the CA: only the system's trust roots remain.
    fn without_ca(mut self) -> Self {
        self.target.ca_secret_ref = None;
        self
    }

    /// Logs in with another password.
    fn with_password(self, password: &str) -> Self {
        let r = self.target.password_secret_ref.clone().unwrap();
        self.secrets.put(NS, &r, password.as_bytes()).unwrap();
        self
    }

    /// Delivers `content` as `file_name` for run `run_id`.
    async fn deliver(
        &self,
        file_name: &str,
        content: &[u8],
        run_id: i64,
    ) -> ferry::Result<Receipt> {
        let staged = self.staging.path().join(format!("{run_id}-{file_name}"));
        std::fs::write(&staged, content).unwrap();
        self.deliver_staged(
            &staged,
            file_name,
            content.len() as u64,
            &sha256(content),
            run_id,
        )
        .await
    }

    /// Delivers an already staged file, claiming `bytes` and `sha`.
    async fn deliver_staged(
        &self,
        staged: &Path,
        file_name: &str,
        bytes: u64,
        sha: &str,
        run_id: i64,
    ) -> ferry::Result<Receipt> {
        let transport = FtpTransport::new(NS, "partner-ftp", &self.target, &self.secrets)?;
        let about = About {
            namespace: NS.into(),
            schedule: "daily-orders".into(),
            slot: "2026-07-30T00:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
            rows: 3,
        };
        let file = Outgoing {
            staged,
            file_name,
            bytes,
            sha256: sha,
            run_id,
            about: &about,
            sharing: ferry::deliver::Sharing::Several,
            delivery_key: None,
            stale_runs: &[],
            commit: Default::default(),
        };
        transport.deliver(&file).await
    }
}

/// A missing remote directory for one test (`/ferry-tests/<name>` on the server), and its
/// path on this machine. Its parent exists and belongs to the FTP user.
fn fresh_dir(name: &str) -> (String, PathBuf) {
    let parent = servers().root.join("ferry-tests");
    make_ftp_dir(&parent);
    let local = parent.join(name);
    let _ = std::fs::remove_dir_all(&local);
    (format!("/ferry-tests/{name}"), local)
}

/// Creates `dir` (and its missing parents) as if the FTP user had made it.
fn make_ftp_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    give_to_ftp_user(dir);
}

/// Hands a file or directory this test created (as root) to the FTP user.
fn give_to_ftp_user(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&servers().root).unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The names in a local directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The fingerprint of the test server's certificate, as receipts give it.
fn server_fingerprint() -> String {
    let pem = std::fs::read(&servers().server_cert).unwrap();
    let certs = ferry::tls::parse_pem_certificates(&pem).unwrap();
    ferry::tls::certificate_fingerprint(&certs[0])
}

/// `n` bytes that do not repeat in any short period (so a misplaced chunk cannot go unnoticed).
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

const REPORT: &[u8] = b"id,customer,total\n1,Acme,10.00\n2,Globex,20.50\n3,Initech,7.25\n";

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_plain_ftp_upload_lands_with_exact_bytes_and_a_receipt_saying_where() {
    let s = servers();
    let (dir, local) = fresh_dir("plain");
    let setup = target(s.port, FtpTls::None, &dir);

    let receipt = setup.deliver("orders.csv", REPORT, 1).await.unwrap();

    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(names_in(&local), ["orders.csv"]);
    assert_eq!(
        receipt.location,
        format!("ftp://{}:{}/ferry-tests/plain/orders.csv", s.host, s.port)
    );
    assert_eq!(receipt.bytes, REPORT.len() as u64);
    assert_eq!(receipt.sha256, sha256(REPORT));
    assert_eq!(receipt.details["tls"], "none");
    assert_eq!(
        receipt.details["remotePath"],
        "/ferry-tests/plain/orders.csv"
    );
    assert!(!receipt.details.contains_key("certificateSha256"));
}

#[tokio::test]
async fn explicit_ftps_resumes_the_tls_session_on_a_server_that_requires_it() {
    let s = servers();
    let (dir, local) = fresh_dir("explicit-reuse");
    let setup = target(s.port, FtpTls::Explicit, &dir);

    let receipt = setup.deliver("orders.csv", REPORT, 2).await.unwrap();

    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(
        receipt.location,
        format!(
            "ftps://{}:{}/ferry-tests/explicit-reuse/orders.csv",
            s.host, s.port
        )
    );
    assert_eq!(receipt.bytes, REPORT.len() as u64);
    assert_eq!(receipt.details["tls"], "explicit");
    assert_eq!(receipt.details["certificateSha256"], server_fingerprint());
}

#[tokio::test]
async fn implicit_ftps_resumes_the_tls_session_on_a_server_that_requires_it() {
    let s = servers();
    let (dir, local) = fresh_dir("implicit-reuse");
    let setup = target(s.implicit_port, FtpTls::Implicit, &dir);

    // This server also refuses SIZE: the sizes are confirmed from listings, each on one more
    // data connection that must resume the session too.
    let receipt = setup.deliver("orders.csv", REPORT, 3).await.unwrap();

    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(names_in(&local), ["orders.csv"]);
    assert_eq!(
        receipt.location,
        format!(
            "ftps://{}:{}/ferry-tests/implicit-reuse/orders.csv",
            s.host, s.implicit_port
        )
    );
    assert_eq!(receipt.bytes, REPORT.len() as u64);
    assert_eq!(receipt.details["tls"], "implicit");
    assert_eq!(receipt.details["certificateSha256"], server_fingerprint());
}

#[tokio::test]
async fn explicit_ftps_works_on_a_server_that_does_not_require_session_reuse() {
    let s = servers();
    let (dir, local) = fresh_dir("explicit-no-reuse");
    let setup = target(s.no_reuse_port, FtpTls::Explicit, &dir);

    let receipt = setup.deliver("orders.csv", REPORT, 4).await.unwrap();

    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(receipt.details["tls"], "explicit");
    assert_eq!(receipt.details["certificateSha256"], server_fingerprint());
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused_and_nothing_is_sent() {
    let s = servers();
    for (port, tls) in [
        (s.port, FtpTls::Explicit),
        (s.implicit_port, FtpTls::Implicit),
    ] {
        let (dir, local) = fresh_dir(&format!("untrusted-{port}"));
        let setup = target(port, tls, &dir).without_ca();

        let err = setup
            .deliver("orders.csv", REPORT, 5)
            .await
            .unwrap_err()
            .to_string();

        assert!(err.contains("partner-ftp"), "names the target: {err}");
        assert!(
            err.contains(&format!("{}:{port}", s.host)),
            "names the server: {err}"
        );
        assert!(
            err.contains("certificate"),
            "says it is the certificate: {err}"
        );
        assert!(
            err.contains("verif"),
            "says it could not be verified: {err}"
        );
        assert!(
            !err.contains(&s.password),
            "never shows the password: {err}"
        );
        assert!(!local.exists(), "nothing was created on the server");
    }
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let s = servers();
    let (dir, local) = fresh_dir("wrong-name");
    // The certificate names IP 127.0.0.1 only.
    let mut setup = target(s.port, FtpTls::Explicit, &dir);
    setup.target.host = "localhost".into();

    let err = setup
        .deliver("orders.csv", REPORT, 17)
        .await
        .unwrap_err()
        .to_string();

    assert!(err.contains("TLS handshake with localhost:"), "{err}");
    assert!(err.contains("not valid for `localhost`"), "{err}");
    assert!(
        !err.contains(&s.password),
        "never shows the password: {err}"
    );
    assert!(!local.exists(), "nothing was created on the server");
}

#[tokio::test]
async fn a_wrong_password_fails_with_a_clear_error_that_does_not_show_it() {
    let s = servers();
    let (dir, local) = fresh_dir("wrong-password");
    let wrong = "not-the-Password-42";
    for (port, tls) in [(s.port, FtpTls::None), (s.port, FtpTls::Explicit)] {
        let setup = target(port, tls, &dir).with_password(wrong);

        let err = setup
            .deliver("orders.csv", REPORT, 6)
            .await
            .unwrap_err()
            .to_string();

        assert!(
            err.contains(&format!("login as {} at {}:{port}", s.user, s.host)),
            "says the login failed, as whom and where: {err}"
        );
        assert!(err.contains("530"), "gives the server's reply: {err}");
        assert!(!err.contains(wrong), "never shows the password: {err}");
        assert!(!local.exists(), "nothing was created on the server");
    }
}

#[tokio::test]
async fn missing_nested_directories_are_created() {
    let s = servers();
    let (dir, local) = fresh_dir("nested");
    let setup = target(s.port, FtpTls::Explicit, &format!("{dir}/2026/07/daily/"));

    let receipt = setup.deliver("orders.csv", REPORT, 7).await.unwrap();

    let placed = local.join("2026/07/daily/orders.csv");
    assert_eq!(std::fs::read(&placed).unwrap(), REPORT);
    assert_eq!(
        receipt.details["remotePath"],
        "/ferry-tests/nested/2026/07/daily/orders.csv"
    );

    // Now that they exist, a second delivery into them goes straight in.
    let receipt = setup.deliver("refunds.csv", b"id\n", 8).await.unwrap();
    assert_eq!(receipt.bytes, 3);
    assert_eq!(
        names_in(&local.join("2026/07/daily")),
        ["orders.csv", "refunds.csv"]
    );
}

#[tokio::test]
async fn a_relative_directory_is_created_under_the_login_directory() {
    let s = servers();
    let (_, local) = fresh_dir("relative");
    let setup = target(s.port, FtpTls::None, "ferry-tests/relative/out");

    let receipt = setup.deliver("orders.csv", REPORT, 9).await.unwrap();

    assert_eq!(std::fs::read(local.join("out/orders.csv")).unwrap(), REPORT);
    assert_eq!(
        receipt.details["remotePath"],
        "/ferry-tests/relative/out/orders.csv"
    );
}

#[tokio::test]
async fn redelivering_the_same_run_replaces_the_file_and_leaves_nothing_else() {
    let s = servers();
    let (dir, local) = fresh_dir("redeliver");
    let setup = target(s.port, FtpTls::Explicit, &dir);
    make_ftp_dir(&local);
    // The leftover of an attempt of this run that crashed mid-upload.
    let leftover = local.join(".orders.csv.ferry-partial-10");
    std::fs::write(&leftover, b"id,cust").unwrap();
    give_to_ftp_user(&leftover);

    setup
        .deliver("orders.csv", b"first version\n", 10)
        .await
        .unwrap();
    let receipt = setup.deliver("orders.csv", REPORT, 10).await.unwrap();

    assert_eq!(names_in(&local), ["orders.csv"]);
    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(receipt.bytes, REPORT.len() as u64);
}

#[tokio::test]
async fn a_leftover_the_login_cannot_overwrite_is_deleted_and_the_upload_retried() {
    let s = servers();
    let (dir, local) = fresh_dir("foreign-leftover");
    make_ftp_dir(&local);
    // Owned by root, mode 0644: the FTP user cannot write it, but may delete it.
    std::fs::write(local.join(".orders.csv.ferry-partial-16"), b"id,cust").unwrap();
    let setup = target(s.port, FtpTls::None, &dir);

    setup.deliver("orders.csv", REPORT, 16).await.unwrap();

    assert_eq!(names_in(&local), ["orders.csv"]);
    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
}

#[tokio::test]
async fn a_file_already_there_under_the_final_name_is_replaced() {
    let s = servers();
    let (dir, local) = fresh_dir("replace");
    make_ftp_dir(&local);
    std::fs::write(
        local.join("orders.csv"),
        b"yesterday's much longer report\n".repeat(100),
    )
    .unwrap();
    let setup = target(s.implicit_port, FtpTls::Implicit, &dir);

    let receipt = setup.deliver("orders.csv", REPORT, 11).await.unwrap();

    assert_eq!(names_in(&local), ["orders.csv"]);
    assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), REPORT);
    assert_eq!(receipt.bytes, REPORT.len() as u64);
}

#[tokio::test]
async fn a_file_of_several_mib_arrives_byte_identical_over_every_kind_of_connection() {
    let s = servers();
    let content = pseudo_random(5 * 1024 * 1024 + 12_345);
    let sha = sha256(&content);
    for (port, tls) in [
        (s.port, FtpTls::None),
        (s.port, FtpTls::Explicit),
        (s.implicit_port, FtpTls::Implicit),
        (s.no_reuse_port, FtpTls::Explicit),
    ] {
        let (dir, local) = fresh_dir(&format!("large-{port}-{tls:?}"));
        let setup = target(port, tls, &dir);

        let receipt = setup.deliver("big.bin", &content, 12).await.unwrap();

        let arrived = std::fs::read(local.join("big.bin")).unwrap();
        assert_eq!(arrived.len(), content.len(), "{tls:?} on {port}");
        assert_eq!(sha256(&arrived), sha, "{tls:?} on {port}");
        assert_eq!(receipt.bytes, content.len() as u64);
        assert_eq!(receipt.sha256, sha);
        assert_eq!(names_in(&local), ["big.bin"], "{tls:?} on {port}");
    }
}

#[tokio::test]
async fn a_staged_file_shorter_than_announced_is_never_published_and_its_partial_is_removed() {
    let s = servers();
    let (dir, local) = fresh_dir("short");
    let setup = target(s.port, FtpTls::Explicit, &dir);
    let staged = setup.staging.path().join("short.csv");
    std::fs::write(&staged, REPORT).unwrap();

    let err = setup
        .deliver_staged(&staged, "orders.csv", REPORT.len() as u64 + 100, "0", 13)
        .await
        .unwrap_err()
        .to_string();

    assert!(
        err.contains("upload of /ferry-tests/short/.orders.csv.ferry-partial-13"),
        "{err}"
    );
    assert!(err.contains("expected"), "{err}");
    assert_eq!(
        names_in(&local),
        Vec::<String>::new(),
        "no file, partial or final"
    );
}

#[tokio::test]
async fn an_unreachable_server_fails_with_an_error_naming_it() {
    let (dir, _) = fresh_dir("unreachable");
    // Nothing listens on port 9 (discard) here.
    let setup = target(9, FtpTls::None, &dir);

    let err = setup
        .deliver("orders.csv", REPORT, 14)
        .await
        .unwrap_err()
        .to_string();

    assert!(err.contains("connect to 127.0.0.1:9"), "{err}");
}

#[tokio::test]
async fn a_missing_password_secret_is_reported_before_connecting() {
    let s = servers();
    let mut setup = target(s.port, FtpTls::None, "/");
    setup.target.password_secret_ref = Some(SecretRef {
        name: "nope".into(),
        key: "password".into(),
    });

    let err = setup
        .deliver("orders.csv", REPORT, 15)
        .await
        .unwrap_err()
        .to_string();

    assert!(err.contains("nope/password"), "{err}");
}

#[tokio::test]
async fn a_server_that_refuses_dot_files_takes_every_other_temporary_naming() {
    let s = servers();
    let (dir, local) = fresh_dir("no-dot-files");
    let mut setup = target(s.no_dot_files_port, FtpTls::Explicit, &dir);

    // The default hidden name is refused before anything is written.
    let refused = setup
        .deliver("orders.csv", REPORT, 21)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("upload of /ferry-tests/no-dot-files/.orders.csv.ferry-partial-21"),
        "{refused}"
    );
    assert!(refused.contains("the server refused it: 550"), "{refused}");
    assert_eq!(names_in(&local), Vec::<String>::new());

    for (run, naming) in [
        (22, PartialNaming::Suffix),
        (23, PartialNaming::Directory),
        (24, PartialNaming::InPlace),
    ] {
        setup.target.partial = naming;
        let content = format!("run {run}\n").into_bytes();
        let receipt = setup.deliver("orders.csv", &content, run).await.unwrap();
        assert_eq!(receipt.bytes, content.len() as u64, "{naming:?}");
        assert_eq!(std::fs::read(local.join("orders.csv")).unwrap(), content);
        let staging = local.join("ferry-partial");
        if staging.exists() {
            assert_eq!(names_in(&staging), Vec::<String>::new(), "{naming:?}");
        }
        let mut names = names_in(&local);
        names.retain(|n| n != "ferry-partial");
        assert_eq!(names, ["orders.csv"], "{naming:?}");
    }
}
