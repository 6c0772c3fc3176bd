//! The ConnectWise documents: `POST system/documents` as `multipart/form-data` only (a small
//! parser of that format) and `GET .../{id}/download`.

use super::super::api::{SimRequest, SimResponse, base64_decode};
use super::data::Document;
use super::fields::Res;
use super::responses::{FieldError, bad_body, error_json, invalid};
use super::state::Inner;

/// Largest document accepted (bytes); the developer guide gives no figure, so this only keeps
/// the simulator's memory bounded.
const MAX_DOCUMENT: usize = 64 * 1024 * 1024;

impl Inner {
    /// `POST system/documents`: `multipart/form-data` with `recordType`, `recordId`, `title`
    /// and the file (as ConnectWise's own examples send it); anything else is refused.
    pub(super) fn create_document(&mut self, req: &SimRequest) -> SimResponse {
        let content_type = req.header("content-type").unwrap_or("");
        let Some(boundary) = multipart_boundary(content_type) else {
            return error_json(
                415,
                "UnsupportedMediaType",
                &format!(
                    "The request entity's media type '{content_type}' is not supported: upload documents as multipart/form-data"
                ),
            );
        };
        let parts = match multipart_parts(&req.body, &boundary) {
            Ok(p) => p,
            Err(e) => return bad_body(&format!("multipart body: {e}")),
        };
        let field = |name: &str| {
            parts
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name) && p.file_name.is_none())
                .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
        };
        let mut errors = Vec::new();
        let record_type = field("recordType").unwrap_or_default();
        if record_type.is_empty() {
            errors.push(FieldError::missing("recordType"));
        }
        let record_id = match field("recordId").map(|v| v.parse::<i64>()) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(FieldError::invalid("recordId", "recordId must be a number"));
                None
            }
            None => {
                errors.push(FieldError::missing("recordId"));
                None
            }
        };
        let file = parts.iter().find(|p| p.file_name.is_some());
        if file.is_none() {
            errors.push(FieldError::missing("file"));
        }
        if let (Some(id), true) = (record_id, record_type.eq_ignore_ascii_case("Ticket"))
            && !self.ticket_ix.contains_key(&id)
        {
            errors.push(FieldError::invalid(
                "recordId",
                format!("Ticket {id} was not found"),
            ));
        }
        if let Some(f) = file
            && f.data.len() > MAX_DOCUMENT
        {
            errors.push(FieldError::invalid(
                "file",
                format!("the file is over {MAX_DOCUMENT} bytes"),
            ));
        }
        let (Some(record_id), Some(file), true) = (record_id, file, errors.is_empty()) else {
            return invalid("document", &errors);
        };
        let file_name = file.file_name.clone().unwrap_or_default();
        let title = field("title")
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| file_name.clone());
        let id = self.next_document;
        self.next_document += 1;
        let doc = Document {
            id,
            record_type: if record_type.eq_ignore_ascii_case("Ticket") {
                "Ticket".into()
            } else {
                record_type
            },
            record_id,
            title,
            file_name,
            size: file.data.len() as u64,
            content: crate::psa::http::base64(&file.data),
        };
        let json = Self::document_json(&doc);
        self.data.documents.push(doc);
        self.views.documents.push(json.clone());
        SimResponse::json(201, &json)
    }

    /// `GET system/documents/{id}/download`: the bytes.
    pub(super) fn download(&self, id: i64) -> SimResponse {
        match self.data.documents.iter().find(|d| d.id == id) {
            Some(d) => SimResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: base64_decode(&d.content).unwrap_or_default(),
            },
            None => self.missing(Res::Document, id),
        }
    }
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a `multipart/form-data` body (RFC 7578).
fn multipart_parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(body, &delimiter, 0).ok_or("no boundary")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err("a boundary is not followed by CRLF".into());
        }
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a part has no header end")?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delimiter);
        let data_end = find(body, &next_delim, data_start).ok_or("a part is not closed")?;
        let mut name = None;
        let mut file_name = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in v.split(';').map(str::trim) {
                if let Some((pk, pv)) = param.split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim().to_ascii_lowercase().as_str() {
                        "name" => name = Some(pv),
                        "filename" => file_name = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        parts.push(Part {
            name: name.ok_or("a part has no name")?,
            file_name,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + next_delim.len();
    }
}
