//! The Autotask entities and their fields (types, picklists, required and read-only), and each
//! record read as cells in the order of its fields, which filters, `IncludeFields` and the
//! rendered JSON all use.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::Offset;
use serde::Serialize;
use serde_json::{Map, Value};

use super::data::{
    Company, Contract, ContractService, ContractServiceAdjustment, ContractServiceUnit, Service,
    Ticket, TicketAttachment,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Companies,
    Contracts,
    Services,
    ContractServices,
    ContractServiceUnits,
    ContractServiceAdjustments,
    Tickets,
    TicketAttachments,
}

pub(super) const KINDS: [Kind; 8] = [
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
    pub(super) fn path(self) -> &'static str {
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
    pub(super) fn singular(self) -> &'static str {
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

    pub(super) fn from_path(segment: &str) -> Option<Kind> {
        KINDS
            .into_iter()
            .find(|k| k.path().eq_ignore_ascii_case(segment))
    }

    pub(super) fn fields(self) -> &'static [Field] {
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
    pub(super) fn field(self, name: &str) -> Option<usize> {
        self.fields()
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub(super) fn can_query(self) -> bool {
        self != Kind::ContractServiceAdjustments
    }

    pub(super) fn can_get(self) -> bool {
        !matches!(
            self,
            Kind::ContractServiceUnits | Kind::ContractServiceAdjustments
        )
    }

    pub(super) fn can_create(self) -> bool {
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
    pub(super) fn unqueryable(self) -> &'static [&'static str] {
        match self {
            Kind::TicketAttachments => &["data", "fileSize"],
            _ => &[],
        }
    }

    pub(super) fn can_update(self) -> bool {
        self == Kind::Tickets
    }

    pub(super) fn has_udfs(self) -> bool {
        matches!(self, Kind::Companies | Kind::Contracts | Kind::Tickets)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
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
pub(super) enum Pick {
    Queues,
    TicketStatuses,
    TicketPriorities,
    ContractTypes,
    ContractStatuses,
    CompanyTypes,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) required: bool,
    pub(super) read_only: bool,
    pub(super) reference: Option<&'static str>,
    pub(super) picklist: Option<Pick>,
    pub(super) length: u32,
}

pub(super) const fn field(name: &'static str, ty: Ty) -> Field {
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
    pub(super) const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub(super) const fn read_only(mut self) -> Self {
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
    pub(super) const fn length(mut self, length: u32) -> Self {
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
pub(super) enum Cell<'a> {
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
pub(super) fn midnight(d: Date) -> Timestamp {
    Offset::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A record of one entity: its fields as cells, in the order of [`Kind::fields`].
pub(super) trait Record: Serialize {
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
pub(super) fn render<R: Record>(kind: Kind, record: &R, include: Option<&[usize]>) -> Value {
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
