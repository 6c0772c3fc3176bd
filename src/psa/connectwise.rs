//! The ConnectWise Manage REST API 3.0 client (`../shared/psa-api.md`): companies, agreements,
//! agreement additions and tickets.
//!
//! - The codebase (`v2025_1/`) is discovered once, without authentication, from
//!   `GET {root}/login/companyinfo/{companyId}`; the API base is `{root}/{codebase}apis/3.0/`.
//! - Every API call carries HTTP Basic `{companyId}+{publicKey}:{privateKey}` (a sensitive
//!   header), `clientId` and `Accept: application/vnd.connectwise.com+json; version=2025.1`
//!   (the target's `apiVersion` overrides the version).
//! - Companies are active when their status's `inactiveFlag` is false (statuses read once
//!   from `company/companies/statuses`) and they are not deleted; the name means nothing.
//! - Ticket statuses are the board's own (`service/boards/{id}/statuses`, read once per
//!   board): tickets open in the board's default status and close with a `closedStatus` one,
//!   by id; `>Closed` is never assumed.
//! - Report files go to `system/documents` as `multipart/form-data` (`recordType=Ticket`).
//! - Lists ask for `pageSize=1000` and follow the `Link` header's `rel="next"` until there is
//!   none. The next URL is rebased onto the discovered API base (the part after `/apis/3.0/`
//!   is kept), so the credentials only ever go to the configured host.
//! - `conditions` are built with [`Conditions`], which quotes strings (`"` and `\` escaped
//!   with a backslash); booleans are sent as `True`/`False`, integers bare, `null` bare.
//! - Dates (`effectiveDate`, `cancelledDate`) are sent as `YYYY-MM-DDT00:00:00Z`.
//! - A 401, or a 404 whose body says `UserNotAuthenticated`, is an authentication failure,
//!   reported without any key. Retries: see [`super::http`] (429 and 5xx; creates only when
//!   the server did not act).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::http::{
    Http, Outgoing, Replay, Reply, RetryPolicy, base64, next_link, percent_encode,
    standard_retryable,
};
use super::model::{Addition, Agreement, Company, Ticket};
use crate::{Error, Result};

const PSA: &str = "ConnectWise";
/// The API version pinned in `Accept` unless a target sets its own.
pub const DEFAULT_API_VERSION: &str = "2025.1";
/// The longest ticket summary.
pub const MAX_SUMMARY: usize = 100;
/// The largest page the API serves.
const PAGE_SIZE: u32 = 1000;
/// A list longer than this many pages is a server that keeps answering `next`.
const MAX_PAGES: usize = 10_000;

/// Where and as whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectWiseConfig {
    /// The API host (`api-na.myconnectwise.net`); `https://` is implied.
    pub site: Option<String>,
    /// The root URL instead of `site` (`http://127.0.0.1:PORT` for the simulator); wins over
    /// `site` when both are set.
    pub base_url: Option<String>,
    /// The ConnectWise company id (the login company, e.g. `acmemsp`).
    pub company_id: String,
    /// The registered integration's `clientId`.
    pub client_id: String,
    /// The API member's public key.
    pub public_key: String,
    /// The API member's private key.
    pub private_key: String,
    /// The `Accept` version; `None` is [`DEFAULT_API_VERSION`].
    pub api_version: Option<String>,
}

impl fmt::Debug for ConnectWiseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseConfig")
            .field("site", &self.site)
            .field("base_url", &self.base_url)
            .field("company_id", &self.company_id)
            .field("client_id", &"<redacted>")
            .field("public_key", &"<redacted>")
            .field("private_key", &"<redacted>")
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// A ConnectWise client. Cheap to clone; clones share the connection pool, the discovered
/// codebase and the request counter.
#[derive(Clone)]
pub struct ConnectWise {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// `https://site` or the base URL, without a trailing `/`.
    root: String,
    company_id: String,
    /// Authorization, clientId, Accept.
    headers: HeaderMap,
    /// `{root}/{codebase}apis/3.0/`, once discovered.
    api_base: OnceCell<String>,
    /// `company/companies/statuses`, read once.
    company_statuses: OnceCell<Vec<CompanyStatus>>,
    /// Each board's statuses, read once per board.
    board_statuses: tokio::sync::Mutex<std::collections::HashMap<i64, Vec<BoardStatus>>>,
    /// Board ids by name, looked up once per name.
    boards: tokio::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// A company status: `inactiveFlag` decides whether its companies are usable.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStatus {
    /// Id.
    pub id: i64,
    /// The tenant's name for it.
    #[serde(default)]
    pub name: String,
    /// Companies in it are inactive.
    #[serde(default)]
    pub inactive_flag: bool,
}

/// A ticket status of one board.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardStatus {
    /// Id.
    pub id: i64,
    /// The tenant's name for it.
    #[serde(default)]
    pub name: String,
    /// Tickets in it are closed.
    #[serde(default)]
    pub closed_status: bool,
    /// No longer selectable.
    #[serde(default)]
    pub inactive: bool,
    /// The status new tickets get.
    #[serde(default)]
    pub default_flag: bool,
    /// Position in the board's list.
    #[serde(default)]
    pub sort_order: i64,
}

/// The status a ticket on a board is opened in: `wanted` by name, else the board's default
/// status, else its first open one.
pub fn open_status<'a>(
    board: &str,
    statuses: &'a [BoardStatus],
    wanted: Option<&str>,
) -> Result<&'a BoardStatus> {
    let usable = || statuses.iter().filter(|s| !s.inactive);
    let found = match wanted {
        Some(name) => usable().find(|s| s.name.trim().eq_ignore_ascii_case(name.trim())),
        None => usable()
            .find(|s| s.default_flag && !s.closed_status)
            .or_else(|| {
                usable()
                    .filter(|s| !s.closed_status)
                    .min_by_key(|s| s.sort_order)
            }),
    };
    found.ok_or_else(|| {
        Error::Psa(format!(
            "ConnectWise: board `{board}` has no {} (its statuses: {})",
            match wanted {
                Some(n) => format!("status named \"{n}\""),
                None => "open status".into(),
            },
            names(usable())
        ))
    })
}

/// The status a ticket on a board is closed with: one with `closedStatus` set, `wanted` by
/// name, else one named like `Closed` (`Closed`, `>Closed`, ...), else the first by sort order.
pub fn closed_status<'a>(
    board: &str,
    statuses: &'a [BoardStatus],
    wanted: Option<&str>,
) -> Result<&'a BoardStatus> {
    let closed = || statuses.iter().filter(|s| s.closed_status && !s.inactive);
    let found = match wanted {
        Some(name) => closed().find(|s| s.name.trim().eq_ignore_ascii_case(name.trim())),
        None => closed()
            .find(|s| {
                s.name
                    .trim_start_matches(|c: char| !c.is_alphanumeric())
                    .eq_ignore_ascii_case("closed")
            })
            .or_else(|| closed().min_by_key(|s| s.sort_order)),
    };
    found.ok_or_else(|| {
        Error::Psa(format!(
            "ConnectWise: board `{board}` has no closed status{} (its closed statuses: {})",
            wanted.map_or(String::new(), |n| format!(" named \"{n}\"")),
            names(closed())
        ))
    })
}

