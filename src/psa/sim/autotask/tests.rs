//! Unit tests of the Autotask simulator: each route, each refusal, the query language and
//! paging, driven through `Api::handle` as the server drives it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::api::{Faults, SimRequest, SimResponse};
use super::data::{Company, Data};
use super::fields::{KINDS, Kind, render};
use super::paging::encode;
use super::store::on_table;

use super::*;

use crate::psa::sim::split_query;

const BASE: &str = "http://127.0.0.1:18081";
const API: &str = "/zone1/atservicesrest/v1.0";

const DATA: &str = r#"
username: ferry-api@msp.example
secret: s3cret
integrationCode: CODE123
companies:
  - {id: 0, companyName: "Managed Services Inc", companyNumber: "0", companyType: 8}
  - {id: 1, companyName: "Acme", companyNumber: "A1"}
  - {id: 2, companyName: "Acme Labs", companyNumber: "A2"}
  - {id: 3, companyName: "Globex", isActive: false}
  - {id: 4, companyName: "Initech", companyNumber: "I4", companyType: 3}
  - {id: 5, companyName: "Umbrella"}
contracts:
  - {id: 10, companyID: 1, contractName: "Managed", contractNumber: "C-10", contractType: 7, status: 1, startDate: "2026-01-01", endDate: "2027-12-31"}
  - {id: 11, companyID: 1, contractName: "Hours", contractType: 4, startDate: 2026-01-01, endDate: 2026-12-31}
  - {id: 12, companyID: 2, contractName: "Old", contractType: 7, status: 0, startDate: "2025-01-01", endDate: "2025-12-31"}
services:
  - {id: 20, name: "Endpoint", unitPrice: 5.0, unitCost: 2.0, periodType: "m"}
  - {id: 21, name: "Backup", unitPrice: 3}
contractServices:
  - {id: 30, contractID: 10, serviceID: 20, unitPrice: 5.0}
  - {id: 31, contractID: 12, serviceID: 20}
contractServiceUnits:
  - {contractID: 10, serviceID: 20, contractServiceID: 30, startDate: "2026-11-01", endDate: "2026-11-30", units: 12, price: 5.0}
  - {contractID: 10, serviceID: 20, startDate: "2026-12-01", endDate: "2026-12-31", units: 12}
queues: [{id: 8, name: "Alerts"}, {id: 9, name: "Retired", isActive: false}]
"#;

fn data() -> Data {
    serde_saphyr::from_str(DATA).expect("the test data parses")
}

fn sim() -> Autotask {
    Autotask::new(data()).expect("the test data is valid")
}

fn request(method: &str, url: &str, body: Option<Value>) -> SimRequest {
    let (path, query) = split_query(url.strip_prefix(BASE).unwrap_or(url));
    let mut headers = vec![
        ("apiintegrationcode".to_string(), "CODE123".to_string()),
        ("username".to_string(), "ferry-api@msp.example".to_string()),
        ("secret".to_string(), "s3cret".to_string()),
    ];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    SimRequest {
        method: method.to_string(),
        path,
        query,
        headers,
        body: body.map(|b| b.to_string().into()).unwrap_or_default(),
    }
}

fn send(at: &Autotask, req: &SimRequest, faults: &Faults) -> (u16, Value) {
    let r = at.handle(req, faults, BASE);
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn call(at: &Autotask, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    send(at, &request(method, url, body), &Faults::default())
}

fn post(at: &Autotask, path: &str, body: Value) -> (u16, Value) {
    call(at, "POST", &format!("{API}{path}"), Some(body))
}

fn get(at: &Autotask, path: &str) -> (u16, Value) {
    call(at, "GET", &format!("{API}{path}"), None)
}

fn ids(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|i| i["id"].as_i64().expect("an id"))
        .collect()
}

/// The ids of the companies matching `filter`.
fn companies(at: &Autotask, filter: Value) -> Vec<i64> {
    let (status, body) = post(at, "/Companies/query", json!({ "filter": filter }));
    assert_eq!(status, 200, "{body}");
    ids(&body)
}

fn error(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_string()
}

