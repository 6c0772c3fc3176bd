//! Reports into the PSA (a weekly HES summary "sent to ConnectWise every week"), through the
//! `ferry` binary against the simulators: a ReportSchedule labelled with a mapped customer
//! files each run as a ticket with the report attached, byte for byte; a rerun or a resume
//! after kill -9 leaves exactly one ticket and one attachment; validation refuses such a
//! delivery without the label or without a mapping.

use crate::common;
use crate::psa_common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Sandbox;
use ferry::psa::sim::{Fault, SimServer};
use psa_common::*;
use serde_json::Value;

const SLOT: &str = "2026-07-27T06:00:00+02:00";

const CW_DATA: &str = r#"
companyId: mymsp
codebase: "v2025_1/"
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pub-KEY-123
privateKey: priv-SECRET-456
companies:
  - {id: 250, identifier: ACME01, name: "Acme Corp", status: Active}
agreements:
  - {id: 10, name: "Managed Services", companyId: 250, type: "Managed Services", status: Active}
boards:
  - {id: 1, name: "Alerts"}
  - id: 2
    name: "Security Reports"
    statuses:
      - {id: 21, name: "Da leggere", defaultFlag: true}
      - {id: 22, name: "Letto", closedStatus: true}
"#;

const AT_DATA: &str = r#"
username: ferry-api@msp.example
secret: at-SECRET-789
integrationCode: INTEGRATION-CODE
companies:
  - {id: 100, companyName: "Rossi Meccanica S.r.l.", companyNumber: "R1", companyType: 1, isActive: true}
contracts:
  - {id: 10, companyID: 100, contractName: "Sicurezza gestita", contractType: 7, status: 1, startDate: "2026-01-01", endDate: "2027-12-31"}
queues:
  - {id: 8, name: "Sophos - Avvisi"}
  - {id: 9, name: "Security Reports"}
"#;

/// A detections database: the weekly HES summary's rows.
fn detections_db(sb: &Sandbox, rows: u32) -> std::path::PathBuf {
    let path = sb.root().join("hes.db");
    let script = format!(
        "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\n\
         con.execute('DROP TABLE IF EXISTS detections')\n\
         con.execute('CREATE TABLE detections (customer TEXT, day TEXT, kind TEXT, count INTEGER)')\n\
         con.executemany('INSERT INTO detections VALUES (?,?,?,?)', \
         [(c, '2026-07-%02d' % (20 + i % 7), k, (i * 7) % 50) for c in ('acme', 'rossi') \
         for i in range({rows}) for k in ('spam', 'phishing', 'malware')])\n\
         con.commit()\n"
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn mapping(customer: &str, target: &str, company: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: {customer}}}
spec:
  customer: {customer}
  psa: {{target: {target}}}
  company: {company}
"#
    )
}

fn weekly_summary(customer: Option<&str>, target: &str, db: &Path) -> String {
    let labels = customer.map_or(String::new(), |c| {
        format!("\n  labels: {{ferry.dev/customer: {c}}}")
    });
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata:
  name: hes-weekly{labels}
spec:
  schedule: {{weekly: {{on: [mon], at: "06:00"}}}}
  timeZone: Europe/Rome
  source:
    sql:
      url: "sqlite:{db}"
      query: |
        SELECT day, kind, SUM(count) AS detections FROM detections
        WHERE customer = '{customer}' GROUP BY day, kind ORDER BY day, kind
  format: {{csv: {{}}}}
  fileName: "hes_summary_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: {target}}}]
  retry: {{attempts: 1, backoff: 1s}}
"#,
        db = db.display(),
        customer = customer.unwrap_or("nobody"),
    )
}

