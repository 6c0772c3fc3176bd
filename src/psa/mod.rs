//! PSA sync: CustomerMappings against ConnectWise Manage and Autotask.
//!
//! - [`connectwise`] and [`autotask`]: REST clients for the subset of `../shared/psa-api.md`
//!   Ferry uses, sharing retries and backoff ([`http`]).
//! - [`sim`]: strict simulators of both APIs (`ferry psa-sim`).

pub mod sim;
pub mod model;