fn units(at: &Autotask) -> Vec<(String, String, i64)> {
    at.state()["contractServiceUnits"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| {
            (
                u["startDate"].as_str().unwrap_or_default().to_string(),
                u["endDate"].as_str().unwrap_or_default().to_string(),
                u["units"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn ticket(overrides: Value) -> Value {
    let mut t = json!({
        "companyID": 1,
        "title": "Backup failed",
        "status": 1,
        "priority": 2,
        "queueID": 8,
        "description": "Nightly backup failed on SRV01",
        "dueDateTime": "2026-11-30T17:00:00Z",
    });
    for (k, v) in overrides.as_object().expect("an object") {
        if v.is_null() {
            t.as_object_mut().expect("an object").remove(k);
        } else {
            t[k] = v.clone();
        }
    }
    t
}

#[test]
fn zone_discovery_answers_the_api_user_without_authentication() {
    let at = sim();
    let mut req = request(
        "GET",
        "/atservicesrest/v1.0/zoneInformation?user=Ferry-API%40msp.example",
        None,
    );
    req.headers.clear();
    let (status, body) = send(&at, &req, &Faults::default());
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "zoneName": "America East 1",
            "url": format!("{BASE}/zone1/atservicesrest/"),
            "webUrl": format!("{BASE}/zone1/"),
            "ci": 1,
        })
    );
    let upper = request(
        "GET",
        "/ATServicesRest/V1.0/ZoneInformation?user=ferry-api@msp.example",
        None,
    );
    assert_eq!(send(&at, &upper, &Faults::default()).0, 200);
}

#[test]
fn zone_discovery_refuses_an_unknown_or_missing_user() {
    let at = sim();
    for url in [
        "/atservicesrest/v1.0/zoneInformation?user=someone@else.example",
        "/atservicesrest/v1.0/zoneInformation",
    ] {
        let (status, body) = call(&at, "GET", url, None);
        assert_eq!(status, 500);
        assert_eq!(
            body,
            json!({"errors": ["Zone information could not be determined"]})
        );
    }
}

#[test]
fn the_api_path_is_case_insensitive() {
    let at = sim();
    let (status, body) = call(
        &at,
        "POST",
        "/ZONE1/ATServicesRest/V1.0/companies/QUERY",
        Some(json!({"filter": [{"op": "EQ", "field": "CompanyName", "value": "acme"}]})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec![1]);
}

#[test]
fn after_a_zone_move_the_old_zone_answers_401_and_discovery_points_to_the_new_zone() {
    let at = sim();
    let moved = Faults {
        zone_moves: 1,
        ..Default::default()
    };
    let old = request("GET", &format!("{API}/Companies/1"), None);
    let (status, body) = send(&at, &old, &moved);
    assert_eq!(status, 401);
    assert!(!error(&body).is_empty());

    let discover = request(
        "GET",
        "/atservicesrest/v1.0/zoneInformation?user=ferry-api@msp.example",
        None,
    );
    let (_, zone) = send(&at, &discover, &moved);
    assert_eq!(zone["url"], format!("{BASE}/zone2/atservicesrest/"));
    assert_eq!(zone["ci"], 2);

    let url = format!("{}v1.0/Companies/1", zone["url"].as_str().expect("url"));
    let (status, body) = send(&at, &request("GET", &url, None), &moved);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["companyName"], "Acme");
}

#[test]
fn an_unknown_user_or_integration_code_gets_500_and_a_wrong_secret_gets_401() {
    let at = sim();
    let url = format!("{API}/Companies/1");
    let with = |name: &str, value: Option<&str>| {
        let mut req = request("GET", &url, None);
        req.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            req.headers.push((name.to_string(), v.to_string()));
        }
        send(&at, &req, &Faults::default())
    };
    assert_eq!(with("username", Some("nobody@example")).0, 500);
    assert_eq!(with("username", None).0, 500);
    assert_eq!(with("apiintegrationcode", Some("WRONG")).0, 500);
    assert_eq!(with("apiintegrationcode", None).0, 500);
    let (status, body) = with("secret", Some("guess"));
    assert_eq!(status, 401);
    assert!(body["errors"].is_array());
    assert_eq!(with("secret", None).0, 401);
    assert_eq!(with("username", Some("FERRY-API@MSP.EXAMPLE")).0, 200);
}

#[test]
fn expired_keys_are_refused_with_401() {
    let at = sim();
    let expired = Faults {
        keys_expired: true,
        ..Default::default()
    };
    let req = request("GET", &format!("{API}/Companies/1"), None);
    assert_eq!(send(&at, &req, &expired).0, 401);
    assert_eq!(send(&at, &req, &Faults::default()).0, 200);
}

#[test]
fn equality_operators_compare_strings_without_case() {
    let at = sim();
    let f = |op: &str, field: &str, value: Value| {
        companies(&at, json!([{"op": op, "field": field, "value": value}]))
    };
    assert_eq!(f("eq", "companyName", json!("ACME")), vec![1]);
    assert_eq!(
        f("noteq", "companyName", json!("acme")),
        vec![0, 2, 3, 4, 5]
    );
    assert_eq!(f("eq", "isActive", json!(false)), vec![3]);
    assert_eq!(f("eq", "companyType", json!("3")), vec![4]);
}

#[test]
fn ordering_operators_compare_numbers_strings_and_dates() {
    let at = sim();
    let f =
        |op: &str, value: i64| companies(&at, json!([{"op": op, "field": "id", "value": value}]));
    assert_eq!(f("gt", 3), vec![4, 5]);
    assert_eq!(f("gte", 3), vec![3, 4, 5]);
    assert_eq!(f("lt", 2), vec![0, 1]);
    assert_eq!(f("lte", 2), vec![0, 1, 2]);
    assert_eq!(
        companies(
            &at,
            json!([{"op": "gte", "field": "companyName", "value": "j"}])
        ),
        vec![0, 5]
    );
    let (_, body) = post(
        &at,
        "/Contracts/query",
        json!({"filter": [{"op": "gte", "field": "endDate", "value": "2026-12-31T00:00:00Z"}]}),
    );
    assert_eq!(ids(&body), vec![10, 11]);
    let (_, body) = post(
        &at,
        "/Contracts/query",
        json!({"filter": [{"op": "lt", "field": "startDate", "value": "2026-01-01"}]}),
    );
    assert_eq!(ids(&body), vec![12]);
}

#[test]
fn string_operators_match_prefixes_suffixes_and_substrings() {
    let at = sim();
    let f = |op: &str, value: &str| {
        companies(
            &at,
            json!([{"op": op, "field": "companyName", "value": value}]),
        )
    };
    assert_eq!(f("beginsWith", "acme"), vec![1, 2]);
    assert_eq!(f("BEGINSWITH", "ACME "), vec![2]);
    assert_eq!(f("endsWith", "LABS"), vec![2]);
    assert_eq!(f("contains", "o"), vec![3]);
    assert_eq!(f("contains", "E"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(f("contains", "Ex"), vec![3]);
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "contains", "field": "id", "value": "1"}]}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("string fields"), "{body}");
}

