//! The Autotask REST API v1.0 client (`../shared/psa-api.md`): companies, contracts, services,
//! contract services and their units, tickets.
//!
//! - Zone: `GET {zone_discovery_url}?user={username}` (no authentication) gives the zone URL;
//!   the API base is `{url}v1.0/`. It is looked up on first use and again, once, when an API
//!   call answers 401 (a tenant moved to another zone); a second 401 is an authentication
//!   failure, reported without the secret. Concurrent 401s share one re-discovery.
//! - Every call carries `ApiIntegrationCode`, `UserName`, `Secret` (sensitive headers) and
//!   `Content-Type: application/json`.
//! - Queries: `POST {Entity}/query` with `{"filter":[...],"MaxRecords":500}`, then a `POST`
//!   of the same body to each `pageDetails.nextPageUrl` until it is null (the paging URL
//!   answers GET with 405; `docs/psa-contract.md`). The next-page URL is rebased onto the
//!   current zone's API base (the part after `/v1.0/` is kept), so the credentials only ever
//!   go to the discovered zone.
//! - Whole units: `unitChange` and `units` are 32-bit integers; callers round first.
//! - Text fields are cut to their documented lengths (ticket `title` 255, `description`
//!   8000 characters) rather than refused.
//! - Ticket attachments: `POST Tickets/{id}/Attachments` with base64 `data`; a file over
//!   [`MAX_ATTACHMENT_BYTES`] is refused before it is sent.
//! - At most [`MAX_CONCURRENT_PER_ENDPOINT`] requests per endpoint are on the wire at once
//!   (Autotask's thread limit). The endpoint of a path is its entity: the first segment after
//!   `v1.0/` (`Companies/query` -> `Companies`, `Tickets/entityInformation/fields` ->
//!   `Tickets`), and for a child collection `{Parent}/{id}/{Child}` the child entity, named
//!   as Autotask names it: the parent's singular followed by the child
//!   (`Contracts/7/Services` -> `ContractServices`, `Contracts/7/ServiceAdjustments` ->
//!   `ContractServiceAdjustments`). Compared case-insensitively.
//! - Dates: query literals and `effectiveDate` are `YYYY-MM-DD`; to find the units period
//!   containing a day, the filter is `startDate lte "{day}T23:59:59"` and
//!   `endDate gte "{day}"` (correct whether the server compares datetimes or ISO strings,
//!   and whether it stores dates with or without a time), and the row is checked again here.
//!   `dueDateTime` is RFC 3339 UTC (`2026-11-22T10:00:00Z`).
//! - Retries: see [`crate::psa::http`] and [`autotask_retryable`]: Autotask answers validation
//!   failures with 500, so a 500 is retried only when its body does not read as one.
//!
//! The parts: [`client`] (configuration, requests, queries, the retry rule), [`zone`] (zone
//! discovery), [`gates`] (the per-endpoint thread limit), [`companies`] (companies and
//! contracts), [`services`] (the usage push: services, contract services, units),
//! [`picklists`] and [`tickets`], and [`attachments`] (report files on tickets). This module
//! puts Autotask behind [`crate::psa::product::Psa`].

pub mod attachments;
pub mod client;
pub mod companies;
pub mod gates;
pub mod picklists;
pub mod services;
pub mod tickets;
pub mod zone;

use futures_util::future::BoxFuture;

pub use self::attachments::{Attachment, MAX_ATTACHMENT_BYTES};
pub use self::client::{
    Autotask, AutotaskConfig, DEFAULT_ZONE_DISCOVERY_URL, REFUSAL_MARKERS, autotask_retryable,
};
pub use self::companies::RECURRING_SERVICE;
pub use self::gates::{MAX_CONCURRENT_PER_ENDPOINT, endpoint_of};
pub use self::services::{UnitRow, at_date, units_filter};
pub use self::tickets::{
    MAX_DESCRIPTION, MAX_TITLE, NEW_STATUS_LABEL, PRIORITY_LABEL, STATUS_COMPLETE,
};
use crate::Result;
pub use crate::psa::fit_chars;
use crate::psa::model::{Agreement, Company, Ticket};
use crate::psa::product::{Product, Psa};

impl Psa for Autotask {
    fn product(&self) -> Product {
        Product::Autotask
    }

    fn requests(&self) -> u64 {
        Autotask::requests(self)
    }

