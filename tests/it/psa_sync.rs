//! CustomerMapping sync through the `ferry` binary against the strict PSA simulators (run
//! in-process on 127.0.0.1): the full cycle for ConnectWise and Autotask, 429 storms, a zone
//! move, expired keys, duplicate company names, an inactive agreement, a wrong contract type,
//! tickets opened once and closed on recovery, billing on demand, plan drift, and a sync
//! killed in the middle then rerun without a duplicate addition or adjustment.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Sandbox;
use ferry::psa::sim::{Fault, SimServer, autotask, connectwise};
use serde_json::Value;

/// A runtime whose worker threads serve the simulator while the test runs ferry.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_cw(rt: &tokio::runtime::Runtime, data: &str) -> SimServer {
    let data: connectwise::Data = serde_saphyr::from_str(data).expect("sim data");
    let api = connectwise::ConnectWise::new(data).expect("valid sim data");
    rt.block_on(SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(api),
    ))
    .expect("sim starts")
}

fn start_at(rt: &tokio::runtime::Runtime, data: &str) -> SimServer {
    let data: autotask::Data = serde_saphyr::from_str(data).expect("sim data");
    let api = autotask::Autotask::new(data).expect("valid sim data");
    rt.block_on(SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(api),
    ))
    .expect("sim starts")
}

/// A SQLite usage database with `(customer, product, quantity)` rows.
fn usage_db(sb: &Sandbox, rows: &[(&str, &str, f64)]) -> PathBuf {
    let path = sb.root().join("usage.db");
    let values: Vec<String> = rows
        .iter()
        .map(|(c, p, q)| format!("('{c}','{p}',{q})"))
        .collect();
    let script = format!(
        "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\n\
         con.execute('DROP TABLE IF EXISTS usage')\n\
         con.execute('CREATE TABLE usage (customer TEXT, product TEXT, quantity REAL)')\n\
         {}\ncon.commit()\n",
        if values.is_empty() {
            String::new()
        } else {
            format!(
                "con.execute(\"INSERT INTO usage VALUES {}\")",
                values.join(",")
            )
        }
    );
    let status = Command::new(common::python())
        .args(["-c", &script])
        .arg(&path)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    path
}

const CW_DATA: &str = r#"
companyId: mymsp
codebase: "v2025_1/"
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pub-KEY-123
privateKey: priv-SECRET-456
companies:
  - {id: 250, identifier: ACME01, name: "Acme Corp", status: Active}
  - {id: 251, identifier: OLD01, name: "Old Corp", status: Inactive}
agreements:
  - {id: 10, name: "Managed Services", companyId: 250, type: "Managed Services", status: Active}
  - {id: 11, name: "Legacy", companyId: 250, type: "Managed Services", status: Cancelled, cancelled: true}
products:
  - {id: 501, identifier: EP-PROT, description: "Endpoint protection", price: 4.5}
  - {id: 502, identifier: FW-BOX, description: "Firewall", price: 20}
boards:
  - {id: 1, name: "Alerts"}
"#;

fn cw_target(sim: &SimServer) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: cw}}
spec:
  connectwise:
    baseUrl: {}
    companyId: mymsp
    clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
    publicKeySecretRef: {{name: cw, key: public}}
    privateKeySecretRef: {{name: cw, key: private}}
"#,
        sim.url()
    )
}

fn cw_mapping(name: &str, identifier: &str, agreement: &str, db: &Path, tickets: bool) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: {name}}}
spec:
  customer: {name}
  psa: {{target: cw}}
  company: {{identifier: {identifier}}}
  contracts:
    - {{product: endpoint-protection, agreement: "{agreement}", item: EP-PROT}}
    - {{product: firewall, agreement: "{agreement}", item: FW-BOX}}
  usageSync:
    enabled: true
    source:
      sql:
        url: "sqlite:{db}"
        query: "SELECT customer, product, quantity FROM usage"
  ticketSync: {{enabled: {tickets}, board: Alerts}}
  billing: {{enabled: true, schedule: {{monthly: {{day: 31, at: "06:00"}}}}, timeZone: Europe/Paris}}
"#,
        db = db.display()
    )
}

/// Writes `docs` as one multi-document file `files/<name>`, applies it, and returns its path.
fn apply_docs(sb: &Sandbox, name: &str, docs: &[String]) -> PathBuf {
    let files = sb.write(name, &docs.join("---\n"));
    sb.apply(&[&files]);
    files
}

fn cw_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_secret("default", "cw", "public", "pub-KEY-123");
    sb.write_secret("default", "cw", "private", "priv-SECRET-456");
    sb
}