#[test]
fn existence_and_list_operators_handle_nulls_and_arrays() {
    let at = sim();
    let f = |item: Value| companies(&at, json!([item]));
    assert_eq!(
        f(json!({"op": "exist", "field": "companyNumber"})),
        vec![0, 1, 2, 4]
    );
    assert_eq!(
        f(json!({"op": "notExist", "field": "companyNumber"})),
        vec![3, 5]
    );
    assert_eq!(
        f(json!({"op": "in", "field": "id", "value": [1, "4", 99]})),
        vec![1, 4]
    );
    assert_eq!(
        f(json!({"op": "notIn", "field": "companyName", "value": ["acme", "GLOBEX"]})),
        vec![0, 2, 4, 5]
    );
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "in", "field": "id", "value": 1}]}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("array"), "{body}");
}

#[test]
fn groups_combine_conditions_with_and_and_or() {
    let at = sim();
    let filter = json!([
        {"op": "or", "items": [
            {"op": "beginsWith", "field": "companyName", "value": "acme"},
            {"op": "and", "items": [
                {"op": "eq", "field": "isActive", "value": true},
                {"op": "gt", "field": "id", "value": 4},
            ]},
        ]},
        {"op": "noteq", "field": "id", "value": 2},
    ]);
    assert_eq!(companies(&at, filter), vec![1, 5]);
    let (status, _) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "or", "items": []}]}),
    );
    assert_eq!(status, 500);
}

#[test]
fn empty_filters_unknown_fields_and_unknown_operators_are_refused() {
    let at = sim();
    for body in [json!({}), json!({"filter": []}), json!({"MaxRecords": 5})] {
        let (status, answer) = post(&at, "/Companies/query", body);
        assert_eq!(status, 500);
        assert!(error(&answer).contains("at least one filter"), "{answer}");
    }
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "eq", "field": "companyNam", "value": "Acme"}]}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("companyNam"), "{body}");
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "like", "field": "companyName", "value": "Acme"}]}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("like"), "{body}");
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": [{"op": "eq", "field": "id", "value": "one"}]}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("integer"), "{body}");
}

