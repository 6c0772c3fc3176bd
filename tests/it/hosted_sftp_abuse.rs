//! Ferry's hosted SFTP server under attack, through `ferry run --sftp-listen` and real client
//! libraries (paramiko, driven by tests/clients/sftp_abuse.py; OpenSSH's `sftp` for the
//! legitimate users):
//! - one recipient must never change what another receives (in-place writes to a delivered
//!   report, truncation, chmod);
//! - a logged-in client that sends requests without reading the answers is disconnected, and
//!   the daemon's memory stays bounded;
//! - a burst of concurrent password guesses gets no more checks than the lock-out threshold;
//! - idle connections that never log in, from one address or several, never keep real users
//!   out, are closed by the login grace, and penalize their source;
//! - one user at its session cap is refused with a clear message while others log in.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Sandbox;
use common::hosted::{
    abuse, abuse_command, client_key, daemon_log, free_port, issued_password, parse_abuse,
    sftp_command, sftp_with_key, sftp_with_password, start_daemon, wait_for_log, wait_for_server,
};

/// A `hostedSftp` connection of `user` (public key `key`, or a generated password when none).
fn connection(name: &str, user: &str, key: Option<&str>, access: &str) -> String {
    let keys = key.map_or(String::new(), |k| format!("    publicKeys: [\"{k}\"]\n"));
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: {name}}}
spec:
  hostedSftp:
    connectionName: {name}
    user: {user}
{keys}    directory: reports
    access: {access}
---
"#
    )
}

/// A one-table SQLite shop.
fn shop_db(sb: &Sandbox) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             con = sqlite3.connect(sys.argv[1])\n\
             con.execute('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total TEXT)')\n\
             con.executemany('INSERT INTO orders VALUES (?, ?, ?)', \
             [(i, f'customer {i}', f'{i}.50') for i in range(1, 2001)])\n\
             con.commit()\n",
        )
        .arg(sb.root().join("shop.db"))
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// GET `path` from the metrics endpoint on `port`: the body.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of the metric line starting with `series` (name and labels).
fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_read_write_user_cannot_change_what_other_recipients_and_the_archive_receive() {
    let sb = Sandbox::new();
    shop_db(&sb);
    let (bob_key, bob_pub) = client_key(sb.root(), "bob_key");
    let (carol_key, carol_pub) = client_key(sb.root(), "carol_key");
    let (dave_key, dave_pub) = client_key(sb.root(), "dave_key");
    let mut yaml = String::new();
    yaml += &connection("bob-drop", "bob", Some(&bob_pub), "read");
    yaml += &connection("carol-drop", "carol", Some(&carol_pub), "readWrite");
    yaml += &connection("dave-drop", "dave", Some(&dave_pub), "read");
    yaml += r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: archive}
spec:
  localDir: {path: archive}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {name: orders}
spec:
  schedule: {daily: {at: "00:30"}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://shop.db"
      query: SELECT id, customer, total FROM orders ORDER BY id
  format: {csv: {}}
  fileName: orders.csv
  deliverTo: [{target: bob-drop}, {target: carol-drop}, {target: dave-drop}, {target: archive}]
"#;
    let files = sb.write("partners.yaml", &yaml);
    sb.apply(&[&files]);
    sb.ferry(["run-now", "rs/orders"]).success();

    let users = sb.work_dir().join("hosted-sftp/users");
    let copies = [
        users.join("bob/reports/orders.csv"),
        users.join("carol/reports/orders.csv"),
        users.join("dave/reports/orders.csv"),
        sb.root().join("archive/orders.csv"),
    ];
    let original = sha256(&copies[0]);
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    // Only read-only jails share the staged file; the readWrite jail and the archive each have
    // an inode of their own.
    assert_eq!(
        inode(&copies[0]),
        inode(&copies[2]),
        "bob and dave: read-only, linked"
    );
    for (i, a) in copies.iter().enumerate() {
        assert_eq!(sha256(a), original, "{}", a.display());
        for b in &copies[i + 1..] {
            if !(a == &copies[0] && b == &copies[2]) {
                assert_ne!(inode(a), inode(b), "{} and {}", a.display(), b.display());
            }
        }
    }
    for jail_copy in &copies[..3] {
        assert_eq!(mode(jail_copy), 0o440, "{}", jail_copy.display());
    }

    let port = free_port();
    let mut daemon = start_daemon(&sb, &files, port, &[], &[("FERRY_LOG", "info")]);
    wait_for_server(&sb, port, &sb.root().join("known_hosts"));
    let carol_key = carol_key.to_str().unwrap();
    let outcome = abuse(
        port,
        &[
            "tamper",
            "--user",
            "carol",
            "--key",
            carol_key,
            "--path",
            "/reports/orders.csv",
        ],
    );
    for attack in [
        "write_in_place",
        "open_truncate",
        "append",
        "setstat_size",
        "chmod",
        "utime",
    ] {
        let answer = outcome[attack].as_str().unwrap();
        assert!(
            answer.starts_with("refused") && answer.contains("read-only"),
            "{attack}: {answer}"
        );
    }
    // What a readWrite user may do stays possible: its own uploads are its own.
    for allowed in [
        "upload_own",
        "rewrite_own",
        "chmod_own",
        "rename_copy",
        "remove_copy",
    ] {
        assert_eq!(outcome[allowed], "allowed", "{allowed}: {outcome}");
    }
    for other in [&copies[0], &copies[2], &copies[3]] {
        assert_eq!(sha256(other), original, "{} changed", other.display());
    }
    assert!(!copies[1].exists(), "carol removed her own copy only");
    // Bob and Dave still download the report as delivered.
    let known_hosts = sb.root().join("known_hosts");
    for (user, key) in [("bob", &bob_key), ("dave", &dave_key)] {
        let local = sb.root().join(format!("{user}.csv"));
        let (ok, out) = sftp_with_key(
            port,
            &known_hosts,
            user,
            key,
            &format!("get /reports/orders.csv {}\n", local.display()),
        );
        assert!(ok, "{out}");
        assert_eq!(sha256(&local), original);
    }
    daemon.stop();
}