fn additions(sim: &SimServer) -> Vec<Value> {
    sim.state()["additions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn active_additions(sim: &SimServer, identifier: &str) -> Vec<Value> {
    additions(sim)
        .into_iter()
        .filter(|a| a["productIdentifier"] == identifier && a["cancelledDate"].is_null())
        .collect()
}

fn mapping_status(sb: &Sandbox, name: &str) -> Value {
    let out = sb
        .ferry(["get", &format!("customermapping/{name}"), "-o", "json"])
        .success();
    out.json()[0]["status"].clone()
}

#[test]
fn connectwise_full_cycle_creates_then_patches_one_addition_per_product() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(
        &sb,
        &[
            ("acme", "endpoint-protection", 12.0),
            ("acme", "firewall", 2.0),
            ("acme", "backup", 5.0),
            ("other", "firewall", 9.0),
        ],
    );
    apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, false),
        ],
    );

    let run = sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(
        run.stdout
            .contains("endpoint-protection: none -> 12 (created"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("backup: in the usage rows but not in contracts"),
        "{}",
        run.stdout
    );
    let ep = active_additions(&sim, "EP-PROT");
    assert_eq!(ep.len(), 1, "{ep:?}");
    assert_eq!(ep[0]["quantity"], 12.0);
    assert_eq!(ep[0]["agreementId"], 10);
    assert_eq!(active_additions(&sim, "FW-BOX")[0]["quantity"], 2.0);

    // New usage: the same additions are patched, none created.
    usage_db(
        &sb,
        &[
            ("acme", "endpoint-protection", 15.0),
            ("acme", "firewall", 2.0),
        ],
    );
    let run = sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(
        run.stdout
            .contains("endpoint-protection: 12 -> 15 (updated"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("firewall: 2 -> 2 (unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(
        additions(&sim).len(),
        2,
        "no new addition: {:?}",
        additions(&sim)
    );
    assert_eq!(active_additions(&sim, "EP-PROT")[0]["quantity"], 15.0);

    let status = mapping_status(&sb, "acme");
    assert_eq!(status["companyId"], 250);
    assert_eq!(status["lastSync"]["outcome"], "succeeded");
    assert_eq!(status["contracts"][0]["agreementId"], 10);
    assert_eq!(status["contracts"][0]["itemId"], 501);
    assert_eq!(status["unmappedProducts"], Value::Null);
    let synced = sb
        .ferry([
            "get",
            "customermappings",
            "--sync-status",
            "succeeded",
            "-o",
            "json",
        ])
        .success()
        .json();
    assert_eq!(synced.as_array().unwrap().len(), 1);
    let failed = sb
        .ferry([
            "get",
            "customermappings",
            "--sync-status",
            "failed",
            "-o",
            "json",
        ])
        .success()
        .json();
    assert!(failed.as_array().unwrap().is_empty());
    let table = sb.ferry(["get", "customermappings"]).success();
    assert!(
        table.stdout.contains("acme") && table.stdout.contains("succeeded"),
        "{}",
        table.stdout
    );

    // Billing on demand records lastBilling.
    sb.ferry(["run-now", "customermapping/acme", "--billing"])
        .success();
    assert_eq!(
        mapping_status(&sb, "acme")["lastBilling"]["outcome"],
        "succeeded"
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn a_429_storm_is_waited_out_and_expired_keys_fail_without_showing_them() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, false),
        ],
    );
    sim.inject(Fault::RateLimit {
        count: 4,
        retry_after: 1,
    });
    let started = Instant::now();
    sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let throttled = sim.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 4);
    assert_eq!(active_additions(&sim, "EP-PROT")[0]["quantity"], 3.0);

    sim.inject(Fault::ExpireKeys);
    let run = sb.ferry(["run-now", "customermapping/acme"]).code(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.to_lowercase().contains("refused"), "{all}");
    assert!(
        !all.contains("priv-SECRET-456") && !all.contains("pub-KEY-123"),
        "{all}"
    );
    let status = mapping_status(&sb, "acme");
    assert_eq!(status["lastSync"]["outcome"], "failed");
    let reason = status["lastSync"]["reason"].as_str().unwrap();
    assert!(!reason.contains("priv-SECRET-456"), "{reason}");
    let failed = sb
        .ferry([
            "get",
            "customermappings",
            "--sync-status",
            "failed",
            "-o",
            "json",
        ])
        .success()
        .json();
    assert_eq!(failed[0]["metadata"]["name"], "acme");
    // A 401 is never retried: one attempt for the first call, nothing more.
    let refused = sim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "{:?}", sim.requests());
    rt.block_on(sim.shutdown());
}

