//! `ferry plan` refreshes CustomerMappings from their PSA, like terraform refreshes resources:
//! a company that no longer resolves (deleted, renamed, now ambiguous or inactive) is an error
//! on the mapping, and a quantity that differs from what Ferry last set was changed outside
//! Ferry. Read-only: nothing is created or changed in the PSA.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use crate::api::ResourceKey;
pub use crate::plan::DriftNote;
use crate::psa::client::PsaClient;
use crate::psa::format_quantity;
use crate::psa::http::RetryPolicy;
use crate::psa::sync::mapping::MappingView;
use crate::psa::sync::push::current_quantity;
use crate::psa::sync::resolve::resolve;
use crate::secrets::FileSecrets;

/// Refreshes `views` (with the status each had, for the quantities Ferry last set). PSA
/// targets whose secrets are missing are skipped with a warning; a PSA that cannot be reached
/// gives a warning, not a failed plan.
pub async fn refresh(
    views: &[(MappingView, Value)],
    secrets: &FileSecrets,
    now: Timestamp,
) -> (Vec<DriftNote>, Vec<String>) {
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut skipped: BTreeSet<(String, String)> = BTreeSet::new();
    // A plan should answer quickly: two attempts, short backoff.
    let retry = RetryPolicy {
        attempts: 2,
        base_backoff: std::time::Duration::from_millis(200),
        max_backoff: std::time::Duration::from_secs(2),
        max_retry_after: std::time::Duration::from_secs(5),
    };
    let mut clients: std::collections::HashMap<(String, String), Option<PsaClient>> =
        Default::default();
    for (view, status) in views {
        let target = (view.key.namespace.clone(), view.spec.psa.target.clone());
        let client = clients
            .entry(target.clone())
            .or_insert_with(|| {
                match PsaClient::for_target(
                    &target.0,
                    &target.1,
                    &view.target,
                    secrets,
                    retry.clone(),
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        warnings.push(format!(
                            "CustomerMappings of PSA target {}/{} not refreshed: {e}",
                            target.0, target.1
                        ));
                        None
                    }
                }
            })
            .clone();
        let Some(client) = client else { continue };
        if skipped.contains(&target) {
            continue;
        }
        let note = |error: bool, message: String| DriftNote {
            namespace: view.key.namespace.clone(),
            name: view.key.name.clone(),
            error,
            message,
        };
        let resolution = match resolve(&client, &view.spec).await {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!(
                    "CustomerMappings of PSA target {}/{} not refreshed: {e}",
                    target.0, target.1
                ));
                skipped.insert(target);
                continue;
            }
        };
        let resolution = match resolution {
            Ok(r) => r,
            Err(problem) => {
                let was = status["companyId"]
                    .as_i64()
                    .map(|id| format!(" (Ferry last synced company #{id})"))
                    .unwrap_or_default();
                notes.push(note(true, format!("{problem}{was}")));
                continue;
            }
        };
        if let Some(old) = status["companyId"].as_i64()
            && old != resolution.company.id
        {
            notes.push(note(
                false,
                format!(
                    "company now resolves to #{} ({}), Ferry last synced #{old}",
                    resolution.company.id, resolution.company.name
                ),
            ));
        }
        for p in &resolution.problems {
            notes.push(note(true, p.clone()));
        }
        let last: Vec<(String, f64)> = status["lastSync"]["quantities"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .filter_map(|q| {
                        Some((q["product"].as_str()?.to_string(), q["quantity"].as_f64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tz = view
            .usage
            .as_ref()
            .and_then(|u| crate::schedule::parse_time_zone(&u.time_zone).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let today = now.to_zoned(tz).date();
        for p in &resolution.products {
            let Some((_, set)) = last.iter().find(|(product, _)| *product == p.product) else {
                continue;
            };
            match current_quantity(&client, p, today).await {
                Ok(Some(now_q)) if (now_q - set).abs() > 1e-9 => notes.push(note(
                    false,
                    format!(
                        "{}: quantity changed outside Ferry: {} in {} ({} `{}`), Ferry last set {}",
                        p.product,
                        format_quantity(now_q),
                        client.product(),
                        client.product().agreement_word(),
                        p.agreement.name,
                        format_quantity(*set)
                    ),
                )),
                Ok(None) => notes.push(note(
                    false,
                    format!(
                        "{}: the {} Ferry set ({}) is gone from {}",
                        p.product,
                        client.product().quantity_record_word(),
                        format_quantity(*set),
                        client.product()
                    ),
                )),
                Ok(Some(_)) => {}
                Err(e) => warnings.push(format!(
                    "customermapping {}/{}: {}: not refreshed: {e}",
                    view.key.namespace, view.key.name, p.product
                )),
            }
        }
    }
    (notes, warnings)
}

/// The key of a note's mapping.
pub fn note_key(n: &DriftNote) -> ResourceKey {
    ResourceKey::new(crate::api::Kind::CustomerMapping, &n.namespace, &n.name)
}
