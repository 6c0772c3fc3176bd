//! A schedule's `notify`, end to end through `ferry run --once`: a local HTTPS webhook receiver
//! with its own CA (tests/it/common/webhook.rs), the SMTP capture server of
//! `scripts/test-servers/smtp.sh`. One alert per change of state: the first failure, not the
//! second; the recovery; signed bodies a receiver can check; a receiver that refuses an alert
//! changes nothing about the run.

use crate::common;

use std::path::Path;

use common::Sandbox;
use common::webhook::{Receiver, start_receiver};
use hmac::Mac;

const SIGNING_KEY: &str = "whsec-ferry-alerts-test";

/// The schedule `sales` (daily 00:30 Tokyo) running `query`, delivered to a directory, with
/// `notify`; and the targets the alerts go to.
fn resources(
    receiver: &Receiver,
    smtp: &std::collections::BTreeMap<String, String>,
    query: &str,
) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: sales}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source: {{sql: {{url: "sqlite://shop.db", query: "{query}"}}}}
  columns: [{{name: id}}]
  format: {{csv: {{}}}}
  fileName: "sales_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: archive}}]
  retry: {{attempts: 1}}
  notify:
    onFailure: [ops-hook, ops-slack, ops-mail, revoked-hook]
    onRecovery: [ops-hook]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: archive}}
spec: {{localDir: {{path: archive}}}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-hook}}
spec:
  webhook:
    url: {url}/ferry
    signingSecretRef: {{name: hooks, key: signing}}
    caSecretRef: {{name: hooks, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-slack}}
spec:
  webhook:
    urlSecretRef: {{name: hooks, key: slack-url}}
    format: slack
    caSecretRef: {{name: hooks, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: revoked-hook}}
spec:
  webhook:
    url: {url}/gone
    caSecretRef: {{name: hooks, key: ca.pem}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-mail}}
spec:
  email:
    smtp:
      host: {smtp_host}
      port: {smtp_port}
      tls: starttls
      username: {smtp_user}
      passwordSecretRef: {{name: smtp, key: password}}
      caSecretRef: {{name: smtp, key: ca.pem}}
    from: "Ferry <ferry@ferry.example>"
    to: [oncall@ops.example]
"#,
        url = receiver.url,
        smtp_host = smtp["SMTP_HOST"],
        smtp_port = smtp["SMTP_PORT"],
        smtp_user = smtp["SMTP_USER"],
    )
}

/// `ferry run --once` at `now` (UTC).
fn run_once_at(sb: &mut Sandbox, files: &Path, now: &str) -> common::Run {
    sb.set_env("FERRY_NOW", now);
    sb.ferry(["run", "--once", "-f", common::s(files)])
}

fn verify_signature(r: &common::webhook::Received) {
    let timestamp = r.headers["x-ferry-timestamp"].to_str().unwrap();
    let signature = r.headers["x-ferry-signature"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", r.body).as_bytes());
    assert_eq!(
        signature,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        "the signature a receiver computes"
    );
}

fn mails_mentioning(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        // Quoted-printable soft line breaks removed.
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .replace("=\r\n", "")
                .replace("=\n", "")
        })
        .filter(|m| m.contains(needle))
        .collect()
}

