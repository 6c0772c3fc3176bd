//! Quantities into the PSA. Set, never added, and always from what the PSA holds now:
//! ConnectWise additions are looked up by product identifier (not cancelled) and patched,
//! created only when none exists (decimals kept); Autotask quantities are rounded to whole
//! units by the mapping's `quantityRounding`, the effective date is chosen by its
//! `effectiveDate` rule ([`crate::psa::periods`]), the units held on that date are read and
//! changed by one adjustment of `target - current`. Also the release of what a deleted
//! mapping managed.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;

use super::mapping::AutotaskRules;
use super::resolve::ResolvedProduct;
use crate::psa::autotask::Autotask;
use crate::psa::client::PsaClient;
use crate::psa::connectwise::ConnectWise;
use crate::psa::model::Addition;
use crate::{Error, Result};

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
    cw: &ConnectWise,
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
        let mine: Vec<&Addition> = additions
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
    at: &Autotask,
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

/// Releases what a mapping manages before it goes (`deletionPolicy: Delete`): ConnectWise
/// additions of its products are cancelled as of `on`, Autotask units of its services are
/// brought to 0 by one adjustment each. Returns what was done.
pub async fn release(
    client: &PsaClient,
    products: &[ResolvedProduct],
    on: Date,
    rules: AutotaskRules,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    match client {
        PsaClient::ConnectWise(cw) => {
            for p in products {
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
            let (pushed, failed) = push_all(client, products, |_| 0.0, on, "", rules).await;
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
