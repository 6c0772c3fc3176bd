//! `docs/psa-contract.md` is the contract the PSA simulators are held to: every route it lists
//! is served (and nothing else), every row names its source, and every request Ferry sends in
//! a full round (usage sync, billing, ticket open and close, reports filed as tickets) is a row
//! marked as used by Ferry.

use crate::common;
use crate::psa_common;

use std::collections::BTreeSet;

use ferry::psa::sim::{Api, Faults, SimRequest, autotask, connectwise};
use psa_common::*;

/// One row of the routes table: PSA, method, route, used by Ferry, source.
#[derive(Clone, Debug)]
struct Row {
    psa: String,
    method: String,
    route: String,
    used: bool,
    source: String,
}

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string(common::repo().join("docs/psa-contract.md")).unwrap();
    let routes = text
        .split("\n## Routes")
        .nth(1)
        .expect("docs/psa-contract.md has a Routes section");
    routes
        .lines()
        .filter(|l| l.starts_with("| ConnectWise ") || l.starts_with("| Autotask "))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            assert_eq!(cells.len(), 5, "five cells: {l}");
            Row {
                psa: cells[0].clone(),
                method: cells[1].clone(),
                route: cells[2].clone(),
                used: match cells[3].as_str() {
                    "yes" => true,
                    "sim" => false,
                    other => panic!("Used is `yes` or `sim`, not `{other}`: {l}"),
                },
                source: cells[4].clone(),
            }
        })
        .collect()
}

fn rows_of(psa: &str) -> Vec<Row> {
    table().into_iter().filter(|r| r.psa == psa).collect()
}

fn set(rows: &[(&str, String)]) -> BTreeSet<(String, String)> {
    rows.iter()
        .map(|(m, p)| (m.to_string(), p.clone()))
        .collect()
}

#[test]
fn the_table_lists_exactly_the_routes_each_simulator_serves_each_with_a_source() {
    for (psa, served) in [
        ("ConnectWise", connectwise::routes()),
        ("Autotask", autotask::routes()),
    ] {
        let rows = rows_of(psa);
        let listed: BTreeSet<(String, String)> = rows
            .iter()
            .map(|r| (r.method.clone(), r.route.clone()))
            .collect();
        assert_eq!(listed.len(), rows.len(), "{psa}: a route is listed twice");
        let served = set(&served);
        let missing: Vec<_> = served.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&served).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{psa}: served but not in the table: {missing:?}; in the table but not served: {extra:?}"
        );
        for r in &rows {
            assert!(
                r.source.len() > 4,
                "{psa} {} {}: every row names its source",
                r.method,
                r.route
            );
        }
    }
}

/// A request to the simulator's router for `route` with every `{...}` replaced by `id`.
fn request(method: &str, path: String, headers: Vec<(String, String)>) -> SimRequest {
    SimRequest {
        method: method.to_string(),
        path,
        query: Vec::new(),
        headers,
        body: bytes::Bytes::from_static(b"{}"),
    }
}