#[test]
fn an_inactive_agreement_or_company_fails_the_mapping_and_opens_one_ticket_closed_on_recovery() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let files = apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Legacy", &db, true),
            cw_mapping("old", "OLD01", "Legacy", &db, true),
        ],
    );
    for _ in 0..2 {
        let run = sb.ferry(["run-now", "customermapping/acme"]).code(1);
        assert!(
            run.stderr
                .contains("agreement `Legacy` (#11) is not active: status Cancelled"),
            "{}",
            run.stderr
        );
    }
    let tickets = sim.state()["tickets"].as_array().cloned().unwrap();
    assert_eq!(
        tickets.len(),
        1,
        "one ticket, not one per attempt: {tickets:?}"
    );
    assert_eq!(tickets[0]["summary"], "Ferry: usage sync failing for acme");
    assert_eq!(tickets[0]["companyId"], 250);
    assert_eq!(
        mapping_status(&sb, "acme")["openTickets"][0]["id"],
        tickets[0]["id"]
    );

    let old = sb.ferry(["run-now", "customermapping/old"]).code(1);
    assert!(
        old.stderr.contains("company `OLD01` (#251) is not active"),
        "{}",
        old.stderr
    );

    // Fixed in Git: the next sync succeeds and closes the ticket.
    std::fs::write(
        &files,
        format!(
            "{}---\n{}",
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, true)
        ),
    )
    .unwrap();
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(run.stdout.contains("closed ticket"), "{}", run.stdout);
    let tickets = sim.state()["tickets"].as_array().cloned().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["closed"], true, "{tickets:?}");
    assert_eq!(
        mapping_status(&sb, "acme")["openTickets"],
        serde_json::json!([])
    );
    rt.block_on(sim.shutdown());
}

const AT_DATA: &str = r#"
username: ferry-api@msp.example
secret: at-SECRET-789
integrationCode: INTEGRATION-CODE
companies:
  - {id: 100, companyName: "Rossi Meccanica S.r.l.", companyNumber: "R1", companyType: 1, isActive: true}
  - {id: 101, companyName: "Bianchi", companyNumber: "B1", companyType: 1, isActive: true}
  - {id: 102, companyName: "Bianchi", companyNumber: "B2", companyType: 1, isActive: true}
contracts:
  - {id: 10, companyID: 100, contractName: "Sicurezza gestita", contractNumber: "C-10", contractType: 7, status: 1, startDate: "2026-01-01", endDate: "2027-12-31"}
  - {id: 11, companyID: 100, contractName: "Ore", contractNumber: "C-11", contractType: 1, status: 1, startDate: "2026-01-01", endDate: "2027-12-31"}
services:
  - {id: 20, name: "Sophos Intercept X Advanced", unitPrice: 5.0, unitCost: 2.0, periodType: "m"}
  - {id: 21, name: "Sophos Central Email Advanced", unitPrice: 3.0, unitCost: 1.0, periodType: "m"}
contractServices:
  - {id: 30, contractID: 10, serviceID: 20, unitPrice: 5.0}
contractServiceUnits:
  - {contractID: 10, serviceID: 20, contractServiceID: 30, startDate: "2026-07-01", endDate: "2026-07-31", units: 4, price: 5.0}
queues:
  - {id: 8, name: "Sophos - Avvisi"}
"#;

fn at_target(sim: &SimServer) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: at}}
spec:
  autotask:
    username: ferry-api@msp.example
    secretSecretRef: {{name: at, key: secret}}
    integrationCodeSecretRef: {{name: at, key: code}}
    zoneDiscoveryUrl: {}/atservicesrest/v1.0/zoneInformation
"#,
        sim.url()
    )
}

fn at_mapping(name: &str, company: &str, contract: &str, db: &Path) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: {name}}}
spec:
  customer: {name}
  psa: {{target: at}}
  company: {{name: "{company}"}}
  contracts:
    - {{product: intercept-x, agreement: "{contract}", item: "Sophos Intercept X Advanced"}}
    - {{product: email, agreement: "{contract}", item: "Sophos Central Email Advanced"}}
  usageSync:
    enabled: true
    source:
      sql:
        url: "sqlite:{db}"
        query: "SELECT customer, product, quantity FROM usage"
  ticketSync: {{enabled: true, board: "Sophos - Avvisi"}}
"#,
        db = db.display()
    )
}

fn at_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_secret("default", "at", "secret", "at-SECRET-789");
    sb.write_secret("default", "at", "code", "INTEGRATION-CODE");
    sb
}