#[test]
fn a_client_that_never_reads_its_answers_is_disconnected_and_memory_stays_bounded() {
    let sb = Sandbox::new();
    let (key, public) = client_key(sb.root(), "eve_key");
    let files = sb.write(
        "eve.yaml",
        &connection("eve-drop", "eve", Some(&public), "read"),
    );
    let port = free_port();
    let mut daemon = start_daemon(&sb, &files, port, &[], &[("FERRY_LOG", "info")]);
    let known_hosts = sb.root().join("known_hosts");
    wait_for_server(&sb, port, &known_hosts);
    let size: usize = 64 << 20;
    let big = sb.work_dir().join("hosted-sftp/users/eve/reports/big.bin");
    std::fs::write(&big, vec![7u8; size]).unwrap();
    let (ok, out) = sftp_with_key(port, &known_hosts, "eve", &key, "ls -l /reports\n");
    assert!(ok, "{out}");
    let baseline = daemon.rss_kib();

    // Four sessions, four channels each, issuing 255 KiB READs and reading nothing.
    const SESSIONS: u64 = 4;
    let key_arg = key.to_str().unwrap().to_string();
    let size_arg = size.to_string();
    let attackers: Vec<_> = (0..SESSIONS)
        .map(|_| {
            abuse_command(
                port,
                &[
                    "flood",
                    "--user",
                    "eve",
                    "--key",
                    &key_arg,
                    "--path",
                    "/reports/big.bin",
                    "--size",
                    &size_arg,
                    "--channels",
                    "4",
                    "--seconds",
                    "60",
                ],
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("python runs")
        })
        .collect();
    let mut peak = baseline;
    let mut results = Vec::new();
    for mut attacker in attackers {
        while attacker.try_wait().unwrap().is_none() {
            peak = peak.max(daemon.rss_kib());
            std::thread::sleep(Duration::from_millis(50));
        }
        results.push(parse_abuse(&attacker.wait_with_output().unwrap()));
    }
    for r in &results {
        assert_eq!(r["disconnected"], true, "the attacker is disconnected: {r}");
        assert!(r["sent"].as_u64().unwrap() > 16_384, "{r}");
    }
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "RSS: baseline {baseline} KiB, peak {peak} KiB (+{grown_mib} MiB for {SESSIONS} sessions)"
    );
    assert!(
        grown_mib < 64 * SESSIONS,
        "the daemon grew by {grown_mib} MiB under {SESSIONS} flooding sessions (bound: 64 MiB each)"
    );
    let log = daemon_log(&sb);
    assert!(
        log.contains("requests waiting on one channel without reading the answers"),
        "{log}"
    );
    // Ordinary clients are still served.
    let local = sb.root().join("big.bin");
    let (ok, out) = sftp_with_key(
        port,
        &known_hosts,
        "eve",
        &key,
        &format!("get /reports/big.bin {}\n", local.display()),
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::metadata(&local).unwrap().len(), size as u64);
    daemon.stop();
}

