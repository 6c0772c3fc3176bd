//! The answers the ConnectWise simulator shares between its routes: the documented error
//! shapes (`code`, `message`, `errors[]`), request bodies (JSON, JSON Patch) and paging links.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::super::api::{SimRequest, SimResponse};
use super::fields::Res;

/// One entry of `errors[]`.
pub(super) struct FieldError {
    pub(super) code: &'static str,
    pub(super) field: String,
    pub(super) message: String,
}

impl FieldError {
    pub(super) fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        FieldError {
            code,
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub(super) fn missing(field: &str) -> Self {
        FieldError::new("NullOrEmpty", field, format!("{field} is required."))
    }
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        FieldError::new("InvalidObject", field, message)
    }
}

pub(super) fn error_json(status: u16, code: &str, message: &str) -> SimResponse {
    SimResponse::json(status, &json!({"code": code, "message": message}))
}

pub(super) fn not_found(message: &str) -> SimResponse {
    error_json(404, "NotFound", message)
}

/// 400 `InvalidObject` for a record that fails validation.
pub(super) fn invalid(resource: &str, errors: &[FieldError]) -> SimResponse {
    let detail: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    let list: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({"code": e.code, "message": e.message, "resource": resource, "field": e.field})
        })
        .collect();
    SimResponse::json(
        400,
        &json!({
            "code": "InvalidObject",
            "message": format!("{resource} object is invalid: {}", detail.join("; ")),
            "errors": list,
        }),
    )
}

/// 400 `InvalidObject` for a bad query parameter (`conditions`, `pageSize`, ...).
pub(super) fn bad_param(res: Res, param: &str, message: &str) -> SimResponse {
    SimResponse::json(
        400,
        &json!({
            "code": "InvalidObject",
            "message": format!("{param}: {message}"),
            "errors": [{"code": "InvalidObject", "message": message, "resource": res.name(), "field": param}],
        }),
    )
}

pub(super) fn bad_body(message: &str) -> SimResponse {
    error_json(400, "InvalidObject", message)
}

pub(super) fn method_not_allowed(method: &str, allow: &str) -> SimResponse {
    error_json(
        405,
        "MethodNotAllowed",
        &format!("The requested resource does not support http method '{method}'."),
    )
    .with_header("allow", allow)
}

fn body_json(req: &SimRequest) -> Result<Value, SimResponse> {
    req.json().map_err(|e| bad_body(&e))
}

pub(super) fn body_object(req: &SimRequest) -> Result<Map<String, Value>, SimResponse> {
    match body_json(req)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad_body("the request body must be a JSON object")),
    }
}

/// The `replace` operations of a JSON Patch body, as `(field, value)`.
pub(super) fn patch_ops(req: &SimRequest, res: Res) -> Result<Vec<(String, Value)>, SimResponse> {
    let Value::Array(ops) = body_json(req)? else {
        return Err(bad_body(
            "the request body must be a JSON Patch array, e.g. [{\"op\":\"replace\",\"path\":\"quantity\",\"value\":25}]",
        ));
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(obj) = op.as_object() else {
            errors.push(FieldError::invalid(
                "op",
                format!("operation {i} is not an object"),
            ));
            continue;
        };
        let Some(path) = obj.get("path").and_then(Value::as_str) else {
            errors.push(FieldError::missing("path"));
            continue;
        };
        let path = path.trim_start_matches('/').to_string();
        match obj.get("op").and_then(Value::as_str) {
            Some(o) if o.eq_ignore_ascii_case("replace") => {}
            Some(o) => {
                errors.push(FieldError::invalid(
                    &path,
                    format!("operation '{o}' on {path} is not supported (use replace)"),
                ));
                continue;
            }
            None => {
                errors.push(FieldError::missing("op"));
                continue;
            }
        }
        let Some(value) = obj.get("value") else {
            errors.push(FieldError::invalid(
                &path,
                format!("the replace of {path} has no value"),
            ));
            continue;
        };
        out.push((path, value.clone()));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(invalid(res.name(), &errors))
    }
}

/// Percent-encodes all but unreserved characters (and those in `keep`).
pub(super) fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The absolute URL of this request with `drop` parameters removed and `set` ones appended.
pub(super) fn page_url(
    base_url: &str,
    req: &SimRequest,
    drop: &[&str],
    set: (&str, String),
) -> String {
    let mut url = format!("{base_url}{}", encode(&req.path, b"/"));
    let mut sep = '?';
    for (k, v) in &req.query {
        if drop.iter().any(|d| d.eq_ignore_ascii_case(k)) || k.eq_ignore_ascii_case(set.0) {
            continue;
        }
        let _ = write!(url, "{sep}{}={}", encode(k, b""), encode(v, b""));
        sep = '&';
    }
    let _ = write!(url, "{sep}{}={}", set.0, encode(&set.1, b""));
    url
}
