//! A strict simulator of the ConnectWise Manage REST API 3.0 subset Ferry speaks
//! (`../shared/psa-api.md`, "ConnectWise Manage").
//!
//! Routes (everything under `/{codebase}apis/3.0/` answers for the configured codebase and for
//! `v4_6_release/`):
//!
//! - `GET /login/companyinfo/{companyId}`: codebase discovery, no authentication.
//! - `company/companies`, `finance/agreements`, `service/boards`, `procurement/catalog` (the
//!   products): `GET` list, `GET .../count`, `GET .../{id}`.
//! - `finance/agreements/{id}/additions`: the same, plus `POST` (create) and
//!   `PATCH .../{addId}` (JSON Patch `replace`).
//! - `service/tickets`: the same, plus `POST` and `PATCH .../{id}`.
//! - `company/companies/statuses` and `service/boards/{id}/statuses`: the tenant's company
//!   statuses (`inactiveFlag`) and each board's own ticket statuses (`closedStatus`). A ticket's
//!   status must be one of its board's: any other name or id is refused, as the real service
//!   refuses it (ConnectPyse `service/board_status.py`; `docs/psa-contract.md`).
//! - `service/tickets/{id}/notes`: `GET` list and `POST` (a note on a ticket).
//! - `system/documents`: `GET` list (`recordType`, `recordId`), `POST` as
//!   `multipart/form-data` only (a JSON body is 415, as the developer guide says),
//!   `GET .../{id}` and `GET .../{id}/download` (the bytes).
//!
//! Every API call needs HTTP Basic `{companyId}+{publicKey}:{privateKey}` and the `clientId`
//! header. Lists take `conditions` (parsed by a real tokenizer and recursive-descent parser,
//! evaluated against each record's API JSON), `orderBy`, `fields`, `page`/`pageSize` (or
//! forward-only paging with `pageId`) and answer a `Link` header. String comparisons are
//! case-insensitive, as the real service's SQL collation makes them.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::api::{Api, Faults, SimRequest, SimResponse, base64_decode};

/// `pageSize` when none is given.
const DEFAULT_PAGE_SIZE: usize = 25;
/// The largest `pageSize` accepted.
const MAX_PAGE_SIZE: usize = 1000;
/// Agreement names and ticket summaries are at most this many characters.
const MAX_NAME: usize = 100;
/// The legacy codebase every site also answers on.
const LEGACY_CODEBASE: &str = "v4_6_release";
/// `_info.lastUpdated` of every company.
const LAST_UPDATED: &str = "2026-01-01T00:00:00Z";
/// The priority of a ticket created without one.
const DEFAULT_PRIORITY: &str = "Priority 3 - Normal Response";
/// Ticket statuses of a board that lists none: (name, closedStatus, defaultFlag).
const DEFAULT_BOARD_STATUSES: [(&str, bool, bool); 4] = [
    ("New", false, true),
    ("In Progress", false, false),
    ("Waiting", false, false),
    ("Closed", true, false),
];
/// Largest document accepted (bytes); the developer guide gives no figure, so this only keeps
/// the simulator's memory bounded.
const MAX_DOCUMENT: usize = 64 * 1024 * 1024;
/// Ticket note text limit is not documented; first ids of created notes and documents.
const NOTE_BASE: i64 = 9000;
const DOCUMENT_BASE: i64 = 30000;
/// `billCustomer` values.
const BILL_CUSTOMER: [&str; 3] = ["Billable", "DoNotBill", "NoCharge"];
/// `agreementStatus` values.
const AGREEMENT_STATUSES: [&str; 4] = ["Active", "Cancelled", "Expired", "Inactive"];
/// Parentheses deeper than this in `conditions` are refused.
const MAX_DEPTH: usize = 64;
/// First id of additions and tickets created in an empty collection.
const ADDITION_BASE: i64 = 1000;
const TICKET_BASE: i64 = 7000;

/// The collections served, each with `GET`, `GET .../count` and `GET .../{id}` (paths
/// relative to `/{codebase}apis/3.0`).
const COLLECTIONS: [&str; 10] = [
    "company/companies",
    "company/companies/statuses",
    "finance/agreements",
    "finance/agreements/{id}/additions",
    "service/tickets",
    "service/tickets/{id}/notes",
    "service/boards",
    "service/boards/{id}/statuses",
    "procurement/catalog",
    "system/documents",
];

/// Every route this simulator serves, as `docs/psa-contract.md` lists them: method and path
/// (relative to `/{codebase}apis/3.0`, except discovery), `{...}` for ids.
/// `tests/psa_contract.rs` holds the table and the router to it.
pub fn routes() -> Vec<(&'static str, String)> {
    let mut out = vec![("GET", "/login/companyinfo/{companyId}".to_string())];
    for c in COLLECTIONS {
        out.push(("GET", format!("/{c}")));
        out.push(("GET", format!("/{c}/count")));
        out.push(("GET", format!("/{c}/{{id}}")));
    }
    for (method, path) in [
        ("POST", "/finance/agreements/{id}/additions"),
        ("PATCH", "/finance/agreements/{id}/additions/{id}"),
        ("POST", "/service/tickets"),
        ("PATCH", "/service/tickets/{id}"),
        ("POST", "/service/tickets/{id}/notes"),
        ("POST", "/system/documents"),
        ("GET", "/system/documents/{id}/download"),
    ] {
        out.push((method, path.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The data file
// ---------------------------------------------------------------------------------------------

/// The simulator's data file (YAML or JSON, camelCase keys). `state()` returns it in the same
/// shape, with the changes the API made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Data {
    /// The login company id (the `{companyId}` of Basic auth and of discovery).
    pub company_id: String,
    /// `CompanyName` answered by discovery (default: the company id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// The codebase discovery returns, e.g. `v2025_1/`.
    #[serde(default = "default_codebase")]
    pub codebase: String,
    /// The only `clientId` header accepted.
    pub client_id: String,
    /// API member public key.
    pub public_key: String,
    /// API member private key.
    pub private_key: String,
    /// A cloud site: bad credentials answer 404 instead of 401.
    #[serde(default)]
    pub cloud: bool,
    /// Request throttling; absent or `requests: 0` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Customer companies.
    #[serde(default)]
    pub companies: Vec<Company>,
    /// Agreements of the companies.
    #[serde(default)]
    pub agreements: Vec<Agreement>,
    /// The product catalog.
    #[serde(default)]
    pub products: Vec<Product>,
    /// Agreement additions.
    #[serde(default)]
    pub additions: Vec<Addition>,
    /// Service boards.
    #[serde(default)]
    pub boards: Vec<Board>,
    /// Service tickets.
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    /// Company statuses (default: Active, Inactive, Not-Approved, Credit Hold, Delinquent,
    /// Imported; Inactive and Not-Approved with `inactiveFlag`).
    #[serde(default = "default_company_statuses")]
    pub company_statuses: Vec<CompanyStatus>,
    /// Notes on tickets.
    #[serde(default)]
    pub ticket_notes: Vec<TicketNote>,
    /// Documents attached to records.
    #[serde(default)]
    pub documents: Vec<Document>,
}

/// A company status: whether companies in it are usable is `inactiveFlag`, not its name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompanyStatus {
    /// Id.
    pub id: i64,
    /// Name, as the tenant named it.
    pub name: String,
    /// Companies in this status are inactive.
    #[serde(default)]
    pub inactive_flag: bool,
    /// The status new companies get.
    #[serde(default)]
    pub default_flag: bool,
}

fn default_company_statuses() -> Vec<CompanyStatus> {
    [
        (1, "Active", false),
        (2, "Inactive", true),
        (3, "Not-Approved", true),
        (4, "Credit Hold", false),
        (5, "Delinquent", false),
        (6, "Imported", false),
    ]
    .into_iter()
    .map(|(id, name, inactive_flag)| CompanyStatus {
        id,
        name: name.into(),
        inactive_flag,
        default_flag: id == 1,
    })
    .collect()
}

/// A ticket status of one board. Names are the tenant's own: `>Closed` is only a common
/// default, and a board may have none by that name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BoardStatus {
    /// Id (unique across boards).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Tickets in this status are closed (`closedFlag`).
    #[serde(default)]
    pub closed_status: bool,
    /// No longer selectable.
    #[serde(default)]
    pub inactive: bool,
    /// The status a ticket gets when created without one.
    #[serde(default)]
    pub default_flag: bool,
    /// Position in the board's list.
    #[serde(default)]
    pub sort_order: i64,
}

/// A note on a ticket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketNote {
    /// Id.
    pub id: i64,
    /// The ticket.
    pub ticket_id: i64,
    /// Text.
    pub text: String,
    /// Shown in the ticket's description (discussion).
    #[serde(default)]
    pub detail_description_flag: bool,
    /// Internal note.
    #[serde(default)]
    pub internal_analysis_flag: bool,
    /// Resolution note.
    #[serde(default)]
    pub resolution_flag: bool,
}

/// A document attached to a record (`system/documents`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    /// Id.
    pub id: i64,
    /// `Ticket`, `Company`, `Agreement`, ...
    pub record_type: String,
    /// The record's id.
    pub record_id: i64,
    /// Title.
    pub title: String,
    /// The uploaded file's name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// The bytes, base64 (standard alphabet).
    pub content: String,
}

fn default_codebase() -> String {
    "v2025_1/".into()
}

/// At most `requests` requests in any `per_seconds` window.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window (0: unlimited).
    #[serde(default)]
    pub requests: u32,
    /// Window length in seconds.
    #[serde(default = "one_second")]
    pub per_seconds: u64,
}

fn one_second() -> u64 {
    1
}

/// A company.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Company {
    /// Id.
    pub id: i64,
    /// Unique identifier (`ACME01`).
    pub identifier: String,
    /// Name (not unique).
    pub name: String,
    /// Status name (`Active`, `Inactive`, ...).
    #[serde(default = "active")]
    pub status: String,
    /// `deletedFlag`.
    #[serde(default)]
    pub deleted: bool,
}

fn active() -> String {
    "Active".into()
}

/// An agreement.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agreement {
    /// Id.
    pub id: i64,
    /// Name (at most 100 characters).
    pub name: String,
    /// The company's id.
    pub company_id: i64,
    /// Agreement type name.
    #[serde(rename = "type", default = "managed_services")]
    pub kind: String,
    /// `agreementStatus`: Active, Cancelled, Expired or Inactive.
    #[serde(default = "active")]
    pub status: String,
    /// `cancelledFlag`.
    #[serde(default)]
    pub cancelled: bool,
    /// Start date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// End date (`YYYY-MM-DD`); none means no ending date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
}

fn managed_services() -> String {
    "Managed Services".into()
}

/// A catalog product.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    /// Id.
    pub id: i64,
    /// Unique identifier (SKU).
    pub identifier: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Unit price.
    #[serde(default, serialize_with = "ser_num")]
    pub price: f64,
}

/// An agreement addition.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Addition {
    /// Id.
    pub id: i64,
    /// The agreement's id.
    pub agreement_id: i64,
    /// The catalog product's identifier.
    pub product_identifier: String,
    /// Quantity.
    #[serde(default = "one", serialize_with = "ser_num")]
    pub quantity: f64,
    /// Unit price (default: the product's price).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_num"
    )]
    pub unit_price: Option<f64>,
    /// Effective date (`YYYY-MM-DD`).
    #[serde(default)]
    pub effective_date: Option<String>,
    /// Cancelled date (`YYYY-MM-DD`); null while the addition is live.
    #[serde(default)]
    pub cancelled_date: Option<String>,
    /// Billable, DoNotBill or NoCharge.
    #[serde(default = "billable")]
    pub bill_customer: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

fn one() -> f64 {
    1.0
}

fn billable() -> String {
    "Billable".into()
}

/// A service board.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Board {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The board's ticket statuses (default: `New` (default), `In Progress`, `Waiting`,
    /// `Closed` (closed); no `>Closed`).
    #[serde(default)]
    pub statuses: Vec<BoardStatus>,
}

