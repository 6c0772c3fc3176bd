//! One scheduled report delivered end to end through the binary to every kind of remote
//! target at once: explicit FTPS (vsftpd), SFTP with a key (OpenSSH sshd), email with an
//! expiring S3 link (aiosmtpd + an in-process s3s store checking SigV4), and a local directory.
//! The history then proves what went where.

use crate::common;

use std::path::Path;

use common::s3::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, start_s3};
use common::{Sandbox, test_server};

/// The presigned link in a captured mail body (quoted-printable soft breaks removed).
fn link_in(eml: &str) -> String {
    let body = eml
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = body.find("http://").expect("a link in the mail");
    body[start..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_run_delivers_one_report_to_ftps_sftp_email_and_a_directory_and_history_proves_each() {
    let ftp = test_server("vsftpd");
    let ssh = test_server("sshd");
    let smtp = test_server("smtp");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());

    let mut sb = Sandbox::new();
    let unique = format!(
        "e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    sb.write_secret("default", "ftp", "password", &ftp["FTP_PASSWORD"]);
    sb.write_secret("default", "ftp", "ca.pem", &read(&ftp["FTP_CA_CERT"]));
    sb.write_secret(
        "default",
        "sftp",
        "id_ed25519",
        &read(&ssh["SFTP_KEY_ED25519"]),
    );
    sb.write_secret("default", "smtp", "password", &smtp["SMTP_PASSWORD"]);
    sb.write_secret("default", "smtp", "ca.pem", &read(&smtp["SMTP_CA"]));
    sb.write_secret("default", "s3", "id", S3_ACCESS_KEY);
    sb.write_secret("default", "s3", "secret", S3_SECRET_KEY);
    std::fs::write(sb.root().join("empty.db"), "").unwrap();
    let files = sb.write(
        "partner.yaml",
        &format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner-ftps}}
spec:
  ftp:
    host: {ftp_host}
    port: {ftp_port}
    tls: explicit
    directory: /{unique}/in
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
    directory: upload/{unique}
    username: {ssh_user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{host_key}"]
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
      passwordSecretRef: {{name: smtp, key: password}}
      caSecretRef: {{name: smtp, key: ca.pem}}
    from: "Reports <reports@ferry.example>"
    to: [finance@partner.example, ceo@partner.example]
    subject: "Sales {{yyyy}}-{{MM}}-{{dd}} {unique}"
    body: "{{rows}} rows: {{link}} (valid until {{expires}})"
    link:
      s3:
        endpoint: {s3_endpoint}
        bucket: {bucket}
        prefix: ferry/
        accessKeyIdSecretRef: {{name: s3, key: id}}
        secretAccessKeySecretRef: {{name: s3, key: secret}}
      expiresIn: 1h
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: archive}}
spec:
  localDir: {{path: archive}}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: sales}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://empty.db"
      query: |
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
        SELECT i AS id, printf('売上 %d', i) AS label, i * 1.5 AS amount FROM n
  columns: [{{name: id}}, {{name: label}}, {{name: amount}}]
  format: {{csv: {{}}}}
  fileName: "sales_{{yyyyMMddHHmmss}}.csv"
  deliverTo:
    - {{target: partner-ftps}}
    - {{target: partner-sftp}}
    - {{target: finance-email}}
    - {{target: archive}}
  retry: {{attempts: 2, backoff: 1s}}
