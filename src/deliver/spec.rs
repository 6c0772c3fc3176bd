//! What each kind of DeliveryTarget says about its own spec, beside its transport: the checks
//! of its fields, one line naming the destination, and the notes a plan shows when it changes.
//! Each transport's file implements [`TargetSpec`] for its spec type and `deliver::spec_of` is
//! the registry, so validation and plans never match on the kind (as Vector keeps a sink's
//! config, checks and docs together). Every method is pure: plans call them.

use crate::api::TargetKind;
use crate::validate::fields::Problems;

/// A kind of DeliveryTarget's own rules.
pub trait TargetSpec {
    /// Checks the kind's fields, reporting each problem at its path under `spec`.
    fn check(&self, problems: &mut Problems);
    /// Where files go, in one line without secrets (plans, `ferry get`).
    fn summary(&self) -> String;
    /// What a change from `old` (a target of the same kind) to `self` means for deliveries,
    /// beyond the field diff the plan prints anyway.
    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>);
}

/// The plan's note for a change of `maxConnections` (unset means the default).
pub fn max_connections_notes(old: Option<u32>, new: Option<u32>, notes: &mut Vec<String>) {
    let default = crate::api::DEFAULT_MAX_CONNECTIONS;
    let (old, new) = (old.unwrap_or(default), new.unwrap_or(default));
    if old != new {
        notes.push(format!("at most {new} deliveries at once (was {old})"));
    }
}