fn fill(route: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(id);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether an answer means the router has no such route (as opposed to a refusal of the
/// request's content, or a record not found).
fn unrouted(status: u16, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    status == 405
        || (status == 404
            && (text.contains("No HTTP resource")
                || text.contains("No route")
                || text.contains("The resource")))
}

#[test]
fn every_listed_route_is_routed_and_other_methods_on_those_paths_are_not() {
    let cw_data: connectwise::Data = serde_saphyr::from_str(
        r#"
companyId: mymsp
clientId: "c1"
publicKey: pub
privateKey: priv
companies: [{id: 1, identifier: A, name: A}]
agreements: [{id: 1, name: M, companyId: 1}]
boards: [{id: 1, name: B}]
tickets: [{id: 1, summary: S, companyId: 1}]
"#,
    )
    .unwrap();
    let cw = connectwise::ConnectWise::new(cw_data).unwrap();
    let auth = vec![
        (
            "authorization".to_string(),
            format!("Basic {}", ferry::psa::http::base64(b"mymsp+pub:priv")),
        ),
        ("clientid".to_string(), "c1".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let faults = Faults::default();
    let cw_path = |route: &str| {
        if route.starts_with("/login/") {
            fill(route, "mymsp")
        } else {
            format!("/v2025_1/apis/3.0{}", fill(route, "1"))
        }
    };
    let paths: BTreeSet<String> = connectwise::routes()
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    for (method, route) in connectwise::routes() {
        let r = cw.handle(
            &request(method, cw_path(&route), auth.clone()),
            &faults,
            "http://sim",
        );
        assert!(
            !unrouted(r.status, &r.body),
            "ConnectWise {method} {route}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    for path in &paths {
        for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
            if connectwise::routes()
                .iter()
                .any(|(m, r)| *m == method && r == path)
            {
                continue;
            }
            let r = cw.handle(
                &request(method, cw_path(path), auth.clone()),
                &faults,
                "http://sim",
            );
            assert!(
                unrouted(r.status, &r.body),
                "ConnectWise {method} {path} is not in the table but answered {}",
                r.status
            );
        }
    }

    let at_data: autotask::Data = serde_saphyr::from_str(
        r#"
username: u@example
secret: s
integrationCode: c
companies: [{id: 1, companyName: A}]
"#,
    )
    .unwrap();
    let at = autotask::Autotask::new(at_data).unwrap();
    let auth = vec![
        ("username".to_string(), "u@example".to_string()),
        ("secret".to_string(), "s".to_string()),
        ("apiintegrationcode".to_string(), "c".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let at_path = |route: &str| format!("/zone1/atservicesrest/v1.0{}", fill(route, "1"));
    let routes = autotask::routes();
    for (method, route) in &routes {
        let r = at.handle(
            &request(method, at_path(route), auth.clone()),
            &faults,
            "http://sim",
        );
        assert!(
            !unrouted(r.status, &r.body),
            "Autotask {method} {route}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let paths: BTreeSet<&String> = routes.iter().map(|(_, r)| r).collect();
    for path in paths {
        for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
            if routes.iter().any(|(m, r)| *m == method && r == path) {
                continue;
            }
            let r = at.handle(
                &request(method, at_path(path), auth.clone()),
                &faults,
                "http://sim",
            );
            assert!(
                unrouted(r.status, &r.body),
                "Autotask {method} {path} is not in the table but answered {}",
                r.status
            );
        }
    }
}

/// Whether `path` (as logged, query string included) is `route` (with `{...}` segments).
fn matches(route: &str, prefix: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    let Some(rest) = path
        .to_ascii_lowercase()
        .find(&prefix.to_ascii_lowercase())
        .map(|at| &path[at + prefix.len()..])
    else {
        return false;
    };
    let want: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let got: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| w.starts_with('{') || w.eq_ignore_ascii_case(g))
}

/// Every request in `log` matches a row of `psa` marked used by Ferry.
fn assert_all_used(psa: &str, prefix: &str, log: &[ferry::psa::sim::LoggedRequest]) {
    let rows = rows_of(psa);
    assert!(!log.is_empty());
    for req in log {
        let ok = rows.iter().any(|r| {
            r.method == req.method
                && (matches(&r.route, prefix, &req.path)
                    || (r.route.starts_with("/login/") && matches(&r.route, "", &req.path))
                    || (r.route == "/zoneInformation" && req.path.contains("/zoneInformation")))
        });
        let used = rows.iter().any(|r| {
            r.used
                && r.method == req.method
                && (matches(&r.route, prefix, &req.path)
                    || (r.route.starts_with("/login/") && matches(&r.route, "", &req.path))
                    || (r.route == "/zoneInformation" && req.path.contains("/zoneInformation")))
        });
        assert!(
            ok,
            "{psa}: Ferry sent {} {}, which the table lacks",
            req.method, req.path
        );
        assert!(
            used,
            "{psa}: Ferry sent {} {}, whose row is not marked used",
            req.method, req.path
        );
    }
}

#[test]
fn every_request_of_a_full_round_through_the_binary_is_a_listed_route_marked_used() {
    let rt = runtime();
    let cw = start_cw(
        &rt,
        r#"
companyId: mymsp
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pub-KEY-123
privateKey: priv-SECRET-456
companies: [{id: 250, identifier: ACME01, name: Acme}]
agreements:
  - {id: 10, name: "Managed", companyId: 250}
  - {id: 11, name: "Old", companyId: 250, status: Cancelled, cancelled: true}
products: [{id: 501, identifier: EP-PROT, price: 3}]
boards: [{id: 1, name: Alerts}, {id: 2, name: Reports}]
"#,
    );
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "ep", 3.5)]);
    let mapping = |agreement: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: acme}}
spec:
  customer: acme
  psa: {{target: cw}}
  company: {{identifier: ACME01}}
  contracts: [{{product: ep, agreement: "{agreement}", item: EP-PROT}}]
  usageSync: {{enabled: true, source: {{sql: {{url: "{url}", query: "SELECT customer, product, quantity FROM usage"}}}}}}
  ticketSync: {{enabled: true, board: Alerts}}
"#,
            url = sqlite_url(&db)
        )
    };
    let schedule = format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: weekly, labels: {{ferry.dev/customer: acme}}}}
