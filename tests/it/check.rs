//! `ferry check` through the binary, against the real servers of the test scripts (vsftpd,
//! OpenSSH sshd, the SMTP capture server, PostgreSQL): each way tonight's run would fail is
//! reported at the resource's line with the reason and exit 1; the same resources fixed pass
//! with exit 0; the probes leave no file on any server; no secret is printed.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::s3::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, start_s3};
use common::{Sandbox, line_col, nth_line_col, pg_url, s, test_server, unique_name};
use ferry::ssh::{self, KeyType};
use sqlx::Connection;

/// Runs SQL on the test PostgreSQL.
fn pg(sql: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(pg_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
}

/// A directory that the servers' logins cannot write (root's, mode 0555).
fn read_only_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

/// The resources of the test, broken (`fixed: false`) or fixed.
struct Fixture {
    unique: String,
    s3_endpoint: String,
    ftp_password: String,
    smtp_password: String,
}

impl Fixture {
    fn yaml(&self, fixed: bool) -> String {
        let ftp = test_server("vsftpd");
        let sshd = test_server("sshd");
        let smtp = test_server("smtp");
        let unique = &self.unique;
        let impostor = ssh::generate_key(KeyType::Ed25519, "", None).expect("keygen");
        let host_key = if fixed {
            sshd["SFTP_HOST_KEY_ED25519"].clone()
        } else {
            impostor.public_line.clone()
        };
        let (ftp_secret, smtp_secret, sftp_dir, ftp_dir, table, column, s3_secret) = if fixed {
            ("ftp", "smtp", "ok", "ok", "check_orders", "total", "s3")
        } else {
            (
                "ftp-old",
                "smtp-old",
                "ro",
                "ro/missing",
                "check_gone",
                "amount",
                "s3-old",
            )
        };
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-ftps}}
spec:
  ftp:
    host: {ftp_host}
    port: {ftp_port}
    tls: explicit
    directory: /{unique}/{ftp_dir}
    username: {ftp_user}
    passwordSecretRef: {{name: {ftp_secret}, key: password}}
    caSecretRef: {{name: ftp, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-ftps-dir}}
spec:
  ftp:
    host: {ftp_host}
    port: {ftp_port}
    tls: explicit
    directory: /{unique}/{ftp_dir}
    username: {ftp_user}
    passwordSecretRef: {{name: ftp, key: password}}
    caSecretRef: {{name: ftp, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-sftp}}
spec:
  sftp:
    host: {ssh_host}
    port: {ssh_port}
    directory: upload/{unique}/ok
    username: {ssh_user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{host_key}"]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-sftp-dir}}
spec:
  sftp:
    host: {ssh_host}
    port: {ssh_port}
    directory: upload/{unique}/{sftp_dir}
    username: {ssh_user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{good_host_key}"]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-sftp-list}}
spec:
  sftp:
    host: {ssh_host}
    port: {ssh_port}
    directory: upload/{unique}/ro
    username: {ssh_user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{good_host_key}"]
    check: list
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-ftps-list}}
spec:
  ftp:
    host: {ftp_host}
    port: {ftp_port}
    tls: explicit
    directory: /{unique}/ro
    username: {ftp_user}
    passwordSecretRef: {{name: ftp, key: password}}
    caSecretRef: {{name: ftp, key: ca.pem}}
    check: list
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: finance-email}}
spec:
  email:
    smtp:
      host: {smtp_host}
      port: {smtp_port}
      tls: starttls
      username: {smtp_user}
      passwordSecretRef: {{name: {smtp_secret}, key: password}}
      caSecretRef: {{name: smtp, key: ca.pem}}
    from: "Reports <reports@ferry.example>"
    to: [finance@partner.example]
    subject: "Sales"
    body: "attached"
    attach: true
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: finance-link}}
spec:
  email:
    smtp:
      host: {smtp_host}
      port: {smtp_port}
      tls: starttls
      username: {smtp_user}
      passwordSecretRef: {{name: smtp, key: password}}
      caSecretRef: {{name: smtp, key: ca.pem}}
    from: "Reports <reports@ferry.example>"
    to: [finance@partner.example]
    subject: "Sales"
    body: "{{link}}"
    link:
      s3:
        endpoint: {s3_endpoint}
        bucket: {bucket}
        prefix: ferry/
        accessKeyIdSecretRef: {{name: s3, key: id}}
        secretAccessKeySecretRef: {{name: {s3_secret}, key: secret}}
      expiresIn: 1h
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: sales}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      connectionSecretRef: {{name: shop-db, key: url}}
      query: |
        SELECT id, customer, total
        FROM {table}
        WHERE created_at >= :window_start AND created_at < :window_end
    window: previousDay
  columns:
    - name: id
    - name: {column}
  format: {{csv: {{}}}}
  fileName: "sales_{{yyyyMMdd}}.csv"
  deliverTo:
    - {{target: partner-ftps}}
    - {{target: partner-sftp}}
    - {{target: finance-email}}
