//! `run` (the daemon), `controller`, `run-now` and `history` of ReportSchedules.

use jiff::Timestamp;

use crate::api::{Kind, ResourceKey};
use crate::clock::now;
use crate::ledger::Trigger;
use crate::plan;
use crate::runner::{RunRequest, Runner, ScheduleView};
use crate::state::{self, StateStore};
use crate::{Error, Result};

use super::args::*;
use super::context::*;
use super::plan::{load_valid, make_plan};
use super::psa::psa_history;
use super::view::{print_table, receipt_lines};

pub(super) async fn run_cmd(ctx: &Ctx, args: RunArgs) -> Result<u8> {
    let sftp = args.sftp.config(&ctx.state_path)?;
    let checks = args.checks.periodic(&ctx.state_path)?;
    let RunArgs {
        files,
        once,
        shutdown_grace,
        poll,
        sftp: _,
        metrics_listen,
        allow_empty,
        max_concurrent_runs,
        checks: _,
    } = args;
    let options = crate::daemon::Options {
        files: files.clone(),
        once,
        shutdown_grace: parse_flag_duration("--shutdown-grace", &shutdown_grace)?,
        poll: parse_flag_duration("--poll", &poll)?,
        sftp,
        health: None,
        metrics_listen,
        notify: None,
        max_concurrent_runs,
        executor: None,
        checks: Some(checks),
    };
    // Invalid or empty files stop the start here, before the state is locked or created.
    discard(load_valid(&files, allow_empty)?);
    // One daemon per state: the lock is held for the daemon's life.
    let _lock = ctx.lock("run").await?;
    let store = StateStore::open(&ctx.state_path).await?;
    let mut runner = Runner::new(store.clone(), ctx.secrets.clone());
    runner.progress = once && ctx.color_stderr;
    let summary = crate::daemon::run(runner, options, || {
        let (store, files) = (store.clone(), files.clone());
        async move {
            let loaded = load_valid(&files, allow_empty)?;
            let (plan, desired, actual) = make_plan(ctx, &store, loaded).await?;
            for w in &plan.warnings {
                tracing::warn!("{w}");
            }
            // The daemon's output is a log: it never issues passwords, it says how to get one.
            for u in &plan.hosted_users {
                if u.password == Some(plan::PasswordAction::Generate) {
                    let target = u.connections.first().map_or("", |c| {
                        c.split_once('/').map_or(c.as_str(), |(_, name)| name)
                    });
                    tracing::warn!(
                        user = %u.user,
                        "hosted SFTP user has no public key and no password yet: `ferry rotate-password \
                         deliverytarget/{target}` issues one and shows it once"
                    );
                }
            }
            // As `ferry apply`: a failed release fails the reload, nothing is written.
            let applied = crate::pipeline::apply::apply(
                &ctx.secrets,
                &store,
                &plan,
                &desired,
                &actual,
                crate::pipeline::apply::Passwords::Leave,
            )
            .await?;
            for line in &applied.released {
                eprintln!("Released in the PSA (deletionPolicy Delete): {line}");
            }
            if applied.serial != plan.serial {
                let s = &plan.summary;
                tracing::info!(
                    created = s.create,
                    updated = s.update,
                    deleted = s.delete,
                    "applied the files"
                );
                eprintln!(
                    "Applied: {} created, {} updated, {} deleted.",
                    s.create, s.update, s.delete
                );
            }
            Ok(())
        }
    })
    .await?;
    if once {
        eprintln!(
            "Runs: {} succeeded, {} failed.",
            summary.succeeded, summary.failed
        );
        if summary.syncs_succeeded + summary.syncs_failed > 0 {
            eprintln!(
                "PSA syncs: {} succeeded, {} failed.",
                summary.syncs_succeeded, summary.syncs_failed
            );
        }
    }
    Ok(if summary.failed + summary.syncs_failed > 0 {
        1
    } else {
        0
    })
}

pub(super) async fn schedule_view(
    store: &StateStore,
    resource: &str,
    namespace: &str,
) -> Result<ScheduleView> {
    let (kind, name) = parse_resource(resource, None)?;
    let Some(name) = name.filter(|_| kind == Kind::ReportSchedule) else {
        return Err(Error::Usage(format!(
            "`{resource}`: expected reportschedule/NAME"
        )));
    };
    let key = ResourceKey::new(Kind::ReportSchedule, namespace, &name);
    let stored = store.get(&key).await?.ok_or_else(|| {
        Error::Usage(format!(
            "ReportSchedule `{name}` is not applied in namespace `{namespace}` of {}: run `ferry apply -f ...` first",
            store.location()
        ))
    })?;
    ScheduleView::from_stored(&stored)
}

