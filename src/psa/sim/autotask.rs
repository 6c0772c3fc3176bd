//! A strict simulator of the Autotask REST API v1.0 subset Ferry speaks (see the Autotask section
//! of `../shared/psa-api.md`).
//!
//! The one server plays both the zone-discovery host and the zones:
//!
//! - Discovery, no authentication: `GET /atservicesrest/v1.0/zoneInformation?user={apiUser}` ->
//!   `{"zoneName":"America East N","url":"{base}/zoneN/atservicesrest/","webUrl":"{base}/zoneN/","ci":N}`
//!   where `N` is 1 plus the number of zone moves injected ([`super::Fault::MoveZone`]). An
//!   unknown or missing user gets 500 `{"errors":["Zone information could not be determined"]}`.
//! - The API: `{base}/zoneN/atservicesrest/v1.0/...` (paths case-insensitive). Another zone than
//!   the current one answers 401, as a moved tenant does.
//!
//! Every API call needs the headers `ApiIntegrationCode`, `UserName` and `Secret` (unknown user
//! or integration code: 500; wrong secret or expired keys: 401), counts against a rolling hourly
//! request threshold (`GET .../ThresholdInformation`; over it: 429 with `Retry-After`) and a limit
//! of concurrent requests per endpoint ("Thread Threshold Exceeded": 429 with `Retry-After: 1`).
//! Errors always have the shape `{"errors":["message", ...]}`; validation failures are 500s, as
//! Autotask answers them.
//!
//! Entities: Companies, Contracts, Services, ContractServices (created through
//! `POST /Contracts/{id}/Services`), ContractServiceUnits (query-only),
//! ContractServiceAdjustments (create-only, through `POST /Contracts/{id}/ServiceAdjustments`,
//! which moves the units) and Tickets (create with `POST /Tickets`, update with `PATCH /Tickets`).
//! Queries take `{"filter":[...],"MaxRecords":n,"IncludeFields":[...]}` by `POST .../query` or
//! `GET .../query?search=<json>`, answer pages of at most `MaxRecords` items in id order and link
//! the next page with an absolute `nextPageUrl` (`.../{Entity}/query/next?paging=..&search=..`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::api::{Api, Faults, SimRequest, SimResponse, base64_decode};

/// Every route this simulator serves, as `docs/psa-contract.md` lists them: method and path
/// relative to `.../atservicesrest/v1.0` (entity names as Autotask spells them; the API takes
/// them in any case), `{id}` for ids. `tests/psa_contract.rs` holds the table and the router
/// to it.
pub fn routes() -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("GET", "/zoneInformation".to_string()),
        ("GET", "/ThresholdInformation".to_string()),
    ];
    for k in KINDS {
        let e = k.path();
        if k.can_query() {
            for (m, p) in [
                ("GET", "query"),
                ("POST", "query"),
                ("GET", "query/count"),
                ("POST", "query/count"),
                ("POST", "query/next"),
                ("POST", "query/prev"),
            ] {
                out.push((m, format!("/{e}/{p}")));
            }
        }
        for p in [
            "entityInformation",
            "entityInformation/fields",
            "entityInformation/userDefinedFields",
        ] {
            out.push(("GET", format!("/{e}/{p}")));
        }
        if k.can_get() {
            out.push(("GET", format!("/{e}/{{id}}")));
        }
    }
    for (m, p) in [
        ("POST", "/Tickets"),
        ("PATCH", "/Tickets"),
        ("POST", "/Contracts/{id}/Services"),
        ("POST", "/Contracts/{id}/ServiceAdjustments"),
        ("POST", "/Tickets/{id}/Attachments"),
    ] {
        out.push((m, p.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The data file
// ---------------------------------------------------------------------------------------------

/// The simulator's data file (YAML or JSON, camelCase keys). `state()` returns the same shape.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Data {
    /// The API user (`UserName` header, `user` of zone discovery; compared case-insensitively).
    pub username: String,
    /// The API user's secret (`Secret` header).
    pub secret: String,
    /// The integration's tracking identifier (`ApiIntegrationCode` header).
    pub integration_code: String,
    /// Requests allowed per rolling hour (default 10,000).
    #[serde(default = "default_hourly_threshold")]
    pub hourly_threshold: u32,
    /// Concurrent requests allowed per endpoint (entity); more get "Thread Threshold Exceeded"
    /// (default 3).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_per_endpoint: u32,
    /// Milliseconds every API request takes (while it counts as in flight); default 0.
    #[serde(default)]
    pub latency_millis: u64,
    /// Companies.
    #[serde(default)]
    pub companies: Vec<Company>,
    /// Contracts.
    #[serde(default)]
    pub contracts: Vec<Contract>,
    /// The service catalog.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Services on contracts.
    #[serde(default)]
    pub contract_services: Vec<ContractService>,
    /// Units per billing period of the services on contracts.
    #[serde(default)]
    pub contract_service_units: Vec<ContractServiceUnit>,
    /// Unit adjustments (normally created through the API).
    #[serde(default)]
    pub contract_service_adjustments: Vec<ContractServiceAdjustment>,
    /// Picklist values of `Tickets.queueID`.
    #[serde(default)]
    pub queues: Vec<PicklistValue>,
    /// Picklist values of `Tickets.status` (default 1 New, 5 Complete).
    #[serde(default = "default_ticket_statuses")]
    pub ticket_statuses: Vec<PicklistValue>,
    /// Picklist values of `Tickets.priority` (default 1 High, 2 Medium, 3 Low).
    #[serde(default = "default_ticket_priorities")]
    pub ticket_priorities: Vec<PicklistValue>,
    /// Tickets.
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    /// Files attached to tickets.
    #[serde(default)]
    pub ticket_attachments: Vec<TicketAttachment>,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            username: String::new(),
            secret: String::new(),
            integration_code: String::new(),
            hourly_threshold: default_hourly_threshold(),
            max_concurrent_per_endpoint: default_max_concurrent(),
            latency_millis: 0,
            companies: Vec::new(),
            contracts: Vec::new(),
            services: Vec::new(),
            contract_services: Vec::new(),
            contract_service_units: Vec::new(),
            contract_service_adjustments: Vec::new(),
            queues: Vec::new(),
            ticket_statuses: default_ticket_statuses(),
            ticket_priorities: default_ticket_priorities(),
            tickets: Vec::new(),
            ticket_attachments: Vec::new(),
        }
    }
}

fn default_hourly_threshold() -> u32 {
    10_000
}

fn default_max_concurrent() -> u32 {
    3
}

fn default_true() -> bool {
    true
}

fn default_company_type() -> i64 {
    1
}

fn default_contract_type() -> i64 {
    RECURRING_SERVICE
}

fn default_contract_status() -> i64 {
    1
}

fn default_period_type() -> String {
    "m".into()
}

fn picklist(values: &[(i64, &str)]) -> Vec<PicklistValue> {
    values
        .iter()
        .map(|(id, name)| PicklistValue {
            id: *id,
            name: (*name).to_string(),
            is_active: true,
            is_default_value: false,
        })
        .collect()
}

fn default_ticket_statuses() -> Vec<PicklistValue> {
    picklist(&[(1, "New"), (5, "Complete")])
}

fn default_ticket_priorities() -> Vec<PicklistValue> {
    picklist(&[(1, "High"), (2, "Medium"), (3, "Low")])
}

/// `contractType` of a Recurring Service contract, the only kind that takes services.
const RECURRING_SERVICE: i64 = 7;

/// A company (Autotask "Company", path `Companies`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Company {
    /// Id (0 is the tenant's own company in Autotask).
    pub id: i64,
    /// Name (what Ferry matches on).
    pub company_name: String,
    /// Account number.
    #[serde(default)]
    pub company_number: Option<String>,
    /// 1 Customer, 2 Lead, 3 Prospect, 4 Dead, 6 Cancellation, 7 Vendor, 8 Partner (default 1).
    #[serde(default = "default_company_type")]
    pub company_type: i64,
    /// Active (default true).
    #[serde(default = "default_true")]
    pub is_active: bool,
}

/// A contract.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contract {
    /// Id.
    pub id: i64,
    /// The company.
    #[serde(rename = "companyID")]
    pub company_id: i64,
    /// Name.
    pub contract_name: String,
    /// Number.
    #[serde(default)]
    pub contract_number: Option<String>,
    /// 7 = Recurring Service (default 7); 1 Time & Materials, 3 Fixed Price, 4 Block Hours,
    /// 6 Retainer, 8 Per Ticket.
    #[serde(default = "default_contract_type")]
    pub contract_type: i64,
    /// 1 active, 0 inactive (default 1).
    #[serde(default = "default_contract_status")]
    pub status: i64,
    /// First day.
    pub start_date: Date,
    /// Last day.
    pub end_date: Date,
    /// The company's default contract.
    #[serde(default)]
    pub is_default_contract: bool,
}

/// A catalog service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Price per unit.
    #[serde(default)]
    pub unit_price: f64,
    /// Cost per unit.
    #[serde(default)]
    pub unit_cost: f64,
    /// Billing period (default `m`, monthly).
    #[serde(default = "default_period_type")]
    pub period_type: String,
}

/// A service on a contract (no unit count: see [`ContractServiceUnit`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractService {
    /// Id.
    pub id: i64,
    /// The contract.
    #[serde(rename = "contractID")]
    pub contract_id: i64,
    /// The catalog service.
    #[serde(rename = "serviceID")]
    pub service_id: i64,
    /// Price per unit on this contract (default: the service's).
    #[serde(default)]
    pub unit_price: Option<f64>,
}

/// The units of a contract service for one billing period (read-only through the API).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractServiceUnit {
    /// Id (assigned when absent).
    #[serde(default)]
    pub id: Option<i64>,
    /// The contract.
    #[serde(rename = "contractID")]
    pub contract_id: i64,
    /// The catalog service.
    #[serde(rename = "serviceID")]
    pub service_id: i64,
    /// The contract service (looked up by contract and service when absent).
    #[serde(rename = "contractServiceID", default)]
    pub contract_service_id: Option<i64>,
    /// First day of the period.
    pub start_date: Date,
    /// Last day of the period.
    pub end_date: Date,
    /// Units.
    pub units: i64,
    /// Price per unit (default: the contract service's).
    #[serde(default)]
    pub price: Option<f64>,
}

/// A unit adjustment (create-only through the API).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractServiceAdjustment {
    /// Id (assigned when absent).
    #[serde(default)]
    pub id: Option<i64>,
    /// The contract.
    #[serde(rename = "contractID")]
    pub contract_id: i64,
    /// The catalog service.
    #[serde(rename = "serviceID")]
    pub service_id: i64,
    /// The contract service.
    #[serde(rename = "contractServiceID", default)]
    pub contract_service_id: Option<i64>,
    /// From when the change applies.
    pub effective_date: Date,
    /// Units added (negative: removed).
    pub unit_change: i64,
    /// New price per unit from the effective date.
    #[serde(default)]
    pub adjusted_unit_price: Option<f64>,
}

/// One value of a picklist (queues, ticket statuses, ticket priorities).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PicklistValue {
    /// The value (an id).
    pub id: i64,
    /// The label.
    pub name: String,
    /// Usable (default true).
    #[serde(default = "default_true")]
    pub is_active: bool,
    /// The default value.
    #[serde(default)]
    pub is_default_value: bool,
}