#[test]
fn the_first_failure_and_the_recovery_are_alerted_once_each_signed_and_in_each_format() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(start_receiver());
    let smtp = common::test_server("smtp");
    let mut sb = Sandbox::new();
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    sb.write_secret("default", "hooks", "signing", SIGNING_KEY);
    sb.write_secret("default", "hooks", "ca.pem", &receiver.ca_pem);
    let slack_url = format!("{}/services/T000/B000/slack-secret-path", receiver.url);
    sb.write_secret("default", "hooks", "slack-url", &slack_url);
    sb.write_secret("default", "smtp", "password", &smtp["SMTP_PASSWORD"]);
    sb.write_secret("default", "smtp", "ca.pem", &read(&smtp["SMTP_CA"]));
    let db = sb.root().join("shop.db");
    std::fs::write(&db, "").unwrap();
    // A unique table name tells this test's mails from others' in the shared capture dir.
    let table = common::unique_name("orders").replace('-', "_");
    let broken = format!("SELECT id FROM {table}");
    let files = sb.write("shop.yaml", &resources(&receiver, smtp, &broken));
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);

    // Day 1: the query fails. Every onFailure target is told once.
    let run = run_once_at(&mut sb, &files, "2026-07-30T15:31:00Z");
    assert_eq!(run.code, 1, "{run:#?}");
    let hook = receiver.at("/ferry");
    assert_eq!(hook.len(), 1, "{hook:#?}");
    verify_signature(&hook[0]);
    let alert: serde_json::Value = serde_json::from_str(&hook[0].body).unwrap();
    assert_eq!(alert["version"], "ferry.dev/alert/v1");
    assert_eq!(alert["event"], "failure");
    assert_eq!(alert["kind"], "ReportSchedule");
    assert_eq!(alert["name"], "sales");
    assert_eq!(alert["slot"], "2026-07-31T00:30:00+09:00");
    assert_eq!(alert["outcome"], "failed");
    assert!(
        alert["error"].as_str().unwrap().contains(&table),
        "{alert:#}"
    );
    let slack = receiver.at("/services/T000/B000/slack-secret-path");
    assert_eq!(slack.len(), 1);
    let text = serde_json::from_str::<serde_json::Value>(&slack[0].body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with(
            "ReportSchedule default/sales failed (failed) at slot 2026-07-31T00:30:00+09:00"
        ),
        "{text}"
    );
    assert!(
        !slack[0].headers.contains_key("x-ferry-signature"),
        "unsigned without a key"
    );
    let mails = mails_mentioning(Path::new(&smtp["SMTP_MAIL_DIR"]), &table);
    assert_eq!(mails.len(), 1, "one alert mail: {run:#?}");
    assert!(
        mails[0].contains("Subject: [Ferry] ReportSchedule default/sales failed"),
        "{}",
        mails[0]
    );
    assert!(
        !mails[0].contains("Content-Disposition: attachment"),
        "no report in an alert"
    );
    // The revoked URL said no: logged, the run's outcome unchanged, not retried.
    assert_eq!(receiver.at("/gone").len(), 1, "a 404 is not tried again");
    assert!(run.stderr.contains("revoked-hook"), "{run:#?}");
    assert!(run.stderr.contains("HTTP 404 no_service"), "{run:#?}");
    assert!(
        !run.stderr.contains("slack-secret-path"),
        "the Slack URL is a secret: {run:#?}"
    );
    let history = sb
        .ferry(["history", "rs/sales", "-o", "json"])
        .success()
        .json();
    assert_eq!(history[0]["outcome"], "failed");

    // Day 2: still failing. Nobody is told again.
    let run = run_once_at(&mut sb, &files, "2026-07-31T15:31:00Z");
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(receiver.at("/ferry").len(), 1, "no second failure alert");
    assert_eq!(
        mails_mentioning(Path::new(&smtp["SMTP_MAIL_DIR"]), &table).len(),
        1
    );

    // Day 3: the table exists; the run succeeds and onRecovery is told, once.
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (id INTEGER); INSERT INTO {table} VALUES (1);"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    });
    run_once_at(&mut sb, &files, "2026-08-01T15:31:00Z").success();
    let hook = receiver.at("/ferry");
    assert_eq!(hook.len(), 2, "{hook:#?}");
    verify_signature(&hook[1]);
    let alert: serde_json::Value = serde_json::from_str(&hook[1].body).unwrap();
    assert_eq!(alert["event"], "recovery");
    assert_eq!(alert["slot"], "2026-08-02T00:30:00+09:00");
    assert_eq!(alert["rows"], 1);
    assert_eq!(alert["deliveries"][0]["target"], "archive");
    assert!(!hook[1].body.contains("receipt"), "{}", hook[1].body);
    assert_eq!(
        receiver.at("/services/T000/B000/slack-secret-path").len(),
        1,
        "not on onRecovery"
    );

    // Day 4: healthy and healthy: nothing to say (no onSuccess).
    run_once_at(&mut sb, &files, "2026-08-02T15:31:00Z").success();
    assert_eq!(receiver.at("/ferry").len(), 2);
}