#[test]
fn max_records_must_be_between_1_and_500() {
    let at = sim();
    let all = json!([{"op": "gte", "field": "id", "value": 0}]);
    for bad in [json!(0), json!(501), json!(-1), json!("ten")] {
        let (status, body) = post(
            &at,
            "/Companies/query",
            json!({"filter": all, "MaxRecords": bad}),
        );
        assert_eq!(status, 500, "{bad}");
        assert!(error(&body).contains("MaxRecords"), "{body}");
    }
    let (status, body) = post(
        &at,
        "/Companies/query",
        json!({"filter": all, "maxRecords": 2}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["pageDetails"]["count"], 2);
    assert_eq!(body["pageDetails"]["requestCount"], 2);
    let (_, body) = post(&at, "/Companies/query", json!({"filter": all}));
    assert_eq!(body["pageDetails"]["requestCount"], 500);
    assert_eq!(body["pageDetails"]["nextPageUrl"], Value::Null);
    assert_eq!(body["pageDetails"]["prevPageUrl"], Value::Null);
}

#[test]
fn paging_follows_next_page_urls_to_the_end() {
    let mut d = data();
    d.companies.extend((100..1300).map(|id| Company {
        id,
        company_name: format!("Customer {id}"),
        company_number: None,
        company_type: 1,
        is_active: id % 7 != 0,
    }));
    let at = Autotask::new(d).expect("valid");
    let filter = json!([
        {"op": "beginsWith", "field": "companyName", "value": "customer"},
        {"op": "eq", "field": "isActive", "value": true},
    ]);
    let expected: Vec<i64> = (100..1300).filter(|id| id % 7 != 0).collect();

    let (status, mut page) = post(&at, "/Companies/query", json!({"filter": filter}));
    assert_eq!(status, 200);
    let mut seen = ids(&page);
    assert_eq!(seen.len(), 500);
    let mut pages = 1;
    while let Some(next) = page["pageDetails"]["nextPageUrl"].as_str() {
        assert!(
            next.starts_with(&format!("{BASE}{API}/Companies/query/next?")),
            "{next}"
        );
        let (refused, why) = call(&at, "GET", next, None);
        assert_eq!(refused, 405, "a GET of a next page is refused: {why}");
        let (status, body) = call(&at, "POST", next, Some(json!({"filter": filter})));
        assert_eq!(status, 200, "{body}");
        let (other, _) = call(
            &at,
            "POST",
            next,
            Some(json!({"filter": [{"op": "eq", "field": "id", "value": 1}]})),
        );
        assert_eq!(other, 500, "another query's body is refused");
        assert!(body["pageDetails"]["prevPageUrl"].is_string());
        seen.extend(ids(&body));
        page = body;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    assert_eq!(page["pageDetails"]["count"], expected.len() - 1000);

    // prevPageUrl goes back to the page before.
    let prev = page["pageDetails"]["prevPageUrl"].as_str().expect("prev");
    let (_, body) = call(&at, "POST", prev, None);
    assert_eq!(ids(&body), expected[500..1000].to_vec());

    let (_, count) = post(&at, "/Companies/query/count", json!({"filter": filter}));
    assert_eq!(count, json!({"queryCount": expected.len()}));
}

#[test]
fn small_pages_keep_include_fields_and_the_filter() {
    let at = sim();
    let search = json!({
        "filter": [{"op": "exist", "field": "companyNumber"}],
        "MaxRecords": 3,
        "IncludeFields": ["companyName"],
    });
    let (_, first) = post(&at, "/Companies/query", search);
    assert_eq!(ids(&first), vec![0, 1, 2]);
    assert_eq!(
        first["items"][1],
        json!({"id": 1, "companyName": "Acme", "userDefinedFields": []})
    );
    let next = first["pageDetails"]["nextPageUrl"].as_str().expect("next");
    let (_, second) = call(&at, "POST", next, None);
    assert_eq!(ids(&second), vec![4]);
    assert_eq!(second["pageDetails"]["nextPageUrl"], Value::Null);
    assert_eq!(second["items"][0]["companyNumber"], Value::Null);
    assert!(second["items"][0].get("isActive").is_none());
}

#[test]
fn get_queries_take_the_search_parameter() {
    let at = sim();
    let search = json!({"filter": [{"op": "eq", "field": "companyID", "value": 1}]});
    let url = format!(
        "{API}/Contracts/query?search={}",
        encode(&search.to_string())
    );
    let (status, body) = call(&at, "GET", &url, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec![10, 11]);
    assert_eq!(body["items"][0]["startDate"], "2026-01-01T00:00:00Z");
    assert_eq!(body["items"][0]["contractType"], 7);
    let url = format!(
        "{API}/Contracts/query/count?search={}",
        encode(&search.to_string())
    );
    assert_eq!(call(&at, "GET", &url, None).1, json!({"queryCount": 2}));
    let (status, _) = get(&at, "/Contracts/query");
    assert_eq!(status, 500);
}

#[test]
fn a_single_get_returns_the_item_or_null() {
    let at = sim();
    let (status, body) = get(&at, "/Services/20");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"item": {"id": 20, "name": "Endpoint", "unitPrice": 5.0, "unitCost": 2.0, "periodType": "m"}})
    );
    assert_eq!(get(&at, "/Services/999"), (200, json!({"item": null})));
    assert_eq!(get(&at, "/Companies/0").1["item"]["companyType"], 8);
    assert_eq!(get(&at, "/ContractServices/31").1["item"]["unitPrice"], 5.0);
}