"#,
            ftp_host = ftp["FTP_HOST"],
            ftp_port = ftp["FTP_PORT"],
            ftp_user = ftp["FTP_USER"],
            ssh_host = sshd["SFTP_HOST"],
            ssh_port = sshd["SFTP_PORT"],
            ssh_user = sshd["SFTP_KEY_USER"],
            good_host_key = sshd["SFTP_HOST_KEY_ED25519"],
            smtp_host = smtp["SMTP_HOST"],
            smtp_port = smtp["SMTP_PORT"],
            smtp_user = smtp["SMTP_USER"],
            s3_endpoint = self.s3_endpoint,
            bucket = BUCKET,
        )
    }
}

/// The output line of `kind/name`'s `check`, asserted to exist.
#[track_caller]
fn line_of<'a>(stdout: &'a str, resource: &str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(&format!(": {resource}: {check}: ")))
        .unwrap_or_else(|| panic!("no `{check}` line for {resource}:\n{stdout}"))
}

#[test]
fn check_reports_each_broken_resource_at_its_line_and_passes_once_fixed() {
    let ftp = test_server("vsftpd");
    let sshd = test_server("sshd");
    let smtp = test_server("smtp");
    let unique = unique_name("check");
    pg("DROP TABLE IF EXISTS check_orders;
        CREATE TABLE check_orders (id int PRIMARY KEY, customer text, total numeric(10,2),
                                   created_at timestamptz);");
    // A read-only directory on each server; on FTP the target's directory is missing under it.
    let ftp_root = Path::new(&ftp["FTP_ROOT"]).join(&unique);
    read_only_dir(&ftp_root.join("ro"));
    std::fs::set_permissions(&ftp_root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sftp_home = Path::new(&sshd["SFTP_KEY_USER_HOME"])
        .join("upload")
        .join(&unique);
    read_only_dir(&sftp_home.join("ro"));
    std::fs::set_permissions(&sftp_home, std::fs::Permissions::from_mode(0o777)).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let fixture = Fixture {
        unique: unique.clone(),
        s3_endpoint: s3.endpoint.clone(),
        ftp_password: ftp["FTP_PASSWORD"].clone(),
        smtp_password: smtp["SMTP_PASSWORD"].clone(),
    };
    let sb = Sandbox::new();
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    sb.write_secret("default", "ftp", "password", &fixture.ftp_password);
    sb.write_secret("default", "ftp-old", "password", "a-rotated-ftp-password");
    sb.write_secret("default", "ftp", "ca.pem", &read(&ftp["FTP_CA_CERT"]));
    sb.write_secret(
        "default",
        "sftp",
        "id_ed25519",
        &read(&sshd["SFTP_KEY_ED25519"]),
    );
    sb.write_secret("default", "smtp", "password", &fixture.smtp_password);
    sb.write_secret("default", "smtp-old", "password", "a-rotated-smtp-password");
    sb.write_secret("default", "smtp", "ca.pem", &read(&smtp["SMTP_CA"]));
    sb.write_secret("default", "shop-db", "url", pg_url());
    sb.write_secret("default", "s3", "id", S3_ACCESS_KEY);
    sb.write_secret("default", "s3", "secret", S3_SECRET_KEY);
    sb.write_secret("default", "s3-old", "secret", "a-rotated-s3-secret-key");

    // Broken: every check fails where the run would, each at its resource's line.
    let broken = fixture.yaml(false);
    let file = sb.write("check.yaml", &broken);
    let run = sb.ferry(["check", "-f", s(&file)]).code(1);
    let out = &run.stdout;
    let at = |needle: &str, nth: usize| {
        format!(
            "{}:{}: ",
            file.display(),
            nth_line_col(&broken, needle, nth).0
        )
    };
    let ftp_login = line_of(out, "DeliveryTarget/partner-ftps", "delivery");
    assert!(ftp_login.starts_with(&at("  ftp:", 0)), "{ftp_login}");
    assert!(ftp_login.contains(": failed: "), "{ftp_login}");
    assert!(
        ftp_login.contains("530"),
        "the server's refusal: {ftp_login}"
    );
    let ftp_dir = line_of(out, "DeliveryTarget/partner-ftps-dir", "delivery");
    assert!(ftp_dir.starts_with(&at("  ftp:", 1)), "{ftp_dir}");
    assert!(
        ftp_dir.contains("failed: ") && ftp_dir.contains("cannot create directory"),
        "{ftp_dir}"
    );
    let host_key = line_of(out, "DeliveryTarget/partner-sftp", "delivery");
    assert!(host_key.starts_with(&at("  sftp:", 0)), "{host_key}");
    assert!(
        host_key.contains("failed: ") && host_key.contains("host key verification failed"),
        "{host_key}"
    );
    let sftp_dir = line_of(out, "DeliveryTarget/partner-sftp-dir", "delivery");
    assert!(sftp_dir.starts_with(&at("  sftp:", 1)), "{sftp_dir}");
    assert!(
        sftp_dir.contains("failed: ") && sftp_dir.to_lowercase().contains("permission denied"),
        "{sftp_dir}"
    );
    let auth = line_of(out, "DeliveryTarget/finance-email", "email");
    assert!(auth.starts_with(&at("  email:", 0)), "{auth}");
    assert!(auth.contains("failed: ") && auth.contains("AUTH"), "{auth}");
    // At the query's line that names the missing table.
    let source = line_of(out, "ReportSchedule/sales", "source");
    assert!(source.starts_with(&at("FROM check_gone", 0)), "{source}");
    assert!(
        source.contains("failed: ") && source.contains("check_gone"),
        "{source}"
    );
    let link = line_of(out, "DeliveryTarget/finance-link", "email");
    assert!(
        link.contains(": failed: ") && link.contains("403"),
        "{link}"
    );
    // `check: list`: a directory the login cannot write is only listed, and passes.
    for listed in ["partner-sftp-list", "partner-ftps-list"] {
        let line = line_of(out, &format!("DeliveryTarget/{listed}"), "delivery");
        assert!(
            line.contains(": ok: ")
                && line.contains("/ro/ was listed (0 entries); nothing written"),
            "{line}"
        );
    }
    assert!(out.contains("9 checks: 2 ok, 7 failed, 0 skipped"), "{out}");

    // The table exists, a column was renamed: the columns check names it at its line.
    let renamed = broken.replace("FROM check_gone", "FROM check_orders");
    let file = sb.write("check.yaml", &renamed);
    let run = sb
        .ferry(["check", "-f", s(&file), "--only", "rs/sales"])
        .code(1);
    let source = line_of(&run.stdout, "ReportSchedule/sales", "source");
    assert!(source.contains(": ok: "), "{source}");
    let columns = line_of(&run.stdout, "ReportSchedule/sales", "columns");
    let (amount_line, _) = line_col(&renamed, "name: amount");
    assert!(
        columns.starts_with(&format!("{}:{amount_line}: ", file.display())),
        "{columns}"
    );
    assert!(
        columns.contains("`amount` is not in the query's result, which has: id, customer, total"),
        "{columns}"
    );

    // The same in Markdown, for a pull-request comment.
    let markdown = sb
        .ferry([
            "check",
            "-f",
            s(&file),
            "--only",
            "rs/sales",
            "-o",
            "markdown",
        ])
        .code(1)
        .stdout;
    assert!(
        markdown.contains("| Status | Resource | Check | Where | Details |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| failed | `ReportSchedule/sales` | columns |"),
        "{markdown}"
    );

    // Fixed: every check passes, and the probes left nothing behind.
    let fixed = fixture.yaml(true);
    let file = sb.write("check.yaml", &fixed);
    let run = sb.ferry(["check", "-f", s(&file), "-o", "json"]).success();
    let doc = run.json();
    let checks = doc["checks"].as_array().unwrap();
    for check in checks {
        assert_eq!(check["status"], "ok", "{check:#}");
    }
    assert_eq!(doc["summary"]["ok"], 10, "{doc:#}");
    // OpenSSH says how much space is free (statvfs@openssh.com).
    let sftp = checks.iter().find(|c| c["name"] == "partner-sftp").unwrap();
    assert!(
        sftp["message"].as_str().unwrap().ends_with(" free"),
        "{sftp:#}"
    );
    let link = checks.iter().find(|c| c["name"] == "finance-link").unwrap();
    assert!(
        link["message"]
            .as_str()
            .unwrap()
            .contains("served it through a presigned link"),
        "{link:#}"
    );
    assert!(
        files_under(s3.root.path())
            .iter()
            .all(|f| !f.contains("ferry-check")),
        "S3: {:?}",
        files_under(s3.root.path())
    );
    assert!(
        files_under(&ftp_root).is_empty(),
        "FTP: {:?}",
        files_under(&ftp_root)
    );
    assert!(
        files_under(&sftp_home).is_empty(),
        "SFTP: {:?}",
        files_under(&sftp_home)
    );

    // The same resources applied: `ferry check` without files checks the state's.
    sb.apply(&[&file]);
    let applied = sb.ferry(["check"]).success();
    assert!(
        applied
            .stdout
            .contains("state: DeliveryTarget/partner-sftp: delivery: ok: "),
        "{applied:#?}"
    );
    assert!(
        applied
            .stdout
            .contains("10 checks: 10 ok, 0 failed, 0 skipped"),
        "{applied:#?}"
    );

    // No secret in any output.
    for run in [&run] {
        for secret in [
            fixture.ftp_password.as_str(),
            fixture.smtp_password.as_str(),
            "a-rotated-ftp-password",
            "a-rotated-smtp-password",
            S3_SECRET_KEY,
            "a-rotated-s3-secret-key",
        ] {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
        }
    }
}

/// A write statement is refused before anything is checked, at the query's line (validate's
/// rule), and nothing is touched.
#[test]
fn check_refuses_a_write_statement_at_its_line() {
    let sb = Sandbox::new();
    std::fs::write(sb.root().join("shop.db"), "").unwrap();
    let text = r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: out}
spec:
  localDir: {path: out}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {name: sales}
spec:
  schedule: {daily: {at: "00:30"}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://shop.db"
      query: DROP TABLE orders
  format: {csv: {}}
  fileName: "sales.csv"
  deliverTo: [{target: out}]
"#;
    let file = sb.write("write.yaml", text);
    let run = sb.ferry(["check", "-f", s(&file)]).code(1);
    let (line, _) = line_col(text, "query:");
    assert!(
        run.stderr.contains(&format!("{}:{line}", file.display())),
        "{run:#?}"
    );
    assert!(!sb.root().join("out").exists(), "the target was not probed");
}

/// Reads `/metrics` from a daemon's metrics address.
fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// The `Reachable` condition of DeliveryTarget `name`, as `ferry get` shows it.
fn reachable(sb: &Sandbox, name: &str) -> Option<serde_json::Value> {
    // Nothing until the daemon applied the files.
    let got = sb.ferry(["get", "dt", name, "-o", "json"]);
    if got.code != 0 {
        return None;
    }
    let got = got.json();
    got[0]["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Reachable")
        .cloned()
}

/// `ferry run` checks what it applied: a re-keyed SFTP server turns the target's
/// `Reachable` condition False (with the reason, the time and a failing metric); the file
/// fixed, the daemon reloads it, checks it at once and the condition turns True.
#[test]
fn the_daemon_checks_applied_targets_and_records_reachable() {
    let sshd = test_server("sshd");
    let unique = unique_name("check-daemon");
    let sb = Sandbox::new();
    sb.write_secret(
        "default",
        "sftp",
        "id_ed25519",
        &std::fs::read_to_string(&sshd["SFTP_KEY_ED25519"]).unwrap(),
    );
    let impostor = ssh::generate_key(KeyType::Ed25519, "", None).expect("keygen");
    let target = |host_key: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-sftp}}
spec:
  sftp:
    host: {host}
    port: {port}
    directory: upload/{unique}
    username: {user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{host_key}"]
"#,
            host = sshd["SFTP_HOST"],
            port = sshd["SFTP_PORT"],
            user = sshd["SFTP_KEY_USER"],
        )
    };
    let file = sb.write("targets.yaml", &target(&impostor.public_line));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = common::ferry_command();
    cmd.args(["run", "-f"])
        .arg(&file)
        .args([
            "--poll",
            "1s",
            "--metrics-listen",
            &addr,
            "--check-interval",
            "1h",
        ])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(sb.root().join("daemon.log")).unwrap());
    let mut daemon = common::hosted::Daemon(cmd.spawn().expect("ferry run starts"));
    let wait_for = |holds: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(c) = reachable(&sb, "partner-sftp")
                && c["status"] == holds
            {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Reachable never became {holds}: {:?}\n{}",
                reachable(&sb, "partner-sftp"),
                std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let failed = wait_for("False");
    assert_eq!(failed["reason"], "DeliveryCheckFailed", "{failed:#}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("host key verification failed"),
        "{failed:#}"
    );
    let text = metrics(&addr);
    assert!(
        text.contains(
            r#"ferry_check_failing{kind="DeliveryTarget",namespace="default",name="partner-sftp",check="delivery"} 1"#
        ),
        "{text}"
    );

    // The right key pinned: the reload is checked at once.
    std::fs::write(&file, target(&sshd["SFTP_HOST_KEY_ED25519"])).unwrap();
    let fixed = wait_for("True");
    assert_eq!(fixed["reason"], "Checked", "{fixed:#}");
    let text = metrics(&addr);
    assert!(
        text.contains(
            r#"ferry_check_failing{kind="DeliveryTarget",namespace="default",name="partner-sftp",check="delivery"} 0"#
        ),
        "{text}"
    );
    daemon.stop();
    let home = Path::new(&sshd["SFTP_KEY_USER_HOME"])
        .join("upload")
        .join(&unique);
    assert!(files_under(&home).is_empty(), "{:?}", files_under(&home));
}

