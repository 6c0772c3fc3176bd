//! The data file of the Autotask simulator (YAML or JSON, camelCase keys): the entities it
//! serves, the picklists and the documented limits. It is also what `GET /_sim/state` answers,
//! so the types serialize back in the same shape.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

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

pub(super) fn picklist(values: &[(i64, &str)]) -> Vec<PicklistValue> {
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
pub(super) const RECURRING_SERVICE: i64 = 7;

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
pub(super) const ATTACHMENT_TYPES: [&str; 3] = ["FILE_ATTACHMENT", "FOLDER_LINK", "URL"];
/// "The API size limit for individual attachment files is 6 to 7 MB" (AttachmentInfo, REST
/// API): larger files are surely refused.
pub const MAX_ATTACHMENT_BYTES: usize = 7_000_000;
/// "... with a maximum of 10,000,000 bytes within a five-minute period" (same page).
pub const ATTACHMENT_BYTES_PER_5_MIN: usize = 10_000_000;
