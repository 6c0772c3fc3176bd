//! The CustomerMapping reconcile: resolve the company (exists, unique, active) and each
//! product's agreement/contract and item, then set the quantities the usage source reports.
//!
//! Quantities are set, never added, and always from what the PSA holds now, so a sync cut at
//! any point and run again converges without a duplicate addition or a second adjustment:
//! nothing depends on a remembered id.
//!
//! This module is the orchestration ([`Syncer`]: which syncs are due, running them with the
//! usage rows read once per source, the ledger, tickets and status around each); the parts
//! are [`mapping`] (a mapping with its settings in force), [`resolve`] (mapping -> PSA
//! company, agreements/contracts, services), [`push`] (quantities and release),
//! [`tickets`] (one ticket per failing mapping and kind) and [`status`] (the sync report and
//! the mapping's status).

pub mod mapping;
mod notify;
pub mod push;
pub mod resolve;
pub mod status;
pub mod tickets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{Timestamp, Zoned};
use serde_json::Value;
use tokio::sync::Mutex;

pub use self::mapping::{AutotaskRules, MappingView};
pub use self::push::{Pushed, current_quantity, push_all};
pub use self::resolve::{
    Resolution, ResolvedProduct, ServiceCache, choose_agreement, choose_company, resolve,
    resolve_with,
};
pub use self::status::SyncReport;
use self::tickets::Wanted;
pub use self::tickets::{CUSTOMER_LABEL, ticket_title};
use crate::Result;
use crate::api::ResourceKey;
use crate::psa::client::PsaClient;
use crate::psa::http::RetryPolicy;
use crate::psa::ledger::{PsaLedger, SyncKind};
use crate::psa::usage::{Usage, read_usage};
use crate::secrets::FileSecrets;
use crate::state::StateStore;

/// Usage rows read during one [`Syncer::run`], per distinct source: each cell is filled once.
type UsageCache =
    Mutex<HashMap<String, Arc<Mutex<Option<std::result::Result<Arc<Usage>, String>>>>>>;

/// A failed attempt of a slot is retried after this delay, doubled per attempt.
const RETRY_BASE: Duration = Duration::from_secs(120);
/// At most this many attempts per slot; then the slot waits for the next one.
const MAX_ATTEMPTS: usize = 8;

/// Why a sync runs. Recorded with the names report runs use: `schedule`, `run-now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its schedule came due.
    Scheduled,
    /// `ferry run-now`.
    RunNow,
}

/// One sync to run.
#[derive(Clone, Debug)]
pub struct SyncJob {
    /// The mapping.
    pub view: MappingView,
    /// What to push.
    pub kind: SyncKind,
    /// The slot it is for.
    pub slot: Zoned,
    /// Why.
    pub trigger: Trigger,
}

/// Runs CustomerMapping syncs: shared by `ferry run` (scheduled), `ferry run-now` and the
/// controller. One client per PSA target, shared by all its mappings.
pub struct Syncer {
    store: StateStore,
    ledger: PsaLedger,
    secrets: FileSecrets,
    retry: RetryPolicy,
    clients: Mutex<HashMap<(String, String), PsaClient>>,
    services: Mutex<HashMap<(String, String), Arc<ServiceCache>>>,
    /// How many mappings sync at once.
    pub concurrency: usize,
}

impl Syncer {
    /// A syncer on the state `store`, reading keys from `secrets`.
    pub fn new(store: StateStore, secrets: FileSecrets) -> Self {
        Syncer {
            ledger: PsaLedger::new(store.pool().clone()),
            store,
            secrets,
            retry: RetryPolicy::default(),
            clients: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
            concurrency: 8,
        }
    }

    /// Replaces the HTTP retry policy (tests shorten it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The PSA ledger.
    pub fn ledger(&self) -> &PsaLedger {
        &self.ledger
    }

    /// Requests sent to every PSA so far.
    pub async fn requests(&self) -> u64 {
        self.clients
            .lock()
            .await
            .values()
            .map(PsaClient::requests)
            .sum()
    }