/// The events of `reason` on DeliveryTarget `name` in the fake API server.
fn events_of(api: &common::fake_api::FakeApi, name: &str, reason: &str) -> usize {
    api.list("events.k8s.io/v1/events")
        .iter()
        .filter(|e| e["regarding"]["kind"] == "DeliveryTarget" && e["regarding"]["name"] == name)
        .filter(|e| e["reason"] == reason)
        .count()
}

/// Under `ferry controller` the periodic check's `Reachable` condition reaches the object's
/// status at once: a target whose directory cannot be made flips to False with one Warning
/// Event `Unreachable`, and back to True with one Normal Event `Reachable` when it can; the
/// checks in between change nothing and publish nothing.
#[tokio::test]
async fn under_the_controller_reachable_flips_with_one_event_each_way() {
    use common::fake_api::{Controller, FakeApi};
    let dir = tempfile::tempdir().unwrap();
    // A file where the target's directory should be: no directory can be made under it.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, "").unwrap();
    let api = FakeApi::new();
    api.seed(
        "ferry.dev/v1alpha1/deliverytargets",
        serde_json::json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "DeliveryTarget",
               "metadata": {"name": "out", "namespace": "default"},
               "spec": {"localDir": {"path": blocker.join("reports").display().to_string()}}}),
    );
    api.seed(
        "v1/pods",
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "ferry-a", "namespace": "default"}}),
    );
    let port = api.start().await;
    let kubeconfig = FakeApi::write_kubeconfig(dir.path(), port);
    let state = dir.path().join("state.db");
    let controller = Controller::start_with(
        dir.path(),
        &kubeconfig,
        &state.display().to_string(),
        "ferry-a",
        &["--check-interval", "1s"],
    );
    let reachable = || {
        api.get("ferry.dev/v1alpha1/deliverytargets", "default", "out")
            .and_then(|o| {
                o["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Reachable")
                    .cloned()
            })
    };
    let wait_for = async |holds: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(c) = reachable()
                && c["status"] == holds
            {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Reachable never became {holds}: {:?}\n{}",
                reachable(),
                controller.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let failed = wait_for("False").await;
    assert_eq!(failed["reason"], "DeliveryCheckFailed", "{failed:#}");
    // Several rounds (one a second) with the same outcome: still one Event.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        events_of(&api, "out", "Unreachable"),
        1,
        "{}",
        controller.log()
    );
    assert_eq!(events_of(&api, "out", "Reachable"), 0);

    std::fs::remove_file(&blocker).unwrap();
    let fixed = wait_for("True").await;
    assert_eq!(fixed["reason"], "Checked", "{fixed:#}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        events_of(&api, "out", "Reachable"),
        1,
        "{}",
        controller.log()
    );
    assert_eq!(events_of(&api, "out", "Unreachable"), 1);
    // The probes left nothing.
    assert!(
        files_under(&blocker).is_empty(),
        "{:?}",
        files_under(&blocker)
    );
}

