//! Tickets: found by exact title, opened in a queue with the status and priority resolved from
//! the picklists (read once) and a due date a day out, completed (status 5). Titles and
//! descriptions are cut to their documented lengths rather than refused.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Autotask, Target, eq};
use super::picklists::{TicketPicklists, resolve};
use crate::psa::fit_chars;
use crate::psa::http::Replay;
use crate::psa::model::Ticket;
use crate::{Error, Result};

/// The largest ticket `title` (characters).
pub const MAX_TITLE: usize = 255;
/// The largest ticket `description` (characters).
pub const MAX_DESCRIPTION: usize = 8000;

/// Ticket status "Complete".
pub const STATUS_COMPLETE: i64 = 5;
/// The status a new ticket gets, by picklist label.
pub const NEW_STATUS_LABEL: &str = "New";
/// The priority a new ticket gets, by picklist label.
pub const PRIORITY_LABEL: &str = "Medium";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtTicket {
    id: i64,
    title: Option<String>,
    status: Option<i64>,
}

impl From<AtTicket> for Ticket {
    fn from(t: AtTicket) -> Ticket {
        Ticket {
            id: t.id,
            title: t.title.unwrap_or_default(),
            closed: t.status == Some(STATUS_COMPLETE),
        }
    }
}

impl Autotask {
    /// Tickets of the company with this exact title that are not Complete (status 5).
    pub async fn open_tickets(&self, company_id: i64, title: &str) -> Result<Vec<Ticket>> {
        let rows: Vec<AtTicket> = self
            .query(
                "Tickets",
                json!([
                    eq("companyID", company_id),
                    eq("title", title),
                    {"op": "noteq", "field": "status", "value": STATUS_COMPLETE},
                ]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| !t.closed && t.title == title)
            .collect())
    }

    /// Opens a ticket in `queue` (picklist label, or id), status "New", priority "Medium",
    /// due in a day. Sent once (see [`crate::psa::http::Replay`]).
    pub async fn create_ticket(
        &self,
        company_id: i64,
        queue: &str,
        title: &str,
        description: &str,
    ) -> Result<Ticket> {
        let picks = self.ticket_picklists().await?;
        let queue_id = resolve(&picks.queues, "queue", queue)?;
        let status = resolve(&picks.statuses, "status", NEW_STATUS_LABEL)?;
        let priority = resolve(&picks.priorities, "priority", PRIORITY_LABEL)?;
        let due = crate::clock::now()?
            .checked_add(jiff::SignedDuration::from_hours(24))
            .map_err(|e| Error::Psa(format!("Autotask: due date: {e}")))?;
        let title = fit_chars(title, MAX_TITLE);
        let description = fit_chars(description, MAX_DESCRIPTION);
        let body = json!({
            "companyID": company_id,
            "title": title,
            "description": description,
            "status": status,
            "priority": priority,
            "queueID": queue_id,
            "dueDateTime": due.to_string(),
        });
        let id = self.create("Tickets", &body).await?;
        Ok(Ticket {
            id,
            title,
            closed: false,
        })
    }

    /// Every ticket of the company with this exact title, open or not (`title eq`, compared
    /// again here: Autotask compares without case).
    pub async fn tickets_titled(&self, company_id: i64, title: &str) -> Result<Vec<Ticket>> {
        let title = fit_chars(title, MAX_TITLE);
        let rows: Vec<AtTicket> = self
            .query(
                "Tickets",
                json!([eq("companyID", company_id), eq("title", title.as_str())]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| t.title == title)
            .collect())
    }

    /// Completes the ticket: `PATCH /Tickets {id, status: 5}`.
    pub async fn close_ticket(&self, id: i64) -> Result<()> {
        let body = json!({"id": id, "status": STATUS_COMPLETE});
        let label = "/Tickets";
        let reply = self
            .exchange(
                Method::PATCH,
                Target::Path("Tickets"),
                Some(&body),
                Replay::Safe,
                label,
            )
            .await?;
        self.expect::<Value>(&Method::PATCH, label, &reply)?;
        Ok(())
    }

    /// The ticket picklists, read once.
    async fn ticket_picklists(&self) -> Result<&TicketPicklists> {
        self.inner
            .ticket_fields
            .get_or_try_init(|| async {
                let v: Value = self.get("Tickets/entityInformation/fields").await?;
                Ok(TicketPicklists::parse(&v))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, fake, items, zone};
    use crate::psa::http::fake::{Answer, Seen};
    use serde_json::json;

    #[tokio::test]
    async fn tickets_are_created_with_resolved_picklists_and_a_due_date() {
        let fake = fake(|s: Seen, url: String| async move {
            let p = s.path().to_string();
            if p.ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            if p.ends_with("/Tickets/entityInformation/fields") {
                return Answer::json(200, json!({"fields": [
                    {"name": "queueID", "isPickList": true, "picklistValues": [{"value": "29683354", "label": "Client Portal", "isActive": true}]},
                    {"name": "status", "isPickList": true, "picklistValues": [{"value": "1", "label": "New", "isActive": true}, {"value": "5", "label": "Complete", "isActive": true}]},
                    {"name": "priority", "isPickList": true, "picklistValues": [{"value": "2", "label": "Medium", "isActive": true}]},
                ]}));
            }
            if p.ends_with("/Tickets/query") {
                return items(json!([
                    {"id": 1, "title": "Usage sync failed", "status": 1},
                    {"id": 2, "title": "Usage sync failed", "status": 5},
                ]));
            }
            Answer::json(200, json!({"itemId": 42}))
        })
        .await;
        let at = client(&fake.url);
        let t = at
            .create_ticket(250, "Client Portal", "Usage sync failed", "why")
            .await
            .unwrap();
        assert_eq!((t.id, t.closed), (42, false));
        at.create_ticket(250, "Client Portal", "Other", "why")
            .await
            .unwrap();
        let open = at.open_tickets(250, "Usage sync failed").await.unwrap();
        assert_eq!(open.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        at.close_ticket(1).await.unwrap();
        let seen = fake.seen();
        let fields = seen
            .iter()
            .filter(|s| s.path().ends_with("/fields"))
            .count();
        assert_eq!(fields, 1, "picklists are read once");
        let create = seen
            .iter()
            .find(|s| s.method == "POST" && s.path().ends_with("/Tickets"))
            .unwrap();
        let body = create.json();
        assert_eq!(body["companyID"], 250);
        assert_eq!(body["queueID"], 29683354);
        assert_eq!(body["status"], 1);
        assert_eq!(body["priority"], 2);
        assert_eq!(body["title"], "Usage sync failed");
        let due: jiff::Timestamp = body["dueDateTime"].as_str().unwrap().parse().unwrap();
        assert!(due > jiff::Timestamp::now());
        assert!(body["dueDateTime"].as_str().unwrap().ends_with('Z'));
        let query = seen
            .iter()
            .find(|s| s.path().ends_with("/Tickets/query"))
            .unwrap();
        assert_eq!(
            query.json()["filter"],
            json!([
                {"op": "eq", "field": "companyID", "value": 250},
                {"op": "eq", "field": "title", "value": "Usage sync failed"},
                {"op": "noteq", "field": "status", "value": 5},
            ])
        );
        let close = seen.last().unwrap();
        assert_eq!(
            (close.method.as_str(), close.path()),
            ("PATCH", "/zone1/atservicesrest/v1.0/Tickets")
        );
        assert_eq!(close.json(), json!({"id": 1, "status": 5}));
    }
}
