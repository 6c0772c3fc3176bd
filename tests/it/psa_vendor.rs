//! The PSA rules Ferry read in the vendors' own material (`docs/psa-contract.md`), through the
//! `ferry` binary against simulators that enforce them: Autotask pages followed by POST past
//! 500 records, ConnectWise lists past 1,000, a board whose closed status is not `>Closed`,
//! company statuses judged by `inactiveFlag`, whole Autotask units under each rounding rule,
//! and the units rows each effective-date rule leaves.

use crate::common;
use crate::psa_common;

use common::Sandbox;
use ferry::psa::sim::SimServer;
use psa_common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// ConnectWise
// ---------------------------------------------------------------------------------------------

/// ConnectWise data with `extra` YAML appended (boards, statuses, more agreements).
fn cw_data(companies: &str, boards: &str, agreements: &str) -> String {
    format!(
        r#"
companyId: mymsp
codebase: "v2025_1/"
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pub-KEY-123
privateKey: priv-SECRET-456
{companies}
agreements:
  - {{id: 10, name: "Managed Services", companyId: 250, type: "Managed Services", status: Active}}
  - {{id: 11, name: "Legacy", companyId: 250, type: "Managed Services", status: Cancelled, cancelled: true}}
{agreements}
products:
  - {{id: 501, identifier: EP-PROT, description: "Endpoint protection", price: 4.5}}
{boards}
"#
    )
}

const CW_COMPANIES: &str = r#"companies:
  - {id: 250, identifier: ACME01, name: "Acme Corp", status: Active}"#;

fn cw_mapping(agreement: &str, db: &std::path::Path, ticket_sync: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: acme}}
spec:
  customer: acme
  psa: {{target: cw}}
  company: {{identifier: ACME01}}
  contracts:
    - {{product: endpoint-protection, agreement: "{agreement}", item: EP-PROT}}
  usageSync:
    enabled: true
    source:
      sql:
        url: "{url}"
        query: "SELECT customer, product, quantity FROM usage"
  ticketSync: {ticket_sync}
"#,
        url = sqlite_url(db)
    )
}

fn active_additions(sim: &SimServer) -> Vec<Value> {
    state_list(sim, "additions")
        .into_iter()
        .filter(|a| a["cancelledDate"].is_null())
        .collect()
}