fn adjustments(sim: &SimServer) -> Vec<Value> {
    sim.state()["contractServiceAdjustments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Units of contract 10, service `service`, in the period holding 2026-07-30 (FERRY_NOW).
fn units(sim: &SimServer, service: i64) -> f64 {
    sim.state()["contractServiceUnits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["contractID"] == 10 && u["serviceID"] == service)
        .filter(|u| {
            u["startDate"].as_str().unwrap() <= "2026-07-30"
                && u["endDate"].as_str().unwrap() >= "2026-07-30"
        })
        .map(|u| u["units"].as_f64().unwrap())
        .sum()
}

#[test]
fn autotask_full_cycle_adjusts_by_the_difference_and_survives_a_zone_move() {
    let rt = runtime();
    let sim = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = usage_db(
        &sb,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 6.0)],
    );
    apply_docs(
        &sb,
        "at.yaml",
        &[
            at_target(&sim),
            at_mapping("rossi", "Rossi Meccanica S.r.l.", "Sicurezza gestita", &db),
        ],
    );
    let run = sb.ferry(["run-now", "customermapping/rossi"]).success();
    assert!(
        run.stdout.contains("intercept-x: 4 -> 10 (adjusted"),
        "{}",
        run.stdout
    );
    let adj = adjustments(&sim);
    assert_eq!(adj.len(), 2, "{adj:?}");
    let ix: Vec<&Value> = adj.iter().filter(|a| a["serviceID"] == 20).collect();
    assert_eq!(ix[0]["unitChange"], 6.0);
    assert_eq!(units(&sim, 20), 10.0);
    assert_eq!(
        units(&sim, 21),
        6.0,
        "email attached to the contract, then adjusted"
    );
    let services = sim.state()["contractServices"].as_array().unwrap().len();
    assert_eq!(services, 2);

    // The tenant moves to another zone while a long-lived syncer (as in `ferry run`) holds
    // the old zone: it gets a 401, discovers the zone again, and carries on.
    let store = rt
        .block_on(ferry::state::StateStore::open(&sb.state))
        .unwrap();
    let syncer =
        ferry::psa::sync::Syncer::new(store.clone(), ferry::secrets::FileSecrets::new(&sb.secrets));
    let job = || {
        let actual = rt.block_on(store.snapshot()).unwrap();
        let view = ferry::psa::sync::MappingView::all(&actual)
            .into_iter()
            .find(|v| v.key.name == "rossi")
            .unwrap();
        ferry::psa::sync::SyncJob {
            view,
            kind: ferry::psa::ledger::SyncKind::Usage,
            slot: common::NOW
                .parse::<jiff::Timestamp>()
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC),
            trigger: ferry::psa::sync::Trigger::RunNow,
        }
    };
    let first = rt.block_on(syncer.run(vec![job()]));
    assert!(first[0].succeeded, "{:?}", first[0].reason);
    sim.inject(Fault::MoveZone);
    usage_db(
        &sb,
        &[("rossi", "intercept-x", 7.0), ("rossi", "email", 6.0)],
    );
    let second = rt.block_on(syncer.run(vec![job()]));
    assert!(second[0].succeeded, "{:?}", second[0].reason);
    let ix = second[0]
        .pushed
        .iter()
        .find(|p| p.product == "intercept-x")
        .unwrap();
    assert_eq!(
        (ix.previous, ix.quantity, ix.action.as_str()),
        (Some(10.0), 7.0, "adjusted")
    );
    let email = second[0]
        .pushed
        .iter()
        .find(|p| p.product == "email")
        .unwrap();
    assert_eq!(email.action, "unchanged");
    assert_eq!(units(&sim, 20), 7.0);
    assert_eq!(
        adjustments(&sim).len(),
        3,
        "one more adjustment (-3), none for email"
    );
    let zone_401 = sim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(zone_401, 1, "the old zone answered 401 once");
    rt.block_on(sim.shutdown());
}

