//! A strict simulator of the Autotask REST API v1.0 subset Ferry speaks (see the Autotask section
//! of `../shared/psa-api.md`).
//!
//! The one server plays both the zone-discovery host and the zones:
//!
//! - Discovery, no authentication: `GET /atservicesrest/v1.0/zoneInformation?user={apiUser}` ->
//!   `{"zoneName":"America East N","url":"{base}/zoneN/atservicesrest/","webUrl":"{base}/zoneN/","ci":N}`
//!   where `N` is 1 plus the number of zone moves injected ([`super::Fault::MoveZone`]). An
//!   unknown or missing user gets 500 `{"errors":["Zone information could not be determined"]}`.
//! - The API: `{base}/zoneN/atservicesrest/v1.0/...` (paths case-insensitive). Another zone than
//!   the current one answers 401, as a moved tenant does.
//!
//! Every API call needs the headers `ApiIntegrationCode`, `UserName` and `Secret` (unknown user
//! or integration code: 500; wrong secret or expired keys: 401), counts against a rolling hourly
//! request threshold (`GET .../ThresholdInformation`; over it: 429 with `Retry-After`) and a limit
//! of concurrent requests per endpoint ("Thread Threshold Exceeded": 429 with `Retry-After: 1`).
//! Errors always have the shape `{"errors":["message", ...]}`; validation failures are 500s, as
//! Autotask answers them.
//!
//! Entities: Companies, Contracts, Services, ContractServices (created through
//! `POST /Contracts/{id}/Services`), ContractServiceUnits (query-only),
//! ContractServiceAdjustments (create-only, through `POST /Contracts/{id}/ServiceAdjustments`,
//! which moves the units) and Tickets (create with `POST /Tickets`, update with `PATCH /Tickets`).
//! Queries take `{"filter":[...],"MaxRecords":n,"IncludeFields":[...]}` by `POST .../query` or
//! `GET .../query?search=<json>`, answer pages of at most `MaxRecords` items in id order and link
//! the next page with an absolute `nextPageUrl` (`.../{Entity}/query/next?paging=..&search=..`).
//!
//! The code follows the shape of the API: [`data`] is the data file (what `state()` returns),
//! [`fields`] the entities, their fields and how a record reads as cells, [`filters`] the query
//! language and [`paging`] the pages and `nextPageUrl`s, [`responses`] the error shape and
//! request bodies, [`router`] the routes, [`store`] the tables ([`load`] builds them from the
//! data). The requests are handled by entity family: [`query`] (queries, counts, entity and
//! field information), [`contracts`] (contract services and adjustments) and [`tickets`]
//! (tickets and their attachments). This file holds the public type, the admission rules
//! (authentication, thresholds, zones) and the dispatch; it is the only module that depends on
//! the handlers.

mod contracts;
mod data;
mod fields;
mod filters;
mod load;
mod paging;
mod query;
mod responses;
mod router;
mod store;
mod tickets;

pub use data::{
    ATTACHMENT_BYTES_PER_5_MIN, Company, Contract, ContractService, ContractServiceAdjustment,
    ContractServiceUnit, Data, MAX_ATTACHMENT_BYTES, PicklistValue, Service, Ticket,
    TicketAttachment,
};

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{Api, Faults, SimRequest, SimResponse};
use fields::{KINDS, Kind, render};
use responses::{Fail, body, not_allowed};
use router::{Route, ci, route};
use store::{Store, on_table};

/// Every route this simulator serves, as `docs/psa-contract.md` lists them: method and path
/// relative to `.../atservicesrest/v1.0` (entity names as Autotask spells them; the API takes
/// them in any case), `{id}` for ids. `tests/it/psa_contract.rs` holds the table and the router
/// to it.
pub fn routes() -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("GET", "/zoneInformation".to_string()),
        ("GET", "/ThresholdInformation".to_string()),
    ];
    for k in KINDS {
        let e = k.path();
        if k.can_query() {
            for (m, p) in [
                ("GET", "query"),
                ("POST", "query"),
                ("GET", "query/count"),
                ("POST", "query/count"),
                ("POST", "query/next"),
                ("POST", "query/prev"),
            ] {
                out.push((m, format!("/{e}/{p}")));
            }
        }
        for p in [
            "entityInformation",
            "entityInformation/fields",
            "entityInformation/userDefinedFields",
        ] {
            out.push(("GET", format!("/{e}/{p}")));
        }
        if k.can_get() {
            out.push(("GET", format!("/{e}/{{id}}")));
        }
    }
    for (m, p) in [
        ("POST", "/Tickets"),
        ("PATCH", "/Tickets"),
        ("POST", "/Contracts/{id}/Services"),
        ("POST", "/Contracts/{id}/ServiceAdjustments"),
        ("POST", "/Tickets/{id}/Attachments"),
    ] {
        out.push((m, p.to_string()));
    }
    out
}

const HOUR: Duration = Duration::from_secs(3600);

struct Config {
    username: String,
    secret: String,
    integration_code: String,
    hourly_threshold: u32,
    max_concurrent: u32,
    latency: Duration,
}