pub(super) async fn run_now_cmd(
    ctx: &Ctx,
    resource: &str,
    namespace: &str,
    slot: Option<String>,
    resend: bool,
) -> Result<u8> {
    let store = StateStore::open(&ctx.state_path).await?;
    let view = schedule_view(&store, resource, namespace).await?;
    let tz = view.compiled()?.time_zone().clone();
    let (slot, trigger) = match slot {
        Some(s) => {
            let at: Timestamp = s.parse().map_err(|e| {
                Error::Usage(format!("--slot `{s}` is not an RFC 3339 instant: {e}"))
            })?;
            (at.to_zoned(tz), Trigger::Backfill)
        }
        None => (now()?.to_zoned(tz), Trigger::RunNow),
    };
    let mut runner = Runner::new(store, ctx.secrets.clone());
    runner.progress = ctx.color_stderr;
    let report = runner
        .execute(
            &view,
            RunRequest {
                slot: slot.clone(),
                trigger,
                resend,
                resume: None,
            },
        )
        .await?;
    // One line for the run, then what it says of itself.
    let head = format!(
        "{}: slot {} ({}): {}",
        view.key,
        crate::ledger::rfc3339(&slot),
        trigger.as_str(),
        report.outcome.as_str(),
    );
    let print_targets = || {
        for (target, outcome) in &report.targets {
            outln!("  {target}: {outcome}");
        }
    };
    if report.run_id == 0 && report.targets.is_empty() {
        // Another process runs this slot right now.
        outln!("{head}");
        if let Some(e) = &report.error {
            eprintln!("Error: {e}");
        }
        return Ok(1);
    } else if report.run_id == 0 {
        // Every target had the slot already (or may have): nothing was exported or sent.
        outln!("{head}, nothing to deliver (--resend delivers again)");
        print_targets();
    } else if report.targets.is_empty() && report.error.is_some() {
        // The export failed: there is no file, only the error (printed once, below).
        outln!("{head}, no file written");
        if let Some(e) = &report.error {
            eprintln!("Error: {e}");
        }
    } else {
        // Each target's line says how it went (a failure with its error).
        outln!(
            "{head}, {} rows, {} bytes, file {}",
            report.rows,
            report.bytes,
            report.file_name
        );
        print_targets();
    }
    use crate::ledger::Outcome;
    Ok(match report.outcome {
        Outcome::Succeeded | Outcome::Skipped => 0,
        _ => 1,
    })
}