#[test]
fn a_ticket_is_closed_with_the_board_s_own_closed_status_when_none_is_named_closed() {
    let rt = runtime();
    let boards = r#"boards:
  - id: 1
    name: Alerts
    statuses:
      - {id: 11, name: "Nuovo", defaultFlag: true, sortOrder: 0}
      - {id: 12, name: "In lavorazione", sortOrder: 1}
      - {id: 13, name: "Risolto", closedStatus: true, sortOrder: 2}"#;
    let sim = start_cw(&rt, &cw_data(CW_COMPANIES, boards, ""));
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let files = apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim, ""),
            cw_mapping("Legacy", &db, "{enabled: true, board: Alerts}"),
        ],
    );
    sb.ferry(["run-now", "customermapping/acme"]).code(1);
    let tickets = state_list(&sim, "tickets");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(
        tickets[0]["status"], "Nuovo",
        "opened in the board's default status"
    );

    std::fs::write(
        &files,
        [
            cw_target(&sim, ""),
            cw_mapping("Managed Services", &db, "{enabled: true, board: Alerts}"),
        ]
        .join("---\n"),
    )
    .unwrap();
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(run.stdout.contains("closed ticket"), "{}", run.stdout);
    let tickets = state_list(&sim, "tickets");
    assert_eq!(tickets[0]["status"], "Risolto", "{tickets:?}");
    assert_eq!(tickets[0]["closed"], true);
    assert_eq!(
        mapping_status(&sb, "acme")["openTickets"],
        serde_json::json!([])
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn ticket_sync_closed_status_chooses_among_several_closed_statuses() {
    let rt = runtime();
    let boards = r#"boards:
  - id: 1
    name: Alerts
    statuses:
      - {id: 11, name: "Open", defaultFlag: true}
      - {id: 13, name: "Resolved", closedStatus: true, sortOrder: 1}
      - {id: 14, name: "Closed - No Action", closedStatus: true, sortOrder: 2}"#;
    let sim = start_cw(&rt, &cw_data(CW_COMPANIES, boards, ""));
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let sync = r#"{enabled: true, board: Alerts, closedStatus: "Closed - No Action"}"#;
    let files = apply_docs(
        &sb,
        "cw.yaml",
        &[cw_target(&sim, ""), cw_mapping("Legacy", &db, sync)],
    );
    sb.ferry(["run-now", "customermapping/acme"]).code(1);
    std::fs::write(
        &files,
        [
            cw_target(&sim, ""),
            cw_mapping("Managed Services", &db, sync),
        ]
        .join("---\n"),
    )
    .unwrap();
    sb.apply(&[&files]);
    sb.ferry(["run-now", "customermapping/acme"]).success();
    let tickets = state_list(&sim, "tickets");
    assert_eq!(tickets[0]["status"], "Closed - No Action", "{tickets:?}");

    // A closedStatus the board lacks is an error naming the board's closed statuses.
    let wrong = r#"{enabled: true, board: Alerts, closedStatus: "Done"}"#;
    std::fs::write(
        &files,
        [cw_target(&sim, ""), cw_mapping("Legacy", &db, wrong)].join("---\n"),
    )
    .unwrap();
    sb.apply(&[&files]);
    sb.ferry(["run-now", "customermapping/acme"]).code(1);
    std::fs::write(
        &files,
        [
            cw_target(&sim, ""),
            cw_mapping("Managed Services", &db, wrong),
        ]
        .join("---\n"),
    )
    .unwrap();
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "customermapping/acme"]).success();
    assert!(
        run.stdout.contains("no closed status named \"Done\"")
            && run.stdout.contains("Resolved, Closed - No Action"),
        "{}",
        run.stdout
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn a_company_is_judged_active_by_its_status_s_inactive_flag_not_by_the_name() {
    let rt = runtime();
    let companies = r#"companyStatuses:
  - {id: 1, name: "Active - Managed", defaultFlag: true}
  - {id: 2, name: "Active (do not bill)", inactiveFlag: true}
companies:
  - {id: 250, identifier: ACME01, name: "Acme Corp", status: "Active - Managed"}
  - {id: 251, identifier: OLD01, name: "Old Corp", status: "Active (do not bill)"}"#;
    let sim = start_cw(&rt, &cw_data(companies, "", ""));
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let mut old = cw_mapping("Managed Services", &db, "{enabled: false}");
    old = old
        .replace("name: acme}", "name: old}")
        .replace("customer: acme", "customer: old")
        .replace("identifier: ACME01", "identifier: OLD01");
    apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim, ""),
            cw_mapping("Managed Services", &db, "{enabled: false}"),
            old,
        ],
    );
    sb.ferry(["run-now", "customermapping/acme"]).success();
    assert_eq!(active_additions(&sim)[0]["quantity"], 3);
    let run = sb.ferry(["run-now", "customermapping/old"]).code(1);
    assert!(
        run.stderr.contains(
            "company `OLD01` (#251) is not active in ConnectWise: status Active (do not bill)"
        ),
        "{}",
        run.stderr
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn connectwise_lists_past_1000_records_are_followed_through_the_link_header() {
    let rt = runtime();
    let many: Vec<String> = (0..1203)
        .map(|i| {
            format!(
                "  - {{id: {}, name: \"Old agreement {i}\", companyId: 250, status: Expired}}",
                20_000 + i
            )
        })
        .collect();
    let sim = start_cw(&rt, &cw_data(CW_COMPANIES, "", &many.join("\n")));
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 7.5)]);
    apply_docs(
        &sb,
        "cw.yaml",
        &[
            cw_target(&sim, ""),
            cw_mapping("Managed Services", &db, "{enabled: false}"),
        ],
    );
    sb.ferry(["run-now", "customermapping/acme"]).success();
    let adds = active_additions(&sim);
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0]["agreementId"], 10);
    assert_eq!(adds[0]["quantity"], 7.5, "ConnectWise keeps decimals");
    let pages = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/finance/agreements?") && r.path.contains("page=2"))
        .count();
    assert_eq!(pages, 1, "1,205 agreements are two pages of 1,000");
    rt.block_on(sim.shutdown());
}

// ---------------------------------------------------------------------------------------------
// Autotask
// ---------------------------------------------------------------------------------------------

fn at_data(extra_contracts: &str) -> String {
    format!(
        r#"
username: ferry-api@msp.example
secret: at-SECRET-789
integrationCode: INTEGRATION-CODE
companies:
  - {{id: 100, companyName: "Rossi Meccanica S.r.l.", companyNumber: "R1", companyType: 1, isActive: true}}
contracts:
  - {{id: 10, companyID: 100, contractName: "Sicurezza gestita", contractType: 7, status: 1, startDate: "2026-01-01", endDate: "2027-12-31"}}
{extra_contracts}
services:
  - {{id: 20, name: "Sophos Intercept X Advanced", unitPrice: 5.0, unitCost: 2.0, periodType: "m"}}
  - {{id: 21, name: "Sophos Central Email Advanced", unitPrice: 3.0, unitCost: 1.0, periodType: "m"}}
contractServices:
  - {{id: 30, contractID: 10, serviceID: 20, unitPrice: 5.0}}
  - {{id: 31, contractID: 10, serviceID: 21, unitPrice: 3.0}}
contractServiceUnits:
  - {{id: 40, contractID: 10, serviceID: 20, startDate: "2026-07-01", endDate: "2026-07-31", units: 4, price: 5.0}}
  - {{id: 41, contractID: 10, serviceID: 20, startDate: "2026-08-01", endDate: "2026-08-31", units: 4, price: 5.0}}
  - {{id: 42, contractID: 10, serviceID: 21, startDate: "2026-07-01", endDate: "2026-07-31", units: 2, price: 3.0}}
  - {{id: 43, contractID: 10, serviceID: 21, startDate: "2026-08-01", endDate: "2026-08-31", units: 2, price: 3.0}}
queues:
  - {{id: 8, name: "Sophos - Avvisi"}}
"#
    )
}

