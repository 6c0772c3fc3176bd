//! `ferry keygen` and `ferry keyscan`, the e-commerce seed's flow: generate a key pair, hand the
//! public key to the receiving server's administrator, pin the server's host key. Checked with
//! OpenSSH's own tools and against the private sshd of `scripts/test-servers/sshd.sh`.

use crate::common;

use std::process::Command;

use common::Sandbox;

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_prints_the_matching_public_key() {
    let sb = Sandbox::new();
    let run = sb.ferry(["keygen", "bdash-key"]).success();
    let public = run.stdout.trim();
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{run:#?}");
    assert!(public.ends_with(" ferry-bdash-key"), "{run:#?}");
    assert!(
        run.stderr
            .contains("privateKeySecretRef: {name: bdash-key, key: id_ed25519}")
    );
    assert!(run.stderr.contains("Fingerprint: SHA256:"), "{run:#?}");
    let private = sb.secrets.join("default/bdash-key/id_ed25519");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    // OpenSSH derives the same public key from the private key file.
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(derived.status.success(), "{derived:?}");
    let derived = String::from_utf8_lossy(&derived.stdout);
    let key_data = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(key_data(&derived), key_data(public));
    let pub_file = std::fs::read_to_string(sb.secrets.join("default/bdash-key/id_ed25519.pub"));
    assert_eq!(pub_file.unwrap().trim(), public);
}

#[test]
fn keygen_makes_the_rsa_key_the_seed_asks_for_and_never_overwrites_a_key_by_accident() {
    let sb = Sandbox::new();
    let run = sb
        .ferry(["keygen", "bdash-key", "--type", "rsa-2048"])
        .success();
    assert!(run.stdout.starts_with("ssh-rsa AAAA"), "{run:#?}");
    let private = sb.secrets.join("default/bdash-key/id_rsa");
    let before = std::fs::read(&private).unwrap();
    let again = sb
        .ferry(["keygen", "bdash-key", "--type", "rsa-2048"])
        .failure();
    assert!(again.stderr.contains("already exists"), "{again:#?}");
    assert_eq!(
        std::fs::read(&private).unwrap(),
        before,
        "the key is untouched"
    );
    sb.ferry(["keygen", "bdash-key", "--type", "rsa-2048", "--force"])
        .success();
    assert_ne!(
        std::fs::read(&private).unwrap(),
        before,
        "--force replaces it"
    );
    let bad = sb.ferry(["keygen", "bdash-key", "--type", "dsa"]).failure();
    assert!(bad.stderr.contains("unknown key type"), "{bad:#?}");
}

#[test]
fn keyscan_prints_the_servers_host_keys_ready_to_pin_with_their_fingerprints() {
    let env = common::test_server("sshd");
    let sb = Sandbox::new();
    let address = format!("{}:{}", env["SFTP_HOST"], env["SFTP_PORT"]);
    let run = sb.ferry(["keyscan", &address]).success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.contains(&env["SFTP_HOST_KEY_ED25519"].as_str()),
        "{run:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("ssh-rsa ")), "{run:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("ecdsa-sha2-nistp256 ")),
        "{run:#?}"
    );
    // The fingerprints agree with OpenSSH's.
    let expected = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(env["SFTP_HOST_KEY_ED25519"].as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let fp = String::from_utf8_lossy(&expected.stdout);
    let fp = fp.split_whitespace().nth(1).unwrap();
    assert!(run.stderr.contains(fp), "{run:#?} should show {fp}");
    let closed = sb
        .ferry(["keyscan", "127.0.0.1:1", "--timeout", "3s"])
        .failure();
    assert!(closed.stderr.contains("127.0.0.1:1"), "{closed:#?}");
    let bad = sb.ferry(["keyscan", "host:port"]).failure();
    assert!(
        bad.stderr.contains("expected HOST or HOST:PORT"),
        "{bad:#?}"
    );
}
