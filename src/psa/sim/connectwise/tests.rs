//! Unit tests of the ConnectWise simulator: each route, each refusal and the conditions
//! language, driven through `Api::handle` as the server drives it.

use serde_json::{Value, json};

use super::super::api::{Faults, SimRequest, SimResponse};
use super::conditions::{Op, Tok, glob, tokenize};
use super::data::Data;
use super::fields::id_of;
use super::render::LAST_UPDATED;
use super::responses::encode;

use super::*;

use crate::psa::sim::split_query;

const DATA: &str = r#"
companyId: mymsp
codebase: "v2025_1/"
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pubkey
privateKey: privkey
companies:
  - {id: 250, identifier: ACME01, name: "Acme Corp", status: Active}
  - {id: 251, identifier: GLOBEX, name: "Globex", status: Inactive}
  - {id: 252, identifier: INITECH, name: "Initech", status: Active, deleted: true}
agreements:
  - {id: 10, name: "Managed Services", companyId: 250, type: "Managed Services", status: Active, startDate: "2026-01-01"}
  - {id: 11, name: "Old", companyId: 250, type: "Block Time", status: Cancelled, cancelled: true}
  - {id: 12, name: "Globex MSA", companyId: 251, status: Active, cancelled: true}
products:
  - {id: 501, identifier: EP-PROT, description: "Endpoint protection", price: 4.5}
  - {id: 502, identifier: BACKUP, description: "Backup", price: 10}
additions:
  - {id: 900, agreementId: 10, productIdentifier: EP-PROT, quantity: 12, effectiveDate: "2026-01-01", cancelledDate: null, billCustomer: Billable, description: ""}
  - {id: 901, agreementId: 10, productIdentifier: BACKUP, quantity: 3, effectiveDate: "2025-06-01", cancelledDate: "2025-12-31", billCustomer: Billable}
boards:
  - {id: 1, name: "Alerts"}
  - {id: 2, name: "Help Desk"}
tickets:
  - {id: 7000, summary: "Backup failed", companyId: 250, board: "Alerts", status: "New", closed: false, initialDescription: ""}
"#;

const CLIENT_ID: &str = "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43";
const BASE: &str = "http://127.0.0.1:18080";
const API: &str = "/v2025_1/apis/3.0";

fn sim_from(yaml: &str) -> ConnectWise {
    let data: Data = serde_saphyr::from_str(yaml).expect("the data parses");
    ConnectWise::new(data).expect("the data is valid")
}

fn sim() -> ConnectWise {
    sim_from(DATA)
}

fn base64(input: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(&format!("{user}:{password}")))
}

fn request(method: &str, path_and_query: &str, headers: &[(&str, &str)], body: &str) -> SimRequest {
    let (path, query) = split_query(path_and_query);
    SimRequest {
        method: method.into(),
        path,
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect(),
        body: bytes::Bytes::from(body.to_string()),
    }
}

/// An authenticated request to `{API}{path}`.
fn call(sim: &ConnectWise, method: &str, path: &str, body: &str) -> SimResponse {
    call_with(sim, method, path, &[], body)
}

