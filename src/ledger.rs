//! The run ledger: every run of every ReportSchedule (slot, trigger, rows, bytes, sha256,
//! outcome) and every delivery (target, attempts, receipt). It is the idempotency key: a
//! (schedule, slot, target) is delivered successfully at most once, across crashes and
//! restarts, because a unique index refuses a second success.

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::{Error, Result};

/// Why a run happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its slot came.
    Schedule,
    /// A missed slot run late, within `startingDeadline`, after downtime.
    CatchUp,
    /// `ferry run-now` (or the run-now annotation).
    RunNow,
    /// `ferry run-now --slot`: a past period, with that slot's window and file name.
    Backfill,
    /// An interrupted run (ferry stopped or crashed) completed on the next start.
    Resume,
}

impl Trigger {
    /// The ledger's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::RunNow => "run-now",
            Trigger::Backfill => "backfill",
            Trigger::Resume => "resume",
        }
    }
}

/// The outcome of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Exporting or delivering now.
    Running,
    /// Exported and delivered to every target.
    Succeeded,
    /// Delivered to some targets but not all.
    Partial,
    /// Nothing delivered (export failed, or every target failed).
    Failed,
    /// The slot was missed by more than `startingDeadline` and never ran.
    Missed,
    /// The slot came while the previous run was still going (`concurrencyPolicy: Forbid`).
    Skipped,
    /// Cancelled (a newer run replaced it, or ferry was stopped); nothing partial is visible.
    Cancelled,
    /// Every target that did not fail may have received the file, but for at least one
    /// Ferry cannot tell: it stopped while handing an email over. Nothing is sent again
    /// unless asked (`ferry run-now --slot ... --resend`).
    Unknown,
}

impl Outcome {
    /// The ledger's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Missed => "missed",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
            Outcome::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Result<Outcome> {
        Ok(match s {
            "running" => Outcome::Running,
            "succeeded" => Outcome::Succeeded,
            "partial" => Outcome::Partial,
            "failed" => Outcome::Failed,
            "missed" => Outcome::Missed,
            "skipped" => Outcome::Skipped,
            "cancelled" => Outcome::Cancelled,
            "unknown" => Outcome::Unknown,
            other => return Err(Error::State(format!("unknown run outcome `{other}`"))),
        })
    }
}

/// One delivery of a run's file to a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The DeliveryTarget.
    pub target: String,
    /// `succeeded`, `failed`, `delivering` (at the point of no return: the file complete
    /// under its temporary name, or an email's DATA) or `unknown` (Ferry stopped there and
    /// the destination cannot say whether it arrived).
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// What the target confirmed (path, bytes, sha256, fingerprints, message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When last updated (RFC 3339).
    pub updated_at: String,
}

/// One run, as `ferry history` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Ledger id.
    pub id: i64,
    /// Namespace of the schedule.
    pub namespace: String,
    /// The ReportSchedule.
    pub schedule: String,
    /// The slot, RFC 3339 with the schedule zone's offset.
    pub slot: String,
    /// Why it ran.
    pub trigger: String,
    /// The schedule's generation the run used.
    pub generation: i64,
    /// The outcome.
    pub outcome: Outcome,
    /// When it started.
    pub started_at: String,
    /// Seconds from its slot to its start, for runs the scheduler started (`schedule`,
    /// `catch-up`, `resume`): how long a due run waited (Ferry down, `--max-concurrent-runs`
    /// full). None for manual runs and for slots that never started (missed, skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_delay_seconds: Option<i64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Rows exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// File size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Where the finished file waits until every target has it.
    #[serde(skip)]
    pub staged_path: Option<String>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Deliveries, one per target.
    #[serde(default)]
    pub deliveries: Vec<DeliveryRecord>,
    #[serde(skip)]
    slot_epoch: i64,
}

impl RunRecord {
    /// The slot as seconds since the epoch.
    pub fn slot_epoch(&self) -> i64 {
        self.slot_epoch
    }
}

/// Identifies a schedule's slot.
#[derive(Clone, Debug)]
pub struct SlotKey<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Schedule name.
    pub schedule: &'a str,
    /// The slot.
    pub slot: &'a jiff::Zoned,
}

/// What an earlier run did for a (slot, target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// Nothing delivered yet.
    None,
    /// Run `run` delivered it.
    Delivered {
        /// The run.
        run: i64,
    },
    /// Run `run` may have (an email handed over when Ferry stopped).
    Unknown {
        /// The run.
        run: i64,
    },
}

