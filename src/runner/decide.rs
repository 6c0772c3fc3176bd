//! The scheduling decision, a pure function: which slot of a schedule is due at an instant
//! (catch-up within `startingDeadline`, missed beyond it, never twice), and the applied
//! schedule as the runner sees it ([`ScheduleView`]).

use std::time::Duration;

use jiff::{Timestamp, Zoned};

use crate::api::{ReportScheduleSpec, ResourceKey, Spec};
use crate::ledger::{SlotKey, Trigger, rfc3339};
use crate::schedule::{self, CompiledSchedule};
use crate::state::StoredResource;
use crate::{Error, Result};

/// A slot that came less than this long ago runs as `schedule`, later as `catch-up`.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// At most this many missed slots are enumerated after a long downtime.
pub const MAX_SLOTS_PER_DECISION: usize = 1000;

/// What to do for one schedule at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The slot to run now, and why.
    pub run: Option<(Zoned, Trigger)>,
    /// Slots that will never run (older than the one to run, or beyond the deadline).
    pub missed: Vec<Zoned>,
    /// More slots were missed than [`MAX_SLOTS_PER_DECISION`]: those after the listed ones
    /// are neither run nor recorded.
    pub unlisted: bool,
}

/// Decides which slots of a schedule are due at `now`, given the newest slot the ledger
/// already holds (`reference`; or when the schedule was first applied). Only the most recent
/// due slot runs; older ones are missed. A late slot runs if it is still within `deadline`
/// (no deadline: always), else it is missed too. A slot at or before `reference` is never
/// considered again, so nothing runs twice.
pub fn decide(
    compiled: &CompiledSchedule,
    reference: Timestamp,
    deadline: Option<Duration>,
    now: Timestamp,
) -> Decision {
    let mut slots = compiled.slots_between(reference, now, MAX_SLOTS_PER_DECISION);
    // After a downtime longer than the list (an `every: 1m` schedule down for a day), the
    // slot to consider is still the latest one, not the last listed.
    let newest = compiled
        .latest_at_or_before(now)
        .filter(|z| slots.last().is_some_and(|l| z.timestamp() > l.timestamp()));
    let unlisted = slots.len() == MAX_SLOTS_PER_DECISION && newest.is_some();
    let latest = match newest {
        Some(z) if unlisted => Some(z),
        _ => slots.pop(),
    };
    let Some(latest) = latest else {
        return Decision {
            run: None,
            missed: Vec::new(),
            unlisted: false,
        };
    };
    let late = now.duration_since(latest.timestamp());
    let late = Duration::from_secs(late.as_secs().max(0) as u64);
    let mut missed = slots;
    let run = if late <= ON_TIME {
        Some((latest, Trigger::Schedule))
    } else if deadline.is_none_or(|d| late <= d) {
        Some((latest, Trigger::CatchUp))
    } else {
        missed.push(latest);
        None
    };
    Decision {
        run,
        missed,
        unlisted,
    }
}

/// The one log line for the slots a decision recorded as missed: how many, from which to
/// which, why, and where the details are. `None` when none was missed.
pub fn missed_summary(view: &ScheduleView, decision: &Decision, reason: &str) -> Option<String> {
    let history = format!("`ferry history reportschedule/{}`", view.key.name);
    let missed = &decision.missed;
    match missed.as_slice() {
        [] => None,
        [slot] => Some(format!(
            "skipped slot {}: {reason}; see {history}",
            rfc3339(slot)
        )),
        [first, .., last] if decision.unlisted => Some(format!(
            "skipped more than {} slots from {}: {reason}; the first {} (to {}) are in {history}",
            missed.len(),
            rfc3339(first),
            missed.len(),
            rfc3339(last)
        )),
        [first, .., last] => Some(format!(
            "skipped {} slots from {} to {}: {reason}; each is in {history}",
            missed.len(),
            rfc3339(first),
            rfc3339(last)
        )),
    }
}

/// A ReportSchedule as applied, ready to run.
#[derive(Clone, Debug)]
pub struct ScheduleView {
    /// Kind, namespace, name.
    pub key: ResourceKey,
    /// The applied spec.
    pub spec: ReportScheduleSpec,
    /// The applied generation.
    pub generation: i64,
    /// When it was first applied: slots before it never run.
    pub created_at: Timestamp,
}