fn at_mapping(db: &std::path::Path, extra: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: rossi}}
spec:
  customer: rossi
  psa: {{target: at}}
  company: {{name: "Rossi Meccanica S.r.l."}}
  contracts:
    - {{product: intercept-x, agreement: "Sicurezza gestita", item: "Sophos Intercept X Advanced"}}
    - {{product: email, agreement: "Sicurezza gestita", item: "Sophos Central Email Advanced"}}
  usageSync:
    enabled: true
    source:
      sql:
        url: "{url}"
        query: "SELECT customer, product, quantity FROM usage"
{extra}"#,
        url = sqlite_url(db)
    )
}

/// `(startDate, endDate, units)` of service `service`'s rows on contract 10, by start.
fn rows(sim: &SimServer, service: i64) -> Vec<(String, String, i64)> {
    let mut out: Vec<(String, String, i64)> = state_list(sim, "contractServiceUnits")
        .iter()
        .filter(|u| u["contractID"] == 10 && u["serviceID"] == service)
        .map(|u| {
            (
                u["startDate"].as_str().unwrap().to_string(),
                u["endDate"].as_str().unwrap().to_string(),
                u["units"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn row(start: &str, end: &str, units: i64) -> (String, String, i64) {
    (start.to_string(), end.to_string(), units)
}

fn adjustments(sim: &SimServer) -> Vec<Value> {
    state_list(sim, "contractServiceAdjustments")
}

#[test]
fn autotask_queries_past_500_records_follow_the_next_page_by_post() {
    let rt = runtime();
    let many: Vec<String> = (0..620)
        .map(|i| {
            format!(
                "  - {{id: {}, companyID: 100, contractName: \"Progetto {i}\", contractType: 1, status: 0, startDate: \"2025-01-01\", endDate: \"2025-12-31\"}}",
                1000 + i
            )
        })
        .collect();
    let sim = start_at(&rt, &at_data(&many.join("\n")));
    let sb = at_sandbox();
    let db = usage_db(
        &sb,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
    );
    apply_docs(&sb, "at.yaml", &[at_target(&sim, ""), at_mapping(&db, "")]);
    let run = sb.ferry(["run-now", "customermapping/rossi"]).success();
    assert!(
        run.stdout.contains("intercept-x: 4 -> 10 (adjusted"),
        "{}",
        run.stdout
    );
    let log = sim.requests();
    let next: Vec<_> = log
        .iter()
        .filter(|r| r.path.contains("/query/next"))
        .collect();
    assert_eq!(
        next.len(),
        1,
        "621 contracts are two pages of 500: {next:?}"
    );
    assert_eq!(next[0].method, "POST");
    assert_eq!(next[0].status, 200);
    rt.block_on(sim.shutdown());
}

/// Applies the Autotask mapping with `extra`, syncs it once and returns the run's stdout.
fn sync_rossi(sb: &Sandbox, sim: &SimServer, usage: &[(&str, &str, f64)], extra: &str) -> String {
    let db = usage_db(sb, usage);
    apply_docs(sb, "at.yaml", &[at_target(sim, ""), at_mapping(&db, extra)]);
    sb.ferry(["run-now", "customermapping/rossi"])
        .success()
        .stdout
}

#[test]
fn fractional_usage_reaches_autotask_as_whole_units_under_each_rounding_rule() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();

    // Default `up`: a customer is never under-billed silently.
    let out = sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.2), ("rossi", "email", 6.5)],
        "",
    );
    assert!(out.contains("intercept-x: 4 -> 11 (adjusted"), "{out}");
    assert!(out.contains("10.2 rounded up"), "{out}");
    assert_eq!(rows(&sim, 20)[0].2, 11);
    assert_eq!(rows(&sim, 21)[0].2, 7);

    let out = sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.2), ("rossi", "email", 6.5)],
        "  quantityRounding: down\n",
    );
    assert!(out.contains("intercept-x: 11 -> 10 (adjusted"), "{out}");
    assert_eq!(rows(&sim, 20)[0].2, 10);
    assert_eq!(rows(&sim, 21)[0].2, 6);

    let out = sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.7), ("rossi", "email", 6.5)],
        "  quantityRounding: nearest\n",
    );
    assert!(out.contains("intercept-x: 10 -> 11 (adjusted"), "{out}");
    assert_eq!(rows(&sim, 20)[0].2, 11);
    assert_eq!(rows(&sim, 21)[0].2, 7, "halves round away from zero");
    for a in adjustments(&sim) {
        assert!(a["unitChange"].is_i64(), "whole unit changes only: {a}");
    }
    rt.block_on(sim.shutdown());
}