/// How many earlier runs' leftovers a delivery looks for ([`Ledger::stale_runs`]).
pub const STALE_RUNS: usize = 16;

/// The ledger, in the state database.
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: AnyPool,
}

const RUN_COLUMNS: &str = "id, namespace, schedule, slot, slot_epoch, trigger, generation, outcome, \
     started_at, finished_at, rows, bytes, sha256, file_name, staged_path, error";

impl Ledger {
    /// The ledger of a state store.
    pub fn new(pool: AnyPool) -> Self {
        Ledger { pool }
    }

    /// Records the start of a run; returns its id.
    pub async fn start_run(
        &self,
        key: &SlotKey<'_>,
        trigger: Trigger,
        generation: i64,
        now: &str,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (namespace, schedule, slot, slot_epoch, trigger, generation, outcome, \
             started_at, owner) VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8) RETURNING id",
        )
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(rfc3339(key.slot))
        .bind(key.slot.timestamp().as_second())
        .bind(trigger.as_str())
        .bind(generation)
        .bind(now)
        .bind(owner())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records a slot that did not run (missed or skipped), finished at once.
    pub async fn record_unrun(
        &self,
        key: &SlotKey<'_>,
        trigger: Trigger,
        outcome: Outcome,
        reason: &str,
        now: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO runs (namespace, schedule, slot, slot_epoch, trigger, outcome, started_at, \
             finished_at, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(rfc3339(key.slot))
        .bind(key.slot.timestamp().as_second())
        .bind(trigger.as_str())
        .bind(outcome.as_str())
        .bind(now)
        .bind(now)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the exported file of a run (before any delivery).
    pub async fn record_export(
        &self,
        run: i64,
        rows: u64,
        bytes: u64,
        sha256: &str,
        file_name: &str,
        staged_path: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET rows = $1, bytes = $2, sha256 = $3, file_name = $4, staged_path = $5 WHERE id = $6",
        )
        .bind(rows as i64)
        .bind(bytes as i64)
        .bind(sha256)
        .bind(file_name)
        .bind(staged_path)
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a run.
    pub async fn finish_run(
        &self,
        run: i64,
        outcome: Outcome,
        error: Option<&str>,
        now: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET outcome = $1, error = $2, finished_at = $3, owner = NULL WHERE id = $4",
        )
        .bind(outcome.as_str())
        .bind(error)
        .bind(now)
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `target` already received this slot (outside explicit re-sends), or may have.
    pub async fn prior_delivery(&self, key: &SlotKey<'_>, target: &str) -> Result<Prior> {
        let rows = sqlx::query(
            "SELECT run_id, outcome FROM deliveries WHERE namespace = $1 AND schedule = $2 \
             AND slot_epoch = $3 AND target = $4 AND resend = 0 \
             AND outcome IN ('succeeded', 'unknown') ORDER BY run_id DESC",
        )
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(key.slot.timestamp().as_second())
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        let mut prior = Prior::None;
        for row in rows {
            let run: i64 = row.get("run_id");
            match row.get::<String, _>("outcome").as_str() {
                "succeeded" => return Ok(Prior::Delivered { run }),
                _ => prior = Prior::Unknown { run },
            }
        }
        Ok(prior)
    }

    /// The outcome of run `run`'s delivery to `target` so far (`delivering` after a crash at
    /// the point of no return).
    pub async fn delivery_outcome(&self, run: i64, target: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT outcome FROM deliveries WHERE run_id = $1 AND target = $2")
                .bind(run)
                .bind(target)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records that run `run`'s delivery to `target` reached its point of no return, with the
    /// transport's evidence (an email's Message-ID): after a crash, the destination is asked
    /// before anything is sent again. The attempt count stays as it is.
    pub async fn mark_delivering(
        &self,
        run: i64,
        key: &SlotKey<'_>,
        target: &str,
        resend: bool,
        evidence: &serde_json::Value,
        now: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO deliveries (run_id, namespace, schedule, slot_epoch, target, resend, outcome, \
             attempts, receipt, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'delivering', 0, $7, $8) \
             ON CONFLICT (run_id, target) DO UPDATE SET outcome = excluded.outcome, \
             receipt = excluded.receipt, error = NULL, updated_at = excluded.updated_at",
        )
        .bind(run)
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(key.slot.timestamp().as_second())
        .bind(target)
        .bind(if resend { run } else { 0 })
        .bind(evidence.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Earlier runs of `schedule` that wrote `file_name` and may have left a temporary file at
    /// `target`: not in flight in a live process, not delivered there, started in the last
    /// week (at most [`STALE_RUNS`], newest first). Their temporary names are exact, so
    /// removing them can never touch anything but Ferry's own leftovers.
    pub async fn stale_runs(
        &self,
        namespace: &str,
        schedule: &str,
        file_name: &str,
        target: &str,
        except: i64,
        since: &str,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT r.id, r.outcome, r.owner FROM runs r WHERE r.namespace = $1 \
             AND r.schedule = $2 AND r.file_name = $3 AND r.id <> $4 AND r.started_at >= $5 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = r.id \
             AND d.target = $6 AND d.outcome = 'succeeded') ORDER BY r.id DESC",
        )
        .bind(namespace)
        .bind(schedule)
        .bind(file_name)
        .bind(except)
        .bind(since)
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|row| {
                let running = row.get::<String, _>("outcome") == "running";
                let owner: Option<String> = row.get("owner");
                !(running && owner.as_deref().is_some_and(owner_alive))
            })
            .map(|row| row.get::<i64, _>("id"))
            .take(STALE_RUNS)
            .collect())
    }

    /// Records one delivery attempt's result. A second success for the same
    /// (schedule, slot, target) is refused by the database; it is reported as `Ok(false)`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_delivery(
        &self,
        run: i64,
        key: &SlotKey<'_>,
        target: &str,
        resend: bool,
        outcome: &str,
        attempts: u32,
        receipt: Option<&serde_json::Value>,
        error: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO deliveries (run_id, namespace, schedule, slot_epoch, target, resend, outcome, \
             attempts, receipt, error, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (run_id, target) DO UPDATE SET outcome = excluded.outcome, \
             attempts = excluded.attempts, receipt = excluded.receipt, error = excluded.error, \
             updated_at = excluded.updated_at",
        )
        .bind(run)
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(key.slot.timestamp().as_second())
        .bind(target)
        .bind(if resend { run } else { 0 })
        .bind(outcome)
        .bind(attempts as i64)
        .bind(receipt.map(|r| r.to_string()))
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The most recent slot of a schedule with any ledger entry (run, missed or skipped).
    pub async fn last_slot(&self, namespace: &str, schedule: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(slot_epoch) FROM runs WHERE namespace = $1 AND schedule = $2",
        )
        .bind(namespace)
        .bind(schedule)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The newest slot of every schedule with runs, in one query: what the daemon's
    /// timetable starts from, without one query per schedule.
    pub async fn last_slots(&self) -> Result<std::collections::HashMap<(String, String), i64>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT namespace, schedule, MAX(slot_epoch) FROM runs GROUP BY namespace, schedule",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(namespace, schedule, slot)| ((namespace, schedule), slot))
            .collect())
    }

    /// The outcome recorded for a schedule just before run `before` (any id above every run:
    /// the latest), skipping runs still going, skipped and cancelled ones: whether the schedule
    /// was healthy, for alerts (`crate::alert`).
    pub async fn previous_outcome(
        &self,
        namespace: &str,
        schedule: &str,
        before: i64,
    ) -> Result<Option<Outcome>> {
        let outcome: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM runs WHERE namespace = $1 AND schedule = $2 AND id < $3 \
             AND outcome NOT IN ('running', 'skipped', 'cancelled') ORDER BY id DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(schedule)
        .bind(before)
        .fetch_optional(&self.pool)
        .await?;
        outcome.map(|o| Outcome::parse(&o)).transpose()
    }

    /// The most recent successful slot of a schedule (for `sinceLastSuccess` windows).
    pub async fn last_success(&self, namespace: &str, schedule: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(slot_epoch) FROM runs WHERE namespace = $1 AND schedule = $2 AND outcome = 'succeeded'",
        )
        .bind(namespace)
        .bind(schedule)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Runs left `running` by a process that is gone (crash, kill -9, power loss).
    pub async fn interrupted(&self) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS}, owner FROM runs WHERE outcome = 'running' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let owner: Option<String> = row.get("owner");
            if owner.as_deref().is_some_and(owner_alive) {
                continue;
            }
            out.push(self.with_deliveries(run_from_row(&row)?).await?);
        }
        Ok(out)
    }

    /// Takes over the interrupted run of this slot, if there is one (left `running` by a
    /// process that is gone), so that running the slot again continues it: the same run id,
    /// so the same staged file and the same temporary names at the destinations, and one run
    /// in the history. The owner is compared and set in one statement: of two processes
    /// reaching for the same run, one gets it.
    pub async fn adopt_interrupted(&self, key: &SlotKey<'_>) -> Result<Option<i64>> {
        for (id, was) in self.running(key).await? {
            if was.as_deref().is_some_and(owner_alive) {
                continue;
            }
            let taken = match &was {
                Some(was) => {
                    sqlx::query("UPDATE runs SET owner = $1 WHERE id = $2 AND owner = $3")
                        .bind(owner())
                        .bind(id)
                        .bind(was)
                        .execute(&self.pool)
                        .await?
                }
                None => {
                    sqlx::query("UPDATE runs SET owner = $1 WHERE id = $2 AND owner IS NULL")
                        .bind(owner())
                        .bind(id)
                        .execute(&self.pool)
                        .await?
                }
            };
            if taken.rows_affected() == 1 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// A run of this slot in flight in a live process (this one or another), if any: a second
    /// run of the slot would race it to the same destinations.
    pub async fn in_flight(&self, key: &SlotKey<'_>) -> Result<Option<i64>> {
        Ok(self
            .running(key)
            .await?
            .into_iter()
            .find(|(_, owner)| owner.as_deref().is_some_and(owner_alive))
            .map(|(id, _)| id))
    }

    /// The runs of a slot recorded as running, newest first, with their owners.
    async fn running(&self, key: &SlotKey<'_>) -> Result<Vec<(i64, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, owner FROM runs WHERE namespace = $1 AND schedule = $2 \
             AND slot_epoch = $3 AND outcome = 'running' ORDER BY id DESC",
        )
        .bind(key.namespace)
        .bind(key.schedule)
        .bind(key.slot.timestamp().as_second())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get("id"), row.get("owner")))
            .collect())
    }

    /// Marks a run as taken over by this process (after a crash of its previous owner).
    pub async fn adopt(&self, run: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET owner = $1 WHERE id = $2")
            .bind(owner())
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks this process's running runs of a schedule as cancelled (`concurrencyPolicy:
    /// Replace`); their staged files are private and never delivered.
    pub async fn cancel_running(
        &self,
        namespace: &str,
        schedule: &str,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET outcome = 'cancelled', error = $1, owner = NULL \
             WHERE namespace = $2 AND schedule = $3 AND outcome = 'running' AND owner = $4",
        )
        .bind(reason)
        .bind(namespace)
        .bind(schedule)
        .bind(owner())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One run with its deliveries, if it is (still) in the ledger: what a Job executing a
    /// recorded run starts from, and how its leader learns the outcome.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.with_deliveries(run_from_row(&row)?).await?)),
            None => Ok(None),
        }
    }

    /// The newest runs of a schedule, newest first.
    pub async fn history(
        &self,
        namespace: &str,
        schedule: &str,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE namespace = $1 AND schedule = $2 \
             ORDER BY slot_epoch DESC, id DESC LIMIT $3"
        )))
        .bind(namespace)
        .bind(schedule)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_deliveries(run_from_row(&row)?).await?);
        }
        Ok(out)
    }

    /// Keeps the newest `limit` runs of a schedule (`historyLimit`). Runs still running, and
    /// the newest entry (the scheduler's reference point), are never removed.
    pub async fn prune(&self, namespace: &str, schedule: &str, limit: u32) -> Result<u64> {
        let result = sqlx::query(
            "DELETE FROM runs WHERE namespace = $1 AND schedule = $2 AND outcome != 'running' AND id NOT IN \
             (SELECT id FROM runs WHERE namespace = $3 AND schedule = $4 ORDER BY slot_epoch DESC, id DESC LIMIT $5)",
        )
        .bind(namespace)
        .bind(schedule)
        .bind(namespace)
        .bind(schedule)
        .bind(limit.max(1) as i64)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Removes every run of a schedule (the schedule was deleted).
    pub async fn forget(&self, namespace: &str, schedule: &str) -> Result<()> {
        sqlx::query("DELETE FROM runs WHERE namespace = $1 AND schedule = $2")
            .bind(namespace)
            .bind(schedule)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn with_deliveries(&self, mut run: RunRecord) -> Result<RunRecord> {
        let rows = sqlx::query(
            "SELECT target, outcome, attempts, receipt, error, updated_at FROM deliveries \
             WHERE run_id = $1 ORDER BY target",
        )
        .bind(run.id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let receipt: Option<String> = row.get("receipt");
            run.deliveries.push(DeliveryRecord {
                target: row.get("target"),
                outcome: row.get("outcome"),
                attempts: row.get::<i64, _>("attempts") as u32,
                receipt: receipt.and_then(|r| serde_json::from_str(&r).ok()),
                error: row.get("error"),
                updated_at: row.get("updated_at"),
            });
        }
        Ok(run)
    }
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<RunRecord> {
    let outcome: String = row.get("outcome");
    Ok(RunRecord {
        id: row.get("id"),
        namespace: row.get("namespace"),
        schedule: row.get("schedule"),
        slot: row.get("slot"),
        slot_epoch: row.get("slot_epoch"),
        trigger: row.get("trigger"),
        generation: row.get("generation"),
        outcome: Outcome::parse(&outcome)?,
        start_delay_seconds: start_delay(
            row.get("slot_epoch"),
            &row.get::<String, _>("started_at"),
            &row.get::<String, _>("trigger"),
            &outcome,
        ),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        rows: row.get::<Option<i64>, _>("rows").map(|v| v as u64),
        bytes: row.get::<Option<i64>, _>("bytes").map(|v| v as u64),
        sha256: row.get("sha256"),
        file_name: row.get("file_name"),
        staged_path: row.get("staged_path"),
        error: row.get("error"),
        deliveries: Vec::new(),
    })
}

/// Seconds from a run's slot to its start, for runs the scheduler started.
fn start_delay(slot_epoch: i64, started_at: &str, trigger: &str, outcome: &str) -> Option<i64> {
    let scheduled = matches!(trigger, "schedule" | "catch-up" | "resume");
    let started = !matches!(outcome, "missed" | "skipped");
    if !(scheduled && started) {
        return None;
    }
    let started: jiff::Timestamp = started_at.parse().ok()?;
    Some((started.as_second() - slot_epoch).max(0))
}

/// RFC 3339 with the zone's offset, as slots are shown everywhere.
pub fn rfc3339(z: &jiff::Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// This process, as recorded on the runs it owns: `pid@boot-id`, plus `#instance` for a
/// controller replica (pods of one node share the boot id and often the pid).
pub(crate) fn owner() -> String {
    match INSTANCE.get() {
        Some(instance) => format!("{}@{}#{instance}", std::process::id(), boot_id()),
        None => format!("{}@{}", std::process::id(), boot_id()),
    }
}

static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process in the ledger (`ferry controller --instance`, the pod name), so that
/// replicas sharing a PostgreSQL state tell their runs apart.
pub fn set_instance(instance: &str) {
    let _ = INSTANCE.set(instance.to_string());
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether the process that recorded `owner` is still running (same boot, pid alive). Only
/// asked by a process holding the state lock, so a run of another controller instance is
/// never alive: that instance lost the lock (and with it the Lease) when it stopped.
pub(crate) fn owner_alive(owner: &str) -> bool {
    let (process, instance) = match owner.split_once('#') {
        Some((process, instance)) => (process, Some(instance)),
        None => (owner, None),
    };
    if instance != INSTANCE.get().map(String::as_str) {
        return false;
    }
    let Some((pid, boot)) = process.split_once('@') else {
        return false;
    };
    if boot != boot_id() {
        return false;
    }
    if pid == std::process::id().to_string() {
        return true;
    }
    std::path::Path::new("/proc").join(pid).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_delay_is_shown_only_for_runs_the_scheduler_started() {
        let slot = 1_785_425_400; // 2026-07-30T15:30:00Z
        assert_eq!(
            start_delay(slot, "2026-07-30T15:30:10Z", "schedule", "succeeded"),
            Some(10)
        );
        assert_eq!(
            start_delay(slot, "2026-07-30T17:30:00Z", "catch-up", "failed"),
            Some(7200)
        );
        assert_eq!(
            start_delay(slot, "2026-07-30T15:31:00Z", "resume", "running"),
            Some(60)
        );
        assert_eq!(
            start_delay(slot, "2026-08-02T00:00:00Z", "run-now", "succeeded"),
            None
        );
        assert_eq!(
            start_delay(slot, "2026-08-02T00:00:00Z", "backfill", "succeeded"),
            None
        );
        assert_eq!(
            start_delay(slot, "2026-08-02T00:00:00Z", "catch-up", "missed"),
            None
        );
        assert_eq!(
            start_delay(slot, "2026-07-30T15:30:00Z", "schedule", "skipped"),
            None
        );
    }
}
