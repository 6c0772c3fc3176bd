//! The Autotask REST API v1.0 client (`../shared/psa-api.md`): companies, contracts, services,
//! contract services and their units, tickets.
//!
//! - Zone: `GET {zone_discovery_url}?user={username}` (no authentication) gives the zone URL;
//!   the API base is `{url}v1.0/`. It is looked up on first use and again, once, when an API
//!   call answers 401 (a tenant moved to another zone); a second 401 is an authentication
//!   failure, reported without the secret. Concurrent 401s share one re-discovery.
//! - Every call carries `ApiIntegrationCode`, `UserName`, `Secret` (sensitive headers) and
//!   `Content-Type: application/json`.
//! - Queries: `POST {Entity}/query` with `{"filter":[...],"MaxRecords":500}`, then a `POST`
//!   of the same body to each `pageDetails.nextPageUrl` until it is null (the paging URL
//!   answers GET with 405; `docs/psa-contract.md`). The next-page URL is rebased onto the
//!   current zone's API base (the part after `/v1.0/` is kept), so the credentials only ever
//!   go to the discovered zone.
//! - Whole units: `unitChange` and `units` are 32-bit integers; callers round first.
//! - Text fields are cut to their documented lengths (ticket `title` 255, `description`
//!   8000 characters) rather than refused.
//! - Ticket attachments: `POST Tickets/{id}/Attachments` with base64 `data`; a file over
//!   [`MAX_ATTACHMENT_BYTES`] is refused before it is sent.
//! - At most [`MAX_CONCURRENT_PER_ENDPOINT`] requests per endpoint are on the wire at once
//!   (Autotask's thread limit). The endpoint of a path is its entity: the first segment after
//!   `v1.0/` (`Companies/query` -> `Companies`, `Tickets/entityInformation/fields` ->
//!   `Tickets`), and for a child collection `{Parent}/{id}/{Child}` the child entity, named
//!   as Autotask names it: the parent's singular followed by the child
//!   (`Contracts/7/Services` -> `ContractServices`, `Contracts/7/ServiceAdjustments` ->
//!   `ContractServiceAdjustments`). Compared case-insensitively.
//! - Dates: query literals and `effectiveDate` are `YYYY-MM-DD`; to find the units period
//!   containing a day, the filter is `startDate lte "{day}T23:59:59"` and
//!   `endDate gte "{day}"` (correct whether the server compares datetimes or ISO strings,
//!   and whether it stores dates with or without a time), and the row is checked again here.
//!   `dueDateTime` is RFC 3339 UTC (`2026-11-22T10:00:00Z`).
//! - Retries: see [`super::http`] and [`autotask_retryable`]: Autotask answers validation
//!   failures with 500, so a 500 is retried only when its body does not read as one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore};

use super::http::{
    Http, Outgoing, Replay, Reply, RetryPolicy, body_message, contains_ignore_ascii_case,
    percent_encode, thread_threshold_exceeded,
};
use super::model::{Agreement, Company, ContractService, Service, Ticket};
use crate::{Error, Result};

const PSA: &str = "Autotask";

/// Where zone discovery is asked.
pub const DEFAULT_ZONE_DISCOVERY_URL: &str =
    "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation";

/// Autotask's thread limit: concurrent requests per integration per endpoint.
pub const MAX_CONCURRENT_PER_ENDPOINT: usize = 3;

/// Largest page a query may ask for.
const MAX_RECORDS: u32 = 500;
/// A query longer than this many pages is a server that keeps answering `nextPageUrl`.
const MAX_PAGES: usize = 10_000;

/// The largest ticket `title` (characters).
pub const MAX_TITLE: usize = 255;
/// The largest ticket `description` (characters).
pub const MAX_DESCRIPTION: usize = 8000;
/// The largest attachment Ferry sends: Autotask documents "6 to 7 MB" per file, so the lower
/// bound is the one surely accepted.
pub const MAX_ATTACHMENT_BYTES: u64 = 6_000_000;

/// Ticket status "Complete".
pub const STATUS_COMPLETE: i64 = 5;
/// Contract type "Recurring Service", the only one that takes services.
pub const RECURRING_SERVICE: i64 = 7;
/// The status a new ticket gets, by picklist label.
pub const NEW_STATUS_LABEL: &str = "New";
/// The priority a new ticket gets, by picklist label.
pub const PRIORITY_LABEL: &str = "Medium";

/// Phrases (compared without case) that make a 500 a refusal rather than a server failure:
/// validation messages (`"dueDateTime is required.; on record number [0]."`), unknown users
/// and zones, references that do not exist, contract rules.
pub const REFUSAL_MARKERS: &[&str] = &[
    "is required",
    "on record number",
    "could not be determined",
    "not found",
    "unable to find",
    "does not exist",
    "services can only",
    "can only be",
    "not a valid",
    "invalid",
    "is not an active",
    "is not active",
    "is missing",
    "does not match",
    "already",
    "cannot",
];

/// Autotask's retry rule: 429 and "Thread Threshold Exceeded" (whatever the status), 501-599,
/// and a 500 only when no error message contains one of [`REFUSAL_MARKERS`]. Other 4xx never.
pub fn autotask_retryable(status: u16, body: &[u8]) -> bool {
    if thread_threshold_exceeded(body) {
        return true;
    }
    match status {
        429 => true,
        500 => !REFUSAL_MARKERS
            .iter()
            .any(|m| contains_ignore_ascii_case(body, m)),
        501..=599 => true,
        _ => false,
    }
}

/// As whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct AutotaskConfig {
    /// The API user (`UserName`).
    pub username: String,
    /// The API user's secret (`Secret`).
    pub secret: String,
    /// The integration's tracking identifier (`ApiIntegrationCode`).
    pub integration_code: String,
    /// Zone discovery, normally [`DEFAULT_ZONE_DISCOVERY_URL`].
    pub zone_discovery_url: String,
}

impl fmt::Debug for AutotaskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskConfig")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("integration_code", &"<redacted>")
            .field("zone_discovery_url", &self.zone_discovery_url)
            .finish()
    }
}

/// An Autotask client. Cheap to clone; clones share the connection pool, the zone, the
/// per-endpoint limits, the ticket picklists and the request counter.
#[derive(Clone)]
pub struct Autotask {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    username: String,
    discovery_url: String,
    /// ApiIntegrationCode, UserName, Secret, Content-Type, Accept.
    headers: HeaderMap,
    /// The current zone, once discovered.
    zone: tokio::sync::Mutex<Option<Zone>>,
    /// One semaphore per endpoint (lower-cased entity name).
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// `GET Tickets/entityInformation/fields`, read once.
    ticket_fields: OnceCell<TicketPicklists>,
}