/// A service ticket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ticket {
    /// Id.
    pub id: i64,
    /// Summary (at most 100 characters).
    pub summary: String,
    /// The company's id.
    pub company_id: i64,
    /// The board's name (default: the first board).
    #[serde(default)]
    pub board: String,
    /// Status name: one of the board's statuses (default: the board's default status).
    #[serde(default)]
    pub status: String,
    /// `closedFlag`: whether the status is a `closedStatus` of the board (derived).
    #[serde(default)]
    pub closed: bool,
    /// Initial description.
    #[serde(default)]
    pub initial_description: String,
    /// Priority name.
    #[serde(default = "default_priority")]
    pub priority: String,
}

fn default_priority() -> String {
    DEFAULT_PRIORITY.into()
}

/// Whole numbers as JSON integers (`12`, not `12.0`), so JSON written and read back compares
/// equal to what a client sent.
fn num_json(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

fn ser_num<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    num_json(*v).serialize(s)
}

fn ser_opt_num<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => num_json(*v).serialize(s),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/// `2026-01-01`, `2026-01-01T10:00:00Z` or `2026-01-01T10:00:00` as an instant (UTC).
fn parse_instant(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let utc = jiff::tz::TimeZone::UTC;
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(utc).ok().map(|z| z.timestamp());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d.to_zoned(utc).ok().map(|z| z.timestamp());
    }
    None
}

/// A date as stored (`YYYY-MM-DD`), from any of the shapes [`parse_instant`] reads.
fn normalize_date(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Some(d.to_string());
    }
    parse_instant(s).map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
}

/// A stored date in the API's shape (`2026-01-01T00:00:00Z`).
fn api_date(d: &Option<String>) -> Value {
    match d {
        Some(d) => Value::String(format!("{d}T00:00:00Z")),
        None => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Resources and their fields
// ---------------------------------------------------------------------------------------------

/// The type of a field, for checking `conditions` before evaluating them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Num,
    Str,
    Bool,
    Date,
    Obj,
    Arr,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
            Ty::Date => "a datetime",
            Ty::Obj => "a reference",
            Ty::Arr => "a list",
        }
    }
}

type Schema = &'static [(&'static str, Ty)];

const COMPANY_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("identifier", Ty::Str),
    ("name", Ty::Str),
    ("status", Ty::Obj),
    ("status/id", Ty::Num),
    ("status/name", Ty::Str),
    ("types", Ty::Arr),
    ("deletedFlag", Ty::Bool),
    ("_info", Ty::Obj),
    ("_info/lastUpdated", Ty::Date),
];

const AGREEMENT_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("name", Ty::Str),
    ("type", Ty::Obj),
    ("type/id", Ty::Num),
    ("type/name", Ty::Str),
    ("company", Ty::Obj),
    ("company/id", Ty::Num),
    ("company/identifier", Ty::Str),
    ("company/name", Ty::Str),
    ("agreementStatus", Ty::Str),
    ("cancelledFlag", Ty::Bool),
    ("startDate", Ty::Date),
    ("endDate", Ty::Date),
    ("noEndingDateFlag", Ty::Bool),
];

const ADDITION_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("product", Ty::Obj),
    ("product/id", Ty::Num),
    ("product/identifier", Ty::Str),
    ("quantity", Ty::Num),
    ("unitPrice", Ty::Num),
    ("unitCost", Ty::Num),
    ("billCustomer", Ty::Str),
    ("effectiveDate", Ty::Date),
    ("cancelledDate", Ty::Date),
    ("agreementId", Ty::Num),
    ("description", Ty::Str),
    ("invoiceDescription", Ty::Str),
];

const TICKET_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("summary", Ty::Str),
    ("company", Ty::Obj),
    ("company/id", Ty::Num),
    ("company/identifier", Ty::Str),
    ("company/name", Ty::Str),
    ("board", Ty::Obj),
    ("board/id", Ty::Num),
    ("board/name", Ty::Str),
    ("status", Ty::Obj),
    ("status/id", Ty::Num),
    ("status/name", Ty::Str),
    ("priority", Ty::Obj),
    ("priority/name", Ty::Str),
    ("initialDescription", Ty::Str),
    ("closedFlag", Ty::Bool),
];

const BOARD_FIELDS: Schema = &[("id", Ty::Num), ("name", Ty::Str)];

const COMPANY_STATUS_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("name", Ty::Str),
    ("inactiveFlag", Ty::Bool),
    ("defaultFlag", Ty::Bool),
];

const BOARD_STATUS_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("name", Ty::Str),
    ("board", Ty::Obj),
    ("board/id", Ty::Num),
    ("board/name", Ty::Str),
    ("sortOrder", Ty::Num),
    ("inactive", Ty::Bool),
    ("closedStatus", Ty::Bool),
    ("defaultFlag", Ty::Bool),
];

const NOTE_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("ticketId", Ty::Num),
    ("text", Ty::Str),
    ("detailDescriptionFlag", Ty::Bool),
    ("internalAnalysisFlag", Ty::Bool),
    ("resolutionFlag", Ty::Bool),
];

const DOCUMENT_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("title", Ty::Str),
    ("fileName", Ty::Str),
    ("size", Ty::Num),
    ("recordType", Ty::Str),
    ("recordId", Ty::Num),
];

const PRODUCT_FIELDS: Schema = &[
    ("id", Ty::Num),
    ("identifier", Ty::Str),
    ("description", Ty::Str),
    ("price", Ty::Num),
    ("cost", Ty::Num),
];

/// A collection of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Res {
    Company,
    Agreement,
    /// The additions of one agreement.
    Addition(i64),
    Ticket,
    Board,
    Product,
    CompanyStatus,
    /// The statuses of one board.
    BoardStatus(i64),
    /// The notes of one ticket.
    TicketNote(i64),
    Document,
}

impl Res {
    /// The name the API uses in `errors[].resource`.
    fn name(self) -> &'static str {
        match self {
            Res::Company => "company",
            Res::Agreement => "agreement",
            Res::Addition(_) => "agreementAddition",
            Res::Ticket => "ticket",
            Res::Board => "board",
            Res::Product => "catalogItem",
            Res::CompanyStatus => "companyStatus",
            Res::BoardStatus(_) => "boardStatus",
            Res::TicketNote(_) => "ticketNote",
            Res::Document => "document",
        }
    }

    /// The name used in "not found" messages.
    fn title(self) -> &'static str {
        match self {
            Res::Company => "Company",
            Res::Agreement => "Agreement",
            Res::Addition(_) => "Addition",
            Res::Ticket => "Ticket",
            Res::Board => "Board",
            Res::Product => "Catalog item",
            Res::CompanyStatus => "Company status",
            Res::BoardStatus(_) => "Board status",
            Res::TicketNote(_) => "Ticket note",
            Res::Document => "Document",
        }
    }

    fn schema(self) -> Schema {
        match self {
            Res::Company => COMPANY_FIELDS,
            Res::Agreement => AGREEMENT_FIELDS,
            Res::Addition(_) => ADDITION_FIELDS,
            Res::Ticket => TICKET_FIELDS,
            Res::Board => BOARD_FIELDS,
            Res::Product => PRODUCT_FIELDS,
            Res::CompanyStatus => COMPANY_STATUS_FIELDS,
            Res::BoardStatus(_) => BOARD_STATUS_FIELDS,
            Res::TicketNote(_) => NOTE_FIELDS,
            Res::Document => DOCUMENT_FIELDS,
        }
    }

    /// Whether `POST` on the collection creates a record and `PATCH` on an item updates it.
    fn writable(self) -> bool {
        matches!(self, Res::Addition(_) | Res::Ticket)
    }

    /// Whether `POST` on the collection creates a record (notes and documents are create-only
    /// here).
    fn creatable(self) -> bool {
        self.writable() || matches!(self, Res::TicketNote(_) | Res::Document)
    }
}

/// A field of `schema` named case-insensitively, as its canonical path.
fn field(schema: Schema, name: &str) -> Option<(&'static str, Ty)> {
    schema
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(name))
        .copied()
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(v, |v, k| v.get(k))
}

fn id_of(v: &Value) -> i64 {
    v.get("id").and_then(Value::as_i64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The conditions language
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    NotLike,
    Contains,
    NotContains,
    In,
    NotIn,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "like",
            Op::NotLike => "not like",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
            Op::In => "in",
            Op::NotIn => "not in",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Op(Op),
    Str(String),
    Num(f64, String),
    Date(jiff::Timestamp, String),
    Word(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Op(op) => format!("'{}'", op.text()),
            Tok::Str(s) => format!("the string \"{s}\""),
            Tok::Num(_, t) => format!("the number {t}"),
            Tok::Date(_, t) => format!("the datetime [{t}]"),
            Tok::Word(w) => format!("'{w}'"),
        }
    }
}

/// A value in `conditions`, after checking it against its field's type. Strings are
/// lower-cased (comparisons are case-insensitive).
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Date(jiff::Timestamp),
    Null,
}

/// A parsed `conditions` expression.
#[derive(Clone, Debug, PartialEq)]
enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Cmp {
        field: &'static str,
        op: Op,
        values: Vec<Lit>,
    },
}

const KEYWORDS: [&str; 9] = [
    "and", "or", "not", "like", "contains", "in", "true", "false", "null",
];

fn is_keyword(w: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// Splits `conditions` into tokens, each with its character position.
fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op(Op::Eq)
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Op(Op::Ne)
            }
            '!' => return Err(format!("'!' at position {at} must be followed by '='")),
            '<' | '>' => {
                let or_equal = next == Some('=');
                i += if or_equal { 2 } else { 1 };
                Tok::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' | '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "the string starting at position {at} is not closed"
                            ));
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(&escaped) => {
                                s.push(escaped);
                                i += 2;
                            }
                            None => {
                                return Err(format!(
                                    "the string starting at position {at} is not closed"
                                ));
                            }
                        },
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '[' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == ']') else {
                    return Err(format!(
                        "the datetime starting at position {at} has no closing ']'"
                    ));
                };
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                let Some(t) = parse_instant(&inner) else {
                    return Err(format!(
                        "[{inner}] at position {at} is not a datetime (write [2026-08-20T18:04:26Z])"
                    ));
                };
                i += len + 2;
                Tok::Date(t, inner.trim().to_string())
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j += 1;
                    while chars.get(j).is_some_and(char::is_ascii_digit) {
                        j += 1;
                    }
                }
                if chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    return Err(format!(
                        "unexpected '{}' in the number at position {at}",
                        chars[j]
                    ));
                }
                let text: String = chars[i..j].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| format!("{text} at position {at} is not a number"))?;
                i = j;
                Tok::Num(n, text)
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.'))
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                i = j;
                Tok::Word(word)
            }
            other => return Err(format!("unexpected character '{other}' at position {at}")),
        };
        out.push((at, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    schema: Schema,
    resource: &'static str,
    depth: usize,
}

/// Parses `conditions` for a resource: `None` for an empty expression.
fn parse_conditions(text: &str, res: Res) -> Result<Option<Cond>, String> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        schema: res.schema(),
        resource: res.name(),
        depth: 0,
    };
    let cond = p.or()?;
    if let Some((at, t)) = p.toks.get(p.pos) {
        return Err(format!(
            "unexpected {} at position {at} (expected 'and', 'or' or the end)",
            t.describe()
        ));
    }
    Ok(Some(cond))
}