fn names<'a>(statuses: impl Iterator<Item = &'a BoardStatus>) -> String {
    let list: Vec<&str> = statuses.map(|s| s.name.as_str()).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// A document attached to a record, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInfo {
    /// Id.
    pub id: i64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// The uploaded file's name.
    #[serde(default)]
    pub file_name: String,
}

/// A note of a ticket, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketNote {
    /// Id.
    pub id: i64,
    /// Text.
    #[serde(default)]
    pub text: String,
}

impl fmt::Debug for ConnectWise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWise")
            .field("root", &self.inner.root)
            .field("company_id", &self.inner.company_id)
            .finish_non_exhaustive()
    }
}

/// A ConnectWise `conditions` expression, clauses joined with `and`.
#[derive(Clone, Debug, Default)]
pub struct Conditions(Vec<String>);

impl Conditions {
    /// No clause yet.
    pub fn new() -> Self {
        Conditions::default()
    }

    /// `field="value"`, the value quoted by [`quote`].
    pub fn eq_str(mut self, field: &str, value: &str) -> Self {
        self.0.push(format!("{field}={}", quote(value)));
        self
    }

    /// `field=123`.
    pub fn eq_int(mut self, field: &str, value: i64) -> Self {
        self.0.push(format!("{field}={value}"));
        self
    }

    /// `field=True` / `field=False`.
    pub fn eq_bool(mut self, field: &str, value: bool) -> Self {
        self.0
            .push(format!("{field}={}", if value { "True" } else { "False" }));
        self
    }

    /// `field=null`.
    pub fn is_null(mut self, field: &str) -> Self {
        self.0.push(format!("{field}=null"));
        self
    }

    /// The expression.
    pub fn build(&self) -> String {
        self.0.join(" and ")
    }
}

/// A string literal of the conditions language: in double quotes, `\` and `"` escaped with a
/// backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A date as ConnectWise datetimes are written: `2026-11-01T00:00:00Z`.
pub fn cw_date(date: jiff::civil::Date) -> String {
    format!("{date}T00:00:00Z")
}

/// `application/vnd.connectwise.com+json; version={version}`.
pub fn accept_value(version: &str) -> String {
    format!("application/vnd.connectwise.com+json; version={version}")
}

/// A JSON number, integral when the value is (`25`, not `25.0`).
pub(crate) fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// `{root}/{codebase}apis/3.0/`.
fn api_base_of(root: &str, codebase: &str) -> String {
    let codebase = codebase.trim().trim_matches('/');
    if codebase.is_empty() {
        format!("{root}/apis/3.0/")
    } else {
        format!("{root}/{codebase}/apis/3.0/")
    }
}

/// The API path (`company/companies?...`) of a `Link` URL, relative to `/apis/3.0/`.
fn api_relative(url: &str) -> Option<&str> {
    let marker = "/apis/3.0/";
    let lower = url.to_ascii_lowercase();
    let at = lower.find(marker)?;
    Some(&url[at + marker.len()..])
}

/// Whether a reply is ConnectWise refusing the credentials.
pub fn is_auth_failure(status: u16, body: &[u8]) -> bool {
    status == 401
        || (status == 404 && super::http::contains_ignore_ascii_case(body, "UserNotAuthenticated"))
}