fn base64_decode(s: &str) -> Vec<u8> {
    let table = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        buf = (buf << 6) | table(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// The report file of the run, as Ferry staged it: from the ledger's recorded SHA-256 and the
/// same query run again, byte for byte (`ferry history` gives the SHA-256).
fn delivered_sha(sb: &Sandbox) -> (String, Value) {
    let runs = sb
        .ferry(["history", "reportschedule/hes-weekly", "-o", "json"])
        .success()
        .json();
    let run = runs.as_array().unwrap()[0].clone();
    (run["sha256"].as_str().unwrap().to_string(), run)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn cw_reports(sim: &SimServer, mode: &str) -> String {
    cw_target(
        sim,
        &format!("    reports: {{board: \"Security Reports\", mode: {mode}}}\n"),
    )
}

fn at_reports(sim: &SimServer) -> String {
    at_target(sim, "    reports: {board: \"Security Reports\"}\n")
}

#[test]
fn a_weekly_summary_reaches_connectwise_as_a_ticket_with_the_file_attached_byte_for_byte() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = detections_db(&sb, 40);
    apply_docs(
        &sb,
        "all.yaml",
        &[
            cw_reports(&sim, "ticket"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(Some("acme"), "cw", &db),
        ],
    );
    let run = sb
        .ferry(["run-now", "reportschedule/hes-weekly", "--slot", SLOT])
        .success();
    assert!(
        run.stdout.contains("ConnectWise ticket #"),
        "{}",
        run.stdout
    );
    let tickets = state_list(&sim, "tickets");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0]["companyId"], 250);
    assert_eq!(tickets[0]["board"], "Security Reports");
    assert_eq!(tickets[0]["status"], "Da leggere");
    assert_eq!(
        tickets[0]["summary"],
        "Report hes-weekly: 2026-07-27 06:00 CEST (acme)"
    );
    let docs = state_list(&sim, "documents");
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["recordType"], "Ticket");
    assert_eq!(docs[0]["recordId"], tickets[0]["id"]);
    assert_eq!(docs[0]["fileName"], "hes_summary_20260727.csv");
    let bytes = base64_decode(docs[0]["content"].as_str().unwrap());
    let (sha, run) = delivered_sha(&sb);
    assert_eq!(
        sha256_hex(&bytes),
        sha,
        "the attachment is the report, byte for byte"
    );
    assert_eq!(bytes.len() as u64, run["bytes"].as_u64().unwrap());
    assert!(String::from_utf8_lossy(&bytes).starts_with("day,kind,detections\r\n"));

    // A rerun of the same slot (--resend) finds the ticket and the document: nothing new.
    sb.ferry([
        "run-now",
        "reportschedule/hes-weekly",
        "--slot",
        SLOT,
        "--resend",
    ])
    .success();
    assert_eq!(state_list(&sim, "tickets").len(), 1);
    assert_eq!(state_list(&sim, "documents").len(), 1);

    // The next week: a second ticket.
    sb.ferry([
        "run-now",
        "reportschedule/hes-weekly",
        "--slot",
        "2026-08-03T06:00:00+02:00",
    ])
    .success();
    assert_eq!(state_list(&sim, "tickets").len(), 2);
    assert_eq!(state_list(&sim, "documents").len(), 2);
    rt.block_on(sim.shutdown());
}

#[test]
fn in_note_mode_each_run_adds_a_note_and_the_file_to_one_standing_connectwise_ticket() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = detections_db(&sb, 10);
    apply_docs(
        &sb,
        "all.yaml",
        &[
            cw_reports(&sim, "note"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(Some("acme"), "cw", &db),
        ],
    );
    for slot in [SLOT, "2026-08-03T06:00:00+02:00", SLOT] {
        let args = [
            "run-now",
            "reportschedule/hes-weekly",
            "--slot",
            slot,
            "--resend",
        ];
        sb.ferry(args).success();
    }
    assert_eq!(state_list(&sim, "tickets").len(), 1);
    let notes = state_list(&sim, "ticketNotes");
    assert_eq!(notes.len(), 2, "one note per slot: {notes:?}");
    assert!(
        notes[0]["text"]
            .as_str()
            .unwrap()
            .contains("hes_summary_20260727.csv")
    );
    assert_eq!(state_list(&sim, "documents").len(), 2);
    rt.block_on(sim.shutdown());
}

#[test]
fn a_weekly_summary_reaches_autotask_as_a_ticket_with_the_file_attached_byte_for_byte() {
    let rt = runtime();
    let sim = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = detections_db(&sb, 40);
    apply_docs(
        &sb,
        "all.yaml",
        &[
            at_reports(&sim),
            mapping("rossi", "at", "{name: \"Rossi Meccanica S.r.l.\"}"),
            weekly_summary(Some("rossi"), "at", &db),
        ],
    );
    sb.ferry(["run-now", "reportschedule/hes-weekly", "--slot", SLOT])
        .success();
    let tickets = state_list(&sim, "tickets");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0]["companyID"], 100);
    assert_eq!(tickets[0]["queueID"], 9);
    let attachments = state_list(&sim, "ticketAttachments");
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0]["parentID"], tickets[0]["id"]);
    assert_eq!(attachments[0]["fullPath"], "hes_summary_20260727.csv");
    assert_eq!(attachments[0]["attachmentType"], "FILE_ATTACHMENT");
    let bytes = base64_decode(attachments[0]["data"].as_str().unwrap());
    let (sha, _) = delivered_sha(&sb);
    assert_eq!(
        sha256_hex(&bytes),
        sha,
        "the attachment is the report, byte for byte"
    );
    rt.block_on(sim.shutdown());
}