#[test]
fn autotask_duplicate_company_names_and_a_wrong_contract_type_are_errors_naming_the_candidates() {
    let rt = runtime();
    let sim = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = usage_db(&sb, &[("bianchi", "intercept-x", 1.0)]);
    apply_docs(
        &sb,
        "at.yaml",
        &[
            at_target(&sim),
            at_mapping("bianchi", "Bianchi", "Sicurezza gestita", &db),
            at_mapping("rossi", "Rossi Meccanica S.r.l.", "Ore", &db),
        ],
    );
    let run = sb.ferry(["run-now", "customermapping/bianchi"]).code(1);
    assert!(
        run.stderr.contains("company `Bianchi` is ambiguous"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("#101") && run.stderr.contains("#102"),
        "{}",
        run.stderr
    );
    let run = sb.ferry(["run-now", "customermapping/rossi"]).code(1);
    assert!(
        run.stderr.contains("not Recurring Service (7)"),
        "{}",
        run.stderr
    );
    assert!(adjustments(&sim).is_empty());
    // The company resolved for rossi: its failure opened one ticket in its queue.
    let tickets = sim.state()["tickets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0]["companyID"], 100);
    assert_eq!(tickets[0]["queueID"], 8);
    rt.block_on(sim.shutdown());
}

/// Kills `ferry run-now` once the simulator has answered `marker` (a write), then runs it
/// again: the end state has exactly what one clean sync would have made.
fn kill_during_sync(sb: &Sandbox, sim: &SimServer, mapping: &str, marker: &str) {
    let mut child = common::ferry_command()
        .args(["run-now", &format!("customermapping/{mapping}")])
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
            "the sync never wrote: {:?}",
            sim.requests()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sim.clear_faults();
    sb.ferry(["run-now", &format!("customermapping/{mapping}")])
        .success();
}

#[test]
fn a_sync_killed_after_its_first_write_and_rerun_leaves_no_duplicate_addition_or_adjustment() {
    let rt = runtime();
    // ConnectWise: killed right after the first addition is created.
    let cw = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(
        &sb,
        &[
            ("acme", "endpoint-protection", 12.0),
            ("acme", "firewall", 2.0),
        ],
    );
    apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&cw),
            cw_mapping("acme", "ACME01", "Managed Services", &db, false),
        ],
    );
    cw.inject(Fault::Latency { millis: 400 });
    kill_during_sync(&sb, &cw, "acme", "/additions");
    assert_eq!(
        active_additions(&cw, "EP-PROT").len(),
        1,
        "{:?}",
        additions(&cw)
    );
    assert_eq!(
        active_additions(&cw, "FW-BOX").len(),
        1,
        "{:?}",
        additions(&cw)
    );
    assert_eq!(active_additions(&cw, "EP-PROT")[0]["quantity"], 12.0);
    assert_eq!(additions(&cw).len(), 2);
    rt.block_on(cw.shutdown());

    // Autotask: killed right after the first adjustment.
    let at = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = usage_db(
        &sb,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 6.0)],
    );
    apply_docs(
        &sb,
        "at.yaml",
        &[
            at_target(&at),
            at_mapping("rossi", "Rossi Meccanica S.r.l.", "Sicurezza gestita", &db),
        ],
    );
    at.inject(Fault::Latency { millis: 400 });
    kill_during_sync(&sb, &at, "rossi", "/ServiceAdjustments");
    assert_eq!(units(&at, 20), 10.0);
    assert_eq!(units(&at, 21), 6.0);
    let adj = adjustments(&at);
    assert_eq!(
        adj.len(),
        2,
        "one adjustment per service, none repeated: {adj:?}"
    );
    let history = sb
        .ferry(["history", "customermapping/rossi", "-o", "json"])
        .success()
        .json();
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["succeeded", "failed"], "newest first: {history}");
    assert!(
        history[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{history}"
    );
    rt.block_on(at.shutdown());
}

#[test]
fn plan_refreshes_from_the_psa_and_shows_quantities_changed_outside_ferry() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(
        &sb,
        &[
            ("acme", "endpoint-protection", 12.0),
            ("acme", "firewall", 1.0),
        ],
    );
    let files = apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, false),
            cw_mapping("ghost", "GHOST01", "Managed Services", &db, false),
        ],
    );
    sb.ferry(["run-now", "customermapping/acme"]).success();
    // Somebody edits the addition in ConnectWise.
    let id = active_additions(&sim, "EP-PROT")[0]["id"].as_i64().unwrap();
    let client = ferry::psa::connectwise::ConnectWise::new(
        ferry::psa::connectwise::ConnectWiseConfig {
            site: None,
            base_url: Some(sim.url()),
            company_id: "mymsp".into(),
            client_id: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43".into(),
            public_key: "pub-KEY-123".into(),
            private_key: "priv-SECRET-456".into(),
            api_version: None,
        },
        Default::default(),
    )
    .unwrap();
    rt.block_on(client.set_addition_quantity(10, id, 20.0))
        .unwrap();

    let plan = sb.ferry(["plan", "-f", files.to_str().unwrap()]).success();
    assert!(
        plan.stdout.contains(
            "endpoint-protection: quantity changed outside Ferry: 20 in ConnectWise (agreement `Managed Services`), Ferry last set 12"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("company `GHOST01` not found in ConnectWise"),
        "{}",
        plan.stdout
    );
    let json = sb.plan_json(&[&files]);
    let drift = json["drift"].as_array().unwrap();
    assert!(
        drift
            .iter()
            .any(|d| d["name"] == "ghost" && d["error"] == true),
        "{json}"
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn ferry_run_once_syncs_what_is_due_and_a_second_pass_finds_nothing_to_do() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 5.0)]);
    let files = sb.write(
        "cw.yaml",
        &format!(
            "{}---\n{}",
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, false)
        ),
    );
    let first = sb
        .ferry(["run", "--once", "-f", files.to_str().unwrap()])
        .success();
    assert!(
        first.stderr.contains("PSA syncs: 1 succeeded, 0 failed."),
        "{}",
        first.stderr
    );
    assert_eq!(active_additions(&sim, "EP-PROT")[0]["quantity"], 5.0);
    let status = mapping_status(&sb, "acme");
    assert_eq!(status["lastSync"]["outcome"], "succeeded");
    // Usage every 24 h (the default) is due at once; billing on day 31 is not: its latest
    // slot (30 June, the month's last day) is older than the mapping.
    assert!(status["lastBilling"].is_null(), "{status}");
    let served = sim.requests_served();
    let second = sb
        .ferry(["run", "--once", "-f", files.to_str().unwrap()])
        .success();
    assert!(!second.stderr.contains("PSA syncs"), "{}", second.stderr);
    assert_eq!(sim.requests_served(), served, "nothing due, nothing sent");
    rt.block_on(sim.shutdown());
}