impl Parser {
    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat_word(&mut self, word: &str) -> bool {
        match self.toks.get(self.pos) {
            Some((_, Tok::Word(w))) if w.eq_ignore_ascii_case(word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.and()?];
        while self.eat_word("or") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.primary()?];
        while self.eat_word("and") {
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Cond::And(items)
        })
    }

    fn primary(&mut self) -> Result<Cond, String> {
        match self.next() {
            Some((at, Tok::LParen)) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("parentheses nested too deeply at position {at}"));
                }
                let cond = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some((_, Tok::RParen)) => Ok(cond),
                    Some((at2, t)) => Err(format!(
                        "expected ')' at position {at2}, found {}",
                        t.describe()
                    )),
                    None => Err(format!("the '(' at position {at} is not closed")),
                }
            }
            Some((at, Tok::Word(w))) if !is_keyword(&w) => {
                let Some((path, ty)) = field(self.schema, &w) else {
                    return Err(format!(
                        "unknown field '{w}' at position {at} for {}",
                        self.resource
                    ));
                };
                self.comparison(path, ty)
            }
            Some((at, t)) => Err(format!(
                "expected a field name at position {at}, found {}",
                t.describe()
            )),
            None => Err("expected a field name at the end of the conditions".into()),
        }
    }

    fn comparison(&mut self, path: &'static str, ty: Ty) -> Result<Cond, String> {
        let op = match self.next() {
            Some((_, Tok::Op(op))) => op,
            Some((at, Tok::Word(w))) => match w.to_ascii_lowercase().as_str() {
                "like" => Op::Like,
                "contains" => Op::Contains,
                "in" => Op::In,
                "not" => match self.next() {
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("like") => Op::NotLike,
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("contains") => {
                        Op::NotContains
                    }
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("in") => Op::NotIn,
                    _ => {
                        return Err(format!(
                            "'not' at position {at} must be followed by like, contains or in"
                        ));
                    }
                },
                _ => {
                    return Err(format!(
                        "expected an operator after {path} at position {at}, found '{w}'"
                    ));
                }
            },
            Some((at, t)) => {
                return Err(format!(
                    "expected an operator after {path} at position {at}, found {}",
                    t.describe()
                ));
            }
            None => return Err(format!("expected an operator after {path}")),
        };
        let mut values = Vec::new();
        if matches!(op, Op::In | Op::NotIn) {
            match self.next() {
                Some((_, Tok::LParen)) => {}
                Some((at, t)) => {
                    return Err(format!(
                        "expected '(' after {} at position {at}, found {}",
                        op.text(),
                        t.describe()
                    ));
                }
                None => return Err(format!("expected '(' after {path} {}", op.text())),
            }
            loop {
                let (at, value) = self.literal(path, op)?;
                values.push(check_value(path, ty, op, value, true).map_err(|e| at_pos(e, at))?);
                match self.next() {
                    Some((_, Tok::Comma)) => continue,
                    Some((_, Tok::RParen)) => break,
                    Some((at, t)) => {
                        return Err(format!(
                            "expected ',' or ')' at position {at}, found {}",
                            t.describe()
                        ));
                    }
                    None => {
                        return Err(format!("the list after {path} {} is not closed", op.text()));
                    }
                }
            }
        } else {
            let (at, value) = self.literal(path, op)?;
            values.push(check_value(path, ty, op, value, false).map_err(|e| at_pos(e, at))?);
        }
        Ok(Cond::Cmp {
            field: path,
            op,
            values,
        })
    }

    /// A value as written; the `Str` of a number keeps its text.
    fn literal(&mut self, path: &str, op: Op) -> Result<(usize, RawLit), String> {
        match self.next() {
            Some((at, Tok::Str(s))) => Ok((at, RawLit::Str(s))),
            Some((at, Tok::Num(n, text))) => Ok((at, RawLit::Num(n, text))),
            Some((at, Tok::Date(t, _))) => Ok((at, RawLit::Date(t))),
            Some((at, Tok::Word(w))) => match w.to_ascii_lowercase().as_str() {
                "true" => Ok((at, RawLit::Bool(true))),
                "false" => Ok((at, RawLit::Bool(false))),
                "null" => Ok((at, RawLit::Null)),
                _ => Err(format!(
                    "expected a value at position {at}, found '{w}' (strings must be quoted)"
                )),
            },
            Some((at, t)) => Err(format!(
                "expected a value at position {at}, found {}",
                t.describe()
            )),
            None => Err(format!("expected a value after {path} {}", op.text())),
        }
    }
}

/// A value before it is checked against its field.
enum RawLit {
    Str(String),
    Num(f64, String),
    Bool(bool),
    Date(jiff::Timestamp),
    Null,
}

fn at_pos(e: String, at: usize) -> String {
    format!("{e} (at position {at})")
}

/// Checks a value against its field's type and operator, converting where the API does
/// (a quoted number for a numeric field, a bare number for a string field).
fn check_value(path: &str, ty: Ty, op: Op, value: RawLit, in_list: bool) -> Result<Lit, String> {
    if let RawLit::Null = value {
        return if in_list || !matches!(op, Op::Eq | Op::Ne) {
            Err(format!(
                "null can only be compared with = or != ({path} {})",
                op.text()
            ))
        } else {
            Ok(Lit::Null)
        };
    }
    match ty {
        Ty::Obj => {
            return Err(format!(
                "{path} is a reference: compare one of its fields, e.g. {path}/id"
            ));
        }
        Ty::Arr => return Err(format!("{path} is a list and cannot be compared")),
        _ => {}
    }
    let text_op = matches!(op, Op::Like | Op::NotLike | Op::Contains | Op::NotContains);
    if text_op {
        return match (ty, value) {
            (Ty::Str, RawLit::Str(s)) => Ok(Lit::Str(s.to_lowercase())),
            (Ty::Str, _) => Err(format!("{} needs a quoted string", op.text())),
            _ => Err(format!(
                "{} only applies to string fields; {path} is {}",
                op.text(),
                ty.describe()
            )),
        };
    }
    let ordering = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
    match (ty, value) {
        (Ty::Num, RawLit::Num(n, _)) => Ok(Lit::Num(n)),
        (Ty::Num, RawLit::Str(s)) => s
            .trim()
            .parse::<f64>()
            .map(Lit::Num)
            .map_err(|_| format!("{path} is a number; \"{s}\" is not")),
        (Ty::Str, RawLit::Str(s)) => Ok(Lit::Str(s.to_lowercase())),
        (Ty::Str, RawLit::Num(_, text)) => Ok(Lit::Str(text.to_lowercase())),
        (Ty::Bool, RawLit::Bool(_)) if ordering => {
            Err(format!("{path} is a boolean: compare it with = or !="))
        }
        (Ty::Bool, RawLit::Bool(b)) => Ok(Lit::Bool(b)),
        (Ty::Date, RawLit::Date(t)) => Ok(Lit::Date(t)),
        (Ty::Date, RawLit::Str(s)) => Err(format!(
            "{path} is a datetime: write \"{s}\" in brackets, e.g. [2026-08-20T18:04:26Z]"
        )),
        (ty, value) => Err(format!(
            "{path} is {} and cannot be compared with {}",
            ty.describe(),
            match value {
                RawLit::Str(_) => "a string",
                RawLit::Num(..) => "a number",
                RawLit::Bool(_) => "a boolean",
                RawLit::Date(_) => "a datetime",
                RawLit::Null => "null",
            }
        )),
    }
}

/// Case-insensitive equality against an already lower-cased string.
fn eq_ci(s: &str, lower: &str) -> bool {
    s.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// `*` (and SQL's `%`) match any run of characters; both sides lower-cased.
fn glob(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && matches!(p[pi], '*' | '%') {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| matches!(c, '*' | '%'))
}

fn lit_eq(v: &Value, lit: &Lit) -> bool {
    match lit {
        Lit::Str(s) => v.as_str().is_some_and(|x| eq_ci(x, s)),
        Lit::Num(n) => v.as_f64() == Some(*n),
        Lit::Bool(b) => v.as_bool() == Some(*b),
        Lit::Date(t) => v.as_str().and_then(parse_instant) == Some(*t),
        Lit::Null => v.is_null(),
    }
}

fn lit_cmp(v: &Value, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Str(s) => v.as_str().map(|x| cmp_ci(x, s)),
        Lit::Num(n) => v.as_f64().and_then(|x| x.partial_cmp(n)),
        Lit::Date(t) => v.as_str().and_then(parse_instant).map(|x| x.cmp(t)),
        Lit::Bool(_) | Lit::Null => None,
    }
}

fn eval(cond: &Cond, record: &Value) -> bool {
    match cond {
        Cond::Or(items) => items.iter().any(|c| eval(c, record)),
        Cond::And(items) => items.iter().all(|c| eval(c, record)),
        Cond::Cmp { field, op, values } => {
            let v = get_path(record, field).unwrap_or(&Value::Null);
            if let [Lit::Null] = values.as_slice() {
                return (*op == Op::Eq) == v.is_null();
            }
            // SQL semantics: a null field compares false with everything but null.
            if v.is_null() {
                return false;
            }
            let first = &values[0];
            let text = || v.as_str().map(str::to_lowercase);
            let pattern = || match first {
                Lit::Str(s) => s.as_str(),
                _ => "",
            };
            match op {
                Op::Eq => lit_eq(v, first),
                Op::Ne => !lit_eq(v, first),
                Op::Lt => lit_cmp(v, first) == Some(Ordering::Less),
                Op::Le => matches!(lit_cmp(v, first), Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => lit_cmp(v, first) == Some(Ordering::Greater),
                Op::Ge => matches!(lit_cmp(v, first), Some(Ordering::Greater | Ordering::Equal)),
                Op::Like => text().is_some_and(|t| glob(&t, pattern())),
                Op::NotLike => text().is_some_and(|t| !glob(&t, pattern())),
                Op::Contains => text().is_some_and(|t| t.contains(pattern())),
                Op::NotContains => text().is_some_and(|t| !t.contains(pattern())),
                Op::In => values.iter().any(|l| lit_eq(v, l)),
                Op::NotIn => !values.iter().any(|l| lit_eq(v, l)),
            }
        }
    }
}

/// Ordering for `orderBy`: nulls first, strings case-insensitive.
fn cmp_json(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => cmp_ci(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// One entry of `errors[]`.
struct FieldError {
    code: &'static str,
    field: String,
    message: String,
}

impl FieldError {
    fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        FieldError {
            code,
            field: field.to_string(),
            message: message.into(),
        }
    }
    fn missing(field: &str) -> Self {
        FieldError::new("NullOrEmpty", field, format!("{field} is required."))
    }
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        FieldError::new("InvalidObject", field, message)
    }
}

fn error_json(status: u16, code: &str, message: &str) -> SimResponse {
    SimResponse::json(status, &json!({"code": code, "message": message}))
}

fn not_found(message: &str) -> SimResponse {
    error_json(404, "NotFound", message)
}

/// 400 `InvalidObject` for a record that fails validation.
fn invalid(resource: &str, errors: &[FieldError]) -> SimResponse {
    let detail: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    let list: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({"code": e.code, "message": e.message, "resource": resource, "field": e.field})
        })
        .collect();
    SimResponse::json(
        400,
        &json!({
            "code": "InvalidObject",
            "message": format!("{resource} object is invalid: {}", detail.join("; ")),
            "errors": list,
        }),
    )
}

/// 400 `InvalidObject` for a bad query parameter (`conditions`, `pageSize`, ...).
fn bad_param(res: Res, param: &str, message: &str) -> SimResponse {
    SimResponse::json(
        400,
        &json!({
            "code": "InvalidObject",
            "message": format!("{param}: {message}"),
            "errors": [{"code": "InvalidObject", "message": message, "resource": res.name(), "field": param}],
        }),
    )
}

fn bad_body(message: &str) -> SimResponse {
    error_json(400, "InvalidObject", message)
}

fn method_not_allowed(method: &str, allow: &str) -> SimResponse {
    error_json(
        405,
        "MethodNotAllowed",
        &format!("The requested resource does not support http method '{method}'."),
    )
    .with_header("allow", allow)
}

fn body_json(req: &SimRequest) -> Result<Value, SimResponse> {
    req.json().map_err(|e| bad_body(&e))
}

fn body_object(req: &SimRequest) -> Result<Map<String, Value>, SimResponse> {
    match body_json(req)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad_body("the request body must be a JSON object")),
    }
}

