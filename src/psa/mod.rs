//! PSA sync: CustomerMappings against ConnectWise Manage and Autotask.
//!
//! - [`connectwise`] and [`autotask`]: REST clients for the subset of `../shared/psa-api.md`
//!   Ferry uses, one folder per product split along the API's parts, sharing retries and
//!   backoff ([`http`]); both implement the [`product::Psa`] trait, and [`client`] holds either
//!   as one type.
//! - [`sync`]: the reconcile (company, contracts, quantities, tickets, status), run by
//!   `ferry run`, `ferry run-now customermapping/NAME` and the controller; [`periods`] dates
//!   Autotask unit adjustments; [`ledger`] records
//!   every attempt; [`usage`] reads the usage rows; [`drift`] is `plan`'s read-only refresh.
//! - [`sim`]: strict simulators of both APIs (`ferry psa-sim`).

pub mod autotask;
pub mod client;
pub mod connectwise;
pub mod drift;
pub mod http;
pub mod ledger;
pub mod model;
pub mod periods;
pub mod product;
pub mod sim;
pub mod sync;
pub mod usage;

/// A quantity as people write it: `12`, not `12.0`; fractions as they are (`2.5`).
pub fn format_quantity(q: f64) -> String {
    if q.fract() == 0.0 && q.abs() < 1e15 {
        format!("{}", q as i64)
    } else {
        format!("{q}")
    }
}

/// `text` cut to `max` characters, an ellipsis marking the cut (PSA text fields have
/// documented lengths: ConnectWise summaries, Autotask titles and descriptions).
pub fn fit_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}