#[test]
fn a_failed_report_for_a_labelled_customer_opens_one_ticket_that_the_next_good_run_closes() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 5.0)]);
    // A file where the target wants a directory: the delivery fails.
    std::fs::write(sb.root().join("blocked"), "not a directory").unwrap();
    let schedule = |path: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: drop}}
spec:
  localDir: {{path: {path}}}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata:
  name: acme-usage
  labels: {{ferry.dev/customer: acme}}
spec:
  schedule: {{daily: {{at: "06:00"}}}}
  source:
    sql:
      url: "sqlite:{db}"
      query: "SELECT customer, product, quantity FROM usage"
  format: {{csv: {{}}}}
  fileName: "usage_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: drop}}]
  retry: {{attempts: 1, backoff: 1s}}
"#,
            db = db.display()
        )
    };
    let files = apply_docs(
        &sb,
        "all.yaml",
        &[
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, true),
            schedule("blocked/reports"),
        ],
    );
    for _ in 0..2 {
        sb.ferry(["run-now", "reportschedule/acme-usage"]).code(1);
    }
    let tickets = sim.state()["tickets"].as_array().cloned().unwrap();
    assert_eq!(
        tickets.len(),
        1,
        "one ticket for two failed runs: {tickets:?}"
    );
    assert_eq!(
        tickets[0]["summary"],
        "Ferry: report acme-usage failing for acme"
    );
    assert_eq!(tickets[0]["companyId"], 250);
    assert_eq!(tickets[0]["closed"], false);
    let status = mapping_status(&sb, "acme");
    assert_eq!(status["openTickets"][0]["kind"], "delivery/acme-usage");

    std::fs::write(
        &files,
        format!(
            "{}---\n{}---\n{}",
            cw_target(&sim),
            cw_mapping("acme", "ACME01", "Managed Services", &db, true),
            schedule("reports")
        ),
    )
    .unwrap();
    sb.apply(&[&files]);
    sb.ferry(["run-now", "reportschedule/acme-usage"]).success();
    let tickets = sim.state()["tickets"].as_array().cloned().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["closed"], true, "{tickets:?}");
    assert_eq!(
        mapping_status(&sb, "acme")["openTickets"],
        serde_json::json!([])
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn the_example_simulator_data_files_load() {
    for (kind, path) in [
        (
            ferry::psa::sim::SimKind::Connectwise,
            "examples/connectwise-billing/simulator.json",
        ),
        (
            ferry::psa::sim::SimKind::Autotask,
            "examples/autotask-usage/simulator.json",
        ),
    ] {
        let api = ferry::psa::sim::load_api(kind, &common::repo().join(path));
        assert!(api.is_ok(), "{path}: {:?}", api.err());
        let state = api.unwrap().state();
        assert!(!state["companies"].as_array().unwrap().is_empty(), "{path}");
    }
}

/// Applies `target` and `mapping` as two files (so the mapping's file can be removed alone),
/// syncs the mapping once, and returns the target's file and the mapping's file.
fn apply_then_sync(
    sb: &Sandbox,
    target: String,
    mapping: String,
    name: &str,
) -> (PathBuf, PathBuf) {
    let target = sb.write("target.yaml", &target);
    let mapping = sb.write(&format!("{name}.yaml"), &mapping);
    sb.apply(&[&target, &mapping]);
    sb.ferry(["run-now", &format!("customermapping/{name}")])
        .success();
    (target, mapping)
}

fn mapping_names(sb: &Sandbox) -> Vec<String> {
    sb.ferry(["get", "customermappings", "-o", "json"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn removing_a_delete_policy_mapping_cancels_its_connectwise_additions_and_a_failure_applies_nothing()
 {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(
        &sb,
        &[
            ("acme", "endpoint-protection", 12.0),
            ("acme", "firewall", 2.0),
        ],
    );
    let mapping =
        cw_mapping("acme", "ACME01", "Managed Services", &db, false) + "  deletionPolicy: Delete\n";
    let (target, file) = apply_then_sync(&sb, cw_target(&sim), mapping, "acme");
    assert_eq!(active_additions(&sim, "EP-PROT")[0]["quantity"], 12.0);
    assert_eq!(active_additions(&sim, "FW-BOX")[0]["quantity"], 2.0);
    std::fs::remove_file(&file).unwrap();

    // The plan says what the deletion does in the PSA, on the delete line and in the JSON.
    let plan = sb.ferry(["plan", "-f", target.to_str().unwrap()]).success();
    assert!(
        plan.stdout.contains(
            "- CustomerMapping/acme (deletionPolicy Delete: its ConnectWise additions will be cancelled)"
        ),
        "{}",
        plan.stdout
    );
    let json = sb.plan_json(&[&target]);
    let change = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "acme")
        .cloned()
        .unwrap();
    assert_eq!(change["action"], "delete");
    assert_eq!(
        change["notes"][0],
        "deletionPolicy Delete: its ConnectWise additions will be cancelled"
    );

    // The PSA refuses the keys: the apply fails naming the mapping, and nothing is written.
    let serial = sb.snapshot().serial;
    sim.inject(Fault::ExpireKeys);
    let failed = sb
        .ferry(["apply", "-f", target.to_str().unwrap(), "--auto-approve"])
        .code(1);
    assert!(
        failed.stderr.contains("could not release in the PSA")
            && failed.stderr.contains("CustomerMapping/acme: ")
            && failed.stderr.contains("Nothing was applied"),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.stdout.contains("Apply complete"),
        "{}",
        failed.stdout
    );
    assert_eq!(mapping_names(&sb), ["acme"], "still in the state");
    assert_eq!(sb.snapshot().serial, serial);
    assert_eq!(active_additions(&sim, "EP-PROT").len(), 1);

    // The rerun releases, then commits.
    sim.inject(Fault::RestoreKeys);
    let applied = sb.apply(&[&target]);
    assert!(
        applied
            .stdout
            .contains("Released in the PSA (deletionPolicy Delete):"),
        "{}",
        applied.stdout
    );
    assert!(
        applied
            .stdout
            .contains("CustomerMapping/acme: endpoint-protection: addition #")
            && applied.stdout.contains("cancelled"),
        "{}",
        applied.stdout
    );
    assert!(
        applied.stdout.contains("0 created, 0 updated, 1 deleted"),
        "{}",
        applied.stdout
    );
    assert!(
        active_additions(&sim, "EP-PROT").is_empty(),
        "{:?}",
        additions(&sim)
    );
    assert!(
        active_additions(&sim, "FW-BOX").is_empty(),
        "{:?}",
        additions(&sim)
    );
    let cancelled: Vec<Value> = additions(&sim)
        .into_iter()
        .filter(|a| {
            a["cancelledDate"]
                .as_str()
                .is_some_and(|d| d.starts_with("2026-07-30"))
        })
        .collect();
    assert_eq!(
        cancelled.len(),
        2,
        "cancelled as of today, not removed: {cancelled:?}"
    );
    assert!(mapping_names(&sb).is_empty());
    rt.block_on(sim.shutdown());
}

#[test]
fn removing_an_orphan_mapping_leaves_its_additions_in_the_psa() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 12.0)]);
    // No deletionPolicy: Orphan, the default.
    let mapping = cw_mapping("acme", "ACME01", "Managed Services", &db, false);
    let (target, file) = apply_then_sync(&sb, cw_target(&sim), mapping, "acme");
    std::fs::remove_file(&file).unwrap();
    let plan = sb.ferry(["plan", "-f", target.to_str().unwrap()]).success();
    assert!(
        plan.stdout
            .contains("- CustomerMapping/acme (deletionPolicy Orphan: the PSA is left as it is)"),
        "{}",
        plan.stdout
    );
    let served = sim.requests_served();
    let applied = sb.apply(&[&target]);
    assert!(!applied.stdout.contains("Released"), "{}", applied.stdout);
    assert!(mapping_names(&sb).is_empty());
    assert_eq!(sim.requests_served(), served, "the PSA is not even asked");
    let left = active_additions(&sim, "EP-PROT");
    assert_eq!(left.len(), 1, "{:?}", additions(&sim));
    assert_eq!(left[0]["quantity"], 12.0);
    rt.block_on(sim.shutdown());
}