/// The `replace` operations of a JSON Patch body, as `(field, value)`.
fn patch_ops(req: &SimRequest, res: Res) -> Result<Vec<(String, Value)>, SimResponse> {
    let Value::Array(ops) = body_json(req)? else {
        return Err(bad_body(
            "the request body must be a JSON Patch array, e.g. [{\"op\":\"replace\",\"path\":\"quantity\",\"value\":25}]",
        ));
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(obj) = op.as_object() else {
            errors.push(FieldError::invalid(
                "op",
                format!("operation {i} is not an object"),
            ));
            continue;
        };
        let Some(path) = obj.get("path").and_then(Value::as_str) else {
            errors.push(FieldError::missing("path"));
            continue;
        };
        let path = path.trim_start_matches('/').to_string();
        match obj.get("op").and_then(Value::as_str) {
            Some(o) if o.eq_ignore_ascii_case("replace") => {}
            Some(o) => {
                errors.push(FieldError::invalid(
                    &path,
                    format!("operation '{o}' on {path} is not supported (use replace)"),
                ));
                continue;
            }
            None => {
                errors.push(FieldError::missing("op"));
                continue;
            }
        }
        let Some(value) = obj.get("value") else {
            errors.push(FieldError::invalid(
                &path,
                format!("the replace of {path} has no value"),
            ));
            continue;
        };
        out.push((path, value.clone()));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(invalid(res.name(), &errors))
    }
}

/// Percent-encodes all but unreserved characters (and those in `keep`).
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The absolute URL of this request with `drop` parameters removed and `set` ones appended.
fn page_url(base_url: &str, req: &SimRequest, drop: &[&str], set: (&str, String)) -> String {
    let mut url = format!("{base_url}{}", encode(&req.path, b"/"));
    let mut sep = '?';
    for (k, v) in &req.query {
        if drop.iter().any(|d| d.eq_ignore_ascii_case(k)) || k.eq_ignore_ascii_case(set.0) {
            continue;
        }
        let _ = write!(url, "{sep}{}={}", encode(k, b""), encode(v, b""));
        sep = '&';
    }
    let _ = write!(url, "{sep}{}={}", set.0, encode(&set.1, b""));
    url
}

// ---------------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------------

/// The simulated API.
pub struct ConnectWise {
    inner: Mutex<Inner>,
}

struct Inner {
    data: Data,
    /// The configured codebase without slashes.
    codebase: String,
    company_ix: HashMap<i64, usize>,
    company_by_ident: HashMap<String, usize>,
    agreement_ix: HashMap<i64, usize>,
    agreement_types: HashMap<String, i64>,
    product_ix: HashMap<i64, usize>,
    product_by_ident: HashMap<String, usize>,
    board_ix: HashMap<i64, usize>,
    board_by_name: HashMap<String, usize>,
    addition_ix: HashMap<i64, usize>,
    ticket_ix: HashMap<i64, usize>,
    /// Indexes of the agreements of each company.
    agreements_by_company: HashMap<i64, Vec<usize>>,
    /// Indexes of the additions of each agreement.
    additions_by_agreement: HashMap<i64, Vec<usize>>,
    /// Indexes of the tickets of each company.
    tickets_by_company: HashMap<i64, Vec<usize>>,
    next_addition: i64,
    next_ticket: i64,
    next_note: i64,
    next_document: i64,
    /// Company statuses by lower-cased name.
    company_status_by_name: HashMap<String, usize>,
    /// Times of the requests inside the rate-limit window.
    window: VecDeque<Instant>,
    views: Views,
}

/// Every record rendered in the API's shape, index-aligned with the lists of [`Data`] and kept
/// in step by the writes, so a list request does not re-render thousands of records.
#[derive(Default)]
struct Views {
    companies: Vec<Value>,
    agreements: Vec<Value>,
    products: Vec<Value>,
    additions: Vec<Value>,
    boards: Vec<Value>,
    tickets: Vec<Value>,
    company_statuses: Vec<Value>,
    /// Every board's statuses, board after board.
    board_statuses: Vec<Value>,
    notes: Vec<Value>,
    /// Documents without their bytes.
    documents: Vec<Value>,
}

/// Builds `id -> index`, refusing duplicates.
fn index_ids<T>(
    what: &str,
    items: &[T],
    id: impl Fn(&T) -> i64,
) -> Result<HashMap<i64, usize>, String> {
    let mut ix = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if ix.insert(id(item), i).is_some() {
            return Err(format!("{what}: duplicate id {}", id(item)));
        }
    }
    Ok(ix)
}

/// Builds `lower-cased key -> index`, refusing duplicates and empty keys.
fn index_names<T>(
    what: &str,
    key: &str,
    items: &[T],
    name: impl Fn(&T) -> &str,
) -> Result<HashMap<String, usize>, String> {
    let mut ix = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = name(item);
        if n.trim().is_empty() {
            return Err(format!("{what}[{i}]: {key} is empty"));
        }
        if ix.insert(n.to_lowercase(), i).is_some() {
            return Err(format!("{what}: duplicate {key} \"{n}\""));
        }
    }
    Ok(ix)
}

/// `key -> indexes` of the items with that key.
fn group<T>(items: &[T], key: impl Fn(&T) -> i64) -> HashMap<i64, Vec<usize>> {
    let mut out: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        out.entry(key(item)).or_default().push(i);
    }
    out
}

/// The status a ticket on `board` gets when created without one: the default status, else
/// the first open active one.
fn board_default_status(board: &Board) -> Option<&BoardStatus> {
    board
        .statuses
        .iter()
        .find(|s| s.default_flag && !s.inactive)
        .or_else(|| {
            let mut open: Vec<&BoardStatus> = (board.statuses.iter())
                .filter(|s| !s.closed_status && !s.inactive)
                .collect();
            open.sort_by_key(|s| s.sort_order);
            open.first().copied()
        })
}

fn canonical<'a>(value: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .copied()
}

fn next_id(ids: impl Iterator<Item = i64>, base: i64) -> i64 {
    ids.max().map_or(base, |m| m + 1)
}

impl ConnectWise {
    /// Builds the simulator from its data, checking ids are unique and references resolve.
    pub fn new(mut data: Data) -> Result<ConnectWise, String> {
        let codebase = data.codebase.trim_matches('/').to_string();
        if codebase.is_empty() || codebase.contains('/') {
            return Err(format!(
                "codebase \"{}\" must be one path segment such as v2025_1/",
                data.codebase
            ));
        }
        data.codebase = format!("{codebase}/");
        for (key, value) in [
            ("companyId", &data.company_id),
            ("clientId", &data.client_id),
            ("publicKey", &data.public_key),
            ("privateKey", &data.private_key),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key} is empty"));
            }
        }
        if data.company_id.contains(['+', ':', '/']) || data.public_key.contains(':') {
            return Err("companyId must not contain '+', ':' or '/', nor publicKey ':'".into());
        }
        if let Some(rl) = &data.rate_limit
            && rl.requests > 0
            && rl.per_seconds == 0
        {
            return Err("rateLimit.perSeconds must be at least 1".into());
        }

        let company_ix = index_ids("companies", &data.companies, |c| c.id)?;
        let company_by_ident = index_names("companies", "identifier", &data.companies, |c| {
            &c.identifier
        })?;
        for c in &data.companies {
            if c.name.trim().is_empty() {
                return Err(format!("companies: company {} has an empty name", c.id));
            }
        }

        let agreement_ix = index_ids("agreements", &data.agreements, |a| a.id)?;
        let mut agreement_types = HashMap::new();
        for a in &mut data.agreements {
            if !company_ix.contains_key(&a.company_id) {
                return Err(format!(
                    "agreements: agreement {} refers to company {}, which does not exist",
                    a.id, a.company_id
                ));
            }
            a.status = canonical(&a.status, &AGREEMENT_STATUSES)
                .ok_or_else(|| {
                    format!(
                        "agreements: agreement {} has status \"{}\" (expected one of {})",
                        a.id,
                        a.status,
                        AGREEMENT_STATUSES.join(", ")
                    )
                })?
                .to_string();
            if a.name.trim().is_empty() || a.name.chars().count() > MAX_NAME {
                return Err(format!(
                    "agreements: agreement {} needs a name of 1 to {MAX_NAME} characters",
                    a.id
                ));
            }
            for (key, date) in [
                ("startDate", &mut a.start_date),
                ("endDate", &mut a.end_date),
            ] {
                if let Some(d) = date {
                    *d = normalize_date(d).ok_or_else(|| {
                        format!(
                            "agreements: agreement {}: {key} \"{d}\" is not a date",
                            a.id
                        )
                    })?;
                }
            }
            let next = agreement_types.len() as i64 + 1;
            agreement_types.entry(a.kind.to_lowercase()).or_insert(next);
        }

        let product_ix = index_ids("products", &data.products, |p| p.id)?;
        let product_by_ident =
            index_names("products", "identifier", &data.products, |p| &p.identifier)?;
        let board_ix = index_ids("boards", &data.boards, |b| b.id)?;
        let board_by_name = index_names("boards", "name", &data.boards, |b| &b.name)?;
        let mut board_status_ids = std::collections::HashSet::new();
        for (bi, b) in data.boards.iter_mut().enumerate() {
            if b.statuses.is_empty() {
                b.statuses = DEFAULT_BOARD_STATUSES
                    .iter()
                    .enumerate()
                    .map(|(i, (name, closed, default))| BoardStatus {
                        id: b.id * 100 + i as i64 + 1,
                        name: (*name).into(),
                        closed_status: *closed,
                        inactive: false,
                        default_flag: *default,
                        sort_order: i as i64,
                    })
                    .collect();
            }
            index_names(
                &format!("boards[{bi}].statuses"),
                "name",
                &b.statuses,
                |s| &s.name,
            )?;
            for st in &b.statuses {
                if !board_status_ids.insert(st.id) {
                    return Err(format!("board statuses: duplicate id {}", st.id));
                }
            }
            if b.statuses.iter().filter(|s| s.default_flag).count() > 1 {
                return Err(format!(
                    "board \"{}\" has more than one default status",
                    b.name
                ));
            }
        }
        index_ids("companyStatuses", &data.company_statuses, |s| s.id)?;
        let company_status_by_name =
            index_names("companyStatuses", "name", &data.company_statuses, |s| {
                &s.name
            })?;
        for c in &mut data.companies {
            let Some(&i) = company_status_by_name.get(&c.status.to_lowercase()) else {
                return Err(format!(
                    "companies: company {} has status \"{}\", which is not in companyStatuses",
                    c.id, c.status
                ));
            };
            c.status = data.company_statuses[i].name.clone();
        }

        let addition_ix = index_ids("additions", &data.additions, |a| a.id)?;
        for a in &mut data.additions {
            if !agreement_ix.contains_key(&a.agreement_id) {
                return Err(format!(
                    "additions: addition {} refers to agreement {}, which does not exist",
                    a.id, a.agreement_id
                ));
            }
            let Some(&p) = product_by_ident.get(&a.product_identifier.to_lowercase()) else {
                return Err(format!(
                    "additions: addition {} refers to product \"{}\", which is not in products",
                    a.id, a.product_identifier
                ));
            };
            a.product_identifier = data.products[p].identifier.clone();
            a.bill_customer = canonical(&a.bill_customer, &BILL_CUSTOMER)
                .ok_or_else(|| {
                    format!(
                        "additions: addition {} has billCustomer \"{}\" (expected one of {})",
                        a.id,
                        a.bill_customer,
                        BILL_CUSTOMER.join(", ")
                    )
                })?
                .to_string();
            for (key, date) in [
                ("effectiveDate", &mut a.effective_date),
                ("cancelledDate", &mut a.cancelled_date),
            ] {
                if let Some(d) = date {
                    *d = normalize_date(d).ok_or_else(|| {
                        format!("additions: addition {}: {key} \"{d}\" is not a date", a.id)
                    })?;
                }
            }
        }

        let ticket_ix = index_ids("tickets", &data.tickets, |t| t.id)?;
        let first_board = data.boards.first().map(|b| b.name.clone());
        for t in &mut data.tickets {
            if !company_ix.contains_key(&t.company_id) {
                return Err(format!(
                    "tickets: ticket {} refers to company {}, which does not exist",
                    t.id, t.company_id
                ));
            }
            if t.board.trim().is_empty() {
                t.board = first_board.clone().ok_or_else(|| {
                    format!(
                        "tickets: ticket {} has no board and there are no boards",
                        t.id
                    )
                })?;
            }
            let Some(&b) = board_by_name.get(&t.board.to_lowercase()) else {
                return Err(format!(
                    "tickets: ticket {} is on board \"{}\", which is not in boards",
                    t.id, t.board
                ));
            };
            t.board = data.boards[b].name.clone();
            let board = &data.boards[b];
            let status = if t.status.trim().is_empty() {
                board_default_status(board)
            } else {
                board
                    .statuses
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(t.status.trim()))
            };
            let Some(status) = status else {
                return Err(format!(
                    "tickets: ticket {} has status \"{}\", which is not a status of board \"{}\"",
                    t.id, t.status, board.name
                ));
            };
            t.status = status.name.clone();
            t.closed = status.closed_status;
            if t.summary.chars().count() > MAX_NAME {
                return Err(format!(
                    "tickets: ticket {} has a summary over {MAX_NAME} characters",
                    t.id
                ));
            }
        }

        let next_addition = next_id(data.additions.iter().map(|a| a.id), ADDITION_BASE);
        let next_ticket = next_id(data.tickets.iter().map(|t| t.id), TICKET_BASE);
        let ticket_ids: std::collections::HashSet<i64> =
            data.tickets.iter().map(|t| t.id).collect();
        index_ids("ticketNotes", &data.ticket_notes, |n| n.id)?;
        for n in &data.ticket_notes {
            if !ticket_ids.contains(&n.ticket_id) {
                return Err(format!(
                    "ticketNotes: note {} refers to ticket {}, which does not exist",
                    n.id, n.ticket_id
                ));
            }
        }
        index_ids("documents", &data.documents, |d| d.id)?;
        let next_note = next_id(data.ticket_notes.iter().map(|n| n.id), NOTE_BASE);
        let next_document = next_id(data.documents.iter().map(|d| d.id), DOCUMENT_BASE);
        let agreements_by_company = group(&data.agreements, |a| a.company_id);
        let additions_by_agreement = group(&data.additions, |a| a.agreement_id);
        let tickets_by_company = group(&data.tickets, |t| t.company_id);
        let sim = ConnectWise {
            inner: Mutex::new(Inner {
                data,
                codebase,
                company_ix,
                company_by_ident,
                agreement_ix,
                agreement_types,
                product_ix,
                product_by_ident,
                board_ix,
                board_by_name,
                addition_ix,
                ticket_ix,
                agreements_by_company,
                additions_by_agreement,
                tickets_by_company,
                next_addition,
                next_ticket,
                next_note,
                next_document,
                company_status_by_name,
                window: VecDeque::new(),
                views: Views::default(),
            }),
        };
        let mut inner = sim.lock();
        let views = Views {
            companies: inner
                .data
                .companies
                .iter()
                .map(|c| inner.company_json(c))
                .collect(),
            agreements: (inner.data.agreements.iter())
                .map(|a| inner.agreement_json(a))
                .collect(),
            products: inner
                .data
                .products
                .iter()
                .map(Inner::product_json)
                .collect(),
            additions: (inner.data.additions.iter())
                .map(|a| inner.addition_json(a))
                .collect(),
            boards: inner.data.boards.iter().map(Inner::board_json).collect(),
            tickets: inner
                .data
                .tickets
                .iter()
                .map(|t| inner.ticket_json(t))
                .collect(),
            company_statuses: (inner.data.company_statuses.iter())
                .map(Inner::company_status_json)
                .collect(),
            board_statuses: (inner.data.boards.iter())
                .flat_map(|b| {
                    b.statuses
                        .iter()
                        .map(move |s| Inner::board_status_json(b, s))
                })
                .collect(),
            notes: inner
                .data
                .ticket_notes
                .iter()
                .map(Inner::note_json)
                .collect(),
            documents: inner
                .data
                .documents
                .iter()
                .map(Inner::document_json)
                .collect(),
        };
        inner.views = views;
        drop(inner);
        Ok(sim)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Api for ConnectWise {
    fn handle(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        let mut inner = self.lock();
        if let Some(refused) = inner.throttle() {
            return refused;
        }
        inner.handle(req, faults, base_url)
    }

    fn error(&self, status: u16, message: &str) -> SimResponse {
        error_json(status, "ConnectWiseApi", message)
    }

    fn state(&self) -> Value {
        serde_json::to_value(&self.lock().data).unwrap_or(Value::Null)
    }
}