#[test]
fn unit_rows_are_query_only_and_adjustments_create_only() {
    let at = sim();
    assert_eq!(get(&at, "/ContractServiceUnits/1").0, 405);
    let (status, body) = post(
        &at,
        "/ContractServiceUnits/query",
        json!({"filter": [{"op": "eq", "field": "contractServiceID", "value": 30}]}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["items"][0]["units"], 12);
    assert_eq!(body["items"][0]["startDate"], "2026-11-01T00:00:00Z");
    assert_eq!(body["items"][1]["price"], 5.0);
    assert_eq!(post(&at, "/ContractServiceUnits", json!({})).0, 405);
    let adjustments = json!({"filter": [{"op": "gte", "field": "id", "value": 0}]});
    assert_eq!(
        post(&at, "/ContractServiceAdjustments/query", adjustments).0,
        405
    );
    assert_eq!(
        call(
            &at,
            "PATCH",
            &format!("{API}/Contracts/10/ServiceAdjustments"),
            Some(json!({"id": 1}))
        )
        .0,
        405
    );
    assert_eq!(
        call(
            &at,
            "DELETE",
            &format!("{API}/Contracts/10/ServiceAdjustments"),
            None
        )
        .0,
        405
    );
}

#[test]
fn contract_services_are_added_only_to_recurring_service_contracts() {
    let at = sim();
    let (status, body) = post(
        &at,
        "/Contracts/11/Services",
        json!({"contractID": 11, "serviceID": 20}),
    );
    assert_eq!(status, 500);
    assert!(
        error(&body).contains("Services can only be added to Recurring Service contracts"),
        "{body}"
    );
    let (status, body) = post(
        &at,
        "/Contracts/10/Services",
        json!({"contractID": 10, "serviceID": 20}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("already on contract 10"), "{body}");
    let (status, body) = post(
        &at,
        "/Contracts/10/Services",
        json!({"contractID": 11, "serviceID": 21}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("does not match"), "{body}");
    let (status, body) = post(
        &at,
        "/Contracts/10/Services",
        json!({"contractID": 10, "serviceID": 99}),
    );
    assert_eq!(status, 500);
    assert!(error(&body).contains("Service 99 does not exist"), "{body}");

    let (status, body) = post(
        &at,
        "/Contracts/10/Services",
        json!({"contractID": 10, "serviceID": 21}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["itemId"].as_i64().expect("itemId");
    let (_, item) = get(&at, &format!("/ContractServices/{id}"));
    assert_eq!(
        item["item"],
        json!({"id": id, "contractID": 10, "serviceID": 21, "unitPrice": 3.0})
    );
    assert_eq!(
        at.state()["contractServices"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(post(&at, "/ContractServices", json!({})).0, 405);
}

#[test]
fn an_adjustment_inside_a_period_starts_a_new_units_row_and_later_periods_carry_it() {
    // ContractServiceUnits (REST): "a new ContractServiceUnit is created with a start date
    // equal to the effective date of the adjustment".
    let at = sim();
    let (status, body) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2026-11-15", "unitChange": 3}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["itemId"].as_i64().is_some());
    let mut rows = units(&at);
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("2026-11-01".into(), "2026-11-14".into(), 12),
            ("2026-11-15".into(), "2026-11-30".into(), 15),
            ("2026-12-01".into(), "2026-12-31".into(), 15),
        ]
    );
    // Dated on a period's first day, it changes that row in place: no split.
    let (status, _) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2026-12-01T00:00:00Z", "unitChange": -5}),
    );
    assert_eq!(status, 200);
    let mut rows = units(&at);
    rows.sort();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].2, 15);
    assert_eq!(rows[2].2, 10);

    // A day without a period gets a row from that day, from the previous row's units.
    let (status, _) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2027-02-10", "unitChange": 2, "adjustedUnitPrice": 4.5}),
    );
    assert_eq!(status, 200);
    let state = at.state();
    let rows = state["contractServiceUnits"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["startDate"], "2027-02-10");
    assert_eq!(rows[3]["endDate"], "2027-02-28");
    assert_eq!(rows[3]["units"], 12);
    assert_eq!(rows[3]["price"], 4.5);
    assert_eq!(rows[3]["contractServiceID"], 30);
    let adjustments = state["contractServiceAdjustments"].as_array().expect("adj");
    assert_eq!(adjustments.len(), 3);
    assert_eq!(adjustments[0]["unitChange"], 3);
    assert_eq!(adjustments[0]["effectiveDate"], "2026-11-15");
    assert_eq!(adjustments[1]["unitChange"], -5);
}

#[test]
fn an_adjustment_on_a_service_without_periods_starts_from_zero() {
    let at = sim();
    let (status, _) = post(
        &at,
        "/Contracts/10/Services",
        json!({"contractID": 10, "serviceID": 21, "unitPrice": 2.5}),
    );
    assert_eq!(status, 200);
    let (status, body) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 21, "effectiveDate": "2026-11-21", "unitChange": 7}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, rows) = post(
        &at,
        "/ContractServiceUnits/query",
        json!({"filter": [{"op": "eq", "field": "serviceID", "value": 21}]}),
    );
    assert_eq!(rows["items"][0]["units"], 7);
    assert_eq!(rows["items"][0]["price"], 2.5);
    assert_eq!(rows["items"][0]["startDate"], "2026-11-21T00:00:00Z");
    assert_eq!(rows["items"][0]["endDate"], "2026-11-30T00:00:00Z");
}

#[test]
fn a_fractional_or_out_of_range_unit_change_is_refused_in_autotask_s_shape() {
    let at = sim();
    for change in [json!(2.5), json!(4_294_967_296i64)] {
        let (status, body) = post(
            &at,
            "/Contracts/10/ServiceAdjustments",
            json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2026-11-15", "unitChange": change}),
        );
        assert_eq!(status, 500, "{body}");
        let message = error(&body);
        assert!(
            message.contains("unitChange") && message.ends_with("on record number [0]."),
            "{message}"
        );
    }
    assert_eq!(units(&at)[0].2, 12, "nothing changed");
}

#[test]
fn an_adjustment_needs_an_effective_date_and_a_unit_change() {
    let at = sim();
    let (status, body) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "unitChange": 1}),
    );
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"errors": ["effectiveDate is required.; on record number [0]."]})
    );
    let (status, body) = post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2026-11-15"}),
    );
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"errors": ["unitChange is required.; on record number [0]."]})
    );
    assert_eq!(units(&at)[0].2, 12);
    assert_eq!(
        at.state()["contractServiceAdjustments"],
        json!([]),
        "nothing recorded"
    );
}