#[test]
fn the_rounding_rule_of_the_autotask_target_applies_unless_the_mapping_has_its_own() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();
    let db = usage_db(
        &sb,
        &[("rossi", "intercept-x", 9.9), ("rossi", "email", 2.0)],
    );
    apply_docs(
        &sb,
        "at.yaml",
        &[
            at_target(&sim, "    quantityRounding: down\n"),
            at_mapping(&db, ""),
        ],
    );
    sb.ferry(["run-now", "customermapping/rossi"]).success();
    assert_eq!(rows(&sim, 20)[0].2, 9);
    rt.block_on(sim.shutdown());
}

#[test]
fn period_start_dates_the_adjustment_at_the_billing_period_s_first_day_leaving_one_row() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();
    sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
        "  effectiveDate: periodStart\n",
    );
    assert_eq!(
        rows(&sim, 20),
        [
            row("2026-07-01", "2026-07-31", 10),
            row("2026-08-01", "2026-08-31", 10)
        ]
    );
    let adj = adjustments(&sim);
    assert_eq!(adj.len(), 1, "{adj:?}");
    assert_eq!(adj[0]["effectiveDate"], "2026-07-01");
    // The next daily sync finds 10 and changes nothing.
    sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
        "  effectiveDate: periodStart\n",
    );
    assert_eq!(adjustments(&sim).len(), 1);
    rt.block_on(sim.shutdown());
}

#[test]
fn the_default_effective_date_is_the_period_start() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();
    sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 6.0), ("rossi", "email", 2.0)],
        "",
    );
    assert_eq!(adjustments(&sim)[0]["effectiveDate"], "2026-07-01");
    assert_eq!(rows(&sim, 20).len(), 2, "no split row");
    rt.block_on(sim.shutdown());
}

#[test]
fn next_period_leaves_the_current_period_alone_and_changes_the_next() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();
    let out = sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
        "  effectiveDate: nextPeriod\n",
    );
    assert!(out.contains("intercept-x: 4 -> 10 (adjusted"), "{out}");
    assert_eq!(
        rows(&sim, 20),
        [
            row("2026-07-01", "2026-07-31", 4),
            row("2026-08-01", "2026-08-31", 10)
        ]
    );
    assert_eq!(adjustments(&sim)[0]["effectiveDate"], "2026-08-01");
    let out = sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
        "  effectiveDate: nextPeriod\n",
    );
    assert!(out.contains("intercept-x: 10 -> 10 (unchanged"), "{out}");
    assert_eq!(adjustments(&sim).len(), 1);
    rt.block_on(sim.shutdown());
}

#[test]
fn now_splits_the_period_at_the_slot_s_day_into_two_rows() {
    let rt = runtime();
    let sim = start_at(&rt, &at_data(""));
    let sb = at_sandbox();
    sync_rossi(
        &sb,
        &sim,
        &[("rossi", "intercept-x", 10.0), ("rossi", "email", 2.0)],
        "  effectiveDate: now\n",
    );
    assert_eq!(
        rows(&sim, 20),
        [
            row("2026-07-01", "2026-07-29", 4),
            row("2026-07-30", "2026-07-31", 10),
            row("2026-08-01", "2026-08-31", 10)
        ]
    );
    assert_eq!(adjustments(&sim)[0]["effectiveDate"], "2026-07-30");
    rt.block_on(sim.shutdown());
}

#[test]
fn rounding_and_effective_dates_are_refused_on_a_connectwise_mapping() {
    let rt = runtime();
    let sim = start_cw(&rt, &cw_data(CW_COMPANIES, "", ""));
    let sb = cw_sandbox();
    let db = usage_db(&sb, &[("acme", "endpoint-protection", 3.0)]);
    let mapping = cw_mapping("Managed Services", &db, "{enabled: false}")
        + "  quantityRounding: up\n  effectiveDate: now\n";
    let files = sb.write("cw.yaml", &[cw_target(&sim, ""), mapping].join("---\n"));
    let out = sb
        .ferry(["validate", "-f", files.to_str().unwrap()])
        .failure();
    for field in ["spec.quantityRounding", "spec.effectiveDate"] {
        assert!(
            out.stderr.contains(&format!(
                "CustomerMapping/acme: {field}: applies to Autotask units only"
            )),
            "{}",
            out.stderr
        );
    }
    rt.block_on(sim.shutdown());
}