    fn companies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Company>>> {
        Box::pin(self.companies_by_name(key))
    }

    fn agreements(&self, company_id: i64) -> BoxFuture<'_, Result<Vec<Agreement>>> {
        Box::pin(self.contracts(company_id))
    }

    fn open_tickets<'a>(
        &'a self,
        company_id: i64,
        title: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Ticket>>> {
        Box::pin(Autotask::open_tickets(self, company_id, title))
    }

    /// Autotask opens tickets in its own "New" status: `open_status` is ConnectWise's.
    fn create_ticket<'a>(
        &'a self,
        company_id: i64,
        board: &'a str,
        title: &'a str,
        description: &'a str,
        _open_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Ticket>> {
        Box::pin(Autotask::create_ticket(
            self,
            company_id,
            board,
            title,
            description,
        ))
    }

    /// Autotask completes the ticket (status 5): `closed_status` is ConnectWise's.
    fn close_ticket<'a>(
        &'a self,
        id: i64,
        _closed_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Autotask::close_ticket(self, id))
    }
}

#[cfg(test)]
mod tests {
    //! What the parts' tests share (a client of a fake server, zone and page answers), and the
    //! whole client against `ferry psa-sim autotask` ([`crate::psa::sim::autotask`]).

    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::psa::http::RetryPolicy;
    use crate::psa::http::fake::{Answer, Fake, Seen};
    use crate::psa::sim::{Fault, SimServer, autotask as sim};

    pub(super) const SECRET: &str = "Sup3r$ecretValue";
    pub(super) const CODE: &str = "INTEGRATIONCODE123";
    pub(super) const USER: &str = "api@acme.example";

    pub(super) fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    pub(super) fn client(url: &str) -> Autotask {
        Autotask::new(
            AutotaskConfig {
                username: USER.into(),
                secret: SECRET.into(),
                integration_code: CODE.into(),
                zone_discovery_url: format!("{url}/atservicesrest/v1.0/zoneInformation"),
            },
            policy(),
        )
        .unwrap()
    }

    /// The zone answer for zone `n` of the fake at `url`.
    pub(super) fn zone(url: &str, n: u32) -> Answer {
        Answer::json(
            200,
            json!({"zoneName": format!("Zone {n}"), "url": format!("{url}/zone{n}/atservicesrest/"), "ci": n}),
        )
    }