/// What a list request asks for.
struct ListQuery {
    cond: Option<Cond>,
    order: Vec<(&'static str, bool)>,
    fields: Option<Vec<&'static str>>,
    page: usize,
    page_size: usize,
    /// `Some(pageId)` with forward-only paging.
    forward_after: Option<i64>,
}

impl Inner {
    /// 429 when the configured rate limit is exhausted; otherwise counts the request.
    fn throttle(&mut self) -> Option<SimResponse> {
        let rl = self.data.rate_limit.as_ref()?;
        if rl.requests == 0 {
            return None;
        }
        let window = Duration::from_secs(rl.per_seconds);
        let now = Instant::now();
        while self.window.front().is_some_and(|t| *t + window <= now) {
            self.window.pop_front();
        }
        if self.window.len() >= rl.requests as usize {
            let free_at = self.window.front().map_or(now, |t| *t + window);
            let wait = free_at.saturating_duration_since(now);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            return Some(
                error_json(
                    429,
                    "ConnectWiseApi",
                    &format!(
                        "Request limit of {} per {} seconds exceeded; retry after {secs} seconds",
                        rl.requests, rl.per_seconds
                    ),
                )
                .with_header("retry-after", secs.to_string()),
            );
        }
        self.window.push_back(now);
        None
    }

