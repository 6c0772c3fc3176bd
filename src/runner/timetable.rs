//! The daemon's timetable: when each applied schedule next needs a decision, in a priority
//! queue. The daemon asks only the schedules whose time has come ([`Timetable::due`]) and
//! sleeps until the earliest of the others ([`Timetable::next_at`]), so an idle daemon costs
//! nothing per schedule: work is per slot that fires and per schedule that changes, not per
//! schedule per tick.
//!
//! A schedule's time is the first slot after the newest one its ledger holds (or after it was
//! applied): when that is already past (a slot missed while Ferry was down), it is due at
//! once and [`Runner::plan_due`](super::Runner::plan_due) decides catch-up or missed, exactly
//! as before. After a decision at `now`, every slot up to `now` is settled (run, missed or
//! skipped), so the next time is the first slot after `now`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;

use crate::api::ResourceKey;
use crate::schedule::CompiledSchedule;

use super::decide::ScheduleView;

/// One applied, active schedule in the timetable.
struct Entry {
    view: Arc<ScheduleView>,
    compiled: CompiledSchedule,
    /// Bumped when the entry is replaced or re-timed: older queue items are stale.
    epoch: u64,
    /// Its current time, when it has one (none while a decision is being made for it).
    at: Option<Timestamp>,
}

/// Next-decision times of the applied schedules. Suspended schedules and schedules that
/// cannot compile are not in it (the plan refused them; a suspended one is added back when
/// it is resumed, which changes its generation).
#[derive(Default)]
pub struct Timetable {
    entries: HashMap<ResourceKey, Entry>,
    /// (time, epoch, key): the earliest first. Items whose epoch no longer matches their
    /// entry's are dropped when they reach the top (lazy deletion keeps every change O(log n)).
    queue: BinaryHeap<Reverse<(Timestamp, u64, ResourceKey)>>,
    next_epoch: u64,
}

impl Timetable {
    /// An empty timetable.
    pub fn new() -> Timetable {
        Timetable::default()
    }

    /// How many schedules it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no schedule.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Brings the timetable to the applied `views`: removed and suspended schedules leave it,
    /// new and changed ones (another generation) get the first slot after `reference` (the
    /// newest slot in their ledger, or when they were applied), unchanged ones keep their time.
    /// Returns how many were (re)timed.
    pub fn sync(
        &mut self,
        views: Vec<ScheduleView>,
        reference: impl Fn(&ScheduleView) -> Timestamp,
    ) -> usize {
        let mut active: HashSet<ResourceKey> = HashSet::with_capacity(views.len());
        let mut timed = 0;
        for view in views {
            if view.spec.suspend {
                continue;
            }
            active.insert(view.key.clone());
            let unchanged = self.entries.get(&view.key).is_some_and(|e| {
                e.view.generation == view.generation && e.view.created_at == view.created_at
            });
            if unchanged {
                continue;
            }
            let Ok(compiled) = view.compiled() else {
                tracing::warn!(schedule = %view.key, "schedule does not compile: it is not timed");
                self.entries.remove(&view.key);
                continue;
            };
            let at = compiled.next_after(reference(&view)).map(|z| z.timestamp());
            self.insert(Arc::new(view), compiled, at);
            timed += 1;
        }
        self.entries.retain(|key, _| active.contains(key));
        timed
    }

