//! `validate`, `plan` (files or `--cluster`) and `apply` (files or a saved plan): the
//! pipeline's desired -> plan -> apply, shown as people and CI read it.

use std::io::Write;
use std::path::PathBuf;

use crate::api::{Kind, ResourceKey, Spec};
use crate::clock::now;
use crate::load::LoadedResource;
use crate::plan::render::{self, Output};
use crate::plan::{self, DesiredResource, Plan, SavedPlan};
use crate::secrets::{self, FileSecrets};
use crate::state::{self, ActualState, StateStore};
use crate::{Error, Result};

use super::args::*;
use super::context::*;

/// Loads and validates files (see [`crate::pipeline::desired::load_files`]); warnings (a
/// symlink loop skipped) go to standard error. Touches no state: commands call it before they
/// open or lock one, so bad input leaves the state as it was, byte for byte.
pub fn load_valid(files: &[PathBuf], allow_empty: bool) -> Result<Vec<LoadedResource>> {
    let valid = crate::pipeline::desired::load_files(files, allow_empty)?;
    if !valid.warnings.is_empty() {
        let mut err = std::io::stderr().lock();
        for w in &valid.warnings {
            let _ = writeln!(err, "{}", w.as_warning());
        }
    }
    Ok(valid.resources)
}

pub(super) fn validate_cmd(files: &[PathBuf], output: ListOutput, allow_empty: bool) -> Result<u8> {
    let result = load_valid(files, allow_empty).map(|resources| {
        let count = resources.len();
        let by_kind = Kind::ALL.map(|k| resources.iter().filter(|r| r.key.kind == k).count());
        discard(resources);
        (count, by_kind)
    });
    match (output, result) {
        (ListOutput::Json, Ok((count, _))) => {
            let doc = serde_json::json!({"valid": true, "resources": count, "errors": []});
            outln!("{}", serde_json::to_string_pretty(&doc).expect("json"));
            Ok(0)
        }
        (ListOutput::Json, Err(Error::Invalid(diags) | Error::NoResources(diags))) => {
            let doc = serde_json::json!({"valid": false, "errors": diags});
            outln!("{}", serde_json::to_string_pretty(&doc).expect("json"));
            Ok(1)
        }
        (ListOutput::Text, Ok((count, [targets, schedules, mappings]))) => {
            outln!(
                "Valid: {count} resource(s) ({schedules} ReportSchedule, {targets} DeliveryTarget, {mappings} CustomerMapping)."
            );
            Ok(0)
        }
        (_, Err(e)) => Err(e),
    }
}

/// Resolves secrets and diffs validated resources (see [`load_valid`]) against the state.
pub(super) async fn make_plan(
    ctx: &Ctx,
    store: &StateStore,
    loaded: Vec<LoadedResource>,
) -> Result<(Plan, Vec<DesiredResource>, ActualState)> {
    let started = std::time::Instant::now();
    let hash_key = store.secret_hash_key().await?;
    let (desired, warnings) = crate::pipeline::desired::desired_state(&loaded, |ns, r| {
        Ok(ctx
            .secrets
            .get(ns, r)?
            .map(|value| secrets::digest(&hash_key, &value)))
    })?;
    tracing::info!(elapsed = ?started.elapsed(), "desired state built");
    // The loaded files are no longer needed: free them before the state is read.
    discard(loaded);
    let actual = store.snapshot().await?;
    tracing::info!(resources = actual.resources.len(), elapsed = ?started.elapsed(), "state read");
    let plan = plan::plan(&desired, &actual, warnings, now()?);
    tracing::info!(elapsed = ?started.elapsed(), "planned");
    Ok((plan, desired, actual))
}

pub(super) fn render_plan(plan: &Plan, output: Output, color: bool) -> String {
    match output {
        Output::Text => render::text(plan, color),
        Output::Json => render::json(plan),
        Output::Markdown => render::markdown(plan),
    }
}