#[test]
fn ferry_run_releases_a_removed_delete_policy_mapping_as_apply_does_autotask_units_to_zero() {
    let rt = runtime();
    let sim = start_at(&rt, AT_DATA);
    let sb = at_sandbox();
    let db = usage_db(
        &sb,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 6.0)],
    );
    let mapping = at_mapping("rossi", "Rossi Meccanica S.r.l.", "Sicurezza gestita", &db)
        + "  deletionPolicy: Delete\n";
    let (target, file) = apply_then_sync(&sb, at_target(&sim), mapping, "rossi");
    assert_eq!(units(&sim, 20), 10.0);
    assert_eq!(units(&sim, 21), 6.0);
    std::fs::remove_file(&file).unwrap();
    let plan = sb.ferry(["plan", "-f", target.to_str().unwrap()]).success();
    assert!(
        plan.stdout.contains(
            "- CustomerMapping/rossi (deletionPolicy Delete: its Autotask units will be set to 0)"
        ),
        "{}",
        plan.stdout
    );
    // The daemon's own apply of the files (here its first one, with --once) releases too.
    let run = sb
        .ferry(["run", "--once", "-f", target.to_str().unwrap()])
        .success();
    assert!(
        run.stderr.contains(
            "Released in the PSA (deletionPolicy Delete): CustomerMapping/rossi: intercept-x: units on contract #10 set to 0"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 deleted"), "{}", run.stderr);
    assert_eq!(units(&sim, 20), 0.0);
    assert_eq!(units(&sim, 21), 0.0);
    assert!(mapping_names(&sb).is_empty());
    rt.block_on(sim.shutdown());
}

/// The mapping's `notify`: `ops-hook` (a webhook, Ferry's document) on failure and recovery.
fn ops_hook(receiver: &common::webhook::Receiver) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: ops-hook}}
spec:
  webhook:
    url: {}/psa
    caSecretRef: {{name: hooks, key: ca.pem}}
