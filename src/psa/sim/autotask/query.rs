//! The Autotask read requests: queries (`POST .../query`, `GET .../query?search=`, the next
//! pages, counts) and the entity and field information.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::api::SimRequest;
use super::data::ContractServiceUnit;
use super::fields::{Kind, Ty};
use super::filters::{Cond, non_null, parse_search};
use super::paging::{Cursor, query_page};
use super::responses::Fail;
use super::router::Mode;
use super::store::{Store, on_table};

impl Store {
    pub(super) fn query(
        &self,
        kind: Kind,
        mode: Mode,
        req: &SimRequest,
        api_base: &str,
    ) -> Result<Value, Fail> {
        let raw = if matches!(mode, Mode::Next | Mode::Prev) {
            // The cursor URL carries the query; a body, when sent, must be the same query.
            let Some(search) = req.param("search") else {
                return Err(Fail::invalid(
                    "The paging URL has no search parameter; follow nextPageUrl as given.",
                ));
            };
            let carried: Value = serde_json::from_str(search)
                .map_err(|e| Fail::invalid(format!("The search parameter is not JSON: {e}")))?;
            if !req.body.iter().all(u8::is_ascii_whitespace) {
                let sent = req.json().map_err(Fail::invalid)?;
                let filter = |v: &Value| {
                    v.as_object()
                        .and_then(|o| non_null(o, "filter").cloned())
                        .unwrap_or(Value::Null)
                };
                if filter(&sent) != filter(&carried) {
                    return Err(Fail::invalid(
                        "The query body does not match the query of the paging URL; send the first page's query.",
                    ));
                }
            }
            carried
        } else if req.method.eq_ignore_ascii_case("POST") {
            if req.body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                req.json().map_err(Fail::invalid)?
            }
        } else {
            let Some(search) = req.param("search") else {
                return Err(Fail::invalid(
                    "The search parameter is required: ?search={\"filter\":[...]} (URL-encoded JSON).",
                ));
            };
            serde_json::from_str(search)
                .map_err(|e| Fail::invalid(format!("The search parameter is not JSON: {e}")))?
        };
        let search = parse_search(kind, raw).map_err(Fail::invalid)?;
        let cursor = match mode {
            Mode::Items => Cursor::Start,
            Mode::Count => {
                let n = match self.narrowed(kind, &search.cond) {
                    Some(rows) => rows.values().filter(|r| search.cond.matches(*r)).count(),
                    None => {
                        on_table!(self, kind, rows => rows.values().filter(|r| search.cond.matches(*r)).count())
                    }
                };
                return Ok(json!({ "queryCount": n }));
            }
            Mode::Next | Mode::Prev => {
                let paging = req
                    .param("paging")
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .unwrap_or(Value::Null);
                let id = |key: &str| paging.get(key).and_then(Value::as_i64);
                match (mode, id("afterId"), id("beforeId")) {
                    (Mode::Next, Some(after), _) => Cursor::After(after),
                    (Mode::Next, None, None) if paging.is_object() => Cursor::Start,
                    (Mode::Prev, _, Some(before)) => Cursor::Before(before),
                    _ => {
                        return Err(Fail::invalid(
                            "The paging parameter is missing or invalid; follow nextPageUrl/prevPageUrl as given.",
                        ));
                    }
                }
            }
        };
        Ok(match self.narrowed(kind, &search.cond) {
            Some(rows) => query_page(&rows, kind, &search, cursor, api_base),
            None => {
                on_table!(self, kind, rows => query_page(rows, kind, &search, cursor, api_base))
            }
        })
    }

    /// The candidate rows of a query on the (large) units table, when an index applies.
    fn narrowed(&self, kind: Kind, cond: &Cond) -> Option<BTreeMap<i64, ContractServiceUnit>> {
        match kind {
            Kind::ContractServiceUnits => self.narrowed_units(cond),
            _ => None,
        }
    }

    pub(super) fn fields_info(&self, kind: Kind) -> Value {
        let fields: Vec<Value> = kind
            .fields()
            .iter()
            .map(|f| {
                let data_type = match (f.name, f.ty) {
                    ("id", _) => "long",
                    (_, Ty::Int) => "integer",
                    (_, Ty::Num) => "double",
                    (_, Ty::Bool) => "boolean",
                    (_, Ty::Str) => "string",
                    (_, Ty::Date | Ty::Time) => "datetime",
                };
                let values = f.picklist.map(|p| {
                    self.picklist(p)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            json!({
                                "value": v.id.to_string(),
                                "label": v.name,
                                "isDefaultValue": v.is_default_value,
                                "sortOrder": i,
                                "parentValue": "",
                                "isActive": v.is_active,
                                "isSystem": false,
                            })
                        })
                        .collect::<Vec<_>>()
                });
                json!({
                    "name": f.name,
                    "dataType": data_type,
                    "length": f.length,
                    "isRequired": f.required,
                    "isReadOnly": f.read_only,
                    "isQueryable": kind.can_query(),
                    "isReference": f.reference.is_some(),
                    "referenceEntityType": f.reference.unwrap_or(""),
                    "isPickList": f.picklist.is_some(),
                    "picklistValues": values,
                    "picklistParentValueField": "",
                    "isSupportedWebhookField": false,
                })
            })
            .collect();
        json!({ "fields": fields })
    }
}
