//! The data file of the ConnectWise simulator (YAML or JSON, camelCase keys): the records it
//! serves and the rules they follow (allowed values, limits, a board's default status). It is
//! also what `GET /_sim/state` answers, so the types serialize back in the same shape.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// Agreement names and ticket summaries are at most this many characters.
pub(super) const MAX_NAME: usize = 100;

/// The priority of a ticket created without one.
pub(super) const DEFAULT_PRIORITY: &str = "Priority 3 - Normal Response";

/// `billCustomer` values.
pub(super) const BILL_CUSTOMER: [&str; 3] = ["Billable", "DoNotBill", "NoCharge"];
/// `agreementStatus` values.
pub(super) const AGREEMENT_STATUSES: [&str; 4] = ["Active", "Cancelled", "Expired", "Inactive"];

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
pub(super) fn num_json(v: f64) -> Value {
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

/// The status a ticket on `board` gets when created without one: the default status, else
/// the first open active one.
pub(super) fn board_default_status(board: &Board) -> Option<&BoardStatus> {
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
