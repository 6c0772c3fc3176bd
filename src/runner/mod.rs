//! Running ReportSchedules: deciding which slots are due (catch-up within `startingDeadline`,
//! missed beyond it, never twice), executing a run (export to a staged file, deliver to every
//! target with retries, record it all in the ledger), resuming runs a crash interrupted, and
//! reporting status. The scheduling decision is a pure function; everything else is I/O.
//!
//! Bottom up: [`decide`] (pure), [`engine`] (the [`Runner`] and its types), [`execute`] (one
//! run), [`retry`] (one delivery with retries), [`limits`] (deliveries at once per target),
//! [`notify`] (alerts after runs and missed slots) and [`timetable`] (when each schedule next needs a decision).

mod decide;
mod engine;
mod execute;
mod limits;
mod notify;
mod retry;
mod timetable;

pub use decide::{Decision, MAX_SLOTS_PER_DECISION, ON_TIME, ScheduleView, decide, missed_summary};
pub use engine::{RunReport, RunRequest, Runner};
pub use execute::Started;

pub use timetable::Timetable;
