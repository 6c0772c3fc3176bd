//! The ConnectWise ticket writes: `POST`/`PATCH service/tickets` (a company, a board and one
//! of that board's statuses, as the real service insists) and `POST .../notes`.

use serde_json::{Map, Value};

use super::super::api::SimResponse;
use super::data::{
    BoardStatus, DEFAULT_PRIORITY, MAX_NAME, Ticket, TicketNote, board_default_status,
};
use super::responses::{FieldError, invalid};
use super::state::Inner;

impl Inner {
    /// The status of `board` a request names (`{"id": N}`, `{"name": "..."}` or a bare name):
    /// one of the board's active statuses, or a refusal naming them.
    fn board_status(&self, board: usize, v: &Value) -> Result<BoardStatus, FieldError> {
        let b = &self.data.boards[board];
        let (by_id, by_name) = match v {
            Value::String(s) => (None, Some(s.as_str())),
            Value::Object(o) => (
                o.get("id").and_then(Value::as_i64),
                o.get("name").and_then(Value::as_str),
            ),
            _ => (None, None),
        };
        let found = match (by_id, by_name) {
            (Some(id), _) => b.statuses.iter().find(|s| s.id == id),
            (None, Some(name)) => {
                (b.statuses.iter()).find(|s| s.name.trim().eq_ignore_ascii_case(name.trim()))
            }
            (None, None) => {
                return Err(FieldError::invalid(
                    "status",
                    "status needs an id or a name, e.g. {\"id\": 3}",
                ));
            }
        };
        match found {
            Some(s) if !s.inactive => Ok(s.clone()),
            _ => {
                let names: Vec<&str> = (b.statuses.iter())
                    .filter(|s| !s.inactive)
                    .map(|s| s.name.as_str())
                    .collect();
                Err(FieldError::new(
                    "InvalidObject",
                    "status",
                    format!(
                        "status {v} is not a status of board \"{}\" (its statuses: {})",
                        b.name,
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// `POST service/tickets/{id}/notes`.
    pub(super) fn create_note(&mut self, ticket: i64, body: &Map<String, Value>) -> SimResponse {
        let mut errors = Vec::new();
        let text = match body.get("text") {
            Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errors.push(FieldError::missing("text"));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::invalid("text", "text must be a string"));
                String::new()
            }
        };
        let mut flag = |key: &str| match body.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::invalid(
                    key,
                    format!("{key} must be true or false"),
                ));
                false
            }
        };
        let detail = flag("detailDescriptionFlag");
        let internal = flag("internalAnalysisFlag");
        let resolution = flag("resolutionFlag");
        if !errors.is_empty() {
            return invalid("ticketNote", &errors);
        }
        let id = self.next_note;
        self.next_note += 1;
        let note = TicketNote {
            id,
            ticket_id: ticket,
            text,
            detail_description_flag: detail,
            internal_analysis_flag: internal,
            resolution_flag: resolution,
        };
        let json = Self::note_json(&note);
        self.data.ticket_notes.push(note);
        self.views.notes.push(json.clone());
        SimResponse::json(201, &json)
    }

    /// A company reference `{id}` or `{identifier}`.
    fn company_lookup(&self, v: Option<&Value>) -> Result<usize, FieldError> {
        let obj = match v {
            None | Some(Value::Null) => return Err(FieldError::missing("company")),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(FieldError::invalid(
                    "company",
                    "company must be an object with an id or an identifier",
                ));
            }
        };
        let found = match (obj.get("id"), obj.get("identifier")) {
            (Some(id), _) if !id.is_null() => match id.as_i64() {
                Some(id) => self
                    .company_ix
                    .get(&id)
                    .copied()
                    .ok_or_else(|| format!("company id {id} was not found")),
                None => Err("company/id must be a number".into()),
            },
            (_, Some(Value::String(ident))) if !ident.trim().is_empty() => self
                .company_by_ident
                .get(&ident.to_lowercase())
                .copied()
                .ok_or_else(|| format!("company \"{ident}\" was not found")),
            _ => return Err(FieldError::missing("company")),
        };
        let i = found.map_err(|m| FieldError::invalid("company", m))?;
        let c = &self.data.companies[i];
        if c.deleted {
            return Err(FieldError::invalid(
                "company",
                format!("company \"{}\" is deleted", c.identifier),
            ));
        }
        Ok(i)
    }

    /// A board reference `{id}` or `{name}`.
    fn board_lookup(&self, v: &Value) -> Result<usize, FieldError> {
        let Some(obj) = v.as_object() else {
            return Err(FieldError::invalid(
                "board",
                "board must be an object with an id or a name",
            ));
        };
        let found = match (obj.get("id"), obj.get("name")) {
            (Some(id), _) if !id.is_null() => match id.as_i64() {
                Some(id) => self
                    .board_ix
                    .get(&id)
                    .copied()
                    .ok_or_else(|| format!("board id {id} was not found")),
                None => Err("board/id must be a number".into()),
            },
            (_, Some(Value::String(name))) if !name.trim().is_empty() => self
                .board_by_name
                .get(&name.to_lowercase())
                .copied()
                .ok_or_else(|| format!("board \"{name}\" was not found")),
            _ => Err("board needs an id or a name".into()),
        };
        found.map_err(|m| FieldError::invalid("board", m))
    }