/// A ticket.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ticket {
    /// Id.
    pub id: i64,
    /// The company.
    #[serde(rename = "companyID")]
    pub company_id: i64,
    /// Title (<= 255 characters).
    pub title: String,
    /// A `ticketStatuses` id.
    pub status: i64,
    /// A `ticketPriorities` id.
    pub priority: i64,
    /// A `queues` id.
    #[serde(rename = "queueID", default)]
    pub queue_id: Option<i64>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Due (RFC 3339 with offset).
    #[serde(default)]
    pub due_date_time: Option<Timestamp>,
    /// Created (RFC 3339; default: when loaded).
    #[serde(default)]
    pub create_date: Option<Timestamp>,
    /// Assigned resource (with the role, stands in for the queue).
    #[serde(rename = "assignedResourceID", default)]
    pub assigned_resource_id: Option<i64>,
    /// The assigned resource's role.
    #[serde(rename = "assignedResourceRoleID", default)]
    pub assigned_resource_role_id: Option<i64>,
}

/// A file attached to a ticket (`TicketAttachments`, created through
/// `POST /Tickets/{id}/Attachments`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketAttachment {
    /// Id.
    pub id: i64,
    /// The ticket.
    #[serde(rename = "parentID")]
    pub parent_id: i64,
    /// Title.
    pub title: String,
    /// The file name.
    #[serde(default)]
    pub full_path: Option<String>,
    /// `FILE_ATTACHMENT`, `FOLDER_LINK` or `URL`.
    pub attachment_type: String,
    /// 1 all users, 2 internal users only.
    pub publish: i64,
    /// Size of the file in bytes.
    pub file_size: i64,
    /// The file, base64.
    pub data: String,
}

/// Attachment types the API accepts.
const ATTACHMENT_TYPES: [&str; 3] = ["FILE_ATTACHMENT", "FOLDER_LINK", "URL"];
/// "The API size limit for individual attachment files is 6 to 7 MB" (AttachmentInfo, REST
/// API): larger files are surely refused.
pub const MAX_ATTACHMENT_BYTES: usize = 7_000_000;
/// "... with a maximum of 10,000,000 bytes within a five-minute period" (same page).
pub const ATTACHMENT_BYTES_PER_5_MIN: usize = 10_000_000;

// ---------------------------------------------------------------------------------------------
// Entities, fields and cells
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Companies,
    Contracts,
    Services,
    ContractServices,
    ContractServiceUnits,
    ContractServiceAdjustments,
    Tickets,
    TicketAttachments,
}

const KINDS: [Kind; 8] = [
    Kind::Companies,
    Kind::Contracts,
    Kind::Services,
    Kind::ContractServices,
    Kind::ContractServiceUnits,
    Kind::ContractServiceAdjustments,
    Kind::Tickets,
    Kind::TicketAttachments,
];

impl Kind {
    /// The path segment (plural).
    fn path(self) -> &'static str {
        match self {
            Kind::Companies => "Companies",
            Kind::Contracts => "Contracts",
            Kind::Services => "Services",
            Kind::ContractServices => "ContractServices",
            Kind::ContractServiceUnits => "ContractServiceUnits",
            Kind::ContractServiceAdjustments => "ContractServiceAdjustments",
            Kind::Tickets => "Tickets",
            Kind::TicketAttachments => "TicketAttachments",
        }
    }

    /// The entity name (singular), as error messages and entity information name it.
    fn singular(self) -> &'static str {
        match self {
            Kind::Companies => "Company",
            Kind::Contracts => "Contract",
            Kind::Services => "Service",
            Kind::ContractServices => "ContractService",
            Kind::ContractServiceUnits => "ContractServiceUnit",
            Kind::ContractServiceAdjustments => "ContractServiceAdjustment",
            Kind::Tickets => "Ticket",
            Kind::TicketAttachments => "TicketAttachment",
        }
    }

    fn from_path(segment: &str) -> Option<Kind> {
        KINDS
            .into_iter()
            .find(|k| k.path().eq_ignore_ascii_case(segment))
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Kind::Companies => COMPANY_FIELDS,
            Kind::Contracts => CONTRACT_FIELDS,
            Kind::Services => SERVICE_FIELDS,
            Kind::ContractServices => CONTRACT_SERVICE_FIELDS,
            Kind::ContractServiceUnits => UNIT_FIELDS,
            Kind::ContractServiceAdjustments => ADJUSTMENT_FIELDS,
            Kind::Tickets => TICKET_FIELDS,
            Kind::TicketAttachments => ATTACHMENT_FIELDS,
        }
    }

    /// The index of the field named `name` (case-insensitive).
    fn field(self, name: &str) -> Option<usize> {
        self.fields()
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    }

    fn can_query(self) -> bool {
        self != Kind::ContractServiceAdjustments
    }

    fn can_get(self) -> bool {
        !matches!(
            self,
            Kind::ContractServiceUnits | Kind::ContractServiceAdjustments
        )
    }

    fn can_create(self) -> bool {
        matches!(
            self,
            Kind::ContractServices
                | Kind::ContractServiceAdjustments
                | Kind::Tickets
                | Kind::TicketAttachments
        )
    }

    /// Fields a query may not filter on ("Fields that cannot be queried" of the attachment
    /// entities' pages: data, fileSize).
    fn unqueryable(self) -> &'static [&'static str] {
        match self {
            Kind::TicketAttachments => &["data", "fileSize"],
            _ => &[],
        }
    }

    fn can_update(self) -> bool {
        self == Kind::Tickets
    }

    fn has_udfs(self) -> bool {
        matches!(self, Kind::Companies | Kind::Contracts | Kind::Tickets)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Num,
    Bool,
    Str,
    /// A date (rendered as midnight UTC, as Autotask renders dates).
    Date,
    /// A date and time.
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Queues,
    TicketStatuses,
    TicketPriorities,
    ContractTypes,
    ContractStatuses,
    CompanyTypes,
}

#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    ty: Ty,
    required: bool,
    read_only: bool,
    reference: Option<&'static str>,
    picklist: Option<Pick>,
    length: u32,
}

const fn field(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
        read_only: false,
        reference: None,
        picklist: None,
        length: 0,
    }
}

impl Field {
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    const fn refers(mut self, entity: &'static str) -> Self {
        self.reference = Some(entity);
        self
    }
    const fn pick(mut self, pick: Pick) -> Self {
        self.picklist = Some(pick);
        self
    }
    const fn length(mut self, length: u32) -> Self {
        self.length = length;
        self
    }
}

const ID: Field = field("id", Ty::Int).required().read_only();

// The order of each list is the order of `Record::cell`.
const COMPANY_FIELDS: &[Field] = &[
    ID,
    field("companyName", Ty::Str).required().length(100),
    field("companyNumber", Ty::Str).length(50),
    field("companyType", Ty::Int)
        .required()
        .pick(Pick::CompanyTypes),
    field("isActive", Ty::Bool).required(),
];
const CONTRACT_FIELDS: &[Field] = &[
    ID,
    field("companyID", Ty::Int).required().refers("Company"),
    field("contractName", Ty::Str).required().length(100),
    field("contractNumber", Ty::Str).length(50),
    field("contractType", Ty::Int)
        .required()
        .pick(Pick::ContractTypes),
    field("status", Ty::Int)
        .required()
        .pick(Pick::ContractStatuses),
    field("startDate", Ty::Date).required(),
    field("endDate", Ty::Date).required(),
    field("isDefaultContract", Ty::Bool),
];
const SERVICE_FIELDS: &[Field] = &[
    ID,
    field("name", Ty::Str).required().length(150),
    field("unitPrice", Ty::Num),
    field("unitCost", Ty::Num),
    field("periodType", Ty::Str).required(),
];
const CONTRACT_SERVICE_FIELDS: &[Field] = &[
    ID,
    field("contractID", Ty::Int).required().refers("Contract"),
    field("serviceID", Ty::Int).required().refers("Service"),
    field("unitPrice", Ty::Num),
];
const UNIT_FIELDS: &[Field] = &[
    ID,
    field("contractID", Ty::Int).read_only().refers("Contract"),
    field("serviceID", Ty::Int).read_only().refers("Service"),
    field("contractServiceID", Ty::Int)
        .read_only()
        .refers("ContractService"),
    field("startDate", Ty::Date).read_only(),
    field("endDate", Ty::Date).read_only(),
    field("units", Ty::Int).read_only(),
    field("price", Ty::Num).read_only(),
];
const ADJUSTMENT_FIELDS: &[Field] = &[
    ID,
    field("contractID", Ty::Int).required().refers("Contract"),
    field("serviceID", Ty::Int).required().refers("Service"),
    field("contractServiceID", Ty::Int).refers("ContractService"),
    field("effectiveDate", Ty::Date).required(),
    field("unitChange", Ty::Int).required(),
    field("adjustedUnitPrice", Ty::Num),
];
const TICKET_FIELDS: &[Field] = &[
    ID,
    field("companyID", Ty::Int).required().refers("Company"),
    field("title", Ty::Str).required().length(255),
    field("status", Ty::Int)
        .required()
        .pick(Pick::TicketStatuses),
    field("priority", Ty::Int)
        .required()
        .pick(Pick::TicketPriorities),
    field("queueID", Ty::Int).pick(Pick::Queues),
    field("description", Ty::Str).length(8000),
    field("dueDateTime", Ty::Time).required(),
    field("createDate", Ty::Time).read_only(),
    field("assignedResourceID", Ty::Int).refers("Resource"),
    field("assignedResourceRoleID", Ty::Int).refers("Role"),
];

const ATTACHMENT_FIELDS: &[Field] = &[
    ID,
    field("parentID", Ty::Int).required().refers("Ticket"),
    field("ticketID", Ty::Int).read_only().refers("Ticket"),
    field("title", Ty::Str).required().length(255),
    field("fullPath", Ty::Str).length(255),
    field("attachmentType", Ty::Str).required().length(32),
    field("publish", Ty::Int).required(),
    field("fileSize", Ty::Int).read_only(),
    field("data", Ty::Str),
];

/// One field's value, borrowed from a record.
#[derive(Clone, Copy, Debug)]
enum Cell<'a> {
    Null,
    Int(i64),
    Num(f64),
    Bool(bool),
    Str(&'a str),
    Time(Timestamp),
}

impl Cell<'_> {
    fn to_json(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::from(i),
            Cell::Num(n) => Value::from(n),
            Cell::Bool(b) => Value::Bool(b),
            Cell::Str(s) => Value::from(s),
            Cell::Time(t) => Value::from(t.to_string()),
        }
    }
}

fn opt_int<'a>(v: Option<i64>) -> Cell<'a> {
    v.map_or(Cell::Null, Cell::Int)
}

fn opt_num<'a>(v: Option<f64>) -> Cell<'a> {
    v.map_or(Cell::Null, Cell::Num)
}

fn opt_str(v: &Option<String>) -> Cell<'_> {
    v.as_deref().map_or(Cell::Null, Cell::Str)
}

fn opt_time<'a>(v: Option<Timestamp>) -> Cell<'a> {
    v.map_or(Cell::Null, Cell::Time)
}

fn day<'a>(d: Date) -> Cell<'a> {
    Cell::Time(midnight(d))
}