/// The simulated Autotask API.
pub struct Autotask {
    config: Config,
    store: Mutex<Store>,
    /// When the requests of the last hour were admitted (oldest first).
    window: Mutex<VecDeque<Instant>>,
    /// Requests in flight per endpoint.
    in_flight: Mutex<HashMap<Kind, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds one in-flight slot of an endpoint until dropped.
struct Slot<'a> {
    map: &'a Mutex<HashMap<Kind, u32>>,
    kind: Kind,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(self.map).get_mut(&self.kind) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Autotask {
    /// Builds the simulator from its data, checking ids are unique and references exist.
    pub fn new(data: Data) -> Result<Self, String> {
        if data.username.trim().is_empty() {
            return Err("username is empty".into());
        }
        if data.hourly_threshold == 0 {
            return Err("hourlyThreshold must be at least 1".into());
        }
        if data.max_concurrent_per_endpoint == 0 {
            return Err("maxConcurrentPerEndpoint must be at least 1".into());
        }
        let config = Config {
            username: data.username.clone(),
            secret: data.secret.clone(),
            integration_code: data.integration_code.clone(),
            hourly_threshold: data.hourly_threshold,
            max_concurrent: data.max_concurrent_per_endpoint,
            latency: Duration::from_millis(data.latency_millis),
        };
        Ok(Autotask {
            config,
            store: Mutex::new(Store::load(data)?),
            window: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    fn zone_information(&self, req: &SimRequest, zone: u32, base_url: &str) -> Result<Value, Fail> {
        match req.param("user") {
            Some(user) if user.trim().eq_ignore_ascii_case(&self.config.username) => Ok(json!({
                "zoneName": format!("America East {zone}"),
                "url": format!("{base_url}/zone{zone}/atservicesrest/"),
                "webUrl": format!("{base_url}/zone{zone}/"),
                "ci": zone,
            })),
            _ => Err(Fail::new(500, "Zone information could not be determined")),
        }
    }

    fn authenticate(&self, req: &SimRequest, faults: &Faults) -> Result<(), Fail> {
        let user = req.header("username").unwrap_or("").trim();
        if user.is_empty() {
            return Err(Fail::new(
                500,
                "The UserName header is missing; send ApiIntegrationCode, UserName and Secret.",
            ));
        }
        if !user.eq_ignore_ascii_case(&self.config.username) {
            return Err(Fail::new(
                500,
                format!("Unable to find an API user named {user}."),
            ));
        }
        if req.header("apiintegrationcode").map(str::trim)
            != Some(self.config.integration_code.as_str())
        {
            return Err(Fail::new(
                500,
                "The ApiIntegrationCode header is missing or is not a valid integration code.",
            ));
        }
        if faults.keys_expired || req.header("secret") != Some(self.config.secret.as_str()) {
            return Err(Fail::new(
                401,
                "Authentication failed: the user name or secret is not valid.",
            ));
        }
        Ok(())
    }

    /// Counts a request against the rolling hourly threshold, or refuses it.
    fn admit(&self) -> Result<(), Fail> {
        let mut window = lock(&self.window);
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        if window.len() >= self.config.hourly_threshold as usize {
            let oldest = window.front().copied().unwrap_or(now);
            let wait = HOUR.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Fail {
                status: 429,
                errors: vec![format!(
                    "The external request threshold of {} requests per 60 minutes has been exceeded; retry in {} seconds.",
                    self.config.hourly_threshold,
                    secs.max(1)
                )],
                retry_after: Some(secs.max(1)),
            });
        }
        window.push_back(now);
        Ok(())
    }

    fn threshold_information(&self) -> Value {
        let mut window = lock(&self.window);
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        json!({
            "externalRequestThreshold": self.config.hourly_threshold,
            "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": window.len(),
        })
    }

    /// Takes an in-flight slot of `kind`'s endpoint, or refuses the request.
    fn enter(&self, kind: Kind) -> Result<Slot<'_>, Fail> {
        let mut map = lock(&self.in_flight);
        let n = map.entry(kind).or_insert(0);
        if *n >= self.config.max_concurrent {
            return Err(Fail {
                status: 429,
                errors: vec![format!(
                    "Thread Threshold Exceeded: more than {} concurrent requests to the {} endpoint.",
                    self.config.max_concurrent,
                    kind.path()
                )],
                retry_after: Some(1),
            });
        }
        *n += 1;
        Ok(Slot {
            map: &self.in_flight,
            kind,
        })
    }

    fn serve(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> Result<Value, Fail> {
        let method = req.method.to_ascii_uppercase();
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let zone_of = |s: &str| {
            s.get(..4)
                .filter(|p| p.eq_ignore_ascii_case("zone"))
                .and_then(|_| s[4..].parse::<u32>().ok())
        };
        let (zone, rest) = match segments.as_slice() {
            [root, version, rest @ ..] if ci(root, "atservicesrest") && ci(version, "v1.0") => {
                (None, rest)
            }
            [z, root, version, rest @ ..]
                if ci(root, "atservicesrest") && ci(version, "v1.0") && zone_of(z).is_some() =>
            {
                (zone_of(z), rest)
            }
            _ => {
                return Err(Fail::new(
                    404,
                    format!(
                        "No HTTP resource was found that matches {}. The API lives under {base_url}/zoneN/atservicesrest/v1.0/ (see zoneInformation).",
                        req.path
                    ),
                ));
            }
        };
        let current = faults.zone_moves.saturating_add(1);
        if let [one] = rest
            && ci(one, "zoneInformation")
        {
            return match method.as_str() {
                "GET" => self.zone_information(req, current, base_url),
                _ => Err(not_allowed(&method, None)),
            };
        }
        let Some(zone) = zone else {
            return Err(Fail::new(
                404,
                format!(
                    "Only zoneInformation is served here; the API lives under the zone URL ({base_url}/zone{current}/atservicesrest/v1.0/)."
                ),
            ));
        };
        if zone != current {
            return Err(Fail::new(
                401,
                format!(
                    "The user is not authorized in zone {zone}; look the zone up again (zoneInformation)."
                ),
            ));
        }
        self.authenticate(req, faults)?;
        if let [one] = rest
            && ci(one, "ThresholdInformation")
        {
            return match method.as_str() {
                "GET" => Ok(self.threshold_information()),
                _ => Err(not_allowed(&method, None)),
            };
        }
        self.admit()?;
        let route = route(&method, rest)?;
        if matches!(method.as_str(), "POST" | "PATCH" | "PUT")
            && !req.body.iter().all(u8::is_ascii_whitespace)
            && !req.header("content-type").is_some_and(|c| {
                c.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
        {
            return Err(Fail::new(
                415,
                format!(
                    "The request entity's media type '{}' is not supported for this resource; send Content-Type: application/json.",
                    req.header("content-type").unwrap_or("")
                ),
            ));
        }
        let _slot = self.enter(route.endpoint())?;
        if !self.config.latency.is_zero() {
            std::thread::sleep(self.config.latency);
        }
        let api_base = format!("{base_url}/zone{zone}/atservicesrest/v1.0");
        lock(&self.store).dispatch(route, req, &api_base)
    }
}

impl Api for Autotask {
    fn handle(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse {
        match self.serve(req, faults, base_url.trim_end_matches('/')) {
            Ok(body) => SimResponse::json(200, &body),
            Err(fail) => fail.response(),
        }
    }

    fn error(&self, status: u16, message: &str) -> SimResponse {
        SimResponse::json(status, &json!({ "errors": [message] }))
    }

    fn state(&self) -> Value {
        let s = lock(&self.store);
        json!({
            "username": self.config.username,
            "secret": self.config.secret,
            "integrationCode": self.config.integration_code,
            "hourlyThreshold": self.config.hourly_threshold,
            "maxConcurrentPerEndpoint": self.config.max_concurrent,
            "latencyMillis": self.config.latency.as_millis() as u64,
            "companies": s.companies.values().collect::<Vec<_>>(),
            "contracts": s.contracts.values().collect::<Vec<_>>(),
            "services": s.services.values().collect::<Vec<_>>(),
            "contractServices": s.contract_services.values().collect::<Vec<_>>(),
            "contractServiceUnits": s.units.values().collect::<Vec<_>>(),
            "contractServiceAdjustments": s.adjustments.values().collect::<Vec<_>>(),
            "queues": s.queues,
            "ticketStatuses": s.statuses,
            "ticketPriorities": s.priorities,
            "tickets": s.tickets.values().collect::<Vec<_>>(),
            "ticketAttachments": s.attachments.values().collect::<Vec<_>>(),
        })
    }
}

impl Store {
    fn dispatch(&mut self, route: Route, req: &SimRequest, api_base: &str) -> Result<Value, Fail> {
        match route {
            Route::Query(kind, mode) => self.query(kind, mode, req, api_base),
            Route::Get(kind, id) => {
                let item =
                    on_table!(self, kind, rows => rows.get(&id).map(|r| render(kind, r, None)));
                Ok(json!({ "item": item }))
            }
            Route::CreateTicket => self.create_ticket(&body(req)?),
            Route::UpdateTicket => self.update_ticket(&body(req)?),
            Route::CreateContractService(contract) => {
                self.create_contract_service(contract, &body(req)?)
            }
            Route::CreateAdjustment(contract) => self.create_adjustment(contract, &body(req)?),
            Route::CreateTicketAttachment(ticket) => {
                self.create_ticket_attachment(ticket, &body(req)?)
            }
            Route::EntityInfo(kind) => Ok(json!({
                "info": {
                    "name": kind.singular(),
                    "canCreate": kind.can_create(),
                    "canDelete": false,
                    "canQuery": kind.can_query(),
                    "canUpdate": kind.can_update(),
                    "hasUserDefinedFields": kind.has_udfs(),
                    "supportsWebhookCallouts": false,
                }
            })),
            Route::FieldsInfo(kind) => Ok(self.fields_info(kind)),
            Route::UdfInfo(_) => Ok(json!({ "fields": [] })),
        }
    }
}

#[cfg(test)]
mod tests;
