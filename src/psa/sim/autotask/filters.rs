//! The Autotask query language: `{"filter":[...],"MaxRecords":n,"IncludeFields":[...]}` parsed
//! against an entity's fields (refusing what Autotask refuses) and evaluated on its cells.

use std::cmp::Ordering;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use serde_json::{Map, Value};

use super::fields::{Cell, Field, Kind, Record, Ty, midnight};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    NotEq,
    Gt,
    Gte,
    Lt,
    Lte,
    BeginsWith,
    EndsWith,
    Contains,
    Exist,
    NotExist,
    In,
    NotIn,
}

impl Op {
    pub(super) fn parse(op: &str) -> Option<Op> {
        Some(match op.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "noteq" => Op::NotEq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "beginswith" => Op::BeginsWith,
            "endswith" => Op::EndsWith,
            "contains" => Op::Contains,
            "exist" => Op::Exist,
            "notexist" => Op::NotExist,
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        })
    }
}

/// A filter value, typed by its field.
#[derive(Clone, Debug)]
pub(super) enum Lit {
    Int(i64),
    Num(f64),
    Bool(bool),
    /// Lower-cased.
    Str(String),
    Time(Timestamp),
}

#[derive(Clone, Debug)]
pub(super) enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Test {
        field: usize,
        op: Op,
        values: Vec<Lit>,
    },
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Case-insensitive ordering of strings (Autotask compares strings without case).
fn cmp_ci(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .cmp(b.chars().flat_map(char::to_lowercase))
    }
}

fn compare(cell: Cell<'_>, lit: &Lit) -> Option<Ordering> {
    match (cell, lit) {
        (Cell::Int(a), Lit::Int(b)) => Some(a.cmp(b)),
        (Cell::Int(a), Lit::Num(b)) => (a as f64).partial_cmp(b),
        (Cell::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Cell::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Cell::Str(a), Lit::Str(b)) => Some(cmp_ci(a, b)),
        (Cell::Time(a), Lit::Time(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

impl Cond {
    /// The integers `field` must equal for the condition to hold (an `eq` or `in` on it among
    /// the and-ed conditions), if any.
    pub(super) fn required_ints(&self, field: usize) -> Option<Vec<i64>> {
        match self {
            Cond::All(items) => items.iter().find_map(|c| c.required_ints(field)),
            Cond::Test {
                field: f,
                op: Op::Eq | Op::In,
                values,
            } if *f == field => values
                .iter()
                .map(|v| match v {
                    Lit::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub(super) fn matches<R: Record>(&self, record: &R) -> bool {
        match self {
            Cond::All(items) => items.iter().all(|c| c.matches(record)),
            Cond::Any(items) => items.iter().any(|c| c.matches(record)),
            Cond::Test { field, op, values } => {
                let cell = record.cell(*field);
                let first = || values.first().and_then(|v| compare(cell, v));
                let text = |test: &dyn Fn(&str, &str) -> bool| match (cell, values.first()) {
                    (Cell::Str(s), Some(Lit::Str(v))) => test(&lower(s), v),
                    _ => false,
                };
                match op {
                    Op::Exist => !matches!(cell, Cell::Null),
                    Op::NotExist => matches!(cell, Cell::Null),
                    Op::Eq => first() == Some(Ordering::Equal),
                    Op::NotEq => matches!(first(), Some(o) if o != Ordering::Equal),
                    Op::Gt => first() == Some(Ordering::Greater),
                    Op::Gte => matches!(first(), Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => first() == Some(Ordering::Less),
                    Op::Lte => matches!(first(), Some(Ordering::Less | Ordering::Equal)),
                    Op::BeginsWith => text(&|s, v| s.starts_with(v)),
                    Op::EndsWith => text(&|s, v| s.ends_with(v)),
                    Op::Contains => text(&|s, v| s.contains(v)),
                    Op::In => values
                        .iter()
                        .any(|v| compare(cell, v) == Some(Ordering::Equal)),
                    Op::NotIn => {
                        !matches!(cell, Cell::Null)
                            && values
                                .iter()
                                .all(|v| compare(cell, v) != Some(Ordering::Equal))
                    }
                }
            }
        }
    }
}

/// `obj[name]` with the name matched case-insensitively (Autotask's JSON binding ignores case).
pub(super) fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

pub(super) fn non_null<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    get_ci(obj, name).filter(|v| !v.is_null())
}

pub(super) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// A date and time: RFC 3339, or without offset (UTC), or a bare date (midnight UTC).
pub(super) fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return Offset::UTC.to_timestamp(dt).ok();
    }
    s.parse::<Date>().ok().map(midnight)
}

/// A date: `YYYY-MM-DD`, or the date part of a date and time.
pub(super) fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    parse_time(s)?;
    s.get(..10)?.parse::<Date>().ok()
}

fn lit(f: &Field, v: &Value) -> Result<Lit, String> {
    let bad = |what: &str| format!("Invalid value {v} for field {}: expected {what}.", f.name);
    Ok(match f.ty {
        Ty::Int => Lit::Int(as_int(v).ok_or_else(|| bad("an integer"))?),
        Ty::Num => Lit::Num(as_num(v).ok_or_else(|| bad("a number"))?),
        Ty::Bool => Lit::Bool(match v {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            Value::Number(n) if n.as_i64() == Some(0) => false,
            _ => return Err(bad("true or false")),
        }),
        Ty::Str => Lit::Str(match v {
            Value::String(s) => lower(s),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(bad("a string")),
        }),
        Ty::Date | Ty::Time => Lit::Time(
            v.as_str()
                .and_then(parse_time)
                .ok_or_else(|| bad("a date or date and time (e.g. 2026-11-01T00:00:00Z)"))?,
        ),
    })
}

fn parse_condition(kind: Kind, item: &Value) -> Result<Cond, String> {
    let Some(obj) = item.as_object() else {
        return Err(format!(
            "Invalid filter item {item}: expected an object with op, field and value."
        ));
    };
    let Some(op_name) = non_null(obj, "op").and_then(Value::as_str) else {
        return Err(format!("The filter item {item} has no op."));
    };
    if op_name.eq_ignore_ascii_case("and") || op_name.eq_ignore_ascii_case("or") {
        let Some(items) = non_null(obj, "items").and_then(Value::as_array) else {
            return Err(format!(
                "The '{op_name}' group {item} needs an items array of conditions."
            ));
        };
        if items.is_empty() {
            return Err(format!("The '{op_name}' group has no items."));
        }
        let conds = items
            .iter()
            .map(|i| parse_condition(kind, i))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if op_name.eq_ignore_ascii_case("and") {
            Cond::All(conds)
        } else {
            Cond::Any(conds)
        });
    }
    let Some(op) = Op::parse(op_name) else {
        return Err(format!(
            "Invalid filter operator '{op_name}'. Valid operators: eq, noteq, gt, gte, lt, lte, \
             beginsWith, endsWith, contains, exist, notExist, in, notIn, and, or."
        ));
    };
    let Some(name) = non_null(obj, "field").and_then(Value::as_str) else {
        return Err(format!("The filter condition {item} has no field."));
    };
    if non_null(obj, "udf").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "Unable to find user-defined field {name} in the {} entity.",
            kind.singular()
        ));
    }
    let Some(index) = kind.field(name) else {
        return Err(format!(
            "Unable to find {name} in the {} entity.",
            kind.singular()
        ));
    };
    let f = &kind.fields()[index];
    if kind
        .unqueryable()
        .iter()
        .any(|n| n.eq_ignore_ascii_case(f.name))
    {
        return Err(format!(
            "The {} field of {} cannot be queried.",
            f.name,
            kind.singular()
        ));
    }
    let value = non_null(obj, "value");
    let values = match op {
        Op::Exist | Op::NotExist => Vec::new(),
        Op::In | Op::NotIn => {
            let Some(list) = value.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
                return Err(format!(
                    "The {op_name} condition on {name} needs a non-empty array value."
                ));
            };
            list.iter().map(|v| lit(f, v)).collect::<Result<_, _>>()?
        }
        _ => {
            let Some(v) = value else {
                return Err(format!(
                    "The {op_name} condition on {name} needs a value (use exist or notExist for null)."
                ));
            };
            if matches!(op, Op::BeginsWith | Op::EndsWith | Op::Contains) && f.ty != Ty::Str {
                return Err(format!(
                    "The {op_name} operator applies to string fields only; {name} is not one."
                ));
            }
            vec![lit(f, v)?]
        }
    };
    Ok(Cond::Test {
        field: index,
        op,
        values,
    })
}

