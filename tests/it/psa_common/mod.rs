//! Helpers shared by the PSA suites: simulators on a runtime of their own, a SQLite usage
//! database, and the DeliveryTarget documents that point at a simulator.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::psa::sim::{SimServer, autotask, connectwise};
use serde_json::Value;

use crate::common::Sandbox;

/// A runtime whose worker threads serve the simulator while the test runs ferry.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A ConnectWise simulator on 127.0.0.1 with `data` (YAML).
pub fn start_cw(rt: &tokio::runtime::Runtime, data: &str) -> SimServer {
    let data: connectwise::Data = serde_saphyr::from_str(data).expect("sim data");
    let api = connectwise::ConnectWise::new(data).expect("valid sim data");
    rt.block_on(SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(api),
    ))
    .expect("sim starts")
}

/// An Autotask simulator on 127.0.0.1 with `data` (YAML).
pub fn start_at(rt: &tokio::runtime::Runtime, data: &str) -> SimServer {
    let data: autotask::Data = serde_saphyr::from_str(data).expect("sim data");
    let api = autotask::Autotask::new(data).expect("valid sim data");
    rt.block_on(SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(api),
    ))
    .expect("sim starts")
}

/// A SQLite usage database with `(customer, product, quantity)` rows.
pub fn usage_db(sb: &Sandbox, rows: &[(&str, &str, f64)]) -> PathBuf {
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
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(&path)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    path
}

/// The ConnectWise DeliveryTarget `cw` for `sim`, with `extra` YAML lines under `connectwise:`
/// (indented by four spaces).
pub fn cw_target(sim: &SimServer, extra: &str) -> String {
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
{extra}"#,
        sim.url()
    )
}

/// The Autotask DeliveryTarget `at` for `sim`, with `extra` YAML lines under `autotask:`.
pub fn at_target(sim: &SimServer, extra: &str) -> String {
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
{extra}"#,
        sim.url()
    )
}

/// A sandbox holding the ConnectWise keys of the simulators' data.
pub fn cw_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_secret("default", "cw", "public", "pub-KEY-123");
    sb.write_secret("default", "cw", "private", "priv-SECRET-456");
    sb
}

/// A sandbox holding the Autotask secret and integration code of the simulators' data.
pub fn at_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_secret("default", "at", "secret", "at-SECRET-789");
    sb.write_secret("default", "at", "code", "INTEGRATION-CODE");
    sb
}

/// Writes `docs` as one multi-document file `files/<name>`, applies it, and returns its path.
pub fn apply_docs(sb: &Sandbox, name: &str, docs: &[String]) -> PathBuf {
    let files = sb.write(name, &docs.join("---\n"));
    sb.apply(&[&files]);
    files
}

/// `status` of `customermapping/NAME`.
pub fn mapping_status(sb: &Sandbox, name: &str) -> Value {
    let out = sb
        .ferry(["get", &format!("customermapping/{name}"), "-o", "json"])
        .success();
    out.json()[0]["status"].clone()
}

/// A list of the simulator's state, e.g. `tickets`.
pub fn state_list(sim: &SimServer, key: &str) -> Vec<Value> {
    sim.state()[key].as_array().cloned().unwrap_or_default()
}

/// The sandbox's usage database path as a `sqlite:` URL.
pub fn sqlite_url(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}
