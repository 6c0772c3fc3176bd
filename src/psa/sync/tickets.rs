//! Ticket sync: one open ticket per mapping and failure kind, opened (or adopted, when an
//! open ticket with its title already exists) on failure and closed on the next success; for
//! failing syncs and for failing report deliveries of a customer ([`CUSTOMER_LABEL`]).

use std::future::Future;

use super::mapping::MappingView;
use crate::psa::client::PsaClient;
use crate::psa::connectwise::MAX_SUMMARY;
use crate::psa::fit_chars;
use crate::psa::ledger::{PsaLedger, SyncKind};
use crate::{Error, Result};

/// The label that ties a ReportSchedule to a customer: its failed runs open a ticket in the
/// PSA company of that customer's CustomerMappings (with ticket sync on).
pub const CUSTOMER_LABEL: &str = "ferry.dev/customer";

/// The ticket a failure keeps open: its ledger kind (`usage`, `billing`,
/// `delivery/<schedule>`), title and description.
pub(super) struct Wanted {
    /// The ledger's kind of the ticket.
    pub kind: String,
    /// Its title (ConnectWise summary).
    pub title: String,
    /// Its description.
    pub description: String,
}

impl Wanted {
    /// The ticket of a failing sync of `kind`.
    pub fn sync(kind: SyncKind, view: &MappingView, slot: &str, reason: Option<&str>) -> Self {
        let description = format!(
            "Ferry's {} for customer `{}` (customermapping {}/{}) failed for slot {}:\n\n{}\n\n\
             This ticket is closed automatically when the next attempt succeeds.",
            kind.label(),
            view.spec.customer,
            view.key.namespace,
            view.key.name,
            slot,
            reason.unwrap_or("unknown reason")
        );
        Wanted {
            kind: kind.as_str().to_string(),
            title: ticket_title(kind, &view.spec.customer),
            description,
        }
    }

    /// The ticket of a failing report `schedule` of `customer`.
    pub fn delivery(schedule: &str, customer: &str, slot: &str, reason: &str) -> Self {
        Wanted {
            kind: format!("delivery/{schedule}"),
            title: fit_title(format!("Ferry: report {schedule} failing for {customer}")),
            description: format!(
                "Ferry's report `{schedule}` for customer `{customer}` failed for slot {slot}:\n\n\
                 {reason}\n\nThis ticket is closed automatically when the next run succeeds."
            ),
        }
    }
}

/// One open ticket per mapping and kind: on failure opened (or adopted, when an open ticket
/// with its title exists, e.g. after a crash before it was recorded), on success closed.
/// `client` is only awaited when the PSA is needed. `None` when ticket sync is off or
/// nothing was done.
pub(super) async fn keep(
    ledger: &PsaLedger,
    client: impl Future<Output = Result<PsaClient>>,
    view: &MappingView,
    company_id: i64,
    wanted: &Wanted,
    succeeded: bool,
) -> Option<String> {
    let tickets = view.tickets.as_ref().filter(|t| t.enabled)?;
    let (ns, name) = (&view.key.namespace, &view.key.name);
    let (kind, title) = (wanted.kind.as_str(), wanted.title.as_str());
    let open = match ledger.open_ticket(ns, name, kind).await {
        Ok(o) => o,
        Err(e) => return Some(format!("ticket state unreadable: {e}")),
    };
    if succeeded && open.is_none() {
        return None;
    }
    let client = match client.await {
        Ok(c) => c,
        Err(e) => return Some(format!("ticket sync failed: {e}")),
    };
    let outcome: Result<Option<String>> = async {
        match (succeeded, open) {
            (true, Some((id, _))) => {
                client
                    .close_ticket(id, tickets.closed_status.as_deref())
                    .await?;
                ledger.forget_ticket(ns, name, kind).await?;
                Ok(Some(format!("closed ticket #{id}")))
            }
            (true, None) => Ok(None),
            (false, Some((id, _))) => Ok(Some(format!("ticket #{id} already open"))),
            (false, None) => {
                let existing = client.open_tickets(company_id, title).await?;
                let id = match existing.first() {
                    Some(id) => *id,
                    None => {
                        let board = tickets
                            .board
                            .as_deref()
                            .ok_or_else(|| Error::Usage("ticketSync.board is not set".into()))?;
                        client
                            .create_ticket(
                                company_id,
                                board,
                                title,
                                &wanted.description,
                                tickets.open_status.as_deref(),
                            )
                            .await?
                    }
                };
                ledger.record_ticket(ns, name, kind, id, title).await?;
                Ok(Some(format!("opened ticket #{id}")))
            }
        }
    }
    .await;
    match outcome {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(mapping = %view.key, "ticket sync failed: {e}");
            Some(format!("ticket sync failed: {e}"))
        }
    }
}

/// The title of the ticket Ferry keeps open for a failing sync (ConnectWise summaries are
/// limited to 100 characters).
pub fn ticket_title(kind: SyncKind, customer: &str) -> String {
    fit_title(format!("Ferry: {} failing for {customer}", kind.label()))
}

/// `title` cut to the 100 characters a ConnectWise summary holds (an ellipsis marks the cut).
fn fit_title(title: String) -> String {
    fit_chars(&title, MAX_SUMMARY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_titles_fit_connectwise_summaries() {
        let long = "x".repeat(200);
        assert_eq!(ticket_title(SyncKind::Usage, &long).chars().count(), 100);
        assert_eq!(
            ticket_title(SyncKind::Billing, "acme"),
            "Ferry: billing push failing for acme"
        );
    }
}
