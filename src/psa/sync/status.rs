//! Per-mapping sync status: the [`SyncReport`] of one sync, and what it leaves in the
//! CustomerMapping's `status` (company, contracts, last sync and billing, unmapped products,
//! open tickets, the `Synced` condition).

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::push::Pushed;
use super::resolve::Resolution;
use crate::Result;
use crate::api::ResourceKey;
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::psa::ledger::{PsaLedger, SyncKind};
use crate::state::StateStore;

/// How one sync of a mapping ended.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The mapping.
    #[serde(skip)]
    pub key: ResourceKey,
    /// Usage sync or billing push.
    #[serde(skip)]
    pub kind: SyncKind,
    /// The slot (RFC 3339).
    pub slot: String,
    /// Whether everything was pushed.
    pub succeeded: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The quantities set.
    pub pushed: Vec<Pushed>,
    /// Products in the usage rows of this customer that no contract maps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmapped_products: Vec<String>,
    /// What ticket sync did, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Rewrites `status.openTickets` of a mapping from the ledger.
pub(super) async fn refresh_open_tickets(
    store: &StateStore,
    ledger: &PsaLedger,
    key: &ResourceKey,
) -> Result<()> {
    let Some(stored) = store.get(key).await? else {
        return Ok(());
    };
    let mut status = stored.status_object();
    status["openTickets"] = open_tickets_json(ledger, key).await?;
    store.set_status(key, &status).await
}

/// `status.openTickets`: the tickets the ledger keeps open for the mapping.
async fn open_tickets_json(ledger: &PsaLedger, key: &ResourceKey) -> Result<Value> {
    let tickets = ledger.open_tickets(&key.namespace, &key.name).await?;
    Ok(Value::Array(
        tickets
            .iter()
            .map(|(kind, id)| json!({"kind": kind, "id": id}))
            .collect(),
    ))
}

/// Writes the outcome of a sync into the mapping's status: the company and contracts it
/// resolved to, `lastSync`/`lastBilling`, unmapped products, open tickets and the `Synced`
/// condition.
pub(super) async fn write(
    store: &StateStore,
    ledger: &PsaLedger,
    key: &ResourceKey,
    resolution: Option<&Resolution>,
    report: &SyncReport,
) -> Result<()> {
    let kind = report.kind;
    let Some(stored) = store.get(key).await? else {
        return Ok(());
    };
    let mut status = stored.status_object();
    let now = Timestamp::now().to_string();
    if let Some(r) = resolution {
        status["companyId"] = json!(r.company.id);
        status["companyName"] = json!(r.company.name);
        let contracts: Vec<Value> = r
            .products
            .iter()
            .map(|p| {
                let pushed = report.pushed.iter().find(|x| x.product == p.product);
                let mut c = json!({
                    "product": p.product,
                    "agreement": p.agreement.name,
                    "agreementId": p.agreement.id,
                    "item": p.item,
                });
                if let Some(id) = p
                    .service
                    .as_ref()
                    .map(|s| s.id)
                    .or_else(|| pushed.and_then(|x| x.item_id))
                {
                    c["itemId"] = json!(id);
                }
                c
            })
            .collect();
        status["contracts"] = Value::Array(contracts);
    }
    let result = json!({
        "time": now,
        "slot": report.slot,
        "outcome": if report.succeeded { "succeeded" } else { "failed" },
        "reason": report.reason,
        "quantities": report.pushed.iter().map(|p| json!({"product": p.product, "quantity": p.quantity})).collect::<Vec<_>>(),
    });
    let mut result = result;
    if let Some(o) = result.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let field = match kind {
        SyncKind::Usage => "lastSync",
        SyncKind::Billing => "lastBilling",
    };
    status[field] = result;
    if !report.unmapped_products.is_empty() {
        status["unmappedProducts"] = json!(report.unmapped_products);
    } else if let Some(o) = status.as_object_mut() {
        o.remove("unmappedProducts");
    }
    status["openTickets"] = open_tickets_json(ledger, key).await?;
    let (value, reason, message) = if report.succeeded {
        (
            Truth::True,
            "SyncSucceeded",
            format!("{} succeeded", kind.label()),
        )
    } else {
        (
            Truth::False,
            "SyncFailed",
            format!(
                "{} failed: {}",
                kind.label(),
                report.reason.as_deref().unwrap_or("")
            ),
        )
    };
    set_condition(
        &mut status,
        ConditionType::Synced,
        value,
        reason,
        &message,
        &now,
    );
    store.set_status(key, &status).await
}