"#,
        receiver.url
    )
}

fn with_notify(mapping: String) -> String {
    format!("{mapping}  notify: {{onFailure: [ops-hook], onRecovery: [ops-hook]}}\n")
}

#[test]
fn a_failing_usage_sync_is_alerted_once_and_its_recovery_once_while_manual_syncs_alert_nobody() {
    let rt = runtime();
    let sim = start_cw(&rt, CW_DATA);
    let receiver = rt.block_on(common::webhook::start_receiver());
    let mut sb = cw_sandbox();
    sb.write_secret("default", "hooks", "ca.pem", &receiver.ca_pem);
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let docs = |agreement: &str| {
        [
            cw_target(&sim),
            ops_hook(&receiver),
            with_notify(cw_mapping("acme", "ACME01", agreement, &db, false)),
        ]
        .join("---\n")
    };
    let files = sb.write("cw.yaml", &docs("Legacy"));
    let alerts = || -> Vec<Value> {
        receiver
            .at("/psa")
            .iter()
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    };
    let run_once_at = |sb: &mut Sandbox, now: &str| {
        sb.set_env("FERRY_NOW", now);
        sb.ferry(["run", "--once", "-f", files.to_str().unwrap()])
    };

    // Day 1: the agreement is cancelled; the usage sync fails and ops-hook is told.
    let run = run_once_at(&mut sb, "2026-07-30T08:00:00Z");
    assert_eq!(run.code, 1, "{run:#?}");
    let told = alerts();
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(told[0]["event"], "failure");
    assert_eq!(told[0]["kind"], "CustomerMapping");
    assert_eq!(told[0]["name"], "acme");
    assert_eq!(told[0]["sync"], "usage");
    assert_eq!(told[0]["customer"], "acme");
    assert_eq!(told[0]["outcome"], "failed");
    assert!(
        told[0]["error"]
            .as_str()
            .unwrap()
            .contains("agreement `Legacy` (#11) is not active"),
        "{:#}",
        told[0]
    );
    assert!(told[0].get("rows").is_none(), "{:#}", told[0]);
    let history = sb
        .ferry(["history", "customermapping/acme", "-o", "json"])
        .success()
        .json();
    assert_eq!(history[0]["id"], told[0]["runId"], "{history:#}");
    for secret in ["priv-SECRET-456", "pub-KEY-123"] {
        assert!(!receiver.at("/psa")[0].body.contains(secret));
    }

    // Day 2: the usage sync still fails: nobody is told again, and a sync by hand alerts
    // nobody either. The billing push of the month's last day is due and fails too: billing
    // is followed apart from usage, so that is its own first failure.
    assert_eq!(run_once_at(&mut sb, "2026-07-31T08:00:00Z").code, 1);
    assert_eq!(sb.ferry(["run-now", "customermapping/acme"]).code, 1);
    let told = alerts();
    assert_eq!(told.len(), 2, "one alert per change of state: {told:#?}");
    assert_eq!(told[1]["event"], "failure");
    assert_eq!(told[1]["sync"], "billing");
    assert_eq!(told[1]["slot"], "2026-07-31T06:00:00+02:00");

    // Fixed in Git: the next scheduled sync succeeds and ops-hook hears of the recovery.
    std::fs::write(&files, docs("Managed Services")).unwrap();
    run_once_at(&mut sb, "2026-08-01T08:00:00Z").success();
    // The failed billing push of 31 July is tried again and recovers too, on its own.
    let told = alerts();
    assert_eq!(told.len(), 4, "{told:#?}");
    assert_eq!(told[2]["event"], "recovery");
    assert_eq!(told[2]["sync"], "usage");
    assert_eq!(told[2]["slot"], "2026-08-01T00:00:00+00:00");
    assert_eq!(told[2]["pushed"], 2, "both contracts set: {:#}", told[2]);
    assert!(told[2].get("error").is_none());
    assert_eq!(told[3]["event"], "recovery");
    assert_eq!(told[3]["sync"], "billing");
    assert_eq!(told[3]["slot"], "2026-07-31T06:00:00+02:00");

    // Day 4: healthy after healthy, and no onSuccess: nothing to say.
    run_once_at(&mut sb, "2026-08-02T08:00:00Z").success();
    assert_eq!(alerts().len(), 4);
    rt.block_on(sim.shutdown());
}
