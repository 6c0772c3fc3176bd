//! The `ferry.dev/v1alpha1` resource model: the three kinds users keep in Git. These types are
//! both the Kubernetes custom resources and the plain-file format the CLI reads.

pub mod common;
pub mod customer_mapping;
pub mod delivery_target;
pub mod report_schedule;

pub use common::*;
pub use customer_mapping::*;
pub use delivery_target::*;
pub use report_schedule::*;

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::{Deserialize, Serialize};

/// The API group of every Ferry kind.
pub const GROUP: &str = "ferry.dev";
/// The `apiVersion` every Ferry document carries.
pub const API_VERSION: &str = "ferry.dev/v1alpha1";
/// Namespace used when a file omits `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The three resource kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Delivery targets sort first: schedules and mappings refer to them.
    DeliveryTarget,
    /// A scheduled report.
    ReportSchedule,
    /// A customer-to-PSA mapping.
    CustomerMapping,
}

impl Kind {
    /// Every kind, in dependency order.
    pub const ALL: [Kind; 3] = [
        Kind::DeliveryTarget,
        Kind::ReportSchedule,
        Kind::CustomerMapping,
    ];

    /// The `kind:` value in YAML.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::DeliveryTarget => "DeliveryTarget",
            Kind::ReportSchedule => "ReportSchedule",
            Kind::CustomerMapping => "CustomerMapping",
        }
    }

    /// The lowercase plural, as in `kubectl get reportschedules`.
    pub fn plural(&self) -> &'static str {
        match self {
            Kind::DeliveryTarget => "deliverytargets",
            Kind::ReportSchedule => "reportschedules",
            Kind::CustomerMapping => "customermappings",
        }
    }

    /// The kubectl short name.
    pub fn short_name(&self) -> &'static str {
        match self {
            Kind::DeliveryTarget => "dt",
            Kind::ReportSchedule => "rs",
            Kind::CustomerMapping => "cm",
        }
    }

    /// The kind's CustomResourceDefinition.
    pub fn crd(&self) -> CustomResourceDefinition {
        match self {
            Kind::DeliveryTarget => DeliveryTarget::crd(),
            Kind::ReportSchedule => ReportSchedule::crd(),
            Kind::CustomerMapping => CustomerMapping::crd(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    /// Accepts the kind, its lowercase singular and plural, and the short name, like kubectl.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| {
                lower == k.as_str().to_ascii_lowercase()
                    || lower == k.plural()
                    || lower == k.short_name()
            })
            .ok_or_else(|| {
                format!(
                    "unknown kind `{s}` (expected reportschedule/rs, deliverytarget/dt or customermapping/cm)"
                )
            })
    }
}

/// Identifies one resource: kind, namespace and name are unique together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)?;
        if self.namespace != DEFAULT_NAMESPACE {
            write!(f, " (namespace {})", self.namespace)?;
        }
        Ok(())
    }
}

/// One spec of any kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Spec {
    /// A DeliveryTarget spec.
    DeliveryTarget(Box<DeliveryTargetSpec>),
    /// A ReportSchedule spec.
    ReportSchedule(ReportScheduleSpec),
    /// A CustomerMapping spec.
    CustomerMapping(CustomerMappingSpec),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::DeliveryTarget(_) => Kind::DeliveryTarget,
            Spec::ReportSchedule(_) => Kind::ReportSchedule,
            Spec::CustomerMapping(_) => Kind::CustomerMapping,
        }
    }

    /// The spec as canonical JSON (field order fixed by the types, defaults filled in).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Spec::DeliveryTarget(s) => serde_json::to_value(s),
            Spec::ReportSchedule(s) => serde_json::to_value(s),
            Spec::CustomerMapping(s) => serde_json::to_value(s),
        };
        value.expect("resource specs always serialize to JSON")
    }

    /// Rebuilds a spec of `kind` from canonical JSON (the state store's form), reading the
    /// JSON in place (no copy of it).
    pub fn from_json(kind: Kind, value: &serde_json::Value) -> Result<Spec, serde_json::Error> {
        use serde::Deserialize;
        Ok(match kind {
            Kind::DeliveryTarget => {
                Spec::DeliveryTarget(Box::new(Deserialize::deserialize(value)?))
            }
            Kind::ReportSchedule => Spec::ReportSchedule(Deserialize::deserialize(value)?),
            Kind::CustomerMapping => Spec::CustomerMapping(Deserialize::deserialize(value)?),
        })
    }

    /// The spec of a `kind` from its JSON text, without building a JSON tree first (how the
    /// state's rows are read).
    pub fn from_json_text(kind: Kind, text: &str) -> Result<Spec, serde_json::Error> {
        Ok(match kind {
            Kind::DeliveryTarget => Spec::DeliveryTarget(Box::new(serde_json::from_str(text)?)),
            Kind::ReportSchedule => Spec::ReportSchedule(serde_json::from_str(text)?),
            Kind::CustomerMapping => Spec::CustomerMapping(serde_json::from_str(text)?),
        })
    }
}
