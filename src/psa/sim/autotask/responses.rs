//! The Autotask error shape (`{"errors":[...]}` with a status; validation failures are 500s,
//! as Autotask answers them) and the reading of request bodies field by field.

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Map, Value, json};

use super::super::api::{SimRequest, SimResponse};
use super::filters::{as_int, as_num, get_ci, non_null, parse_date, parse_time};

/// A refused request: `{"errors":[...]}` with a status.
#[derive(Debug)]
pub(super) struct Fail {
    pub(super) status: u16,
    pub(super) errors: Vec<String>,
    pub(super) retry_after: Option<u64>,
}

impl Fail {
    pub(super) fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            errors: vec![message.into()],
            retry_after: None,
        }
    }

    /// A validation failure: Autotask answers them with 500.
    pub(super) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(500, message)
    }

    pub(super) fn response(self) -> SimResponse {
        let r = SimResponse::json(self.status, &json!({ "errors": self.errors }));
        match self.retry_after {
            Some(s) => r.with_header("retry-after", s.to_string()),
            None => r,
        }
    }
}

pub(super) fn not_allowed(method: &str, hint: Option<&str>) -> Fail {
    let mut f = Fail::new(
        405,
        format!("The requested resource does not support http method '{method}'."),
    );
    if let Some(h) = hint {
        f.errors.push(h.to_string());
    }
    f
}

pub(super) fn required(name: &str) -> String {
    format!("{name} is required.; on record number [0].")
}

pub(super) fn on_record(message: impl std::fmt::Display) -> String {
    format!("{message}; on record number [0].")
}

/// Reads the fields of a create or update body, collecting validation errors.
pub(super) struct Body<'a> {
    pub(super) obj: &'a Map<String, Value>,
    pub(super) errors: Vec<String>,
}

impl<'a> Body<'a> {
    pub(super) fn new(v: &'a Value) -> Result<Body<'a>, Fail> {
        match v.as_object() {
            Some(obj) => Ok(Body {
                obj,
                errors: Vec::new(),
            }),
            None => Err(Fail::invalid(
                "The request body must be a JSON object with the entity's fields.",
            )),
        }
    }

    /// Whether `name` is present (even as null).
    pub(super) fn has(&self, name: &str) -> bool {
        get_ci(self.obj, name).is_some()
    }

    pub(super) fn value(&mut self, name: &str, required_: bool) -> Option<&'a Value> {
        let v = non_null(self.obj, name);
        if v.is_none() && required_ {
            self.errors.push(required(name));
        }
        v
    }

    pub(super) fn int(&mut self, name: &str, required_: bool) -> Option<i64> {
        let v = self.value(name, required_)?;
        let i = as_int(v);
        if i.is_none() {
            self.errors
                .push(on_record(format!("{name}: {v} is not a valid integer.")));
        }
        i
    }

    pub(super) fn num(&mut self, name: &str, required_: bool) -> Option<f64> {
        let v = self.value(name, required_)?;
        let n = as_num(v);
        if n.is_none() {
            self.errors
                .push(on_record(format!("{name}: {v} is not a valid number.")));
        }
        n
    }

    pub(super) fn text(&mut self, name: &str, required_: bool, max_len: usize) -> Option<String> {
        let v = self.value(name, required_)?;
        let Some(s) = v.as_str() else {
            self.errors
                .push(on_record(format!("{name}: {v} is not a string.")));
            return None;
        };
        if s.trim().is_empty() && required_ {
            self.errors.push(required(name));
            return None;
        }
        if s.chars().count() > max_len {
            self.errors.push(on_record(format!(
                "{name} exceeds the maximum length of {max_len} characters."
            )));
            return None;
        }
        Some(s.to_string())
    }

    pub(super) fn date(&mut self, name: &str, required_: bool) -> Option<Date> {
        let v = self.value(name, required_)?;
        let d = v.as_str().and_then(parse_date);
        if d.is_none() {
            self.errors.push(on_record(format!(
                "{name}: {v} is not a valid date (use e.g. 2026-11-01 or 2026-11-01T00:00:00Z)."
            )));
        }
        d
    }

    pub(super) fn time(&mut self, name: &str, required_: bool) -> Option<Timestamp> {
        let v = self.value(name, required_)?;
        let t = v.as_str().and_then(parse_time);
        if t.is_none() {
            self.errors.push(on_record(format!(
                "{name}: {v} is not a valid date and time (use e.g. 2026-11-30T17:00:00Z)."
            )));
        }
        t
    }

    pub(super) fn error(&mut self, message: impl std::fmt::Display) {
        self.errors.push(on_record(message));
    }

    pub(super) fn check(&mut self) -> Result<(), Fail> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Fail {
                status: 500,
                errors: std::mem::take(&mut self.errors),
                retry_after: None,
            })
        }
    }
}

pub(super) fn body(req: &SimRequest) -> Result<Value, Fail> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(Fail::invalid(
            "The request body is empty; send the entity as JSON.",
        ));
    }
    req.json().map_err(Fail::invalid)
}