    pub(super) fn items(items: Value) -> Answer {
        Answer::json(
            200,
            json!({"items": items, "pageDetails": {"count": 1, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": null}}),
        )
    }

    /// A fake whose handler also knows its own URL.
    pub(super) async fn fake<F, Fut>(handler: F) -> Fake
    where
        F: Fn(Seen, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let url = Arc::new(std::sync::OnceLock::<String>::new());
        let known = url.clone();
        let fake = Fake::start(move |s| handler(s, known.get().cloned().unwrap_or_default())).await;
        url.set(fake.url.clone()).unwrap();
        fake
    }

    async fn start() -> (SimServer, Autotask) {
        let data: sim::Data = serde_json::from_value(json!({
            "username": "api@acme.example",
            "secret": "Sup3r$ecretValue",
            "integrationCode": "INTEGRATIONCODE123",
            "companies": [
                {"id": 10, "companyName": "Acme", "companyNumber": "A1"},
                {"id": 11, "companyName": "Acme", "isActive": false},
            ],
            "contracts": [
                {"id": 20, "companyID": 10, "contractName": "Managed", "startDate": "2026-01-01", "endDate": "2026-12-31"},
                {"id": 21, "companyID": 10, "contractName": "T&M", "contractType": 1, "startDate": "2026-01-01", "endDate": "2026-12-31"},
            ],
            "services": [{"id": 30, "name": "Endpoint Protection", "unitPrice": 4.5}],
            "contractServiceUnits": [],
            "queues": [{"id": 29683354, "name": "Client Portal"}],
        }))
        .unwrap();
        let server = SimServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(sim::Autotask::new(data).unwrap()),
        )
        .await
        .unwrap();
        let at = Autotask::new(
            AutotaskConfig {
                username: "api@acme.example".into(),
                secret: "Sup3r$ecretValue".into(),
                integration_code: "INTEGRATIONCODE123".into(),
                zone_discovery_url: format!("{}/atservicesrest/v1.0/zoneInformation", server.url()),
            },
            RetryPolicy {
                attempts: 4,
                base_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(2),
            },
        )
        .unwrap();
        (server, at)
    }

    #[tokio::test]
    async fn a_whole_sync_round_works_against_the_simulator() {
        let (server, at) = start().await;
        let companies = at.companies_by_name("acme").await.unwrap();
        assert_eq!(companies.len(), 2);
        assert_eq!(at.company(10).await.unwrap().unwrap().name, "Acme");
        assert_eq!(at.company(999).await.unwrap(), None);
        let contracts = at.contracts(10).await.unwrap();
        assert_eq!(contracts.len(), 2);
        let service = at.services_by_name("Endpoint Protection").await.unwrap();
        assert_eq!(service[0].id, 30);
        assert_eq!(at.contract_service(20, 30).await.unwrap(), None);
        let e = at
            .add_contract_service(21, 30, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Recurring Service"), "{e}");
        let cs = at.add_contract_service(20, 30, None).await.unwrap();
        assert_eq!(at.contract_service(20, 30).await.unwrap().unwrap().id, cs);
        let on = jiff::civil::date(2026, 11, 1);
        let before = at.current_units(20, 30, on).await.unwrap();
        at.adjust_units(20, 30, on, 25 - before as i32, None)
            .await
            .unwrap();
        assert_eq!(at.current_units(20, 30, on).await.unwrap(), 25.0);
        assert_eq!(
            at.current_units(20, 30, jiff::civil::date(2026, 11, 30))
                .await
                .unwrap(),
            25.0
        );
        let t = at
            .create_ticket(10, "Client Portal", "Usage sync failed", "why")
            .await
            .unwrap();
        assert_eq!(
            at.open_tickets(10, "Usage sync failed")
                .await
                .unwrap()
                .len(),
            1
        );
        at.close_ticket(t.id).await.unwrap();
        assert!(
            at.open_tickets(10, "Usage sync failed")
                .await
                .unwrap()
                .is_empty()
        );
        let e = at
            .create_ticket(10, "Nope", "x", "y")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Client Portal"), "{e}");
        assert_eq!(at.requests(), server.requests_served());
    }

    #[tokio::test]
    async fn long_ticket_text_is_cut_to_autotask_s_lengths_and_big_files_are_never_sent() {
        let (server, at) = start().await;
        let t = at
            .create_ticket(10, "Client Portal", &"t".repeat(300), &"d".repeat(9000))
            .await
            .unwrap();
        let state = server.state();
        let ticket = state["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == t.id)
            .unwrap()
            .clone();
        assert_eq!(ticket["title"].as_str().unwrap().chars().count(), 255);
        assert_eq!(
            ticket["description"].as_str().unwrap().chars().count(),
            8000
        );
        let before = server.requests_served();
        let e = at
            .attach_to_ticket(t.id, "big", "big.csv", &vec![b'x'; 6_000_001])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("6 to 7 MB"), "{e}");
        assert_eq!(server.requests_served(), before, "refused before sending");
        let id = at
            .attach_to_ticket(t.id, "ok", "ok.csv", b"a,b\n1,2\n")
            .await
            .unwrap();
        assert_eq!(
            at.ticket_attachments(t.id).await.unwrap(),
            [Attachment {
                id,
                title: "ok".into(),
                file_name: "ok.csv".into()
            }]
        );
        let stored = &server.state()["ticketAttachments"][0];
        assert_eq!(stored["data"], crate::psa::http::base64(b"a,b\n1,2\n"));
    }

    #[tokio::test]
    async fn zone_moves_throttles_and_expired_keys_behave_as_documented() {
        let (server, at) = start().await;
        at.companies_by_name("Acme").await.unwrap();
        server.inject(Fault::MoveZone);
        assert_eq!(at.contracts(10).await.unwrap().len(), 2);
        server.inject(Fault::RateLimit {
            count: 2,
            retry_after: 0,
        });
        server.inject(Fault::ServerError { count: 1 });
        assert_eq!(at.contracts(10).await.unwrap().len(), 2);
        server.inject(Fault::ExpireKeys);
        let e = at.contracts(10).await.unwrap_err().to_string();
        assert!(
            e.contains("refused") && !e.contains("Sup3r$ecretValue"),
            "{e}"
        );
        assert_eq!(at.requests(), server.requests_served());
    }
}