/// A `hostedSftp` target's check: the probe in its jail directory, its connection's keys, and
/// the server's host key, named by its fingerprint once the server made it.
#[test]
fn a_hosted_sftp_check_probes_the_jail_and_names_the_servers_host_key() {
    let sb = Sandbox::new();
    let user_key = ssh::generate_key(KeyType::Ed25519, "", None).expect("keygen");
    let file = sb.write(
        "hosted.yaml",
        &format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-drop}}
spec:
  hostedSftp:
    connectionName: Partner drop
    user: partner
    publicKeys: ["{}"]
    directory: reports
"#,
            user_key.public_line
        ),
    );
    let before = sb.ferry(["check", "-f", s(&file)]).success();
    assert!(
        before
            .stdout
            .contains("the server's host key: none yet (made when the server first starts)"),
        "{before:#?}"
    );
    // The server's key, as `ferry run --sftp-listen` makes it on its first start.
    let host = ssh::generate_key(KeyType::Ed25519, "", None).expect("keygen");
    let data = sb.work_dir().join("hosted-sftp");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("ssh_host_ed25519_key"), &host.private_openssh).unwrap();
    let after = sb.ferry(["check", "-f", s(&file)]).success();
    let line = line_of(&after.stdout, "DeliveryTarget/partner-drop", "delivery");
    assert!(
        line.contains("a probe file was written, renamed and removed"),
        "{line}"
    );
    assert!(
        line.contains(&format!("the server's host key: {}", host.fingerprint)),
        "{line}"
    );
    assert!(
        files_under(&data.join("users")).is_empty(),
        "{:?}",
        files_under(&data.join("users"))
    );
}
