//! Secrets never appear in logs, even at the most verbose level: real deliveries over FTP,
//! SFTP with a password and SMTP with AUTH, through the binary with `-vvv` and
//! `FERRY_LOG=trace` (which also lets the libraries' own logs through), against the servers of
//! `scripts/test-servers/`.

use crate::common;

use common::{Sandbox, s, test_server};

#[test]
fn a_trace_level_log_of_password_logins_never_contains_a_password() {
    let ftp = test_server("vsftpd");
    let ssh = test_server("sshd");
    let smtp = test_server("smtp");
    let mut sb = Sandbox::new();
    sb.write_secret("default", "ftp", "password", &ftp["FTP_PASSWORD"]);
    sb.write_secret(
        "default",
        "ftp",
        "ca.pem",
        &std::fs::read_to_string(&ftp["FTP_CA_CERT"]).unwrap(),
    );
    sb.write_secret("default", "sftp", "password", &ssh["SFTP_PASSWORD"]);
    sb.write_secret("default", "smtp", "password", &smtp["SMTP_PASSWORD"]);
    sb.write_secret(
        "default",
        "smtp",
        "ca.pem",
        &std::fs::read_to_string(&smtp["SMTP_CA"]).unwrap(),
    );
    let unique = format!("logs-{}", std::process::id());
    let targets = sb.write(
        "targets.yaml",
        &format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ftp}}
spec:
  ftp:
    host: {ftp_host}
    port: {ftp_port}
    tls: explicit
    directory: {unique}
    username: {ftp_user}
    passwordSecretRef: {{name: ftp, key: password}}
    caSecretRef: {{name: ftp, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: sftp}}
spec:
  sftp:
    host: {ssh_host}
    port: {ssh_port}
    directory: upload/{unique}
    username: {ssh_user}
    passwordSecretRef: {{name: sftp, key: password}}
    hostKeys: ["{host_key}"]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: mail}}
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
    subject: "Report {{fileName}}"
    body: "Attached."
    attach: true
"#,
            ftp_host = ftp["FTP_HOST"],
            ftp_port = ftp["FTP_PORT"],
            ftp_user = ftp["FTP_USER"],
            ssh_host = ssh["SFTP_HOST"],
            ssh_port = ssh["SFTP_PORT"],
            ssh_user = ssh["SFTP_PASSWORD_USER"],
            host_key = ssh["SFTP_HOST_KEY_ED25519"],
            smtp_host = smtp["SMTP_HOST"],
            smtp_port = smtp["SMTP_PORT"],
            smtp_user = smtp["SMTP_USER"],
        ),
    );
    sb.apply(&[&targets]);
    sb.set_env("FERRY_LOG", "trace");
    let report = sb.write("report.csv", "id,total\r\n1,9.99\r\n");
    let secrets = [
        ftp["FTP_PASSWORD"].as_str(),
        ssh["SFTP_PASSWORD"].as_str(),
        smtp["SMTP_PASSWORD"].as_str(),
    ];
    for target in ["dt/ftp", "dt/sftp", "dt/mail"] {
        let run = sb.ferry(["-vvv", "deliver", target, s(&report)]).success();
        assert!(run.stdout.contains("Delivered report.csv"), "{run:#?}");
        assert!(
            run.stderr.lines().count() > 3,
            "{target}: the trace log is really on: {run:#?}"
        );
        for secret in secrets {
            assert!(
                !run.stderr.contains(secret) && !run.stdout.contains(secret),
                "{target}: a password is in the output"
            );
        }
    }
}
