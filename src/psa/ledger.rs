//! The PSA sync ledger: every attempt of a mapping's usage sync or billing push per slot, and
//! the one ticket kept open per mapping and failure kind. It lives in the state database, so a
//! restart knows which slots ran and which tickets exist.

use serde_json::Value;
use sqlx::{AnyPool, Row};

use crate::Result;

/// What a sync pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncKind {
    /// Usage quantities (every 24 h by default).
    Usage,
    /// The monthly billing push.
    Billing,
}

impl SyncKind {
    /// `usage` or `billing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncKind::Usage => "usage",
            SyncKind::Billing => "billing",
        }
    }

    /// For people: `usage sync` or `billing push`.
    pub fn label(&self) -> &'static str {
        match self {
            SyncKind::Usage => "usage sync",
            SyncKind::Billing => "billing push",
        }
    }
}

/// One recorded attempt.
#[derive(Clone, Debug)]
pub struct SyncRecord {
    /// Row id.
    pub id: i64,
    /// The slot (Unix seconds).
    pub slot_epoch: i64,
    /// `scheduled` or `manual`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub outcome: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, when finished.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What was pushed (JSON).
    pub pushed: Option<Value>,
}

/// The PSA ledger, on the state's pool.
#[derive(Clone, Debug)]
pub struct PsaLedger {
    pool: AnyPool,
}

impl PsaLedger {
    /// The ledger in the state database behind `pool`.
    pub fn new(pool: AnyPool) -> Self {
        PsaLedger { pool }
    }

    /// Records the start of an attempt; returns its id.
    pub async fn start(
        &self,
        namespace: &str,
        mapping: &str,
        kind: SyncKind,
        slot_epoch: i64,
        trigger: &str,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO psa_syncs (namespace, mapping, kind, slot_epoch, trigger, outcome, started_at, owner) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) RETURNING id",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(kind.as_str())
        .bind(slot_epoch)
        .bind(trigger)
        .bind(jiff::Timestamp::now().to_string())
        .bind(crate::ledger::owner())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records how an attempt ended.
    pub async fn finish(
        &self,
        id: i64,
        succeeded: bool,
        error: Option<&str>,
        pushed: &Value,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE psa_syncs SET outcome = $1, finished_at = $2, error = $3, pushed = $4, owner = NULL \
             WHERE id = $5",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(jiff::Timestamp::now().to_string())
        .bind(error)
        .bind(pushed.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the attempt of `kind` recorded just before attempt `before` succeeded (`None`:
    /// no finished attempt before it): whether the mapping's sync was healthy, for alerts.
    pub async fn previous_succeeded(
        &self,
        namespace: &str,
        mapping: &str,
        kind: SyncKind,
        before: i64,
    ) -> Result<Option<bool>> {
        let outcome: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM psa_syncs WHERE namespace = $1 AND mapping = $2 AND kind = $3 \
             AND id < $4 AND outcome <> 'running' ORDER BY id DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(kind.as_str())
        .bind(before)
        .fetch_optional(&self.pool)
        .await?;
        Ok(outcome.map(|o| o == "succeeded"))
    }

    /// The attempts for one slot, oldest first.
    pub async fn attempts(
        &self,
        namespace: &str,
        mapping: &str,
        kind: SyncKind,
        slot_epoch: i64,
    ) -> Result<Vec<SyncRecord>> {
        let rows = sqlx::query(
            "SELECT id, slot_epoch, trigger, outcome, started_at, finished_at, error, pushed \
             FROM psa_syncs WHERE namespace = $1 AND mapping = $2 AND kind = $3 AND slot_epoch = $4 ORDER BY id",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(kind.as_str())
        .bind(slot_epoch)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// The newest attempts of a mapping, newest first.
    pub async fn history(
        &self,
        namespace: &str,
        mapping: &str,
        limit: u32,
    ) -> Result<Vec<(SyncKind, SyncRecord)>> {
        let rows = sqlx::query(
            "SELECT id, kind, slot_epoch, trigger, outcome, started_at, finished_at, error, pushed \
             FROM psa_syncs WHERE namespace = $1 AND mapping = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let kind = if r.get::<String, _>("kind") == "billing" {
                    SyncKind::Billing
                } else {
                    SyncKind::Usage
                };
                (kind, record(r))
            })
            .collect())
    }

    /// Marks attempts left `running` by a process that died (killed, crashed, machine
    /// restarted) as failed, so their slot is attempted again. Attempts of live processes stay.
    pub async fn abandon_dead(&self) -> Result<u64> {
        let rows: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, owner FROM psa_syncs WHERE outcome = 'running'")
                .fetch_all(&self.pool)
                .await?;
        let mut abandoned = 0;
        for (id, owner) in rows {
            if owner.as_deref().is_some_and(crate::ledger::owner_alive) {
                continue;
            }
            sqlx::query(
                "UPDATE psa_syncs SET outcome = 'failed', finished_at = started_at, owner = NULL, \
                 error = 'interrupted: the ferry process stopped during the sync' WHERE id = $1",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
            abandoned += 1;
        }
        Ok(abandoned)
    }

    /// The ticket kept open for `(mapping, kind)`: (ticket id, title).
    pub async fn open_ticket(
        &self,
        namespace: &str,
        mapping: &str,
        kind: &str,
    ) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT ticket_id, title FROM psa_tickets WHERE namespace = $1 AND mapping = $2 AND kind = $3",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every open ticket of a mapping: (kind, ticket id).
    pub async fn open_tickets(&self, namespace: &str, mapping: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT kind, ticket_id FROM psa_tickets WHERE namespace = $1 AND mapping = $2 ORDER BY kind",
        )
        .bind(namespace)
        .bind(mapping)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Remembers the ticket opened for `(mapping, kind)`.
    pub async fn record_ticket(
        &self,
        namespace: &str,
        mapping: &str,
        kind: &str,
        ticket_id: i64,
        title: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO psa_tickets (namespace, mapping, kind, ticket_id, title, opened_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace, mapping, kind) DO UPDATE SET \
             ticket_id = excluded.ticket_id, title = excluded.title, opened_at = excluded.opened_at",
        )
        .bind(namespace)
        .bind(mapping)
        .bind(kind)
        .bind(ticket_id)
        .bind(title)
        .bind(jiff::Timestamp::now().to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the ticket of `(mapping, kind)` (it was closed).
    pub async fn forget_ticket(&self, namespace: &str, mapping: &str, kind: &str) -> Result<()> {
        sqlx::query("DELETE FROM psa_tickets WHERE namespace = $1 AND mapping = $2 AND kind = $3")
            .bind(namespace)
            .bind(mapping)
            .bind(kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A trigger as report runs name it: states written before the names were aligned hold
/// `scheduled` and `manual`.
fn trigger_name(stored: String) -> String {
    match stored.as_str() {
        "scheduled" => "schedule".to_string(),
        "manual" => "run-now".to_string(),
        _ => stored,
    }
}

fn record(r: &sqlx::any::AnyRow) -> SyncRecord {
    SyncRecord {
        id: r.get("id"),
        slot_epoch: r.get("slot_epoch"),
        trigger: trigger_name(r.get("trigger")),
        outcome: r.get("outcome"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        error: r.get("error"),
        pushed: r
            .get::<Option<String>, _>("pushed")
            .and_then(|p| serde_json::from_str(&p).ok()),
    }
}