    fn handle(&mut self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() >= 2
            && segs[0].eq_ignore_ascii_case("login")
            && segs[1].eq_ignore_ascii_case("companyinfo")
        {
            return self.company_info(req, &segs[2..]);
        }
        let is_api = segs.len() >= 3
            && (segs[0].eq_ignore_ascii_case(&self.codebase)
                || segs[0].eq_ignore_ascii_case(LEGACY_CODEBASE))
            && segs[1].eq_ignore_ascii_case("apis")
            && segs[2] == "3.0";
        if !is_api {
            return not_found(&format!(
                "No route for {} (expected /{}apis/3.0/...)",
                req.path, self.data.codebase
            ));
        }
        if let Err(refused) = self.authenticate(req, faults) {
            return refused;
        }
        let lower: Vec<String> = segs[3..].iter().map(|s| s.to_ascii_lowercase()).collect();
        let rest: Vec<&str> = lower.iter().map(String::as_str).collect();
        let unknown = || not_found(&format!("The resource {} was not found", req.path));
        let (res, tail) = match rest.as_slice() {
            ["company", "companies", "statuses", tail @ ..] => (Res::CompanyStatus, tail),
            ["company", "companies", tail @ ..] => (Res::Company, tail),
            ["service", "boards", id, "statuses", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.board_ix.contains_key(&id) {
                    return not_found(&format!("Board with id {id} was not found"));
                }
                (Res::BoardStatus(id), tail)
            }
            ["service", "tickets", id, "notes", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.ticket_ix.contains_key(&id) {
                    return not_found(&format!("Ticket with id {id} was not found"));
                }
                (Res::TicketNote(id), tail)
            }
            ["system", "documents", tail @ ..] => (Res::Document, tail),
            ["finance", "agreements", id, "additions", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.agreement_ix.contains_key(&id) {
                    return not_found(&format!("Agreement with id {id} was not found"));
                }
                (Res::Addition(id), tail)
            }
            ["finance", "agreements", tail @ ..] => (Res::Agreement, tail),
            ["service", "tickets", tail @ ..] => (Res::Ticket, tail),
            ["service", "boards", tail @ ..] => (Res::Board, tail),
            ["procurement", "catalog", tail @ ..] => (Res::Product, tail),
            _ => return unknown(),
        };
        let method = req.method.as_str();
        match tail {
            [] => match method {
                "GET" => self.list(res, req, base_url, None, None),
                "POST" if res.creatable() => self.create(res, req),
                _ => method_not_allowed(method, if res.creatable() { "GET, POST" } else { "GET" }),
            },
            [id, download] if res == Res::Document && *download == "download" => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                match method {
                    "GET" => self.download(id),
                    _ => method_not_allowed(method, "GET"),
                }
            }
            ["count"] => match method {
                "GET" => self.count(res, req),
                _ => method_not_allowed(method, "GET"),
            },
            [id] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                match method {
                    "GET" => match (self.record(res, id), Self::fields(res, req)) {
                        (_, Err(refused)) => refused,
                        (Some(r), Ok(Some(fields))) => {
                            SimResponse::json(200, &project(&r, &fields))
                        }
                        (Some(r), Ok(None)) => SimResponse::json(200, &r),
                        (None, _) => self.missing(res, id),
                    },
                    "PATCH" if res.writable() => self.patch(res, id, req),
                    _ => method_not_allowed(
                        method,
                        if res.writable() { "GET, PATCH" } else { "GET" },
                    ),
                }
            }
            _ => unknown(),
        }
    }

    fn missing(&self, res: Res, id: i64) -> SimResponse {
        not_found(&format!("{} with id {id} was not found", res.title()))
    }

    /// `GET /login/companyinfo/{companyId}`.
    fn company_info(&self, req: &SimRequest, rest: &[&str]) -> SimResponse {
        if req.method != "GET" {
            return method_not_allowed(&req.method, "GET");
        }
        match rest {
            [company] if company.eq_ignore_ascii_case(&self.data.company_id) => SimResponse::json(
                200,
                &json!({
                    "CompanyName": self.data.company_name.clone().unwrap_or_else(|| self.data.company_id.clone()),
                    "Codebase": self.data.codebase,
                    "VersionCode": "v2025.1",
                    "VersionNumber": "v2025.1.12345",
                    "CompanyID": self.data.company_id,
                    "IsCloud": self.data.cloud,
                }),
            ),
            [company] => not_found(&format!("Company {company} was not found")),
            _ => not_found(&format!("No route for {}", req.path)),
        }
    }

    /// Basic credentials, then the `clientId` header.
    fn authenticate(&self, req: &SimRequest, faults: &Faults) -> Result<(), SimResponse> {
        let refused = || {
            error_json(
                if self.data.cloud { 404 } else { 401 },
                "ConnectWiseApi",
                "UserNotAuthenticated",
            )
        };
        if faults.keys_expired {
            return Err(refused());
        }
        let decoded = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest)
            })
            .and_then(base64_decode)
            .and_then(|b| String::from_utf8(b).ok());
        let Some(decoded) = decoded else {
            return Err(refused());
        };
        let ok = decoded
            .split_once(':')
            .and_then(|(user, password)| {
                let (company, public) = user.split_once('+')?;
                Some(
                    company.eq_ignore_ascii_case(&self.data.company_id)
                        && public == self.data.public_key
                        && password == self.data.private_key,
                )
            })
            .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        match req.header("clientid").map(str::trim) {
            None | Some("") => Err(error_json(
                401,
                "Unauthorized",
                "ClientId header is required",
            )),
            Some(id) if id.eq_ignore_ascii_case(&self.data.client_id) => Ok(()),
            Some(_) => Err(error_json(401, "Unauthorized", "ClientId is not valid")),
        }
    }

    // --- rendering ------------------------------------------------------------------------

    fn company_ref(&self, id: i64) -> Value {
        match self.company_ix.get(&id).map(|&i| &self.data.companies[i]) {
            Some(c) => json!({"id": c.id, "identifier": c.identifier, "name": c.name}),
            None => json!({"id": id}),
        }
    }

    fn company_json(&self, c: &Company) -> Value {
        let status_id = self
            .company_status_by_name
            .get(&c.status.to_lowercase())
            .map_or(0, |&i| self.data.company_statuses[i].id);
        json!({
            "id": c.id,
            "identifier": c.identifier,
            "name": c.name,
            "status": {"id": status_id, "name": c.status},
            "types": [],
            "deletedFlag": c.deleted,
            "_info": {"lastUpdated": LAST_UPDATED},
        })
    }

    fn agreement_json(&self, a: &Agreement) -> Value {
        json!({
            "id": a.id,
            "name": a.name,
            "type": {
                "id": self.agreement_types.get(&a.kind.to_lowercase()).copied().unwrap_or(0),
                "name": a.kind,
            },
            "company": self.company_ref(a.company_id),
            "agreementStatus": a.status,
            "cancelledFlag": a.cancelled,
            "startDate": api_date(&a.start_date),
            "endDate": api_date(&a.end_date),
            "noEndingDateFlag": a.end_date.is_none(),
        })
    }

    fn product(&self, identifier: &str) -> Option<&Product> {
        self.product_by_ident
            .get(&identifier.to_lowercase())
            .map(|&i| &self.data.products[i])
    }

    fn addition_json(&self, a: &Addition) -> Value {
        let product = self.product(&a.product_identifier);
        let unit_price = a
            .unit_price
            .unwrap_or_else(|| product.map_or(0.0, |p| p.price));
        json!({
            "id": a.id,
            "product": {
                "id": product.map_or(0, |p| p.id),
                "identifier": a.product_identifier,
            },
            "quantity": num_json(a.quantity),
            "unitPrice": num_json(unit_price),
            "unitCost": 0,
            "billCustomer": a.bill_customer,
            "effectiveDate": api_date(&a.effective_date),
            "cancelledDate": api_date(&a.cancelled_date),
            "agreementId": a.agreement_id,
            "description": a.description,
            "invoiceDescription": a.description,
        })
    }

    fn ticket_json(&self, t: &Ticket) -> Value {
        let board = self
            .board_by_name
            .get(&t.board.to_lowercase())
            .map(|&i| &self.data.boards[i]);
        let status_id = board
            .and_then(|b| b.statuses.iter().find(|s| s.name == t.status))
            .map_or(0, |s| s.id);
        json!({
            "id": t.id,
            "summary": t.summary,
            "company": self.company_ref(t.company_id),
            "board": {"id": board.map_or(0, |b| b.id), "name": t.board},
            "status": {"id": status_id, "name": t.status},
            "priority": {"name": t.priority},
            "initialDescription": t.initial_description,
            "closedFlag": t.closed,
        })
    }

    fn company_status_json(s: &CompanyStatus) -> Value {
        json!({
            "id": s.id,
            "name": s.name,
            "inactiveFlag": s.inactive_flag,
            "defaultFlag": s.default_flag,
        })
    }

    fn board_status_json(b: &Board, s: &BoardStatus) -> Value {
        json!({
            "id": s.id,
            "name": s.name,
            "board": {"id": b.id, "name": b.name},
            "sortOrder": s.sort_order,
            "inactive": s.inactive,
            "closedStatus": s.closed_status,
            "defaultFlag": s.default_flag,
        })
    }

    fn note_json(n: &TicketNote) -> Value {
        json!({
            "id": n.id,
            "ticketId": n.ticket_id,
            "text": n.text,
            "detailDescriptionFlag": n.detail_description_flag,
            "internalAnalysisFlag": n.internal_analysis_flag,
            "resolutionFlag": n.resolution_flag,
        })
    }

    fn document_json(d: &Document) -> Value {
        json!({
            "id": d.id,
            "title": d.title,
            "fileName": d.file_name,
            "size": d.size,
            "recordType": d.record_type,
            "recordId": d.record_id,
        })
    }

    fn board_json(b: &Board) -> Value {
        json!({"id": b.id, "name": b.name})
    }

    fn product_json(p: &Product) -> Value {
        json!({
            "id": p.id,
            "identifier": p.identifier,
            "description": p.description,
            "price": num_json(p.price),
            "cost": 0,
        })
    }

    /// Every record of a collection, in the API's shape.
    /// The records of a collection that may match `cond`: all of them, or, when `cond` requires
    /// an indexed field to equal a value (`id`, a company's `identifier`, `company/id`), only
    /// those with that value. `cond` still has to be evaluated on each.
    fn records(&self, res: Res, cond: Option<&Cond>) -> Vec<&Value> {
        let v = &self.views;
        let group =
            |g: &HashMap<i64, Vec<usize>>, key: i64| g.get(&key).cloned().unwrap_or_default();
        let narrowed: Option<Vec<usize>> = cond.and_then(|c| {
            let conjuncts: &[Cond] = match c {
                Cond::And(items) => items,
                single => std::slice::from_ref(single),
            };
            conjuncts.iter().find_map(|c| {
                let Cond::Cmp {
                    field,
                    op: Op::Eq,
                    values,
                } = c
                else {
                    return None;
                };
                let number = match values.as_slice() {
                    [Lit::Num(n)] if n.fract() == 0.0 => Some(*n as i64),
                    _ => None,
                };
                let text = match values.as_slice() {
                    [Lit::Str(s)] => Some(s.as_str()),
                    _ => None,
                };
                let found = |ix: Option<&usize>| ix.map(|&i| vec![i]).unwrap_or_default();
                match (res, *field) {
                    (Res::Company, "id") => Some(found(self.company_ix.get(&number?))),
                    (Res::Company, "identifier") => Some(found(self.company_by_ident.get(text?))),
                    (Res::Agreement, "id") => Some(found(self.agreement_ix.get(&number?))),
                    (Res::Agreement, "company/id") => {
                        Some(group(&self.agreements_by_company, number?))
                    }
                    (Res::Ticket, "id") => Some(found(self.ticket_ix.get(&number?))),
                    (Res::Ticket, "company/id") => Some(group(&self.tickets_by_company, number?)),
                    (Res::Addition(_), "id") => Some(found(self.addition_ix.get(&number?))),
                    _ => None,
                }
            })
        });
        let list: &[Value] = match res {
            Res::Company => &v.companies,
            Res::Agreement => &v.agreements,
            Res::Addition(agreement) => {
                let mine =
                    (self.additions_by_agreement.get(&agreement)).map_or(&[][..], Vec::as_slice);
                let ids = narrowed.unwrap_or_else(|| mine.to_vec());
                return ids
                    .into_iter()
                    .filter(|&i| self.data.additions[i].agreement_id == agreement)
                    .map(|i| &v.additions[i])
                    .collect();
            }
            Res::Ticket => &v.tickets,
            Res::Board => &v.boards,
            Res::Product => &v.products,
            Res::CompanyStatus => &v.company_statuses,
            Res::Document => &v.documents,
            Res::BoardStatus(board) => {
                return (v.board_statuses.iter())
                    .filter(|r| get_path(r, "board/id").and_then(Value::as_i64) == Some(board))
                    .collect();
            }
            Res::TicketNote(ticket) => {
                return (v.notes.iter())
                    .filter(|r| r.get("ticketId").and_then(Value::as_i64) == Some(ticket))
                    .collect();
            }
        };
        match narrowed {
            Some(ids) => ids.into_iter().map(|i| &list[i]).collect(),
            None => list.iter().collect(),
        }
    }

    fn record(&self, res: Res, id: i64) -> Option<Value> {
        let v = &self.views;
        let found = match res {
            Res::Company => self.company_ix.get(&id).map(|&i| &v.companies[i]),
            Res::Agreement => self.agreement_ix.get(&id).map(|&i| &v.agreements[i]),
            Res::Addition(agreement) => self
                .addition_ix
                .get(&id)
                .filter(|&&i| self.data.additions[i].agreement_id == agreement)
                .map(|&i| &v.additions[i]),
            Res::Ticket => self.ticket_ix.get(&id).map(|&i| &v.tickets[i]),
            Res::Board => self.board_ix.get(&id).map(|&i| &v.boards[i]),
            Res::Product => self.product_ix.get(&id).map(|&i| &v.products[i]),
            Res::CompanyStatus | Res::BoardStatus(_) | Res::TicketNote(_) | Res::Document => {
                self.records(res, None).into_iter().find(|r| id_of(r) == id)
            }
        };
        found.cloned()
    }

    /// The `fields` parameter: the listed fields' canonical paths, if any.
    fn fields(res: Res, req: &SimRequest) -> Result<Option<Vec<&'static str>>, SimResponse> {
        let Some(list) = req.param("fields").map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some((path, _)) = field(res.schema(), name) else {
                return Err(bad_param(
                    res,
                    "fields",
                    &format!("unknown field '{name}' for {}", res.name()),
                ));
            };
            out.push(path);
        }
        Ok(Some(out))
    }

    // --- lists ----------------------------------------------------------------------------

    /// Reads the list parameters; `conditions` and `order_by` from a search body win over the
    /// query's (the query's conditions are and-ed with the body's).
    fn list_query(
        res: Res,
        req: &SimRequest,
        body_conditions: Option<&str>,
        body_order: Option<&str>,
    ) -> Result<ListQuery, SimResponse> {
        for unsupported in ["childConditions", "customFieldConditions"] {
            if req.param(unsupported).is_some_and(|v| !v.trim().is_empty()) {
                return Err(bad_param(
                    res,
                    unsupported,
                    "is not supported by the simulator",
                ));
            }
        }
        let forward = match req.header("pagination-type").map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("forward-only") => true,
            Some(v) => {
                return Err(bad_param(
                    res,
                    "pagination-type",
                    &format!("\"{v}\" is not a pagination type (use forward-only)"),
                ));
            }
        };
        let page_size = match req.param("pageSize").map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 1 && n as usize <= MAX_PAGE_SIZE => n as usize,
                Ok(n) if n > 0 => {
                    return Err(bad_param(
                        res,
                        "pageSize",
                        &format!("{n} is over the maximum page size of {MAX_PAGE_SIZE}"),
                    ));
                }
                _ => {
                    return Err(bad_param(
                        res,
                        "pageSize",
                        &format!("\"{s}\" is not a page size from 1 to {MAX_PAGE_SIZE}"),
                    ));
                }
            },
        };
        let page = if forward {
            1
        } else {
            match req.param("page").map(str::trim) {
                None | Some("") => 1,
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(bad_param(
                            res,
                            "page",
                            &format!("\"{s}\" is not a page number (pages start at 1)"),
                        ));
                    }
                },
            }
        };
        let forward_after = match (forward, req.param("pageId").map(str::trim)) {
            (false, Some(_)) => {
                return Err(bad_param(
                    res,
                    "pageId",
                    "pageId needs the header pagination-type: forward-only",
                ));
            }
            (false, None) => None,
            (true, None | Some("")) => Some(0),
            (true, Some(s)) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => return Err(bad_param(res, "pageId", &format!("\"{s}\" is not an id"))),
            },
        };

        let order_text = body_order.or(req.param("orderBy")).unwrap_or("").trim();
        if forward && !order_text.is_empty() {
            return Err(bad_param(
                res,
                "orderBy",
                "orderBy cannot be used with forward-only pagination (results come in id order)",
            ));
        }
        let mut order = Vec::new();
        for part in order_text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or("");
            let desc = match words.next() {
                None => false,
                Some(d) if d.eq_ignore_ascii_case("asc") => false,
                Some(d) if d.eq_ignore_ascii_case("desc") => true,
                Some(d) => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("\"{d}\" is not a direction (asc or desc)"),
                    ));
                }
            };
            if words.next().is_some() {
                return Err(bad_param(
                    res,
                    "orderBy",
                    &format!("\"{part}\" is not \"field asc|desc\""),
                ));
            }
            match field(res.schema(), name) {
                Some((path, ty)) if !matches!(ty, Ty::Obj | Ty::Arr) => order.push((path, desc)),
                Some((path, _)) => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("{path} is not a sortable field"),
                    ));
                }
                None => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("unknown field '{name}' for {}", res.name()),
                    ));
                }
            }
        }

        let fields = Self::fields(res, req)?;

        let query_conditions = req.param("conditions").filter(|c| !c.trim().is_empty());
        let text = match (
            query_conditions,
            body_conditions.filter(|c| !c.trim().is_empty()),
        ) {
            (Some(q), Some(b)) => Some(format!("({q}) and ({b})")),
            (Some(c), None) | (None, Some(c)) => Some(c.to_string()),
            (None, None) => None,
        };
        let cond = match text {
            Some(t) => parse_conditions(&t, res).map_err(|e| bad_param(res, "conditions", &e))?,
            None => None,
        };
        Ok(ListQuery {
            cond,
            order,
            fields,
            page,
            page_size,
            forward_after,
        })
    }

    fn list(
        &self,
        res: Res,
        req: &SimRequest,
        base_url: &str,
        body_conditions: Option<&str>,
        body_order: Option<&str>,
    ) -> SimResponse {
        let q = match Self::list_query(res, req, body_conditions, body_order) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let mut rows: Vec<&Value> = self
            .records(res, q.cond.as_ref())
            .into_iter()
            .filter(|r| q.cond.as_ref().is_none_or(|c| eval(c, r)))
            .collect();
        if res == Res::Document {
            // `recordType` and `recordId` narrow documents to one record's.
            if let Some(t) = req.param("recordType") {
                rows.retain(|r| {
                    r["recordType"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                });
            }
            if let Some(id) = req.param("recordId") {
                let id = id.trim().parse::<i64>().ok();
                rows.retain(|r| r["recordId"].as_i64() == id);
            }
        }
        let mut links = Vec::new();
        if let Some(after) = q.forward_after {
            rows.retain(|r| id_of(r) > after);
            rows.sort_by_key(|r| id_of(r));
            let more = rows.len() > q.page_size;
            rows.truncate(q.page_size);
            if more && let Some(last) = rows.last() {
                let url = page_url(
                    base_url,
                    req,
                    &["page"],
                    ("pageId", id_of(last).to_string()),
                );
                links.push(format!("<{url}>; rel=\"next\""));
            }
        } else {
            rows.sort_by(|a, b| {
                for (path, desc) in &q.order {
                    let o = cmp_json(
                        get_path(a, path).unwrap_or(&Value::Null),
                        get_path(b, path).unwrap_or(&Value::Null),
                    );
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                id_of(a).cmp(&id_of(b))
            });
            let last_page = rows.len().div_ceil(q.page_size).max(1);
            let start = (q.page - 1).saturating_mul(q.page_size);
            rows = rows.into_iter().skip(start).take(q.page_size).collect();
            if q.page < last_page {
                let url = page_url(base_url, req, &[], ("page", (q.page + 1).to_string()));
                links.push(format!("<{url}>; rel=\"next\""));
            }
            let url = page_url(base_url, req, &[], ("page", last_page.to_string()));
            links.push(format!("<{url}>; rel=\"last\""));
        }
        let rows: Vec<Value> = match &q.fields {
            Some(fields) => rows.iter().map(|r| project(r, fields)).collect(),
            None => rows.into_iter().cloned().collect(),
        };
        let response = SimResponse::json(200, &Value::Array(rows));
        if links.is_empty() {
            response
        } else {
            response.with_header("link", links.join(", "))
        }
    }

    fn count(&self, res: Res, req: &SimRequest) -> SimResponse {
        let cond = match req.param("conditions") {
            Some(text) => match parse_conditions(text, res) {
                Ok(c) => c,
                Err(e) => return bad_param(res, "conditions", &e),
            },
            None => None,
        };
        let n = self
            .records(res, cond.as_ref())
            .into_iter()
            .filter(|r| cond.as_ref().is_none_or(|c| eval(c, r)))
            .count();
        SimResponse::json(200, &json!({"count": n}))
    }

    // --- writes ---------------------------------------------------------------------------

    fn create(&mut self, res: Res, req: &SimRequest) -> SimResponse {
        if res == Res::Document {
            return self.create_document(req);
        }
        let body = match body_object(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        match res {
            Res::Addition(agreement) => self.create_addition(agreement, &body),
            Res::Ticket => self.create_ticket(&body),
            Res::TicketNote(ticket) => self.create_note(ticket, &body),
            _ => method_not_allowed("POST", "GET"),
        }
    }

    /// The status of `board` a request names (`{"id": N}`, `{"name": "..."}` or a bare name):
    /// one of the board's active statuses, or a refusal naming them.
    fn board_status(&self, board: usize, v: &Value) -> Result<BoardStatus, FieldError> {
        let b = &self.data.boards[board];
        let (by_id, by_name) = match v {
            Value::String(s) => (None, Some(s.as_str())),
            Value::Object(o) => (
                o.get("id").and_then(Value::as_i64),
                o.get("name").and_then(Value::as_str),
            ),
            _ => (None, None),
        };
        let found = match (by_id, by_name) {
            (Some(id), _) => b.statuses.iter().find(|s| s.id == id),
            (None, Some(name)) => {
                (b.statuses.iter()).find(|s| s.name.trim().eq_ignore_ascii_case(name.trim()))
            }
            (None, None) => {
                return Err(FieldError::invalid(
                    "status",
                    "status needs an id or a name, e.g. {\"id\": 3}",
                ));
            }
        };
        match found {
            Some(s) if !s.inactive => Ok(s.clone()),
            _ => {
                let names: Vec<&str> = (b.statuses.iter())
                    .filter(|s| !s.inactive)
                    .map(|s| s.name.as_str())
                    .collect();
                Err(FieldError::new(
                    "InvalidObject",
                    "status",
                    format!(
                        "status {v} is not a status of board \"{}\" (its statuses: {})",
                        b.name,
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// `POST service/tickets/{id}/notes`.
    fn create_note(&mut self, ticket: i64, body: &Map<String, Value>) -> SimResponse {
        let mut errors = Vec::new();
        let text = match body.get("text") {
            Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errors.push(FieldError::missing("text"));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::invalid("text", "text must be a string"));
                String::new()
            }
        };
        let mut flag = |key: &str| match body.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::invalid(
                    key,
                    format!("{key} must be true or false"),
                ));
                false
            }
        };
        let detail = flag("detailDescriptionFlag");
        let internal = flag("internalAnalysisFlag");
        let resolution = flag("resolutionFlag");
        if !errors.is_empty() {
            return invalid("ticketNote", &errors);
        }
        let id = self.next_note;
        self.next_note += 1;
        let note = TicketNote {
            id,
            ticket_id: ticket,
            text,
            detail_description_flag: detail,
            internal_analysis_flag: internal,
            resolution_flag: resolution,
        };
        let json = Self::note_json(&note);
        self.data.ticket_notes.push(note);
        self.views.notes.push(json.clone());
        SimResponse::json(201, &json)
    }

    /// `POST system/documents`: `multipart/form-data` with `recordType`, `recordId`, `title`
    /// and the file (as ConnectWise's own examples send it); anything else is refused.
    fn create_document(&mut self, req: &SimRequest) -> SimResponse {
        let content_type = req.header("content-type").unwrap_or("");
        let Some(boundary) = multipart_boundary(content_type) else {
            return error_json(
                415,
                "UnsupportedMediaType",
                &format!(
                    "The request entity's media type '{content_type}' is not supported: upload documents as multipart/form-data"
                ),
            );
        };
        let parts = match multipart_parts(&req.body, &boundary) {
            Ok(p) => p,
            Err(e) => return bad_body(&format!("multipart body: {e}")),
        };
        let field = |name: &str| {
            parts
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name) && p.file_name.is_none())
                .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
        };
        let mut errors = Vec::new();
        let record_type = field("recordType").unwrap_or_default();
        if record_type.is_empty() {
            errors.push(FieldError::missing("recordType"));
        }
        let record_id = match field("recordId").map(|v| v.parse::<i64>()) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(FieldError::invalid("recordId", "recordId must be a number"));
                None
            }
            None => {
                errors.push(FieldError::missing("recordId"));
                None
            }
        };
        let file = parts.iter().find(|p| p.file_name.is_some());
        if file.is_none() {
            errors.push(FieldError::missing("file"));
        }
        if let (Some(id), true) = (record_id, record_type.eq_ignore_ascii_case("Ticket"))
            && !self.ticket_ix.contains_key(&id)
        {
            errors.push(FieldError::invalid(
                "recordId",
                format!("Ticket {id} was not found"),
            ));
        }
        if let Some(f) = file
            && f.data.len() > MAX_DOCUMENT
        {
            errors.push(FieldError::invalid(
                "file",
                format!("the file is over {MAX_DOCUMENT} bytes"),
            ));
        }
        let (Some(record_id), Some(file), true) = (record_id, file, errors.is_empty()) else {
            return invalid("document", &errors);
        };
        let file_name = file.file_name.clone().unwrap_or_default();
        let title = field("title")
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| file_name.clone());
        let id = self.next_document;
        self.next_document += 1;
        let doc = Document {
            id,
            record_type: if record_type.eq_ignore_ascii_case("Ticket") {
                "Ticket".into()
            } else {
                record_type
            },
            record_id,
            title,
            file_name,
            size: file.data.len() as u64,
            content: crate::psa::http::base64(&file.data),
        };
        let json = Self::document_json(&doc);
        self.data.documents.push(doc);
        self.views.documents.push(json.clone());
        SimResponse::json(201, &json)
    }

    /// `GET system/documents/{id}/download`: the bytes.
    fn download(&self, id: i64) -> SimResponse {
        match self.data.documents.iter().find(|d| d.id == id) {
            Some(d) => SimResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: base64_decode(&d.content).unwrap_or_default(),
            },
            None => self.missing(Res::Document, id),
        }
    }

    fn patch(&mut self, res: Res, id: i64, req: &SimRequest) -> SimResponse {
        let index = match res {
            Res::Addition(agreement) => self
                .addition_ix
                .get(&id)
                .copied()
                .filter(|&i| self.data.additions[i].agreement_id == agreement),
            Res::Ticket => self.ticket_ix.get(&id).copied(),
            _ => None,
        };
        let Some(index) = index else {
            return self.missing(res, id);
        };
        let ops = match patch_ops(req, res) {
            Ok(ops) => ops,
            Err(r) => return r,
        };
        match res {
            Res::Addition(_) => self.patch_addition(index, &ops),
            _ => self.patch_ticket(index, &ops),
        }
    }

    fn create_addition(&mut self, agreement_id: i64, body: &Map<String, Value>) -> SimResponse {
        let mut errors = Vec::new();
        let agreement = &self.data.agreements[self.agreement_ix[&agreement_id]];
        if agreement.status != "Active" {
            errors.push(FieldError::invalid(
                "agreement",
                format!(
                    "agreement {agreement_id} is {}; additions can only be added to an Active agreement",
                    agreement.status
                ),
            ));
        } else if agreement.cancelled {
            errors.push(FieldError::invalid(
                "agreement",
                format!(
                    "agreement {agreement_id} is cancelled (status Active, cancelledFlag true)"
                ),
            ));
        }
        let product = match body.get("product") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("product"));
                None
            }
            Some(Value::Object(p)) => {
                let found = match (p.get("id"), p.get("identifier")) {
                    (Some(id), _) if !id.is_null() => {
                        match id.as_i64() {
                            Some(id) => self.product_ix.get(&id).copied().ok_or_else(|| {
                                format!("product id {id} was not found in the catalog")
                            }),
                            None => Err("product/id must be a number".to_string()),
                        }
                    }
                    (_, Some(Value::String(ident))) if !ident.trim().is_empty() => self
                        .product_by_ident
                        .get(&ident.to_lowercase())
                        .copied()
                        .ok_or_else(|| format!("product \"{ident}\" was not found in the catalog")),
                    _ => Err("product needs an id or an identifier".to_string()),
                };
                match found {
                    Ok(i) => Some(i),
                    Err(message) => {
                        errors.push(FieldError::new("NotFound", "product", message));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push(FieldError::invalid(
                    "product",
                    "product must be an object with an id or an identifier",
                ));
                None
            }
        };
        let bill_customer = match body.get("billCustomer") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("billCustomer"));
                None
            }
            Some(v) => match v.as_str().and_then(|s| canonical(s, &BILL_CUSTOMER)) {
                Some(b) => Some(b.to_string()),
                None => {
                    errors.push(FieldError::invalid(
                        "billCustomer",
                        format!(
                            "billCustomer {v} is not one of {}",
                            BILL_CUSTOMER.join(", ")
                        ),
                    ));
                    None
                }
            },
        };
        let mut number = |key: &str| -> Option<f64> {
            match body.get(key) {
                None | Some(Value::Null) => None,
                Some(v) => v.as_f64().or_else(|| {
                    errors.push(FieldError::invalid(key, format!("{key} must be a number")));
                    None
                }),
            }
        };
        let quantity = number("quantity");
        let unit_price = number("unitPrice");
        let mut date = |key: &str| -> Option<String> { opt_date(body.get(key), key, &mut errors) };
        let effective_date = date("effectiveDate");
        let cancelled_date = date("cancelledDate");
        let description = match body.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "description",
                    "description must be a string",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return invalid(Res::Addition(agreement_id).name(), &errors);
        }
        let (Some(product), Some(bill_customer)) = (product, bill_customer) else {
            return invalid(Res::Addition(agreement_id).name(), &errors);
        };
        let product = &self.data.products[product];
        let id = self.next_addition;
        self.next_addition += 1;
        let addition = Addition {
            id,
            agreement_id,
            product_identifier: product.identifier.clone(),
            quantity: quantity.unwrap_or(1.0),
            unit_price,
            effective_date,
            cancelled_date,
            bill_customer,
            description: description.unwrap_or_else(|| product.description.clone()),
        };
        let json = self.addition_json(&addition);
        self.addition_ix.insert(id, self.data.additions.len());
        (self.additions_by_agreement.entry(agreement_id).or_default())
            .push(self.data.additions.len());
        self.data.additions.push(addition);
        self.views.additions.push(json.clone());
        SimResponse::json(201, &json)
    }

    fn patch_addition(&mut self, index: usize, ops: &[(String, Value)]) -> SimResponse {
        let mut a = self.data.additions[index].clone();
        let mut errors = Vec::new();
        for (path, value) in ops {
            match path.to_ascii_lowercase().as_str() {
                "quantity" | "unitprice" => match value.as_f64() {
                    Some(n) if path.eq_ignore_ascii_case("quantity") => a.quantity = n,
                    Some(n) => a.unit_price = Some(n),
                    None => errors.push(FieldError::invalid(path, format!("{path} must be a number"))),
                },
                "description" => match value.as_str() {
                    Some(s) => a.description = s.to_string(),
                    None => errors.push(FieldError::invalid(path, "description must be a string")),
                },
                "effectivedate" => {
                    let before = errors.len();
                    let d = opt_date(Some(value), "effectiveDate", &mut errors);
                    if errors.len() == before {
                        a.effective_date = d;
                    }
                }
                "cancelleddate" => {
                    let before = errors.len();
                    let d = opt_date(Some(value), "cancelledDate", &mut errors);
                    if errors.len() == before {
                        a.cancelled_date = d;
                    }
                }
                "billcustomer" => match value.as_str().and_then(|s| canonical(s, &BILL_CUSTOMER)) {
                    Some(b) => a.bill_customer = b.to_string(),
                    None => errors.push(FieldError::invalid(
                        "billCustomer",
                        format!("billCustomer {value} is not one of {}", BILL_CUSTOMER.join(", ")),
                    )),
                },
                _ => errors.push(FieldError::invalid(
                    path,
                    format!(
                        "{path} cannot be patched (quantity, unitPrice, description, effectiveDate, cancelledDate, billCustomer)"
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return invalid("agreementAddition", &errors);
        }
        let json = self.addition_json(&a);
        self.data.additions[index] = a;
        self.views.additions[index] = json.clone();
        SimResponse::json(200, &json)
    }

    /// A company reference `{id}` or `{identifier}`.
    fn company_lookup(&self, v: Option<&Value>) -> Result<usize, FieldError> {
        let obj = match v {
            None | Some(Value::Null) => return Err(FieldError::missing("company")),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(FieldError::invalid(
                    "company",
                    "company must be an object with an id or an identifier",
                ));
            }
        };
        let found = match (obj.get("id"), obj.get("identifier")) {
            (Some(id), _) if !id.is_null() => match id.as_i64() {
                Some(id) => self
                    .company_ix
                    .get(&id)
                    .copied()
                    .ok_or_else(|| format!("company id {id} was not found")),
                None => Err("company/id must be a number".into()),
            },
            (_, Some(Value::String(ident))) if !ident.trim().is_empty() => self
                .company_by_ident
                .get(&ident.to_lowercase())
                .copied()
                .ok_or_else(|| format!("company \"{ident}\" was not found")),
            _ => return Err(FieldError::missing("company")),
        };
        let i = found.map_err(|m| FieldError::invalid("company", m))?;
        let c = &self.data.companies[i];
        if c.deleted {
            return Err(FieldError::invalid(
                "company",
                format!("company \"{}\" is deleted", c.identifier),
            ));
        }
        Ok(i)
    }

    /// A board reference `{id}` or `{name}`.
    fn board_lookup(&self, v: &Value) -> Result<usize, FieldError> {
        let Some(obj) = v.as_object() else {
            return Err(FieldError::invalid(
                "board",
                "board must be an object with an id or a name",
            ));
        };
        let found = match (obj.get("id"), obj.get("name")) {
            (Some(id), _) if !id.is_null() => match id.as_i64() {
                Some(id) => self
                    .board_ix
                    .get(&id)
                    .copied()
                    .ok_or_else(|| format!("board id {id} was not found")),
                None => Err("board/id must be a number".into()),
            },
            (_, Some(Value::String(name))) if !name.trim().is_empty() => self
                .board_by_name
                .get(&name.to_lowercase())
                .copied()
                .ok_or_else(|| format!("board \"{name}\" was not found")),
            _ => Err("board needs an id or a name".into()),
        };
        found.map_err(|m| FieldError::invalid("board", m))
    }

    fn create_ticket(&mut self, body: &Map<String, Value>) -> SimResponse {
        let mut errors = Vec::new();
        let summary = match body.get("summary") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("summary"));
                None
            }
            Some(v) => check_summary(v).map_err(|e| errors.push(e)).ok(),
        };
        let company = self
            .company_lookup(body.get("company"))
            .map_err(|e| errors.push(e))
            .ok();
        let board = match body.get("board") {
            None | Some(Value::Null) => match self.data.boards.first() {
                Some(_) => Some(0),
                None => {
                    errors.push(FieldError::new(
                        "NullOrEmpty",
                        "board",
                        "board is required (there are no service boards)",
                    ));
                    None
                }
            },
            Some(v) => self.board_lookup(v).map_err(|e| errors.push(e)).ok(),
        };
        let status = match (board, body.get("status")) {
            (None, _) => None,
            (Some(b), None | Some(Value::Null)) => {
                match board_default_status(&self.data.boards[b]) {
                    Some(s) => Some(s.clone()),
                    None => {
                        errors.push(FieldError::missing("status"));
                        None
                    }
                }
            }
            (Some(b), Some(v)) => self.board_status(b, v).map_err(|e| errors.push(e)).ok(),
        };
        let priority = match body.get("priority") {
            None | Some(Value::Null) => Some(DEFAULT_PRIORITY.to_string()),
            Some(v @ Value::Object(_)) => named(v, "priority").map_err(|e| errors.push(e)).ok(),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "priority",
                    "priority must be an object {\"name\": ...}",
                ));
                None
            }
        };
        let initial_description = match body.get("initialDescription") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "initialDescription",
                    "initialDescription must be a string",
                ));
                String::new()
            }
        };
        let (Some(summary), Some(company), Some(board), Some(status), Some(priority), true) =
            (summary, company, board, status, priority, errors.is_empty())
        else {
            return invalid("ticket", &errors);
        };
        let id = self.next_ticket;
        self.next_ticket += 1;
        let ticket = Ticket {
            id,
            summary,
            company_id: self.data.companies[company].id,
            board: self.data.boards[board].name.clone(),
            closed: status.closed_status,
            status: status.name,
            initial_description,
            priority,
        };
        let json = self.ticket_json(&ticket);
        self.ticket_ix.insert(id, self.data.tickets.len());
        (self
            .tickets_by_company
            .entry(ticket.company_id)
            .or_default())
        .push(self.data.tickets.len());
        self.data.tickets.push(ticket);
        self.views.tickets.push(json.clone());
        SimResponse::json(201, &json)
    }

    fn patch_ticket(&mut self, index: usize, ops: &[(String, Value)]) -> SimResponse {
        let mut t = self.data.tickets[index].clone();
        let mut errors = Vec::new();
        for (path, value) in ops {
            match path.to_ascii_lowercase().as_str() {
                "status" => {
                    let board = self.board_by_name.get(&t.board.to_lowercase()).copied();
                    match board.map(|b| self.board_status(b, value)) {
                        Some(Ok(st)) => {
                            t.closed = st.closed_status;
                            t.status = st.name;
                        }
                        Some(Err(e)) => errors.push(e),
                        None => errors.push(FieldError::invalid("board", "the ticket's board is gone")),
                    }
                }
                "priority" => match named(value, "priority") {
                    Ok(name) => t.priority = name,
                    Err(e) => errors.push(e),
                },
                "summary" => match check_summary(value) {
                    Ok(s) => t.summary = s,
                    Err(e) => errors.push(e),
                },
                "initialdescription" => match value {
                    Value::String(s) => t.initial_description = s.clone(),
                    Value::Null => t.initial_description.clear(),
                    _ => errors.push(FieldError::invalid(
                        "initialDescription",
                        "initialDescription must be a string",
                    )),
                },
                "board" => match self.board_lookup(value) {
                    Ok(b) => t.board = self.data.boards[b].name.clone(),
                    Err(e) => errors.push(e),
                },
                _ => errors.push(FieldError::invalid(
                    path,
                    format!(
                        "{path} cannot be patched (status, summary, initialDescription, priority, board); closedFlag follows the status"
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return invalid("ticket", &errors);
        }
        let json = self.ticket_json(&t);
        self.data.tickets[index] = t;
        self.views.tickets[index] = json.clone();
        SimResponse::json(200, &json)
    }
}

/// A ticket summary: a non-empty string of at most 100 characters.
fn check_summary(v: &Value) -> Result<String, FieldError> {
    match v.as_str() {
        Some(s) if s.trim().is_empty() => Err(FieldError::missing("summary")),
        Some(s) if s.chars().count() > MAX_NAME => Err(FieldError::invalid(
            "summary",
            format!(
                "summary is {} characters long; the maximum is {MAX_NAME}",
                s.chars().count()
            ),
        )),
        Some(s) => Ok(s.to_string()),
        None => Err(FieldError::invalid("summary", "summary must be a string")),
    }
}

/// The name of a `{"name": ...}` reference (or a bare string name).
fn named(v: &Value, field: &str) -> Result<String, FieldError> {
    let name = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("name").and_then(Value::as_str),
        _ => None,
    };
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n.to_string()),
        _ => Err(FieldError::invalid(
            field,
            format!("{field} needs a name, e.g. {{\"name\": \"...\"}}"),
        )),
    }
}