#[test]
fn a_burst_of_concurrent_guesses_checks_no_more_than_the_threshold_then_refuses_even_the_right_password()
 {
    let sb = Sandbox::new();
    let files = sb.write(
        "finance.yaml",
        &connection("finance-drop", "finance01", None, "readWrite"),
    );
    let applied = sb.apply(&[&files]);
    let password = issued_password(&applied.stdout, "finance01");
    let port = free_port();
    let mut daemon = start_daemon(&sb, &files, port, &[], &[("FERRY_LOG", "info")]);
    wait_for_server(&sb, port, &sb.root().join("known_hosts"));

    // Thirty guesses at once, each from its own address (127.0.0.10-39), so that neither the
    // per-address limits nor the per-address lock-out stop them: only the user's count does.
    let sources: Vec<String> = (10..40).map(|i| format!("127.0.0.{i}")).collect();
    let sources = sources.join(",");
    let burst = abuse(
        port,
        &[
            "burst",
            "--user",
            "finance01",
            "--count",
            "30",
            "--sources",
            &sources,
        ],
    );
    let results = burst["results"].as_array().unwrap();
    assert_eq!(results.len(), 30);
    assert!(
        results.iter().all(|r| r == "rejected"),
        "every guess is rejected: {burst}"
    );
    let log = daemon_log(&sb);
    let checked = log
        .lines()
        .filter(|l| l.contains("login failed") && l.contains("finance01"))
        .count();
    eprintln!("{checked} of 30 concurrent guesses were checked");
    assert!(
        (1..=5).contains(&checked),
        "{checked} guesses were checked; the lock-out threshold is 5:\n{log}"
    );
    assert_eq!(
        log.matches("too many failed logins for this user: locked out")
            .count(),
        1,
        "the lock-out is logged once:\n{log}"
    );
    // The right password is refused for the lock-out period, from any address.
    for source in ["127.0.0.1", "127.0.0.3"] {
        let login = abuse(
            port,
            &[
                "login",
                "--user",
                "finance01",
                "--password",
                &password,
                "--source",
                source,
            ],
        );
        assert_eq!(login["result"], "rejected", "from {source}: {login}");
    }
    assert!(
        !daemon_log(&sb).contains(&password),
        "the password never appears in the log"
    );
    daemon.stop();
}

/// Logs in as the key user and as the password user, each within 5 s; returns the slowest.
fn legitimate_logins(
    port: u16,
    known_hosts: &Path,
    key: &Path,
    password: &str,
    what: &str,
) -> Duration {
    let started = Instant::now();
    let (ok, out) = sftp_with_key(port, known_hosts, "alice", key, "ls /reports\n");
    let by_key = started.elapsed();
    assert!(ok, "{what}: alice's key login failed: {out}");
    let started = Instant::now();
    let (ok, out) = sftp_with_password(port, known_hosts, "finance01", password, "ls /reports\n");
    let by_password = started.elapsed();
    assert!(ok, "{what}: finance01's password login failed: {out}");
    for (method, took) in [("key", by_key), ("password", by_password)] {
        assert!(
            took < Duration::from_secs(5),
            "{what}: the {method} login took {took:?}"
        );
    }
    by_key.max(by_password)
}

