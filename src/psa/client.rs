//! One PSA connection, whichever the product: the sync engine speaks to [`PsaClient`] and only
//! the few operations whose meaning differs (quantities, tickets) branch on the product.

use crate::api::{CompanyRef, DeliveryTargetSpec};
use crate::psa::autotask::{Autotask, AutotaskConfig, DEFAULT_ZONE_DISCOVERY_URL};
use crate::psa::connectwise::{ConnectWise, ConnectWiseConfig};
use crate::psa::http::RetryPolicy;
use crate::psa::model::{Agreement, Company};
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

    /// `ConnectWise` or `Autotask`, for messages.
    pub fn product(&self) -> &'static str {
        match self {
            PsaClient::ConnectWise(_) => "ConnectWise",
            PsaClient::Autotask(_) => "Autotask",
        }
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        match self {
            PsaClient::ConnectWise(c) => c.requests(),
            PsaClient::Autotask(c) => c.requests(),
        }
    }

    /// How the mapping names its company: the ConnectWise identifier or the Autotask name.
    pub fn company_key<'a>(&self, company: &'a CompanyRef) -> Result<&'a str> {
        let (key, field) = match self {
            PsaClient::ConnectWise(_) => (company.identifier.as_deref(), "company.identifier"),
            PsaClient::Autotask(_) => (company.name.as_deref(), "company.name"),
        };
        key.ok_or_else(|| Error::Usage(format!("{} mappings need `{field}`", self.product())))
    }

    /// Every company matching the mapping's company key (active or not).
    pub async fn companies(&self, company: &CompanyRef) -> Result<Vec<Company>> {
        let key = self.company_key(company)?;
        match self {
            PsaClient::ConnectWise(c) => c.companies_by_identifier(key).await,
            PsaClient::Autotask(c) => c.companies_by_name(key).await,
        }
    }

    /// Agreements (ConnectWise) or contracts (Autotask) of a company.
    pub async fn agreements(&self, company_id: i64) -> Result<Vec<Agreement>> {
        match self {
            PsaClient::ConnectWise(c) => c.agreements(company_id).await,
            PsaClient::Autotask(c) => c.contracts(company_id).await,
        }
    }

    /// Open tickets of the company with this exact title.
    pub async fn open_tickets(&self, company_id: i64, title: &str) -> Result<Vec<i64>> {
        let tickets = match self {
            PsaClient::ConnectWise(c) => c.open_tickets(company_id, title).await?,
            PsaClient::Autotask(c) => c.open_tickets(company_id, title).await?,
        };
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
        Ok(match self {
            PsaClient::ConnectWise(c) => {
                c.create_ticket(company_id, board, title, description, open_status)
                    .await?
                    .id
            }
            PsaClient::Autotask(c) => {
                c.create_ticket(company_id, board, title, description)
                    .await?
                    .id
            }
        })
    }

    /// Closes a ticket; ConnectWise with `closed_status` (a closed status of the ticket's
    /// board, by name) or the board's own closed status.
    pub async fn close_ticket(&self, id: i64, closed_status: Option<&str>) -> Result<()> {
        match self {
            PsaClient::ConnectWise(c) => c.close_ticket(id, closed_status).await,
            PsaClient::Autotask(c) => c.close_ticket(id).await,
        }
    }
}