#[derive(Debug, Default, Deserialize)]
struct Ref {
    id: Option<i64>,
    identifier: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwCompany {
    id: i64,
    identifier: Option<String>,
    name: Option<String>,
    status: Option<Ref>,
    deleted_flag: Option<bool>,
}

impl CwCompany {
    /// Active when not deleted and its status's `inactiveFlag` is false; a status missing
    /// from the tenant's list counts as inactive (and the status text says so); a company
    /// without a status counts as active. The status text gains ` (deleted)` when
    /// `deletedFlag` is set.
    fn into_company(self, statuses: &[CompanyStatus]) -> Company {
        let c = self;
        let deleted = c.deleted_flag.unwrap_or(false);
        let status_id = c.status.as_ref().and_then(|s| s.id);
        let mut status_name = c.status.and_then(|s| s.name);
        let inactive = match status_id {
            None => false,
            Some(id) => match statuses.iter().find(|s| s.id == id) {
                Some(s) => s.inactive_flag,
                None => {
                    status_name = Some(format!(
                        "{} (unknown status #{id})",
                        status_name.unwrap_or_default()
                    ));
                    true
                }
            },
        };
        let active = !deleted && !inactive;
        let mut status = status_name.unwrap_or_default();
        if deleted {
            status = if status.is_empty() {
                "deleted".into()
            } else {
                format!("{status} (deleted)")
            };
        }
        Company {
            id: c.id,
            identifier: c.identifier,
            name: c.name.unwrap_or_default(),
            active,
            status,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAgreement {
    id: i64,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Ref>,
    agreement_status: Option<String>,
    cancelled_flag: Option<bool>,
}

impl From<CwAgreement> for Agreement {
    fn from(a: CwAgreement) -> Agreement {
        let cancelled = a.cancelled_flag.unwrap_or(false);
        let status = a.agreement_status.unwrap_or_default();
        let active = status.eq_ignore_ascii_case("Active") && !cancelled;
        let status = match (cancelled, status.as_str()) {
            (true, "") => "Cancelled".to_string(),
            (true, s) if !s.eq_ignore_ascii_case("Cancelled") => format!("{s} (cancelled)"),
            _ => status,
        };
        Agreement {
            id: a.id,
            name: a.name.unwrap_or_default(),
            active,
            status,
            kind: a.kind.and_then(|k| k.name).unwrap_or_default(),
            accepts_services: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAddition {
    id: i64,
    product: Option<Ref>,
    quantity: Option<f64>,
    effective_date: Option<String>,
    cancelled_date: Option<String>,
}

impl From<CwAddition> for Addition {
    fn from(a: CwAddition) -> Addition {
        let product = a.product.unwrap_or_default();
        Addition {
            id: a.id,
            product_id: product.id.unwrap_or_default(),
            product_identifier: product.identifier.unwrap_or_default(),
            quantity: a.quantity.unwrap_or(0.0),
            effective_date: a.effective_date,
            cancelled_date: a.cancelled_date.filter(|d| !d.is_empty()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwTicket {
    id: i64,
    summary: Option<String>,
    closed_flag: Option<bool>,
}

impl From<CwTicket> for Ticket {
    /// Closed is `closedFlag`, which follows the status's `closedStatus`.
    fn from(t: CwTicket) -> Ticket {
        Ticket {
            id: t.id,
            title: t.summary.unwrap_or_default(),
            closed: t.closed_flag.unwrap_or(false),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompanyInfo {
    #[serde(rename = "Codebase")]
    codebase: Option<String>,
}

impl ConnectWise {
    /// A client; nothing is sent until the first call.
    pub fn new(config: ConnectWiseConfig, retry: RetryPolicy) -> Result<Self> {
        let bad = |what: &str| Error::Psa(format!("ConnectWise: {what}"));
        let root = match (config.base_url.as_deref(), config.site.as_deref()) {
            (Some(u), _) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_string(),
            (_, Some(s)) if !s.trim().is_empty() => {
                let s = s.trim().trim_end_matches('/');
                if s.contains("://") {
                    s.to_string()
                } else {
                    format!("https://{s}")
                }
            }
            _ => return Err(bad("neither a site nor a base URL is configured")),
        };
        if !(root.starts_with("https://") || root.starts_with("http://")) {
            return Err(bad(&format!("`{root}` is not an http(s) URL")));
        }
        if config.company_id.trim().is_empty() {
            return Err(bad("the company id is empty"));
        }
        if config.client_id.trim().is_empty() {
            return Err(bad("the clientId is empty"));
        }
        if config.public_key.is_empty() || config.private_key.is_empty() {
            return Err(bad("the API member's public or private key is empty"));
        }
        let user = format!("{}+{}", config.company_id, config.public_key);
        let token = base64(format!("{user}:{}", config.private_key).as_bytes());
        let mut authorization = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| bad("the API keys contain characters a header cannot carry"))?;
        authorization.set_sensitive(true);
        let mut client_id = HeaderValue::from_str(config.client_id.trim())
            .map_err(|_| bad("the clientId contains characters a header cannot carry"))?;
        client_id.set_sensitive(true);
        let version = config
            .api_version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION);
        if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad(&format!(
                "apiVersion `{version}` is not a version such as {DEFAULT_API_VERSION}"
            )));
        }
        let accept = HeaderValue::from_str(&accept_value(version))
            .map_err(|_| bad("the apiVersion cannot be sent in a header"))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(HeaderName::from_static("clientid"), client_id);
        headers.insert(ACCEPT, accept);
        let http = Http::new(
            PSA,
            retry,
            standard_retryable,
            vec![config.public_key.clone(), config.private_key, token],
        )?;
        Ok(ConnectWise {
            inner: Arc::new(Inner {
                http,
                root,
                company_id: config.company_id.trim().to_string(),
                headers,
                api_base: OnceCell::new(),
                company_statuses: OnceCell::new(),
                board_statuses: Default::default(),
                boards: Default::default(),
            }),
        })
    }

    /// HTTP requests sent so far (retries and codebase discovery included).
    pub fn requests(&self) -> u64 {
        self.inner.http.requests()
    }

    /// Companies whose identifier equals `identifier` (all of them, including inactive and
    /// deleted ones: the caller decides).
    pub async fn companies_by_identifier(&self, identifier: &str) -> Result<Vec<Company>> {
        let conditions = Conditions::new().eq_str("identifier", identifier).build();
        let rows: Vec<CwCompany> = self.list("company/companies", &conditions).await?;
        let statuses = self.company_statuses().await?;
        Ok(rows.into_iter().map(|c| c.into_company(statuses)).collect())
    }

    /// The tenant's company statuses, read once.
    pub async fn company_statuses(&self) -> Result<&[CompanyStatus]> {
        self.inner
            .company_statuses
            .get_or_try_init(|| async { self.list("company/companies/statuses", "").await })
            .await
            .map(Vec::as_slice)
    }

    /// The id of the board named `name` (`service/boards?conditions=name="..."`), looked up
    /// once.
    pub async fn board_id(&self, name: &str) -> Result<i64> {
        let key = name.trim().to_lowercase();
        if let Some(id) = self.inner.boards.lock().await.get(&key) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Board {
            id: i64,
            #[serde(default)]
            name: String,
        }
        let conditions = Conditions::new().eq_str("name", name.trim()).build();
        let rows: Vec<Board> = self.list("service/boards", &conditions).await?;
        let id = rows
            .iter()
            .find(|b| b.name.trim().eq_ignore_ascii_case(name.trim()))
            .map(|b| b.id)
            .ok_or_else(|| Error::Psa(format!("ConnectWise: no service board named `{name}`")))?;
        self.inner.boards.lock().await.insert(key, id);
        Ok(id)
    }

    /// The statuses of board `board_id`, read once per board.
    pub async fn board_statuses(&self, board_id: i64) -> Result<Vec<BoardStatus>> {
        if let Some(s) = self.inner.board_statuses.lock().await.get(&board_id) {
            return Ok(s.clone());
        }
        let statuses: Vec<BoardStatus> = self
            .list(&format!("service/boards/{board_id}/statuses"), "")
            .await?;
        self.inner
            .board_statuses
            .lock()
            .await
            .insert(board_id, statuses.clone());
        Ok(statuses)
    }

    /// The company `id`; `None` when ConnectWise answers 404.
    pub async fn company(&self, id: i64) -> Result<Option<Company>> {
        let path = format!("company/companies/{id}");
        let reply = self.call(Method::GET, &path, None, Replay::Safe).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let row: CwCompany = self.expect(&Method::GET, &path, &reply)?;
        let statuses = self.company_statuses().await?;
        Ok(Some(row.into_company(statuses)))
    }

    /// All agreements of the company, any status.
    pub async fn agreements(&self, company_id: i64) -> Result<Vec<Agreement>> {
        let conditions = Conditions::new().eq_int("company/id", company_id).build();
        let rows: Vec<CwAgreement> = self.list("finance/agreements", &conditions).await?;
        Ok(rows.into_iter().map(Agreement::from).collect())
    }

    /// Every active (`cancelledDate=null`) addition on the agreement, all products: one
    /// lookup for a mapping's products on that agreement.
    pub async fn active_additions(&self, agreement_id: i64) -> Result<Vec<Addition>> {
        let conditions = Conditions::new().is_null("cancelledDate").build();
        let path = format!("finance/agreements/{agreement_id}/additions");
        let rows: Vec<CwAddition> = self.list(&path, &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Addition::from)
            .filter(|a| a.cancelled_date.is_none())
            .collect())
    }

    /// Active (`cancelledDate=null`) additions of `product_identifier` on the agreement.
    pub async fn additions(
        &self,
        agreement_id: i64,
        product_identifier: &str,
    ) -> Result<Vec<Addition>> {
        let conditions = Conditions::new()
            .eq_str("product/identifier", product_identifier)
            .is_null("cancelledDate")
            .build();
        let path = format!("finance/agreements/{agreement_id}/additions");
        let rows: Vec<CwAddition> = self.list(&path, &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Addition::from)
            .filter(|a| a.cancelled_date.is_none())
            .collect())
    }

    /// Adds `quantity` of `product_identifier` to the agreement, billable from `effective`.
    /// Sent once: a 500 or a timeout is reported, not repeated (look up before creating).
    pub async fn create_addition(
        &self,
        agreement_id: i64,
        product_identifier: &str,
        quantity: f64,
        effective: jiff::civil::Date,
        description: &str,
    ) -> Result<Addition> {
        let path = format!("finance/agreements/{agreement_id}/additions");
        let body = json!({
            "product": {"identifier": product_identifier},
            "quantity": number(quantity),
            "billCustomer": "Billable",
            "effectiveDate": cw_date(effective),
            "description": description,
        });
        let reply = self
            .call(Method::POST, &path, Some(&body), Replay::CreateOnce)
            .await?;
        let row: CwAddition = self.expect(&Method::POST, &path, &reply)?;
        Ok(row.into())
    }

    /// Sets the addition's quantity (JSON Patch `replace quantity`).
    pub async fn set_addition_quantity(
        &self,
        agreement_id: i64,
        addition_id: i64,
        quantity: f64,
    ) -> Result<Addition> {
        let path = format!("finance/agreements/{agreement_id}/additions/{addition_id}");
        let body = json!([{"op": "replace", "path": "quantity", "value": number(quantity)}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        let row: CwAddition = self.expect(&Method::PATCH, &path, &reply)?;
        Ok(row.into())
    }

    /// Cancels the addition as of `on` (JSON Patch `replace cancelledDate`).
    pub async fn cancel_addition(
        &self,
        agreement_id: i64,
        addition_id: i64,
        on: jiff::civil::Date,
    ) -> Result<()> {
        let path = format!("finance/agreements/{agreement_id}/additions/{addition_id}");
        let body = json!([{"op": "replace", "path": "cancelledDate", "value": cw_date(on)}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        self.expect::<Value>(&Method::PATCH, &path, &reply)?;
        Ok(())
    }

    /// Open (`closedFlag=False`) tickets of the company whose summary equals `summary`.
    pub async fn open_tickets(&self, company_id: i64, summary: &str) -> Result<Vec<Ticket>> {
        let conditions = Conditions::new()
            .eq_int("company/id", company_id)
            .eq_str("summary", summary)
            .eq_bool("closedFlag", false)
            .build();
        let rows: Vec<CwTicket> = self.list("service/tickets", &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| !t.closed && t.title == summary)
            .collect())
    }

    /// Every ticket of the company whose summary equals `summary`, open or closed.
    pub async fn tickets_with_summary(
        &self,
        company_id: i64,
        summary: &str,
    ) -> Result<Vec<Ticket>> {
        let summary = crate::psa::autotask::fit_chars(summary, MAX_SUMMARY);
        let conditions = Conditions::new()
            .eq_int("company/id", company_id)
            .eq_str("summary", &summary)
            .build();
        let rows: Vec<CwTicket> = self.list("service/tickets", &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| t.title == summary)
            .collect())
    }

    /// Opens a ticket on `board` (by name) in the board's `status` (by name) or its default
    /// status; the summary is cut to 100 characters. Sent once (see
    /// [`super::http::Replay`]).
    pub async fn create_ticket(
        &self,
        company_id: i64,
        board: &str,
        summary: &str,
        description: &str,
        status: Option<&str>,
    ) -> Result<Ticket> {
        let board_id = self.board_id(board).await?;
        let statuses = self.board_statuses(board_id).await?;
        let status = open_status(board, &statuses, status)?;
        let path = "service/tickets";
        let body = json!({
            "summary": crate::psa::autotask::fit_chars(summary, MAX_SUMMARY),
            "company": {"id": company_id},
            "board": {"id": board_id},
            "status": {"id": status.id},
            "initialDescription": description,
        });
        let reply = self
            .call(Method::POST, path, Some(&body), Replay::CreateOnce)
            .await?;
        let row: CwTicket = self.expect(&Method::POST, path, &reply)?;
        Ok(row.into())
    }

    /// Closes the ticket with a closed status of its own board (`status` by name, else the
    /// one named like `Closed`, else the first): JSON Patch `replace status` with its id.
    pub async fn close_ticket(&self, id: i64, status: Option<&str>) -> Result<()> {
        #[derive(Deserialize)]
        struct Board {
            board: Option<Ref>,
        }
        let path = format!("service/tickets/{id}");
        let reply = self.call(Method::GET, &path, None, Replay::Safe).await?;
        let ticket: Board = self.expect(&Method::GET, &path, &reply)?;
        let board = ticket.board.unwrap_or_default();
        let board_id = board
            .id
            .ok_or_else(|| Error::Psa(format!("ConnectWise: ticket #{id} is on no board")))?;
        let statuses = self.board_statuses(board_id).await?;
        let board_name = board.name.unwrap_or_else(|| format!("#{board_id}"));
        let closed = closed_status(&board_name, &statuses, status)?;
        let body = json!([{"op": "replace", "path": "status", "value": {"id": closed.id}}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        self.expect::<Value>(&Method::PATCH, &path, &reply)?;
        Ok(())
    }

    /// The notes of a ticket.
    pub async fn ticket_notes(&self, ticket_id: i64) -> Result<Vec<TicketNote>> {
        self.list(&format!("service/tickets/{ticket_id}/notes"), "")
            .await
    }

    /// Adds a note to the ticket's discussion (`detailDescriptionFlag`). Sent once.
    pub async fn add_note(&self, ticket_id: i64, text: &str) -> Result<i64> {
        let path = format!("service/tickets/{ticket_id}/notes");
        let body = json!({"text": text, "detailDescriptionFlag": true});
        let reply = self
            .call(Method::POST, &path, Some(&body), Replay::CreateOnce)
            .await?;
        let note: TicketNote = self.expect(&Method::POST, &path, &reply)?;
        Ok(note.id)
    }

    /// The documents attached to ticket `ticket_id`
    /// (`system/documents?recordType=Ticket&recordId=N`).
    pub async fn ticket_documents(&self, ticket_id: i64) -> Result<Vec<DocumentInfo>> {
        self.list_with(
            "system/documents",
            "",
            &format!("recordType=Ticket&recordId={ticket_id}"),
        )
        .await
    }

    /// Uploads `bytes` as `file_name` to ticket `ticket_id` (`POST system/documents`,
    /// `multipart/form-data`: `recordType=Ticket`, `recordId`, `title`, the file). Sent once.
    pub async fn upload_ticket_document(
        &self,
        ticket_id: i64,
        title: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Result<DocumentInfo> {
        let path = "system/documents";
        let boundary = format!("ferry-{}", hex::encode(crate::fsutil::random_bytes::<12>()));
        let mut body = Vec::with_capacity(bytes.len() + 1024);
        for (name, value) in [
            ("recordType", "Ticket".to_string()),
            ("recordId", ticket_id.to_string()),
            ("title", title.to_string()),
            ("privateFlag", "false".to_string()),
        ] {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        let safe_name: String = file_name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = format!("{}{path}", self.api_base().await?);
        let mut headers = self.inner.headers.clone();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
                .map_err(|e| Error::Psa(format!("ConnectWise: {e}")))?,
        );
        let reply = self
            .send_raw(
                Method::POST,
                &url,
                path,
                &headers,
                Bytes::from(body),
                Replay::CreateOnce,
            )
            .await?;
        self.expect(&Method::POST, path, &reply)
    }

    /// `{root}/{codebase}apis/3.0/`, discovered on first use.
    async fn api_base(&self) -> Result<&str> {
        let inner = &self.inner;
        inner
            .api_base
            .get_or_try_init(|| async {
                let label = format!("/login/companyinfo/{}", inner.company_id);
                let url = format!(
                    "{}/login/companyinfo/{}",
                    inner.root,
                    percent_encode(&inner.company_id)
                );
                let mut headers = HeaderMap::new();
                headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
                let reply = inner
                    .http
                    .send(Outgoing {
                        method: Method::GET,
                        url: &url,
                        label: &label,
                        headers: &headers,
                        body: None,
                        replay: Replay::Safe,
                        gate: None,
                    })
                    .await?;
                if !reply.ok() {
                    return Err(inner.http.status_error(&Method::GET, &label, &reply));
                }
                let info: Option<CompanyInfo> = inner.http.parse(&Method::GET, &label, &reply)?;
                match info
                    .and_then(|i| i.codebase)
                    .filter(|c| !c.trim().is_empty())
                {
                    Some(codebase) => Ok(api_base_of(&inner.root, &codebase)),
                    None => Err(Error::Psa(format!(
                        "ConnectWise GET {label}: no codebase for company id `{}` at {}; is \
                         the company id right?",
                        inner.company_id, inner.root
                    ))),
                }
            })
            .await
            .map(String::as_str)
    }

    /// One API request (relative `path`, optional JSON body); an authentication failure is an
    /// error, any other reply is returned.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Reply> {
        let url = format!("{}{path}", self.api_base().await?);
        self.send_url(method, &url, path, body, replay).await
    }

    async fn send_url(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Reply> {
        match body {
            Some(b) => {
                let mut headers = self.inner.headers.clone();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.send_raw(
                    method,
                    url,
                    path,
                    &headers,
                    Bytes::from(b.to_string()),
                    replay,
                )
                .await
            }
            None => {
                self.send_with(method, url, path, &self.inner.headers, None, replay)
                    .await
            }
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        url: &str,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        replay: Replay,
    ) -> Result<Reply> {
        self.send_with(method, url, path, headers, Some(body), replay)
            .await
    }

    async fn send_with(
        &self,
        method: Method,
        url: &str,
        path: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
        replay: Replay,
    ) -> Result<Reply> {
        let label = format!("/{}", path.split('?').next().unwrap_or(path));
        let reply = self
            .inner
            .http
            .send(Outgoing {
                method: method.clone(),
                url,
                label: &label,
                headers,
                body,
                replay,
                gate: None,
            })
            .await?;
        if is_auth_failure(reply.status, &reply.body) {
            return Err(Error::Psa(format!(
                "ConnectWise {method} {label}: HTTP {}: the API keys of company id `{}` were \
                 refused (expired or revoked?); check the API member's public and private key \
                 secrets and the clientId",
                reply.status, self.inner.company_id
            )));
        }
        Ok(reply)
    }

    /// The body of a 2xx reply as `T`; an error for any other.
    fn expect<T: DeserializeOwned>(&self, method: &Method, path: &str, reply: &Reply) -> Result<T> {
        let label = format!("/{path}");
        if !reply.ok() {
            return Err(self.inner.http.status_error(method, &label, reply));
        }
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            // A PATCH may answer 204 or an empty 200.
            return self.inner.http.parse(
                method,
                &label,
                &Reply {
                    status: reply.status,
                    headers: HeaderMap::new(),
                    body: Bytes::from_static(b"null"),
                    attempts: reply.attempts,
                },
            );
        }
        self.inner.http.parse(method, &label, reply)
    }

    /// Every row of a list, page by page.
    async fn list<T: DeserializeOwned>(&self, resource: &str, conditions: &str) -> Result<Vec<T>> {
        self.list_with(resource, conditions, "").await
    }

    /// Every row of a list with extra query parameters (`a=1&b=2`), page by page. Empty
    /// `conditions` are left out.
    async fn list_with<T: DeserializeOwned>(
        &self,
        resource: &str,
        conditions: &str,
        params: &str,
    ) -> Result<Vec<T>> {
        let base = self.api_base().await?.to_string();
        let mut query = Vec::new();
        if !conditions.is_empty() {
            query.push(format!("conditions={}", percent_encode(conditions)));
        }
        if !params.is_empty() {
            query.push(params.to_string());
        }
        query.push(format!("pageSize={PAGE_SIZE}"));
        let mut path = format!("{resource}?{}", query.join("&"));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let url = format!("{base}{path}");
            let reply = self
                .send_url(Method::GET, &url, &path, None, Replay::Safe)
                .await?;
            let rows: Vec<T> = self.expect(&Method::GET, resource, &reply)?;
            out.extend(rows);
            let links = reply
                .headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok());
            let Some(next) = next_link(links) else {
                return Ok(out);
            };
            let next = reqwest::Url::parse(&url)
                .and_then(|u| u.join(&next))
                .map(String::from)
                .unwrap_or(next);
            match api_relative(&next) {
                Some(rel) => path = rel.to_string(),
                None => {
                    return Err(Error::Psa(format!(
                        "ConnectWise GET /{resource}: the `Link` next page is not under \
                         /apis/3.0/"
                    )));
                }
            }
        }
        Err(Error::Psa(format!(
            "ConnectWise GET /{resource}: more than {MAX_PAGES} pages; giving up"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::super::http::fake::{Answer, Fake, Seen};
    use super::*;

    const PUBLIC: &str = "PubKeyA1b2C3d4";
    const PRIVATE: &str = "PrivKeyZ9y8X7w6";

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn client(url: &str) -> ConnectWise {
        ConnectWise::new(
            ConnectWiseConfig {
                site: None,
                base_url: Some(format!("{url}/")),
                company_id: "acmemsp".into(),
                client_id: "0f2b6c1e-0000-4000-8000-000000000001".into(),
                public_key: PUBLIC.into(),
                private_key: PRIVATE.into(),
                api_version: None,
            },
            policy(),
        )
        .unwrap()
    }

    fn companyinfo() -> Answer {
        Answer::json(
            200,
            json!({"CompanyName": "Acme MSP", "Codebase": "v2025_1/", "CompanyID": "acmemsp", "IsCloud": true}),
        )
    }

    #[test]
    fn strings_in_conditions_are_quoted_and_escaped() {
        assert_eq!(quote("ACME01"), r#""ACME01""#);
        assert_eq!(quote(r#"Say "hi" \o/"#), r#""Say \"hi\" \\o/""#);
        assert_eq!(
            Conditions::new().eq_str("identifier", "ACME01").build(),
            r#"identifier="ACME01""#
        );
        assert_eq!(
            Conditions::new()
                .eq_str("product/identifier", "EP-PROT")
                .is_null("cancelledDate")
                .build(),
            r#"product/identifier="EP-PROT" and cancelledDate=null"#
        );
        assert_eq!(
            Conditions::new()
                .eq_int("company/id", 250)
                .eq_str("summary", "Usage \"sync\" failed")
                .eq_bool("closedFlag", false)
                .build(),
            r#"company/id=250 and summary="Usage \"sync\" failed" and closedFlag=False"#
        );
    }

    #[test]
    fn dates_and_quantities_are_written_as_connectwise_expects() {
        assert_eq!(
            cw_date(jiff::civil::date(2026, 11, 1)),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(number(25.0), json!(25));
        assert_eq!(number(2.5), json!(2.5));
    }

    #[test]
    fn link_urls_are_rebased_after_apis_3_0() {
        assert_eq!(
            api_relative("https://h/v4_6_release/apis/3.0/company/companies?page=2"),
            Some("company/companies?page=2")
        );
        assert_eq!(api_relative("https://h/elsewhere?page=2"), None);
    }

    #[test]
    fn companies_are_active_by_their_status_s_inactive_flag_not_its_name() {
        let statuses = [
            CompanyStatus {
                id: 1,
                name: "Active".into(),
                inactive_flag: false,
            },
            CompanyStatus {
                id: 2,
                name: "Active (do not bill)".into(),
                inactive_flag: true,
            },
            CompanyStatus {
                id: 3,
                name: "Kunde".into(),
                inactive_flag: false,
            },
        ];
        let c = |status: Option<(i64, &str)>, deleted: bool| {
            CwCompany {
                id: 1,
                identifier: Some("A".into()),
                name: Some("A".into()),
                status: status.map(|(id, s)| Ref {
                    id: Some(id),
                    identifier: None,
                    name: Some(s.into()),
                }),
                deleted_flag: Some(deleted),
            }
            .into_company(&statuses)
        };
        assert!(c(Some((1, "Active")), false).active);
        assert!(
            c(Some((3, "Kunde")), false).active,
            "any name can be active"
        );
        assert!(!c(Some((2, "Active (do not bill)")), false).active);
        let unknown = c(Some((9, "Gone")), false);
        assert!(!unknown.active);
        assert_eq!(unknown.status, "Gone (unknown status #9)");
        assert!(c(None, false).active);
        let d = c(Some((1, "Active")), true);
        assert!(!d.active);
        assert_eq!(d.status, "Active (deleted)");
    }

    #[test]
    fn tickets_open_in_the_board_s_default_status_and_close_with_its_closed_status() {
        let st = |id, name: &str, closed, default| BoardStatus {
            id,
            name: name.into(),
            closed_status: closed,
            inactive: false,
            default_flag: default,
            sort_order: id,
        };
        let board = [
            st(1, "Nuovo", false, true),
            st(2, "Annullato", true, false),
            st(3, "Chiuso", true, false),
            st(4, "Closed", true, false),
        ];
        assert_eq!(open_status("B", &board, None).unwrap().id, 1);
        assert_eq!(closed_status("B", &board, None).unwrap().id, 4);
        assert_eq!(closed_status("B", &board[..3], None).unwrap().id, 2);
        assert_eq!(closed_status("B", &board, Some("chiuso")).unwrap().id, 3);
        let e = closed_status("B", &board, Some("Nuovo"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no closed status named \"Nuovo\"")
                && e.contains("Annullato, Chiuso, Closed"),
            "{e}"
        );
        let gt = [st(1, "New", false, true), st(9, ">Closed", true, false)];
        assert_eq!(closed_status("B", &gt, None).unwrap().id, 9);
        assert!(open_status("B", &[st(1, "Done", true, false)], None).is_err());
    }

    #[test]
    fn agreements_are_active_only_when_active_and_not_cancelled() {
        let a = |status: &str, cancelled: bool| {
            Agreement::from(CwAgreement {
                id: 1,
                name: Some("MSA".into()),
                kind: Some(Ref {
                    id: Some(3),
                    identifier: None,
                    name: Some("Managed Services".into()),
                }),
                agreement_status: Some(status.into()),
                cancelled_flag: Some(cancelled),
            })
        };
        let ok = a("Active", false);
        assert!(ok.active && ok.accepts_services);
        assert_eq!(ok.kind, "Managed Services");
        assert!(!a("Active", true).active);
        assert!(!a("Expired", false).active);
    }

    #[test]
    fn the_configuration_s_debug_output_hides_the_keys() {
        let c = client("http://127.0.0.1:9");
        let s = format!("{c:?}");
        assert!(!s.contains(PUBLIC) && !s.contains(PRIVATE), "{s}");
        let cfg = ConnectWiseConfig {
            site: Some("api-na.myconnectwise.net".into()),
            base_url: None,
            company_id: "x".into(),
            client_id: "y".into(),
            public_key: PUBLIC.into(),
            private_key: PRIVATE.into(),
            api_version: None,
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains(PUBLIC) && !s.contains(PRIVATE), "{s}");
    }

    #[tokio::test]
    async fn the_codebase_is_discovered_once_and_every_call_carries_the_credentials() {
        let fake = Fake::start(|s: Seen| async move {
            match s.path() {
                "/login/companyinfo/acmemsp" => companyinfo(),
                "/v2025_1/apis/3.0/company/companies" => Answer::json(
                    200,
                    json!([{"id": 250, "identifier": "ACME01", "name": "Acme", "status": {"id": 1, "name": "Active"}, "deletedFlag": false}]),
                ),
                "/v2025_1/apis/3.0/company/companies/7" => {
                    Answer::json(404, json!({"code": "NotFound", "message": "Company not found"}))
                }
                "/v2025_1/apis/3.0/company/companies/statuses" => Answer::json(
                    200,
                    json!([{"id": 1, "name": "Active", "inactiveFlag": false}]),
                ),
                _ => Answer::json(400, json!({"message": "unexpected"})),
            }
        })
        .await;
        let cw = client(&fake.url);
        let found = cw.companies_by_identifier("ACME01").await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].active);
        assert_eq!(found[0].identifier.as_deref(), Some("ACME01"));
        assert_eq!(cw.clone().company(7).await.unwrap(), None);
        let seen = fake.seen();
        assert_eq!(
            seen.len(),
            4,
            "discovery, companies, statuses (once), company 7"
        );
        assert_eq!(cw.requests(), 4);
        assert!(
            seen[2]
                .uri
                .starts_with("/v2025_1/apis/3.0/company/companies/statuses?")
        );
        assert!(seen[0].header("authorization").is_none());
        let list = &seen[1];
        assert_eq!(
            list.uri,
            "/v2025_1/apis/3.0/company/companies?conditions=identifier%3D%22ACME01%22&pageSize=1000"
        );
        let expected = format!(
            "Basic {}",
            base64(format!("acmemsp+{PUBLIC}:{PRIVATE}").as_bytes())
        );
        assert_eq!(
            list.header("authorization").as_deref(),
            Some(expected.as_str())
        );
        assert_eq!(
            list.header("clientid").as_deref(),
            Some("0f2b6c1e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            list.header("accept").as_deref(),
            Some("application/vnd.connectwise.com+json; version=2025.1")
        );
    }

    #[tokio::test]
    async fn lists_follow_the_link_header_until_there_is_no_next_page() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            let page = if s.uri.contains("page=2") { 2 } else { 1 };
            let a = Answer::json(200, json!([{"id": page, "name": format!("A{page}"), "agreementStatus": "Active", "cancelledFlag": false, "type": {"id": 1, "name": "MSP"}}]));
            if page == 1 {
                // Another codebase in the link, as the real service does: rebased onto ours.
                a.with_header(
                    "link",
                    r#"<https://elsewhere/v4_6_release/apis/3.0/finance/agreements?conditions=company%2Fid%3D250&pageSize=1000&page=2>; rel="next", <https://elsewhere/x?page=2>; rel="last""#,
                )
            } else {
                a
            }
        })
        .await;
        let cw = client(&fake.url);
        let agreements = cw.agreements(250).await.unwrap();
        assert_eq!(agreements.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2]);
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[2].uri,
            "/v2025_1/apis/3.0/finance/agreements?conditions=company%2Fid%3D250&pageSize=1000&page=2"
        );
    }

    #[tokio::test]
    async fn expired_keys_fail_with_a_message_naming_the_company_but_no_key() {
        for (status, body) in [
            (
                401,
                json!({"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}),
            ),
            (
                404,
                json!({"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}),
            ),
        ] {
            let fake = Fake::start(move |s: Seen| {
                let body = body.clone();
                async move {
                    if s.path().starts_with("/login/") {
                        companyinfo()
                    } else {
                        Answer::json(status, body)
                    }
                }
            })
            .await;
            let cw = client(&fake.url);
            let e = cw.company(250).await.unwrap_err().to_string();
            assert!(e.contains("acmemsp"), "{e}");
            assert!(e.contains("refused"), "{e}");
            assert!(!e.contains(PUBLIC) && !e.contains(PRIVATE), "{e}");
            assert!(
                !e.contains(&base64(format!("acmemsp+{PUBLIC}:{PRIVATE}").as_bytes())),
                "{e}"
            );
            assert_eq!(fake.seen().len(), 2, "auth failures are not retried");
        }
    }

    #[tokio::test]
    async fn additions_are_created_patched_and_cancelled_with_the_documented_bodies() {
        let bodies = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = bodies.clone();
        let fake = Fake::start(move |s: Seen| {
            let log = log.clone();
            async move {
                if s.path().starts_with("/login/") {
                    return companyinfo();
                }
                log.lock().unwrap().push((s.method.clone(), s.path().to_string(), s.json(), s.header("content-type")));
                let row = json!({"id": 9, "product": {"id": 4, "identifier": "EP-PROT"}, "quantity": 25, "effectiveDate": "2026-11-01T00:00:00Z", "cancelledDate": null});
                match s.method.as_str() {
                    "POST" => Answer::json(201, row),
                    "PATCH" => Answer::json(200, row),
                    _ => Answer::json(200, json!([row, {"id": 10, "product": {"id": 4, "identifier": "EP-PROT"}, "quantity": 1, "cancelledDate": "2026-01-01T00:00:00Z"}])),
                }
            }
        })
        .await;
        let cw = client(&fake.url);
        let d = jiff::civil::date(2026, 11, 1);
        let created = cw
            .create_addition(12, "EP-PROT", 25.0, d, "Endpoint protection")
            .await
            .unwrap();
        assert_eq!(created.id, 9);
        assert_eq!(created.quantity, 25.0);
        cw.set_addition_quantity(12, 9, 30.0).await.unwrap();
        cw.cancel_addition(12, 9, jiff::civil::date(2026, 11, 30))
            .await
            .unwrap();
        let active = cw.additions(12, "EP-PROT").await.unwrap();
        assert_eq!(active.iter().map(|a| a.id).collect::<Vec<_>>(), [9]);
        let bodies = bodies.lock().unwrap();
        assert_eq!(
            bodies[0].1,
            "/v2025_1/apis/3.0/finance/agreements/12/additions"
        );
        assert_eq!(
            bodies[0].2,
            json!({"product": {"identifier": "EP-PROT"}, "quantity": 25, "billCustomer": "Billable", "effectiveDate": "2026-11-01T00:00:00Z", "description": "Endpoint protection"})
        );
        assert_eq!(bodies[0].3.as_deref(), Some("application/json"));
        assert_eq!(bodies[1].0, "PATCH");
        assert_eq!(
            bodies[1].2,
            json!([{"op": "replace", "path": "quantity", "value": 30}])
        );
        assert_eq!(
            bodies[2].2,
            json!([{"op": "replace", "path": "cancelledDate", "value": "2026-11-30T00:00:00Z"}])
        );
    }

    #[tokio::test]
    async fn tickets_are_found_opened_and_closed() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            let p = s.path().trim_start_matches("/v2025_1/apis/3.0/").to_string();
            match (s.method.as_str(), p.as_str()) {
                ("GET", "service/tickets") => Answer::json(200, json!([
                    {"id": 1, "summary": "Usage sync failed", "closedFlag": false, "status": {"id": 71, "name": "New"}},
                    {"id": 2, "summary": "Usage sync failed", "closedFlag": true, "status": {"id": 73, "name": "Fatto"}},
                ])),
                ("GET", "service/boards") => {
                    Answer::json(200, json!([{"id": 7, "name": "Service Desk"}]))
                }
                ("GET", "service/boards/7/statuses") => Answer::json(200, json!([
                    {"id": 71, "name": "New", "defaultFlag": true, "closedStatus": false},
                    {"id": 72, "name": "Waiting", "closedStatus": false},
                    {"id": 73, "name": "Fatto", "closedStatus": true},
                ])),
                ("GET", "service/tickets/1") => Answer::json(
                    200,
                    json!({"id": 1, "board": {"id": 7, "name": "Service Desk"}, "closedFlag": false}),
                ),
                ("POST", _) => Answer::json(201, json!({"id": 3, "summary": s.json()["summary"], "closedFlag": false})),
                ("PATCH", _) => Answer::json(200, json!({"id": 1, "closedFlag": true})),
                _ => Answer::json(404, json!({"message": "unexpected"})),
            }
        })
        .await;
        let cw = client(&fake.url);
        let open = cw.open_tickets(250, "Usage sync failed").await.unwrap();
        assert_eq!(open.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        let t = cw
            .create_ticket(250, "Service Desk", "Usage sync failed", "details", None)
            .await
            .unwrap();
        assert_eq!(
            (t.id, t.title.as_str(), t.closed),
            (3, "Usage sync failed", false)
        );
        cw.close_ticket(1, None).await.unwrap();
        let seen = fake.seen();
        assert!(seen[1].uri.contains(
            "conditions=company%2Fid%3D250%20and%20summary%3D%22Usage%20sync%20failed%22%20and%20closedFlag%3DFalse"
        ), "{}", seen[1].uri);
        let create = seen.iter().find(|s| s.method == "POST").unwrap();
        assert_eq!(
            create.json(),
            json!({"summary": "Usage sync failed", "company": {"id": 250}, "board": {"id": 7}, "status": {"id": 71}, "initialDescription": "details"})
        );
        let statuses = seen
            .iter()
            .filter(|s| s.path().ends_with("/statuses"))
            .count();
        assert_eq!(statuses, 1, "a board's statuses are read once");
        let close = seen.last().unwrap();
        assert_eq!(close.path(), "/v2025_1/apis/3.0/service/tickets/1");
        assert_eq!(
            close.json(),
            json!([{"op": "replace", "path": "status", "value": {"id": 73}}])
        );
    }

    #[tokio::test]
    async fn a_validation_error_reports_connectwise_s_message_and_is_not_retried() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            if s.path().ends_with("/service/boards") {
                return Answer::json(200, json!([{"id": 7, "name": "Desk"}]));
            }
            if s.path().ends_with("/statuses") {
                return Answer::json(200, json!([{"id": 1, "name": "New", "defaultFlag": true}]));
            }
            Answer::json(400, json!({"code": "InvalidObject", "message": "Ticket object is invalid", "errors": [{"code": "NullValue", "message": "Company is required", "resource": "ticket", "field": "company"}]}))
        })
        .await;
        let cw = client(&fake.url);
        let e = cw
            .create_ticket(250, "Desk", "x", "y", None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ConnectWise POST /service/tickets: HTTP 400: Ticket object is invalid; company: Company is required"
        );
        assert_eq!(fake.seen().len(), 4);
    }

    #[test]
    fn the_api_version_is_pinned_and_a_target_may_choose_another() {
        let mut cfg = ConnectWiseConfig {
            site: Some("api-na.myconnectwise.net".into()),
            base_url: None,
            company_id: "x".into(),
            client_id: "y".into(),
            public_key: PUBLIC.into(),
            private_key: PRIVATE.into(),
            api_version: Some("2024.1".into()),
        };
        let cw = ConnectWise::new(cfg.clone(), policy()).unwrap();
        assert_eq!(
            cw.inner.headers.get(ACCEPT).unwrap(),
            "application/vnd.connectwise.com+json; version=2024.1"
        );
        cfg.api_version = Some("latest; x=1".into());
        let e = ConnectWise::new(cfg, policy()).unwrap_err().to_string();
        assert!(e.contains("apiVersion"), "{e}");
    }

    #[test]
    fn client_futures_can_be_spawned() {
        fn send<T: Send>(_: &T) {}
        let cw = client("http://127.0.0.1:9");
        send(&cw.companies_by_identifier("A"));
        send(&cw.create_addition(1, "A", 1.0, jiff::civil::date(2026, 1, 1), ""));
        send(&cw.close_ticket(1, None));
    }
}

#[cfg(test)]
mod against_the_simulator {
    //! The client against `ferry psa-sim connectwise` (`super::super::sim::connectwise`).

    use std::time::Duration;

    use serde_json::json;

    use super::super::sim::{Fault, SimServer, connectwise as sim};
    use super::*;

    async fn start(cloud: bool) -> (SimServer, ConnectWise) {
        let bulk: Vec<Value> = (0..1203)
            .map(|i| json!({"id": 5000 + i, "name": format!("Bulk {i}"), "companyId": 300}))
            .collect();
        let mut agreements = vec![
            json!({"id": 10, "name": "MSA", "companyId": 250}),
            json!({"id": 11, "name": "Old", "companyId": 250, "status": "Cancelled", "cancelled": true}),
        ];
        agreements.extend(bulk);
        let data: sim::Data = serde_json::from_value(json!({
            "companyId": "acmemsp",
            "clientId": "0f2b6c1e-0000-4000-8000-000000000001",
            "publicKey": "PubKeyA1b2C3d4",
            "privateKey": "PrivKeyZ9y8X7w6",
            "cloud": cloud,
            "companies": [
                {"id": 250, "identifier": "ACME01", "name": "Acme"},
                {"id": 251, "identifier": "Say \"hi\" \\o/", "name": "Quotes", "status": "Inactive"},
                {"id": 300, "identifier": "BULK", "name": "Bulk"},
            ],
            "agreements": agreements,
            "products": [{"id": 4, "identifier": "EP-PROT", "price": 3.0}],
            "boards": [{"id": 1, "name": "Service Desk"}],
        }))
        .unwrap();
        let server = SimServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(sim::ConnectWise::new(data).unwrap()),
        )
        .await
        .unwrap();
        let cw = ConnectWise::new(
            ConnectWiseConfig {
                site: None,
                base_url: Some(server.url()),
                company_id: "acmemsp".into(),
                client_id: "0f2b6c1e-0000-4000-8000-000000000001".into(),
                public_key: "PubKeyA1b2C3d4".into(),
                private_key: "PrivKeyZ9y8X7w6".into(),
                api_version: None,
            },
            RetryPolicy {
                attempts: 4,
                base_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(2),
            },
        )
        .unwrap();
        (server, cw)
    }

    #[tokio::test]
    async fn a_whole_sync_round_works_against_the_simulator() {
        let (server, cw) = start(false).await;
        assert_eq!(cw.agreements(300).await.unwrap().len(), 1203);
        let acme = cw.companies_by_identifier("ACME01").await.unwrap();
        assert_eq!((acme.len(), acme[0].id, acme[0].active), (1, 250, true));
        let quoted = cw.companies_by_identifier("Say \"hi\" \\o/").await.unwrap();
        assert_eq!((quoted.len(), quoted[0].active), (1, false));
        assert_eq!(cw.company(250).await.unwrap().unwrap().name, "Acme");
        assert_eq!(cw.company(9999).await.unwrap(), None);
        let agreements = cw.agreements(250).await.unwrap();
        assert_eq!(
            agreements
                .iter()
                .map(|a| (a.id, a.active))
                .collect::<Vec<_>>(),
            [(10, true), (11, false)]
        );
        assert!(cw.additions(10, "EP-PROT").await.unwrap().is_empty());
        let d = jiff::civil::date(2026, 11, 1);
        let added = cw
            .create_addition(10, "EP-PROT", 25.0, d, "Endpoint protection")
            .await
            .unwrap();
        assert_eq!(added.quantity, 25.0);
        let changed = cw.set_addition_quantity(10, added.id, 30.0).await.unwrap();
        assert_eq!(changed.quantity, 30.0);
        assert_eq!(cw.additions(10, "EP-PROT").await.unwrap().len(), 1);
        cw.cancel_addition(10, added.id, jiff::civil::date(2026, 11, 30))
            .await
            .unwrap();
        assert!(cw.additions(10, "EP-PROT").await.unwrap().is_empty());
        let t = cw
            .create_ticket(250, "Service Desk", "Usage sync failed", "why", None)
            .await
            .unwrap();
        assert_eq!(
            cw.open_tickets(250, "Usage sync failed")
                .await
                .unwrap()
                .len(),
            1
        );
        cw.close_ticket(t.id, None).await.unwrap();
        assert!(
            cw.open_tickets(250, "Usage sync failed")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(cw.requests(), server.requests_served());
    }

    #[tokio::test]
    async fn throttles_and_expired_keys_behave_as_documented() {
        for cloud in [false, true] {
            let (server, cw) = start(cloud).await;
            server.inject(Fault::RateLimit {
                count: 2,
                retry_after: 0,
            });
            server.inject(Fault::ServerError { count: 1 });
            assert_eq!(cw.agreements(250).await.unwrap().len(), 2);
            server.inject(Fault::ExpireKeys);
            let e = cw.agreements(250).await.unwrap_err().to_string();
            assert!(e.contains("refused") && e.contains("acmemsp"), "{e}");
            assert!(
                !e.contains("PubKeyA1b2C3d4") && !e.contains("PrivKeyZ9y8X7w6"),
                "{e}"
            );
            assert_eq!(cw.requests(), server.requests_served());
        }
    }
}