#[test]
fn adjustments_are_refused_below_zero_units_on_inactive_contracts_and_for_absent_services() {
    let at = sim();
    let adjust = |contract: i64, service: i64, change: i64| {
        post(
            &at,
            &format!("/Contracts/{contract}/ServiceAdjustments"),
            json!({"contractID": contract, "serviceID": service, "effectiveDate": "2026-11-15", "unitChange": change}),
        )
    };
    let (status, body) = adjust(10, 20, -13);
    assert_eq!(status, 500);
    assert!(error(&body).contains("cannot be negative"), "{body}");
    assert_eq!(units(&at)[0].2, 12);
    assert_eq!(adjust(10, 20, -12).0, 200);
    let mut rows = units(&at);
    rows.sort();
    assert_eq!(rows[1], ("2026-11-15".into(), "2026-11-30".into(), 0));

    let (status, body) = adjust(12, 20, 1);
    assert_eq!(status, 500);
    assert!(error(&body).contains("not active"), "{body}");
    // A service the contract lacks is added with it (ContractServiceAdjustments, REST).
    let (status, body) = adjust(10, 21, 1);
    assert_eq!(status, 200, "{body}");
    assert!(
        at.state()["contractServices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|cs| cs["contractID"] == 10 && cs["serviceID"] == 21)
    );
    let (status, body) = adjust(11, 20, 1);
    assert_eq!(status, 500);
    assert!(error(&body).contains("Recurring Service"), "{body}");
    let (status, body) = adjust(77, 20, 1);
    assert_eq!(status, 500);
    assert!(
        error(&body).contains("Contract 77 does not exist"),
        "{body}"
    );
}

#[test]
fn a_ticket_without_a_due_date_is_refused_with_autotasks_message() {
    let at = sim();
    let (status, body) = post(&at, "/Tickets", ticket(json!({"dueDateTime": null})));
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"errors": ["dueDateTime is required.; on record number [0]."]})
    );
    assert_eq!(at.state()["tickets"], json!([]));
}

#[test]
fn a_ticket_needs_a_queue_or_an_assigned_resource_and_role() {
    let at = sim();
    let (status, body) = post(&at, "/Tickets", ticket(json!({"queueID": null})));
    assert_eq!(status, 500);
    assert!(error(&body).starts_with("queueID is required"), "{body}");
    let (status, body) = post(&at, "/Tickets", ticket(json!({"queueID": 9})));
    assert_eq!(status, 500, "an inactive queue");
    assert!(error(&body).contains("queueID 9"), "{body}");
    let (status, _) = post(
        &at,
        "/Tickets",
        ticket(json!({"queueID": null, "assignedResourceID": 29682885})),
    );
    assert_eq!(status, 500, "a resource without a role");
    let (status, body) = post(
        &at,
        "/Tickets",
        ticket(
            json!({"queueID": null, "assignedResourceID": 29682885, "assignedResourceRoleID": 29683461}),
        ),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_ticket_checks_its_required_fields_and_references() {
    let at = sim();
    let (status, body) = post(&at, "/Tickets", json!({}));
    assert_eq!(status, 500);
    let errors = body["errors"].as_array().expect("errors");
    for field in ["companyID", "title", "status", "priority", "dueDateTime"] {
        assert!(
            errors.contains(&json!(format!(
                "{field} is required.; on record number [0]."
            ))),
            "{field} in {body}"
        );
    }
    let (status, body) = post(
        &at,
        "/Tickets",
        ticket(json!({"companyID": 99, "status": 4, "priority": 7})),
    );
    assert_eq!(status, 500);
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, body) = post(&at, "/Tickets", ticket(json!({"title": "x".repeat(256)})));
    assert_eq!(status, 500);
    assert!(error(&body).contains("255"), "{body}");
}

#[test]
fn a_ticket_is_created_then_closed_with_a_patch() {
    let at = sim();
    let (status, body) = post(&at, "/Tickets", ticket(json!({})));
    assert_eq!(status, 200, "{body}");
    let id = body["itemId"].as_i64().expect("itemId");
    let (_, found) = post(
        &at,
        "/Tickets/query",
        json!({"filter": [{"op": "eq", "field": "companyID", "value": 1}, {"op": "noteq", "field": "status", "value": 5}]}),
    );
    assert_eq!(ids(&found), vec![id]);
    let item = &found["items"][0];
    assert_eq!(item["title"], "Backup failed");
    assert_eq!(item["queueID"], 8);
    assert_eq!(item["dueDateTime"], "2026-11-30T17:00:00Z");
    assert!(item["createDate"].is_string());

    let (status, body) = call(
        &at,
        "PATCH",
        &format!("{API}/Tickets"),
        Some(json!({"id": id, "status": 5})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"itemId": id}));
    assert_eq!(get(&at, &format!("/Tickets/{id}")).1["item"]["status"], 5);
    assert_eq!(at.state()["tickets"][0]["status"], 5);

    let (status, _) = call(
        &at,
        "PATCH",
        &format!("{API}/Tickets"),
        Some(json!({"id": id, "status": 3})),
    );
    assert_eq!(status, 500, "not a status");
    let (status, body) = call(
        &at,
        "PATCH",
        &format!("{API}/Tickets"),
        Some(json!({"id": 4242, "status": 5})),
    );
    assert_eq!(status, 404);
    assert!(error(&body).contains("4242"));
    let (status, _) = call(
        &at,
        "PATCH",
        &format!("{API}/Tickets/{id}"),
        Some(json!({"status": 5})),
    );
    assert_eq!(status, 405);
}

