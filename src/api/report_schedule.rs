//! `ReportSchedule`: what data to export, in which format and name, when, and to whom.
// Repeated `printcolumn(type_ = ...)` arguments of the kube derive are not duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Schedule, SecretRef, default_time_zone};

/// A scheduled report: a SQL query run for a time window, written as CSV, XLSX or PDF under a
/// templated file name, and delivered to one or more DeliveryTargets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ReportSchedule",
    plural = "reportschedules",
    shortname = "rs",
    namespaced,
    status = "ReportScheduleStatus",
    derive = "PartialEq",
    doc = "A scheduled report export: query, format, file name, schedule and delivery targets.",
    // `kubectl get`: 7 columns with the name; `-o wide` adds the schedule and the last success.
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        priority = 1
    ),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    // A string, not a date: kubectl shows a date as an age, and a future one as `<invalid>`.
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Last", type_ = "string", json_path = ".status.lastRun.outcome"),
    printcolumn(
        name = "LastSuccess",
        type_ = "date",
        json_path = ".status.lastSuccessfulTime",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportScheduleSpec {
    /// When the report runs (exactly one of `daily`, `weekly`, `monthly`, `cron`, `every`).
    pub schedule: Schedule,
    /// IANA time zone of the schedule, the data window and the file name, e.g. `Asia/Tokyo`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Pause scheduled runs. A run requested with `ferry run-now` still happens.
    #[serde(default)]
    pub suspend: bool,
    /// How late a missed slot (e.g. after downtime) may still run, as a duration such as `6h`.
    /// A slot missed by more is recorded as missed and never run. Default: no limit on the
    /// most recent missed slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<String>,
    /// What happens when a slot is due while the previous run is still going.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Where the rows come from.
    pub source: ReportSource,
    /// Columns to export, in order, with optional headers. Default: every column of the query,
    /// in query order, headed by its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// The file format (exactly one of `csv`, `xlsx`, `pdf`).
    pub format: ReportFormat,
    /// File name template. Tokens render the slot's scheduled time in `timeZone`, so a retry or
    /// re-run of a slot produces the same name: `{yyyy} {MM} {dd} {HH} {mm} {ss} {yyyyMMdd}
    /// {yyyyMMddHHmmss} {schedule} {namespace}`. Example: `customer_csv_report_{yyyyMMddHHmmss}.csv`.
    pub file_name: String,
    /// DeliveryTargets (in the same namespace) that receive every run's file.
    pub deliver_to: Vec<DeliveryRef>,
    /// How often and how patiently a failed delivery is retried, per target.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How many runs of this schedule the run history keeps.
    #[serde(default = "default_history_limit")]
    pub history_limit: u32,
    /// Who is told when runs start failing, are missed, recover or (if asked) succeed: names
    /// of `webhook` or `email` DeliveryTargets in the same namespace. One alert per change of
    /// state, not one per attempt.
    #[serde(default, skip_serializing_if = "Notify::is_empty")]
    pub notify: Notify,
}

/// Alerts to people: for each kind of event, the `webhook` or `email` DeliveryTargets told.
/// `onFailure` and `onMissed` are sent when a resource goes from healthy to failing (a failed,
/// partial or unknown run; a missed slot), `onRecovery` when it comes back, `onSuccess` after
/// every success (noisy: for reports someone waits for).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// Told when a run fails (failed, partial, or its outcome unknown) after a healthy one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Told when a slot is missed (Ferry was not running) after a healthy run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_missed: Vec<String>,
    /// Told when a run succeeds after failures or missed slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_recovery: Vec<String>,
    /// Told after every successful run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// Told when a periodic check (`ferry run` / `ferry controller`, `--check-interval`) finds
    /// this schedule's source or one of its `deliverTo` targets failing, ahead of the next
    /// run, and again when that check passes. One alert per target told, however many of its
    /// schedules the failing resource serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_check_failed: Vec<String>,
}

