//! The ConnectWise Manage REST API 3.0 client (`../shared/psa-api.md`): companies, agreements,
//! agreement additions and tickets.
//!
//! - The codebase (`v2025_1/`) is discovered once, without authentication, from
//!   `GET {root}/login/companyinfo/{companyId}`; the API base is `{root}/{codebase}apis/3.0/`.
//! - Every API call carries HTTP Basic `{companyId}+{publicKey}:{privateKey}` (a sensitive
//!   header), `clientId` and `Accept: application/vnd.connectwise.com+json; version=2025.1`
//!   (the target's `apiVersion` overrides the version).
//! - Companies are active when their status's `inactiveFlag` is false (statuses read once
//!   from `company/companies/statuses`) and they are not deleted; the name means nothing.
//! - Ticket statuses are the board's own (`service/boards/{id}/statuses`, read once per
//!   board): tickets open in the board's default status and close with a `closedStatus` one,
//!   by id; `>Closed` is never assumed.
//! - Report files go to `system/documents` as `multipart/form-data` (`recordType=Ticket`).
//! - Lists ask for `pageSize=1000` and follow the `Link` header's `rel="next"` until there is
//!   none. The next URL is rebased onto the discovered API base (the part after `/apis/3.0/`
//!   is kept), so the credentials only ever go to the configured host.
//! - `conditions` are built with [`Conditions`], which quotes strings (`"` and `\` escaped
//!   with a backslash); booleans are sent as `True`/`False`, integers bare, `null` bare.
//! - Dates (`effectiveDate`, `cancelledDate`) are sent as `YYYY-MM-DDT00:00:00Z`.
//! - A 401, or a 404 whose body says `UserNotAuthenticated`, is an authentication failure,
//!   reported without any key. Retries: see [`crate::psa::http`] (429 and 5xx; creates only when
//!   the server did not act).
//!
//! The parts: [`client`] (configuration, codebase discovery, requests, paging), [`wire`] (how
//! values and conditions are written), [`companies`] (companies and agreements),
//! [`additions`] (the usage push), [`tickets`] (tickets, board statuses, notes) and
//! [`documents`] (report files on tickets). This module puts ConnectWise behind
//! [`crate::psa::product::Psa`].

pub mod additions;
pub mod client;
pub mod companies;
pub mod documents;
pub mod tickets;
pub mod wire;

use futures_util::future::BoxFuture;

pub use self::client::{
    ConnectWise, ConnectWiseConfig, DEFAULT_API_VERSION, accept_value, is_auth_failure,
};
pub use self::documents::DocumentInfo;
pub use self::tickets::{MAX_SUMMARY, TicketNote, closed_status, open_status};
pub use self::wire::{BoardStatus, CompanyStatus, Conditions, cw_date, quote};
use crate::Result;
use crate::psa::model::{Agreement, Company, Ticket};
use crate::psa::product::{Product, Psa};

impl Psa for ConnectWise {
    fn product(&self) -> Product {
        Product::ConnectWise
    }

    fn requests(&self) -> u64 {
        ConnectWise::requests(self)
    }

    fn companies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Company>>> {
        Box::pin(self.companies_by_identifier(key))
    }

    fn agreements(&self, company_id: i64) -> BoxFuture<'_, Result<Vec<Agreement>>> {
        Box::pin(ConnectWise::agreements(self, company_id))
    }

    fn open_tickets<'a>(
        &'a self,
        company_id: i64,
        title: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Ticket>>> {
        Box::pin(ConnectWise::open_tickets(self, company_id, title))
    }

    fn create_ticket<'a>(
        &'a self,
        company_id: i64,
        board: &'a str,
        title: &'a str,
        description: &'a str,
        open_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Ticket>> {
        Box::pin(ConnectWise::create_ticket(
            self,
            company_id,
            board,
            title,
            description,
            open_status,
        ))
    }

    fn close_ticket<'a>(
        &'a self,
        id: i64,
        closed_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(ConnectWise::close_ticket(self, id, closed_status))
    }
}

#[cfg(test)]
mod tests {
    //! What the parts' tests share (a client of a fake server), and the whole client against
    //! `ferry psa-sim connectwise` ([`crate::psa::sim::connectwise`]).

    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::psa::http::RetryPolicy;
    use crate::psa::http::fake::Answer;
    use crate::psa::sim::{Fault, SimServer, connectwise as sim};

    pub(super) const PUBLIC: &str = "PubKeyA1b2C3d4";
    pub(super) const PRIVATE: &str = "PrivKeyZ9y8X7w6";

    pub(super) fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    pub(super) fn client(url: &str) -> ConnectWise {
        ConnectWise::new(
            ConnectWiseConfig {
                site: None,
                base_url: Some(format!("{url}/")),
                company_id: "acmemsp".into(),
                client_id: "0f2b6c1e-0000-4000-8000-000000000001".into(),
                public_key: PUBLIC.into(),
                private_key: PRIVATE.into(),
                api_version: None,
            },
            policy(),
        )
        .unwrap()
    }