fn call_with(
    sim: &ConnectWise,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> SimResponse {
    let authorization = auth("mymsp+pubkey", "privkey");
    let mut headers = vec![
        ("Authorization", authorization.as_str()),
        ("clientId", CLIENT_ID),
    ];
    headers.extend_from_slice(extra);
    let req = request(method, &format!("{API}{path}"), &headers, body);
    sim.handle(&req, &Faults::default(), BASE)
}

fn get(sim: &ConnectWise, path: &str) -> SimResponse {
    call(sim, "GET", path, "")
}

fn body(r: &SimResponse) -> Value {
    serde_json::from_slice(&r.body).expect("the response is JSON")
}

fn header<'a>(r: &'a SimResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn ids(r: &SimResponse) -> Vec<i64> {
    body(r)
        .as_array()
        .expect("a list")
        .iter()
        .map(id_of)
        .collect()
}

/// Ids of the companies matching `conditions` (URL-encoded by the test).
fn company_ids(sim: &ConnectWise, conditions: &str) -> Vec<i64> {
    let r = get(
        sim,
        &format!("/company/companies?conditions={}", encode(conditions, b"")),
    );
    assert_eq!(r.status, 200, "{conditions}: {}", body(&r));
    ids(&r)
}

fn bad_conditions(sim: &ConnectWise, path: &str, conditions: &str) -> Value {
    let r = get(
        sim,
        &format!("{path}?conditions={}", encode(conditions, b"")),
    );
    assert_eq!(r.status, 400, "{conditions} should be refused");
    let b = body(&r);
    assert_eq!(b["code"], "InvalidObject");
    assert_eq!(b["errors"][0]["field"], "conditions");
    b
}

#[test]
fn discovery_answers_the_codebase_without_credentials() {
    let sim = sim();
    let r = sim.handle(
        &request("GET", "/login/companyinfo/MyMSP", &[], ""),
        &Faults::default(),
        BASE,
    );
    assert_eq!(r.status, 200);
    let b = body(&r);
    assert_eq!(b["Codebase"], "v2025_1/");
    assert_eq!(b["CompanyID"], "mymsp");
    assert_eq!(b["IsCloud"], false);
    assert_eq!(b["VersionCode"], "v2025.1");
    let r = sim.handle(
        &request("GET", "/login/companyinfo/other", &[], ""),
        &Faults::default(),
        BASE,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn good_credentials_and_client_id_are_accepted_on_both_codebases() {
    let sim = sim();
    assert_eq!(get(&sim, "/company/companies").status, 200);
    let authorization = auth("mymsp+pubkey", "privkey");
    let headers = [
        ("authorization", authorization.as_str()),
        ("clientid", CLIENT_ID),
    ];
    for prefix in ["/v4_6_release", "/V2025_1"] {
        let req = request(
            "GET",
            &format!("{prefix}/apis/3.0/company/companies"),
            &headers,
            "",
        );
        assert_eq!(
            sim.handle(&req, &Faults::default(), BASE).status,
            200,
            "{prefix}"
        );
    }
    let req = request("GET", "/v2019_3/apis/3.0/company/companies", &headers, "");
    let r = sim.handle(&req, &Faults::default(), BASE);
    assert_eq!(r.status, 404);
    assert_eq!(body(&r)["code"], "NotFound");
}

#[test]
fn missing_or_wrong_credentials_are_refused_with_401_user_not_authenticated() {
    let sim = sim();
    let wrong = auth("mymsp+pubkey", "nope");
    let other_company = auth("othermsp+pubkey", "privkey");
    for headers in [
        vec![("clientid", CLIENT_ID)],
        vec![("authorization", wrong.as_str()), ("clientid", CLIENT_ID)],
        vec![
            ("authorization", other_company.as_str()),
            ("clientid", CLIENT_ID),
        ],
        vec![("authorization", "Basic !!!"), ("clientid", CLIENT_ID)],
        vec![("authorization", "Bearer abc"), ("clientid", CLIENT_ID)],
    ] {
        let req = request("GET", &format!("{API}/company/companies"), &headers, "");
        let r = sim.handle(&req, &Faults::default(), BASE);
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(
            body(&r),
            json!({"code": "ConnectWiseApi", "message": "UserNotAuthenticated"})
        );
    }
}

#[test]
fn bad_credentials_on_a_cloud_site_answer_404() {
    let sim = sim_from(&DATA.replace("privateKey: privkey", "privateKey: privkey\ncloud: true"));
    let wrong = auth("mymsp+pubkey", "nope");
    let req = request(
        "GET",
        &format!("{API}/company/companies"),
        &[("authorization", &wrong), ("clientid", CLIENT_ID)],
        "",
    );
    let r = sim.handle(&req, &Faults::default(), BASE);
    assert_eq!(r.status, 404);
    assert_eq!(body(&r)["message"], "UserNotAuthenticated");
}

#[test]
fn the_client_id_header_is_required_and_must_match() {
    let sim = sim();
    let authorization = auth("mymsp+pubkey", "privkey");
    let req = request(
        "GET",
        &format!("{API}/company/companies"),
        &[("authorization", &authorization)],
        "",
    );
    let r = sim.handle(&req, &Faults::default(), BASE);
    assert_eq!(r.status, 401);
    assert_eq!(
        body(&r),
        json!({"code": "Unauthorized", "message": "ClientId header is required"})
    );
    let req = request(
        "GET",
        &format!("{API}/company/companies"),
        &[
            ("authorization", &authorization),
            ("clientid", "not-the-id"),
        ],
        "",
    );
    assert_eq!(sim.handle(&req, &Faults::default(), BASE).status, 401);
}

#[test]
fn expired_keys_are_refused_like_bad_credentials() {
    let sim = sim();
    let authorization = auth("mymsp+pubkey", "privkey");
    let req = request(
        "GET",
        &format!("{API}/company/companies"),
        &[("authorization", &authorization), ("clientid", CLIENT_ID)],
        "",
    );
    let expired = Faults {
        keys_expired: true,
        ..Faults::default()
    };
    let r = sim.handle(&req, &expired, BASE);
    assert_eq!(r.status, 401);
    assert_eq!(body(&r)["message"], "UserNotAuthenticated");
    assert_eq!(sim.handle(&req, &Faults::default(), BASE).status, 200);
}

#[test]
fn conditions_match_quoted_strings_case_insensitively() {
    let sim = sim();
    assert_eq!(company_ids(&sim, r#"identifier="ACME01""#), [250]);
    assert_eq!(company_ids(&sim, "identifier='acme01'"), [250]);
    assert_eq!(company_ids(&sim, r#"name != "Acme Corp""#), [251, 252]);
    assert_eq!(
        company_ids(&sim, r#"name="Acme \"Corp\"""#),
        Vec::<i64>::new()
    );
}

#[test]
fn like_takes_wildcards_but_equals_does_not() {
    let sim = sim();
    assert_eq!(company_ids(&sim, r#"name like "*corp""#), [250]);
    assert_eq!(company_ids(&sim, r#"name like "G*x""#), [251]);
    assert_eq!(company_ids(&sim, r#"name not like "a*""#), [251, 252]);
    assert_eq!(company_ids(&sim, r#"name = "*corp""#), Vec::<i64>::new());
    assert_eq!(company_ids(&sim, r#"name contains "TECH""#), [252]);
    assert_eq!(
        company_ids(&sim, r#"name not contains "e""#),
        Vec::<i64>::new()
    );
}

#[test]
fn in_lists_and_or_and_parentheses_combine() {
    let sim = sim();
    assert_eq!(company_ids(&sim, "id in (250, 252)"), [250, 252]);
    assert_eq!(company_ids(&sim, "id not in (250)"), [251, 252]);
    assert_eq!(
        company_ids(&sim, r#"status/id IN (1,2) AND deletedFlag = False"#),
        [250, 251]
    );
    assert_eq!(
        company_ids(
            &sim,
            r#"(identifier="GLOBEX" or identifier="INITECH") and status/name="Active""#
        ),
        [252]
    );
    assert_eq!(
        company_ids(
            &sim,
            r#"identifier="GLOBEX" or identifier="INITECH" and deletedFlag=true"#
        ),
        [251, 252]
    );
    assert_eq!(company_ids(&sim, "id >= 251 and id < 252"), [251]);
}

#[test]
fn null_references_and_dates_filter_additions() {
    let sim = sim();
    let list = |c: &str| {
        let r = get(
            &sim,
            &format!(
                "/finance/agreements/10/additions?conditions={}",
                encode(c, b"")
            ),
        );
        assert_eq!(r.status, 200, "{c}: {}", body(&r));
        ids(&r)
    };
    assert_eq!(
        list(r#"product/identifier="EP-PROT" and cancelledDate=null"#),
        [900]
    );
    assert_eq!(list("cancelledDate != null"), [901]);
    assert_eq!(list("cancelledDate = NULL or quantity > 10"), [900]);
    assert_eq!(list("effectiveDate < [2026-01-01T00:00:00Z]"), [901]);
    assert_eq!(list("effectiveDate >= [2026-01-01T00:00:00Z]"), [900]);
    assert_eq!(list("effectiveDate = [2026-01-01]"), [900]);
    assert_eq!(list("product/id = 502"), [901]);
    assert_eq!(list("quantity = 3.0"), [901]);
    let r = get(
        &sim,
        &format!(
            "/finance/agreements?conditions={}",
            encode(
                r#"company/id=250 and agreementStatus="Active" and type/name="Managed Services""#,
                b""
            )
        ),
    );
    assert_eq!(ids(&r), [10]);
}

#[test]
fn malformed_conditions_are_refused_with_400_invalid_object() {
    let sim = sim();
    let path = "/company/companies";
    for c in [
        r#"identifier="ACME01"#,
        "identifier=ACME01",
        r#"identifier = "a" and"#,
        r#"(identifier = "a""#,
        r#"identifier == "a""#,
        "id in 250",
        "id in ()",
        r#"identifier like 5 and"#,
        "id = 250 id = 251",
        "_info/lastUpdated > [yesterday]",
        "identifier ! \"a\"",
        r#"nosuchfield = "a""#,
        r#"status = "Active""#,
        r#"deletedFlag > true"#,
        r#"id like "2*""#,
        r#"id < null"#,
        r#"_info/lastUpdated > "2026-01-01""#,
        r#"deletedFlag = "yes""#,
        "id = 12abc",
    ] {
        bad_conditions(&sim, path, c);
    }
    let b = bad_conditions(&sim, path, r#"nosuchfield = "a""#);
    assert!(
        b["message"].as_str().unwrap().contains("nosuchfield"),
        "{b}"
    );
    let b = bad_conditions(
        &sim,
        "/finance/agreements/10/additions",
        r#"company/id = 250"#,
    );
    assert_eq!(b["errors"][0]["resource"], "agreementAddition");
}

#[test]
fn pages_carry_next_and_last_links_until_the_last_page() {
    let mut companies = String::from("companies:\n");
    for i in 0..30 {
        companies.push_str(&format!(
            "  - {{id: {}, identifier: C{i:02}, name: \"Company {i}\"}}\n",
            100 + i
        ));
    }
    let head = DATA.split("companies:").next().unwrap();
    let sim = sim_from(&format!("{head}{companies}"));
    let conditions = encode(r#"name like "Company*""#, b"");
    let r = get(
        &sim,
        &format!("/company/companies?conditions={conditions}&pageSize=10"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r), (100..110).collect::<Vec<_>>());
    let link = header(&r, "link").expect("a Link header");
    assert_eq!(
        link,
        format!(
            "<{BASE}{API}/company/companies?conditions={conditions}&pageSize=10&page=2>; rel=\"next\", \
                 <{BASE}{API}/company/companies?conditions={conditions}&pageSize=10&page=3>; rel=\"last\""
        )
    );
    let r = get(&sim, "/company/companies?pageSize=10&page=3");
    assert_eq!(ids(&r), (120..130).collect::<Vec<_>>());
    let link = header(&r, "link").unwrap();
    assert!(!link.contains("rel=\"next\""), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    let r = get(&sim, "/company/companies?page=4&pageSize=10");
    assert_eq!(ids(&r), Vec::<i64>::new());
    let r = get(&sim, "/company/companies");
    assert_eq!(ids(&r).len(), 25);
}

#[test]
fn page_size_over_1000_and_bad_pages_are_refused() {
    let sim = sim();
    let r = get(&sim, "/company/companies?pageSize=1001");
    assert_eq!(r.status, 400);
    let b = body(&r);
    assert_eq!(b["code"], "InvalidObject");
    assert_eq!(b["errors"][0]["field"], "pageSize");
    assert_eq!(get(&sim, "/company/companies?pageSize=1000").status, 200);
    assert_eq!(get(&sim, "/company/companies?pageSize=0").status, 400);
    assert_eq!(get(&sim, "/company/companies?page=0").status, 400);
    assert_eq!(get(&sim, "/company/companies?pageId=3").status, 400);
}

#[test]
fn forward_only_paging_follows_page_id_and_refuses_order_by() {
    let sim = sim();
    let fwd = [("pagination-type", "forward-only")];
    let r = call_with(
        &sim,
        "GET",
        "/company/companies?pageSize=2&page=7",
        &fwd,
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r), [250, 251]);
    let link = header(&r, "link").unwrap();
    assert_eq!(
        link,
        format!("<{BASE}{API}/company/companies?pageSize=2&pageId=251>; rel=\"next\"")
    );
    let r = call_with(
        &sim,
        "GET",
        "/company/companies?pageSize=2&pageId=251",
        &fwd,
        "",
    );
    assert_eq!(ids(&r), [252]);
    assert!(header(&r, "link").is_none());
    let r = call_with(
        &sim,
        "GET",
        "/company/companies?orderBy=name%20desc",
        &fwd,
        "",
    );
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["errors"][0]["field"], "orderBy");
}

#[test]
fn order_by_and_fields_shape_the_list() {
    let sim = sim();
    let r = get(
        &sim,
        "/company/companies?orderBy=name%20desc&fields=id,status/name",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        json!([
            {"id": 252, "status": {"name": "Active"}},
            {"id": 251, "status": {"name": "Inactive"}},
            {"id": 250, "status": {"name": "Active"}},
        ])
    );
    assert_eq!(
        get(&sim, "/company/companies?orderBy=name%20sideways").status,
        400
    );
    assert_eq!(get(&sim, "/company/companies?orderBy=nosuch").status, 400);
    assert_eq!(get(&sim, "/company/companies?fields=id,nosuch").status, 400);
    let r = get(&sim, "/service/tickets/7000?fields=id,company/identifier");
    assert_eq!(
        body(&r),
        json!({"id": 7000, "company": {"identifier": "ACME01"}})
    );
}

#[test]
fn count_applies_the_conditions() {
    let sim = sim();
    let r = get(
        &sim,
        &format!(
            "/company/companies/count?conditions={}",
            encode("deletedFlag=false", b"")
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), json!({"count": 2}));
    assert_eq!(
        body(&get(&sim, "/finance/agreements/10/additions/count")),
        json!({"count": 2})
    );
    // No `search` route: Ferry does not use it and no source read for this work shows it.
    assert_eq!(
        call(&sim, "POST", "/company/companies/search", "{}").status,
        404
    );
}

#[test]
fn records_come_in_the_api_shape_and_unknown_ids_are_404() {
    let sim = sim();
    let r = get(&sim, "/company/companies/250");
    assert_eq!(
        body(&r),
        json!({
            "id": 250, "identifier": "ACME01", "name": "Acme Corp",
            "status": {"id": 1, "name": "Active"}, "types": [], "deletedFlag": false,
            "_info": {"lastUpdated": LAST_UPDATED},
        })
    );
    let r = get(&sim, "/finance/agreements/10");
    let b = body(&r);
    assert_eq!(
        b["company"],
        json!({"id": 250, "identifier": "ACME01", "name": "Acme Corp"})
    );
    assert_eq!(b["type"]["name"], "Managed Services");
    assert_eq!(b["agreementStatus"], "Active");
    assert_eq!(b["startDate"], "2026-01-01T00:00:00Z");
    assert_eq!(b["noEndingDateFlag"], true);
    let r = get(&sim, "/finance/agreements/10/additions/900");
    let b = body(&r);
    assert_eq!(b["product"], json!({"id": 501, "identifier": "EP-PROT"}));
    assert_eq!(b["quantity"], 12);
    assert_eq!(b["unitPrice"], 4.5);
    assert_eq!(b["cancelledDate"], Value::Null);
    let r = get(&sim, "/company/companies/999");
    assert_eq!(r.status, 404);
    assert_eq!(body(&r)["code"], "NotFound");
    assert_eq!(
        get(&sim, "/finance/agreements/11/additions/900").status,
        404
    );
    assert_eq!(get(&sim, "/finance/agreements/99/additions").status, 404);
    assert_eq!(get(&sim, "/company/nothing").status, 404);
    assert_eq!(
        call(&sim, "DELETE", "/company/companies/250", "").status,
        405
    );
    assert_eq!(call(&sim, "POST", "/company/companies", "{}").status, 405);
}

#[test]
fn an_addition_is_created_with_201_and_shows_in_the_state() {
    let sim = sim();
    let r = call(
        &sim,
        "POST",
        "/finance/agreements/10/additions",
        r#"{"product": {"identifier": "backup"}, "billCustomer": "Billable", "quantity": 7,
                "effectiveDate": "2026-08-01T00:00:00Z"}"#,
    );
    assert_eq!(r.status, 201, "{}", body(&r));
    let b = body(&r);
    assert_eq!(b["id"], 902);
    assert_eq!(b["product"], json!({"id": 502, "identifier": "BACKUP"}));
    assert_eq!(b["quantity"], 7);
    assert_eq!(b["unitPrice"], 10);
    assert_eq!(b["effectiveDate"], "2026-08-01T00:00:00Z");
    assert_eq!(b["description"], "Backup");
    let state = sim.state();
    let added = &state["additions"][2];
    assert_eq!(added["productIdentifier"], "BACKUP");
    assert_eq!(added["quantity"], 7);
    assert_eq!(added["effectiveDate"], "2026-08-01");
    assert_eq!(added["cancelledDate"], Value::Null);
    assert_eq!(state["additions"][0]["quantity"], 12);
    let r = call(
        &sim,
        "POST",
        "/finance/agreements/10/additions",
        r#"{"product": {"id": 501}, "billCustomer": "NoCharge"}"#,
    );
    assert_eq!(body(&r)["id"], 903);
}

#[test]
fn an_addition_without_bill_customer_or_with_an_unknown_product_is_refused() {
    let sim = sim();
    let r = call(
        &sim,
        "POST",
        "/finance/agreements/10/additions",
        r#"{"product": {"identifier": "EP-PROT"}}"#,
    );
    assert_eq!(r.status, 400);
    let b = body(&r);
    assert_eq!(b["code"], "InvalidObject");
    assert_eq!(b["errors"][0]["field"], "billCustomer");
    assert_eq!(b["errors"][0]["resource"], "agreementAddition");
    let r = call(
        &sim,
        "POST",
        "/finance/agreements/10/additions",
        r#"{"product": {"identifier": "NOPE"}, "billCustomer": "Billable"}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["errors"][0]["field"], "product");
    let r = call(
        &sim,
        "POST",
        "/finance/agreements/10/additions",
        r#"{"product": {"identifier": "EP-PROT"}, "billCustomer": "Sometimes", "quantity": "7"}"#,
    );
    let fields: Vec<Value> = body(&r)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, [json!("billCustomer"), json!("quantity")]);
    assert_eq!(
        call(&sim, "POST", "/finance/agreements/10/additions", "[]").status,
        400
    );
    assert_eq!(
        call(&sim, "POST", "/finance/agreements/10/additions", "nope").status,
        400
    );
    assert_eq!(sim.state()["additions"].as_array().unwrap().len(), 2);
}

#[test]
fn additions_on_cancelled_or_inactive_agreements_are_refused() {
    let sim = sim();
    let body_text = r#"{"product": {"identifier": "EP-PROT"}, "billCustomer": "Billable"}"#;
    let r = call(&sim, "POST", "/finance/agreements/11/additions", body_text);
    assert_eq!(r.status, 400);
    assert!(body(&r)["message"].as_str().unwrap().contains("Cancelled"));
    let r = call(&sim, "POST", "/finance/agreements/12/additions", body_text);
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["errors"][0]["field"], "agreement");
    assert_eq!(
        call(&sim, "POST", "/finance/agreements/77/additions", body_text).status,
        404
    );
}

#[test]
fn an_addition_is_patched_with_json_patch_replace() {
    let sim = sim();
    let r = call(
        &sim,
        "PATCH",
        "/finance/agreements/10/additions/900",
        r#"[{"op":"replace","path":"quantity","value":25},
                {"op":"replace","path":"/cancelledDate","value":"2026-09-30T00:00:00Z"}]"#,
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(body(&r)["quantity"], 25);
    assert_eq!(sim.state()["additions"][0]["quantity"], 25);
    assert_eq!(sim.state()["additions"][0]["cancelledDate"], "2026-09-30");
    for bad in [
        r#"[{"op":"add","path":"quantity","value":1}]"#,
        r#"[{"op":"replace","path":"product","value":{"id":502}}]"#,
        r#"[{"op":"replace","path":"quantity","value":"many"}]"#,
        r#"[{"op":"replace","path":"quantity"}]"#,
        r#"{"quantity": 3}"#,
    ] {
        let r = call(&sim, "PATCH", "/finance/agreements/10/additions/900", bad);
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(sim.state()["additions"][0]["quantity"], 25);
    let r = call(&sim, "PATCH", "/finance/agreements/10/additions/5", r#"[]"#);
    assert_eq!(r.status, 404);
}

#[test]
fn a_ticket_is_created_with_defaults_and_closed_by_status() {
    let sim = sim();
    let r = call(
        &sim,
        "POST",
        "/service/tickets",
        r#"{"summary": "Ferry sync failed", "company": {"identifier": "ACME01"}, "initialDescription": "details"}"#,
    );
    assert_eq!(r.status, 201, "{}", body(&r));
    let b = body(&r);
    assert_eq!(b["id"], 7001);
    assert_eq!(b["board"], json!({"id": 1, "name": "Alerts"}));
    assert_eq!(b["status"], json!({"id": 101, "name": "New"}));
    assert_eq!(b["company"]["id"], 250);
    assert_eq!(b["closedFlag"], false);
    let r = get(
        &sim,
        &format!(
            "/service/tickets?conditions={}",
            encode(
                r#"company/id=250 and summary="Ferry sync failed" and closedFlag=false"#,
                b""
            )
        ),
    );
    assert_eq!(ids(&r), [7001]);
    // The board has no `>Closed`: that name is refused, its own closed status is taken.
    let r = call(
        &sim,
        "PATCH",
        "/service/tickets/7001",
        r#"[{"op":"replace","path":"status","value":{"name":">Closed"}}]"#,
    );
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(
        body(&r)["message"]
            .as_str()
            .unwrap()
            .contains("not a status of board"),
        "{}",
        body(&r)
    );
    let statuses = body(&get(&sim, "/service/boards/1/statuses"));
    let closed: Vec<Value> = (statuses.as_array().unwrap().iter())
        .filter(|s| s["closedStatus"] == true)
        .cloned()
        .collect();
    assert_eq!(closed.len(), 1);
    let r = call(
        &sim,
        "PATCH",
        "/service/tickets/7001",
        &format!(
            r#"[{{"op":"replace","path":"status","value":{{"id":{}}}}}]"#,
            closed[0]["id"]
        ),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(body(&r)["closedFlag"], true);
    assert_eq!(sim.state()["tickets"][1]["closed"], true);
    assert_eq!(sim.state()["tickets"][1]["status"], "Closed");
    let r = call(
        &sim,
        "PATCH",
        "/service/tickets/7001",
        r#"[{"op":"replace","path":"/status","value":"In Progress"}]"#,
    );
    assert_eq!(body(&r)["closedFlag"], false);
    assert_eq!(
        call(&sim, "PATCH", "/service/tickets/7999", "[]").status,
        404
    );
}

#[test]
fn tickets_missing_required_fields_are_refused_by_field() {
    let sim = sim();
    let long = "x".repeat(101);
    let cases = [
        (
            format!(r#"{{"summary": "{long}", "company": {{"id": 250}}}}"#),
            "summary",
        ),
        (r#"{"company": {"id": 250}}"#.to_string(), "summary"),
        (r#"{"summary": "s"}"#.to_string(), "company"),
        (
            r#"{"summary": "s", "company": {"id": 999}}"#.to_string(),
            "company",
        ),
        (
            r#"{"summary": "s", "company": {"identifier": "INITECH"}}"#.to_string(),
            "company",
        ),
        (
            r#"{"summary": "s", "company": {"id": 250}, "board": {"name": "Nope"}}"#.to_string(),
            "board",
        ),
    ];
    for (text, field) in cases {
        let r = call(&sim, "POST", "/service/tickets", &text);
        assert_eq!(r.status, 400, "{text}");
        assert_eq!(body(&r)["errors"][0]["field"], field, "{text}");
        assert_eq!(body(&r)["errors"][0]["resource"], "ticket");
    }
    let r = call(
        &sim,
        "POST",
        "/service/tickets",
        r#"{"summary": "s", "company": {"id": 250}, "board": {"id": 2}}"#,
    );
    assert_eq!(body(&r)["board"]["name"], "Help Desk");
    let no_boards = DATA.split("boards:").next().unwrap();
    let sim = sim_from(no_boards);
    let r = call(
        &sim,
        "POST",
        "/service/tickets",
        r#"{"summary": "s", "company": {"id": 250}}"#,
    );
    assert_eq!(body(&r)["errors"][0]["field"], "board");
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    let sim = sim_from(&format!(
        "{DATA}rateLimit: {{requests: 2, perSeconds: 30}}\n"
    ));
    assert_eq!(get(&sim, "/company/companies").status, 200);
    assert_eq!(get(&sim, "/company/companies").status, 200);
    let r = get(&sim, "/company/companies");
    assert_eq!(r.status, 429);
    let secs: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&secs), "{secs}");
    assert_eq!(body(&r)["code"], "ConnectWiseApi");
}

#[test]
fn injected_errors_use_the_connectwise_shape() {
    let r = sim().error(503, "Injected failure");
    assert_eq!(r.status, 503);
    assert_eq!(
        body(&r),
        json!({"code": "ConnectWiseApi", "message": "Injected failure"})
    );
}

#[test]
fn invalid_data_files_are_refused_naming_the_problem() {
    let bad = |yaml: &str| -> String {
        let data: Data = serde_saphyr::from_str(yaml).expect("the data parses");
        ConnectWise::new(data).err().expect("refused")
    };
    let head = "companyId: m\nclientId: c\npublicKey: p\nprivateKey: k\n";
    assert!(bad(&format!("{head}companies: [{{id: 1, identifier: A, name: A}}, {{id: 1, identifier: B, name: B}}]"))
            .contains("duplicate id 1"));
    assert!(
        bad(&format!(
            "{head}agreements: [{{id: 1, name: A, companyId: 9}}]"
        ))
        .contains("company 9")
    );
    assert!(bad(&format!(
            "{head}companies: [{{id: 1, identifier: A, name: A}}]\nagreements: [{{id: 1, name: A, companyId: 1, status: Open}}]"
        ))
        .contains("Open"));
    assert!(bad(&format!(
            "{head}companies: [{{id: 1, identifier: A, name: A}}]\nagreements: [{{id: 1, name: A, companyId: 1}}]\nadditions: [{{id: 1, agreementId: 1, productIdentifier: X}}]"
        ))
        .contains("\"X\""));
    assert!(bad(&format!("{head}companies: [{{id: 1, identifier: A, name: A}}]\ntickets: [{{id: 1, summary: s, companyId: 1, board: Z}}]"))
            .contains("\"Z\""));
    let unknown_key: Result<Data, _> = serde_saphyr::from_str(&format!("{head}companys: []"));
    assert!(unknown_key.is_err());
    let empty = sim_from(head);
    assert_eq!(empty.state()["additions"], json!([]));
    assert_eq!(empty.state()["codebase"], "v2025_1/");
}

#[test]
fn the_conditions_tokenizer_reads_every_token_kind() {
    let toks: Vec<Tok> =
        tokenize(r#"a/b='x\'y' AND c>=-1.5 or d in (True,null) e<=[2026-08-20T18:04:26Z]!="#)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
    assert_eq!(toks[0], Tok::Word("a/b".into()));
    assert_eq!(toks[1], Tok::Op(Op::Eq));
    assert_eq!(toks[2], Tok::Str("x'y".into()));
    assert_eq!(toks[5], Tok::Op(Op::Ge));
    assert_eq!(toks[6], Tok::Num(-1.5, "-1.5".into()));
    assert!(matches!(toks[17], Tok::Date(..)));
    assert_eq!(toks[18], Tok::Op(Op::Ne));
    assert!(glob("endpoint protection", "*prot*"));
    assert!(glob("abc", "a%c"));
    assert!(!glob("abc", "a*d"));
}
