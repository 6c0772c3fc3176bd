//! Service tickets: found by summary, opened on a board (by name) in the board's own default
//! status, closed with one of its closed statuses, and their notes.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::ConnectWise;
use super::wire::{BoardStatus, Conditions, Ref};
use crate::psa::fit_chars;
use crate::psa::http::Replay;
use crate::psa::model::Ticket;
use crate::{Error, Result};

/// The longest ticket summary.
pub const MAX_SUMMARY: usize = 100;

/// The status a ticket on a board is opened in: `wanted` by name, else the board's default
/// status, else its first open one.
pub fn open_status<'a>(
    board: &str,
    statuses: &'a [BoardStatus],
    wanted: Option<&str>,
) -> Result<&'a BoardStatus> {
    let usable = || statuses.iter().filter(|s| !s.inactive);
    let found = match wanted {
        Some(name) => usable().find(|s| s.name.trim().eq_ignore_ascii_case(name.trim())),
        None => usable()
            .find(|s| s.default_flag && !s.closed_status)
            .or_else(|| {
                usable()
                    .filter(|s| !s.closed_status)
                    .min_by_key(|s| s.sort_order)
            }),
    };
    found.ok_or_else(|| {
        Error::Psa(format!(
            "ConnectWise: board `{board}` has no {} (its statuses: {})",
            match wanted {
                Some(n) => format!("status named \"{n}\""),
                None => "open status".into(),
            },
            names(usable())
        ))
    })
}

/// The status a ticket on a board is closed with: one with `closedStatus` set, `wanted` by
/// name, else one named like `Closed` (`Closed`, `>Closed`, ...), else the first by sort order.
pub fn closed_status<'a>(
    board: &str,
    statuses: &'a [BoardStatus],
    wanted: Option<&str>,
) -> Result<&'a BoardStatus> {
    let closed = || statuses.iter().filter(|s| s.closed_status && !s.inactive);
    let found = match wanted {
        Some(name) => closed().find(|s| s.name.trim().eq_ignore_ascii_case(name.trim())),
        None => closed()
            .find(|s| {
                s.name
                    .trim_start_matches(|c: char| !c.is_alphanumeric())
                    .eq_ignore_ascii_case("closed")
            })
            .or_else(|| closed().min_by_key(|s| s.sort_order)),
    };
    found.ok_or_else(|| {
        Error::Psa(format!(
            "ConnectWise: board `{board}` has no closed status{} (its closed statuses: {})",
            wanted.map_or(String::new(), |n| format!(" named \"{n}\"")),
            names(closed())
        ))
    })
}

