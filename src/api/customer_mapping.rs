//! `CustomerMapping`: one of our customers mapped to a PSA company and per-product contracts.
// Repeated `printcolumn(type_ = ...)` arguments of the kube derive are not duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;
use super::delivery_target::{Billing, TicketSync, UsageSync};
use super::report_schedule::Notify;

/// A customer mapped to a company in ConnectWise Manage or Autotask, with the contract (and
/// item) each product's usage is billed on.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "CustomerMapping",
    plural = "customermappings",
    shortname = "cm",
    namespaced,
    status = "CustomerMappingStatus",
    derive = "PartialEq",
    doc = "A customer mapped to a PSA company and per-product contracts, with usage, ticket and billing sync.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Customer", type_ = "string", json_path = ".spec.customer"),
    printcolumn(name = "PSA", type_ = "string", json_path = ".spec.psa.target"),
    printcolumn(name = "Company", type_ = "string", json_path = ".status.companyId"),
    printcolumn(
        name = "LastSync",
        type_ = "string",
        json_path = ".status.lastSync.outcome"
    ),
    printcolumn(
        name = "LastBilling",
        type_ = "string",
        json_path = ".status.lastBilling.outcome",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerMappingSpec {
    /// The key our usage data uses for this customer.
    pub customer: String,
    /// The PSA connection to sync through.
    pub psa: PsaRef,
    /// The customer's company in the PSA, verified to exist, be unique and be active.
    pub company: CompanyRef,
    /// Per product, the agreement (ConnectWise) or contract (Autotask) and item it is billed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<ContractMapping>,
    /// Usage sync settings (with `settings: custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_sync: Option<UsageSync>,
    /// Ticket sync settings (with `settings: custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_sync: Option<TicketSync>,
    /// Billing push settings (with `settings: custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
    /// `general`: take usage, ticket and billing settings from the PSA target's `defaults`;
    /// `custom` (default): use `usageSync`, `ticketSync` and `billing` given here.
    #[serde(default)]
    pub settings: SettingsSource,
    /// Autotask: how fractional usage becomes whole units (`up`, `down`, `nearest`). Default:
    /// the Autotask target's `quantityRounding`, else `up`. ConnectWise keeps decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_rounding: Option<super::delivery_target::QuantityRounding>,
    /// Autotask: when unit adjustments take effect (`periodStart`, `nextPeriod`, `now`).
    /// Default: the Autotask target's `effectiveDate`, else `periodStart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<super::delivery_target::EffectiveDate>,
    /// What deleting this mapping (from the cluster, or from the files before `ferry apply`)
    /// does in the PSA: `Orphan` (default) leaves it untouched, `Delete` first releases what
    /// Ferry manages (ConnectWise additions cancelled, Autotask units set to 0).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Who is told when a usage sync or billing push starts failing, recovers or (if asked)
    /// succeeds: names of `webhook` or `email` DeliveryTargets in the same namespace. One
    /// alert per change of state; usage sync and billing push are followed apart.
    #[serde(default, skip_serializing_if = "SyncNotify::is_empty")]
    pub notify: SyncNotify,
}

/// Alerts about a mapping's syncs: for each kind of event, the `webhook` or `email`
/// DeliveryTargets told. A usage sync and a billing push each go from healthy to failing
/// (`onFailure`) and back (`onRecovery`) on their own. A slot the sync did not run while Ferry
/// was stopped is run when Ferry is back, so there is no `onMissed` here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncNotify {
    /// Told when a sync fails after a successful one (or as the first sync).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Told when a sync succeeds after failed ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_recovery: Vec<String>,
    /// Told after every successful sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
}

impl SyncNotify {
    /// Whether nobody is told anything.
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty() && self.on_recovery.is_empty() && self.on_success.is_empty()
    }

    /// The same lists as a schedule's [`Notify`], with nobody told of missed slots: alerts
    /// are routed by one type.
    pub fn as_notify(&self) -> Notify {
        Notify {
            on_failure: self.on_failure.clone(),
            on_missed: Vec::new(),
            on_recovery: self.on_recovery.clone(),
            on_success: self.on_success.clone(),
            on_check_failed: Vec::new(),
        }
    }
}

/// A reference to a PSA connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PsaRef {
    /// Name of a DeliveryTarget with `connectwise` or `autotask`, in the same namespace.
    pub target: String,
}

/// How to find the customer's company in the PSA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyRef {
    /// ConnectWise company identifier (unique), e.g. `ACME01`. Required for ConnectWise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Autotask company name. Required for Autotask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One product billed on a contract.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractMapping {
    /// Our product key, as it appears in the usage data.
    pub product: String,
    /// ConnectWise agreement name, or Autotask contract name.
    pub agreement: String,
    /// ConnectWise product identifier (of the addition), or Autotask service name.
    pub item: String,
}

/// Where a CustomerMapping's sync settings come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettingsSource {
    /// The PSA target's `defaults`.
    General,
    /// This mapping's own `usageSync`, `ticketSync` and `billing` (default).
    #[default]
    Custom,
}

/// What deleting a CustomerMapping does in the PSA.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the PSA untouched (default).
    #[default]
    Orphan,
    /// Release what this mapping manages: ConnectWise additions cancelled, Autotask units 0.
    Delete,
}

/// Observed state of a CustomerMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Synced` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The resolved PSA company id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    /// The resolved company's name in the PSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Per product, the resolved agreement/contract and item ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<ResolvedContract>,
    /// The last usage sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncResult>,
    /// The last billing push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_billing: Option<SyncResult>,
    /// Products in this customer's usage rows that no `contracts` entry maps (not pushed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped_products: Vec<String>,
    /// Tickets Ferry keeps open in the customer's PSA company, one per failure kind (`usage`,
    /// `billing`, `delivery/<schedule>`), closed when the next attempt succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_tickets: Vec<OpenTicket>,
}

/// A ticket Ferry opened for a failing sync or delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct OpenTicket {
    /// `usage`, `billing` or `delivery/<schedule>`.
    pub kind: String,
    /// The PSA ticket id.
    pub id: i64,
}

/// A product's contract resolved in the PSA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedContract {
    /// Our product key.
    pub product: String,
    /// ConnectWise agreement id or Autotask contract id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<i64>,
    /// ConnectWise product id or Autotask service id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<i64>,
    /// The agreement (ConnectWise) or contract (Autotask) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// The ConnectWise product identifier or Autotask service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

/// The outcome of a usage sync or billing push.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    /// When it ran (RFC 3339).
    pub time: String,
    /// The schedule slot it was for (RFC 3339); a run-now uses the time it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Quantities pushed, per product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantities: Vec<ProductQuantity>,
}

/// A quantity pushed for a product.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ProductQuantity {
    /// Our product key.
    pub product: String,
    /// Units.
    pub quantity: f64,
}
