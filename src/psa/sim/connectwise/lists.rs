//! The ConnectWise read requests: a collection's records narrowed by its indexes, one record
//! by id, and lists and counts with `conditions`, `orderBy`, `fields` and both kinds of paging.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::super::api::{SimRequest, SimResponse};
use super::conditions::{Cond, Lit, Op, cmp_json, eval, parse_conditions};
use super::fields::{Res, Ty, field, get_path, id_of};
use super::responses::{bad_param, page_url};
use super::state::Inner;

/// `pageSize` when none is given.
const DEFAULT_PAGE_SIZE: usize = 25;
/// The largest `pageSize` accepted.
const MAX_PAGE_SIZE: usize = 1000;

/// What a list request asks for.
struct ListQuery {
    cond: Option<Cond>,
    order: Vec<(&'static str, bool)>,
    fields: Option<Vec<&'static str>>,
    page: usize,
    page_size: usize,
    /// `Some(pageId)` with forward-only paging.
    forward_after: Option<i64>,
}

impl Inner {
    /// Every record of a collection, in the API's shape.
    /// The records of a collection that may match `cond`: all of them, or, when `cond` requires
    /// an indexed field to equal a value (`id`, a company's `identifier`, `company/id`), only
    /// those with that value. `cond` still has to be evaluated on each.
    fn records(&self, res: Res, cond: Option<&Cond>) -> Vec<&Value> {
        let v = &self.views;
        let group =
            |g: &HashMap<i64, Vec<usize>>, key: i64| g.get(&key).cloned().unwrap_or_default();
        let narrowed: Option<Vec<usize>> = cond.and_then(|c| {
            let conjuncts: &[Cond] = match c {
                Cond::And(items) => items,
                single => std::slice::from_ref(single),
            };
            conjuncts.iter().find_map(|c| {
                let Cond::Cmp {
                    field,
                    op: Op::Eq,
                    values,
                } = c
                else {
                    return None;
                };
                let number = match values.as_slice() {
                    [Lit::Num(n)] if n.fract() == 0.0 => Some(*n as i64),
                    _ => None,
                };
                let text = match values.as_slice() {
                    [Lit::Str(s)] => Some(s.as_str()),
                    _ => None,
                };
                let found = |ix: Option<&usize>| ix.map(|&i| vec![i]).unwrap_or_default();
                match (res, *field) {
                    (Res::Company, "id") => Some(found(self.company_ix.get(&number?))),
                    (Res::Company, "identifier") => Some(found(self.company_by_ident.get(text?))),
                    (Res::Agreement, "id") => Some(found(self.agreement_ix.get(&number?))),
                    (Res::Agreement, "company/id") => {
                        Some(group(&self.agreements_by_company, number?))
                    }
                    (Res::Ticket, "id") => Some(found(self.ticket_ix.get(&number?))),
                    (Res::Ticket, "company/id") => Some(group(&self.tickets_by_company, number?)),
                    (Res::Addition(_), "id") => Some(found(self.addition_ix.get(&number?))),
                    _ => None,
                }
            })
        });
        let list: &[Value] = match res {
            Res::Company => &v.companies,
            Res::Agreement => &v.agreements,
            Res::Addition(agreement) => {
                let mine =
                    (self.additions_by_agreement.get(&agreement)).map_or(&[][..], Vec::as_slice);
                let ids = narrowed.unwrap_or_else(|| mine.to_vec());
                return ids
                    .into_iter()
                    .filter(|&i| self.data.additions[i].agreement_id == agreement)
                    .map(|i| &v.additions[i])
                    .collect();
            }
            Res::Ticket => &v.tickets,
            Res::Board => &v.boards,
            Res::Product => &v.products,
            Res::CompanyStatus => &v.company_statuses,
            Res::Document => &v.documents,
            Res::BoardStatus(board) => {
                return (v.board_statuses.iter())
                    .filter(|r| get_path(r, "board/id").and_then(Value::as_i64) == Some(board))
                    .collect();
            }
            Res::TicketNote(ticket) => {
                return (v.notes.iter())
                    .filter(|r| r.get("ticketId").and_then(Value::as_i64) == Some(ticket))
                    .collect();
            }
        };
        match narrowed {
            Some(ids) => ids.into_iter().map(|i| &list[i]).collect(),
            None => list.iter().collect(),
        }
    }

