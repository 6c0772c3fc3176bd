//! One PSA connection, whichever the product: the sync engine speaks to [`PsaClient`], which
//! hands the operations both products share to the [`Psa`] trait; only what differs between
//! them (quantities, report files) matches on the variant.

use crate::api::{CompanyRef, DeliveryTargetSpec};
use crate::psa::autotask::{Autotask, AutotaskConfig, DEFAULT_ZONE_DISCOVERY_URL};
use crate::psa::connectwise::{ConnectWise, ConnectWiseConfig};
use crate::psa::http::RetryPolicy;
use crate::psa::model::{Agreement, Company};
use crate::psa::product::{Product, Psa};
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// A PSA connection built from a `connectwise` or `autotask` DeliveryTarget.
#[derive(Clone)]
pub enum PsaClient {
    /// ConnectWise Manage.
    ConnectWise(ConnectWise),
    /// Autotask.
    Autotask(Autotask),
}

impl PsaClient {
    /// The client for DeliveryTarget `namespace/name`, its keys read from the secrets.
    pub fn for_target(
        namespace: &str,
        name: &str,
        spec: &DeliveryTargetSpec,
        secrets: &FileSecrets,
        retry: RetryPolicy,
    ) -> Result<PsaClient> {
        let secret = |r| -> Result<String> {
            Ok(secrets
                .require(namespace, r)?
                .expose_str()?
                .trim()
                .to_string())
        };
        if let Some(cw) = &spec.connectwise {
            return Ok(PsaClient::ConnectWise(ConnectWise::new(
                ConnectWiseConfig {
                    site: cw.site.clone(),
                    base_url: cw.base_url.clone(),
                    company_id: cw.company_id.clone(),
                    client_id: cw.client_id.clone(),
                    public_key: secret(&cw.public_key_secret_ref)?,
                    private_key: secret(&cw.private_key_secret_ref)?,
                    api_version: cw.api_version.clone(),
                },
                retry,
            )?));
        }
        if let Some(at) = &spec.autotask {
            return Ok(PsaClient::Autotask(Autotask::new(
                AutotaskConfig {
                    username: at.username.clone(),
                    secret: secret(&at.secret_secret_ref)?,
                    integration_code: secret(&at.integration_code_secret_ref)?,
                    zone_discovery_url: at
                        .zone_discovery_url
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ZONE_DISCOVERY_URL.to_string()),
                },
                retry,
            )?));
        }
        Err(Error::Usage(format!(
            "DeliveryTarget `{name}` is not a PSA connection (connectwise or autotask)"
        )))
    }

    /// The connection as the one trait both products implement.
    pub fn psa(&self) -> &dyn Psa {
        match self {
            PsaClient::ConnectWise(c) => c,
            PsaClient::Autotask(c) => c,
        }
    }

    /// Which product this is (its name, for messages, is its `Display`).
    pub fn product(&self) -> Product {
        self.psa().product()
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.psa().requests()
    }

    /// How the mapping names its company: the ConnectWise identifier or the Autotask name.
    pub fn company_key<'a>(&self, company: &'a CompanyRef) -> Result<&'a str> {
        self.product().company_key(company)
    }

    /// Every company matching the mapping's company key (active or not).
    pub async fn companies(&self, company: &CompanyRef) -> Result<Vec<Company>> {
        let key = self.company_key(company)?;
        self.psa().companies(key).await
    }

    /// Agreements (ConnectWise) or contracts (Autotask) of a company.
    pub async fn agreements(&self, company_id: i64) -> Result<Vec<Agreement>> {
        self.psa().agreements(company_id).await
    }

    /// Open tickets of the company with this exact title.
    pub async fn open_tickets(&self, company_id: i64, title: &str) -> Result<Vec<i64>> {
        let tickets = self.psa().open_tickets(company_id, title).await?;
        Ok(tickets.into_iter().map(|t| t.id).collect())
    }

    /// Opens a ticket on `board` (ConnectWise board, Autotask queue); returns its id.
    /// ConnectWise opens it in `open_status` (a status of the board by name) or the board's
    /// default status.
    pub async fn create_ticket(
        &self,
        company_id: i64,
        board: &str,
        title: &str,
        description: &str,
        open_status: Option<&str>,
    ) -> Result<i64> {
        let ticket = self
            .psa()
            .create_ticket(company_id, board, title, description, open_status)
            .await?;
        Ok(ticket.id)
    }

    /// Closes a ticket; ConnectWise with `closed_status` (a closed status of the ticket's
    /// board, by name) or the board's own closed status.
    pub async fn close_ticket(&self, id: i64, closed_status: Option<&str>) -> Result<()> {
        self.psa().close_ticket(id, closed_status).await
    }
}
