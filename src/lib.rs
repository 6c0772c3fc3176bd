//! Ferry: a declarative reconciler for scheduled report exports, file delivery and PSA sync.
//!
//! The pipeline is staged like an operator's: [`load`] files -> [`validate`] -> build the
//! desired state -> [`plan`] (a pure diff against the [`state`]) -> apply. The CLI and the
//! Kubernetes controller share that core and differ only in where desired and actual state
//! come from.

pub mod api;
pub mod crds;
pub mod error;
pub mod validate {
    #[derive(Debug)]
    pub struct Diagnostic;
}

pub use error::{Error, Result};
