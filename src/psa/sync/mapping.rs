//! A CustomerMapping as the sync sees it: the mapping with the settings in force (its own,
//! or the PSA target's `defaults` with `settings: general`), its schedules and the Autotask
//! rounding and effective-date rules.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::api::{
    Billing, CustomerMappingSpec, DeliveryTargetSpec, Kind, ResourceKey, Schedule, SettingsSource,
    Spec, SqlSource, TicketSync, UsageSync,
};
use crate::psa::ledger::SyncKind;
use crate::schedule::CompiledSchedule;
use crate::state::ActualState;

/// A CustomerMapping with the settings that apply to it (`settings: general` takes them from
/// the PSA target's `defaults`).
#[derive(Clone, Debug)]
pub struct MappingView {
    /// The mapping.
    pub key: ResourceKey,
    /// Its spec.
    pub spec: CustomerMappingSpec,
    /// The PSA DeliveryTarget's spec.
    pub target: DeliveryTargetSpec,
    /// Usage sync settings in force.
    pub usage: Option<UsageSync>,
    /// Ticket sync settings in force.
    pub tickets: Option<TicketSync>,
    /// Billing settings in force.
    pub billing: Option<Billing>,
    /// When the mapping was first applied.
    pub created_at: Option<Timestamp>,
}

impl MappingView {
    /// Every applied mapping whose PSA target is applied too.
    pub fn all(actual: &ActualState) -> Vec<MappingView> {
        // Many mappings share one PSA target: decode each target once.
        let mut targets: HashMap<ResourceKey, Option<DeliveryTargetSpec>> = HashMap::new();
        actual
            .resources
            .values()
            .filter(|r| r.key.kind == Kind::CustomerMapping)
            .filter_map(|r| {
                let Some(Spec::CustomerMapping(spec)) = r.typed_spec() else {
                    return None;
                };
                let target_key =
                    ResourceKey::new(Kind::DeliveryTarget, &r.key.namespace, &spec.psa.target);
                let target = targets
                    .entry(target_key)
                    .or_insert_with_key(|key| {
                        let stored = actual.resources.get(key)?;
                        match stored.typed_spec()? {
                            Spec::DeliveryTarget(t) => Some((**t).clone()),
                            _ => None,
                        }
                    })
                    .clone()?;
                Some(MappingView::new(
                    r.key.clone(),
                    spec.clone(),
                    target,
                    r.created_at.parse().ok(),
                ))
            })
            .collect()
    }

    /// Builds the view, resolving `settings`.
    pub fn new(
        key: ResourceKey,
        spec: CustomerMappingSpec,
        target: DeliveryTargetSpec,
        created_at: Option<Timestamp>,
    ) -> Self {
        let defaults = target
            .connectwise
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .or_else(|| target.autotask.as_ref().and_then(|a| a.defaults.clone()))
            .unwrap_or_default();
        let (usage, tickets, billing) = match spec.settings {
            SettingsSource::General => {
                (defaults.usage_sync, defaults.ticket_sync, defaults.billing)
            }
            SettingsSource::Custom => (
                spec.usage_sync.clone(),
                spec.ticket_sync.clone(),
                spec.billing.clone(),
            ),
        };
        MappingView {
            key,
            spec,
            target,
            usage,
            tickets,
            billing,
            created_at,
        }
    }

    /// The usage sync schedule, when enabled (default every 24 hours).
    pub fn usage_schedule(&self) -> Option<CompiledSchedule> {
        let u = self.usage.as_ref().filter(|u| u.enabled)?;
        let schedule = u.schedule.clone().unwrap_or(Schedule::Every("24h".into()));
        CompiledSchedule::new(&schedule, &u.time_zone).ok()
    }

    /// The billing schedule, when enabled (default monthly on day 1 at 06:00).
    pub fn billing_schedule(&self) -> Option<CompiledSchedule> {
        let b = self.billing.as_ref().filter(|b| b.enabled)?;
        let schedule =
            b.schedule
                .clone()
                .unwrap_or(Schedule::Monthly(crate::api::MonthlySchedule {
                    day: 1,
                    at: "06:00".into(),
                }));
        CompiledSchedule::new(&schedule, &b.time_zone).ok()
    }

    /// The schedule of `kind`.
    pub fn schedule(&self, kind: SyncKind) -> Option<CompiledSchedule> {
        match kind {
            SyncKind::Usage => self.usage_schedule(),
            SyncKind::Billing => self.billing_schedule(),
        }
    }

    /// The usage query (billing pushes the same quantities).
    pub fn usage_source(&self) -> Option<&SqlSource> {
        self.usage.as_ref()?.source.as_ref().map(|s| &s.sql)
    }

    /// Autotask: the rounding rule and effective-date rule in force (the mapping's, else the
    /// target's, else `up` and `periodStart`).
    pub fn autotask_rules(&self) -> AutotaskRules {
        let target = self.target.autotask.as_ref();
        AutotaskRules {
            rounding: self
                .spec
                .quantity_rounding
                .or_else(|| target.and_then(|t| t.quantity_rounding))
                .unwrap_or_default(),
            effective: self
                .spec
                .effective_date
                .or_else(|| target.and_then(|t| t.effective_date))
                .unwrap_or_default(),
        }
    }

    /// The time zone the effective dates of `kind` are computed in.
    pub(super) fn time_zone(&self, kind: SyncKind) -> &str {
        match kind {
            SyncKind::Usage => self.usage.as_ref().map_or("UTC", |u| u.time_zone.as_str()),
            SyncKind::Billing => self
                .billing
                .as_ref()
                .map_or("UTC", |b| b.time_zone.as_str()),
        }
    }
}

/// How Autotask quantities are made whole and dated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutotaskRules {
    /// Fractional usage to whole units.
    pub rounding: crate::api::QuantityRounding,
    /// The date adjustments take effect.
    pub effective: crate::api::EffectiveDate,
}
