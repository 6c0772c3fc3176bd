//! Report files attached to tickets (`POST Tickets/{id}/Attachments` with base64 `data`); a
//! file over [`MAX_ATTACHMENT_BYTES`] is refused before it is sent.

use serde::Deserialize;
use serde_json::json;

use super::client::{Autotask, eq};
use super::tickets::MAX_TITLE;
use crate::psa::fit_chars;
use crate::{Error, Result};

/// The largest attachment Ferry sends: Autotask documents "6 to 7 MB" per file, so the lower
/// bound is the one surely accepted.
pub const MAX_ATTACHMENT_BYTES: u64 = 6_000_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtAttachment {
    id: i64,
    title: Option<String>,
    full_path: Option<String>,
}

/// A file attached to a ticket, as listed (without its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Attachment id.
    pub id: i64,
    /// `title`.
    pub title: String,
    /// `fullPath`: the file name.
    pub file_name: String,
}

impl Autotask {
    /// The files attached to the ticket (`TicketAttachments/query` by `parentID`; the bytes
    /// are not listed).
    pub async fn ticket_attachments(&self, ticket_id: i64) -> Result<Vec<Attachment>> {
        let rows: Vec<AtAttachment> = self
            .query("TicketAttachments", json!([eq("parentID", ticket_id)]))
            .await?;
        Ok(rows
            .into_iter()
            .map(|a| Attachment {
                id: a.id,
                title: a.title.unwrap_or_default(),
                file_name: a.full_path.unwrap_or_default(),
            })
            .collect())
    }

    /// Attaches `bytes` to the ticket as `file_name`, titled `title`
    /// (`POST Tickets/{id}/Attachments`, `FILE_ATTACHMENT`, published to all users). A file
    /// over [`MAX_ATTACHMENT_BYTES`] is refused here, before anything is sent. Sent once.
    pub async fn attach_to_ticket(
        &self,
        ticket_id: i64,
        title: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<i64> {
        if bytes.len() as u64 > MAX_ATTACHMENT_BYTES {
            return Err(Error::Psa(format!(
                "Autotask: `{file_name}` is {} bytes; Autotask accepts attachments of at most \
                 6 to 7 MB (Ferry sends at most {MAX_ATTACHMENT_BYTES} bytes), so it was not sent",
                bytes.len()
            )));
        }
        let body = json!({
            "parentID": ticket_id,
            "attachmentType": "FILE_ATTACHMENT",
            "title": fit_chars(title, MAX_TITLE),
            "fullPath": fit_chars(file_name, MAX_TITLE),
            "publish": 1,
            "data": crate::psa::http::base64(bytes),
        });
        self.create(&format!("Tickets/{ticket_id}/Attachments"), &body)
            .await
    }
}
