//! A strict simulator of the ConnectWise Manage REST API 3.0 subset Ferry speaks
//! (`../shared/psa-api.md`, "ConnectWise Manage").
//!
//! Routes (everything under `/{codebase}apis/3.0/` answers for the configured codebase and for
//! `v4_6_release/`):
//!
//! - `GET /login/companyinfo/{companyId}`: codebase discovery, no authentication.
//! - `company/companies`, `finance/agreements`, `service/boards`, `procurement/catalog` (the
//!   products): `GET` list, `GET .../count`, `GET .../{id}`.
//! - `finance/agreements/{id}/additions`: the same, plus `POST` (create) and
//!   `PATCH .../{addId}` (JSON Patch `replace`).
//! - `service/tickets`: the same, plus `POST` and `PATCH .../{id}`.
//! - `company/companies/statuses` and `service/boards/{id}/statuses`: the tenant's company
//!   statuses (`inactiveFlag`) and each board's own ticket statuses (`closedStatus`). A ticket's
//!   status must be one of its board's: any other name or id is refused, as the real service
//!   refuses it (ConnectPyse `service/board_status.py`; `docs/psa-contract.md`).
//! - `service/tickets/{id}/notes`: `GET` list and `POST` (a note on a ticket).
//! - `system/documents`: `GET` list (`recordType`, `recordId`), `POST` as
//!   `multipart/form-data` only (a JSON body is 415, as the developer guide says),
//!   `GET .../{id}` and `GET .../{id}/download` (the bytes).
//!
//! Every API call needs HTTP Basic `{companyId}+{publicKey}:{privateKey}` and the `clientId`
//! header. Lists take `conditions` (parsed by a real tokenizer and recursive-descent parser,
//! evaluated against each record's API JSON), `orderBy`, `fields`, `page`/`pageSize` (or
//! forward-only paging with `pageId`) and answer a `Link` header. String comparisons are
//! case-insensitive, as the real service's SQL collation makes them.
//!
//! The code follows the shape of the API: [`data`] is the data file (what `state()` returns),
//! [`dates`], [`fields`] and [`conditions`] the resource schemas and the `conditions` language,
//! [`responses`] the error shapes and paging links, [`state`] the simulator's indexed state
//! ([`load`] builds it from the data), [`render`] the records in the API's shape and [`lists`]
//! the list, count and get requests. The writes live with their resource family:
//! [`agreements`] (additions), [`tickets`] (tickets, notes, board statuses) and [`documents`]
//! (uploads and downloads). This file holds the public type and the request dispatch; it is the
//! only module that depends on the handlers.

mod agreements;
mod conditions;
mod data;
mod dates;
mod documents;
mod fields;
mod lists;
mod load;
mod render;
mod responses;
mod state;
mod tickets;

pub use data::{
    Addition, Agreement, Board, BoardStatus, Company, CompanyStatus, Data, Document, Product,
    RateLimit, Ticket, TicketNote,
};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{Api, Faults, SimRequest, SimResponse, base64_decode};
use fields::Res;
use lists::project;
use responses::{body_object, error_json, method_not_allowed, not_found, patch_ops};
use state::Inner;

/// The legacy codebase every site also answers on.
const LEGACY_CODEBASE: &str = "v4_6_release";

/// The collections served, each with `GET`, `GET .../count` and `GET .../{id}` (paths
/// relative to `/{codebase}apis/3.0`).
const COLLECTIONS: [&str; 10] = [
    "company/companies",
    "company/companies/statuses",
    "finance/agreements",
    "finance/agreements/{id}/additions",
    "service/tickets",
    "service/tickets/{id}/notes",
    "service/boards",
    "service/boards/{id}/statuses",
    "procurement/catalog",
    "system/documents",
];

/// Every route this simulator serves, as `docs/psa-contract.md` lists them: method and path
/// (relative to `/{codebase}apis/3.0`, except discovery), `{...}` for ids.
/// `tests/it/psa_contract.rs` holds the table and the router to it.
pub fn routes() -> Vec<(&'static str, String)> {
    let mut out = vec![("GET", "/login/companyinfo/{companyId}".to_string())];
    for c in COLLECTIONS {
        out.push(("GET", format!("/{c}")));
        out.push(("GET", format!("/{c}/count")));
        out.push(("GET", format!("/{c}/{{id}}")));
    }
    for (method, path) in [
        ("POST", "/finance/agreements/{id}/additions"),
        ("PATCH", "/finance/agreements/{id}/additions/{id}"),
        ("POST", "/service/tickets"),
        ("PATCH", "/service/tickets/{id}"),
        ("POST", "/service/tickets/{id}/notes"),
        ("POST", "/system/documents"),
        ("GET", "/system/documents/{id}/download"),
    ] {
        out.push((method, path.to_string()));
    }
    out
}

