//! The CustomerMapping reconcile: resolve the company (exists, unique, active) and each
//! product's agreement/contract and item, then set the quantities the usage source reports.
//!
//! Quantities are set, never added, and always from what the PSA holds now: ConnectWise
//! additions are looked up by product identifier (not cancelled) and patched, created only
//! when none exists (decimals kept); Autotask quantities are rounded to whole units by the
//! mapping's `quantityRounding`, the effective date is chosen by its `effectiveDate` rule
//! ([`super::periods`]), the units held on that date are read and changed by one adjustment
//! of `target - current`. A sync cut at any point and run again therefore converges
//! without a duplicate addition or a second adjustment: nothing depends on a remembered id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{Timestamp, Zoned};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::api::{
    Billing, CustomerMappingSpec, DeliveryTargetSpec, Kind, ResourceKey, Schedule, SettingsSource,
    Spec, SqlSource, TicketSync, UsageSync,
};
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::psa::client::PsaClient;
use crate::psa::http::RetryPolicy;
use crate::psa::ledger::{PsaLedger, SyncKind};
use crate::psa::model::{Agreement, Company, Service};
use crate::psa::product::Product;
use crate::psa::usage::{Usage, read_usage};
use crate::schedule::CompiledSchedule;
use crate::secrets::FileSecrets;
use crate::state::{ActualState, StateStore};
use crate::{Error, Result};

/// The label that ties a ReportSchedule to a customer: its failed runs open a ticket in the
/// PSA company of that customer's CustomerMappings (with ticket sync on).
pub const CUSTOMER_LABEL: &str = "ferry.dev/customer";

/// Usage rows read during one [`Syncer::run`], per distinct source: each cell is filled once.
type UsageCache =
    Mutex<HashMap<String, Arc<Mutex<Option<std::result::Result<Arc<Usage>, String>>>>>>;

