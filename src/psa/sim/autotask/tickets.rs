//! The Autotask ticket writes: `POST` and `PATCH /Tickets` (references, picklists and the queue
//! rule checked) and `POST /Tickets/{id}/Attachments` (within the documented size limits).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::super::api::base64_decode;
use super::data::{
    ATTACHMENT_BYTES_PER_5_MIN, ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES, Ticket, TicketAttachment,
};
use super::responses::{Body, Fail, on_record, required};
use super::store::{Store, active};

impl Store {
    /// Checks a ticket's references and the queue rule, skipping the fields in `unread` (those
    /// already reported as missing or malformed).
    pub(super) fn check_ticket(&self, t: &Ticket, unread: &[&str], errors: &mut Vec<String>) {
        let read = |name: &str| !unread.contains(&name);
        if read("companyID") && !self.companies.contains_key(&t.company_id) {
            errors.push(on_record(format!(
                "companyID {} does not exist.",
                t.company_id
            )));
        }
        if read("status") && !active(&self.statuses, t.status) {
            errors.push(on_record(format!(
                "status {} is not an active value of the ticket status picklist.",
                t.status
            )));
        }
        if read("priority") && !active(&self.priorities, t.priority) {
            errors.push(on_record(format!(
                "priority {} is not an active value of the ticket priority picklist.",
                t.priority
            )));
        }
        if read("queueID") {
            match t.queue_id {
                Some(q) if !active(&self.queues, q) => errors.push(on_record(format!(
                    "queueID {q} is not an active value of the queue picklist."
                ))),
                Some(_) => {}
                None if t.assigned_resource_id.is_some()
                    && t.assigned_resource_role_id.is_some() => {}
                None => errors.push(on_record(
                    "queueID is required. A ticket needs a queueID, or both assignedResourceID and assignedResourceRoleID.",
                )),
            }
        }
        if read("dueDateTime") && t.due_date_time.is_none() {
            errors.push(required("dueDateTime"));
        }
    }

    pub(super) fn create_ticket(&mut self, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let company_id = b.int("companyID", true);
        let title = b.text("title", true, 255);
        let status = b.int("status", true);
        let priority = b.int("priority", true);
        let queue_id = b.int("queueID", false);
        let description = b.text("description", false, 8000);
        let due = b.time("dueDateTime", true);
        let resource = b.int("assignedResourceID", false);
        let role = b.int("assignedResourceRoleID", false);
        let mut unread = vec!["dueDateTime"];
        for (name, ok) in [
            ("companyID", company_id.is_some()),
            ("status", status.is_some()),
            ("priority", priority.is_some()),
            ("queueID", queue_id.is_some() || !b.has("queueID")),
        ] {
            if !ok {
                unread.push(name);
            }
        }
        let ticket = Ticket {
            id: 0,
            company_id: company_id.unwrap_or_default(),
            title: title.unwrap_or_default(),
            status: status.unwrap_or_default(),
            priority: priority.unwrap_or_default(),
            queue_id,
            description,
            due_date_time: due,
            create_date: Some(Timestamp::now()),
            assigned_resource_id: resource,
            assigned_resource_role_id: role,
        };
        self.check_ticket(&ticket, &unread, &mut b.errors);
        b.check()?;
        let id = self.take_id();
        self.tickets.insert(id, Ticket { id, ..ticket });
        Ok(json!({ "itemId": id }))
    }

    /// `POST /Tickets/{id}/Attachments`: base64 `data`, refused over the documented limits.
    pub(super) fn create_ticket_attachment(
        &mut self,
        ticket: i64,
        v: &Value,
    ) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let parent = b.int("parentID", false);
        let title = b.text("title", true, 255);
        let full_path = b.text("fullPath", false, 255);
        let kind = b.text("attachmentType", true, 32);
        let publish = b.int("publish", true);
        let data = b
            .value("data", false)
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(p) = parent
            && p != ticket
        {
            b.error(format!(
                "parentID {p} in the body does not match the ticket {ticket} in the URL."
            ));
        }
        if let Some(k) = &kind
            && !ATTACHMENT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(k))
        {
            b.error(format!(
                "attachmentType {k} is not one of {}.",
                ATTACHMENT_TYPES.join(", ")
            ));
        }
        if let Some(p) = publish
            && !(1..=2).contains(&p)
        {
            b.error(format!(
                "publish {p} is not 1 (all users) or 2 (internal users)."
            ));
        }
        b.check()?;
        if !self.tickets.contains_key(&ticket) {
            return Err(Fail::invalid(on_record(format!(
                "Ticket {ticket} does not exist."
            ))));
        }
        let kind = kind.unwrap_or_default().to_ascii_uppercase();
        let bytes = match (&data, kind.as_str()) {
            (Some(d), _) => base64_decode(d)
                .ok_or_else(|| Fail::invalid(on_record("data is not valid base64.")))?,
            (None, "FILE_ATTACHMENT") => return Err(Fail::invalid(required("data"))),
            (None, _) => Vec::new(),
        };
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(Fail::invalid(on_record(format!(
                "The attachment is {} bytes; the API accepts at most {MAX_ATTACHMENT_BYTES} bytes per file.",
                bytes.len()
            ))));
        }
        let now = Instant::now();
        while self
            .attachment_window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(300))
        {
            self.attachment_window.pop_front();
        }
        let recent: usize = self.attachment_window.iter().map(|(_, n)| n).sum();
        if recent + bytes.len() > ATTACHMENT_BYTES_PER_5_MIN {
            return Err(Fail::new(
                429,
                format!(
                    "Attachment threshold exceeded: more than {ATTACHMENT_BYTES_PER_5_MIN} bytes of attachments within five minutes."
                ),
            ));
        }
        self.attachment_window.push_back((now, bytes.len()));
        let id = self.take_id();
        self.attachments.insert(
            id,
            TicketAttachment {
                id,
                parent_id: ticket,
                title: title.unwrap_or_default(),
                full_path,
                attachment_type: kind,
                publish: publish.unwrap_or(1),
                file_size: bytes.len() as i64,
                data: data.unwrap_or_default(),
            },
        );
        Ok(json!({ "itemId": id }))
    }

    pub(super) fn update_ticket(&mut self, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let id = b.int("id", true);
        b.check()?;
        let id = id.unwrap_or_default();
        let Some(mut t) = self.tickets.get(&id).cloned() else {
            return Err(Fail::new(404, format!("Ticket {id} does not exist.")));
        };
        if b.has("companyID") {
            t.company_id = b.int("companyID", true).unwrap_or(t.company_id);
        }
        if b.has("title") {
            t.title = b.text("title", true, 255).unwrap_or(t.title);
        }
        if b.has("status") {
            t.status = b.int("status", true).unwrap_or(t.status);
        }
        if b.has("priority") {
            t.priority = b.int("priority", true).unwrap_or(t.priority);
        }
        if b.has("queueID") {
            t.queue_id = b.int("queueID", false);
        }
        if b.has("description") {
            t.description = b.text("description", false, 8000);
        }
        if b.has("dueDateTime") {
            t.due_date_time = b.time("dueDateTime", true).or(t.due_date_time);
        }
        if b.has("assignedResourceID") {
            t.assigned_resource_id = b.int("assignedResourceID", false);
        }
        if b.has("assignedResourceRoleID") {
            t.assigned_resource_role_id = b.int("assignedResourceRoleID", false);
        }
        b.check()?;
        self.check_ticket(&t, &[], &mut b.errors);
        b.check()?;
        self.tickets.insert(id, t);
        Ok(json!({ "itemId": id }))
    }
}
