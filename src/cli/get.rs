//! `get` (applied resources and their status) and `next` (upcoming runs and file names).

use std::path::PathBuf;

use jiff::Timestamp;

use crate::api::{Kind, ResourceKey, Spec};
use crate::clock::now;
use crate::plan;
use crate::state::{self, StateStore};
use crate::{Error, Result};

use super::args::*;
use super::context::*;
use super::plan::load_valid;
use super::view::print_table;

pub(super) fn next_cmd(
    resource: &str,
    files: &[PathBuf],
    namespace: &str,
    after: Option<String>,
    count: usize,
    output: ListOutput,
) -> Result<u8> {
    let (kind, name) = parse_resource(resource, None)?;
    let Some(name) = name.filter(|_| kind == Kind::ReportSchedule) else {
        return Err(Error::Usage(format!(
            "`{resource}`: expected reportschedule/NAME"
        )));
    };
    let resources = load_valid(files, false)?;
    let key = ResourceKey::new(Kind::ReportSchedule, namespace, &name);
    let Some(r) = resources.iter().find(|r| r.key == key) else {
        return Err(Error::Usage(format!(
            "ReportSchedule `{name}` not found in namespace `{namespace}` in the given files"
        )));
    };
    let Spec::ReportSchedule(spec) = &r.spec else {
        unreachable!("the key's kind is ReportSchedule")
    };
    let after = match after {
        Some(s) => s
            .parse::<Timestamp>()
            .map_err(|e| Error::Usage(format!("--after `{s}` is not an RFC 3339 instant: {e}")))?,
        None => now()?,
    };
    let runs = plan::preview_runs(&key, spec, after, count);
    match output {
        ListOutput::Json => {
            outln!("{}", serde_json::to_string_pretty(&runs).expect("json"));
        }
        ListOutput::Text => {
            if spec.suspend {
                outln!("# suspended: these slots run only with `ferry run-now`");
            }
            for run in &runs {
                outln!("{}  {}", run.at, run.file_name);
            }
        }
    }
    Ok(0)
}

