//! What every PSA offers, whichever the product: the [`Product`] (its name and its words for
//! things, so messages need no string comparison) and the [`Psa`] trait that ConnectWise
//! ([`super::connectwise`]) and Autotask ([`super::autotask`]) implement for the operations
//! that mean the same in both (companies, agreements/contracts, tickets). What differs
//! (quantities, report files) stays with each product's own client.

use std::fmt;

use futures_util::future::BoxFuture;

use crate::api::CompanyRef;
use crate::psa::model::{Agreement, Company, Ticket};
use crate::{Error, Result};

/// A PSA product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Product {
    /// ConnectWise Manage.
    ConnectWise,
    /// Autotask.
    Autotask,
}

impl Product {
    /// `ConnectWise` or `Autotask`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Product::ConnectWise => "ConnectWise",
            Product::Autotask => "Autotask",
        }
    }

    /// What the product calls the record quantities are set on: `agreement` or `contract`.
    pub fn agreement_word(self) -> &'static str {
        match self {
            Product::ConnectWise => "agreement",
            Product::Autotask => "contract",
        }
    }

    /// What holds a product's quantity on it: an `addition` or a `contract service`.
    pub fn quantity_record_word(self) -> &'static str {
        match self {
            Product::ConnectWise => "addition",
            Product::Autotask => "contract service",
        }
    }

    /// How a mapping names its company: the ConnectWise identifier or the Autotask name.
    pub fn company_key(self, company: &CompanyRef) -> Result<&str> {
        let (key, field) = match self {
            Product::ConnectWise => (company.identifier.as_deref(), "company.identifier"),
            Product::Autotask => (company.name.as_deref(), "company.name"),
        };
        key.ok_or_else(|| Error::Usage(format!("{self} mappings need `{field}`")))
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The operations both PSAs offer with one meaning. Object safe (the futures are boxed), so
/// [`super::client::PsaClient`] hands out one `&dyn Psa` instead of matching per call.
pub trait Psa: Send + Sync {
    /// Which product this is.
    fn product(&self) -> Product;

    /// HTTP requests sent so far (retries included).
    fn requests(&self) -> u64;

    /// Every company matching the mapping's company key (see [`Product::company_key`]),
    /// active or not: the caller decides.
    fn companies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Company>>>;

    /// Agreements (ConnectWise) or contracts (Autotask) of a company, any status.
    fn agreements(&self, company_id: i64) -> BoxFuture<'_, Result<Vec<Agreement>>>;

    /// Open tickets of the company with this exact title.
    fn open_tickets<'a>(
        &'a self,
        company_id: i64,
        title: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Ticket>>>;

    /// Opens a ticket on `board` (ConnectWise board, Autotask queue). ConnectWise opens it in
    /// `open_status` (a status of the board by name) or the board's default status; Autotask
    /// has its own fixed status.
    fn create_ticket<'a>(
        &'a self,
        company_id: i64,
        board: &'a str,
        title: &'a str,
        description: &'a str,
        open_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Ticket>>;

    /// Closes a ticket; ConnectWise with `closed_status` (a closed status of the ticket's
    /// board, by name) or the board's own closed status; Autotask completes it.
    fn close_ticket<'a>(
        &'a self,
        id: i64,
        closed_status: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>>;
}