impl fmt::Debug for Autotask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autotask")
            .field("username", &self.inner.username)
            .field("discovery_url", &self.inner.discovery_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct Zone {
    /// `{zone url}v1.0/`.
    base: String,
    /// How many discoveries produced it (1 for the first).
    generation: u64,
}

/// Where a request goes: a path under the API base, or a next-page URL.
#[derive(Clone, Copy, Debug)]
enum Target<'a> {
    Path(&'a str),
    Page(&'a str),
}

/// The endpoint (thread-limit key) of a path under `v1.0/`; see the module documentation.
pub fn endpoint_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let key = match segments.as_slice() {
        [parent, id, child, ..] if id.bytes().all(|b| b.is_ascii_digit()) => {
            let singular = parent.strip_suffix('s').unwrap_or(parent);
            format!("{singular}{child}")
        }
        [first, ..] => first.to_string(),
        [] => String::new(),
    };
    key.to_ascii_lowercase()
}

/// The part of `url` after `/v1.0/` (case-insensitive).
fn after_version(url: &str) -> Option<&str> {
    let marker = "/v1.0/";
    let at = url.to_ascii_lowercase().find(marker)?;
    Some(&url[at + marker.len()..])
}

/// `{zone url}v1.0/` (the zone URL ends with `atservicesrest/`).
fn api_base_of(zone_url: &str) -> String {
    let url = zone_url.trim();
    let url = if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    if url.to_ascii_lowercase().ends_with("/v1.0/") {
        url
    } else {
        format!("{url}v1.0/")
    }
}

/// `{"op":"eq","field":..,"value":..}`.
fn eq(field: &str, value: impl Into<Value>) -> Value {
    json!({"op": "eq", "field": field, "value": value.into()})
}

/// A day as sent in queries and bodies: `YYYY-MM-DD`.
pub fn at_date(date: jiff::civil::Date) -> String {
    date.to_string()
}

/// The filter of the units period containing `on` (see the module documentation).
pub fn units_filter(contract_id: i64, service_id: i64, on: jiff::civil::Date) -> Value {
    json!([
        eq("contractID", contract_id),
        eq("serviceID", service_id),
        {"op": "lte", "field": "startDate", "value": format!("{}T23:59:59", at_date(on))},
        {"op": "gte", "field": "endDate", "value": at_date(on)},
    ])
}

/// The day of an Autotask date or datetime (`2026-11-01`, `2026-11-01T00:00:00`, with or
/// without offset).
fn day_of(s: &str) -> Option<jiff::civil::Date> {
    s.trim().get(..10)?.parse().ok()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    page_details: Option<PageDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    next_page_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Single<T> {
    item: Option<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemId {
    item_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtCompany {
    id: i64,
    company_name: Option<String>,
    company_number: Option<String>,
    is_active: Option<bool>,
}

impl From<AtCompany> for Company {
    fn from(c: AtCompany) -> Company {
        let active = c.is_active.unwrap_or(false);
        Company {
            id: c.id,
            identifier: c.company_number.filter(|n| !n.is_empty()),
            name: c.company_name.unwrap_or_default(),
            active,
            status: if active { "Active" } else { "Inactive" }.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtContract {
    id: i64,
    contract_name: Option<String>,
    contract_type: Option<i64>,
    status: Option<i64>,
}

impl From<AtContract> for Agreement {
    fn from(c: AtContract) -> Agreement {
        let active = c.status == Some(1);
        Agreement {
            id: c.id,
            name: c.contract_name.unwrap_or_default(),
            active,
            status: match c.status {
                Some(1) => "Active".into(),
                Some(n) => format!("Inactive (status {n})"),
                None => "Inactive (no status)".into(),
            },
            kind: c.contract_type.map(|t| t.to_string()).unwrap_or_default(),
            accepts_services: c.contract_type == Some(RECURRING_SERVICE),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtService {
    id: i64,
    name: Option<String>,
    unit_price: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct AtContractService {
    id: i64,
    #[serde(rename = "contractID")]
    contract_id: i64,
    #[serde(rename = "serviceID")]
    service_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtUnits {
    #[serde(rename = "serviceID", default)]
    service_id: Option<i64>,
    start_date: Option<String>,
    end_date: Option<String>,
    units: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtAttachment {
    id: i64,
    title: Option<String>,
    full_path: Option<String>,
}

/// A file attached to a ticket, as listed (without its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Attachment id.
    pub id: i64,
    /// `title`.
    pub title: String,
    /// `fullPath`: the file name.
    pub file_name: String,
}

/// One ContractServiceUnits row: a service's units over a part of a billing period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnitRow {
    /// `serviceID`.
    pub service_id: i64,
    /// `startDate` (day).
    pub start: jiff::civil::Date,
    /// `endDate` (day).
    pub end: jiff::civil::Date,
    /// `units`.
    pub units: f64,
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
pub fn fit_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtTicket {
    id: i64,
    title: Option<String>,
    status: Option<i64>,
}

impl From<AtTicket> for Ticket {
    fn from(t: AtTicket) -> Ticket {
        Ticket {
            id: t.id,
            title: t.title.unwrap_or_default(),
            closed: t.status == Some(STATUS_COMPLETE),
        }
    }
}

/// One picklist entry: id, label, active.
#[derive(Clone, Debug, PartialEq)]
struct Pick {
    id: i64,
    label: String,
    active: bool,
}

/// The ticket picklists a create needs.
#[derive(Clone, Debug, Default)]
struct TicketPicklists {
    queues: Vec<Pick>,
    statuses: Vec<Pick>,
    priorities: Vec<Pick>,
}

impl TicketPicklists {
    /// From `{"fields":[{"name","picklistValues":[{"value","label","isActive"}]}]}`.
    fn parse(v: &Value) -> TicketPicklists {
        let picks = |name: &str| -> Vec<Pick> {
            v.get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|f| {
                    f.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .filter_map(|f| f.get("picklistValues").and_then(Value::as_array))
                .flatten()
                .filter_map(|p| {
                    let id = match p.get("value")? {
                        Value::String(s) => s.trim().parse().ok()?,
                        Value::Number(n) => n.as_i64()?,
                        _ => return None,
                    };
                    Some(Pick {
                        id,
                        label: p
                            .get("label")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        active: p.get("isActive").and_then(Value::as_bool).unwrap_or(true),
                    })
                })
                .collect()
        };
        TicketPicklists {
            queues: picks("queueID"),
            statuses: picks("status"),
            priorities: picks("priority"),
        }
    }
}

/// The active entry labelled `wanted` (any case; a number also matches an id).
fn resolve(picks: &[Pick], what: &str, wanted: &str) -> Result<i64> {
    let wanted = wanted.trim();
    let by_label = picks
        .iter()
        .find(|p| p.active && p.label.trim().eq_ignore_ascii_case(wanted));
    let by_id = || {
        let id: i64 = wanted.parse().ok()?;
        picks.iter().find(|p| p.active && p.id == id)
    };
    match by_label.or_else(by_id) {
        Some(p) => Ok(p.id),
        None => {
            let known: Vec<&str> = picks
                .iter()
                .filter(|p| p.active)
                .map(|p| p.label.as_str())
                .collect();
            Err(Error::Psa(format!(
                "Autotask: no active ticket {what} named \"{wanted}\" (active: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

impl Autotask {
    /// A client; nothing is sent until the first call.
    pub fn new(config: AutotaskConfig, retry: RetryPolicy) -> Result<Self> {
        let bad = |what: &str| Error::Psa(format!("Autotask: {what}"));
        if config.username.trim().is_empty() {
            return Err(bad("the API user name is empty"));
        }
        if config.secret.is_empty() {
            return Err(bad("the API secret is empty"));
        }
        if config.integration_code.trim().is_empty() {
            return Err(bad("the API integration code is empty"));
        }
        let discovery_url = config.zone_discovery_url.trim().to_string();
        if !(discovery_url.starts_with("https://") || discovery_url.starts_with("http://")) {
            return Err(bad(&format!(
                "the zone discovery URL `{discovery_url}` is not an http(s) URL"
            )));
        }
        let header = |name: &str, value: &str, sensitive: bool| -> Result<HeaderValue> {
            let mut v = HeaderValue::from_str(value.trim()).map_err(|_| {
                bad(&format!(
                    "the {name} contains characters a header cannot carry"
                ))
            })?;
            v.set_sensitive(sensitive);
            Ok(v)
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("apiintegrationcode"),
            header("integration code", &config.integration_code, true)?,
        );
        headers.insert(
            HeaderName::from_static("username"),
            header("user name", &config.username, false)?,
        );
        headers.insert(
            HeaderName::from_static("secret"),
            header("secret", &config.secret, true)?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = Http::new(
            PSA,
            retry,
            autotask_retryable,
            vec![config.secret, config.integration_code],
        )?;
        Ok(Autotask {
            inner: Arc::new(Inner {
                http,
                username: config.username.trim().to_string(),
                discovery_url,
                headers,
                zone: tokio::sync::Mutex::new(None),
                gates: Mutex::new(HashMap::new()),
                ticket_fields: OnceCell::new(),
            }),
        })
    }

    /// HTTP requests sent so far (retries and zone discoveries included).
    pub fn requests(&self) -> u64 {
        self.inner.http.requests()
    }

    /// Companies named `name` (`companyName eq`; all, active or not).
    pub async fn companies_by_name(&self, name: &str) -> Result<Vec<Company>> {
        let rows: Vec<AtCompany> = self
            .query("Companies", json!([eq("companyName", name)]))
            .await?;
        Ok(rows.into_iter().map(Company::from).collect())
    }

    /// The company `id`; `None` when Autotask answers `{"item":null}`.
    pub async fn company(&self, id: i64) -> Result<Option<Company>> {
        let row: Single<AtCompany> = self.get(&format!("Companies/{id}")).await?;
        Ok(row.item.map(Company::from))
    }

    /// The contracts of the company (`companyID eq`), any status.
    pub async fn contracts(&self, company_id: i64) -> Result<Vec<Agreement>> {
        let rows: Vec<AtContract> = self
            .query("Contracts", json!([eq("companyID", company_id)]))
            .await?;
        Ok(rows.into_iter().map(Agreement::from).collect())
    }

    /// Catalog services named `name`.
    pub async fn services_by_name(&self, name: &str) -> Result<Vec<Service>> {
        let rows: Vec<AtService> = self.query("Services", json!([eq("name", name)])).await?;
        Ok(rows
            .into_iter()
            .map(|s| Service {
                id: s.id,
                name: s.name.unwrap_or_default(),
                unit_price: s.unit_price,
            })
            .collect())
    }

    /// The contract service of `service_id` on the contract, if it is attached.
    pub async fn contract_service(
        &self,
        contract_id: i64,
        service_id: i64,
    ) -> Result<Option<ContractService>> {
        let rows: Vec<AtContractService> = self
            .query(
                "ContractServices",
                json!([eq("contractID", contract_id), eq("serviceID", service_id)]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .find(|r| r.contract_id == contract_id && r.service_id == service_id)
            .map(|r| ContractService {
                id: r.id,
                contract_id: r.contract_id,
                service_id: r.service_id,
            }))
    }

    /// Every contract service of the contract: one lookup for a mapping's services.
    pub async fn contract_services(&self, contract_id: i64) -> Result<Vec<ContractService>> {
        let rows: Vec<AtContractService> = self
            .query("ContractServices", json!([eq("contractID", contract_id)]))
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.contract_id == contract_id)
            .map(|r| ContractService {
                id: r.id,
                contract_id: r.contract_id,
                service_id: r.service_id,
            })
            .collect())
    }

    /// Every units row (one per service and billing period, split by mid-period adjustments)
    /// of the contract, in one query.
    pub async fn unit_rows(&self, contract_id: i64) -> Result<Vec<UnitRow>> {
        let rows: Vec<AtUnits> = self
            .query(
                "ContractServiceUnits",
                json!([eq("contractID", contract_id)]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(UnitRow {
                    service_id: r.service_id?,
                    start: r.start_date.as_deref().and_then(day_of)?,
                    end: r.end_date.as_deref().and_then(day_of)?,
                    units: r.units.unwrap_or(0.0),
                })
            })
            .collect())
    }

    /// Attaches the service to the contract (`POST /Contracts/{id}/Services`; `unitPrice`
    /// omitted when `None`); returns the contract service id. Sent once (see
    /// [`super::http::Replay`]).
    pub async fn add_contract_service(
        &self,
        contract_id: i64,
        service_id: i64,
        unit_price: Option<f64>,
    ) -> Result<i64> {
        let mut body = json!({"contractID": contract_id, "serviceID": service_id});
        if let Some(p) = unit_price {
            body["unitPrice"] = json!(p);
        }
        self.create(&format!("Contracts/{contract_id}/Services"), &body)
            .await
    }

    /// Units of the ContractServiceUnits row whose period contains `on` (0 when there is
    /// none; the latest-starting one should periods overlap).
    pub async fn current_units(
        &self,
        contract_id: i64,
        service_id: i64,
        on: jiff::civil::Date,
    ) -> Result<f64> {
        let rows: Vec<AtUnits> = self
            .query(
                "ContractServiceUnits",
                units_filter(contract_id, service_id, on),
            )
            .await?;
        let containing = rows
            .into_iter()
            .filter_map(|r| {
                let start = r.start_date.as_deref().and_then(day_of)?;
                let end = r.end_date.as_deref().and_then(day_of)?;
                (start <= on && on <= end).then_some((start, r.units.unwrap_or(0.0)))
            })
            .max_by_key(|(start, _)| *start);
        Ok(containing.map_or(0.0, |(_, units)| units))
    }

    /// Changes the units by `unit_change` whole units from `effective`
    /// (`POST /Contracts/{id}/ServiceAdjustments`); returns the itemId. Sent once: the change
    /// is a delta, and repeating an applied one would double it.
    pub async fn adjust_units(
        &self,
        contract_id: i64,
        service_id: i64,
        effective: jiff::civil::Date,
        unit_change: i32,
        adjusted_unit_price: Option<f64>,
    ) -> Result<i64> {
        let mut body = json!({
            "contractID": contract_id,
            "serviceID": service_id,
            "effectiveDate": at_date(effective),
            "unitChange": unit_change,
        });
        if let Some(p) = adjusted_unit_price {
            body["adjustedUnitPrice"] = json!(p);
        }
        self.create(
            &format!("Contracts/{contract_id}/ServiceAdjustments"),
            &body,
        )
        .await
    }

    /// Tickets of the company with this exact title that are not Complete (status 5).
    pub async fn open_tickets(&self, company_id: i64, title: &str) -> Result<Vec<Ticket>> {
        let rows: Vec<AtTicket> = self
            .query(
                "Tickets",
                json!([
                    eq("companyID", company_id),
                    eq("title", title),
                    {"op": "noteq", "field": "status", "value": STATUS_COMPLETE},
                ]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| !t.closed && t.title == title)
            .collect())
    }

    /// Opens a ticket in `queue` (picklist label, or id), status "New", priority "Medium",
    /// due in a day. Sent once (see [`super::http::Replay`]).
    pub async fn create_ticket(
        &self,
        company_id: i64,
        queue: &str,
        title: &str,
        description: &str,
    ) -> Result<Ticket> {
        let picks = self.ticket_picklists().await?;
        let queue_id = resolve(&picks.queues, "queue", queue)?;
        let status = resolve(&picks.statuses, "status", NEW_STATUS_LABEL)?;
        let priority = resolve(&picks.priorities, "priority", PRIORITY_LABEL)?;
        let due = crate::clock::now()?
            .checked_add(jiff::SignedDuration::from_hours(24))
            .map_err(|e| Error::Psa(format!("Autotask: due date: {e}")))?;
        let title = fit_chars(title, MAX_TITLE);
        let description = fit_chars(description, MAX_DESCRIPTION);
        let body = json!({
            "companyID": company_id,
            "title": title,
            "description": description,
            "status": status,
            "priority": priority,
            "queueID": queue_id,
            "dueDateTime": due.to_string(),
        });
        let id = self.create("Tickets", &body).await?;
        Ok(Ticket {
            id,
            title,
            closed: false,
        })
    }

    /// Every ticket of the company with this exact title, open or not (`title eq`, compared
    /// again here: Autotask compares without case).
    pub async fn tickets_titled(&self, company_id: i64, title: &str) -> Result<Vec<Ticket>> {
        let title = fit_chars(title, MAX_TITLE);
        let rows: Vec<AtTicket> = self
            .query(
                "Tickets",
                json!([eq("companyID", company_id), eq("title", title.as_str())]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| t.title == title)
            .collect())
    }

    /// The files attached to the ticket (`TicketAttachments/query` by `parentID`; the bytes
    /// are not listed).
    pub async fn ticket_attachments(&self, ticket_id: i64) -> Result<Vec<Attachment>> {
        let rows: Vec<AtAttachment> = self
            .query("TicketAttachments", json!([eq("parentID", ticket_id)]))
            .await?;
        Ok(rows
            .into_iter()
            .map(|a| Attachment {
                id: a.id,
                title: a.title.unwrap_or_default(),
                file_name: a.full_path.unwrap_or_default(),
            })
            .collect())
    }

    /// Attaches `bytes` to the ticket as `file_name`, titled `title`
    /// (`POST Tickets/{id}/Attachments`, `FILE_ATTACHMENT`, published to all users). A file
    /// over [`MAX_ATTACHMENT_BYTES`] is refused here, before anything is sent. Sent once.
    pub async fn attach_to_ticket(
        &self,
        ticket_id: i64,
        title: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<i64> {
        if bytes.len() as u64 > MAX_ATTACHMENT_BYTES {
            return Err(Error::Psa(format!(
                "Autotask: `{file_name}` is {} bytes; Autotask accepts attachments of at most \
                 6 to 7 MB (Ferry sends at most {MAX_ATTACHMENT_BYTES} bytes), so it was not sent",
                bytes.len()
            )));
        }
        let body = json!({
            "parentID": ticket_id,
            "attachmentType": "FILE_ATTACHMENT",
            "title": fit_chars(title, MAX_TITLE),
            "fullPath": fit_chars(file_name, MAX_TITLE),
            "publish": 1,
            "data": super::http::base64(bytes),
        });
        self.create(&format!("Tickets/{ticket_id}/Attachments"), &body)
            .await
    }

    /// Completes the ticket: `PATCH /Tickets {id, status: 5}`.
    pub async fn close_ticket(&self, id: i64) -> Result<()> {
        let body = json!({"id": id, "status": STATUS_COMPLETE});
        let label = "/Tickets";
        let reply = self
            .exchange(
                Method::PATCH,
                Target::Path("Tickets"),
                Some(&body),
                Replay::Safe,
                label,
            )
            .await?;
        self.expect::<Value>(&Method::PATCH, label, &reply)?;
        Ok(())
    }

    /// The ticket picklists, read once.
    async fn ticket_picklists(&self) -> Result<&TicketPicklists> {
        self.inner
            .ticket_fields
            .get_or_try_init(|| async {
                let v: Value = self.get("Tickets/entityInformation/fields").await?;
                Ok(TicketPicklists::parse(&v))
            })
            .await
    }

    /// `GET {path}` as `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let label = format!("/{path}");
        let reply = self
            .exchange(Method::GET, Target::Path(path), None, Replay::Safe, &label)
            .await?;
        self.expect(&Method::GET, &label, &reply)
    }

    /// `POST {path}` of a new record; its `itemId`.
    async fn create(&self, path: &str, body: &Value) -> Result<i64> {
        let label = format!("/{path}");
        let reply = self
            .exchange(
                Method::POST,
                Target::Path(path),
                Some(body),
                Replay::CreateOnce,
                &label,
            )
            .await?;
        let id: ItemId = self.expect(&Method::POST, &label, &reply)?;
        Ok(id.item_id)
    }

    /// Every item of a query, page by page.
    async fn query<T: DeserializeOwned>(&self, entity: &str, filter: Value) -> Result<Vec<T>> {
        let path = format!("{entity}/query");
        let label = format!("/{path}");
        let body = json!({"filter": filter, "MaxRecords": MAX_RECORDS});
        let mut reply = self
            .exchange(
                Method::POST,
                Target::Path(&path),
                Some(&body),
                Replay::Safe,
                &label,
            )
            .await?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.expect(&Method::POST, &label, &reply)?;
            out.extend(page.items);
            let next = page
                .page_details
                .and_then(|d| d.next_page_url)
                .filter(|u| !u.trim().is_empty());
            let Some(next) = next else {
                return Ok(out);
            };
            reply = self
                .exchange(
                    Method::POST,
                    Target::Page(&next),
                    Some(&body),
                    Replay::Safe,
                    &label,
                )
                .await?;
        }
        Err(Error::Psa(format!(
            "Autotask POST {label}: more than {MAX_PAGES} pages; giving up"
        )))
    }

    /// The body of a 2xx reply as `T`; an error for any other.
    fn expect<T: DeserializeOwned>(
        &self,
        method: &Method,
        label: &str,
        reply: &Reply,
    ) -> Result<T> {
        if !reply.ok() {
            return Err(self.inner.http.status_error(method, label, reply));
        }
        self.inner.http.parse(method, label, reply)
    }

    /// The current zone, discovering it on first use.
    async fn zone(&self) -> Result<Zone> {
        let mut zone = self.inner.zone.lock().await;
        if let Some(z) = zone.as_ref() {
            return Ok(z.clone());
        }
        let z = Zone {
            base: self.discover().await?,
            generation: 1,
        };
        *zone = Some(z.clone());
        Ok(z)
    }

    /// A zone newer than `stale`: discovered again, unless another task already did.
    async fn rediscover(&self, stale: &Zone) -> Result<Zone> {
        let mut zone = self.inner.zone.lock().await;
        if let Some(z) = zone.as_ref()
            && z.generation != stale.generation
        {
            return Ok(z.clone());
        }
        let z = Zone {
            base: self.discover().await?,
            generation: stale.generation + 1,
        };
        tracing::debug!(
            psa = PSA,
            generation = z.generation,
            "Autotask zone discovered again after a 401"
        );
        *zone = Some(z.clone());
        Ok(z)
    }

    /// `GET {discovery}?user=...` -> `{url}v1.0/`.
    async fn discover(&self) -> Result<String> {
        let inner = &self.inner;
        let sep = if inner.discovery_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{sep}user={}",
            inner.discovery_url,
            percent_encode(&inner.username)
        );
        let label = "zoneInformation";
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let reply = inner
            .http
            .send(Outgoing {
                method: Method::GET,
                url: &url,
                label,
                headers: &headers,
                body: None,
                replay: Replay::Safe,
                gate: None,
            })
            .await?;
        if !reply.ok() {
            if contains_ignore_ascii_case(&reply.body, "could not be determined") {
                return Err(Error::Psa(inner.http.scrub(format!(
                    "Autotask zone discovery found no zone for API user `{}` ({}); is the user \
                     name right?",
                    inner.username,
                    body_message(&reply.body)
                ))));
            }
            return Err(Error::Psa(inner.http.scrub(format!(
                "Autotask zone discovery for API user `{}`: HTTP {}: {}",
                inner.username,
                reply.status,
                body_message(&reply.body)
            ))));
        }
        #[derive(Deserialize)]
        struct ZoneInfo {
            url: Option<String>,
        }
        let info: ZoneInfo = inner.http.parse(&Method::GET, label, &reply)?;
        match info.url.filter(|u| !u.trim().is_empty()) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(api_base_of(&u)),
            _ => Err(Error::Psa(format!(
                "Autotask zone discovery for API user `{}` answered no zone URL",
                inner.username
            ))),
        }
    }

    /// The semaphore of an endpoint.
    fn gate(&self, endpoint: &str) -> Arc<Semaphore> {
        let mut gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_CONCURRENT_PER_ENDPOINT)))
            .clone()
    }

    /// One API request in the current zone; on a 401 the zone is discovered again and the
    /// request sent once more; a second 401 is an authentication error. Other replies are
    /// returned.
    async fn exchange(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<&Value>,
        replay: Replay,
        label: &str,
    ) -> Result<Reply> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let zone = self.zone().await?;
        let reply = self
            .send_in(&zone, &method, target, body.clone(), replay, label)
            .await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let fresh = self.rediscover(&zone).await?;
        let reply = self
            .send_in(&fresh, &method, target, body, replay, label)
            .await?;
        if reply.status == 401 {
            return Err(Error::Psa(format!(
                "Autotask {method} {label}: HTTP 401: the API secret of user `{}` was refused, \
                 also after looking up the zone again (expired or revoked?); check the API \
                 user's secret and integration code",
                self.inner.username
            )));
        }
        Ok(reply)
    }

    async fn send_in(
        &self,
        zone: &Zone,
        method: &Method,
        target: Target<'_>,
        body: Option<Bytes>,
        replay: Replay,
        label: &str,
    ) -> Result<Reply> {
        let rest = match target {
            Target::Path(p) => p,
            Target::Page(url) => after_version(url).ok_or_else(|| {
                Error::Psa(format!(
                    "Autotask POST {label}: the nextPageUrl is not under /v1.0/"
                ))
            })?,
        };
        let url = format!("{}{rest}", zone.base);
        let gate = self.gate(&endpoint_of(rest));
        self.inner
            .http
            .send(Outgoing {
                method: method.clone(),
                url: &url,
                label,
                headers: &self.inner.headers,
                body,
                replay,
                gate: Some(&gate),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::http::fake::{Answer, Fake, Seen};
    use super::super::http::should_retry;
    use super::*;

    const SECRET: &str = "Sup3r$ecretValue";
    const CODE: &str = "INTEGRATIONCODE123";
    const USER: &str = "api@acme.example";

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn client(url: &str) -> Autotask {
        Autotask::new(
            AutotaskConfig {
                username: USER.into(),
                secret: SECRET.into(),
                integration_code: CODE.into(),
                zone_discovery_url: format!("{url}/atservicesrest/v1.0/zoneInformation"),
            },
            policy(),
        )
        .unwrap()
    }

    /// The zone answer for zone `n` of the fake at `url`.
    fn zone(url: &str, n: u32) -> Answer {
        Answer::json(
            200,
            json!({"zoneName": format!("Zone {n}"), "url": format!("{url}/zone{n}/atservicesrest/"), "ci": n}),
        )
    }

    fn items(items: Value) -> Answer {
        Answer::json(
            200,
            json!({"items": items, "pageDetails": {"count": 1, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": null}}),
        )
    }

    /// A fake whose handler also knows its own URL.
    async fn fake<F, Fut>(handler: F) -> Fake
    where
        F: Fn(Seen, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let url = Arc::new(std::sync::OnceLock::<String>::new());
        let known = url.clone();
        let fake = Fake::start(move |s| handler(s, known.get().cloned().unwrap_or_default())).await;
        url.set(fake.url.clone()).unwrap();
        fake
    }

    #[test]
    fn a_500_is_retried_unless_it_reads_as_a_validation_or_lookup_failure() {
        let r = autotask_retryable;
        assert!(r(500, br#"{"errors":["Injected failure"]}"#));
        assert!(r(500, b""));
        assert!(r(503, br#"{"errors":["is required"]}"#));
        assert!(r(429, b"{}"));
        assert!(r(400, br#"{"errors":["Thread Threshold Exceeded"]}"#));
        for refusal in [
            "dueDateTime is required.; on record number [0].",
            "Zone information could not be determined",
            "Unable to find an API user named x.",
            "The ApiIntegrationCode header is missing or is not a valid integration code.",
            "Services can only be added to Recurring Service contracts (contractType 7).",
            "Contract 9 does not exist.",
            "Resource not found",
        ] {
            let body = json!({"errors": [refusal]}).to_string();
            assert!(!r(500, body.as_bytes()), "{refusal}");
        }
        for status in [400, 401, 403, 404, 405, 409] {
            assert!(!r(status, b"{}"), "{status}");
        }
        assert!(!should_retry(r, Replay::CreateOnce, 500, b"{}"));
        assert!(should_retry(r, Replay::CreateOnce, 429, b"{}"));
    }

    #[test]
    fn endpoints_are_entities_and_child_collections_are_their_own_entity() {
        assert_eq!(endpoint_of("Companies/query"), "companies");
        assert_eq!(endpoint_of("Companies/query/next?paging=1"), "companies");
        assert_eq!(endpoint_of("Companies/12"), "companies");
        assert_eq!(endpoint_of("Tickets/entityInformation/fields"), "tickets");
        assert_eq!(endpoint_of("Tickets"), "tickets");
        assert_eq!(endpoint_of("Contracts/7/Services"), "contractservices");
        assert_eq!(
            endpoint_of("Contracts/7/ServiceAdjustments"),
            "contractserviceadjustments"
        );
        assert_eq!(
            endpoint_of("ContractServiceUnits/query"),
            "contractserviceunits"
        );
    }

    #[test]
    fn next_page_urls_are_rebased_after_v1_0() {
        assert_eq!(
            after_version(
                "https://ws5.autotask.net/ATServicesRest/V1.0/Companies/query/next?paging=x"
            ),
            Some("Companies/query/next?paging=x")
        );
        assert_eq!(after_version("https://elsewhere/next"), None);
        assert_eq!(
            api_base_of("https://webservices5.autotask.net/atservicesrest/"),
            "https://webservices5.autotask.net/atservicesrest/v1.0/"
        );
        assert_eq!(
            api_base_of("http://h/z/atservicesrest"),
            "http://h/z/atservicesrest/v1.0/"
        );
        assert_eq!(
            api_base_of("http://h/z/atservicesrest/v1.0/"),
            "http://h/z/atservicesrest/v1.0/"
        );
    }

    #[test]
    fn the_units_filter_finds_the_period_containing_the_day() {
        assert_eq!(
            units_filter(3, 4, jiff::civil::date(2026, 11, 21)),
            json!([
                {"op": "eq", "field": "contractID", "value": 3},
                {"op": "eq", "field": "serviceID", "value": 4},
                {"op": "lte", "field": "startDate", "value": "2026-11-21T23:59:59"},
                {"op": "gte", "field": "endDate", "value": "2026-11-21"},
            ])
        );
        assert_eq!(
            day_of("2026-11-01T00:00:00Z"),
            Some(jiff::civil::date(2026, 11, 1))
        );
        assert_eq!(day_of("2026-11-30"), Some(jiff::civil::date(2026, 11, 30)));
        assert_eq!(day_of("junk"), None);
    }

    #[test]
    fn contracts_accept_services_only_when_recurring() {
        let c = |t: i64, s: i64| {
            Agreement::from(AtContract {
                id: 1,
                contract_name: Some("C".into()),
                contract_type: Some(t),
                status: Some(s),
            })
        };
        let ok = c(7, 1);
        assert!(ok.active && ok.accepts_services);
        assert_eq!((ok.kind.as_str(), ok.status.as_str()), ("7", "Active"));
        let other = c(1, 0);
        assert!(!other.active && !other.accepts_services);
        assert_eq!(other.status, "Inactive (status 0)");
    }

    #[test]
    fn picklists_resolve_by_label_or_id_and_name_the_choices_when_missing() {
        let v = json!({"fields": [
            {"name": "queueID", "picklistValues": [
                {"value": "29683354", "label": "Client Portal", "isActive": true},
                {"value": "29683355", "label": "Old Queue", "isActive": false},
            ]},
            {"name": "status", "picklistValues": [{"value": "1", "label": "New"}, {"value": 5, "label": "Complete"}]},
        ]});
        let p = TicketPicklists::parse(&v);
        assert_eq!(
            resolve(&p.queues, "queue", "client portal").unwrap(),
            29683354
        );
        assert_eq!(resolve(&p.queues, "queue", "29683354").unwrap(), 29683354);
        assert_eq!(resolve(&p.statuses, "status", "New").unwrap(), 1);
        let e = resolve(&p.queues, "queue", "Old Queue")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Autotask: no active ticket queue named \"Old Queue\" (active: Client Portal)"
        );
        let e = resolve(&p.priorities, "priority", "Medium")
            .unwrap_err()
            .to_string();
        assert!(e.contains("(active: none)"), "{e}");
    }

    #[test]
    fn the_configuration_s_debug_output_hides_the_secret() {
        let c = AutotaskConfig {
            username: USER.into(),
            secret: SECRET.into(),
            integration_code: CODE.into(),
            zone_discovery_url: DEFAULT_ZONE_DISCOVERY_URL.into(),
        };
        let s = format!("{c:?} {:?}", client("http://127.0.0.1:9"));
        assert!(!s.contains(SECRET) && !s.contains(CODE), "{s}");
    }

    #[tokio::test]
    async fn queries_carry_the_credentials_and_follow_next_page_urls() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            if s.method == "POST" && !s.path().ends_with("/next") {
                // The next page in the real service's spelling, on another host name.
                return Answer::json(200, json!({
                    "items": [{"id": 1, "companyName": "Acme", "companyNumber": "A1", "isActive": true}],
                    "pageDetails": {"nextPageUrl": "https://other.example/ATServicesRest/V1.0/Companies/query/next?paging=%7B%7D"},
                }));
            }
            items(json!([{"id": 2, "companyName": "Acme", "isActive": false}]))
        })
        .await;
        let at = client(&fake.url);
        let found = at.companies_by_name("Acme").await.unwrap();
        assert_eq!(
            found.iter().map(|c| (c.id, c.active)).collect::<Vec<_>>(),
            [(1, true), (2, false)]
        );
        assert_eq!(found[0].identifier.as_deref(), Some("A1"));
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(at.requests(), 3);
        assert_eq!(
            seen[0].uri,
            "/atservicesrest/v1.0/zoneInformation?user=api%40acme.example"
        );
        assert!(seen[0].header("secret").is_none());
        let q = &seen[1];
        assert_eq!(q.uri, "/zone1/atservicesrest/v1.0/Companies/query");
        assert_eq!(
            q.json(),
            json!({"filter": [{"op": "eq", "field": "companyName", "value": "Acme"}], "MaxRecords": 500})
        );
        assert_eq!(q.header("secret").as_deref(), Some(SECRET));
        assert_eq!(q.header("apiintegrationcode").as_deref(), Some(CODE));
        assert_eq!(q.header("username").as_deref(), Some(USER));
        assert_eq!(
            q.header("content-type").as_deref(),
            Some("application/json")
        );
        // The next page is posted with the first page's query, in the discovered zone.
        assert_eq!(seen[2].method, "POST");
        assert_eq!(
            seen[2].uri,
            "/zone1/atservicesrest/v1.0/Companies/query/next?paging=%7B%7D"
        );
        assert_eq!(seen[2].json(), q.json());
        assert_eq!(seen[2].header("secret").as_deref(), Some(SECRET));
    }

    #[tokio::test]
    async fn a_401_triggers_exactly_one_zone_rediscovery_then_succeeds() {
        let lookups = Arc::new(AtomicU32::new(0));
        let counted = lookups.clone();
        let fake = fake(move |s: Seen, url: String| {
            let counted = counted.clone();
            async move {
                if s.path().ends_with("zoneInformation") {
                    let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    return zone(&url, n);
                }
                if s.path().starts_with("/zone1/") {
                    return Answer::json(401, json!({"errors": ["Authentication failed"]}));
                }
                Answer::json(
                    200,
                    json!({"item": {"id": 5, "companyName": "Acme", "isActive": true}}),
                )
            }
        })
        .await;
        let at = client(&fake.url);
        let c = at.company(5).await.unwrap().unwrap();
        assert_eq!(c.name, "Acme");
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        // The new zone is kept.
        at.company(5).await.unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        let paths: Vec<String> = fake.seen().iter().map(|s| s.path().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/atservicesrest/v1.0/zoneInformation",
                "/zone1/atservicesrest/v1.0/Companies/5",
                "/atservicesrest/v1.0/zoneInformation",
                "/zone2/atservicesrest/v1.0/Companies/5",
                "/zone2/atservicesrest/v1.0/Companies/5",
            ]
        );
    }

    #[tokio::test]
    async fn an_expired_secret_fails_after_one_rediscovery_without_naming_the_secret() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            Answer::json(
                401,
                json!({"errors": [format!("Secret {SECRET} is not valid")]}),
            )
        })
        .await;
        let at = client(&fake.url);
        let e = at.company(5).await.unwrap_err().to_string();
        assert!(e.contains(USER) && e.contains("refused"), "{e}");
        assert!(!e.contains(SECRET) && !e.contains(CODE), "{e}");
        assert_eq!(fake.seen().len(), 4);
    }

    #[tokio::test]
    async fn an_unknown_user_is_reported_by_name_and_not_retried() {
        let fake = fake(|_s: Seen, _url: String| async move {
            Answer::json(
                500,
                json!({"errors": ["Zone information could not be determined"]}),
            )
        })
        .await;
        let at = client(&fake.url);
        let e = at.companies_by_name("Acme").await.unwrap_err().to_string();
        assert!(e.contains(USER) && e.contains("no zone"), "{e}");
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn a_validation_500_is_not_retried_and_its_message_is_reported() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            Answer::json(500, json!({"errors": ["Service 9 is not on contract 3; add it with POST /Contracts/3/Services first.; on record number [0]."]}))
        })
        .await;
        let at = client(&fake.url);
        let e = at
            .adjust_units(3, 9, jiff::civil::date(2026, 11, 1), 5, None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Autotask POST /Contracts/3/ServiceAdjustments: HTTP 500: Service 9 is not on contract 3; add it with POST /Contracts/3/Services first.; on record number [0]."
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1].json(),
            json!({"contractID": 3, "serviceID": 9, "effectiveDate": "2026-11-01", "unitChange": 5})
        );
    }

    #[tokio::test]
    async fn a_thread_threshold_refusal_is_retried() {
        let n = Arc::new(AtomicU32::new(0));
        let fake = fake(move |s: Seen, url: String| {
            let n = n.clone();
            async move {
                if s.path().ends_with("zoneInformation") {
                    return zone(&url, 1);
                }
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Answer::json(500, json!({"errors": ["Thread Threshold Exceeded"]}));
                }
                Answer::json(200, json!({"itemId": 77}))
            }
        })
        .await;
        let at = client(&fake.url);
        let id = at.add_contract_service(3, 9, Some(12.5)).await.unwrap();
        assert_eq!(id, 77);
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[2].path(),
            "/zone1/atservicesrest/v1.0/Contracts/3/Services"
        );
        assert_eq!(
            seen[2].json(),
            json!({"contractID": 3, "serviceID": 9, "unitPrice": 12.5})
        );
    }

    #[tokio::test]
    async fn at_most_three_requests_per_endpoint_are_in_flight() {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), max.clone());
        let fake = fake(move |s: Seen, url: String| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                if s.path().ends_with("zoneInformation") {
                    return zone(&url, 1);
                }
                let current = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(60)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                items(json!([]))
            }
        })
        .await;
        let at = client(&fake.url);
        at.companies_by_name("warm-up").await.unwrap();
        let tasks: Vec<_> = (0..9)
            .map(|i| {
                let at = at.clone();
                tokio::spawn(async move { at.companies_by_name(&format!("C{i}")).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let max = max.load(Ordering::SeqCst);
        assert!(max <= 3, "{max} in flight");
        assert!(max >= 2, "requests ran one at a time ({max})");
        assert_eq!(fake.seen().len(), 11);
    }

    #[tokio::test]
    async fn tickets_are_created_with_resolved_picklists_and_a_due_date() {
        let fake = fake(|s: Seen, url: String| async move {
            let p = s.path().to_string();
            if p.ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            if p.ends_with("/Tickets/entityInformation/fields") {
                return Answer::json(200, json!({"fields": [
                    {"name": "queueID", "isPickList": true, "picklistValues": [{"value": "29683354", "label": "Client Portal", "isActive": true}]},
                    {"name": "status", "isPickList": true, "picklistValues": [{"value": "1", "label": "New", "isActive": true}, {"value": "5", "label": "Complete", "isActive": true}]},
                    {"name": "priority", "isPickList": true, "picklistValues": [{"value": "2", "label": "Medium", "isActive": true}]},
                ]}));
            }
            if p.ends_with("/Tickets/query") {
                return items(json!([
                    {"id": 1, "title": "Usage sync failed", "status": 1},
                    {"id": 2, "title": "Usage sync failed", "status": 5},
                ]));
            }
            Answer::json(200, json!({"itemId": 42}))
        })
        .await;
        let at = client(&fake.url);
        let t = at
            .create_ticket(250, "Client Portal", "Usage sync failed", "why")
            .await
            .unwrap();
        assert_eq!((t.id, t.closed), (42, false));
        at.create_ticket(250, "Client Portal", "Other", "why")
            .await
            .unwrap();
        let open = at.open_tickets(250, "Usage sync failed").await.unwrap();
        assert_eq!(open.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        at.close_ticket(1).await.unwrap();
        let seen = fake.seen();
        let fields = seen
            .iter()
            .filter(|s| s.path().ends_with("/fields"))
            .count();
        assert_eq!(fields, 1, "picklists are read once");
        let create = seen
            .iter()
            .find(|s| s.method == "POST" && s.path().ends_with("/Tickets"))
            .unwrap();
        let body = create.json();
        assert_eq!(body["companyID"], 250);
        assert_eq!(body["queueID"], 29683354);
        assert_eq!(body["status"], 1);
        assert_eq!(body["priority"], 2);
        assert_eq!(body["title"], "Usage sync failed");
        let due: jiff::Timestamp = body["dueDateTime"].as_str().unwrap().parse().unwrap();
        assert!(due > jiff::Timestamp::now());
        assert!(body["dueDateTime"].as_str().unwrap().ends_with('Z'));
        let query = seen
            .iter()
            .find(|s| s.path().ends_with("/Tickets/query"))
            .unwrap();
        assert_eq!(
            query.json()["filter"],
            json!([
                {"op": "eq", "field": "companyID", "value": 250},
                {"op": "eq", "field": "title", "value": "Usage sync failed"},
                {"op": "noteq", "field": "status", "value": 5},
            ])
        );
        let close = seen.last().unwrap();
        assert_eq!(
            (close.method.as_str(), close.path()),
            ("PATCH", "/zone1/atservicesrest/v1.0/Tickets")
        );
        assert_eq!(close.json(), json!({"id": 1, "status": 5}));
    }

    #[tokio::test]
    async fn current_units_come_from_the_period_containing_the_day() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            items(json!([
                {"id": 1, "startDate": "2026-10-01T00:00:00", "endDate": "2026-10-31T00:00:00", "units": 10},
                {"id": 2, "startDate": "2026-11-01T00:00:00", "endDate": "2026-11-30T00:00:00", "units": 12},
            ]))
        })
        .await;
        let at = client(&fake.url);
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 11, 1))
                .await
                .unwrap(),
            12.0
        );
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 10, 31))
                .await
                .unwrap(),
            10.0
        );
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 12, 1))
                .await
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn client_futures_can_be_spawned() {
        fn send<T: Send>(_: &T) {}
        let at = client("http://127.0.0.1:9");
        send(&at.companies_by_name("A"));
        send(&at.create_ticket(1, "q", "t", "d"));
        send(&at.adjust_units(1, 2, jiff::civil::date(2026, 1, 1), 1, None));
    }
}

#[cfg(test)]
mod against_the_simulator {
    //! The client against `ferry psa-sim autotask` (`super::super::sim::autotask`).

    use std::time::Duration;

    use serde_json::json;

    use super::super::sim::{Fault, SimServer, autotask as sim};
    use super::*;

    async fn start() -> (SimServer, Autotask) {
        let data: sim::Data = serde_json::from_value(json!({
            "username": "api@acme.example",
            "secret": "Sup3r$ecretValue",
            "integrationCode": "INTEGRATIONCODE123",
            "companies": [
                {"id": 10, "companyName": "Acme", "companyNumber": "A1"},
                {"id": 11, "companyName": "Acme", "isActive": false},
            ],
            "contracts": [
                {"id": 20, "companyID": 10, "contractName": "Managed", "startDate": "2026-01-01", "endDate": "2026-12-31"},
                {"id": 21, "companyID": 10, "contractName": "T&M", "contractType": 1, "startDate": "2026-01-01", "endDate": "2026-12-31"},
            ],
            "services": [{"id": 30, "name": "Endpoint Protection", "unitPrice": 4.5}],
            "contractServiceUnits": [],
            "queues": [{"id": 29683354, "name": "Client Portal"}],
        }))
        .unwrap();
        let server = SimServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(sim::Autotask::new(data).unwrap()),
        )
        .await
        .unwrap();
        let at = Autotask::new(
            AutotaskConfig {
                username: "api@acme.example".into(),
                secret: "Sup3r$ecretValue".into(),
                integration_code: "INTEGRATIONCODE123".into(),
                zone_discovery_url: format!("{}/atservicesrest/v1.0/zoneInformation", server.url()),
            },
            RetryPolicy {
                attempts: 4,
                base_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(2),
            },
        )
        .unwrap();
        (server, at)
    }

    #[tokio::test]
    async fn a_whole_sync_round_works_against_the_simulator() {
        let (server, at) = start().await;
        let companies = at.companies_by_name("acme").await.unwrap();
        assert_eq!(companies.len(), 2);
        assert_eq!(at.company(10).await.unwrap().unwrap().name, "Acme");
        assert_eq!(at.company(999).await.unwrap(), None);
        let contracts = at.contracts(10).await.unwrap();
        assert_eq!(contracts.len(), 2);
        let service = at.services_by_name("Endpoint Protection").await.unwrap();
        assert_eq!(service[0].id, 30);
        assert_eq!(at.contract_service(20, 30).await.unwrap(), None);
        let e = at
            .add_contract_service(21, 30, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Recurring Service"), "{e}");
        let cs = at.add_contract_service(20, 30, None).await.unwrap();
        assert_eq!(at.contract_service(20, 30).await.unwrap().unwrap().id, cs);
        let on = jiff::civil::date(2026, 11, 1);
        let before = at.current_units(20, 30, on).await.unwrap();
        at.adjust_units(20, 30, on, 25 - before as i32, None)
            .await
            .unwrap();
        assert_eq!(at.current_units(20, 30, on).await.unwrap(), 25.0);
        assert_eq!(
            at.current_units(20, 30, jiff::civil::date(2026, 11, 30))
                .await
                .unwrap(),
            25.0
        );
        let t = at
            .create_ticket(10, "Client Portal", "Usage sync failed", "why")
            .await
            .unwrap();
        assert_eq!(
            at.open_tickets(10, "Usage sync failed")
                .await
                .unwrap()
                .len(),
            1
        );
        at.close_ticket(t.id).await.unwrap();
        assert!(
            at.open_tickets(10, "Usage sync failed")
                .await
                .unwrap()
                .is_empty()
        );
        let e = at
            .create_ticket(10, "Nope", "x", "y")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Client Portal"), "{e}");
        assert_eq!(at.requests(), server.requests_served());
    }

    #[tokio::test]
    async fn long_ticket_text_is_cut_to_autotask_s_lengths_and_big_files_are_never_sent() {
        let (server, at) = start().await;
        let t = at
            .create_ticket(10, "Client Portal", &"t".repeat(300), &"d".repeat(9000))
            .await
            .unwrap();
        let state = server.state();
        let ticket = state["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == t.id)
            .unwrap()
            .clone();
        assert_eq!(ticket["title"].as_str().unwrap().chars().count(), 255);
        assert_eq!(
            ticket["description"].as_str().unwrap().chars().count(),
            8000
        );
        let before = server.requests_served();
        let e = at
            .attach_to_ticket(t.id, "big", "big.csv", &vec![b'x'; 6_000_001])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("6 to 7 MB"), "{e}");
        assert_eq!(server.requests_served(), before, "refused before sending");
        let id = at
            .attach_to_ticket(t.id, "ok", "ok.csv", b"a,b\n1,2\n")
            .await
            .unwrap();
        assert_eq!(
            at.ticket_attachments(t.id).await.unwrap(),
            [Attachment {
                id,
                title: "ok".into(),
                file_name: "ok.csv".into()
            }]
        );
        let stored = &server.state()["ticketAttachments"][0];
        assert_eq!(stored["data"], crate::psa::http::base64(b"a,b\n1,2\n"));
    }

    #[tokio::test]
    async fn zone_moves_throttles_and_expired_keys_behave_as_documented() {
        let (server, at) = start().await;
        at.companies_by_name("Acme").await.unwrap();
        server.inject(Fault::MoveZone);
        assert_eq!(at.contracts(10).await.unwrap().len(), 2);
        server.inject(Fault::RateLimit {
            count: 2,
            retry_after: 0,
        });
        server.inject(Fault::ServerError { count: 1 });
        assert_eq!(at.contracts(10).await.unwrap().len(), 2);
        server.inject(Fault::ExpireKeys);
        let e = at.contracts(10).await.unwrap_err().to_string();
        assert!(
            e.contains("refused") && !e.contains("Sup3r$ecretValue"),
            "{e}"
        );
        assert_eq!(at.requests(), server.requests_served());
    }
}