    pub(super) fn record(&self, res: Res, id: i64) -> Option<Value> {
        let v = &self.views;
        let found = match res {
            Res::Company => self.company_ix.get(&id).map(|&i| &v.companies[i]),
            Res::Agreement => self.agreement_ix.get(&id).map(|&i| &v.agreements[i]),
            Res::Addition(agreement) => self
                .addition_ix
                .get(&id)
                .filter(|&&i| self.data.additions[i].agreement_id == agreement)
                .map(|&i| &v.additions[i]),
            Res::Ticket => self.ticket_ix.get(&id).map(|&i| &v.tickets[i]),
            Res::Board => self.board_ix.get(&id).map(|&i| &v.boards[i]),
            Res::Product => self.product_ix.get(&id).map(|&i| &v.products[i]),
            Res::CompanyStatus | Res::BoardStatus(_) | Res::TicketNote(_) | Res::Document => {
                self.records(res, None).into_iter().find(|r| id_of(r) == id)
            }
        };
        found.cloned()
    }

    /// The `fields` parameter: the listed fields' canonical paths, if any.
    pub(super) fn fields(
        res: Res,
        req: &SimRequest,
    ) -> Result<Option<Vec<&'static str>>, SimResponse> {
        let Some(list) = req.param("fields").map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some((path, _)) = field(res.schema(), name) else {
                return Err(bad_param(
                    res,
                    "fields",
                    &format!("unknown field '{name}' for {}", res.name()),
                ));
            };
            out.push(path);
        }
        Ok(Some(out))
    }

    /// Reads the list parameters; `conditions` and `order_by` from a search body win over the
    /// query's (the query's conditions are and-ed with the body's).
    fn list_query(
        res: Res,
        req: &SimRequest,
        body_conditions: Option<&str>,
        body_order: Option<&str>,
    ) -> Result<ListQuery, SimResponse> {
        for unsupported in ["childConditions", "customFieldConditions"] {
            if req.param(unsupported).is_some_and(|v| !v.trim().is_empty()) {
                return Err(bad_param(
                    res,
                    unsupported,
                    "is not supported by the simulator",
                ));
            }
        }
        let forward = match req.header("pagination-type").map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("forward-only") => true,
            Some(v) => {
                return Err(bad_param(
                    res,
                    "pagination-type",
                    &format!("\"{v}\" is not a pagination type (use forward-only)"),
                ));
            }
        };
        let page_size = match req.param("pageSize").map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 1 && n as usize <= MAX_PAGE_SIZE => n as usize,
                Ok(n) if n > 0 => {
                    return Err(bad_param(
                        res,
                        "pageSize",
                        &format!("{n} is over the maximum page size of {MAX_PAGE_SIZE}"),
                    ));
                }
                _ => {
                    return Err(bad_param(
                        res,
                        "pageSize",
                        &format!("\"{s}\" is not a page size from 1 to {MAX_PAGE_SIZE}"),
                    ));
                }
            },
        };
        let page = if forward {
            1
        } else {
            match req.param("page").map(str::trim) {
                None | Some("") => 1,
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(bad_param(
                            res,
                            "page",
                            &format!("\"{s}\" is not a page number (pages start at 1)"),
                        ));
                    }
                },
            }
        };
        let forward_after = match (forward, req.param("pageId").map(str::trim)) {
            (false, Some(_)) => {
                return Err(bad_param(
                    res,
                    "pageId",
                    "pageId needs the header pagination-type: forward-only",
                ));
            }
            (false, None) => None,
            (true, None | Some("")) => Some(0),
            (true, Some(s)) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => return Err(bad_param(res, "pageId", &format!("\"{s}\" is not an id"))),
            },
        };

        let order_text = body_order.or(req.param("orderBy")).unwrap_or("").trim();
        if forward && !order_text.is_empty() {
            return Err(bad_param(
                res,
                "orderBy",
                "orderBy cannot be used with forward-only pagination (results come in id order)",
            ));
        }
        let mut order = Vec::new();
        for part in order_text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or("");
            let desc = match words.next() {
                None => false,
                Some(d) if d.eq_ignore_ascii_case("asc") => false,
                Some(d) if d.eq_ignore_ascii_case("desc") => true,
                Some(d) => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("\"{d}\" is not a direction (asc or desc)"),
                    ));
                }
            };
            if words.next().is_some() {
                return Err(bad_param(
                    res,
                    "orderBy",
                    &format!("\"{part}\" is not \"field asc|desc\""),
                ));
            }
            match field(res.schema(), name) {
                Some((path, ty)) if !matches!(ty, Ty::Obj | Ty::Arr) => order.push((path, desc)),
                Some((path, _)) => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("{path} is not a sortable field"),
                    ));
                }
                None => {
                    return Err(bad_param(
                        res,
                        "orderBy",
                        &format!("unknown field '{name}' for {}", res.name()),
                    ));
                }
            }
        }

        let fields = Self::fields(res, req)?;

        let query_conditions = req.param("conditions").filter(|c| !c.trim().is_empty());
        let text = match (
            query_conditions,
            body_conditions.filter(|c| !c.trim().is_empty()),
        ) {
            (Some(q), Some(b)) => Some(format!("({q}) and ({b})")),
            (Some(c), None) | (None, Some(c)) => Some(c.to_string()),
            (None, None) => None,
        };
        let cond = match text {
            Some(t) => parse_conditions(&t, res).map_err(|e| bad_param(res, "conditions", &e))?,
            None => None,
        };
        Ok(ListQuery {
            cond,
            order,
            fields,
            page,
            page_size,
            forward_after,
        })
    }

    pub(super) fn list(
        &self,
        res: Res,
        req: &SimRequest,
        base_url: &str,
        body_conditions: Option<&str>,
        body_order: Option<&str>,
    ) -> SimResponse {
        let q = match Self::list_query(res, req, body_conditions, body_order) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let mut rows: Vec<&Value> = self
            .records(res, q.cond.as_ref())
            .into_iter()
            .filter(|r| q.cond.as_ref().is_none_or(|c| eval(c, r)))
            .collect();
        if res == Res::Document {
            // `recordType` and `recordId` narrow documents to one record's.
            if let Some(t) = req.param("recordType") {
                rows.retain(|r| {
                    r["recordType"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                });
            }
            if let Some(id) = req.param("recordId") {
                let id = id.trim().parse::<i64>().ok();
                rows.retain(|r| r["recordId"].as_i64() == id);
            }
        }
        let mut links = Vec::new();
        if let Some(after) = q.forward_after {
            rows.retain(|r| id_of(r) > after);
            rows.sort_by_key(|r| id_of(r));
            let more = rows.len() > q.page_size;
            rows.truncate(q.page_size);
            if more && let Some(last) = rows.last() {
                let url = page_url(
                    base_url,
                    req,
                    &["page"],
                    ("pageId", id_of(last).to_string()),
                );
                links.push(format!("<{url}>; rel=\"next\""));
            }
        } else {
            rows.sort_by(|a, b| {
                for (path, desc) in &q.order {
                    let o = cmp_json(
                        get_path(a, path).unwrap_or(&Value::Null),
                        get_path(b, path).unwrap_or(&Value::Null),
                    );
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                id_of(a).cmp(&id_of(b))
            });
            let last_page = rows.len().div_ceil(q.page_size).max(1);
            let start = (q.page - 1).saturating_mul(q.page_size);
            rows = rows.into_iter().skip(start).take(q.page_size).collect();
            if q.page < last_page {
                let url = page_url(base_url, req, &[], ("page", (q.page + 1).to_string()));
                links.push(format!("<{url}>; rel=\"next\""));
            }
            let url = page_url(base_url, req, &[], ("page", last_page.to_string()));
            links.push(format!("<{url}>; rel=\"last\""));
        }
        let rows: Vec<Value> = match &q.fields {
            Some(fields) => rows.iter().map(|r| project(r, fields)).collect(),
            None => rows.into_iter().cloned().collect(),
        };
        let response = SimResponse::json(200, &Value::Array(rows));
        if links.is_empty() {
            response
        } else {
            response.with_header("link", links.join(", "))
        }
    }

    pub(super) fn count(&self, res: Res, req: &SimRequest) -> SimResponse {
        let cond = match req.param("conditions") {
            Some(text) => match parse_conditions(text, res) {
                Ok(c) => c,
                Err(e) => return bad_param(res, "conditions", &e),
            },
            None => None,
        };
        let n = self
            .records(res, cond.as_ref())
            .into_iter()
            .filter(|r| cond.as_ref().is_none_or(|c| eval(c, r)))
            .count();
        SimResponse::json(200, &json!({"count": n}))
    }
}

/// Only the listed fields of a record (nested paths build nested objects).
pub(super) fn project(record: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for path in fields {
        let Some(v) = get_path(record, path) else {
            continue;
        };
        let mut target = &mut out;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                target.insert(part.to_string(), v.clone());
            } else {
                let entry = target
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(m) = entry else { break };
                target = m;
            }
        }
    }
    Value::Object(out)
}