    pub(super) fn create_ticket(&mut self, body: &Map<String, Value>) -> SimResponse {
        let mut errors = Vec::new();
        let summary = match body.get("summary") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("summary"));
                None
            }
            Some(v) => check_summary(v).map_err(|e| errors.push(e)).ok(),
        };
        let company = self
            .company_lookup(body.get("company"))
            .map_err(|e| errors.push(e))
            .ok();
        let board = match body.get("board") {
            None | Some(Value::Null) => match self.data.boards.first() {
                Some(_) => Some(0),
                None => {
                    errors.push(FieldError::new(
                        "NullOrEmpty",
                        "board",
                        "board is required (there are no service boards)",
                    ));
                    None
                }
            },
            Some(v) => self.board_lookup(v).map_err(|e| errors.push(e)).ok(),
        };
        let status = match (board, body.get("status")) {
            (None, _) => None,
            (Some(b), None | Some(Value::Null)) => {
                match board_default_status(&self.data.boards[b]) {
                    Some(s) => Some(s.clone()),
                    None => {
                        errors.push(FieldError::missing("status"));
                        None
                    }
                }
            }
            (Some(b), Some(v)) => self.board_status(b, v).map_err(|e| errors.push(e)).ok(),
        };
        let priority = match body.get("priority") {
            None | Some(Value::Null) => Some(DEFAULT_PRIORITY.to_string()),
            Some(v @ Value::Object(_)) => named(v, "priority").map_err(|e| errors.push(e)).ok(),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "priority",
                    "priority must be an object {\"name\": ...}",
                ));
                None
            }
        };
        let initial_description = match body.get("initialDescription") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "initialDescription",
                    "initialDescription must be a string",
                ));
                String::new()
            }
        };
        let (Some(summary), Some(company), Some(board), Some(status), Some(priority), true) =
            (summary, company, board, status, priority, errors.is_empty())
        else {
            return invalid("ticket", &errors);
        };
        let id = self.next_ticket;
        self.next_ticket += 1;
        let ticket = Ticket {
            id,
            summary,
            company_id: self.data.companies[company].id,
            board: self.data.boards[board].name.clone(),
            closed: status.closed_status,
            status: status.name,
            initial_description,
            priority,
        };
        let json = self.ticket_json(&ticket);
        self.ticket_ix.insert(id, self.data.tickets.len());
        (self
            .tickets_by_company
            .entry(ticket.company_id)
            .or_default())
        .push(self.data.tickets.len());
        self.data.tickets.push(ticket);
        self.views.tickets.push(json.clone());
        SimResponse::json(201, &json)
    }

    pub(super) fn patch_ticket(&mut self, index: usize, ops: &[(String, Value)]) -> SimResponse {
        let mut t = self.data.tickets[index].clone();
        let mut errors = Vec::new();
        for (path, value) in ops {
            match path.to_ascii_lowercase().as_str() {
                "status" => {
                    let board = self.board_by_name.get(&t.board.to_lowercase()).copied();
                    match board.map(|b| self.board_status(b, value)) {
                        Some(Ok(st)) => {
                            t.closed = st.closed_status;
                            t.status = st.name;
                        }
                        Some(Err(e)) => errors.push(e),
                        None => errors.push(FieldError::invalid("board", "the ticket's board is gone")),
                    }
                }
                "priority" => match named(value, "priority") {
                    Ok(name) => t.priority = name,
                    Err(e) => errors.push(e),
                },
                "summary" => match check_summary(value) {
                    Ok(s) => t.summary = s,
                    Err(e) => errors.push(e),
                },
                "initialdescription" => match value {
                    Value::String(s) => t.initial_description = s.clone(),
                    Value::Null => t.initial_description.clear(),
                    _ => errors.push(FieldError::invalid(
                        "initialDescription",
                        "initialDescription must be a string",
                    )),
                },
                "board" => match self.board_lookup(value) {
                    Ok(b) => t.board = self.data.boards[b].name.clone(),
                    Err(e) => errors.push(e),
                },
                _ => errors.push(FieldError::invalid(
                    path,
                    format!(
                        "{path} cannot be patched (status, summary, initialDescription, priority, board); closedFlag follows the status"
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return invalid("ticket", &errors);
        }
        let json = self.ticket_json(&t);
        self.data.tickets[index] = t;
        self.views.tickets[index] = json.clone();
        SimResponse::json(200, &json)
    }
}

/// A ticket summary: a non-empty string of at most 100 characters.
fn check_summary(v: &Value) -> Result<String, FieldError> {
    match v.as_str() {
        Some(s) if s.trim().is_empty() => Err(FieldError::missing("summary")),
        Some(s) if s.chars().count() > MAX_NAME => Err(FieldError::invalid(
            "summary",
            format!(
                "summary is {} characters long; the maximum is {MAX_NAME}",
                s.chars().count()
            ),
        )),
        Some(s) => Ok(s.to_string()),
        None => Err(FieldError::invalid("summary", "summary must be a string")),
    }
}

/// The name of a `{"name": ...}` reference (or a bare string name).
fn named(v: &Value, field: &str) -> Result<String, FieldError> {
    let name = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("name").and_then(Value::as_str),
        _ => None,
    };
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n.to_string()),
        _ => Err(FieldError::invalid(
            field,
            format!("{field} needs a name, e.g. {{\"name\": \"...\"}}"),
        )),
    }
}
