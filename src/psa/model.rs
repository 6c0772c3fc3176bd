//! What Ferry needs to know of PSA records, the same shapes for ConnectWise and Autotask, so the
//! sync engine ([`super::sync`]) is written once.

use serde::{Deserialize, Serialize};

/// A company (ConnectWise company, Autotask company).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Company {
    /// PSA id.
    pub id: i64,
    /// ConnectWise `identifier` (Autotask: `companyNumber`, may be absent).
    pub identifier: Option<String>,
    /// ConnectWise `name`, Autotask `companyName`.
    pub name: String,
    /// ConnectWise: status name is not `Inactive` and `deletedFlag` is false; Autotask: `isActive`.
    pub active: bool,
    /// ConnectWise `status.name`, Autotask `Active`/`Inactive`, for messages.
    pub status: String,
}

/// An agreement (ConnectWise) or contract (Autotask) of a company.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// PSA id.
    pub id: i64,
    /// ConnectWise `name`, Autotask `contractName`.
    pub name: String,
    /// ConnectWise `agreementStatus == "Active"` and not `cancelledFlag`; Autotask `status == 1`.
    pub active: bool,
    /// ConnectWise `agreementStatus`; Autotask `Active` / `Inactive (status N)`.
    pub status: String,
    /// ConnectWise `type.name`; Autotask `contractType` as a number in text (`"7"`).
    pub kind: String,
    /// Whether per-product quantities can be attached: always for ConnectWise; Autotask only
    /// `contractType == 7` (Recurring Service).
    pub accepts_services: bool,
}

/// A ConnectWise agreement addition (a product quantity on an agreement).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Addition {
    /// Addition id.
    pub id: i64,
    /// `product.id`.
    pub product_id: i64,
    /// `product.identifier`.
    pub product_identifier: String,
    /// `quantity`.
    pub quantity: f64,
    /// `effectiveDate`, as given.
    pub effective_date: Option<String>,
    /// `cancelledDate`: `None` while the addition is active.
    pub cancelled_date: Option<String>,
}

/// An Autotask service (catalog entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Service id.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `unitPrice`.
    pub unit_price: Option<f64>,
}

/// An Autotask contract service (a service attached to a contract).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContractService {
    /// ContractService id.
    pub id: i64,
    /// `contractID`.
    pub contract_id: i64,
    /// `serviceID`.
    pub service_id: i64,
}

/// A ticket, as far as Ferry's ticket sync needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Ticket id.
    pub id: i64,
    /// ConnectWise `summary`, Autotask `title`.
    pub title: String,
    /// Whether the ticket is closed (ConnectWise `closedFlag` or a status starting with `>`;
    /// Autotask status 5 = Complete).
    pub closed: bool,
}