impl ScheduleView {
    /// Reads a stored ReportSchedule.
    pub fn from_stored(r: &StoredResource) -> Result<ScheduleView> {
        let Spec::ReportSchedule(spec) = r.decoded()? else {
            return Err(Error::State(format!("{} is not a ReportSchedule", r.key)));
        };
        Ok(ScheduleView {
            key: r.key.clone(),
            spec: spec.clone(),
            generation: r.generation,
            created_at: r
                .created_at
                .parse()
                .map_err(|e| Error::State(format!("stored {} creation time: {e}", r.key)))?,
        })
    }

    /// The compiled schedule.
    pub fn compiled(&self) -> Result<CompiledSchedule> {
        CompiledSchedule::new(&self.spec.schedule, &self.spec.time_zone)
            .map_err(|e| Error::State(format!("{}: {e}", self.key)))
    }

    /// `startingDeadline` as a duration.
    pub fn deadline(&self) -> Result<Option<Duration>> {
        self.spec
            .starting_deadline
            .as_deref()
            .map(schedule::parse_duration)
            .transpose()
            .map_err(|e| Error::State(format!("{}: {e}", self.key)))
    }
}

pub(super) fn slot_key<'a>(view: &'a ScheduleView, slot: &'a Zoned) -> SlotKey<'a> {
    SlotKey {
        namespace: &view.key.namespace,
        schedule: &view.key.name,
        slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DailySchedule, Schedule};

    fn daily_0030_tokyo() -> CompiledSchedule {
        CompiledSchedule::new(
            &Schedule::Daily(DailySchedule { at: "00:30".into() }),
            "Asia/Tokyo",
        )
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_slot_that_just_came_runs_as_scheduled() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-30T00:00:00Z"),
            None,
            ts("2026-07-30T15:30:10Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        assert_eq!(rfc3339(&slot), "2026-07-31T00:30:00+09:00");
        assert_eq!(trigger, Trigger::Schedule);
        assert!(d.missed.is_empty());
    }

    #[test]
    fn nothing_is_due_before_the_next_slot() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-30T15:30:00Z"),
            None,
            ts("2026-07-31T10:00:00Z"),
        );
        assert_eq!(
            d,
            Decision {
                run: None,
                missed: vec![],
                unlisted: false
            }
        );
    }

    #[test]
    fn after_downtime_only_the_latest_slot_catches_up_within_the_deadline() {
        // Down from the 29th to the 31st 02:00 Tokyo: the 30th and 31st slots passed.
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-28T15:30:00Z"),
            Some(Duration::from_secs(6 * 3600)),
            ts("2026-07-30T17:00:00Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        assert_eq!(rfc3339(&slot), "2026-07-31T00:30:00+09:00");
        assert_eq!(trigger, Trigger::CatchUp);
        assert_eq!(d.missed.len(), 1);
        assert_eq!(rfc3339(&d.missed[0]), "2026-07-30T00:30:00+09:00");
    }

    #[test]
    fn after_a_downtime_longer_than_the_list_the_latest_slot_still_catches_up() {
        // Every minute, down for two days: 2,880 slots passed, 1,000 are listed.
        let every_minute = CompiledSchedule::new(&Schedule::Every("1m".into()), "UTC").unwrap();
        let d = decide(
            &every_minute,
            ts("2026-07-28T00:00:00Z"),
            None,
            ts("2026-07-30T00:00:30Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        // The latest minute, on time (not the 1,000th slot after the reference, two days late).
        assert_eq!(rfc3339(&slot), "2026-07-30T00:00:00+00:00");
        assert_eq!(trigger, Trigger::Schedule);
        assert_eq!(d.missed.len(), MAX_SLOTS_PER_DECISION);
        assert!(d.unlisted);
    }

    #[test]
    fn a_slot_missed_beyond_the_deadline_is_recorded_missed_and_never_run() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-29T15:30:00Z"),
            Some(Duration::from_secs(3600)),
            ts("2026-07-30T20:00:00Z"),
        );
        assert!(d.run.is_none());
        assert_eq!(d.missed.len(), 1);
        assert_eq!(rfc3339(&d.missed[0]), "2026-07-31T00:30:00+09:00");
    }

    #[test]
    fn a_slot_already_in_the_ledger_is_never_decided_again() {
        // The reference is the slot just run: deciding again a second later yields nothing.
        let slot = ts("2026-07-30T15:30:00Z");
        let d = decide(&daily_0030_tokyo(), slot, None, ts("2026-07-30T15:30:01Z"));
        assert!(d.run.is_none() && d.missed.is_empty());
    }
}