impl Notify {
    /// Whether nobody is told anything.
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty()
            && self.on_missed.is_empty()
            && self.on_recovery.is_empty()
            && self.on_success.is_empty()
            && self.on_check_failed.is_empty()
    }

    /// Every `(field, target)` pair, in field order.
    pub fn targets(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("onFailure", &self.on_failure),
            ("onMissed", &self.on_missed),
            ("onRecovery", &self.on_recovery),
            ("onSuccess", &self.on_success),
            ("onCheckFailed", &self.on_check_failed),
        ]
        .into_iter()
        .flat_map(|(field, names)| names.iter().map(move |n| (field, n.as_str())))
    }
}

fn default_history_limit() -> u32 {
    50
}

/// Behaviour when a run is due while the previous one is still running.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new run alongside the running one.
    Allow,
    /// Skip the new run and record it as skipped (default).
    #[default]
    Forbid,
    /// Cancel the running one (leaving no partial file) and start the new run.
    Replace,
}

/// The data a report exports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportSource {
    /// A SQL query against SQLite or PostgreSQL.
    pub sql: SqlSource,
    /// The time window bound to `:window_start` and `:window_end`, computed in `timeZone`
    /// relative to the slot: `all` (no bounds), `previousDay` (yesterday), `previousWeek`
    /// (the previous Monday-to-Sunday week), `previousMonth`, or `sinceLastSuccess` (from the
    /// previous successful slot to this one).
    #[serde(default)]
    pub window: Window,
}

/// A SQL data source. Give exactly one of `url` and `connectionSecretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlSource {
    /// A database URL kept in a Secret, e.g. `postgres://user:pass@host/db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_ref: Option<SecretRef>,
    /// A database URL without credentials, e.g. `sqlite://examples/quickstart/shop.db`
    /// (relative paths are relative to the working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The query. Named parameters `:window_start`, `:window_end` (RFC 3339 timestamps with
    /// the zone's offset) and `:slot` are bound from the window.
    pub query: String,
    /// PostgreSQL only: read the query in `parts` ranges of `column` at once, each in its own
    /// session, all sessions sharing one snapshot, and write the ranges in order: the file is
    /// the one a single session would write from the same snapshot when the query is ordered
    /// by `column`. For a plain SELECT (no GROUP BY, DISTINCT, aggregate, window function,
    /// LIMIT or UNION), in a ReportSchedule (a usage query is read by one session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
}

/// How a PostgreSQL query is split to be read by several sessions at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Partition {
    /// A column of the query's FROM clause (selected or not; `id`, `o.created_at`) of an
    /// integer, date, timestamp or timestamptz type, ideally the first key of the query's
    /// ORDER BY and indexed. Rows where it is NULL are read with the range written last (first
    /// when the ORDER BY puts NULLs first).
    pub column: String,
    /// Sessions reading at once, 2 to 16 (each a connection to the database).
    pub parts: u32,
}

/// The time window of a report run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Window {
    /// No bounds: every row (default).
    #[default]
    All,
    /// The calendar day before the slot's day.
    PreviousDay,
    /// The Monday-to-Sunday week before the slot's week.
    PreviousWeek,
    /// The calendar month before the slot's month.
    PreviousMonth,
    /// From the previous successful slot (or the epoch) up to this slot.
    SinceLastSuccess,
}

/// One exported column.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Column name as returned by the query.
    pub name: String,
    /// Header written in the file. Default: `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// The report file format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ReportFormat {
    /// Comma (or other) separated values, RFC 4180 quoting.
    Csv(CsvFormat),
    /// An Excel workbook.
    Xlsx(XlsxFormat),
    /// A paginated PDF table.
    Pdf(PdfFormat),
}