/// A parsed query (`search`).
pub(super) struct Search {
    pub(super) cond: Cond,
    pub(super) max_records: usize,
    pub(super) include: Option<Vec<usize>>,
    /// The search as received (carried by `nextPageUrl`).
    pub(super) raw: Value,
}

const MAX_RECORDS: i64 = 500;

pub(super) fn parse_search(kind: Kind, raw: Value) -> Result<Search, String> {
    let Some(obj) = raw.as_object() else {
        return Err(
            "The query must be a JSON object like {\"filter\":[{\"op\":\"eq\",\"field\":\"id\",\"value\":1}]}."
                .into(),
        );
    };
    let filter = match non_null(obj, "filter") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(format!(
                "filter must be an array of conditions, not {other}."
            ));
        }
    };
    if filter.is_empty() {
        return Err(
            "A query requires at least one filter condition (e.g. {\"op\":\"gte\",\"field\":\"id\",\"value\":0})."
                .into(),
        );
    }
    let cond = Cond::All(
        filter
            .iter()
            .map(|i| parse_condition(kind, i))
            .collect::<Result<_, _>>()?,
    );
    let max_records = match non_null(obj, "MaxRecords") {
        None => MAX_RECORDS,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=MAX_RECORDS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "MaxRecords must be an integer between 1 and {MAX_RECORDS}; got {v}."
                ));
            }
        },
    };
    let include = match non_null(obj, "IncludeFields") {
        None => None,
        Some(Value::Array(names)) if names.is_empty() => None,
        Some(Value::Array(names)) => {
            let mut indexes = vec![0];
            for n in names {
                let Some(name) = n.as_str() else {
                    return Err(format!("IncludeFields must list field names; got {n}."));
                };
                let Some(i) = kind.field(name) else {
                    return Err(format!(
                        "Unable to find {name} in the {} entity.",
                        kind.singular()
                    ));
                };
                if !indexes.contains(&i) {
                    indexes.push(i);
                }
            }
            Some(indexes)
        }
        Some(other) => {
            return Err(format!(
                "IncludeFields must be an array of field names, not {other}."
            ));
        }
    };
    Ok(Search {
        cond,
        max_records: max_records as usize,
        include,
        raw,
    })
}