"#,
            ftp_host = ftp["FTP_HOST"],
            ftp_port = ftp["FTP_PORT"],
            ftp_user = ftp["FTP_USER"],
            ssh_host = ssh["SFTP_HOST"],
            ssh_port = ssh["SFTP_PORT"],
            ssh_user = ssh["SFTP_KEY_USER"],
            host_key = ssh["SFTP_HOST_KEY_ED25519"],
            smtp_host = smtp["SMTP_HOST"],
            smtp_port = smtp["SMTP_PORT"],
            smtp_user = smtp["SMTP_USER"],
            s3_endpoint = s3.endpoint,
            bucket = BUCKET,
        ),
    );
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    let plan = sb.ferry(["plan", "-f", common::s(&files)]).success();
    assert!(plan.stdout.contains("FTPS (explicit TLS)"), "{plan:#?}");
    sb.apply(&[&files]);
    let run = sb
        .ferry(["run-now", "rs/sales", "--slot", "2026-07-31T00:30:00+09:00"])
        .success();
    for target in ["partner-ftps", "partner-sftp", "finance-email", "archive"] {
        assert!(
            run.stdout.contains(&format!("{target}: delivered to")),
            "{target}: {run:#?}"
        );
    }

    let name = "sales_20260731003000.csv";
    let archived = std::fs::read(sb.root().join("archive").join(name)).unwrap();
    assert!(String::from_utf8_lossy(&archived).contains("売上 1000"));
    let on_ftp = Path::new(&ftp["FTP_ROOT"])
        .join(&unique)
        .join("in")
        .join(name);
    assert_eq!(std::fs::read(&on_ftp).unwrap(), archived, "FTPS copy");
    let on_sftp = Path::new(&ssh["SFTP_KEY_USER_HOME"])
        .join("upload")
        .join(&unique)
        .join(name);
    assert_eq!(std::fs::read(&on_sftp).unwrap(), archived, "SFTP copy");

    // The mail reached both recipients with the rendered subject and a link to the same bytes.
    let history = sb
        .ferry(["history", "rs/sales", "-o", "json"])
        .success()
        .json();
    let deliveries = history[0]["deliveries"].as_array().unwrap();
    let receipt = |target: &str| {
        deliveries
            .iter()
            .find(|d| d["target"] == target)
            .map(|d| d["receipt"].clone())
            .unwrap_or_else(|| panic!("no delivery to {target}: {history:#?}"))
    };
    let message_id = receipt("finance-email")["details"]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let mail_dir = Path::new(&smtp["SMTP_MAIL_DIR"]);
    let eml = std::fs::read_dir(mail_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|m| m.contains(&message_id))
        .expect("the mail with the receipt's Message-ID was captured");
    assert!(eml.contains(&format!("Sales 2026-07-31 {unique}")), "{eml}");
    assert!(eml.contains("1000 rows"), "{eml}");
    let link = link_in(&eml);
    let fetched = runtime.block_on(async {
        ferry::tls::install_crypto_provider();
        let body = reqwest::get(&link).await.unwrap();
        assert!(body.status().is_success(), "{}", body.status());
        body.bytes().await.unwrap()
    });
    assert_eq!(fetched.as_ref(), archived.as_slice(), "the link's bytes");

    // Each receipt carries its transport's evidence, and the same size and digest.
    let sha = history[0]["sha256"].as_str().unwrap();
    for d in deliveries {
        assert_eq!(d["outcome"], "succeeded", "{d:#?}");
        assert_eq!(d["receipt"]["sha256"], sha, "{d:#?}");
        assert_eq!(d["receipt"]["bytes"], archived.len(), "{d:#?}");
    }
    let ftps = receipt("partner-ftps");
    assert_eq!(ftps["details"]["tls"], "explicit");
    assert_eq!(
        ftps["details"]["certificateSha256"].as_str().unwrap().len(),
        95
    );
    assert!(
        receipt("partner-sftp")["details"]["hostKey"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let text = sb.ferry(["history", "rs/sales", "--receipts"]).success();
    assert!(text.stdout.contains("certificateSha256: "), "{text:#?}");
    assert!(text.stdout.contains("hostKey: SHA256:"), "{text:#?}");
    assert!(
        text.stdout.contains(&format!("messageId: {message_id}")),
        "{text:#?}"
    );
    assert!(
        !text.stdout.contains("X-Amz-Signature"),
        "the link is not in the history"
    );

    // Running the slot again sends nothing anywhere.
    let again = sb
        .ferry(["run-now", "rs/sales", "--slot", "2026-07-31T00:30:00+09:00"])
        .success();
    assert_eq!(
        again.stdout.matches("already delivered").count(),
        4,
        "{again:#?}"
    );
}