/// Runs `run-now` for SLOT and kills it once the simulator has answered `marker` (a create).
fn kill_after(sb: &Sandbox, sim: &SimServer, marker: &str) {
    let mut child = common::ferry_command()
        .args(["run-now", "reportschedule/hes-weekly", "--slot", SLOT])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.contains(marker) && r.status < 300)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never created: {:?}",
            sim.requests()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the delivery ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sim.clear_faults();
}

#[test]
fn a_delivery_killed_mid_way_then_resumed_leaves_exactly_one_ticket_and_one_attachment() {
    let rt = runtime();
    // ConnectWise: killed right after the ticket was created, before the upload.
    let cw = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = detections_db(&sb, 20);
    let files = apply_docs(
        &sb,
        "all.yaml",
        &[
            cw_reports(&cw, "ticket"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(Some("acme"), "cw", &db),
        ],
    );
    cw.inject(Fault::Latency { millis: 300 });
    kill_after(&sb, &cw, "/service/tickets");
    assert_eq!(
        state_list(&cw, "documents").len(),
        0,
        "killed before the upload"
    );
    sb.ferry(["run", "--once", "-f", files.to_str().unwrap()])
        .success();
    assert_eq!(state_list(&cw, "tickets").len(), 1);
    let docs = state_list(&cw, "documents");
    assert_eq!(docs.len(), 1, "{docs:?}");
    let (sha, run) = delivered_sha(&sb);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(
        sha256_hex(&base64_decode(docs[0]["content"].as_str().unwrap())),
        sha
    );
    rt.block_on(cw.shutdown());

    // Autotask: killed right after the attachment was created, before Ferry recorded it.
    let at = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = detections_db(&sb, 20);
    let files = apply_docs(
        &sb,
        "all.yaml",
        &[
            at_reports(&at),
            mapping("rossi", "at", "{name: \"Rossi Meccanica S.r.l.\"}"),
            weekly_summary(Some("rossi"), "at", &db),
        ],
    );
    at.inject(Fault::Latency { millis: 300 });
    kill_after(&sb, &at, "/Attachments");
    sb.ferry(["run", "--once", "-f", files.to_str().unwrap()])
        .success();
    assert_eq!(state_list(&at, "tickets").len(), 1);
    assert_eq!(state_list(&at, "ticketAttachments").len(), 1);
    let history = sb
        .ferry(["history", "reportschedule/hes-weekly", "-o", "json"])
        .success()
        .json();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["outcome"], "succeeded");
    rt.block_on(at.shutdown());
}

#[test]
fn validation_refuses_a_psa_delivery_without_the_customer_label_or_a_mapping() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = detections_db(&sb, 1);
    let unlabelled = sb.write(
        "unlabelled.yaml",
        &[
            cw_reports(&sim, "ticket"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(None, "cw", &db),
        ]
        .join("---\n"),
    );
    let out = sb
        .ferry(["validate", "-f", unlabelled.to_str().unwrap()])
        .failure();
    assert!(
        out.stderr.contains("spec.deliverTo[0].target")
            && out
                .stderr
                .contains("needs the label `ferry.dev/customer: <customer>`"),
        "{}",
        out.stderr
    );
    let unmapped = sb.write(
        "unmapped.yaml",
        &[
            cw_reports(&sim, "ticket"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(Some("globex"), "cw", &db),
        ]
        .join("---\n"),
    );
    let out = sb
        .ferry(["validate", "-f", unmapped.to_str().unwrap()])
        .failure();
    assert!(
        out.stderr
            .contains("no CustomerMapping maps customer `globex` on DeliveryTarget `cw`"),
        "{}",
        out.stderr
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn a_delivery_refused_by_the_psa_fails_the_run_without_showing_a_key() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = detections_db(&sb, 5);
    apply_docs(
        &sb,
        "all.yaml",
        &[
            cw_reports(&sim, "ticket"),
            mapping("acme", "cw", "{identifier: ACME01}"),
            weekly_summary(Some("acme"), "cw", &db),
        ],
    );
    sim.inject(Fault::ExpireKeys);
    let run = sb
        .ferry(["run-now", "reportschedule/hes-weekly", "--slot", SLOT])
        .failure();
    let history = sb
        .ferry(["history", "reportschedule/hes-weekly", "-o", "json"])
        .success();
    let all = format!("{}{}{}", run.stdout, run.stderr, history.stdout);
    assert!(all.contains("were refused"), "{all}");
    for secret in ["pub-KEY-123", "priv-SECRET-456"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    assert!(state_list(&sim, "tickets").is_empty());
    rt.block_on(sim.shutdown());
}
