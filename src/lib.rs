//! Ferry: a declarative reconciler for scheduled report exports, file delivery and PSA sync.
//!
//! The pipeline is staged like an operator's: [`load`] files -> [`validate`] -> build the
//! desired state -> [`plan`] (a pure diff against the [`state`]) -> apply. The CLI and the
//! Kubernetes controller share that core and differ only in where desired and actual state
//! come from.

pub mod alert;
pub mod api;
pub mod check;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod crds;
pub mod daemon;
pub mod deliver;
pub mod diagnostic;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod filename;
pub mod fsutil;
pub mod hosted_sftp;
pub mod ledger;
pub mod load;
pub mod observe;
pub mod pipeline;
pub mod plan;
pub mod psa;
pub mod redact;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod source;
pub mod ssh;
pub mod state;
pub mod tls;
pub mod validate;

pub use error::{Error, Result};