pub(super) async fn get_cmd(
    ctx: &Ctx,
    resource: &str,
    name: Option<String>,
    namespace: &str,
    all_namespaces: bool,
    output: ListOutput,
    (sync_status, usage_sync): (Option<SyncStatusFilter>, Option<EnabledFilter>),
) -> Result<u8> {
    let (kind, name) = parse_resource(resource, name)?;
    if kind != Kind::CustomerMapping && (sync_status.is_some() || usage_sync.is_some()) {
        return Err(Error::Usage(
            "--sync-status and --usage-sync filter customermappings only".into(),
        ));
    }
    let store = StateStore::open_read_only(&ctx.state_path).await?;
    let actual = store.snapshot().await?;
    let views: std::collections::HashMap<ResourceKey, crate::psa::sync::MappingView> =
        if kind == Kind::CustomerMapping {
            crate::psa::sync::MappingView::all(&actual)
                .into_iter()
                .map(|v| (v.key.clone(), v))
                .collect()
        } else {
            Default::default()
        };
    let items: Vec<_> = actual
        .resources
        .values()
        .filter(|r| r.key.kind == kind)
        .filter(|r| all_namespaces || r.key.namespace == namespace)
        .filter(|r| name.as_ref().is_none_or(|n| &r.key.name == n))
        .filter(|r| {
            let outcome = r.status["lastSync"]["outcome"].as_str();
            sync_status.is_none_or(|f| match f {
                SyncStatusFilter::Succeeded => outcome == Some("succeeded"),
                SyncStatusFilter::Failed => outcome == Some("failed"),
                SyncStatusFilter::Never => outcome.is_none(),
            })
        })
        .filter(|r| {
            usage_sync.is_none_or(|f| {
                let on = views
                    .get(&r.key)
                    .is_some_and(|v| v.usage.as_ref().is_some_and(|u| u.enabled));
                on == (f == EnabledFilter::Enabled)
            })
        })
        .collect();
    if let Some(n) = &name
        && items.is_empty()
    {
        return Err(Error::Usage(format!(
            "{kind} `{n}` not found in namespace `{namespace}` of {}",
            state::display_location(&ctx.state_path)
        )));
    }
    match output {
        ListOutput::Json => {
            let list: Vec<_> = items
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "apiVersion": crate::api::API_VERSION,
                        "kind": r.key.kind.as_str(),
                        "metadata": {
                            "name": r.key.name, "namespace": r.key.namespace,
                            "generation": r.generation,
                            "labels": r.meta.labels, "annotations": r.meta.annotations,
                            "creationTimestamp": r.created_at,
                        },
                        "spec": r.spec,
                        "status": r.status,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&list).expect("json"));
        }
        ListOutput::Text if kind == Kind::CustomerMapping => {
            if items.is_empty() {
                eprintln!("No {} found.", kind.plural());
                return Ok(0);
            }
            let mut rows = vec![
                [
                    "NAMESPACE",
                    "NAME",
                    "CUSTOMER",
                    "PSA",
                    "COMPANY",
                    "USAGE-SYNC",
                    "LAST-SYNC",
                    "AT",
                    "REASON",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for r in &items {
                let view = views.get(&r.key);
                let mapping = match r.typed_spec() {
                    Some(Spec::CustomerMapping(m)) => Some(m),
                    _ => None,
                };
                let usage = match view.and_then(|v| v.usage.as_ref()) {
                    Some(u) if u.enabled => "enabled",
                    _ => "disabled",
                };
                let last = &r.status["lastSync"];
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
                let mut reason = text(&last["reason"]);
                if reason.chars().count() > 80 {
                    reason = reason.chars().take(79).collect::<String>() + "…";
                }
                rows.push(vec![
                    r.key.namespace.clone(),
                    r.key.name.clone(),
                    mapping
                        .as_ref()
                        .map_or("", |m| m.customer.as_str())
                        .to_string(),
                    mapping
                        .as_ref()
                        .map_or("", |m| m.psa.target.as_str())
                        .to_string(),
                    r.status["companyId"]
                        .as_i64()
                        .map_or("-".to_string(), |id| id.to_string()),
                    usage.to_string(),
                    last["outcome"].as_str().unwrap_or("never").to_string(),
                    text(&last["time"]),
                    reason,
                ]);
            }
            print_table(&rows);
        }
        ListOutput::Text => {
            if items.is_empty() {
                eprintln!("No {} found.", kind.plural());
                return Ok(0);
            }
            let now = now()?;
            let mut rows = vec![vec![
                "NAMESPACE".to_string(),
                "NAME".into(),
                "GEN".into(),
                "READY".into(),
                "DETAIL".into(),
                "UPDATED".into(),
            ]];
            for r in &items {
                let ready = r.status["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .and_then(|c| c["status"].as_str())
                    .unwrap_or("Unknown")
                    .to_string();
                rows.push(vec![
                    r.key.namespace.clone(),
                    r.key.name.clone(),
                    r.generation.to_string(),
                    ready,
                    detail(r, now),
                    r.updated_at.clone(),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(0)
}

/// A short kind-specific column for `ferry get`.
pub(super) fn detail(r: &state::StoredResource, now: Timestamp) -> String {
    match r.typed_spec() {
        Some(Spec::ReportSchedule(rs)) => {
            let next = plan::preview_runs(&r.key, rs, now, 1);
            let when = next
                .first()
                .map(|n| n.at.clone())
                .unwrap_or_else(|| "-".into());
            if rs.suspend {
                format!("suspended, next slot {when}")
            } else {
                format!("next {when}")
            }
        }
        Some(Spec::DeliveryTarget(dt)) => {
            dt.kind().map(|k| k.key().to_string()).unwrap_or_default()
        }
        Some(Spec::CustomerMapping(cm)) => format!("{} -> {}", cm.customer, cm.psa.target),
        None => String::new(),
    }
}
