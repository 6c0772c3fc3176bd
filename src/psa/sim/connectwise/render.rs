//! The ConnectWise simulator's records in the API's shape (references as `{id, name, _info}`,
//! numbers and dates as the service writes them), and the 404 of a missing record.

use serde_json::{Value, json};

use super::super::api::SimResponse;
use super::data::{
    Addition, Agreement, Board, BoardStatus, Company, CompanyStatus, Document, Product, Ticket,
    TicketNote, num_json,
};
use super::dates::api_date;
use super::fields::Res;
use super::responses::not_found;
use super::state::Inner;

/// `_info.lastUpdated` of every company.
pub(super) const LAST_UPDATED: &str = "2026-01-01T00:00:00Z";

impl Inner {
    pub(super) fn missing(&self, res: Res, id: i64) -> SimResponse {
        not_found(&format!("{} with id {id} was not found", res.title()))
    }

    fn company_ref(&self, id: i64) -> Value {
        match self.company_ix.get(&id).map(|&i| &self.data.companies[i]) {
            Some(c) => json!({"id": c.id, "identifier": c.identifier, "name": c.name}),
            None => json!({"id": id}),
        }
    }

    pub(super) fn company_json(&self, c: &Company) -> Value {
        let status_id = self
            .company_status_by_name
            .get(&c.status.to_lowercase())
            .map_or(0, |&i| self.data.company_statuses[i].id);
        json!({
            "id": c.id,
            "identifier": c.identifier,
            "name": c.name,
            "status": {"id": status_id, "name": c.status},
            "types": [],
            "deletedFlag": c.deleted,
            "_info": {"lastUpdated": LAST_UPDATED},
        })
    }

    pub(super) fn agreement_json(&self, a: &Agreement) -> Value {
        json!({
            "id": a.id,
            "name": a.name,
            "type": {
                "id": self.agreement_types.get(&a.kind.to_lowercase()).copied().unwrap_or(0),
                "name": a.kind,
            },
            "company": self.company_ref(a.company_id),
            "agreementStatus": a.status,
            "cancelledFlag": a.cancelled,
            "startDate": api_date(&a.start_date),
            "endDate": api_date(&a.end_date),
            "noEndingDateFlag": a.end_date.is_none(),
        })
    }

    fn product(&self, identifier: &str) -> Option<&Product> {
        self.product_by_ident
            .get(&identifier.to_lowercase())
            .map(|&i| &self.data.products[i])
    }

    pub(super) fn addition_json(&self, a: &Addition) -> Value {
        let product = self.product(&a.product_identifier);
        let unit_price = a
            .unit_price
            .unwrap_or_else(|| product.map_or(0.0, |p| p.price));
        json!({
            "id": a.id,
            "product": {
                "id": product.map_or(0, |p| p.id),
                "identifier": a.product_identifier,
            },
            "quantity": num_json(a.quantity),
            "unitPrice": num_json(unit_price),
            "unitCost": 0,
            "billCustomer": a.bill_customer,
            "effectiveDate": api_date(&a.effective_date),
            "cancelledDate": api_date(&a.cancelled_date),
            "agreementId": a.agreement_id,
            "description": a.description,
            "invoiceDescription": a.description,
        })
    }

    pub(super) fn ticket_json(&self, t: &Ticket) -> Value {
        let board = self
            .board_by_name
            .get(&t.board.to_lowercase())
            .map(|&i| &self.data.boards[i]);
        let status_id = board
            .and_then(|b| b.statuses.iter().find(|s| s.name == t.status))
            .map_or(0, |s| s.id);
        json!({
            "id": t.id,
            "summary": t.summary,
            "company": self.company_ref(t.company_id),
            "board": {"id": board.map_or(0, |b| b.id), "name": t.board},
            "status": {"id": status_id, "name": t.status},
            "priority": {"name": t.priority},
            "initialDescription": t.initial_description,
            "closedFlag": t.closed,
        })
    }

    pub(super) fn company_status_json(s: &CompanyStatus) -> Value {
        json!({
            "id": s.id,
            "name": s.name,
            "inactiveFlag": s.inactive_flag,
            "defaultFlag": s.default_flag,
        })
    }

    pub(super) fn board_status_json(b: &Board, s: &BoardStatus) -> Value {
        json!({
            "id": s.id,
            "name": s.name,
            "board": {"id": b.id, "name": b.name},
            "sortOrder": s.sort_order,
            "inactive": s.inactive,
            "closedStatus": s.closed_status,
            "defaultFlag": s.default_flag,
        })
    }

    pub(super) fn note_json(n: &TicketNote) -> Value {
        json!({
            "id": n.id,
            "ticketId": n.ticket_id,
            "text": n.text,
            "detailDescriptionFlag": n.detail_description_flag,
            "internalAnalysisFlag": n.internal_analysis_flag,
            "resolutionFlag": n.resolution_flag,
        })
    }

    pub(super) fn document_json(d: &Document) -> Value {
        json!({
            "id": d.id,
            "title": d.title,
            "fileName": d.file_name,
            "size": d.size,
            "recordType": d.record_type,
            "recordId": d.record_id,
        })
    }

    pub(super) fn board_json(b: &Board) -> Value {
        json!({"id": b.id, "name": b.name})
    }

    pub(super) fn product_json(p: &Product) -> Value {
        json!({
            "id": p.id,
            "identifier": p.identifier,
            "description": p.description,
            "price": num_json(p.price),
            "cost": 0,
        })
    }
}