    /// The client of the mapping's PSA target (built once).
    pub async fn client(&self, view: &MappingView) -> Result<PsaClient> {
        let key = (view.key.namespace.clone(), view.spec.psa.target.clone());
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = PsaClient::for_target(
            &key.0,
            &key.1,
            &view.target,
            &self.secrets,
            self.retry.clone(),
        )?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The syncs due at `now`: for each mapping and kind, the latest slot of its schedule
    /// that has not succeeded, unless its last failed attempt is too recent (backoff) or it
    /// failed too often. A billing slot before the mapping existed is not pushed.
    pub async fn due(&self, views: &[MappingView], now: Timestamp) -> Result<Vec<SyncJob>> {
        let mut jobs = Vec::new();
        for view in views {
            for kind in [SyncKind::Usage, SyncKind::Billing] {
                let Some(schedule) = view.schedule(kind) else {
                    continue;
                };
                let Some(slot) = schedule.latest_at_or_before(now) else {
                    continue;
                };
                if kind == SyncKind::Billing
                    && view.created_at.is_some_and(|c| slot.timestamp() < c)
                {
                    continue;
                }
                let attempts = self
                    .ledger
                    .attempts(
                        &view.key.namespace,
                        &view.key.name,
                        kind,
                        slot.timestamp().as_second(),
                    )
                    .await?;
                if attempts.iter().any(|a| a.outcome != "failed") {
                    continue;
                }
                if attempts.len() >= MAX_ATTEMPTS {
                    continue;
                }
                if let Some(last) = attempts.last() {
                    let finished: Option<Timestamp> =
                        last.finished_at.as_deref().and_then(|f| f.parse().ok());
                    let wait = RETRY_BASE * 2u32.pow(attempts.len().saturating_sub(1) as u32);
                    if finished.is_some_and(|f| {
                        now.duration_since(f).unsigned_abs() < wait.min(Duration::from_secs(3600))
                    }) {
                        continue;
                    }
                }
                jobs.push(SyncJob {
                    view: view.clone(),
                    kind,
                    slot,
                    trigger: Trigger::Scheduled,
                });
            }
        }
        Ok(jobs)
    }

    /// Runs `jobs`, `concurrency` mappings at a time (a mapping's own jobs in order). Each
    /// usage query runs once for all the jobs that share it.
    pub async fn run(&self, jobs: Vec<SyncJob>) -> Vec<SyncReport> {
        match self.ledger.abandon_dead().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                attempts = n,
                "PSA syncs interrupted by a stopped ferry marked failed"
            ),
            Err(e) => tracing::error!("PSA ledger: {e}"),
        }
        // The catalog is read again each cycle.
        self.services.lock().await.clear();
        let usage_cache: Arc<UsageCache> = Arc::new(Mutex::new(HashMap::new()));
        let mut by_mapping: BTreeMap<ResourceKey, Vec<SyncJob>> = BTreeMap::new();
        for job in jobs {
            by_mapping
                .entry(job.view.key.clone())
                .or_default()
                .push(job);
        }
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        let runs = by_mapping.into_values().map(|jobs| {
            let semaphore = semaphore.clone();
            let cache = usage_cache.clone();
            async move {
                let _permit = semaphore.acquire().await.expect("never closed");
                let mut reports = Vec::new();
                for job in jobs {
                    reports.push(self.run_job(&job, &cache).await);
                }
                reports
            }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Usage rows for `view`, read once per distinct source within a [`Syncer::run`].
    async fn usage_for(
        &self,
        view: &MappingView,
        slot: &Zoned,
        cache: &UsageCache,
    ) -> std::result::Result<Arc<Usage>, String> {
        let Some(source) = view.usage_source() else {
            return Err(
                "no usage source: set usageSync.source (or the PSA target's defaults.usageSync.source)"
                    .into(),
            );
        };
        let cache_key = format!(
            "{}\u{0}{}",
            view.key.namespace,
            serde_json::to_string(source).unwrap_or_default()
        );
        let cell = {
            let mut map = cache.lock().await;
            map.entry(cache_key).or_default().clone()
        };
        let mut cell = cell.lock().await;
        if let Some(result) = &*cell {
            return result.clone();
        }
        let result = read_usage(source, &view.key.namespace, &self.secrets, slot)
            .await
            .map(Arc::new)
            .map_err(|e| format!("usage query: {e}"));
        *cell = Some(result.clone());
        result
    }

    async fn run_job(&self, job: &SyncJob, cache: &UsageCache) -> SyncReport {
        let view = &job.view;
        let mut report = SyncReport {
            key: view.key.clone(),
            kind: job.kind,
            slot: crate::source::rfc3339(&job.slot),
            succeeded: false,
            reason: None,
            pushed: Vec::new(),
            unmapped_products: Vec::new(),
            ticket: None,
        };
        let trigger = match job.trigger {
            Trigger::Scheduled => "schedule",
            Trigger::RunNow => "run-now",
        };
        let record = match self
            .ledger
            .start(
                &view.key.namespace,
                &view.key.name,
                job.kind,
                job.slot.timestamp().as_second(),
                trigger,
            )
            .await
        {
            Ok(id) => Some(id),
            Err(e) => {
                report.reason = Some(e.to_string());
                None
            }
        };
        let mut resolution = None;
        let outcome = self.sync(job, cache, &mut report, &mut resolution).await;
        if let Err(e) = outcome {
            report.reason = Some(e.to_string());
        }
        report.succeeded = report.reason.is_none();
        tracing::info!(
            mapping = %view.key,
            kind = job.kind.as_str(),
            succeeded = report.succeeded,
            reason = report.reason.as_deref().unwrap_or(""),
            "PSA sync finished"
        );
        crate::observe::psa_sync_finished(
            &view.key.namespace,
            &view.key.name,
            job.kind.as_str(),
            report.succeeded,
            Timestamp::now(),
        );
        if let Some(resolution) = &resolution {
            report.ticket = self.sync_ticket(job, resolution, &report).await;
        }
        if let Some(id) = record {
            let pushed = serde_json::to_value(&report.pushed).unwrap_or(Value::Null);
            if let Err(e) = self
                .ledger
                .finish(id, report.succeeded, report.reason.as_deref(), &pushed)
                .await
            {
                tracing::error!(mapping = %view.key, "PSA ledger not updated: {e}");
            }
        }
        if let Err(e) = status::write(
            &self.store,
            &self.ledger,
            &view.key,
            resolution.as_ref(),
            &report,
        )
        .await
        {
            tracing::error!(mapping = %view.key, "status not written: {e}");
        }
        if let (Some(attempt), Trigger::Scheduled) = (record, job.trigger) {
            notify::alert_sync(
                &self.store,
                &self.ledger,
                &self.secrets,
                view,
                attempt,
                &report,
            )
            .await;
        }
        report
    }

    async fn sync(
        &self,
        job: &SyncJob,
        cache: &UsageCache,
        report: &mut SyncReport,
        resolution_out: &mut Option<Resolution>,
    ) -> Result<()> {
        let view = &job.view;
        let client = self.client(view).await?;
        let services = self
            .services
            .lock()
            .await
            .entry((view.key.namespace.clone(), view.spec.psa.target.clone()))
            .or_default()
            .clone();
        let resolution = match resolve_with(&client, &view.spec, &services).await? {
            Ok(r) => r,
            Err(problem) => {
                report.reason = Some(problem);
                return Ok(());
            }
        };
        let mut problems = resolution.problems.clone();
        *resolution_out = Some(resolution.clone());
        let usage = match self.usage_for(view, &job.slot, cache).await {
            Ok(u) => u,
            Err(e) => {
                problems.push(e);
                report.reason = Some(problems.join("; "));
                return Ok(());
            }
        };
        let empty = BTreeMap::new();
        let rows = usage.get(&view.spec.customer).unwrap_or(&empty);
        report.unmapped_products = rows
            .keys()
            .filter(|p| !view.spec.contracts.iter().any(|c| &c.product == *p))
            .cloned()
            .collect();
        let tz = crate::schedule::parse_time_zone(view.time_zone(job.kind))
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let on = job.slot.timestamp().to_zoned(tz).date();
        let description = format!(
            "Managed by Ferry: customermapping {}/{}",
            view.key.namespace, view.key.name
        );
        let (pushed, failed) = push_all(
            &client,
            &resolution.products,
            |product| rows.get(product).copied().unwrap_or(0.0),
            on,
            &description,
            view.autotask_rules(),
        )
        .await;
        report.pushed = pushed;
        problems.extend(failed);
        if !problems.is_empty() {
            report.reason = Some(problems.join("; "));
        }
        Ok(())
    }

    /// One open ticket per mapping and failure kind: opened (or adopted, when an open ticket
    /// with its title already exists) on failure, closed on the next success.
    async fn sync_ticket(
        &self,
        job: &SyncJob,
        resolution: &Resolution,
        report: &SyncReport,
    ) -> Option<String> {
        let view = &job.view;
        let wanted = Wanted::sync(job.kind, view, &report.slot, report.reason.as_deref());
        let client = self.client(view);
        let company_id = resolution.company.id;
        tickets::keep(
            &self.ledger,
            client,
            view,
            company_id,
            &wanted,
            report.succeeded,
        )
        .await
    }

    /// Ticket sync for report deliveries: a ReportSchedule labelled
    /// `ferry.dev/customer: <customer>` whose run failed opens one ticket (per schedule) in
    /// the company of every mapping of that customer (same namespace) with ticket sync on;
    /// the next successful run closes it. Returns what was done, per mapping.
    pub async fn report_delivery(
        &self,
        namespace: &str,
        schedule: &str,
        customer: &str,
        succeeded: bool,
        reason: &str,
        slot: &str,
    ) -> Result<Vec<String>> {
        let actual = self.store.snapshot().await?;
        let mut done = Vec::new();
        for view in MappingView::all(&actual) {
            if view.key.namespace != namespace
                || view.spec.customer != customer
                || !view.tickets.as_ref().is_some_and(|t| t.enabled)
            {
                continue;
            }
            let stored_company = actual
                .resources
                .get(&view.key)
                .and_then(|r| r.status["companyId"].as_i64());
            let company_id = match stored_company {
                Some(id) => id,
                None => {
                    let client = self.client(&view).await?;
                    match resolve(&client, &view.spec).await? {
                        Ok(r) => r.company.id,
                        Err(problem) => {
                            done.push(format!("{}: no ticket: {problem}", view.key));
                            continue;
                        }
                    }
                }
            };
            let wanted = Wanted::delivery(schedule, customer, slot, reason);
            let client = self.client(&view);
            if let Some(message) =
                tickets::keep(&self.ledger, client, &view, company_id, &wanted, succeeded).await
            {
                done.push(format!("{}: {message}", view.key));
            }
            status::refresh_open_tickets(&self.store, &self.ledger, &view.key).await?;
        }
        Ok(done)
    }

    /// `deletionPolicy: Delete`: releases what the mapping manages in its PSA before it goes:
    /// ConnectWise additions of its products are cancelled (`cancelledDate` today), Autotask
    /// units of its services are brought to 0 by one adjustment each. Returns what was done;
    /// fails (and the deletion waits) when the PSA cannot be reached.
    pub async fn release(&self, view: &MappingView, on: Date) -> Result<Vec<String>> {
        let client = self.client(view).await?;
        let resolution = match resolve(&client, &view.spec).await? {
            Ok(r) => r,
            Err(problem) => return Ok(vec![format!("nothing released: {problem}")]),
        };
        push::release(&client, &resolution.products, on, view.autotask_rules()).await
    }
}