#[test]
fn idle_connections_from_one_or_many_addresses_never_keep_real_users_out() {
    let sb = Sandbox::new();
    let (key, public) = client_key(sb.root(), "alice_key");
    let mut yaml = connection("alice-drop", "alice", Some(&public), "read");
    yaml += &connection("finance-drop", "finance01", None, "readWrite");
    let files = sb.write("partners.yaml", &yaml);
    let applied = sb.apply(&[&files]);
    let password = issued_password(&applied.stdout, "finance01");
    let port = free_port();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let mut daemon = start_daemon(
        &sb,
        &files,
        port,
        &[
            "--sftp-login-grace",
            "5s",
            "--sftp-max-sessions",
            "16",
            "--metrics-listen",
            &metrics_listen,
        ],
        &[("FERRY_LOG", "info")],
    );
    let known_hosts = sb.root().join("known_hosts");
    wait_for_server(&sb, port, &known_hosts);
    legitimate_logins(port, &known_hosts, &key, &password, "before the attack");
    let baseline = daemon.rss_kib();

    // Three phases of 20 s, the attacker reconnecting whenever a connection is closed: 32 and
    // then 200 idle connections from 127.0.0.2, then 200 from eight addresses.
    let phases = [
        ("32 from one address", "127.0.0.2", "32"),
        ("200 from one address", "127.0.0.2", "200"),
        (
            "200 from eight addresses",
            "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9",
            "200",
        ),
    ];
    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    let mut logins = 0;
    let mut stats = Vec::new();
    for (what, sources, count) in phases {
        let mut attacker = abuse_command(
            port,
            &[
                "idle",
                "--sources",
                sources,
                "--count",
                count,
                "--seconds",
                "20",
                "--grace",
                "5",
            ],
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("python runs");
        std::thread::sleep(Duration::from_millis(500));
        while attacker.try_wait().unwrap().is_none() {
            slowest = slowest.max(legitimate_logins(port, &known_hosts, &key, &password, what));
            logins += 2;
            peak = peak.max(daemon.rss_kib());
            std::thread::sleep(Duration::from_millis(500));
        }
        let result = parse_abuse(&attacker.wait_with_output().unwrap());
        eprintln!("{what}: {result}");
        stats.push(result);
    }
    eprintln!(
        "{logins} legitimate logins during the attack, the slowest {slowest:?}; RSS {baseline} -> peak {peak} KiB"
    );
    assert!(logins >= 20, "only {logins} logins were tried");
    // The first phase's idle connections were admitted, then closed by the login grace; the
    // attacker's further connections were refused.
    assert!(
        stats[0]["closed_after_grace"].as_u64().unwrap() >= 1,
        "{}",
        stats[0]
    );
    for s in &stats {
        assert!(s["refused"].as_u64().unwrap() >= 1, "{s}");
    }
    let log = daemon_log(&sb);
    let penalty_lines = |address: &str| {
        log.lines()
            .filter(|l| l.contains("address penalized") && l.contains(&format!("{address} ")))
            .count()
    };
    assert_eq!(penalty_lines("127.0.0.2"), 1, "logged once:\n{log}");
    assert_eq!(
        penalty_lines("127.0.0.1"),
        0,
        "the real users' address:\n{log}"
    );
    assert!(log.contains("no login within the login grace") || log.contains("no SSH greeting"));
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 64,
        "the daemon grew by {grown_mib} MiB under idle connections (bound: 64 MiB)"
    );
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metric(&metrics, "ferry_sftp_penalized_sources") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "ferry_sftp_connections_refused_total{reason=\"penalized\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "ferry_sftp_unauthenticated_closed_total{reason=\"grace-exceeded\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(metrics.contains("ferry_sftp_unauthenticated_connections "));
    daemon.stop();
}

#[test]
fn a_user_at_its_session_cap_is_refused_with_a_clear_message_while_another_logs_in() {
    let sb = Sandbox::new();
    let (alice_key, alice_pub) = client_key(sb.root(), "alice_key");
    let (bob_key, bob_pub) = client_key(sb.root(), "bob_key");
    let mut yaml = connection("alice-drop", "alice", Some(&alice_pub), "read");
    yaml += &connection("bob-drop", "bob", Some(&bob_pub), "read");
    let files = sb.write("partners.yaml", &yaml);
    let port = free_port();
    let mut daemon = start_daemon(
        &sb,
        &files,
        port,
        &["--sftp-max-sessions-per-user", "2"],
        &[("FERRY_LOG", "info")],
    );
    let known_hosts = sb.root().join("known_hosts");
    wait_for_server(&sb, port, &known_hosts);

    let mut holder = abuse_command(
        port,
        &[
            "hold",
            "--user",
            "alice",
            "--key",
            alice_key.to_str().unwrap(),
            "--count",
            "2",
        ],
    )
    .stdin(Stdio::piped())
    .spawn()
    .expect("python runs");
    let mut first_line = String::new();
    {
        let stdout = holder.stdout.as_mut().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            first_line.push(byte[0] as char);
        }
    }
    let held: serde_json::Value = serde_json::from_str(&first_line).expect("json");
    assert_eq!(held["held"], 2, "{held}");

    // A third session of alice: refused, and OpenSSH shows why (at its default log level).
    let mut third = sftp_command(port, &known_hosts);
    third
        .args([
            "-o",
            "LogLevel=INFO",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ])
        .arg("-i")
        .arg(&alice_key)
        .args(["-b", "-", "alice@127.0.0.1"])
        .stdin(Stdio::null());
    let out = third.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("too many sessions for user alice (at most 2)"),
        "{said}"
    );
    // Bob is not affected.
    let (ok, out) = sftp_with_key(port, &known_hosts, "bob", &bob_key, "ls /reports\n");
    assert!(ok, "{out}");
    wait_for_log(
        &sb,
        "session refused: too many sessions for user alice",
        Duration::from_secs(10),
    );
    // One of alice's sessions ends: she logs in again.
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let (ok, out) = sftp_with_key(port, &known_hosts, "alice", &alice_key, "ls /reports\n");
    assert!(ok, "{out}");
    daemon.stop();
}
