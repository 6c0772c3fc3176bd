//! PSA sync: CustomerMappings against ConnectWise Manage and Autotask.
//!
//! - [`connectwise`] and [`autotask`]: REST clients for the subset of `../shared/psa-api.md`
//!   Ferry uses, sharing retries and backoff ([`http`]); [`client`] puts them behind one type.
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