/// An optional date field of a request body, stored as `YYYY-MM-DD`.
fn opt_date(v: Option<&Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => normalize_date(s).or_else(|| {
            errors.push(FieldError::invalid(
                key,
                format!("{key} \"{s}\" is not a date (2026-01-01T00:00:00Z)"),
            ));
            None
        }),
        Some(other) => {
            errors.push(FieldError::invalid(
                key,
                format!("{key} must be a date string, not {other}"),
            ));
            None
        }
    }
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a `multipart/form-data` body (RFC 7578).
fn multipart_parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(body, &delimiter, 0).ok_or("no boundary")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err("a boundary is not followed by CRLF".into());
        }
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a part has no header end")?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delimiter);
        let data_end = find(body, &next_delim, data_start).ok_or("a part is not closed")?;
        let mut name = None;
        let mut file_name = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in v.split(';').map(str::trim) {
                if let Some((pk, pv)) = param.split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim().to_ascii_lowercase().as_str() {
                        "name" => name = Some(pv),
                        "filename" => file_name = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        parts.push(Part {
            name: name.ok_or("a part has no name")?,
            file_name,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + next_delim.len();
    }
}

/// Only the listed fields of a record (nested paths build nested objects).
fn project(record: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for path in fields {
        let Some(v) = get_path(record, path) else {
            continue;
        };
        let mut target = &mut out;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                target.insert(part.to_string(), v.clone());
            } else {
                let entry = target
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(m) = entry else { break };
                target = m;
            }
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
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
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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

    fn request(
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> SimRequest {
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
        let sim =
            sim_from(&DATA.replace("privateKey: privkey", "privateKey: privkey\ncloud: true"));
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
                r#"{"summary": "s", "company": {"id": 250}, "board": {"name": "Nope"}}"#
                    .to_string(),
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
}