pub(super) async fn plan_cmd(
    ctx: &Ctx,
    loaded: Vec<LoadedResource>,
    output: Output,
    detailed_exitcode: bool,
    out: Option<PathBuf>,
    refresh: bool,
) -> Result<u8> {
    // A plan leaves no trace: the state is read, never created nor written.
    let store = StateStore::open_read_only(&ctx.state_path).await?;
    let (mut plan, desired, actual) = make_plan(ctx, &store, loaded).await?;
    if refresh {
        refresh_psa(ctx, &mut plan, &desired, &actual).await;
    }
    discard(actual);
    out!("{}", render_plan(&plan, output, ctx.color));
    if let Some(path) = out {
        let saved = SavedPlan {
            plan: plan.clone(),
            desired,
        };
        let bytes = serde_json::to_vec_pretty(&saved).expect("plans serialize");
        crate::fsutil::write_atomic(&path, &bytes, 0o644)?;
        discard(saved);
        if output == Output::Text {
            outln!(
                "\nSaved the plan to {}. Apply exactly this plan with: ferry apply {}",
                path.display(),
                path.display()
            );
        }
    } else {
        discard(desired);
    }
    let code = if detailed_exitcode && plan.summary.has_changes() {
        2
    } else {
        0
    };
    discard(plan);
    Ok(code)
}

/// `ferry plan --cluster`: the files against the live objects of the kubeconfig's cluster.
/// No state is opened: the actual side is what the controller holds for the live objects.
pub(super) async fn plan_cluster_cmd(
    ctx: &Ctx,
    files: &[PathBuf],
    output: Output,
    detailed_exitcode: bool,
    namespace: Option<String>,
) -> Result<u8> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Usage(format!("cannot reach the Kubernetes API: {e}")))?;
    let options = crate::controller::plan::Options {
        namespace,
        now: now()?,
    };
    let planned = crate::controller::plan::plan(&client, files, &options).await?;
    out!(
        "{}",
        crate::controller::plan::render(&planned, output, ctx.color)
    );
    Ok(if detailed_exitcode && planned.has_changes() {
        2
    } else {
        0
    })
}

/// Refreshes the desired CustomerMappings from their PSA into `plan.drift` (read-only).
pub(super) async fn refresh_psa(
    ctx: &Ctx,
    plan: &mut Plan,
    desired: &[DesiredResource],
    actual: &ActualState,
) {
    let targets: std::collections::HashMap<&ResourceKey, &crate::api::DeliveryTargetSpec> = desired
        .iter()
        .filter_map(|d| match &d.spec {
            Spec::DeliveryTarget(t) if t.connectwise.is_some() || t.autotask.is_some() => {
                Some((&d.key, t.as_ref()))
            }
            _ => None,
        })
        .collect();
    let views: Vec<(crate::psa::sync::MappingView, serde_json::Value)> = desired
        .iter()
        .filter_map(|d| {
            let Spec::CustomerMapping(spec) = &d.spec else {
                return None;
            };
            let target_key =
                ResourceKey::new(Kind::DeliveryTarget, &d.key.namespace, &spec.psa.target);
            let target = targets.get(&target_key)?;
            let status = actual
                .resources
                .get(&d.key)
                .map(|r| r.status.to_value())
                .unwrap_or_default();
            Some((
                crate::psa::sync::MappingView::new(
                    d.key.clone(),
                    spec.clone(),
                    (*target).clone(),
                    None,
                ),
                status,
            ))
        })
        .collect();
    if views.is_empty() {
        return;
    }
    let Ok(now) = now() else { return };
    let (notes, warnings) = crate::psa::drift::refresh(&views, &ctx.secrets, now).await;
    plan.drift = notes;
    plan.warnings.extend(warnings);
}

pub(super) async fn apply_files(
    ctx: &Ctx,
    files: &[PathBuf],
    auto_approve: bool,
    allow_empty: bool,
) -> Result<u8> {
    // The files first: invalid or empty input stops here, before the state is locked,
    // created or opened.
    let loaded = load_valid(files, allow_empty)?;
    let _lock = ctx.lock("apply").await?;
    let store = StateStore::open(&ctx.state_path).await?;
    let (plan, desired, actual) = make_plan(ctx, &store, loaded).await?;
    out!("{}", render::text(&plan, ctx.color));
    if !plan.summary.has_changes() {
        return Ok(0);
    }
    if !auto_approve && !confirm()? {
        return Err(Error::Cancelled);
    }
    commit(&ctx.secrets, &store, &plan, &desired, &actual).await
}

