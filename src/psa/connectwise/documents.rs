//! Report files filed on tickets: `system/documents` listed by record and uploaded as
//! `multipart/form-data` (`recordType=Ticket`).

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::client::ConnectWise;
use crate::psa::http::Replay;
use crate::{Error, Result};

/// A document attached to a record, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInfo {
    /// Id.
    pub id: i64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// The uploaded file's name.
    #[serde(default)]
    pub file_name: String,
}

impl ConnectWise {
    /// The documents attached to ticket `ticket_id`
    /// (`system/documents?recordType=Ticket&recordId=N`).
    pub async fn ticket_documents(&self, ticket_id: i64) -> Result<Vec<DocumentInfo>> {
        self.list_with(
            "system/documents",
            "",
            &format!("recordType=Ticket&recordId={ticket_id}"),
        )
        .await
    }

    /// Uploads `bytes` as `file_name` to ticket `ticket_id` (`POST system/documents`,
    /// `multipart/form-data`: `recordType=Ticket`, `recordId`, `title`, the file). Sent once.
    pub async fn upload_ticket_document(
        &self,
        ticket_id: i64,
        title: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Result<DocumentInfo> {
        let path = "system/documents";
        let boundary = format!("ferry-{}", hex::encode(crate::fsutil::random_bytes::<12>()));
        let mut body = Vec::with_capacity(bytes.len() + 1024);
        for (name, value) in [
            ("recordType", "Ticket".to_string()),
            ("recordId", ticket_id.to_string()),
            ("title", title.to_string()),
            ("privateFlag", "false".to_string()),
        ] {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        let safe_name: String = file_name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = format!("{}{path}", self.api_base().await?);
        let mut headers = self.inner.headers.clone();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
                .map_err(|e| Error::Psa(format!("ConnectWise: {e}")))?,
        );
        let reply = self
            .send_raw(
                Method::POST,
                &url,
                path,
                &headers,
                Bytes::from(body),
                Replay::CreateOnce,
            )
            .await?;
        self.expect(&Method::POST, path, &reply)
    }
}
