//! The resources the ConnectWise simulator serves and their fields: the typed schema that
//! `conditions`, `orderBy` and `fields` are checked against, and small helpers on API JSON.

use serde_json::Value;

/// The type of a field, for checking `conditions` before evaluating them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    Num,
    Str,
    Bool,
    Date,
    Obj,
    Arr,
}

impl Ty {
    pub(super) fn describe(self) -> &'static str {
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

pub(super) type Schema = &'static [(&'static str, Ty)];

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
pub(super) enum Res {
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
    pub(super) fn name(self) -> &'static str {
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
    pub(super) fn title(self) -> &'static str {
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

    pub(super) fn schema(self) -> Schema {
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
    pub(super) fn writable(self) -> bool {
        matches!(self, Res::Addition(_) | Res::Ticket)
    }

    /// Whether `POST` on the collection creates a record (notes and documents are create-only
    /// here).
    pub(super) fn creatable(self) -> bool {
        self.writable() || matches!(self, Res::TicketNote(_) | Res::Document)
    }
}

/// A field of `schema` named case-insensitively, as its canonical path.
pub(super) fn field(schema: Schema, name: &str) -> Option<(&'static str, Ty)> {
    schema
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(name))
        .copied()
}

pub(super) fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(v, |v, k| v.get(k))
}

pub(super) fn id_of(v: &Value) -> i64 {
    v.get("id").and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn canonical<'a>(value: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .copied()
}