/// A failed attempt of a slot is retried after this delay, doubled per attempt.
const RETRY_BASE: Duration = Duration::from_secs(120);
/// At most this many attempts per slot; then the slot waits for the next one.
const MAX_ATTEMPTS: usize = 8;

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
                let Ok(Spec::CustomerMapping(spec)) = Spec::from_json(r.key.kind, r.spec.clone())
                else {
                    return None;
                };
                let target_key =
                    ResourceKey::new(Kind::DeliveryTarget, &r.key.namespace, &spec.psa.target);
                let target = targets
                    .entry(target_key)
                    .or_insert_with_key(|key| {
                        let stored = actual.resources.get(key)?;
                        match Spec::from_json(Kind::DeliveryTarget, stored.spec.clone()) {
                            Ok(Spec::DeliveryTarget(t)) => Some(*t),
                            _ => None,
                        }
                    })
                    .clone()?;
                Some(MappingView::new(
                    r.key.clone(),
                    spec,
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
    fn time_zone(&self, kind: SyncKind) -> &str {
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

/// A product's agreement/contract and item, resolved in the PSA.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedProduct {
    /// Our product key.
    pub product: String,
    /// The agreement (ConnectWise) or contract (Autotask).
    pub agreement: Agreement,
    /// ConnectWise product identifier, or Autotask service name.
    pub item: String,
    /// Autotask: the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
}

/// A mapping resolved in its PSA.
#[derive(Clone, Debug, Serialize)]
pub struct Resolution {
    /// The verified company.
    pub company: Company,
    /// The products that resolved.
    pub products: Vec<ResolvedProduct>,
    /// Why the others did not.
    pub problems: Vec<String>,
}

/// Picks the mapping's company among the PSA's matches: exactly one, and active.
pub fn choose_company(
    product: Product,
    key: &str,
    candidates: &[Company],
) -> Result<Company, String> {
    let list = |cs: &[Company]| {
        cs.iter()
            .map(|c| format!("#{} \"{}\" ({})", c.id, c.name, c.status))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match candidates {
        [] => Err(format!("company `{key}` not found in {product}")),
        [one] if !one.active => Err(format!(
            "company `{key}` (#{}) is not active in {product}: status {}",
            one.id, one.status
        )),
        [one] => Ok(one.clone()),
        many => Err(format!(
            "company `{key}` is ambiguous in {product}: {} companies match: {}",
            many.len(),
            list(many)
        )),
    }
}

/// Picks the agreement/contract named `name`: exactly one active one that accepts services.
pub fn choose_agreement(
    product: Product,
    name: &str,
    company: &Company,
    agreements: &[Agreement],
) -> Result<Agreement, String> {
    let what = product.agreement_word();
    let named: Vec<&Agreement> = agreements.iter().filter(|a| a.name == name).collect();
    let active: Vec<&Agreement> = named.iter().copied().filter(|a| a.active).collect();
    match (named.as_slice(), active.as_slice()) {
        ([], _) => {
            let mut names: Vec<&str> = agreements.iter().map(|a| a.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Err(format!(
                "no {what} named `{name}` for company #{} ({}); its {what}s: {}",
                company.id,
                company.name,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
        (all, []) => Err(format!(
            "{what} `{name}` (#{}) is not active: status {}",
            all[0].id, all[0].status
        )),
        (_, [one]) if !one.accepts_services => Err(format!(
            "{what} `{name}` (#{}) has contract type {}, not Recurring Service (7): services \
             and units cannot be attached to it",
            one.id, one.kind
        )),
        (_, [one]) => Ok((*one).clone()),
        (_, many) => Err(format!(
            "{what} `{name}` is ambiguous: {} active {what}s have that name ({})",
            many.len(),
            many.iter()
                .map(|a| format!("#{}", a.id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Resolves the mapping: its company (an error when missing, ambiguous or inactive), then each
/// product (problems collected, the other products still resolve).
pub async fn resolve(
    client: &PsaClient,
    spec: &CustomerMappingSpec,
) -> Result<std::result::Result<Resolution, String>> {
    resolve_with(client, spec, &ServiceCache::default()).await
}

/// Autotask services by name, shared by the mappings of one sync cycle (the catalog is the
/// same for all of them: one lookup per service, not one per mapping).
pub type ServiceCache = Mutex<HashMap<String, std::result::Result<Service, String>>>;

/// [`resolve`], with services looked up through `services`.
pub async fn resolve_with(
    client: &PsaClient,
    spec: &CustomerMappingSpec,
    services: &ServiceCache,
) -> Result<std::result::Result<Resolution, String>> {
    let key = client.company_key(&spec.company)?;
    let candidates = client.companies(&spec.company).await?;
    let company = match choose_company(client.product(), key, &candidates) {
        Ok(c) => c,
        Err(problem) => return Ok(Err(problem)),
    };
    let agreements = client.agreements(company.id).await?;
    let mut products = Vec::new();
    let mut problems = Vec::new();
    for c in &spec.contracts {
        let agreement =
            match choose_agreement(client.product(), &c.agreement, &company, &agreements) {
                Ok(a) => a,
                Err(p) => {
                    problems.push(format!("{}: {p}", c.product));
                    continue;
                }
            };
        let service = match client {
            PsaClient::ConnectWise(_) => None,
            PsaClient::Autotask(at) => {
                let cached = services.lock().await.get(&c.item).cloned();
                let chosen = match cached {
                    Some(c) => c,
                    None => {
                        let found = at.services_by_name(&c.item).await?;
                        let chosen = match found.as_slice() {
                            [] => Err(format!("service `{}` not found in Autotask", c.item)),
                            [one] => Ok(one.clone()),
                            many => Err(format!(
                                "service `{}` is ambiguous: {} services have that name",
                                c.item,
                                many.len()
                            )),
                        };
                        services.lock().await.insert(c.item.clone(), chosen.clone());
                        chosen
                    }
                };
                match chosen {
                    Ok(s) => Some(s),
                    Err(p) => {
                        problems.push(format!("{}: {p}", c.product));
                        continue;
                    }
                }
            }
        };
        products.push(ResolvedProduct {
            product: c.product.clone(),
            agreement,
            item: c.item.clone(),
            service,
        });
    }
    Ok(Ok(Resolution {
        company,
        products,
        problems,
    }))
}

/// One quantity set in the PSA.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    /// Our product key.
    pub product: String,
    /// The quantity now in the PSA.
    pub quantity: f64,
    /// The quantity before (`None`: there was no addition / no units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
    /// `created`, `updated`, `adjusted` or `unchanged`.
    pub action: String,
    /// The agreement/contract id.
    pub agreement_id: i64,
    /// ConnectWise addition id, or Autotask adjustment id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<i64>,
    /// ConnectWise product id, or Autotask service id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<i64>,
    /// Additions beyond the first for the product (ConnectWise), left alone and reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<i64>,
    /// Autotask: the usage quantity before rounding to whole units, when it had a fraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounded_from: Option<f64>,
    /// Autotask: how it was rounded (`up`, `down`, `to the nearest unit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounding: Option<String>,
    /// Autotask: the date the units hold from (`YYYY-MM-DD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
}

/// The quantity the PSA holds for a product on `on` (`None`: no addition or no units row).
pub async fn current_quantity(
    client: &PsaClient,
    p: &ResolvedProduct,
    on: Date,
) -> Result<Option<f64>> {
    match client {
        PsaClient::ConnectWise(cw) => {
            let mut additions = cw.additions(p.agreement.id, &p.item).await?;
            additions.sort_by_key(|a| a.id);
            Ok(additions.first().map(|a| a.quantity))
        }
        PsaClient::Autotask(at) => {
            let Some(service) = &p.service else {
                return Ok(None);
            };
            if at
                .contract_service(p.agreement.id, service.id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            Ok(Some(
                at.current_units(p.agreement.id, service.id, on).await?,
            ))
        }
    }
}

/// Sets every product's quantity (`quantity_of(product)`), effective `on`, reading what the
/// PSA holds once per agreement/contract. Returns what was set and, per product that failed,
/// why (the others are still pushed).
pub async fn push_all(
    client: &PsaClient,
    products: &[ResolvedProduct],
    quantity_of: impl Fn(&str) -> f64,
    on: Date,
    description: &str,
    rules: AutotaskRules,
) -> (Vec<Pushed>, Vec<String>) {
    let mut by_agreement: BTreeMap<i64, Vec<&ResolvedProduct>> = BTreeMap::new();
    for p in products {
        by_agreement.entry(p.agreement.id).or_default().push(p);
    }
    let mut pushed = Vec::new();
    let mut problems = Vec::new();
    for (agreement_id, group) in by_agreement {
        let result = match client {
            PsaClient::ConnectWise(cw) => {
                push_connectwise(cw, agreement_id, &group, &quantity_of, on, description).await
            }
            PsaClient::Autotask(at) => {
                push_autotask(at, agreement_id, &group, &quantity_of, on, rules).await
            }
        };
        match result {
            Ok((done, failed)) => {
                pushed.extend(done);
                problems.extend(failed);
            }
            Err(e) => problems.extend(group.iter().map(|p| format!("{}: {e}", p.product))),
        }
    }
    (pushed, problems)
}

fn new_pushed(p: &ResolvedProduct, quantity: f64) -> Pushed {
    Pushed {
        product: p.product.clone(),
        quantity,
        previous: None,
        action: "unchanged".into(),
        agreement_id: p.agreement.id,
        record_id: None,
        item_id: None,
        duplicates: Vec::new(),
        rounded_from: None,
        rounding: None,
        effective_date: None,
    }
}

/// ConnectWise: the agreement's active additions, read once; per product the oldest one is
/// patched (others are reported, never touched), or one is created when there is none.
async fn push_connectwise(
    cw: &crate::psa::connectwise::ConnectWise,
    agreement_id: i64,
    group: &[&ResolvedProduct],
    quantity_of: &impl Fn(&str) -> f64,
    on: Date,
    description: &str,
) -> Result<(Vec<Pushed>, Vec<String>)> {
    let mut additions = cw.active_additions(agreement_id).await?;
    additions.sort_by_key(|a| a.id);
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for p in group {
        let quantity = quantity_of(&p.product);
        let mut pushed = new_pushed(p, quantity);
        let mine: Vec<&crate::psa::model::Addition> = additions
            .iter()
            .filter(|a| a.product_identifier.eq_ignore_ascii_case(&p.item))
            .collect();
        let outcome: Result<()> = async {
            match mine.split_first() {
                None => {
                    let created = cw
                        .create_addition(agreement_id, &p.item, quantity, on, description)
                        .await?;
                    pushed.action = "created".into();
                    pushed.record_id = Some(created.id);
                    pushed.item_id = Some(created.product_id);
                }
                Some((first, rest)) => {
                    pushed.previous = Some(first.quantity);
                    pushed.record_id = Some(first.id);
                    pushed.item_id = Some(first.product_id);
                    pushed.duplicates = rest.iter().map(|a| a.id).collect();
                    if !same_quantity(first.quantity, quantity) {
                        cw.set_addition_quantity(agreement_id, first.id, quantity)
                            .await?;
                        pushed.action = "updated".into();
                    }
                }
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => done.push(pushed),
            Err(e) => failed.push(format!("{}: {e}", p.product)),
        }
    }
    Ok((done, failed))
}

/// Autotask: the contract's services and units rows, read once; a missing service is
/// attached, then per service the quantity is rounded to whole units, dated by the
/// effective-date rule, and the units held on that date change by one adjustment of
/// `target - current`.
async fn push_autotask(
    at: &crate::psa::autotask::Autotask,
    contract_id: i64,
    group: &[&ResolvedProduct],
    quantity_of: &impl Fn(&str) -> f64,
    on: Date,
    rules: AutotaskRules,
) -> Result<(Vec<Pushed>, Vec<String>)> {
    let attached: Vec<i64> = at
        .contract_services(contract_id)
        .await?
        .into_iter()
        .map(|cs| cs.service_id)
        .collect();
    let rows = at.unit_rows(contract_id).await?;
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for p in group {
        let raw = quantity_of(&p.product);
        let whole = rules.rounding.apply(raw);
        let mut pushed = new_pushed(p, whole);
        if !same_quantity(raw, whole) {
            pushed.rounded_from = Some(raw);
            pushed.rounding = Some(rules.rounding.label().into());
        }
        let outcome: Result<()> = async {
            let service = p
                .service
                .as_ref()
                .ok_or_else(|| Error::Psa("service not resolved".into()))?;
            pushed.item_id = Some(service.id);
            if !attached.contains(&service.id) {
                at.add_contract_service(contract_id, service.id, service.unit_price)
                    .await?;
            }
            let effective =
                crate::psa::periods::effective_date(&rows, service.id, on, rules.effective);
            pushed.effective_date = Some(effective.to_string());
            let current = crate::psa::periods::units_at(&rows, service.id, effective);
            pushed.previous = Some(current);
            let delta = whole - current.round();
            if !same_quantity(delta, 0.0) {
                let change = i32::try_from(delta as i64)
                    .ok()
                    .filter(|_| delta.abs() < f64::from(i32::MAX))
                    .ok_or_else(|| {
                        Error::Psa(format!(
                            "a change of {} units does not fit Autotask's 32-bit unitChange",
                            crate::psa::format_quantity(delta)
                        ))
                    })?;
                let id = at
                    .adjust_units(contract_id, service.id, effective, change, None)
                    .await?;
                pushed.action = "adjusted".into();
                pushed.record_id = Some(id);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => done.push(pushed),
            Err(e) => failed.push(format!("{}: {e}", p.product)),
        }
    }
    Ok((done, failed))
}

fn same_quantity(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// How one sync of a mapping ended.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The mapping.
    #[serde(skip)]
    pub key: ResourceKey,
    /// Usage sync or billing push.
    #[serde(skip)]
    pub kind: SyncKind,
    /// The slot (RFC 3339).
    pub slot: String,
    /// Whether everything was pushed.
    pub succeeded: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The quantities set.
    pub pushed: Vec<Pushed>,
    /// Products in the usage rows of this customer that no contract maps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmapped_products: Vec<String>,
    /// What ticket sync did, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

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
        if let Err(e) = self.write_status(job, resolution.as_ref(), &report).await {
            tracing::error!(mapping = %view.key, "status not written: {e}");
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
        let description = format!(
            "Ferry's {} for customer `{}` (customermapping {}/{}) failed for slot {}:\n\n{}\n\n\
             This ticket is closed automatically when the next attempt succeeds.",
            job.kind.label(),
            view.spec.customer,
            view.key.namespace,
            view.key.name,
            report.slot,
            report.reason.as_deref().unwrap_or("unknown reason")
        );
        self.ticket(
            view,
            resolution.company.id,
            job.kind.as_str(),
            &ticket_title(job.kind, &view.spec.customer),
            report.succeeded,
            &description,
        )
        .await
    }

    /// One open ticket per mapping and `kind`: on failure opened (or adopted, when an open
    /// ticket with `title` exists, e.g. after a crash before it was recorded), on success
    /// closed. `None` when ticket sync is off or nothing was done.
    async fn ticket(
        &self,
        view: &MappingView,
        company_id: i64,
        kind: &str,
        title: &str,
        succeeded: bool,
        description: &str,
    ) -> Option<String> {
        let tickets = view.tickets.as_ref().filter(|t| t.enabled)?;
        let (ns, name) = (&view.key.namespace, &view.key.name);
        let open = match self.ledger.open_ticket(ns, name, kind).await {
            Ok(o) => o,
            Err(e) => return Some(format!("ticket state unreadable: {e}")),
        };
        if succeeded && open.is_none() {
            return None;
        }
        let client = match self.client(view).await {
            Ok(c) => c,
            Err(e) => return Some(format!("ticket sync failed: {e}")),
        };
        let outcome: Result<Option<String>> = async {
            match (succeeded, open) {
                (true, Some((id, _))) => {
                    client
                        .close_ticket(id, tickets.closed_status.as_deref())
                        .await?;
                    self.ledger.forget_ticket(ns, name, kind).await?;
                    Ok(Some(format!("closed ticket #{id}")))
                }
                (true, None) => Ok(None),
                (false, Some((id, _))) => Ok(Some(format!("ticket #{id} already open"))),
                (false, None) => {
                    let existing = client.open_tickets(company_id, title).await?;
                    let id = match existing.first() {
                        Some(id) => *id,
                        None => {
                            let board = tickets.board.as_deref().ok_or_else(|| {
                                Error::Usage("ticketSync.board is not set".into())
                            })?;
                            client
                                .create_ticket(
                                    company_id,
                                    board,
                                    title,
                                    description,
                                    tickets.open_status.as_deref(),
                                )
                                .await?
                        }
                    };
                    self.ledger.record_ticket(ns, name, kind, id, title).await?;
                    Ok(Some(format!("opened ticket #{id}")))
                }
            }
        }
        .await;
        match outcome {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(mapping = %view.key, "ticket sync failed: {e}");
                Some(format!("ticket sync failed: {e}"))
            }
        }
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
            let kind = format!("delivery/{schedule}");
            let title = fit_title(format!("Ferry: report {schedule} failing for {customer}"));
            let description = format!(
                "Ferry's report `{schedule}` for customer `{customer}` failed for slot {slot}:\n\n\
                 {reason}\n\nThis ticket is closed automatically when the next run succeeds."
            );
            if let Some(message) = self
                .ticket(&view, company_id, &kind, &title, succeeded, &description)
                .await
            {
                done.push(format!("{}: {message}", view.key));
            }
            self.refresh_open_tickets(&view.key).await?;
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
        let mut done = Vec::new();
        match &client {
            PsaClient::ConnectWise(cw) => {
                for p in &resolution.products {
                    for a in cw.active_additions(p.agreement.id).await? {
                        if a.product_identifier.eq_ignore_ascii_case(&p.item) {
                            cw.cancel_addition(p.agreement.id, a.id, on).await?;
                            done.push(format!(
                                "{}: addition #{} on agreement #{} cancelled",
                                p.product, a.id, p.agreement.id
                            ));
                        }
                    }
                }
            }
            PsaClient::Autotask(_) => {
                let (pushed, failed) = push_all(
                    &client,
                    &resolution.products,
                    |_| 0.0,
                    on,
                    "",
                    view.autotask_rules(),
                )
                .await;
                if !failed.is_empty() {
                    return Err(Error::Psa(failed.join("; ")));
                }
                for p in pushed.iter().filter(|p| p.action != "unchanged") {
                    done.push(format!(
                        "{}: units on contract #{} set to 0",
                        p.product, p.agreement_id
                    ));
                }
            }
        }
        Ok(done)
    }

    /// Rewrites `status.openTickets` of a mapping from the ledger.
    async fn refresh_open_tickets(&self, key: &ResourceKey) -> Result<()> {
        let Some(stored) = self.store.get(key).await? else {
            return Ok(());
        };
        let mut status = if stored.status.is_object() {
            stored.status.clone()
        } else {
            json!({})
        };
        status["openTickets"] = self.open_tickets_json(key).await?;
        self.store.set_status(key, &status).await
    }

    /// `status.openTickets`: the tickets the ledger keeps open for the mapping.
    async fn open_tickets_json(&self, key: &ResourceKey) -> Result<Value> {
        let tickets = self.ledger.open_tickets(&key.namespace, &key.name).await?;
        Ok(Value::Array(
            tickets
                .iter()
                .map(|(kind, id)| json!({"kind": kind, "id": id}))
                .collect(),
        ))
    }

    async fn write_status(
        &self,
        job: &SyncJob,
        resolution: Option<&Resolution>,
        report: &SyncReport,
    ) -> Result<()> {
        let key = &job.view.key;
        let Some(stored) = self.store.get(key).await? else {
            return Ok(());
        };
        let mut status = if stored.status.is_object() {
            stored.status.clone()
        } else {
            json!({})
        };
        let now = Timestamp::now().to_string();
        if let Some(r) = resolution {
            status["companyId"] = json!(r.company.id);
            status["companyName"] = json!(r.company.name);
            let contracts: Vec<Value> = r
                .products
                .iter()
                .map(|p| {
                    let pushed = report.pushed.iter().find(|x| x.product == p.product);
                    let mut c = json!({
                        "product": p.product,
                        "agreement": p.agreement.name,
                        "agreementId": p.agreement.id,
                        "item": p.item,
                    });
                    if let Some(id) = p
                        .service
                        .as_ref()
                        .map(|s| s.id)
                        .or_else(|| pushed.and_then(|x| x.item_id))
                    {
                        c["itemId"] = json!(id);
                    }
                    c
                })
                .collect();
            status["contracts"] = Value::Array(contracts);
        }
        let result = json!({
            "time": now,
            "slot": report.slot,
            "outcome": if report.succeeded { "succeeded" } else { "failed" },
            "reason": report.reason,
            "quantities": report.pushed.iter().map(|p| json!({"product": p.product, "quantity": p.quantity})).collect::<Vec<_>>(),
        });
        let mut result = result;
        if let Some(o) = result.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        let field = match job.kind {
            SyncKind::Usage => "lastSync",
            SyncKind::Billing => "lastBilling",
        };
        status[field] = result;
        if !report.unmapped_products.is_empty() {
            status["unmappedProducts"] = json!(report.unmapped_products);
        } else if let Some(o) = status.as_object_mut() {
            o.remove("unmappedProducts");
        }
        status["openTickets"] = self.open_tickets_json(key).await?;
        let (value, reason, message) = if report.succeeded {
            (
                Truth::True,
                "SyncSucceeded",
                format!("{} succeeded", job.kind.label()),
            )
        } else {
            (
                Truth::False,
                "SyncFailed",
                format!(
                    "{} failed: {}",
                    job.kind.label(),
                    report.reason.as_deref().unwrap_or("")
                ),
            )
        };
        set_condition(
            &mut status,
            ConditionType::Synced,
            value,
            reason,
            &message,
            &now,
        );
        self.store.set_status(key, &status).await
    }
}

/// The title of the ticket Ferry keeps open for a failing sync (ConnectWise summaries are
/// limited to 100 characters).
pub fn ticket_title(kind: SyncKind, customer: &str) -> String {
    fit_title(format!("Ferry: {} failing for {customer}", kind.label()))
}

/// `title` cut to the 100 characters a ConnectWise summary holds (an ellipsis marks the cut).
fn fit_title(title: String) -> String {
    if title.chars().count() > 100 {
        title.chars().take(99).collect::<String>() + "…"
    } else {
        title
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company(id: i64, name: &str, active: bool) -> Company {
        Company {
            id,
            identifier: Some(format!("ID{id}")),
            name: name.into(),
            active,
            status: if active { "Active" } else { "Inactive" }.into(),
        }
    }

    fn agreement(id: i64, name: &str, active: bool, services: bool) -> Agreement {
        Agreement {
            id,
            name: name.into(),
            active,
            status: if active { "Active" } else { "Cancelled" }.into(),
            kind: if services { "7" } else { "1" }.into(),
            accepts_services: services,
        }
    }

    #[test]
    fn a_missing_company_is_named_and_an_ambiguous_one_lists_its_candidates() {
        assert_eq!(
            choose_company(Product::Autotask, "Acme", &[]).unwrap_err(),
            "company `Acme` not found in Autotask"
        );
        let err = choose_company(
            Product::Autotask,
            "Acme",
            &[company(1, "Acme", true), company(2, "Acme", true)],
        )
        .unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("#1 \"Acme\" (Active)") && err.contains("#2"),
            "{err}"
        );
    }

    #[test]
    fn an_inactive_company_is_refused_with_its_status() {
        let err = choose_company(
            Product::ConnectWise,
            "ACME01",
            &[company(250, "Acme", false)],
        )
        .unwrap_err();
        assert!(err.contains("#250") && err.contains("Inactive"), "{err}");
    }

    #[test]
    fn an_agreement_must_exist_be_active_unique_and_accept_services() {
        let c = company(250, "Acme", true);
        let list = [
            agreement(1, "Managed", true, true),
            agreement(2, "Old", false, true),
            agreement(3, "Hourly", true, false),
            agreement(4, "Twice", true, true),
            agreement(5, "Twice", true, true),
        ];
        assert_eq!(
            choose_agreement(Product::Autotask, "Managed", &c, &list)
                .unwrap()
                .id,
            1
        );
        let missing = choose_agreement(Product::ConnectWise, "Nope", &c, &list).unwrap_err();
        assert!(missing.contains("no agreement named `Nope`"), "{missing}");
        assert!(missing.contains("Managed"), "candidates listed: {missing}");
        let inactive = choose_agreement(Product::ConnectWise, "Old", &c, &list).unwrap_err();
        assert!(
            inactive.contains("not active: status Cancelled"),
            "{inactive}"
        );
        let wrong = choose_agreement(Product::Autotask, "Hourly", &c, &list).unwrap_err();
        assert!(wrong.contains("not Recurring Service (7)"), "{wrong}");
        let twice = choose_agreement(Product::Autotask, "Twice", &c, &list).unwrap_err();
        assert!(
            twice.contains("ambiguous") && twice.contains("#4, #5"),
            "{twice}"
        );
    }

    #[test]
    fn an_inactive_duplicate_does_not_hide_the_active_agreement() {
        let c = company(250, "Acme", true);
        let list = [
            agreement(1, "Managed", false, true),
            agreement(2, "Managed", true, true),
        ];
        assert_eq!(
            choose_agreement(Product::ConnectWise, "Managed", &c, &list)
                .unwrap()
                .id,
            2
        );
    }

    #[test]
    fn ticket_titles_fit_connectwise_summaries() {
        let long = "x".repeat(200);
        assert_eq!(ticket_title(SyncKind::Usage, &long).chars().count(), 100);
        assert_eq!(
            ticket_title(SyncKind::Billing, "acme"),
            "Ferry: billing push failing for acme"
        );
    }
}