#[test]
fn notify_names_only_webhook_or_email_targets_and_a_webhook_takes_no_reports() {
    let sb = Sandbox::new();
    let files = sb.write(
        "bad.yaml",
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {name: sales}
spec:
  schedule: {daily: {at: "00:30"}}
  source: {sql: {url: "sqlite://shop.db", query: "SELECT 1 AS id"}}
  columns: [{name: id}]
  format: {csv: {}}
  fileName: "sales.csv"
  deliverTo: [{target: hook}, {target: oncall-mail}]
  notify:
    onFailure: [archive, nowhere, oncall-mail]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: archive}
spec: {localDir: {path: archive}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: hook}
spec: {webhook: {url: "http://alerts.example/hook"}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: oncall-mail}
spec:
  email:
    smtp: {host: smtp.example, port: 465, tls: implicit}
    from: ferry@ops.example
    to: [oncall@ops.example]
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: cw}
spec:
  connectwise:
    baseUrl: https://api-na.myconnectwise.net
    companyId: mymsp
    clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
    publicKeySecretRef: {name: cw, key: public}
    privateKeySecretRef: {name: cw, key: private}
---
apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {name: acme}
spec:
  customer: acme
  psa: {target: cw}
  company: {identifier: ACME01}
  notify:
    onRecovery: [hook, cw]
"#,
    );
    let run = sb.ferry(["validate", "-f", common::s(&files)]).failure();
    for expected in [
        "spec.deliverTo[0].target: DeliveryTarget `hook` is a webhook",
        "spec.notify.onFailure[0]: DeliveryTarget `archive` is a localDir target",
        "spec.notify.onFailure[1]: DeliveryTarget `nowhere` not found",
        "spec.webhook.url: `http://alerts.example/hook` is plain HTTP",
        "spec.notify.onRecovery[1]: DeliveryTarget `cw` is a connectwise target",
        "spec.deliverTo[1].target: DeliveryTarget `oncall-mail` has no link storage and attach: false, so this email target takes alerts only",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {run:#?}");
    }
    assert!(
        !run.stderr.contains("spec.notify.onRecovery[0]"),
        "a mapping may alert a webhook: {run:#?}"
    );
    assert!(
        !run.stderr.contains("spec.notify.onFailure[2]"),
        "an email target without link or attach takes alerts: {run:#?}"
    );

    // A usage sync cannot be missed (it runs when Ferry is back): no onMissed on a mapping.
    let mapping = sb.write(
        "mapping.yaml",
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {name: acme}
spec:
  customer: acme
  psa: {target: cw}
  company: {identifier: ACME01}
  notify:
    onMissed: [hook]
"#,
    );
    let run = sb.ferry(["validate", "-f", common::s(&mapping)]).failure();
    assert!(run.stderr.contains("mapping.yaml:9"), "{run:#?}");
    assert!(run.stderr.contains("onMissed"), "{run:#?}");
}

#[test]
fn slots_missed_while_ferry_was_down_are_one_alert_saying_how_many() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(start_receiver());
    let mut sb = Sandbox::new();
    sb.write_secret("default", "hooks", "ca.pem", &receiver.ca_pem);
    std::fs::write(sb.root().join("shop.db"), "").unwrap();
    let files = sb.write(
        "shop.yaml",
        &format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: sales}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  startingDeadline: 1h
  source: {{sql: {{url: "sqlite://shop.db", query: "SELECT 1 AS id"}}}}
  columns: [{{name: id}}]
  format: {{csv: {{}}}}
  fileName: "sales_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: archive}}]
  notify: {{onMissed: [ops-hook], onRecovery: [ops-hook]}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: archive}}
spec: {{localDir: {{path: archive}}}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-hook}}
spec:
  webhook:
    url: {url}/ferry
    format: teams
    caSecretRef: {{name: hooks, key: ca.pem}}