pub(super) async fn history_cmd(
    ctx: &Ctx,
    resource: &str,
    namespace: &str,
    limit: u32,
    receipts: bool,
    output: ListOutput,
) -> Result<u8> {
    let store = StateStore::open_read_only(&ctx.state_path).await?;
    if parse_resource(resource, None)?.0 == Kind::CustomerMapping {
        return psa_history(&store, resource, namespace, limit, output).await;
    }
    let view = schedule_view(&store, resource, namespace).await?;
    let runs = crate::ledger::Ledger::new(store.pool().clone())
        .history(&view.key.namespace, &view.key.name, limit)
        .await?;
    match output {
        ListOutput::Json => outln!("{}", serde_json::to_string_pretty(&runs).expect("json")),
        ListOutput::Text => {
            if runs.is_empty() {
                eprintln!("No runs of {} yet.", view.key);
                return Ok(0);
            }
            let mut rows = vec![
                [
                    "SLOT",
                    "TRIGGER",
                    "STARTED",
                    "OUTCOME",
                    "ROWS",
                    "BYTES",
                    "FILE",
                    "DELIVERIES",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for r in &runs {
                let deliveries = r
                    .deliveries
                    .iter()
                    .map(|d| format!("{}={}", d.target, d.outcome))
                    .collect::<Vec<_>>()
                    .join(",");
                rows.push(vec![
                    r.slot.clone(),
                    r.trigger.clone(),
                    r.start_delay_seconds
                        .map_or_else(|| "-".into(), |s| format!("+{}", human_seconds(s))),
                    r.outcome.as_str().to_string(),
                    r.rows.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                    r.bytes.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                    r.file_name.clone().unwrap_or_else(|| "-".into()),
                    if deliveries.is_empty() {
                        r.error.clone().unwrap_or_else(|| "-".into())
                    } else {
                        deliveries
                    },
                ]);
            }
            print_table(&rows);
            if receipts {
                for r in &runs {
                    for d in &r.deliveries {
                        outln!("");
                        outln!(
                            "{} -> {}: {} after {} attempt(s), {}",
                            r.slot,
                            d.target,
                            d.outcome,
                            d.attempts,
                            d.updated_at
                        );
                        if let Some(receipt) = &d.receipt {
                            for line in receipt_lines(receipt) {
                                outln!("  {line}");
                            }
                        }
                        if let Some(e) = &d.error {
                            outln!("  error: {e}");
                        }
                    }
                }
            }
        }
    }
    Ok(0)
}

/// A delay as `ferry history` shows it: `4s`, `2m05s`, `3h02m`, `2d04h`.
fn human_seconds(s: i64) -> String {
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `ferry controller`: reconciles the three kinds from a cluster (see [`crate::controller`]).
pub(super) async fn controller_cmd(ctx: &Ctx, args: ControllerArgs) -> Result<u8> {
    let sftp = args.sftp.config(&ctx.state_path)?;
    let checks = args.checks.periodic(&ctx.state_path)?;
    let ControllerArgs {
        watch_namespace,
        secrets_mirror,
        instance,
        metrics_listen,
        leader_elect,
        lease_name,
        lease_namespace,
        lease_duration,
        sftp: _,
        max_concurrent_runs,
        checks: _,
        executor,
        job_template,
        job_namespace,
        job_poll,
    } = args;
    let jobs = match (executor, job_template) {
        (ExecutorKind::InProcess, _) => None,
        (ExecutorKind::Job, None) => {
            return Err(Error::Usage(
                "--executor job needs --job-template (the Job each run's Job is made from)".into(),
            ));
        }
        (ExecutorKind::Job, Some(_)) if !state::is_postgres_url(&ctx.state_path) => {
            return Err(Error::Usage(
                "--executor job needs a PostgreSQL state (--state postgres://...): the Jobs' \
                 pods share it with the controller"
                    .into(),
            ));
        }
        (ExecutorKind::Job, Some(template)) => {
            Some(crate::controller::jobs::JobSettings::from_file(
                &template,
                job_namespace.as_deref().unwrap_or(&lease_namespace),
                parse_flag_duration("--job-poll", &job_poll)?,
            )?)
        }
    };
    let leader_election = if leader_elect {
        Some(crate::controller::lease::LeaseConfig {
            name: lease_name,
            namespace: lease_namespace,
            identity: instance.clone(),
            duration: parse_flag_duration("--lease-duration", &lease_duration)?,
        })
    } else {
        None
    };
    // One controller per state: the lock is held for its life. Replicas sharing a
    // PostgreSQL state take it once elected (a fence behind the Lease: a deposed
    // leader that has not noticed yet still holds it, so two never run at once).
    crate::ledger::set_instance(&instance);
    let shared = leader_election.is_some() && state::is_postgres_url(&ctx.state_path);
    let _lock = match shared {
        true => None,
        false => Some(ctx.lock("controller").await?),
    };
    let store = StateStore::open(&ctx.state_path).await?;
    crate::controller::run(
        store,
        crate::controller::Options {
            namespace: watch_namespace,
            secrets_dir: secrets_mirror,
            sftp,
            instance,
            metrics_listen,
            leader_election,
            lock_when_elected: shared.then(|| ctx.state_path.clone()),
            max_concurrent_runs,
            jobs,
            checks: Some(checks),
        },
    )
    .await?;
    Ok(0)
}

/// `ferry exec-run`: executes one recorded run in this process, the pod of a Job of
/// `ferry controller --executor job` (see [`crate::controller::jobs`]).
pub(super) async fn exec_run_cmd(
    ctx: &Ctx,
    run_id: i64,
    secrets_mirror: &std::path::Path,
) -> Result<u8> {
    let store = StateStore::open(&ctx.state_path).await?;
    let mirror = crate::controller::secrets::SecretMirror::new(secrets_mirror)?;
    let client = async || {
        kube::Client::try_default()
            .await
            .map_err(|e| Error::Usage(format!("cannot reach the Kubernetes API: {e}")))
    };
    let executed =
        crate::controller::jobs::execute_recorded_run(store, mirror, client, run_id).await?;
    if let Some(note) = &executed.note {
        eprintln!("{note}");
    }
    if let Some(report) = &executed.report {
        outln!(
            "{}: slot {}: run {}: {}, {} rows, {} bytes, file {}",
            report.schedule,
            report.slot,
            report.run_id,
            report.outcome.as_str(),
            report.rows,
            report.bytes,
            report.file_name
        );
        for (target, outcome) in &report.targets {
            outln!("  {target}: {outcome}");
        }
        if let Some(e) = &report.error {
            eprintln!("Error: {e}");
        }
    }
    Ok(executed.code)
}

#[cfg(test)]
mod tests {
    use super::human_seconds;

    #[test]
    fn delays_read_at_a_glance() {
        assert_eq!(human_seconds(0), "0s");
        assert_eq!(human_seconds(59), "59s");
        assert_eq!(human_seconds(125), "2m05s");
        assert_eq!(human_seconds(3 * 3600 + 125), "3h02m");
        assert_eq!(human_seconds(2 * 86400 + 4 * 3600 + 59), "2d04h");
    }
}