spec:
  schedule: {{weekly: {{on: [mon], at: "06:00"}}}}
  source: {{sql: {{url: "{url}", query: "SELECT * FROM usage"}}}}
  format: {{csv: {{}}}}
  fileName: "usage_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: cw}}]
"#,
        url = sqlite_url(&db)
    );
    let target = cw_target(&cw, "    reports: {board: Reports, mode: note}\n");
    let files = apply_docs(
        &sb,
        "cw.yaml",
        &[target.clone(), mapping("Old"), schedule.clone()],
    );
    sb.ferry(["run-now", "customermapping/acme"]).code(1);
    std::fs::write(&files, [target, mapping("Managed"), schedule].join("---\n")).unwrap();
    sb.apply(&[&files]);
    sb.ferry(["run-now", "customermapping/acme"]).success();
    sb.ferry(["run-now", "customermapping/acme", "--billing"])
        .success();
    sb.ferry(["run-now", "reportschedule/weekly"]).success();
    assert_all_used("ConnectWise", "/apis/3.0", &cw.requests());
    rt.block_on(cw.shutdown());

    let at = start_at(
        &rt,
        r#"
username: ferry-api@msp.example
secret: at-SECRET-789
integrationCode: INTEGRATION-CODE
companies: [{id: 100, companyName: Rossi}]
contracts:
  - {id: 10, companyID: 100, contractName: "Gestita", startDate: "2026-01-01", endDate: "2027-12-31"}
  - {id: 11, companyID: 100, contractName: "Ore", contractType: 1, startDate: "2026-01-01", endDate: "2027-12-31"}
services: [{id: 20, name: "Intercept X", unitPrice: 5}]
queues: [{id: 8, name: Avvisi}, {id: 9, name: Reports}]
"#,
    );
    let sb = at_sandbox();
    let db = usage_db(&sb, &[("rossi", "ix", 2.2)]);
    let mapping = |contract: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: rossi}}
spec:
  customer: rossi
  psa: {{target: at}}
  company: {{name: Rossi}}
  contracts: [{{product: ix, agreement: "{contract}", item: "Intercept X"}}]
  usageSync: {{enabled: true, source: {{sql: {{url: "{url}", query: "SELECT customer, product, quantity FROM usage"}}}}}}
  ticketSync: {{enabled: true, board: Avvisi}}
"#,
            url = sqlite_url(&db)
        )
    };
    let schedule = format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: weekly, labels: {{ferry.dev/customer: rossi}}}}
spec:
  schedule: {{weekly: {{on: [mon], at: "06:00"}}}}
  source: {{sql: {{url: "{url}", query: "SELECT * FROM usage"}}}}
  format: {{csv: {{}}}}
  fileName: "usage_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: at}}]
"#,
        url = sqlite_url(&db)
    );
    let target = at_target(&at, "    reports: {board: Reports}\n");
    let files = apply_docs(
        &sb,
        "at.yaml",
        &[target.clone(), mapping("Ore"), schedule.clone()],
    );
    sb.ferry(["run-now", "customermapping/rossi"]).code(1);
    std::fs::write(&files, [target, mapping("Gestita"), schedule].join("---\n")).unwrap();
    sb.apply(&[&files]);
    sb.ferry(["run-now", "customermapping/rossi"]).success();
    sb.ferry(["run-now", "reportschedule/weekly"]).success();
    assert_all_used("Autotask", "/v1.0", &at.requests());
    rt.block_on(at.shutdown());
}