/// Midnight UTC of `d`.
fn midnight(d: Date) -> Timestamp {
    Offset::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A record of one entity: its fields as cells, in the order of [`Kind::fields`].
trait Record: Serialize {
    fn id(&self) -> i64;
    fn cell(&self, field: usize) -> Cell<'_>;
}

impl Record for Company {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 => Cell::Str(&self.company_name),
            2 => opt_str(&self.company_number),
            3 => Cell::Int(self.company_type),
            4 => Cell::Bool(self.is_active),
            _ => Cell::Null,
        }
    }
}

impl Record for Contract {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 => Cell::Int(self.company_id),
            2 => Cell::Str(&self.contract_name),
            3 => opt_str(&self.contract_number),
            4 => Cell::Int(self.contract_type),
            5 => Cell::Int(self.status),
            6 => day(self.start_date),
            7 => day(self.end_date),
            8 => Cell::Bool(self.is_default_contract),
            _ => Cell::Null,
        }
    }
}

impl Record for Service {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 => Cell::Str(&self.name),
            2 => Cell::Num(self.unit_price),
            3 => Cell::Num(self.unit_cost),
            4 => Cell::Str(&self.period_type),
            _ => Cell::Null,
        }
    }
}

impl Record for ContractService {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 => Cell::Int(self.contract_id),
            2 => Cell::Int(self.service_id),
            3 => opt_num(self.unit_price),
            _ => Cell::Null,
        }
    }
}

impl Record for ContractServiceUnit {
    fn id(&self) -> i64 {
        self.id.unwrap_or_default()
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id()),
            1 => Cell::Int(self.contract_id),
            2 => Cell::Int(self.service_id),
            3 => opt_int(self.contract_service_id),
            4 => day(self.start_date),
            5 => day(self.end_date),
            6 => Cell::Int(self.units),
            7 => opt_num(self.price),
            _ => Cell::Null,
        }
    }
}

impl Record for ContractServiceAdjustment {
    fn id(&self) -> i64 {
        self.id.unwrap_or_default()
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id()),
            1 => Cell::Int(self.contract_id),
            2 => Cell::Int(self.service_id),
            3 => opt_int(self.contract_service_id),
            4 => day(self.effective_date),
            5 => Cell::Int(self.unit_change),
            6 => opt_num(self.adjusted_unit_price),
            _ => Cell::Null,
        }
    }
}

impl Record for TicketAttachment {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 | 2 => Cell::Int(self.parent_id),
            3 => Cell::Str(&self.title),
            4 => opt_str(&self.full_path),
            5 => Cell::Str(&self.attachment_type),
            6 => Cell::Int(self.publish),
            7 => Cell::Int(self.file_size),
            8 => Cell::Str(&self.data),
            _ => Cell::Null,
        }
    }
}

impl Record for Ticket {
    fn id(&self) -> i64 {
        self.id
    }
    fn cell(&self, field: usize) -> Cell<'_> {
        match field {
            0 => Cell::Int(self.id),
            1 => Cell::Int(self.company_id),
            2 => Cell::Str(&self.title),
            3 => Cell::Int(self.status),
            4 => Cell::Int(self.priority),
            5 => opt_int(self.queue_id),
            6 => opt_str(&self.description),
            7 => opt_time(self.due_date_time),
            8 => opt_time(self.create_date),
            9 => opt_int(self.assigned_resource_id),
            10 => opt_int(self.assigned_resource_role_id),
            _ => Cell::Null,
        }
    }
}

/// A record as the API returns it: `IncludeFields` (plus `id`) or every field.
fn render<R: Record>(kind: Kind, record: &R, include: Option<&[usize]>) -> Value {
    let fields = kind.fields();
    let mut item = Map::new();
    match include {
        Some(indexes) => {
            for &i in indexes {
                item.insert(fields[i].name.to_string(), record.cell(i).to_json());
            }
        }
        None => {
            for (i, f) in fields.iter().enumerate() {
                item.insert(f.name.to_string(), record.cell(i).to_json());
            }
        }
    }
    if kind.has_udfs() {
        item.insert("userDefinedFields".into(), Value::Array(Vec::new()));
    }
    Value::Object(item)
}

// ---------------------------------------------------------------------------------------------
// Query filters
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    Gt,
    Gte,
    Lt,
    Lte,
    BeginsWith,
    EndsWith,
    Contains,
    Exist,
    NotExist,
    In,
    NotIn,
}

impl Op {
    fn parse(op: &str) -> Option<Op> {
        Some(match op.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "noteq" => Op::NotEq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "beginswith" => Op::BeginsWith,
            "endswith" => Op::EndsWith,
            "contains" => Op::Contains,
            "exist" => Op::Exist,
            "notexist" => Op::NotExist,
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        })
    }
}

/// A filter value, typed by its field.
#[derive(Clone, Debug)]
enum Lit {
    Int(i64),
    Num(f64),
    Bool(bool),
    /// Lower-cased.
    Str(String),
    Time(Timestamp),
}

#[derive(Clone, Debug)]
enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Test {
        field: usize,
        op: Op,
        values: Vec<Lit>,
    },
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Case-insensitive ordering of strings (Autotask compares strings without case).
fn cmp_ci(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .cmp(b.chars().flat_map(char::to_lowercase))
    }
}

fn compare(cell: Cell<'_>, lit: &Lit) -> Option<Ordering> {
    match (cell, lit) {
        (Cell::Int(a), Lit::Int(b)) => Some(a.cmp(b)),
        (Cell::Int(a), Lit::Num(b)) => (a as f64).partial_cmp(b),
        (Cell::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Cell::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Cell::Str(a), Lit::Str(b)) => Some(cmp_ci(a, b)),
        (Cell::Time(a), Lit::Time(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

impl Cond {
    /// The integers `field` must equal for the condition to hold (an `eq` or `in` on it among
    /// the and-ed conditions), if any.
    fn required_ints(&self, field: usize) -> Option<Vec<i64>> {
        match self {
            Cond::All(items) => items.iter().find_map(|c| c.required_ints(field)),
            Cond::Test {
                field: f,
                op: Op::Eq | Op::In,
                values,
            } if *f == field => values
                .iter()
                .map(|v| match v {
                    Lit::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    fn matches<R: Record>(&self, record: &R) -> bool {
        match self {
            Cond::All(items) => items.iter().all(|c| c.matches(record)),
            Cond::Any(items) => items.iter().any(|c| c.matches(record)),
            Cond::Test { field, op, values } => {
                let cell = record.cell(*field);
                let first = || values.first().and_then(|v| compare(cell, v));
                let text = |test: &dyn Fn(&str, &str) -> bool| match (cell, values.first()) {
                    (Cell::Str(s), Some(Lit::Str(v))) => test(&lower(s), v),
                    _ => false,
                };
                match op {
                    Op::Exist => !matches!(cell, Cell::Null),
                    Op::NotExist => matches!(cell, Cell::Null),
                    Op::Eq => first() == Some(Ordering::Equal),
                    Op::NotEq => matches!(first(), Some(o) if o != Ordering::Equal),
                    Op::Gt => first() == Some(Ordering::Greater),
                    Op::Gte => matches!(first(), Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => first() == Some(Ordering::Less),
                    Op::Lte => matches!(first(), Some(Ordering::Less | Ordering::Equal)),
                    Op::BeginsWith => text(&|s, v| s.starts_with(v)),
                    Op::EndsWith => text(&|s, v| s.ends_with(v)),
                    Op::Contains => text(&|s, v| s.contains(v)),
                    Op::In => values
                        .iter()
                        .any(|v| compare(cell, v) == Some(Ordering::Equal)),
                    Op::NotIn => {
                        !matches!(cell, Cell::Null)
                            && values
                                .iter()
                                .all(|v| compare(cell, v) != Some(Ordering::Equal))
                    }
                }
            }
        }
    }
}

/// `obj[name]` with the name matched case-insensitively (Autotask's JSON binding ignores case).
fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn non_null<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    get_ci(obj, name).filter(|v| !v.is_null())
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// A date and time: RFC 3339, or without offset (UTC), or a bare date (midnight UTC).
fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return Offset::UTC.to_timestamp(dt).ok();
    }
    s.parse::<Date>().ok().map(midnight)
}

/// A date: `YYYY-MM-DD`, or the date part of a date and time.
fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    parse_time(s)?;
    s.get(..10)?.parse::<Date>().ok()
}

fn lit(f: &Field, v: &Value) -> Result<Lit, String> {
    let bad = |what: &str| format!("Invalid value {v} for field {}: expected {what}.", f.name);
    Ok(match f.ty {
        Ty::Int => Lit::Int(as_int(v).ok_or_else(|| bad("an integer"))?),
        Ty::Num => Lit::Num(as_num(v).ok_or_else(|| bad("a number"))?),
        Ty::Bool => Lit::Bool(match v {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            Value::Number(n) if n.as_i64() == Some(0) => false,
            _ => return Err(bad("true or false")),
        }),
        Ty::Str => Lit::Str(match v {
            Value::String(s) => lower(s),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(bad("a string")),
        }),
        Ty::Date | Ty::Time => Lit::Time(
            v.as_str()
                .and_then(parse_time)
                .ok_or_else(|| bad("a date or date and time (e.g. 2026-11-01T00:00:00Z)"))?,
        ),
    })
}

fn parse_condition(kind: Kind, item: &Value) -> Result<Cond, String> {
    let Some(obj) = item.as_object() else {
        return Err(format!(
            "Invalid filter item {item}: expected an object with op, field and value."
        ));
    };
    let Some(op_name) = non_null(obj, "op").and_then(Value::as_str) else {
        return Err(format!("The filter item {item} has no op."));
    };
    if op_name.eq_ignore_ascii_case("and") || op_name.eq_ignore_ascii_case("or") {
        let Some(items) = non_null(obj, "items").and_then(Value::as_array) else {
            return Err(format!(
                "The '{op_name}' group {item} needs an items array of conditions."
            ));
        };
        if items.is_empty() {
            return Err(format!("The '{op_name}' group has no items."));
        }
        let conds = items
            .iter()
            .map(|i| parse_condition(kind, i))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if op_name.eq_ignore_ascii_case("and") {
            Cond::All(conds)
        } else {
            Cond::Any(conds)
        });
    }
    let Some(op) = Op::parse(op_name) else {
        return Err(format!(
            "Invalid filter operator '{op_name}'. Valid operators: eq, noteq, gt, gte, lt, lte, \
             beginsWith, endsWith, contains, exist, notExist, in, notIn, and, or."
        ));
    };
    let Some(name) = non_null(obj, "field").and_then(Value::as_str) else {
        return Err(format!("The filter condition {item} has no field."));
    };
    if non_null(obj, "udf").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "Unable to find user-defined field {name} in the {} entity.",
            kind.singular()
        ));
    }
    let Some(index) = kind.field(name) else {
        return Err(format!(
            "Unable to find {name} in the {} entity.",
            kind.singular()
        ));
    };
    let f = &kind.fields()[index];
    if kind
        .unqueryable()
        .iter()
        .any(|n| n.eq_ignore_ascii_case(f.name))
    {
        return Err(format!(
            "The {} field of {} cannot be queried.",
            f.name,
            kind.singular()
        ));
    }
    let value = non_null(obj, "value");
    let values = match op {
        Op::Exist | Op::NotExist => Vec::new(),
        Op::In | Op::NotIn => {
            let Some(list) = value.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
                return Err(format!(
                    "The {op_name} condition on {name} needs a non-empty array value."
                ));
            };
            list.iter().map(|v| lit(f, v)).collect::<Result<_, _>>()?
        }
        _ => {
            let Some(v) = value else {
                return Err(format!(
                    "The {op_name} condition on {name} needs a value (use exist or notExist for null)."
                ));
            };
            if matches!(op, Op::BeginsWith | Op::EndsWith | Op::Contains) && f.ty != Ty::Str {
                return Err(format!(
                    "The {op_name} operator applies to string fields only; {name} is not one."
                ));
            }
            vec![lit(f, v)?]
        }
    };
    Ok(Cond::Test {
        field: index,
        op,
        values,
    })
}

/// A parsed query (`search`).
struct Search {
    cond: Cond,
    max_records: usize,
    include: Option<Vec<usize>>,
    /// The search as received (carried by `nextPageUrl`).
    raw: Value,
}

const MAX_RECORDS: i64 = 500;

fn parse_search(kind: Kind, raw: Value) -> Result<Search, String> {
    let Some(obj) = raw.as_object() else {
        return Err(
            "The query must be a JSON object like {\"filter\":[{\"op\":\"eq\",\"field\":\"id\",\"value\":1}]}."
                .into(),
        );
    };
    let filter = match non_null(obj, "filter") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(format!(
                "filter must be an array of conditions, not {other}."
            ));
        }
    };
    if filter.is_empty() {
        return Err(
            "A query requires at least one filter condition (e.g. {\"op\":\"gte\",\"field\":\"id\",\"value\":0})."
                .into(),
        );
    }
    let cond = Cond::All(
        filter
            .iter()
            .map(|i| parse_condition(kind, i))
            .collect::<Result<_, _>>()?,
    );
    let max_records = match non_null(obj, "MaxRecords") {
        None => MAX_RECORDS,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=MAX_RECORDS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "MaxRecords must be an integer between 1 and {MAX_RECORDS}; got {v}."
                ));
            }
        },
    };
    let include = match non_null(obj, "IncludeFields") {
        None => None,
        Some(Value::Array(names)) if names.is_empty() => None,
        Some(Value::Array(names)) => {
            let mut indexes = vec![0];
            for n in names {
                let Some(name) = n.as_str() else {
                    return Err(format!("IncludeFields must list field names; got {n}."));
                };
                let Some(i) = kind.field(name) else {
                    return Err(format!(
                        "Unable to find {name} in the {} entity.",
                        kind.singular()
                    ));
                };
                if !indexes.contains(&i) {
                    indexes.push(i);
                }
            }
            Some(indexes)
        }
        Some(other) => {
            return Err(format!(
                "IncludeFields must be an array of field names, not {other}."
            ));
        }
    };
    Ok(Search {
        cond,
        max_records: max_records as usize,
        include,
        raw,
    })
}