    fn insert(
        &mut self,
        view: Arc<ScheduleView>,
        compiled: CompiledSchedule,
        at: Option<Timestamp>,
    ) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        if let Some(at) = at {
            self.queue.push(Reverse((at, epoch, view.key.clone())));
        }
        self.entries.insert(
            view.key.clone(),
            Entry {
                view,
                compiled,
                epoch,
                at,
            },
        );
        self.compact();
    }

    /// The schedules whose time is at or before `now`, earliest first. They leave the queue
    /// until [`settled`](Self::settled) gives them their next time.
    pub fn due(&mut self, now: Timestamp) -> Vec<Arc<ScheduleView>> {
        let mut due = Vec::new();
        while let Some(Reverse((at, epoch, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let (at, epoch) = (*at, *epoch);
            let Reverse((_, _, key)) = self.queue.pop().expect("peeked");
            if let Some(entry) = self.entries.get_mut(&key)
                && entry.epoch == epoch
                && entry.at == Some(at)
            {
                entry.at = None;
                due.push(entry.view.clone());
            }
        }
        due
    }

    /// A decision was made for `key` at `now`: every slot up to `now` is settled, so its next
    /// time is its first slot after `now`.
    pub fn settled(&mut self, key: &ResourceKey, now: Timestamp) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        self.next_epoch += 1;
        entry.epoch = self.next_epoch;
        entry.at = entry.compiled.next_after(now).map(|z| z.timestamp());
        if let Some(at) = entry.at {
            self.queue.push(Reverse((at, entry.epoch, key.clone())));
        }
    }

    /// The earliest time of any schedule, if one has a time.
    pub fn next_at(&mut self) -> Option<Timestamp> {
        while let Some(Reverse((at, epoch, key))) = self.queue.peek() {
            let live = self
                .entries
                .get(key)
                .is_some_and(|e| e.epoch == *epoch && e.at == Some(*at));
            if live {
                return Some(*at);
            }
            self.queue.pop();
        }
        None
    }

    /// Rebuilds the queue when stale items outnumber live ones (many edits, no slot firing),
    /// so memory stays proportional to the schedules held.
    fn compact(&mut self) {
        if self.queue.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        self.queue = self
            .entries
            .iter()
            .filter_map(|(key, e)| e.at.map(|at| Reverse((at, e.epoch, key.clone()))))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Kind, ReportScheduleSpec};

    fn view(name: &str, schedule: &str, generation: i64) -> ScheduleView {
        let spec: ReportScheduleSpec = serde_json::from_value(serde_json::json!({
            "schedule": serde_json::from_str::<serde_json::Value>(schedule).unwrap(),
            "timeZone": "Asia/Tokyo",
            "source": {"sql": {"query": "SELECT 1"}},
            "format": {"csv": {}},
            "fileName": "r.csv",
            "deliverTo": [{"target": "t"}],
        }))
        .unwrap();
        ScheduleView {
            key: ResourceKey::new(Kind::ReportSchedule, "default", name),
            spec,
            generation,
            created_at: ts("2026-07-01T00:00:00Z"),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn names(views: &[Arc<ScheduleView>]) -> Vec<&str> {
        views.iter().map(|v| v.key.name.as_str()).collect()
    }

    const DAILY_0030: &str = r#"{"daily": {"at": "00:30"}}"#;
    const DAILY_0100: &str = r#"{"daily": {"at": "01:00"}}"#;

    #[test]
    fn a_schedule_is_due_at_its_first_slot_after_the_reference_and_not_before() {
        let mut t = Timetable::new();
        t.sync(vec![view("a", DAILY_0030, 1)], |_| {
            ts("2026-07-30T00:00:00Z")
        });
        // 00:30 Tokyo on the 31st is 15:30 UTC on the 30th.
        assert_eq!(t.next_at(), Some(ts("2026-07-30T15:30:00Z")));
        assert!(t.due(ts("2026-07-30T15:29:59Z")).is_empty());
        assert_eq!(names(&t.due(ts("2026-07-30T15:30:00Z"))), ["a"]);
        // Taken until settled: not due twice.
        assert!(t.due(ts("2026-07-30T15:30:05Z")).is_empty());
        assert_eq!(t.next_at(), None);
        t.settled(&view("a", DAILY_0030, 1).key, ts("2026-07-30T15:30:05Z"));
        assert_eq!(t.next_at(), Some(ts("2026-07-31T15:30:00Z")));
    }

    #[test]
    fn a_slot_missed_while_down_is_due_at_once() {
        let mut t = Timetable::new();
        t.sync(vec![view("a", DAILY_0030, 1)], |_| {
            ts("2026-07-20T00:00:00Z")
        });
        assert_eq!(names(&t.due(ts("2026-07-30T20:00:00Z"))), ["a"]);
    }

    #[test]
    fn schedules_come_due_in_time_order() {
        let mut t = Timetable::new();
        t.sync(
            vec![view("late", DAILY_0100, 1), view("early", DAILY_0030, 1)],
            |_| ts("2026-07-30T00:00:00Z"),
        );
        assert_eq!(names(&t.due(ts("2026-07-31T00:00:00Z"))), ["early", "late"]);
    }

    #[test]
    fn a_sync_retimes_only_changed_schedules_and_drops_removed_and_suspended_ones() {
        let mut t = Timetable::new();
        t.sync(
            vec![
                view("a", DAILY_0030, 1),
                view("b", DAILY_0030, 1),
                view("c", DAILY_0030, 1),
            ],
            |_| ts("2026-07-30T00:00:00Z"),
        );
        let mut suspended = view("c", DAILY_0030, 2);
        suspended.spec.suspend = true;
        // `a` unchanged keeps its time even with a later reference; `b` changed to 01:00.
        let timed = t.sync(
            vec![
                view("a", DAILY_0030, 1),
                view("b", DAILY_0100, 2),
                suspended,
            ],
            |_| ts("2026-08-10T00:00:00Z"),
        );
        assert_eq!(timed, 1);
        assert_eq!(t.len(), 2);
        assert_eq!(names(&t.due(ts("2026-07-31T00:00:00Z"))), ["a"]);
        assert_eq!(t.next_at(), Some(ts("2026-08-10T16:00:00Z")));
        t.sync(vec![view("b", DAILY_0100, 2)], |_| {
            ts("2026-08-10T00:00:00Z")
        });
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn many_edits_without_a_slot_firing_keep_the_queue_bounded() {
        let mut t = Timetable::new();
        for generation in 1..=1000 {
            t.sync(vec![view("a", DAILY_0030, generation)], |_| {
                ts("2026-07-30T00:00:00Z")
            });
        }
        assert!(t.queue.len() <= 2 * t.len() + 65, "{}", t.queue.len());
        assert_eq!(names(&t.due(ts("2026-07-31T00:00:00Z"))), ["a"]);
    }
}