"#,
            url = receiver.url
        ),
    );
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    // Three days later, each slot more than startingDeadline ago: three slots missed, one alert.
    run_once_at(&mut sb, &files, "2026-08-02T15:00:00Z");
    let hook = receiver.at("/ferry");
    assert_eq!(hook.len(), 1, "{hook:#?}");
    let card: serde_json::Value = serde_json::from_str(&hook[0].body).unwrap();
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(
        card["title"],
        "ReportSchedule default/sales missed 3 slot(s) from 2026-07-31T00:30:00+09:00"
    );
    // The next slot runs on time: the schedule recovered.
    run_once_at(&mut sb, &files, "2026-08-02T15:31:00Z").success();
    let hook = receiver.at("/ferry");
    assert_eq!(hook.len(), 2, "{hook:#?}");
    let card: serde_json::Value = serde_json::from_str(&hook[1].body).unwrap();
    assert_eq!(
        card["title"],
        "ReportSchedule default/sales recovered: slot 2026-08-03T00:30:00+09:00 succeeded"
    );
    assert_eq!(card["themeColor"], "107C10");
}

/// `onCheckFailed`: the daemon's periodic check finds the target both schedules deliver to
/// broken (its directory is a file). The hook named by both is told once, with both schedules;
/// the file fixed and reloaded, the check passes and the hook hears that too.
#[test]
fn a_failed_periodic_check_is_alerted_once_per_target_told_and_its_passing_again_too() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(start_receiver());
    let sb = Sandbox::new();
    sb.write_secret("default", "hooks", "ca.pem", &receiver.ca_pem);
    std::fs::write(sb.root().join("shop.db"), "").unwrap();
    std::fs::write(
        sb.root().join("not-a-dir"),
        "a file where the reports would go",
    )
    .unwrap();
    let schedule = |name: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: {name}}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  source: {{sql: {{url: "sqlite://shop.db", query: "SELECT 1 AS id"}}}}
  columns: [{{name: id}}]
  format: {{csv: {{}}}}
  fileName: "{name}.csv"
  deliverTo: [{{target: archive}}]
  notify: {{onCheckFailed: [ops-hook]}}
"#
        )
    };
    let resources = |path: &str| {
        [
            schedule("sales"),
            schedule("stock"),
            format!(
                r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: archive}}
spec: {{localDir: {{path: {path}}}}}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-hook}}
spec:
  webhook:
    url: {url}/checks
    caSecretRef: {{name: hooks, key: ca.pem}}
"#,
                url = receiver.url
            ),
        ]
        .join("---\n")
    };
    let file = sb.write("shop.yaml", &resources("not-a-dir"));
    let mut cmd = common::ferry_command();
    cmd.args(["run", "-f"])
        .arg(&file)
        .args(["--poll", "1s", "--check-interval", "1h"])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(sb.root().join("daemon.log")).unwrap());
    let mut daemon = common::hosted::Daemon(cmd.spawn().expect("ferry run starts"));
    let told = |n: usize| -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let got = receiver.at("/checks");
            if got.len() >= n {
                return got
                    .iter()
                    .map(|r| serde_json::from_str(&r.body).unwrap())
                    .collect();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} alert(s), not {n}\n{}",
                got.len(),
                std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let alerts = told(1);
    assert_eq!(alerts[0]["event"], "checkFailed", "{:#}", alerts[0]);
    assert_eq!(alerts[0]["kind"], "DeliveryTarget");
    assert_eq!(alerts[0]["name"], "archive");
    assert_eq!(alerts[0]["condition"], "Reachable");
    assert_eq!(alerts[0]["outcome"], "failed");
    assert_eq!(
        alerts[0]["schedules"],
        serde_json::json!(["sales", "stock"])
    );
    assert!(
        alerts[0]["error"].as_str().unwrap().contains("not-a-dir"),
        "{:#}",
        alerts[0]
    );
    assert!(alerts[0].get("slot").is_none(), "{:#}", alerts[0]);

    // Fixed in the file: the reload is checked at once and the hook hears it passes.
    std::fs::write(&file, resources("archive")).unwrap();
    let alerts = told(2);
    assert_eq!(
        alerts.len(),
        2,
        "one alert, not one per schedule: {alerts:#?}"
    );
    assert_eq!(alerts[1]["event"], "checkPassed", "{:#}", alerts[1]);
    assert_eq!(alerts[1]["name"], "archive");
    assert!(alerts[1].get("error").is_none(), "{:#}", alerts[1]);
    daemon.stop();
}