    pub(super) fn companyinfo() -> Answer {
        Answer::json(
            200,
            json!({"CompanyName": "Acme MSP", "Codebase": "v2025_1/", "CompanyID": "acmemsp", "IsCloud": true}),
        )
    }

    async fn start(cloud: bool) -> (SimServer, ConnectWise) {
        let bulk: Vec<Value> = (0..1203)
            .map(|i| json!({"id": 5000 + i, "name": format!("Bulk {i}"), "companyId": 300}))
            .collect();
        let mut agreements = vec![
            json!({"id": 10, "name": "MSA", "companyId": 250}),
            json!({"id": 11, "name": "Old", "companyId": 250, "status": "Cancelled", "cancelled": true}),
        ];
        agreements.extend(bulk);
        let data: sim::Data = serde_json::from_value(json!({
            "companyId": "acmemsp",
            "clientId": "0f2b6c1e-0000-4000-8000-000000000001",
            "publicKey": "PubKeyA1b2C3d4",
            "privateKey": "PrivKeyZ9y8X7w6",
            "cloud": cloud,
            "companies": [
                {"id": 250, "identifier": "ACME01", "name": "Acme"},
                {"id": 251, "identifier": "Say \"hi\" \\o/", "name": "Quotes", "status": "Inactive"},
                {"id": 300, "identifier": "BULK", "name": "Bulk"},
            ],
            "agreements": agreements,
            "products": [{"id": 4, "identifier": "EP-PROT", "price": 3.0}],
            "boards": [{"id": 1, "name": "Service Desk"}],
        }))
        .unwrap();
        let server = SimServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(sim::ConnectWise::new(data).unwrap()),
        )
        .await
        .unwrap();
        let cw = ConnectWise::new(
            ConnectWiseConfig {
                site: None,
                base_url: Some(server.url()),
                company_id: "acmemsp".into(),
                client_id: "0f2b6c1e-0000-4000-8000-000000000001".into(),
                public_key: "PubKeyA1b2C3d4".into(),
                private_key: "PrivKeyZ9y8X7w6".into(),
                api_version: None,
            },
            RetryPolicy {
                attempts: 4,
                base_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(2),
            },
        )
        .unwrap();
        (server, cw)
    }

    #[tokio::test]
    async fn a_whole_sync_round_works_against_the_simulator() {
        let (server, cw) = start(false).await;
        assert_eq!(cw.agreements(300).await.unwrap().len(), 1203);
        let acme = cw.companies_by_identifier("ACME01").await.unwrap();
        assert_eq!((acme.len(), acme[0].id, acme[0].active), (1, 250, true));
        let quoted = cw.companies_by_identifier("Say \"hi\" \\o/").await.unwrap();
        assert_eq!((quoted.len(), quoted[0].active), (1, false));
        assert_eq!(cw.company(250).await.unwrap().unwrap().name, "Acme");
        assert_eq!(cw.company(9999).await.unwrap(), None);
        let agreements = cw.agreements(250).await.unwrap();
        assert_eq!(
            agreements
                .iter()
                .map(|a| (a.id, a.active))
                .collect::<Vec<_>>(),
            [(10, true), (11, false)]
        );
        assert!(cw.additions(10, "EP-PROT").await.unwrap().is_empty());
        let d = jiff::civil::date(2026, 11, 1);
        let added = cw
            .create_addition(10, "EP-PROT", 25.0, d, "Endpoint protection")
            .await
            .unwrap();
        assert_eq!(added.quantity, 25.0);
        let changed = cw.set_addition_quantity(10, added.id, 30.0).await.unwrap();
        assert_eq!(changed.quantity, 30.0);
        assert_eq!(cw.additions(10, "EP-PROT").await.unwrap().len(), 1);
        cw.cancel_addition(10, added.id, jiff::civil::date(2026, 11, 30))
            .await
            .unwrap();
        assert!(cw.additions(10, "EP-PROT").await.unwrap().is_empty());
        let t = cw
            .create_ticket(250, "Service Desk", "Usage sync failed", "why", None)
            .await
            .unwrap();
        assert_eq!(
            cw.open_tickets(250, "Usage sync failed")
                .await
                .unwrap()
                .len(),
            1
        );
        cw.close_ticket(t.id, None).await.unwrap();
        assert!(
            cw.open_tickets(250, "Usage sync failed")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(cw.requests(), server.requests_served());
    }

    #[tokio::test]
    async fn throttles_and_expired_keys_behave_as_documented() {
        for cloud in [false, true] {
            let (server, cw) = start(cloud).await;
            server.inject(Fault::RateLimit {
                count: 2,
                retry_after: 0,
            });
            server.inject(Fault::ServerError { count: 1 });
            assert_eq!(cw.agreements(250).await.unwrap().len(), 2);
            server.inject(Fault::ExpireKeys);
            let e = cw.agreements(250).await.unwrap_err().to_string();
            assert!(e.contains("refused") && e.contains("acmemsp"), "{e}");
            assert!(
                !e.contains("PubKeyA1b2C3d4") && !e.contains("PrivKeyZ9y8X7w6"),
                "{e}"
            );
            assert_eq!(cw.requests(), server.requests_served());
        }
    }
}
