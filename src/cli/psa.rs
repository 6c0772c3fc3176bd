//! The CustomerMapping side of `run-now` and `history`, and `psa-sim`.

use std::path::Path;

use jiff::Timestamp;

use crate::api::{Kind, ResourceKey};
use crate::clock::now;
use crate::state::{self, StateStore};
use crate::{Error, Result};

use super::args::*;
use super::context::*;
use super::view::print_table;

/// `ferry run-now customermapping/NAME [--billing]`: syncs one mapping now.
pub(super) async fn psa_run_now_cmd(
    ctx: &Ctx,
    resource: &str,
    namespace: &str,
    billing: bool,
) -> Result<u8> {
    let (_, name) = parse_resource(resource, None)?;
    let name = name.ok_or_else(|| Error::Usage("expected customermapping/NAME".into()))?;
    let store = StateStore::open(&ctx.state_path).await?;
    let actual = store.snapshot().await?;
    let key = ResourceKey::new(Kind::CustomerMapping, namespace, &name);
    if !actual.resources.contains_key(&key) {
        return Err(Error::Usage(format!(
            "CustomerMapping `{name}` is not applied in namespace `{namespace}` of {}: run `ferry apply -f ...` first",
            state::display_location(&ctx.state_path)
        )));
    }
    let view = crate::psa::sync::MappingView::all(&actual)
        .into_iter()
        .find(|v| v.key == key)
        .ok_or_else(|| {
            Error::Usage(format!(
                "CustomerMapping `{name}`: its PSA target is not applied in namespace `{namespace}`"
            ))
        })?;
    let kind = if billing {
        crate::psa::ledger::SyncKind::Billing
    } else {
        crate::psa::ledger::SyncKind::Usage
    };
    let tz = match kind {
        crate::psa::ledger::SyncKind::Usage => view.usage.as_ref().map(|u| u.time_zone.clone()),
        crate::psa::ledger::SyncKind::Billing => view.billing.as_ref().map(|b| b.time_zone.clone()),
    }
    .unwrap_or_else(|| "UTC".into());
    let tz = crate::schedule::parse_time_zone(&tz).map_err(Error::Usage)?;
    let syncer = crate::psa::sync::Syncer::new(store, ctx.secrets.clone());
    let reports = syncer
        .run(vec![crate::psa::sync::SyncJob {
            view,
            kind,
            slot: now()?.to_zoned(tz),
            trigger: crate::psa::sync::Trigger::RunNow,
        }])
        .await;
    let mut ok = true;
    for r in &reports {
        outln!(
            "{}: {} {}",
            r.key,
            kind.label(),
            if r.succeeded { "succeeded" } else { "failed" }
        );
        for p in &r.pushed {
            let before = p
                .previous
                .map_or("none".to_string(), crate::psa::format_quantity);
            let mut notes = String::new();
            if let (Some(raw), Some(how)) = (p.rounded_from, &p.rounding) {
                notes += &format!(", usage {} rounded {how}", crate::psa::format_quantity(raw));
            }
            if let Some(d) = &p.effective_date {
                notes += &format!(", effective {d}");
            }
            outln!(
                "  {}: {} -> {} ({}{}{notes})",
                p.product,
                before,
                crate::psa::format_quantity(p.quantity),
                p.action,
                p.record_id.map_or(String::new(), |id| format!(" #{id}"))
            );
            if !p.duplicates.is_empty() {
                outln!(
                    "    warning: duplicate additions left alone: {}",
                    p.duplicates
                        .iter()
                        .map(|d| format!("#{d}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for u in &r.unmapped_products {
            outln!("  {u}: in the usage rows but not in contracts (not pushed)");
        }
        if let Some(t) = &r.ticket {
            outln!("  ticket: {t}");
        }
        if let Some(reason) = &r.reason {
            eprintln!("Error: {reason}");
        }
        ok &= r.succeeded;
    }
    Ok(if ok { 0 } else { 1 })
}

/// `ferry history customermapping/NAME`: its usage syncs and billing pushes, newest first.
pub(super) async fn psa_history(
    store: &StateStore,
    resource: &str,
    namespace: &str,
    limit: u32,
    output: ListOutput,
) -> Result<u8> {
    let (_, name) = parse_resource(resource, None)?;
    let name = name.ok_or_else(|| Error::Usage("expected customermapping/NAME".into()))?;
    let ledger = crate::psa::ledger::PsaLedger::new(store.pool().clone());
    ledger.abandon_dead().await?;
    let attempts = ledger.history(namespace, &name, limit).await?;
    let slot = |epoch: i64| {
        Timestamp::from_second(epoch).map_or_else(|_| epoch.to_string(), |t| t.to_string())
    };
    match output {
        ListOutput::Json => {
            let list: Vec<serde_json::Value> = attempts
                .iter()
                .map(|(kind, r)| {
                    serde_json::json!({
                        "id": r.id, "kind": kind.as_str(), "slot": slot(r.slot_epoch), "trigger": r.trigger,
                        "outcome": r.outcome, "startedAt": r.started_at,
                        "finishedAt": r.finished_at, "error": r.error, "pushed": r.pushed,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&list).expect("json"));
        }
        ListOutput::Text => {
            if attempts.is_empty() {
                eprintln!("No syncs of customermapping/{name} yet.");
                return Ok(0);
            }
            let mut rows = vec![
                [
                    "KIND", "SLOT", "TRIGGER", "OUTCOME", "STARTED", "PUSHED", "ERROR",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for (kind, r) in &attempts {
                let pushed = r
                    .pushed
                    .as_ref()
                    .and_then(|p| p.as_array())
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                format!(
                                    "{}={}",
                                    p["product"].as_str().unwrap_or("?"),
                                    p["quantity"]
                                        .as_f64()
                                        .map_or("?".into(), crate::psa::format_quantity)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                rows.push(vec![
                    kind.as_str().to_string(),
                    slot(r.slot_epoch),
                    r.trigger.clone(),
                    r.outcome.clone(),
                    r.started_at.clone(),
                    pushed,
                    r.error.clone().unwrap_or_default(),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(0)
}

/// `ferry psa-sim`: a strict local simulator of a PSA's REST API, until interrupted.
pub(super) async fn psa_sim_cmd(
    kind: crate::psa::sim::SimKind,
    listen: std::net::SocketAddr,
    data: &Path,
) -> Result<u8> {
    let api = crate::psa::sim::load_api(kind, data)?;
    let server = crate::psa::sim::SimServer::start(listen, api).await?;
    eprintln!(
        "{kind:?} simulator on {} (data {}); Ctrl-C stops it",
        server.url(),
        data.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    Ok(0)
}