/// Where a page starts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Cursor {
    Start,
    /// Ids greater than this one.
    After(i64),
    /// The last page of ids less than this one.
    Before(i64),
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn page_url(api_base: &str, kind: Kind, search: &Search, cursor: Cursor) -> Value {
    let (dir, paging) = match cursor {
        Cursor::Before(id) => (
            "prev",
            json!({"pageSize": search.max_records, "beforeId": id}),
        ),
        Cursor::After(id) => (
            "next",
            json!({"pageSize": search.max_records, "afterId": id}),
        ),
        Cursor::Start => ("next", json!({"pageSize": search.max_records})),
    };
    Value::from(format!(
        "{api_base}/{}/query/{dir}?paging={}&search={}",
        kind.path(),
        encode(&paging.to_string()),
        encode(&search.raw.to_string())
    ))
}

fn query_page<R: Record>(
    rows: &BTreeMap<i64, R>,
    kind: Kind,
    search: &Search,
    cursor: Cursor,
    api_base: &str,
) -> Value {
    let hit = |r: &&R| search.cond.matches(*r);
    let size = search.max_records;
    let (page, more_before, more_after): (Vec<&R>, bool, bool) = match cursor {
        Cursor::Start | Cursor::After(_) => {
            let from = match cursor {
                Cursor::After(id) => Bound::Excluded(id),
                _ => Bound::Unbounded,
            };
            let mut found = rows
                .range((from, Bound::Unbounded))
                .map(|(_, r)| r)
                .filter(hit);
            let page: Vec<&R> = found.by_ref().take(size).collect();
            let more_after = found.next().is_some();
            let more_before = match (cursor, page.first()) {
                (Cursor::After(_), Some(first)) => {
                    rows.range(..first.id()).map(|(_, r)| r).any(|r| hit(&r))
                }
                _ => false,
            };
            (page, more_before, more_after)
        }
        Cursor::Before(id) => {
            let mut found = rows.range(..id).rev().map(|(_, r)| r).filter(hit);
            let mut page: Vec<&R> = found.by_ref().take(size).collect();
            page.reverse();
            let more_before = found.next().is_some();
            let more_after = page.last().is_some_and(|last| {
                rows.range((Bound::Excluded(last.id()), Bound::Unbounded))
                    .map(|(_, r)| r)
                    .any(|r| hit(&r))
            });
            (page, more_before, more_after)
        }
    };
    let prev = match page.first() {
        Some(first) if more_before => page_url(api_base, kind, search, Cursor::Before(first.id())),
        _ => Value::Null,
    };
    let next = match page.last() {
        Some(last) if more_after => page_url(api_base, kind, search, Cursor::After(last.id())),
        _ => Value::Null,
    };
    let items: Vec<Value> = page
        .iter()
        .map(|r| {
            let mut item = render(kind, *r, search.include.as_deref());
            // Queries list attachments without their bytes.
            if let Some(o) = item.as_object_mut() {
                for name in kind.unqueryable() {
                    if *name == "data" {
                        o.remove(*name);
                    }
                }
            }
            item
        })
        .collect();
    json!({
        "items": items,
        "pageDetails": {
            "count": items.len(),
            "requestCount": size,
            "prevPageUrl": prev,
            "nextPageUrl": next,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Errors and request bodies
// ---------------------------------------------------------------------------------------------

/// A refused request: `{"errors":[...]}` with a status.
#[derive(Debug)]
struct Fail {
    status: u16,
    errors: Vec<String>,
    retry_after: Option<u64>,
}

impl Fail {
    fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            errors: vec![message.into()],
            retry_after: None,
        }
    }

    /// A validation failure: Autotask answers them with 500.
    fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(500, message)
    }

    fn response(self) -> SimResponse {
        let r = SimResponse::json(self.status, &json!({ "errors": self.errors }));
        match self.retry_after {
            Some(s) => r.with_header("retry-after", s.to_string()),
            None => r,
        }
    }
}

fn not_allowed(method: &str, hint: Option<&str>) -> Fail {
    let mut f = Fail::new(
        405,
        format!("The requested resource does not support http method '{method}'."),
    );
    if let Some(h) = hint {
        f.errors.push(h.to_string());
    }
    f
}

fn required(name: &str) -> String {
    format!("{name} is required.; on record number [0].")
}

fn on_record(message: impl std::fmt::Display) -> String {
    format!("{message}; on record number [0].")
}

/// Reads the fields of a create or update body, collecting validation errors.
struct Body<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Body<'a> {
    fn new(v: &'a Value) -> Result<Body<'a>, Fail> {
        match v.as_object() {
            Some(obj) => Ok(Body {
                obj,
                errors: Vec::new(),
            }),
            None => Err(Fail::invalid(
                "The request body must be a JSON object with the entity's fields.",
            )),
        }
    }

    /// Whether `name` is present (even as null).
    fn has(&self, name: &str) -> bool {
        get_ci(self.obj, name).is_some()
    }

    fn value(&mut self, name: &str, required_: bool) -> Option<&'a Value> {
        let v = non_null(self.obj, name);
        if v.is_none() && required_ {
            self.errors.push(required(name));
        }
        v
    }

    fn int(&mut self, name: &str, required_: bool) -> Option<i64> {
        let v = self.value(name, required_)?;
        let i = as_int(v);
        if i.is_none() {
            self.errors
                .push(on_record(format!("{name}: {v} is not a valid integer.")));
        }
        i
    }

    fn num(&mut self, name: &str, required_: bool) -> Option<f64> {
        let v = self.value(name, required_)?;
        let n = as_num(v);
        if n.is_none() {
            self.errors
                .push(on_record(format!("{name}: {v} is not a valid number.")));
        }
        n
    }

    fn text(&mut self, name: &str, required_: bool, max_len: usize) -> Option<String> {
        let v = self.value(name, required_)?;
        let Some(s) = v.as_str() else {
            self.errors
                .push(on_record(format!("{name}: {v} is not a string.")));
            return None;
        };
        if s.trim().is_empty() && required_ {
            self.errors.push(required(name));
            return None;
        }
        if s.chars().count() > max_len {
            self.errors.push(on_record(format!(
                "{name} exceeds the maximum length of {max_len} characters."
            )));
            return None;
        }
        Some(s.to_string())
    }

    fn date(&mut self, name: &str, required_: bool) -> Option<Date> {
        let v = self.value(name, required_)?;
        let d = v.as_str().and_then(parse_date);
        if d.is_none() {
            self.errors.push(on_record(format!(
                "{name}: {v} is not a valid date (use e.g. 2026-11-01 or 2026-11-01T00:00:00Z)."
            )));
        }
        d
    }

    fn time(&mut self, name: &str, required_: bool) -> Option<Timestamp> {
        let v = self.value(name, required_)?;
        let t = v.as_str().and_then(parse_time);
        if t.is_none() {
            self.errors.push(on_record(format!(
                "{name}: {v} is not a valid date and time (use e.g. 2026-11-30T17:00:00Z)."
            )));
        }
        t
    }

    fn error(&mut self, message: impl std::fmt::Display) {
        self.errors.push(on_record(message));
    }

    fn check(&mut self) -> Result<(), Fail> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Fail {
                status: 500,
                errors: std::mem::take(&mut self.errors),
                retry_after: None,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Items,
    Count,
    Next,
    Prev,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Query(Kind, Mode),
    Get(Kind, i64),
    CreateTicket,
    UpdateTicket,
    CreateContractService(i64),
    CreateAdjustment(i64),
    CreateTicketAttachment(i64),
    EntityInfo(Kind),
    FieldsInfo(Kind),
    UdfInfo(Kind),
}

impl Route {
    /// The endpoint the thread limit counts on.
    fn endpoint(self) -> Kind {
        match self {
            Route::Query(k, _)
            | Route::Get(k, _)
            | Route::EntityInfo(k)
            | Route::FieldsInfo(k)
            | Route::UdfInfo(k) => k,
            Route::CreateTicket | Route::UpdateTicket => Kind::Tickets,
            Route::CreateContractService(_) => Kind::ContractServices,
            Route::CreateAdjustment(_) => Kind::ContractServiceAdjustments,
            Route::CreateTicketAttachment(_) => Kind::TicketAttachments,
        }
    }
}

fn ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The route of `rest` (the path after `v1.0/`).
fn route(method: &str, rest: &[&str]) -> Result<Route, Fail> {
    let m = method.to_ascii_uppercase();
    let not_found = || {
        Fail::new(
            404,
            format!(
                "No HTTP resource was found that matches /{}.",
                rest.join("/")
            ),
        )
    };
    let Some((first, tail)) = rest.split_first() else {
        return Err(not_found());
    };
    let Some(kind) = Kind::from_path(first) else {
        return Err(not_found());
    };
    let get_only = |r: Route| {
        if m == "GET" {
            Ok(r)
        } else {
            Err(not_allowed(&m, None))
        }
    };
    let post_only = |r: Route| {
        if m == "POST" {
            Ok(r)
        } else {
            Err(not_allowed(
                &m,
                Some("nextPageUrl and prevPageUrl are followed with POST and the query body."),
            ))
        }
    };
    let numeric = |s: &str| s.parse::<i64>().ok();
    match tail {
        [] => match (kind, m.as_str()) {
            (Kind::Tickets, "POST") => Ok(Route::CreateTicket),
            (Kind::Tickets, "PATCH") => Ok(Route::UpdateTicket),
            (Kind::ContractServices, _) => Err(not_allowed(
                &m,
                Some(
                    "Contract services are created through POST /Contracts/{contractId}/Services.",
                ),
            )),
            (Kind::TicketAttachments, _) => Err(not_allowed(
                &m,
                Some(
                    "Ticket attachments are created through POST /Tickets/{ticketId}/Attachments.",
                ),
            )),
            (Kind::ContractServiceAdjustments, _) => Err(not_allowed(
                &m,
                Some(
                    "Adjustments are created through POST /Contracts/{contractId}/ServiceAdjustments.",
                ),
            )),
            _ => Err(not_allowed(&m, None)),
        },
        [q, rest @ ..] if ci(q, "query") => {
            if !kind.can_query() {
                return Err(not_allowed(
                    &m,
                    Some(&format!("{} cannot be queried.", kind.path())),
                ));
            }
            let mode = match rest {
                [] => Mode::Items,
                [c] if ci(c, "count") => Mode::Count,
                // The paging URLs take POST with the query body, as the first page did; a GET
                // there is refused (tphakala/go-autotask iter.go posts them).
                [n] if ci(n, "next") => return post_only(Route::Query(kind, Mode::Next)),
                [p] if ci(p, "prev") => return post_only(Route::Query(kind, Mode::Prev)),
                _ => return Err(not_found()),
            };
            if m == "GET" || m == "POST" {
                Ok(Route::Query(kind, mode))
            } else {
                Err(not_allowed(&m, None))
            }
        }
        [e] if ci(e, "entityInformation") => get_only(Route::EntityInfo(kind)),
        [e, f] if ci(e, "entityInformation") && ci(f, "fields") => {
            get_only(Route::FieldsInfo(kind))
        }
        [e, f] if ci(e, "entityInformation") && ci(f, "userDefinedFields") => {
            get_only(Route::UdfInfo(kind))
        }
        [id] => match numeric(id) {
            Some(id) if kind.can_get() => get_only(Route::Get(kind, id)),
            Some(_) => Err(not_allowed(
                &m,
                Some(&format!("{} can only be queried.", kind.path())),
            )),
            None => Err(not_found()),
        },
        [id, child] if kind == Kind::Tickets && ci(child, "Attachments") => match numeric(id) {
            Some(id) => match m.as_str() {
                "POST" => Ok(Route::CreateTicketAttachment(id)),
                _ => Err(not_allowed(&m, None)),
            },
            None => Err(not_found()),
        },
        [id, child] if kind == Kind::Contracts => match numeric(id) {
            Some(id) if ci(child, "Services") => match m.as_str() {
                "POST" => Ok(Route::CreateContractService(id)),
                _ => Err(not_allowed(&m, None)),
            },
            Some(id) if ci(child, "ServiceAdjustments") => match m.as_str() {
                "POST" => Ok(Route::CreateAdjustment(id)),
                _ => Err(not_allowed(
                    &m,
                    Some("Contract service adjustments are create-only."),
                )),
            },
            _ => Err(not_found()),
        },
        _ => Err(not_found()),
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

struct Store {
    companies: BTreeMap<i64, Company>,
    contracts: BTreeMap<i64, Contract>,
    services: BTreeMap<i64, Service>,
    contract_services: BTreeMap<i64, ContractService>,
    /// Contract service ids by (contract, service).
    pairs: HashMap<(i64, i64), i64>,
    units: BTreeMap<i64, ContractServiceUnit>,
    /// Unit row ids by contract (rows are never deleted nor moved to another contract).
    units_by_contract: HashMap<i64, Vec<i64>>,
    adjustments: BTreeMap<i64, ContractServiceAdjustment>,
    tickets: BTreeMap<i64, Ticket>,
    attachments: BTreeMap<i64, TicketAttachment>,
    /// Attachment bytes accepted in the last five minutes.
    attachment_window: VecDeque<(Instant, usize)>,
    queues: Vec<PicklistValue>,
    statuses: Vec<PicklistValue>,
    priorities: Vec<PicklistValue>,
    next_id: i64,
}

/// Runs `$body` with `$rows` bound to the table of `$kind`.
macro_rules! on_table {
    ($store:expr, $kind:expr, $rows:ident => $body:expr) => {
        match $kind {
            Kind::Companies => {
                let $rows = &$store.companies;
                $body
            }
            Kind::Contracts => {
                let $rows = &$store.contracts;
                $body
            }
            Kind::Services => {
                let $rows = &$store.services;
                $body
            }
            Kind::ContractServices => {
                let $rows = &$store.contract_services;
                $body
            }
            Kind::ContractServiceUnits => {
                let $rows = &$store.units;
                $body
            }
            Kind::ContractServiceAdjustments => {
                let $rows = &$store.adjustments;
                $body
            }
            Kind::Tickets => {
                let $rows = &$store.tickets;
                $body
            }
            Kind::TicketAttachments => {
                let $rows = &$store.attachments;
                $body
            }
        }
    };
}

const CONTRACT_TYPES: &[(i64, &str)] = &[
    (1, "Time & Materials"),
    (3, "Fixed Price"),
    (4, "Block Hours"),
    (6, "Retainer"),
    (7, "Recurring Service"),
    (8, "Per Ticket"),
];
const CONTRACT_STATUSES: &[(i64, &str)] = &[(0, "Inactive"), (1, "Active")];
const COMPANY_TYPES: &[(i64, &str)] = &[
    (1, "Customer"),
    (2, "Lead"),
    (3, "Prospect"),
    (4, "Dead"),
    (6, "Cancellation"),
    (7, "Vendor"),
    (8, "Partner"),
];

fn active(list: &[PicklistValue], id: i64) -> bool {
    list.iter().any(|p| p.id == id && p.is_active)
}

impl Store {
    fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn picklist(&self, pick: Pick) -> Vec<PicklistValue> {
        match pick {
            Pick::Queues => self.queues.clone(),
            Pick::TicketStatuses => self.statuses.clone(),
            Pick::TicketPriorities => self.priorities.clone(),
            Pick::ContractTypes => picklist(CONTRACT_TYPES),
            Pick::ContractStatuses => picklist(CONTRACT_STATUSES),
            Pick::CompanyTypes => picklist(COMPANY_TYPES),
        }
    }

    fn contract_service(&self, contract: i64, service: i64) -> Option<&ContractService> {
        self.pairs
            .get(&(contract, service))
            .and_then(|id| self.contract_services.get(id))
    }

    fn insert_unit(&mut self, u: ContractServiceUnit) {
        let id = u.id();
        self.units_by_contract
            .entry(u.contract_id)
            .or_default()
            .push(id);
        self.units.insert(id, u);
    }

    /// The unit rows of `contract`.
    fn units_of(&self, contract: i64) -> impl Iterator<Item = &ContractServiceUnit> {
        self.units_by_contract
            .get(&contract)
            .into_iter()
            .flatten()
            .filter_map(|id| self.units.get(id))
    }

    /// When `cond` requires `contractID` to be one of a few values, the unit rows that can
    /// match (a copy of a small part of the table), so a query need not scan every row.
    fn narrowed_units(&self, cond: &Cond) -> Option<BTreeMap<i64, ContractServiceUnit>> {
        let contract_field = Kind::ContractServiceUnits.field("contractID")?;
        let contracts = cond.required_ints(contract_field)?;
        Some(
            contracts
                .iter()
                .flat_map(|c| self.units_of(*c))
                .map(|u| (u.id(), u.clone()))
                .collect(),
        )
    }

    fn insert_contract_service(&mut self, cs: ContractService) {
        self.pairs.insert((cs.contract_id, cs.service_id), cs.id);
        self.contract_services.insert(cs.id, cs);
    }

    fn dispatch(&mut self, route: Route, req: &SimRequest, api_base: &str) -> Result<Value, Fail> {
        match route {
            Route::Query(kind, mode) => self.query(kind, mode, req, api_base),
            Route::Get(kind, id) => {
                let item =
                    on_table!(self, kind, rows => rows.get(&id).map(|r| render(kind, r, None)));
                Ok(json!({ "item": item }))
            }
            Route::CreateTicket => self.create_ticket(&body(req)?),
            Route::UpdateTicket => self.update_ticket(&body(req)?),
            Route::CreateContractService(contract) => {
                self.create_contract_service(contract, &body(req)?)
            }
            Route::CreateAdjustment(contract) => self.create_adjustment(contract, &body(req)?),
            Route::CreateTicketAttachment(ticket) => {
                self.create_ticket_attachment(ticket, &body(req)?)
            }
            Route::EntityInfo(kind) => Ok(json!({
                "info": {
                    "name": kind.singular(),
                    "canCreate": kind.can_create(),
                    "canDelete": false,
                    "canQuery": kind.can_query(),
                    "canUpdate": kind.can_update(),
                    "hasUserDefinedFields": kind.has_udfs(),
                    "supportsWebhookCallouts": false,
                }
            })),
            Route::FieldsInfo(kind) => Ok(self.fields_info(kind)),
            Route::UdfInfo(_) => Ok(json!({ "fields": [] })),
        }
    }

    fn query(
        &self,
        kind: Kind,
        mode: Mode,
        req: &SimRequest,
        api_base: &str,
    ) -> Result<Value, Fail> {
        let raw = if matches!(mode, Mode::Next | Mode::Prev) {
            // The cursor URL carries the query; a body, when sent, must be the same query.
            let Some(search) = req.param("search") else {
                return Err(Fail::invalid(
                    "The paging URL has no search parameter; follow nextPageUrl as given.",
                ));
            };
            let carried: Value = serde_json::from_str(search)
                .map_err(|e| Fail::invalid(format!("The search parameter is not JSON: {e}")))?;
            if !req.body.iter().all(u8::is_ascii_whitespace) {
                let sent = req.json().map_err(Fail::invalid)?;
                let filter = |v: &Value| {
                    v.as_object()
                        .and_then(|o| non_null(o, "filter").cloned())
                        .unwrap_or(Value::Null)
                };
                if filter(&sent) != filter(&carried) {
                    return Err(Fail::invalid(
                        "The query body does not match the query of the paging URL; send the first page's query.",
                    ));
                }
            }
            carried
        } else if req.method.eq_ignore_ascii_case("POST") {
            if req.body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                req.json().map_err(Fail::invalid)?
            }
        } else {
            let Some(search) = req.param("search") else {
                return Err(Fail::invalid(
                    "The search parameter is required: ?search={\"filter\":[...]} (URL-encoded JSON).",
                ));
            };
            serde_json::from_str(search)
                .map_err(|e| Fail::invalid(format!("The search parameter is not JSON: {e}")))?
        };
        let search = parse_search(kind, raw).map_err(Fail::invalid)?;
        let cursor = match mode {
            Mode::Items => Cursor::Start,
            Mode::Count => {
                let n = match self.narrowed(kind, &search.cond) {
                    Some(rows) => rows.values().filter(|r| search.cond.matches(*r)).count(),
                    None => {
                        on_table!(self, kind, rows => rows.values().filter(|r| search.cond.matches(*r)).count())
                    }
                };
                return Ok(json!({ "queryCount": n }));
            }
            Mode::Next | Mode::Prev => {
                let paging = req
                    .param("paging")
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .unwrap_or(Value::Null);
                let id = |key: &str| paging.get(key).and_then(Value::as_i64);
                match (mode, id("afterId"), id("beforeId")) {
                    (Mode::Next, Some(after), _) => Cursor::After(after),
                    (Mode::Next, None, None) if paging.is_object() => Cursor::Start,
                    (Mode::Prev, _, Some(before)) => Cursor::Before(before),
                    _ => {
                        return Err(Fail::invalid(
                            "The paging parameter is missing or invalid; follow nextPageUrl/prevPageUrl as given.",
                        ));
                    }
                }
            }
        };
        Ok(match self.narrowed(kind, &search.cond) {
            Some(rows) => query_page(&rows, kind, &search, cursor, api_base),
            None => {
                on_table!(self, kind, rows => query_page(rows, kind, &search, cursor, api_base))
            }
        })
    }

    /// The candidate rows of a query on the (large) units table, when an index applies.
    fn narrowed(&self, kind: Kind, cond: &Cond) -> Option<BTreeMap<i64, ContractServiceUnit>> {
        match kind {
            Kind::ContractServiceUnits => self.narrowed_units(cond),
            _ => None,
        }
    }

    fn fields_info(&self, kind: Kind) -> Value {
        let fields: Vec<Value> = kind
            .fields()
            .iter()
            .map(|f| {
                let data_type = match (f.name, f.ty) {
                    ("id", _) => "long",
                    (_, Ty::Int) => "integer",
                    (_, Ty::Num) => "double",
                    (_, Ty::Bool) => "boolean",
                    (_, Ty::Str) => "string",
                    (_, Ty::Date | Ty::Time) => "datetime",
                };
                let values = f.picklist.map(|p| {
                    self.picklist(p)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            json!({
                                "value": v.id.to_string(),
                                "label": v.name,
                                "isDefaultValue": v.is_default_value,
                                "sortOrder": i,
                                "parentValue": "",
                                "isActive": v.is_active,
                                "isSystem": false,
                            })
                        })
                        .collect::<Vec<_>>()
                });
                json!({
                    "name": f.name,
                    "dataType": data_type,
                    "length": f.length,
                    "isRequired": f.required,
                    "isReadOnly": f.read_only,
                    "isQueryable": kind.can_query(),
                    "isReference": f.reference.is_some(),
                    "referenceEntityType": f.reference.unwrap_or(""),
                    "isPickList": f.picklist.is_some(),
                    "picklistValues": values,
                    "picklistParentValueField": "",
                    "isSupportedWebhookField": false,
                })
            })
            .collect();
        json!({ "fields": fields })
    }

    /// The contract of a child create: the URL's, which the body's `contractID` must repeat.
    fn parent_contract(&self, path_id: i64, b: &mut Body<'_>) -> Result<Contract, Fail> {
        let body_id = b.int("contractID", true);
        if let Some(id) = body_id
            && id != path_id
        {
            b.error(format!(
                "contractID {id} in the body does not match the contract {path_id} in the URL."
            ));
        }
        b.check()?;
        self.contracts
            .get(&path_id)
            .cloned()
            .ok_or_else(|| Fail::invalid(on_record(format!("Contract {path_id} does not exist."))))
    }

    fn create_contract_service(&mut self, contract_id: i64, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let service_id = b.int("serviceID", true);
        let unit_price = b.num("unitPrice", false);
        let contract = self.parent_contract(contract_id, &mut b)?;
        let service_id = service_id.unwrap_or_default();
        if contract.contract_type != RECURRING_SERVICE {
            return Err(Fail::invalid(on_record(format!(
                "Services can only be added to Recurring Service contracts (contractType 7); contract {contract_id} has contractType {}.",
                contract.contract_type
            ))));
        }
        let Some(service) = self.services.get(&service_id) else {
            return Err(Fail::invalid(on_record(format!(
                "Service {service_id} does not exist."
            ))));
        };
        if let Some(existing) = self.contract_service(contract_id, service_id) {
            return Err(Fail::invalid(on_record(format!(
                "Service {service_id} is already on contract {contract_id} (contract service {}).",
                existing.id
            ))));
        }
        let unit_price = unit_price.unwrap_or(service.unit_price);
        let id = self.take_id();
        self.insert_contract_service(ContractService {
            id,
            contract_id,
            service_id,
            unit_price: Some(unit_price),
        });
        Ok(json!({ "itemId": id }))
    }

    fn create_adjustment(&mut self, contract_id: i64, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let service_id = b.int("serviceID", true);
        let effective = b.date("effectiveDate", true);
        let change = b.int("unitChange", true);
        let price = b.num("adjustedUnitPrice", false);
        let given_cs = b.int("contractServiceID", false);
        let contract = self.parent_contract(contract_id, &mut b)?;
        let (Some(service_id), Some(effective), Some(change)) = (service_id, effective, change)
        else {
            return Err(Fail::invalid(required("serviceID")));
        };
        if contract.contract_type != RECURRING_SERVICE {
            return Err(Fail::invalid(on_record(format!(
                "Service adjustments can only be made on Recurring Service contracts (contractType 7); contract {contract_id} has contractType {}.",
                contract.contract_type
            ))));
        }
        if contract.status != 1 {
            return Err(Fail::invalid(on_record(format!(
                "Contract {contract_id} is not active (status {}); adjustments need an active contract.",
                contract.status
            ))));
        }
        // "If the API creates a ContractServiceAdjustment entity and the API cannot find the
        // correct ContractService entity, it will create it" (ContractServiceAdjustments, REST).
        let cs = match self.contract_service(contract_id, service_id).cloned() {
            Some(cs) => cs,
            None => {
                let Some(service) = self.services.get(&service_id) else {
                    return Err(Fail::invalid(on_record(format!(
                        "Service {service_id} does not exist."
                    ))));
                };
                let cs = ContractService {
                    id: 0,
                    contract_id,
                    service_id,
                    unit_price: Some(service.unit_price),
                };
                let cs = ContractService {
                    id: self.take_id(),
                    ..cs
                };
                self.insert_contract_service(cs.clone());
                cs
            }
        };
        if let Some(given) = given_cs
            && given != cs.id
        {
            return Err(Fail::invalid(on_record(format!(
                "contractServiceID {given} is not the contract service {} of service {service_id} on contract {contract_id}.",
                cs.id
            ))));
        }
        if i32::try_from(change).is_err() {
            return Err(Fail::invalid(on_record(format!(
                "unitChange: {change} is outside the range of a 32-bit integer."
            ))));
        }
        // ContractServiceUnits (REST API) in Autotask's developer help: an adjustment inside a
        // billing period starts a new units row on its effective date, which runs to the end of
        // the period; later periods carry the new count.
        let periods: Vec<ContractServiceUnit> = self
            .units_of(contract_id)
            .filter(|u| u.contract_service_id == Some(cs.id))
            .cloned()
            .collect();
        let too_low = |units: i64, u: Option<&ContractServiceUnit>| {
            let period = u.map_or_else(
                || format!("the period of {effective}"),
                |u| format!("the period {} to {}", u.start_date, u.end_date),
            );
            Fail::invalid(on_record(format!(
                "The adjustment of {change} units would leave {units} units in {period}; units cannot be negative."
            )))
        };
        for u in &periods {
            if u.end_date >= effective && u.units + change < 0 {
                return Err(too_low(u.units + change, Some(u)));
            }
            if u.end_date >= effective && i32::try_from(u.units + change).is_err() {
                return Err(Fail::invalid(on_record(
                    "units would exceed the range of a 32-bit integer.",
                )));
            }
        }
        let containing = periods
            .iter()
            .find(|u| u.start_date <= effective && effective <= u.end_date)
            .cloned();
        let mut new_rows = Vec::new();
        match &containing {
            Some(row) if row.start_date < effective => {
                // Split: the row ends the day before; a new row from the effective date.
                let Ok(day_before) = effective.yesterday() else {
                    return Err(Fail::invalid(on_record("effectiveDate is out of range.")));
                };
                if let Some(u) = self.units.get_mut(&row.id()) {
                    u.end_date = day_before;
                }
                new_rows.push((
                    effective,
                    row.end_date,
                    row.units + change,
                    price.or(row.price),
                ));
            }
            Some(_) => {}
            None => {
                let before = periods
                    .iter()
                    .filter(|u| u.end_date < effective)
                    .max_by_key(|u| u.end_date);
                let after = periods
                    .iter()
                    .filter(|u| u.start_date > effective)
                    .min_by_key(|u| u.start_date);
                let mut end = effective.last_of_month();
                if let Some(a) = after
                    && let Ok(prev_day) = a.start_date.yesterday()
                    && prev_day < end
                {
                    end = prev_day;
                }
                let units = before.map_or(0, |b| b.units) + change;
                if units < 0 {
                    return Err(too_low(units, None));
                }
                let unit_price = price.or(before.and_then(|b| b.price)).or(cs.unit_price);
                new_rows.push((effective, end, units, unit_price));
            }
        }
        for u in &periods {
            let moves = match &containing {
                Some(row) if row.start_date == effective => u.start_date >= effective,
                _ => u.start_date > effective,
            };
            if moves && let Some(row) = self.units.get_mut(&u.id()) {
                row.units += change;
                if price.is_some() {
                    row.price = price;
                }
            }
        }
        for (start_date, end_date, units, unit_price) in new_rows {
            let id = self.take_id();
            self.insert_unit(ContractServiceUnit {
                id: Some(id),
                contract_id,
                service_id,
                contract_service_id: Some(cs.id),
                start_date,
                end_date,
                units,
                price: unit_price,
            });
        }
        let id = self.take_id();
        self.adjustments.insert(
            id,
            ContractServiceAdjustment {
                id: Some(id),
                contract_id,
                service_id,
                contract_service_id: Some(cs.id),
                effective_date: effective,
                unit_change: change,
                adjusted_unit_price: price,
            },
        );
        Ok(json!({ "itemId": id }))
    }

    /// Checks a ticket's references and the queue rule, skipping the fields in `unread` (those
    /// already reported as missing or malformed).
    fn check_ticket(&self, t: &Ticket, unread: &[&str], errors: &mut Vec<String>) {
        let read = |name: &str| !unread.contains(&name);
        if read("companyID") && !self.companies.contains_key(&t.company_id) {
            errors.push(on_record(format!(
                "companyID {} does not exist.",
                t.company_id
            )));
        }
        if read("status") && !active(&self.statuses, t.status) {
            errors.push(on_record(format!(
                "status {} is not an active value of the ticket status picklist.",
                t.status
            )));
        }
        if read("priority") && !active(&self.priorities, t.priority) {
            errors.push(on_record(format!(
                "priority {} is not an active value of the ticket priority picklist.",
                t.priority
            )));
        }
        if read("queueID") {
            match t.queue_id {
                Some(q) if !active(&self.queues, q) => errors.push(on_record(format!(
                    "queueID {q} is not an active value of the queue picklist."
                ))),
                Some(_) => {}
                None if t.assigned_resource_id.is_some()
                    && t.assigned_resource_role_id.is_some() => {}
                None => errors.push(on_record(
                    "queueID is required. A ticket needs a queueID, or both assignedResourceID and assignedResourceRoleID.",
                )),
            }
        }
        if read("dueDateTime") && t.due_date_time.is_none() {
            errors.push(required("dueDateTime"));
        }
    }

    fn create_ticket(&mut self, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let company_id = b.int("companyID", true);
        let title = b.text("title", true, 255);
        let status = b.int("status", true);
        let priority = b.int("priority", true);
        let queue_id = b.int("queueID", false);
        let description = b.text("description", false, 8000);
        let due = b.time("dueDateTime", true);
        let resource = b.int("assignedResourceID", false);
        let role = b.int("assignedResourceRoleID", false);
        let mut unread = vec!["dueDateTime"];
        for (name, ok) in [
            ("companyID", company_id.is_some()),
            ("status", status.is_some()),
            ("priority", priority.is_some()),
            ("queueID", queue_id.is_some() || !b.has("queueID")),
        ] {
            if !ok {
                unread.push(name);
            }
        }
        let ticket = Ticket {
            id: 0,
            company_id: company_id.unwrap_or_default(),
            title: title.unwrap_or_default(),
            status: status.unwrap_or_default(),
            priority: priority.unwrap_or_default(),
            queue_id,
            description,
            due_date_time: due,
            create_date: Some(Timestamp::now()),
            assigned_resource_id: resource,
            assigned_resource_role_id: role,
        };
        self.check_ticket(&ticket, &unread, &mut b.errors);
        b.check()?;
        let id = self.take_id();
        self.tickets.insert(id, Ticket { id, ..ticket });
        Ok(json!({ "itemId": id }))
    }

    /// `POST /Tickets/{id}/Attachments`: base64 `data`, refused over the documented limits.
    fn create_ticket_attachment(&mut self, ticket: i64, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let parent = b.int("parentID", false);
        let title = b.text("title", true, 255);
        let full_path = b.text("fullPath", false, 255);
        let kind = b.text("attachmentType", true, 32);
        let publish = b.int("publish", true);
        let data = b
            .value("data", false)
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(p) = parent
            && p != ticket
        {
            b.error(format!(
                "parentID {p} in the body does not match the ticket {ticket} in the URL."
            ));
        }
        if let Some(k) = &kind
            && !ATTACHMENT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(k))
        {
            b.error(format!(
                "attachmentType {k} is not one of {}.",
                ATTACHMENT_TYPES.join(", ")
            ));
        }
        if let Some(p) = publish
            && !(1..=2).contains(&p)
        {
            b.error(format!(
                "publish {p} is not 1 (all users) or 2 (internal users)."
            ));
        }
        b.check()?;
        if !self.tickets.contains_key(&ticket) {
            return Err(Fail::invalid(on_record(format!(
                "Ticket {ticket} does not exist."
            ))));
        }
        let kind = kind.unwrap_or_default().to_ascii_uppercase();
        let bytes = match (&data, kind.as_str()) {
            (Some(d), _) => base64_decode(d)
                .ok_or_else(|| Fail::invalid(on_record("data is not valid base64.")))?,
            (None, "FILE_ATTACHMENT") => return Err(Fail::invalid(required("data"))),
            (None, _) => Vec::new(),
        };
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(Fail::invalid(on_record(format!(
                "The attachment is {} bytes; the API accepts at most {MAX_ATTACHMENT_BYTES} bytes per file.",
                bytes.len()
            ))));
        }
        let now = Instant::now();
        while self
            .attachment_window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(300))
        {
            self.attachment_window.pop_front();
        }
        let recent: usize = self.attachment_window.iter().map(|(_, n)| n).sum();
        if recent + bytes.len() > ATTACHMENT_BYTES_PER_5_MIN {
            return Err(Fail::new(
                429,
                format!(
                    "Attachment threshold exceeded: more than {ATTACHMENT_BYTES_PER_5_MIN} bytes of attachments within five minutes."
                ),
            ));
        }
        self.attachment_window.push_back((now, bytes.len()));
        let id = self.take_id();
        self.attachments.insert(
            id,
            TicketAttachment {
                id,
                parent_id: ticket,
                title: title.unwrap_or_default(),
                full_path,
                attachment_type: kind,
                publish: publish.unwrap_or(1),
                file_size: bytes.len() as i64,
                data: data.unwrap_or_default(),
            },
        );
        Ok(json!({ "itemId": id }))
    }

    fn update_ticket(&mut self, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let id = b.int("id", true);
        b.check()?;
        let id = id.unwrap_or_default();
        let Some(mut t) = self.tickets.get(&id).cloned() else {
            return Err(Fail::new(404, format!("Ticket {id} does not exist.")));
        };
        if b.has("companyID") {
            t.company_id = b.int("companyID", true).unwrap_or(t.company_id);
        }
        if b.has("title") {
            t.title = b.text("title", true, 255).unwrap_or(t.title);
        }
        if b.has("status") {
            t.status = b.int("status", true).unwrap_or(t.status);
        }
        if b.has("priority") {
            t.priority = b.int("priority", true).unwrap_or(t.priority);
        }
        if b.has("queueID") {
            t.queue_id = b.int("queueID", false);
        }
        if b.has("description") {
            t.description = b.text("description", false, 8000);
        }
        if b.has("dueDateTime") {
            t.due_date_time = b.time("dueDateTime", true).or(t.due_date_time);
        }
        if b.has("assignedResourceID") {
            t.assigned_resource_id = b.int("assignedResourceID", false);
        }
        if b.has("assignedResourceRoleID") {
            t.assigned_resource_role_id = b.int("assignedResourceRoleID", false);
        }
        b.check()?;
        self.check_ticket(&t, &[], &mut b.errors);
        b.check()?;
        self.tickets.insert(id, t);
        Ok(json!({ "itemId": id }))
    }
}