#[test]
fn ticket_picklists_list_queues_statuses_and_priorities() {
    let at = sim();
    let (status, body) = get(&at, "/Tickets/entityInformation/fields");
    assert_eq!(status, 200);
    let fields = body["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let queue = field("queueID");
    assert_eq!(queue["isPickList"], true);
    assert_eq!(queue["dataType"], "integer");
    assert_eq!(queue["picklistValues"][0]["value"], "8");
    assert_eq!(queue["picklistValues"][0]["label"], "Alerts");
    assert_eq!(queue["picklistValues"][0]["isActive"], true);
    assert_eq!(queue["picklistValues"][1]["isActive"], false);
    assert_eq!(queue["picklistValues"][0]["isDefaultValue"], false);
    let labels = |name: &str| -> Vec<(String, String)> {
        field(name)["picklistValues"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| {
                (
                    v["value"].as_str().unwrap_or_default().to_string(),
                    v["label"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        labels("status"),
        vec![("1".into(), "New".into()), ("5".into(), "Complete".into())]
    );
    assert_eq!(labels("priority").len(), 3);
    assert_eq!(field("title")["isPickList"], false);
    assert_eq!(field("title")["picklistValues"], Value::Null);
    let (_, info) = get(&at, "/tickets/entityInformation");
    assert_eq!(info["info"]["canCreate"], true);
    assert_eq!(info["info"]["canUpdate"], true);
}

#[test]
fn the_hourly_threshold_refuses_requests_with_retry_after() {
    let mut d = data();
    d.hourly_threshold = 3;
    let at = Autotask::new(d).expect("valid");
    for _ in 0..3 {
        assert_eq!(get(&at, "/Companies/1").0, 200);
    }
    let r = at.handle(
        &request("GET", &format!("{API}/Companies/1"), None),
        &Faults::default(),
        BASE,
    );
    assert_eq!(r.status, 429);
    let body: Value = serde_json::from_slice(&r.body).expect("json");
    assert!(error(&body).contains("threshold"), "{body}");
    let retry: u64 = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("Retry-After");
    assert!((3590..=3600).contains(&retry), "{retry}");

    let (status, info) = get(&at, "/ThresholdInformation");
    assert_eq!(status, 200, "the threshold information stays readable");
    assert_eq!(
        info,
        json!({"externalRequestThreshold": 3, "requestThresholdTimeframe": 60, "currentTimeframeRequestCount": 3})
    );

    // Requests older than an hour leave the window.
    let aged = Instant::now().checked_sub(HOUR + Duration::from_secs(1));
    if let Some(old) = aged {
        lock(&at.window).iter_mut().for_each(|t| *t = old);
        assert_eq!(get(&at, "/Companies/1").0, 200);
        assert_eq!(
            get(&at, "/ThresholdInformation").1["currentTimeframeRequestCount"],
            1
        );
    }
}

#[test]
fn more_than_three_concurrent_requests_to_one_endpoint_hit_the_thread_threshold() {
    let mut d = data();
    d.latency_millis = 300;
    let at = Autotask::new(d).expect("valid");
    let barrier = std::sync::Barrier::new(6);
    let results: Vec<SimResponse> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (at, barrier) = (&at, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    // Five on Companies, one on Contracts (another endpoint).
                    let path = if i == 5 {
                        "Contracts/10"
                    } else {
                        "Companies/1"
                    };
                    at.handle(
                        &request("GET", &format!("{API}/{path}"), None),
                        &Faults::default(),
                        BASE,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let refused: Vec<&SimResponse> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        refused.len(),
        2,
        "five concurrent on one endpoint, three allowed"
    );
    assert_eq!(results[5].status, 200);
    for r in refused {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert!(error(&body).starts_with("Thread Threshold Exceeded"));
        assert!(r.headers.contains(&("retry-after".into(), "1".into())));
    }
    // The slots are released afterwards.
    assert_eq!(get(&at, "/Companies/1").0, 200);
}

#[test]
fn unknown_routes_get_404_and_every_error_has_the_errors_shape() {
    let at = sim();
    let (status, body) = get(&at, "/Widgets/1");
    assert_eq!(status, 404);
    assert!(body["errors"].is_array());
    assert_eq!(call(&at, "GET", "/somewhere/else", None).0, 404);
    assert_eq!(get(&at, "/Companies/abc").0, 404);
    assert_eq!(
        call(&at, "DELETE", &format!("{API}/Tickets/1"), None).0,
        405
    );
    let injected = at.error(503, "Injected failure");
    assert_eq!(injected.status, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&injected.body).expect("json"),
        json!({"errors": ["Injected failure"]})
    );
}

#[test]
fn bodies_must_be_json_sent_as_json() {
    let at = sim();
    let mut req = request("POST", &format!("{API}/Tickets"), Some(ticket(json!({}))));
    req.headers.retain(|(k, _)| k != "content-type");
    assert_eq!(send(&at, &req, &Faults::default()).0, 415);
    req.headers.push((
        "content-type".into(),
        "application/json; charset=utf-8".into(),
    ));
    assert_eq!(send(&at, &req, &Faults::default()).0, 200);
    req.body = "{not json".into();
    let (status, body) = send(&at, &req, &Faults::default());
    assert_eq!(status, 500);
    assert!(body["errors"].is_array());
}

#[test]
fn the_data_file_is_validated() {
    let mut d = data();
    d.companies.push(d.companies[1].clone());
    let e = Autotask::new(d).err().expect("refused");
    assert!(e.contains("duplicate id 1"), "{e}");

    let mut d = data();
    d.contracts[0].company_id = 42;
    let e = Autotask::new(d).err().expect("refused");
    assert!(e.contains("company 42"), "{e}");

    let mut d = data();
    d.contract_service_units[0].service_id = 21;
    let e = Autotask::new(d).err().expect("refused");
    assert!(e.contains("service 21 is not on contract 10"), "{e}");

    let mut d = data();
    d.contract_service_units[1].start_date = "2026-11-15".parse().expect("date");
    let e = Autotask::new(d).err().expect("refused");
    assert!(e.contains("overlap"), "{e}");

    let e = serde_saphyr::from_str::<Data>(
        "username: u\nsecret: s\nintegrationCode: c\ncompanys: []\n",
    )
    .expect_err("unknown key refused");
    assert!(e.to_string().contains("companys"), "{e}");

    let d: Data =
        serde_json::from_value(json!({"username": "u", "secret": "s", "integrationCode": "c"}))
            .expect("minimal JSON data");
    assert_eq!(d.ticket_priorities.len(), 3);
    assert_eq!(d.hourly_threshold, 10_000);
    assert_eq!(d.max_concurrent_per_endpoint, 3);
}

#[test]
fn the_state_has_the_data_file_shape_and_loads_again() {
    let at = sim();
    let state = at.state();
    for key in [
        "companies",
        "contracts",
        "services",
        "contractServices",
        "contractServiceUnits",
        "contractServiceAdjustments",
        "queues",
        "ticketStatuses",
        "ticketPriorities",
        "tickets",
    ] {
        assert!(state[key].is_array(), "{key}");
    }
    assert_eq!(state["contracts"][0]["startDate"], "2026-01-01");
    assert_eq!(state["contractServiceUnits"][1]["contractServiceID"], 30);
    assert_eq!(state["contractServiceUnits"][1]["price"], 5.0);
    let again: Data = serde_json::from_value(state.clone()).expect("state is a data file");
    assert_eq!(Autotask::new(again).expect("valid").state(), state);
}

#[test]
fn api_items_list_the_same_fields_as_the_state() {
    let at = sim();
    let (_, created) = post(&at, "/Tickets", ticket(json!({})));
    let ticket_id = created["itemId"].as_i64().expect("itemId");
    let (status, body) = post(
        &at,
        &format!("/Tickets/{ticket_id}/Attachments"),
        json!({"parentID": ticket_id, "title": "Report", "fullPath": "report.csv", "attachmentType": "FILE_ATTACHMENT", "publish": 1, "data": "YSxiCjEsMgo="}),
    );
    assert_eq!(status, 200, "{body}");
    post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2026-11-15", "unitChange": 1}),
    );
    let state = at.state();
    let store = lock(&at.store);
    for kind in KINDS {
        let key = match kind {
            Kind::ContractServiceUnits => "contractServiceUnits".to_string(),
            other => {
                let p = other.path();
                format!("{}{}", p[..1].to_lowercase(), &p[1..])
            }
        };
        let rows = state[key.as_str()].as_array().expect("rows");
        assert!(!rows.is_empty(), "{key}");
        let rendered: Vec<Value> = on_table!(store, kind, table => table.values().map(|r| render(kind, r, None)).collect());
        for (row, item) in rows.iter().zip(&rendered) {
            let row = row.as_object().expect("object");
            for (name, value) in row {
                let api = &item[name.as_str()];
                match (value.as_str(), api.as_str()) {
                    (Some(s), Some(a)) if s.len() == 10 => {
                        assert!(a.starts_with(s), "{key}.{name}")
                    }
                    _ => assert_eq!(api, value, "{key}.{name}"),
                }
            }
            // An attachment also answers `ticketID` (its parent's id again).
            assert_eq!(
                item.as_object().expect("object").len(),
                row.len()
                    + usize::from(kind.has_udfs())
                    + usize::from(kind == Kind::TicketAttachments),
                "{key}"
            );
        }
    }
}

#[test]
fn unit_queries_pinned_to_contracts_page_and_count_like_full_scans() {
    let at = sim();
    post(
        &at,
        "/Contracts/10/ServiceAdjustments",
        json!({"contractID": 10, "serviceID": 20, "effectiveDate": "2027-01-05", "unitChange": 1}),
    );
    let pinned = json!([
        {"op": "in", "field": "contractID", "value": [10, 12]},
        {"op": "gte", "field": "units", "value": 0},
    ]);
    let scan = json!([
        {"op": "or", "items": [
            {"op": "eq", "field": "contractID", "value": 10},
            {"op": "eq", "field": "contractID", "value": 12},
        ]},
    ]);
    let all = |filter: &Value| {
        let (_, mut page) = post(
            &at,
            "/ContractServiceUnits/query",
            json!({"filter": filter, "MaxRecords": 1}),
        );
        let mut seen = ids(&page);
        while let Some(next) = page["pageDetails"]["nextPageUrl"].as_str() {
            page = call(&at, "POST", next, None).1;
            seen.extend(ids(&page));
        }
        seen
    };
    assert_eq!(all(&pinned).len(), 3);
    assert_eq!(all(&pinned), all(&scan));
    let count = |filter: &Value| {
        post(
            &at,
            "/ContractServiceUnits/query/count",
            json!({"filter": filter}),
        )
        .1
    };
    assert_eq!(count(&pinned), json!({"queryCount": 3}));
    assert_eq!(count(&scan), json!({"queryCount": 3}));
    assert_eq!(
        count(&json!([{"op": "eq", "field": "contractID", "value": 11}])),
        json!({"queryCount": 0})
    );
}