pub(super) async fn apply_saved(ctx: &Ctx, file: &PathBuf) -> Result<u8> {
    let _lock = ctx.lock("apply").await?;
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let saved: SavedPlan = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Usage(format!("{} is not a saved ferry plan: {e}", file.display())))?;
    if saved.plan.format_version != plan::PLAN_FORMAT_VERSION {
        return Err(Error::Usage(format!(
            "{} has plan format {}, this ferry reads format {}",
            file.display(),
            saved.plan.format_version,
            plan::PLAN_FORMAT_VERSION
        )));
    }
    // A plan made where no state existed yet has no lineage: it applies to a state that has
    // still nothing applied (created now if missing), with the secret digests keyed anew.
    let against_nothing = saved.plan.lineage.is_empty();
    if !against_nothing && !state::is_postgres_url(&ctx.state_path) && !ctx.state_path.exists() {
        return Err(Error::StalePlan(format!(
            "saved plan {} was made for state lineage {}, but {} does not exist",
            file.display(),
            saved.plan.lineage,
            state::display_location(&ctx.state_path)
        )));
    }
    let store = StateStore::open(&ctx.state_path).await?;
    let actual = store.snapshot().await?;
    let mut saved = saved;
    if against_nothing {
        if actual.serial != 0 || !actual.resources.is_empty() {
            return Err(Error::StalePlan(format!(
                "saved plan {} was made when no state existed (no lineage), but {} is another \
                 state by now (lineage {}, serial {}); run `ferry plan --out` again against this \
                 state and review the new plan",
                file.display(),
                state::display_location(&ctx.state_path),
                actual.lineage,
                actual.serial
            )));
        }
        let hash_key = store.secret_hash_key().await?;
        crate::pipeline::desired::redigest(&mut saved.desired, |ns, r| {
            Ok(ctx
                .secrets
                .get(ns, r)?
                .map(|value| secrets::digest(&hash_key, &value)))
        })?;
        saved.plan.lineage.clone_from(&actual.lineage);
    }
    if actual.lineage != saved.plan.lineage {
        return Err(Error::StalePlan(format!(
            "saved plan {} was made for another state (lineage {}, this state {} has lineage {}); \
             run `ferry plan --out` again against this state",
            file.display(),
            saved.plan.lineage,
            state::display_location(&ctx.state_path),
            actual.lineage
        )));
    }
    if actual.serial != saved.plan.serial {
        return Err(Error::StalePlan(format!(
            "saved plan {} is stale: it was made at state serial {}, and the state is now at serial {} \
             (another apply ran since); run `ferry plan --out` again and review the new plan",
            file.display(),
            saved.plan.serial,
            actual.serial
        )));
    }
    out!("{}", render::text(&saved.plan, ctx.color));
    if !saved.plan.summary.has_changes() {
        return Ok(0);
    }
    commit(&ctx.secrets, &store, &saved.plan, &saved.desired, &actual).await
}

pub(super) async fn commit(
    secrets: &FileSecrets,
    store: &StateStore,
    plan: &Plan,
    desired: &[DesiredResource],
    actual: &ActualState,
) -> Result<u8> {
    let applied = crate::pipeline::apply::apply(
        secrets,
        store,
        plan,
        desired,
        actual,
        crate::pipeline::apply::Passwords::Issue,
    )
    .await?;
    if !applied.released.is_empty() {
        outln!("Released in the PSA (deletionPolicy Delete):");
        for line in &applied.released {
            outln!("  {line}");
        }
    }
    let s = &plan.summary;
    outln!(
        "Apply complete: {} created, {} updated, {} deleted (state serial {}).",
        s.create,
        s.update,
        s.delete,
        applied.serial
    );
    // Shown after the commit: a password printed for a failed apply would never work.
    if !applied.passwords.is_empty() {
        outln!(
            "\nGenerated hosted SFTP passwords. They are shown this once: only their Argon2id hash \
             is kept. Hand each to its user over a private channel; `ferry rotate-password \
             deliverytarget/NAME` issues a new one.\n"
        );
        for p in &applied.passwords {
            outln!(
                "  user {:<20} ({})  {}",
                p.user,
                p.connections.join(", "),
                p.password
            );
        }
    }
    Ok(0)
}