fn body(req: &SimRequest) -> Result<Value, Fail> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(Fail::invalid(
            "The request body is empty; send the entity as JSON.",
        ));
    }
    req.json().map_err(Fail::invalid)
}

fn unique(
    what: &str,
    ids: impl IntoIterator<Item = i64>,
    seen: &mut HashSet<i64>,
) -> Result<(), String> {
    seen.clear();
    for id in ids {
        if !seen.insert(id) {
            return Err(format!("{what}: duplicate id {id}"));
        }
    }
    Ok(())
}

impl Store {
    fn load(data: Data) -> Result<Store, String> {
        let mut seen = HashSet::new();
        unique("companies", data.companies.iter().map(|c| c.id), &mut seen)?;
        unique("contracts", data.contracts.iter().map(|c| c.id), &mut seen)?;
        unique("services", data.services.iter().map(|s| s.id), &mut seen)?;
        unique(
            "contractServices",
            data.contract_services.iter().map(|c| c.id),
            &mut seen,
        )?;
        unique(
            "contractServiceUnits",
            data.contract_service_units.iter().filter_map(|u| u.id),
            &mut seen,
        )?;
        unique(
            "contractServiceAdjustments",
            data.contract_service_adjustments
                .iter()
                .filter_map(|a| a.id),
            &mut seen,
        )?;
        unique("tickets", data.tickets.iter().map(|t| t.id), &mut seen)?;
        unique(
            "ticketAttachments",
            data.ticket_attachments.iter().map(|a| a.id),
            &mut seen,
        )?;
        unique("queues", data.queues.iter().map(|q| q.id), &mut seen)?;
        unique(
            "ticketStatuses",
            data.ticket_statuses.iter().map(|q| q.id),
            &mut seen,
        )?;
        unique(
            "ticketPriorities",
            data.ticket_priorities.iter().map(|q| q.id),
            &mut seen,
        )?;

        let max_id = data
            .companies
            .iter()
            .map(|c| c.id)
            .chain(data.contracts.iter().map(|c| c.id))
            .chain(data.services.iter().map(|s| s.id))
            .chain(data.contract_services.iter().map(|c| c.id))
            .chain(data.contract_service_units.iter().filter_map(|u| u.id))
            .chain(
                data.contract_service_adjustments
                    .iter()
                    .filter_map(|a| a.id),
            )
            .chain(data.tickets.iter().map(|t| t.id))
            .chain(data.ticket_attachments.iter().map(|a| a.id))
            .max()
            .unwrap_or(0);
        let mut store = Store {
            companies: data.companies.into_iter().map(|c| (c.id, c)).collect(),
            contracts: BTreeMap::new(),
            services: data.services.into_iter().map(|s| (s.id, s)).collect(),
            contract_services: BTreeMap::new(),
            pairs: HashMap::new(),
            units: BTreeMap::new(),
            units_by_contract: HashMap::new(),
            adjustments: BTreeMap::new(),
            tickets: BTreeMap::new(),
            attachments: BTreeMap::new(),
            attachment_window: VecDeque::new(),
            queues: data.queues,
            statuses: data.ticket_statuses,
            priorities: data.ticket_priorities,
            next_id: max_id.max(0) + 1,
        };
        for c in data.contracts {
            if !store.companies.contains_key(&c.company_id) {
                return Err(format!(
                    "contracts: contract {} refers to company {}, which is not in companies",
                    c.id, c.company_id
                ));
            }
            if c.start_date > c.end_date {
                return Err(format!(
                    "contracts: contract {} ends ({}) before it starts ({})",
                    c.id, c.end_date, c.start_date
                ));
            }
            store.contracts.insert(c.id, c);
        }
        for mut cs in data.contract_services {
            if !store.contracts.contains_key(&cs.contract_id) {
                return Err(format!(
                    "contractServices: contract service {} refers to contract {}, which is not in contracts",
                    cs.id, cs.contract_id
                ));
            }
            let Some(service) = store.services.get(&cs.service_id) else {
                return Err(format!(
                    "contractServices: contract service {} refers to service {}, which is not in services",
                    cs.id, cs.service_id
                ));
            };
            if let Some(other) = store.contract_service(cs.contract_id, cs.service_id) {
                return Err(format!(
                    "contractServices: service {} is on contract {} twice (contract services {} and {})",
                    cs.service_id, cs.contract_id, other.id, cs.id
                ));
            }
            cs.unit_price = cs.unit_price.or(Some(service.unit_price));
            store.insert_contract_service(cs);
        }
        for mut u in data.contract_service_units {
            let Some(cs) = store.contract_service(u.contract_id, u.service_id) else {
                return Err(format!(
                    "contractServiceUnits: service {} is not on contract {} (add it to contractServices)",
                    u.service_id, u.contract_id
                ));
            };
            if let Some(given) = u.contract_service_id
                && given != cs.id
            {
                return Err(format!(
                    "contractServiceUnits: contractServiceID {given} is not the contract service {} of service {} on contract {}",
                    cs.id, u.service_id, u.contract_id
                ));
            }
            if u.start_date > u.end_date {
                return Err(format!(
                    "contractServiceUnits: the period {} to {} of contract {} service {} ends before it starts",
                    u.start_date, u.end_date, u.contract_id, u.service_id
                ));
            }
            if u.units < 0 {
                return Err(format!(
                    "contractServiceUnits: negative units ({}) for contract {} service {}",
                    u.units, u.contract_id, u.service_id
                ));
            }
            u.contract_service_id = Some(cs.id);
            u.price = u.price.or(cs.unit_price);
            let id = match u.id {
                Some(id) => id,
                None => store.take_id(),
            };
            u.id = Some(id);
            store.insert_unit(u);
        }
        let mut periods: HashMap<i64, Vec<&ContractServiceUnit>> = HashMap::new();
        for u in store.units.values() {
            periods
                .entry(u.contract_service_id.unwrap_or_default())
                .or_default()
                .push(u);
        }
        for list in periods.values_mut() {
            list.sort_by_key(|u| u.start_date);
            if let Some(w) = list.windows(2).find(|w| w[1].start_date <= w[0].end_date) {
                return Err(format!(
                    "contractServiceUnits: the periods {} to {} and {} to {} of contract {} service {} overlap",
                    w[0].start_date,
                    w[0].end_date,
                    w[1].start_date,
                    w[1].end_date,
                    w[1].contract_id,
                    w[1].service_id
                ));
            }
        }
        drop(periods);
        for mut a in data.contract_service_adjustments {
            let Some(cs) = store.contract_service(a.contract_id, a.service_id) else {
                return Err(format!(
                    "contractServiceAdjustments: service {} is not on contract {} (add it to contractServices)",
                    a.service_id, a.contract_id
                ));
            };
            a.contract_service_id = Some(cs.id);
            let id = match a.id {
                Some(id) => id,
                None => store.take_id(),
            };
            a.id = Some(id);
            store.adjustments.insert(id, a);
        }
        let now = Timestamp::now();
        for mut t in data.tickets {
            // Tickets loaded from data may lack a due date; everything else must hold.
            let mut errors = Vec::new();
            store.check_ticket(&t, &["dueDateTime"], &mut errors);
            if let Some(e) = errors.first() {
                return Err(format!("tickets: ticket {}: {e}", t.id));
            }
            t.create_date = t.create_date.or(Some(now));
            store.tickets.insert(t.id, t);
        }
        for a in data.ticket_attachments {
            if !store.tickets.contains_key(&a.parent_id) {
                return Err(format!(
                    "ticketAttachments: attachment {} refers to ticket {}, which is not in tickets",
                    a.id, a.parent_id
                ));
            }
            store.attachments.insert(a.id, a);
        }
        Ok(store)
    }
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

const HOUR: Duration = Duration::from_secs(3600);

struct Config {
    username: String,
    secret: String,
    integration_code: String,
    hourly_threshold: u32,
    max_concurrent: u32,
    latency: Duration,
}

/// The simulated Autotask API.
pub struct Autotask {
    config: Config,
    store: Mutex<Store>,
    /// When the requests of the last hour were admitted (oldest first).
    window: Mutex<VecDeque<Instant>>,
    /// Requests in flight per endpoint.
    in_flight: Mutex<HashMap<Kind, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds one in-flight slot of an endpoint until dropped.
struct Slot<'a> {
    map: &'a Mutex<HashMap<Kind, u32>>,
    kind: Kind,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(self.map).get_mut(&self.kind) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Autotask {
    /// Builds the simulator from its data, checking ids are unique and references exist.
    pub fn new(data: Data) -> Result<Self, String> {
        if data.username.trim().is_empty() {
            return Err("username is empty".into());
        }
        if data.hourly_threshold == 0 {
            return Err("hourlyThreshold must be at least 1".into());
        }
        if data.max_concurrent_per_endpoint == 0 {
            return Err("maxConcurrentPerEndpoint must be at least 1".into());
        }
        let config = Config {
            username: data.username.clone(),
            secret: data.secret.clone(),
            integration_code: data.integration_code.clone(),
            hourly_threshold: data.hourly_threshold,
            max_concurrent: data.max_concurrent_per_endpoint,
            latency: Duration::from_millis(data.latency_millis),
        };
        Ok(Autotask {
            config,
            store: Mutex::new(Store::load(data)?),
            window: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    fn zone_information(&self, req: &SimRequest, zone: u32, base_url: &str) -> Result<Value, Fail> {
        match req.param("user") {
            Some(user) if user.trim().eq_ignore_ascii_case(&self.config.username) => Ok(json!({
                "zoneName": format!("America East {zone}"),
                "url": format!("{base_url}/zone{zone}/atservicesrest/"),
                "webUrl": format!("{base_url}/zone{zone}/"),
                "ci": zone,
            })),
            _ => Err(Fail::new(500, "Zone information could not be determined")),
        }
    }

    fn authenticate(&self, req: &SimRequest, faults: &Faults) -> Result<(), Fail> {
        let user = req.header("username").unwrap_or("").trim();
        if user.is_empty() {
            return Err(Fail::new(
                500,
                "The UserName header is missing; send ApiIntegrationCode, UserName and Secret.",
            ));
        }
        if !user.eq_ignore_ascii_case(&self.config.username) {
            return Err(Fail::new(
                500,
                format!("Unable to find an API user named {user}."),
            ));
        }
        if req.header("apiintegrationcode").map(str::trim)
            != Some(self.config.integration_code.as_str())
        {
            return Err(Fail::new(
                500,
                "The ApiIntegrationCode header is missing or is not a valid integration code.",
            ));
        }
        if faults.keys_expired || req.header("secret") != Some(self.config.secret.as_str()) {
            return Err(Fail::new(
                401,
                "Authentication failed: the user name or secret is not valid.",
            ));
        }
        Ok(())
    }

    /// Counts a request against the rolling hourly threshold, or refuses it.
    fn admit(&self) -> Result<(), Fail> {
        let mut window = lock(&self.window);
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        if window.len() >= self.config.hourly_threshold as usize {
            let oldest = window.front().copied().unwrap_or(now);
            let wait = HOUR.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Fail {
                status: 429,
                errors: vec![format!(
                    "The external request threshold of {} requests per 60 minutes has been exceeded; retry in {} seconds.",
                    self.config.hourly_threshold,
                    secs.max(1)
                )],
                retry_after: Some(secs.max(1)),
            });
        }
        window.push_back(now);
        Ok(())
    }

    fn threshold_information(&self) -> Value {
        let mut window = lock(&self.window);
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        json!({
            "externalRequestThreshold": self.config.hourly_threshold,
            "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": window.len(),
        })
    }

    /// Takes an in-flight slot of `kind`'s endpoint, or refuses the request.
    fn enter(&self, kind: Kind) -> Result<Slot<'_>, Fail> {
        let mut map = lock(&self.in_flight);
        let n = map.entry(kind).or_insert(0);
        if *n >= self.config.max_concurrent {
            return Err(Fail {
                status: 429,
                errors: vec![format!(
                    "Thread Threshold Exceeded: more than {} concurrent requests to the {} endpoint.",
                    self.config.max_concurrent,
                    kind.path()
                )],
                retry_after: Some(1),
            });
        }
        *n += 1;
        Ok(Slot {
            map: &self.in_flight,
            kind,
        })
    }

    fn serve(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> Result<Value, Fail> {
        let method = req.method.to_ascii_uppercase();
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let zone_of = |s: &str| {
            s.get(..4)
                .filter(|p| p.eq_ignore_ascii_case("zone"))
                .and_then(|_| s[4..].parse::<u32>().ok())
        };
        let (zone, rest) = match segments.as_slice() {
            [root, version, rest @ ..] if ci(root, "atservicesrest") && ci(version, "v1.0") => {
                (None, rest)
            }
            [z, root, version, rest @ ..]
                if ci(root, "atservicesrest") && ci(version, "v1.0") && zone_of(z).is_some() =>
            {
                (zone_of(z), rest)
            }
            _ => {
                return Err(Fail::new(
                    404,
                    format!(
                        "No HTTP resource was found that matches {}. The API lives under {base_url}/zoneN/atservicesrest/v1.0/ (see zoneInformation).",
                        req.path
                    ),
                ));
            }
        };
        let current = faults.zone_moves.saturating_add(1);
        if let [one] = rest
            && ci(one, "zoneInformation")
        {
            return match method.as_str() {
                "GET" => self.zone_information(req, current, base_url),
                _ => Err(not_allowed(&method, None)),
            };
        }
        let Some(zone) = zone else {
            return Err(Fail::new(
                404,
                format!(
                    "Only zoneInformation is served here; the API lives under the zone URL ({base_url}/zone{current}/atservicesrest/v1.0/)."
                ),
            ));
        };
        if zone != current {
            return Err(Fail::new(
                401,
                format!(
                    "The user is not authorized in zone {zone}; look the zone up again (zoneInformation)."
                ),
            ));
        }
        self.authenticate(req, faults)?;
        if let [one] = rest
            && ci(one, "ThresholdInformation")
        {
            return match method.as_str() {
                "GET" => Ok(self.threshold_information()),
                _ => Err(not_allowed(&method, None)),
            };
        }
        self.admit()?;
        let route = route(&method, rest)?;
        if matches!(method.as_str(), "POST" | "PATCH" | "PUT")
            && !req.body.iter().all(u8::is_ascii_whitespace)
            && !req.header("content-type").is_some_and(|c| {
                c.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
        {
            return Err(Fail::new(
                415,
                format!(
                    "The request entity's media type '{}' is not supported for this resource; send Content-Type: application/json.",
                    req.header("content-type").unwrap_or("")
                ),
            ));
        }
        let _slot = self.enter(route.endpoint())?;
        if !self.config.latency.is_zero() {
            std::thread::sleep(self.config.latency);
        }
        let api_base = format!("{base_url}/zone{zone}/atservicesrest/v1.0");
        lock(&self.store).dispatch(route, req, &api_base)
    }
}

impl Api for Autotask {
    fn handle(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        match self.serve(req, faults, base_url.trim_end_matches('/')) {
            Ok(body) => SimResponse::json(200, &body),
            Err(fail) => fail.response(),
        }
    }

    fn error(&self, status: u16, message: &str) -> SimResponse {
        SimResponse::json(status, &json!({ "errors": [message] }))
    }

    fn state(&self) -> Value {
        let s = lock(&self.store);
        json!({
            "username": self.config.username,
            "secret": self.config.secret,
            "integrationCode": self.config.integration_code,
            "hourlyThreshold": self.config.hourly_threshold,
            "maxConcurrentPerEndpoint": self.config.max_concurrent,
            "latencyMillis": self.config.latency.as_millis() as u64,
            "companies": s.companies.values().collect::<Vec<_>>(),
            "contracts": s.contracts.values().collect::<Vec<_>>(),
            "services": s.services.values().collect::<Vec<_>>(),
            "contractServices": s.contract_services.values().collect::<Vec<_>>(),
            "contractServiceUnits": s.units.values().collect::<Vec<_>>(),
            "contractServiceAdjustments": s.adjustments.values().collect::<Vec<_>>(),
            "queues": s.queues,
            "ticketStatuses": s.statuses,
            "ticketPriorities": s.priorities,
            "tickets": s.tickets.values().collect::<Vec<_>>(),
            "ticketAttachments": s.attachments.values().collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
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
        let f = |op: &str, value: i64| {
            companies(&at, json!([{"op": op, "field": "id", "value": value}]))
        };
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
}
