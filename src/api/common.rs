//! Types shared by the three kinds: secret references, schedules, durations, status conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to one key of a Secret.
///
/// In a cluster: key `key` of the Secret `name` in the resource's namespace. In file mode: the
/// file `<secrets-dir>/<namespace>/<name>/<key>` (the layout of a mounted Secret), overridable by
/// the environment variable `FERRY_SECRET_<NAME>_<KEY>` (upper-cased, `-` and `.` become `_`).
/// The value itself never appears in plans, logs, errors or status.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret (a directory under `<secrets-dir>/<namespace>/` in file mode).
    pub name: String,
    /// Key inside the Secret (a file name in file mode).
    pub key: String,
}

/// When something runs. Exactly one kind is given, e.g. `{daily: {at: "00:30"}}`.
///
/// Times are wall-clock times in the owning resource's `timeZone`. A local time that does not
/// exist (a DST gap) runs at the first instant after the gap; an ambiguous local time (a DST
/// fold) runs once, at its first occurrence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Schedule {
    /// Every day (weekends and holidays included) at a local time.
    Daily(DailySchedule),
    /// On the given weekdays at a local time.
    Weekly(WeeklySchedule),
    /// Once a month on day `day` at a local time; days 29-31 fall back to the month's last day.
    Monthly(MonthlySchedule),
    /// A five-field cron expression (minute hour day-of-month month day-of-week), evaluated in
    /// the time zone, e.g. `"30 0 * * *"`.
    Cron(String),
    /// A fixed interval such as `24h` or `15m`, counted from the Unix epoch so that slots are
    /// stable across restarts.
    Every(String),
}

/// A daily schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DailySchedule {
    /// Local time of day, `HH:MM` (24-hour clock), e.g. `"00:30"`.
    pub at: String,
}

/// A weekly schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklySchedule {
    /// Weekdays to run on, e.g. `[mon, thu]`.
    pub on: Vec<Weekday>,
    /// Local time of day, `HH:MM` (24-hour clock).
    pub at: String,
}

/// A monthly schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonthlySchedule {
    /// Day of the month, 1-31. In a month without that day (e.g. 31 in April, 29 in a
    /// non-leap February) the run happens on the month's last day.
    #[schemars(range(min = 1, max = 31))]
    pub day: u8,
    /// Local time of day, `HH:MM` (24-hour clock).
    pub at: String,
}

/// A day of the week.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A condition in the Kubernetes style, used in every kind's status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` (the resource is valid and usable) or `Synced` (the last reconcile of its
    /// external state succeeded).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase machine-readable reason.
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// Default time zone of every schedule.
pub fn default_time_zone() -> String {
    "UTC".to_string()
}

pub(crate) fn default_true() -> bool {
    true
}