/// The simulated API.
pub struct ConnectWise {
    inner: Mutex<Inner>,
}

impl ConnectWise {
    /// Builds the simulator from its data, checking ids are unique and references resolve.
    pub fn new(data: Data) -> Result<ConnectWise, String> {
        Ok(ConnectWise {
            inner: Mutex::new(Inner::load(data)?),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Api for ConnectWise {
    fn handle(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        let mut inner = self.lock();
        if let Some(refused) = inner.throttle() {
            return refused;
        }
        inner.handle(req, faults, base_url)
    }

    fn error(&self, status: u16, message: &str) -> SimResponse {
        error_json(status, "ConnectWiseApi", message)
    }

    fn state(&self) -> Value {
        serde_json::to_value(&self.lock().data).unwrap_or(Value::Null)
    }
}

impl Inner {
    /// 429 when the configured rate limit is exhausted; otherwise counts the request.
    fn throttle(&mut self) -> Option<SimResponse> {
        let rl = self.data.rate_limit.as_ref()?;
        if rl.requests == 0 {
            return None;
        }
        let window = Duration::from_secs(rl.per_seconds);
        let now = Instant::now();
        while self.window.front().is_some_and(|t| *t + window <= now) {
            self.window.pop_front();
        }
        if self.window.len() >= rl.requests as usize {
            let free_at = self.window.front().map_or(now, |t| *t + window);
            let wait = free_at.saturating_duration_since(now);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            return Some(
                error_json(
                    429,
                    "ConnectWiseApi",
                    &format!(
                        "Request limit of {} per {} seconds exceeded; retry after {secs} seconds",
                        rl.requests, rl.per_seconds
                    ),
                )
                .with_header("retry-after", secs.to_string()),
            );
        }
        self.window.push_back(now);
        None
    }

    fn handle(&mut self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() >= 2
            && segs[0].eq_ignore_ascii_case("login")
            && segs[1].eq_ignore_ascii_case("companyinfo")
        {
            return self.company_info(req, &segs[2..]);
        }
        let is_api = segs.len() >= 3
            && (segs[0].eq_ignore_ascii_case(&self.codebase)
                || segs[0].eq_ignore_ascii_case(LEGACY_CODEBASE))
            && segs[1].eq_ignore_ascii_case("apis")
            && segs[2] == "3.0";
        if !is_api {
            return not_found(&format!(
                "No route for {} (expected /{}apis/3.0/...)",
                req.path, self.data.codebase
            ));
        }
        if let Err(refused) = self.authenticate(req, faults) {
            return refused;
        }
        let lower: Vec<String> = segs[3..].iter().map(|s| s.to_ascii_lowercase()).collect();
        let rest: Vec<&str> = lower.iter().map(String::as_str).collect();
        let unknown = || not_found(&format!("The resource {} was not found", req.path));
        let (res, tail) = match rest.as_slice() {
            ["company", "companies", "statuses", tail @ ..] => (Res::CompanyStatus, tail),
            ["company", "companies", tail @ ..] => (Res::Company, tail),
            ["service", "boards", id, "statuses", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.board_ix.contains_key(&id) {
                    return not_found(&format!("Board with id {id} was not found"));
                }
                (Res::BoardStatus(id), tail)
            }
            ["service", "tickets", id, "notes", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.ticket_ix.contains_key(&id) {
                    return not_found(&format!("Ticket with id {id} was not found"));
                }
                (Res::TicketNote(id), tail)
            }
            ["system", "documents", tail @ ..] => (Res::Document, tail),
            ["finance", "agreements", id, "additions", tail @ ..] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                if !self.agreement_ix.contains_key(&id) {
                    return not_found(&format!("Agreement with id {id} was not found"));
                }
                (Res::Addition(id), tail)
            }
            ["finance", "agreements", tail @ ..] => (Res::Agreement, tail),
            ["service", "tickets", tail @ ..] => (Res::Ticket, tail),
            ["service", "boards", tail @ ..] => (Res::Board, tail),
            ["procurement", "catalog", tail @ ..] => (Res::Product, tail),
            _ => return unknown(),
        };
        let method = req.method.as_str();
        match tail {
            [] => match method {
                "GET" => self.list(res, req, base_url, None, None),
                "POST" if res.creatable() => self.create(res, req),
                _ => method_not_allowed(method, if res.creatable() { "GET, POST" } else { "GET" }),
            },
            [id, download] if res == Res::Document && *download == "download" => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                match method {
                    "GET" => self.download(id),
                    _ => method_not_allowed(method, "GET"),
                }
            }
            ["count"] => match method {
                "GET" => self.count(res, req),
                _ => method_not_allowed(method, "GET"),
            },
            [id] => {
                let Ok(id) = id.parse::<i64>() else {
                    return unknown();
                };
                match method {
                    "GET" => match (self.record(res, id), Self::fields(res, req)) {
                        (_, Err(refused)) => refused,
                        (Some(r), Ok(Some(fields))) => {
                            SimResponse::json(200, &project(&r, &fields))
                        }
                        (Some(r), Ok(None)) => SimResponse::json(200, &r),
                        (None, _) => self.missing(res, id),
                    },
                    "PATCH" if res.writable() => self.patch(res, id, req),
                    _ => method_not_allowed(
                        method,
                        if res.writable() { "GET, PATCH" } else { "GET" },
                    ),
                }
            }
            _ => unknown(),
        }
    }

    /// `GET /login/companyinfo/{companyId}`.
    fn company_info(&self, req: &SimRequest, rest: &[&str]) -> SimResponse {
        if req.method != "GET" {
            return method_not_allowed(&req.method, "GET");
        }
        match rest {
            [company] if company.eq_ignore_ascii_case(&self.data.company_id) => SimResponse::json(
                200,
                &json!({
                    "CompanyName": self.data.company_name.clone().unwrap_or_else(|| self.data.company_id.clone()),
                    "Codebase": self.data.codebase,
                    "VersionCode": "v2025.1",
                    "VersionNumber": "v2025.1.12345",
                    "CompanyID": self.data.company_id,
                    "IsCloud": self.data.cloud,
                }),
            ),
            [company] => not_found(&format!("Company {company} was not found")),
            _ => not_found(&format!("No route for {}", req.path)),
        }
    }

    /// Basic credentials, then the `clientId` header.
    fn authenticate(&self, req: &SimRequest, faults: &Faults) -> Result<(), SimResponse> {
        let refused = || {
            error_json(
                if self.data.cloud { 404 } else { 401 },
                "ConnectWiseApi",
                "UserNotAuthenticated",
            )
        };
        if faults.keys_expired {
            return Err(refused());
        }
        let decoded = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest)
            })
            .and_then(base64_decode)
            .and_then(|b| String::from_utf8(b).ok());
        let Some(decoded) = decoded else {
            return Err(refused());
        };
        let ok = decoded
            .split_once(':')
            .and_then(|(user, password)| {
                let (company, public) = user.split_once('+')?;
                Some(
                    company.eq_ignore_ascii_case(&self.data.company_id)
                        && public == self.data.public_key
                        && password == self.data.private_key,
                )
            })
            .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        match req.header("clientid").map(str::trim) {
            None | Some("") => Err(error_json(
                401,
                "Unauthorized",
                "ClientId header is required",
            )),
            Some(id) if id.eq_ignore_ascii_case(&self.data.client_id) => Ok(()),
            Some(_) => Err(error_json(401, "Unauthorized", "ClientId is not valid")),
        }
    }

    fn create(&mut self, res: Res, req: &SimRequest) -> SimResponse {
        if res == Res::Document {
            return self.create_document(req);
        }
        let body = match body_object(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        match res {
            Res::Addition(agreement) => self.create_addition(agreement, &body),
            Res::Ticket => self.create_ticket(&body),
            Res::TicketNote(ticket) => self.create_note(ticket, &body),
            _ => method_not_allowed("POST", "GET"),
        }
    }

    fn patch(&mut self, res: Res, id: i64, req: &SimRequest) -> SimResponse {
        let index = match res {
            Res::Addition(agreement) => self
                .addition_ix
                .get(&id)
                .copied()
                .filter(|&i| self.data.additions[i].agreement_id == agreement),
            Res::Ticket => self.ticket_ix.get(&id).copied(),
            _ => None,
        };
        let Some(index) = index else {
            return self.missing(res, id);
        };
        let ops = match patch_ops(req, res) {
            Ok(ops) => ops,
            Err(r) => return r,
        };
        match res {
            Res::Addition(_) => self.patch_addition(index, &ops),
            _ => self.patch_ticket(index, &ops),
        }
    }
}

#[cfg(test)]
mod tests;