/// CSV options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsvFormat {
    /// Field separator, one ASCII character, e.g. `","`, `";"` or `"\t"`.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Write a header row.
    #[serde(default = "super::common::default_true")]
    pub header: bool,
    /// Character encoding: `utf-8`, `utf-8-bom` (for Excel) or `shift_jis`.
    #[serde(default)]
    pub encoding: CsvEncoding,
    /// Line ending: `crlf` (RFC 4180, default) or `lf`.
    #[serde(default)]
    pub line_ending: LineEnding,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            delimiter: default_delimiter(),
            header: true,
            encoding: CsvEncoding::default(),
            line_ending: LineEnding::default(),
        }
    }
}

fn default_delimiter() -> String {
    ",".to_string()
}

/// CSV character encoding.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CsvEncoding {
    /// UTF-8 without a byte order mark (default).
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// UTF-8 with a byte order mark, which Excel needs to detect UTF-8.
    #[serde(rename = "utf-8-bom")]
    Utf8Bom,
    /// Shift_JIS, for Japanese tools that expect it. A character it cannot encode is an error.
    #[serde(rename = "shift_jis")]
    ShiftJis,
}

/// Line ending of a text file.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    /// `\r\n` (default, RFC 4180).
    #[default]
    Crlf,
    /// `\n`.
    Lf,
}

/// XLSX options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XlsxFormat {
    /// Worksheet name (at most 31 characters, none of `[]:*?/\`). More than 1,048,575 rows
    /// continue on sheets named `<sheetName> (2)`, `(3)`, ...
    #[serde(default = "default_sheet_name")]
    pub sheet_name: String,
}

fn default_sheet_name() -> String {
    "Report".to_string()
}

/// PDF options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PdfFormat {
    /// Title printed on the first page. Default: the schedule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `portrait` (default) or `landscape`.
    #[serde(default)]
    pub orientation: Orientation,
    /// `A4` (default) or `Letter`.
    #[serde(default)]
    pub page_size: PageSize,
    /// A TrueType/OpenType font file to embed (as a subset), needed for non-Latin text such as
    /// Japanese. Default: a built-in Latin font.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub font_file: Option<String>,
}

/// Page orientation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    /// Taller than wide (default).
    #[default]
    Portrait,
    /// Wider than tall.
    Landscape,
}

/// Paper size.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PageSize {
    /// 210 x 297 mm (default).
    #[default]
    A4,
    /// 8.5 x 11 in.
    Letter,
}

/// A delivery of the report to a DeliveryTarget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRef {
    /// Name of a DeliveryTarget in the same namespace. A PSA connection (`connectwise`,
    /// `autotask`) takes the file as a ticket attachment in the company of the customer named
    /// by the schedule's `ferry.dev/customer` label, which a CustomerMapping must map on it.
    pub target: String,
}

/// Retries of a failed delivery, per target, with exponential backoff and jitter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Delay before the first retry, doubled on each further retry, e.g. `30s`.
    #[serde(default = "default_backoff")]
    pub backoff: String,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: default_attempts(),
            backoff: default_backoff(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff() -> String {
    "30s".to_string()
}

/// Observed state of a ReportSchedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` (the latest run) and `SourceReady` (the latest periodic check: the
    /// query prepared for the next slot, the declared columns in its result) conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the source was last checked (RFC 3339; `--check-interval`, `--check-before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// The slot of the most recent run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The slot of the most recent run that delivered to every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
    /// The next slot (RFC 3339 with the zone's offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// Summary of the most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// The last `ferry.dev/run-now` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_run_now: Option<String>,
}

/// What one run produced and where it went.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The scheduled slot (RFC 3339).
    pub slot: String,
    /// `succeeded`, `failed`, `partial` or `missed`.
    pub outcome: String,
    /// Rows exported.
    #[serde(default)]
    pub rows: u64,
    /// Size of the file in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Outcome per delivery target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetOutcome>,
}

/// The outcome of one delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetOutcome {
    /// DeliveryTarget name.
    pub target: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// SHA-256 of what the target received, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Error message of the last attempt, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