fn names<'a>(statuses: impl Iterator<Item = &'a BoardStatus>) -> String {
    let list: Vec<&str> = statuses.map(|s| s.name.as_str()).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// A note of a ticket, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketNote {
    /// Id.
    pub id: i64,
    /// Text.
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwTicket {
    id: i64,
    summary: Option<String>,
    closed_flag: Option<bool>,
}

impl From<CwTicket> for Ticket {
    /// Closed is `closedFlag`, which follows the status's `closedStatus`.
    fn from(t: CwTicket) -> Ticket {
        Ticket {
            id: t.id,
            title: t.summary.unwrap_or_default(),
            closed: t.closed_flag.unwrap_or(false),
        }
    }
}

impl ConnectWise {
    /// The id of the board named `name` (`service/boards?conditions=name="..."`), looked up
    /// once.
    pub async fn board_id(&self, name: &str) -> Result<i64> {
        let key = name.trim().to_lowercase();
        if let Some(id) = self.inner.boards.lock().await.get(&key) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Board {
            id: i64,
            #[serde(default)]
            name: String,
        }
        let conditions = Conditions::new().eq_str("name", name.trim()).build();
        let rows: Vec<Board> = self.list("service/boards", &conditions).await?;
        let id = rows
            .iter()
            .find(|b| b.name.trim().eq_ignore_ascii_case(name.trim()))
            .map(|b| b.id)
            .ok_or_else(|| Error::Psa(format!("ConnectWise: no service board named `{name}`")))?;
        self.inner.boards.lock().await.insert(key, id);
        Ok(id)
    }

    /// The statuses of board `board_id`, read once per board.
    pub async fn board_statuses(&self, board_id: i64) -> Result<Vec<BoardStatus>> {
        if let Some(s) = self.inner.board_statuses.lock().await.get(&board_id) {
            return Ok(s.clone());
        }
        let statuses: Vec<BoardStatus> = self
            .list(&format!("service/boards/{board_id}/statuses"), "")
            .await?;
        self.inner
            .board_statuses
            .lock()
            .await
            .insert(board_id, statuses.clone());
        Ok(statuses)
    }

    /// Open (`closedFlag=False`) tickets of the company whose summary equals `summary`.
    pub async fn open_tickets(&self, company_id: i64, summary: &str) -> Result<Vec<Ticket>> {
        let conditions = Conditions::new()
            .eq_int("company/id", company_id)
            .eq_str("summary", summary)
            .eq_bool("closedFlag", false)
            .build();
        let rows: Vec<CwTicket> = self.list("service/tickets", &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| !t.closed && t.title == summary)
            .collect())
    }

    /// Every ticket of the company whose summary equals `summary`, open or closed.
    pub async fn tickets_with_summary(
        &self,
        company_id: i64,
        summary: &str,
    ) -> Result<Vec<Ticket>> {
        let summary = fit_chars(summary, MAX_SUMMARY);
        let conditions = Conditions::new()
            .eq_int("company/id", company_id)
            .eq_str("summary", &summary)
            .build();
        let rows: Vec<CwTicket> = self.list("service/tickets", &conditions).await?;
        Ok(rows
            .into_iter()
            .map(Ticket::from)
            .filter(|t| t.title == summary)
            .collect())
    }

    /// Opens a ticket on `board` (by name) in the board's `status` (by name) or its default
    /// status; the summary is cut to 100 characters. Sent once (see
    /// [`crate::psa::http::Replay`]).
    pub async fn create_ticket(
        &self,
        company_id: i64,
        board: &str,
        summary: &str,
        description: &str,
        status: Option<&str>,
    ) -> Result<Ticket> {
        let board_id = self.board_id(board).await?;
        let statuses = self.board_statuses(board_id).await?;
        let status = open_status(board, &statuses, status)?;
        let path = "service/tickets";
        let body = json!({
            "summary": fit_chars(summary, MAX_SUMMARY),
            "company": {"id": company_id},
            "board": {"id": board_id},
            "status": {"id": status.id},
            "initialDescription": description,
        });
        let reply = self
            .call(Method::POST, path, Some(&body), Replay::CreateOnce)
            .await?;
        let row: CwTicket = self.expect(&Method::POST, path, &reply)?;
        Ok(row.into())
    }

    /// Closes the ticket with a closed status of its own board (`status` by name, else the
    /// one named like `Closed`, else the first): JSON Patch `replace status` with its id.
    pub async fn close_ticket(&self, id: i64, status: Option<&str>) -> Result<()> {
        #[derive(Deserialize)]
        struct Board {
            board: Option<Ref>,
        }
        let path = format!("service/tickets/{id}");
        let reply = self.call(Method::GET, &path, None, Replay::Safe).await?;
        let ticket: Board = self.expect(&Method::GET, &path, &reply)?;
        let board = ticket.board.unwrap_or_default();
        let board_id = board
            .id
            .ok_or_else(|| Error::Psa(format!("ConnectWise: ticket #{id} is on no board")))?;
        let statuses = self.board_statuses(board_id).await?;
        let board_name = board.name.unwrap_or_else(|| format!("#{board_id}"));
        let closed = closed_status(&board_name, &statuses, status)?;
        let body = json!([{"op": "replace", "path": "status", "value": {"id": closed.id}}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        self.expect::<Value>(&Method::PATCH, &path, &reply)?;
        Ok(())
    }

    /// The notes of a ticket.
    pub async fn ticket_notes(&self, ticket_id: i64) -> Result<Vec<TicketNote>> {
        self.list(&format!("service/tickets/{ticket_id}/notes"), "")
            .await
    }

    /// Adds a note to the ticket's discussion (`detailDescriptionFlag`). Sent once.
    pub async fn add_note(&self, ticket_id: i64, text: &str) -> Result<i64> {
        let path = format!("service/tickets/{ticket_id}/notes");
        let body = json!({"text": text, "detailDescriptionFlag": true});
        let reply = self
            .call(Method::POST, &path, Some(&body), Replay::CreateOnce)
            .await?;
        let note: TicketNote = self.expect(&Method::POST, &path, &reply)?;
        Ok(note.id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{client, companyinfo};
    use super::*;
    use crate::psa::http::fake::{Answer, Fake, Seen};

    #[test]
    fn tickets_open_in_the_board_s_default_status_and_close_with_its_closed_status() {
        let st = |id, name: &str, closed, default| BoardStatus {
            id,
            name: name.into(),
            closed_status: closed,
            inactive: false,
            default_flag: default,
            sort_order: id,
        };
        let board = [
            st(1, "Nuovo", false, true),
            st(2, "Annullato", true, false),
            st(3, "Chiuso", true, false),
            st(4, "Closed", true, false),
        ];
        assert_eq!(open_status("B", &board, None).unwrap().id, 1);
        assert_eq!(closed_status("B", &board, None).unwrap().id, 4);
        assert_eq!(closed_status("B", &board[..3], None).unwrap().id, 2);
        assert_eq!(closed_status("B", &board, Some("chiuso")).unwrap().id, 3);
        let e = closed_status("B", &board, Some("Nuovo"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no closed status named \"Nuovo\"")
                && e.contains("Annullato, Chiuso, Closed"),
            "{e}"
        );
        let gt = [st(1, "New", false, true), st(9, ">Closed", true, false)];
        assert_eq!(closed_status("B", &gt, None).unwrap().id, 9);
        assert!(open_status("B", &[st(1, "Done", true, false)], None).is_err());
    }

    #[tokio::test]
    async fn tickets_are_found_opened_and_closed() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            let p = s.path().trim_start_matches("/v2025_1/apis/3.0/").to_string();
            match (s.method.as_str(), p.as_str()) {
                ("GET", "service/tickets") => Answer::json(200, json!([
                    {"id": 1, "summary": "Usage sync failed", "closedFlag": false, "status": {"id": 71, "name": "New"}},
                    {"id": 2, "summary": "Usage sync failed", "closedFlag": true, "status": {"id": 73, "name": "Fatto"}},
                ])),
                ("GET", "service/boards") => {
                    Answer::json(200, json!([{"id": 7, "name": "Service Desk"}]))
                }
                ("GET", "service/boards/7/statuses") => Answer::json(200, json!([
                    {"id": 71, "name": "New", "defaultFlag": true, "closedStatus": false},
                    {"id": 72, "name": "Waiting", "closedStatus": false},
                    {"id": 73, "name": "Fatto", "closedStatus": true},
                ])),
                ("GET", "service/tickets/1") => Answer::json(
                    200,
                    json!({"id": 1, "board": {"id": 7, "name": "Service Desk"}, "closedFlag": false}),
                ),
                ("POST", _) => Answer::json(201, json!({"id": 3, "summary": s.json()["summary"], "closedFlag": false})),
                ("PATCH", _) => Answer::json(200, json!({"id": 1, "closedFlag": true})),
                _ => Answer::json(404, json!({"message": "unexpected"})),
            }
        })
        .await;
        let cw = client(&fake.url);
        let open = cw.open_tickets(250, "Usage sync failed").await.unwrap();
        assert_eq!(open.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        let t = cw
            .create_ticket(250, "Service Desk", "Usage sync failed", "details", None)
            .await
            .unwrap();
        assert_eq!(
            (t.id, t.title.as_str(), t.closed),
            (3, "Usage sync failed", false)
        );
        cw.close_ticket(1, None).await.unwrap();
        let seen = fake.seen();
        assert!(seen[1].uri.contains(
            "conditions=company%2Fid%3D250%20and%20summary%3D%22Usage%20sync%20failed%22%20and%20closedFlag%3DFalse"
        ), "{}", seen[1].uri);
        let create = seen.iter().find(|s| s.method == "POST").unwrap();
        assert_eq!(
            create.json(),
            json!({"summary": "Usage sync failed", "company": {"id": 250}, "board": {"id": 7}, "status": {"id": 71}, "initialDescription": "details"})
        );
        let statuses = seen
            .iter()
            .filter(|s| s.path().ends_with("/statuses"))
            .count();
        assert_eq!(statuses, 1, "a board's statuses are read once");
        let close = seen.last().unwrap();
        assert_eq!(close.path(), "/v2025_1/apis/3.0/service/tickets/1");
        assert_eq!(
            close.json(),
            json!([{"op": "replace", "path": "status", "value": {"id": 73}}])
        );
    }

    #[tokio::test]
    async fn a_validation_error_reports_connectwise_s_message_and_is_not_retried() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            if s.path().ends_with("/service/boards") {
                return Answer::json(200, json!([{"id": 7, "name": "Desk"}]));
            }
            if s.path().ends_with("/statuses") {
                return Answer::json(200, json!([{"id": 1, "name": "New", "defaultFlag": true}]));
            }
            Answer::json(400, json!({"code": "InvalidObject", "message": "Ticket object is invalid", "errors": [{"code": "NullValue", "message": "Company is required", "resource": "ticket", "field": "company"}]}))
        })
        .await;
        let cw = client(&fake.url);
        let e = cw
            .create_ticket(250, "Desk", "x", "y", None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ConnectWise POST /service/tickets: HTTP 400: Ticket object is invalid; company: Company is required"
        );
        assert_eq!(fake.seen().len(), 4);
    }
}
