//! `ferry check`: tonight's failure found in today's review. Where `plan` compares files with
//! the state, a check touches what the resources point at, read-only, the way the next run
//! would: a schedule's database (its query prepared, never run, with the next slot's window,
//! and its result columns compared with the declared ones), a target's server (connection,
//! server identity, login, directory, and a probe file delivered exactly as a report is, then
//! removed), an email target's SMTP relay (up to AUTH, nothing sent), a CustomerMapping's PSA
//! (company and contracts resolved, as `plan` refreshes them).
//!
//! Checks run concurrently, each bounded by a timeout. Messages come from the same code as a
//! run's errors, which never carry a secret.

pub mod periodic;
pub mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::api::{CustomerMappingSpec, DeliveryTargetSpec, Kind, ReportScheduleSpec, Spec};
use crate::deliver::{About, CommitHook, Outgoing, Sharing};
use crate::load::LoadedResource;
use crate::schedule::CompiledSchedule;
use crate::secrets::FileSecrets;
use crate::source::Params;

/// Checks running at once: each holds a connection or two.
const CONCURRENT_CHECKS: usize = 16;

/// Where an applied resource (checked from the state, [`periodic::applied`]) is said to come
/// from: the state, not a file.
pub const APPLIED: &str = "state";

/// How every probe file's name starts: hidden, and telling whoever finds one what wrote it.
pub const PROBE_PREFIX: &str = ".ferry-check-";

/// The probe file's name: hidden, and plainly Ferry's should a removal fail.
pub fn probe_name(run_id: i64) -> String {
    format!("{PROBE_PREFIX}{run_id}")
}

/// What to check, and how long each check may take.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Each check's limit (connecting, logging in, probing).
    pub timeout: Duration,
    /// Only this resource (`kind`, `name`).
    pub only: Option<(Kind, String)>,
    /// The hosted SFTP server's data directory.
    pub hosted_sftp_data: PathBuf,
    /// Now: the next slot of each schedule follows it.
    pub now: jiff::Timestamp,
}

/// How a check ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// It would work.
    Ok,
    /// It would fail, for the reason given.
    Failed,
    /// Not checked, for the reason given.
    Skipped,
}

impl Status {
    /// The word shown for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One check of one resource, located at the field it concerns.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The resource's kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What was checked: `source`, `columns`, `delivery`, `email`, `psa`.
    pub check: String,
    /// The file the resource came from.
    pub file: PathBuf,
    /// The line of the field concerned (the query, a column, the target's spec); 0 for a
    /// resource checked from the state.
    pub line: usize,
    /// How it ended.
    pub status: Status,
    /// What was reached, or why it failed or was skipped.
    pub message: String,
}

impl CheckResult {
    fn new(
        resource: &LoadedResource,
        check: &str,
        field: &str,
        status: Status,
        message: String,
    ) -> Self {
        // An applied resource (not from a file) has no line.
        let line = if resource.origin.file.as_os_str() == APPLIED {
            0
        } else {
            resource.origin.locate(field).0
        };
        CheckResult {
            kind: resource.key.kind,
            namespace: resource.key.namespace.clone(),
            name: resource.key.name.clone(),
            check: check.to_string(),
            file: resource.origin.file.as_ref().clone(),
            line,
            status,
            message,
        }
    }
}

/// Checks every resource of `resources` (or the one `options.only` names), in file order.
pub async fn check_all(
    resources: &[LoadedResource],
    secrets: &FileSecrets,
    options: &CheckOptions,
) -> crate::Result<Vec<CheckResult>> {
    let chosen: Vec<&LoadedResource> = resources
        .iter()
        .filter(|r| match &options.only {
            Some((kind, name)) => r.key.kind == *kind && &r.key.name == name,
            None => true,
        })
        .collect();
    if let Some((kind, name)) = &options.only
        && chosen.is_empty()
    {
        return Err(crate::Error::Usage(format!(
            "--only {}/{name}: no such resource in the files",
            kind.as_str()
        )));
    }
    let probe = EmptyFile::create()?;
    let staged = probe.0.clone();
    let limit = Arc::new(Semaphore::new(CONCURRENT_CHECKS));
    let mut mappings = Vec::new();
    let mut checks = Vec::new();
    for resource in &chosen {
        let ctx = Ctx {
            resource,
            secrets,
            options,
            staged: &staged,
            limit: &limit,
        };
        match &resource.spec {
            Spec::ReportSchedule(spec) => checks.push(Box::pin(ctx.schedule(spec))
                as std::pin::Pin<Box<dyn Future<Output = Vec<CheckResult>> + Send + '_>>),
            Spec::DeliveryTarget(spec) => checks.push(Box::pin(ctx.target(spec))),
            Spec::CustomerMapping(spec) => mappings.push((*resource, spec)),
        }
    }
    let (mut results, psa) = tokio::join!(
        async { join_all(checks).await.concat() },
        check_mappings(&mappings, resources, secrets, options)
    );
    results.extend(psa);
    // File order: by file, then line.
    results.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(results)
}

/// The probe's staged file: empty, in the system's temporary directory, removed on drop.
struct EmptyFile(PathBuf);

impl EmptyFile {
    fn create() -> crate::Result<EmptyFile> {
        let path = std::env::temp_dir().join(format!(
            "ferry-check-{}-{}",
            std::process::id(),
            probe_run_id()
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| crate::Error::io(&path, e))?;
        Ok(EmptyFile(path))
    }
}

impl Drop for EmptyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one resource's checks share.
struct Ctx<'a> {
    resource: &'a LoadedResource,
    secrets: &'a FileSecrets,
    options: &'a CheckOptions,
    staged: &'a Path,
    limit: &'a Semaphore,
}

impl Ctx<'_> {
    fn result(&self, check: &str, field: &str, status: Status, message: String) -> CheckResult {
        CheckResult::new(self.resource, check, field, status, message)
    }

    /// `f` within the timeout, while a check slot is free.
    async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = crate::Result<T>>,
    ) -> Result<T, String> {
        let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.options.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "{what}: no answer within {}s (--timeout)",
                self.options.timeout.as_secs()
            )),
        }
    }

    /// The source of a schedule: its query prepared for the next slot, its columns.
    async fn schedule(self, spec: &ReportScheduleSpec) -> Vec<CheckResult> {
        const QUERY: &str = "spec.source.sql.query";
        let sql = &spec.source.sql;
        let url = match crate::source::database_url(sql, &self.resource.key.namespace, self.secrets)
        {
            Ok(Some(url)) => url,
            Ok(None) => {
                return vec![self.result(
                    "source",
                    "spec.source.sql",
                    Status::Failed,
                    "no database configured".into(),
                )];
            }
            Err(e) => {
                return vec![self.result(
                    "source",
                    "spec.source.sql.connectionSecretRef",
                    Status::Failed,
                    e.to_string(),
                )];
            }
        };
        let slot = match CompiledSchedule::new(&spec.schedule, &spec.time_zone)
            .ok()
            .and_then(|s| s.next_after(self.options.now))
        {
            Some(slot) => slot,
            None => {
                return vec![self.result(
                    "source",
                    "spec.schedule",
                    Status::Skipped,
                    "the schedule has no next run".into(),
                )];
            }
        };
        // `sinceLastSuccess` without a last success reads like the run that comes first.
        let params = Params::for_slot(spec.source.window, &slot, None);
        let names = match self
            .bounded("source", crate::source::columns(&url, &sql.query, &params))
            .await
        {
            Ok(names) => names,
            Err(e) => {
                // PostgreSQL says where in the query; point at that line of the file.
                let mut failed = self.result("source", QUERY, Status::Failed, e);
                if failed.line != 0
                    && let Some(line) = query_line(&failed.message)
                {
                    let offset: usize = sql.query.lines().take(line - 1).map(|l| l.len() + 1).sum();
                    failed.line = self
                        .resource
                        .origin
                        .locate_in_value(QUERY, &sql.query, offset.min(sql.query.len()))
                        .0;
                }
                return vec![failed];
            }
        };
        let mut results = vec![self.result(
            "source",
            QUERY,
            Status::Ok,
            format!(
                "the query prepares for the run of {} and returns {} columns",
                slot.strftime("%Y-%m-%d %H:%M %Z"),
                names.len()
            ),
        )];
        let missing: Vec<(usize, &str)> = spec
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !names.contains(&c.name))
            .map(|(i, c)| (i, c.name.as_str()))
            .collect();
        match missing.first() {
            None if spec.columns.is_empty() => {}
            None => results.push(self.result(
                "columns",
                "spec.columns",
                Status::Ok,
                format!(
                    "all {} declared columns are in the result",
                    spec.columns.len()
                ),
            )),
            Some(&(first, _)) => results.push(self.result(
                "columns",
                &format!("spec.columns[{first}].name"),
                Status::Failed,
                format!(
                    "{} not in the query's result, which has: {}",
                    missing
                        .iter()
                        .map(|(_, n)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                        + if missing.len() == 1 { " is" } else { " are" },
                    names.join(", ")
                ),
            )),
        }
        results
    }

    /// A target: a probe delivered and removed, or the SMTP relay up to AUTH.
    async fn target(self, spec: &DeliveryTargetSpec) -> Vec<CheckResult> {
        let key = &self.resource.key;
        let Some(kind) = spec.kind() else {
            return vec![self.result(
                "delivery",
                "spec",
                Status::Failed,
                "the target has no valid transport".into(),
            )];
        };
        let kind_key = kind.key();
        let field = format!("spec.{kind_key}");
        if matches!(kind_key, "connectwise" | "autotask") {
            return vec![self.result(
                "delivery",
                &field,
                Status::Skipped,
                "a PSA connection is checked through its CustomerMappings".into(),
            )];
        }
        let check = if kind_key == "email" {
            "email"
        } else {
            "delivery"
        };
        let transport = match crate::deliver::transport_for(
            &key.namespace,
            &key.name,
            spec,
            self.secrets,
            &self.options.hosted_sftp_data,
        ) {
            Ok(t) => t,
            Err(e) => return vec![self.result(check, &field, Status::Failed, e.to_string())],
        };
        let run_id = probe_run_id();
        let name = probe_name(run_id);
        let about = About::by_hand(
            &key.namespace,
            self.options.now.to_zoned(jiff::tz::TimeZone::UTC),
        );
        let probe = Outgoing {
            staged: self.staged,
            file_name: &name,
            bytes: 0,
            sha256: EMPTY_SHA256,
            run_id,
            about: &about,
            sharing: Sharing::Foreign,
            delivery_key: None,
            stale_runs: &[],
            commit: CommitHook::default(),
        };
        let outcome = self.bounded(check, transport.probe(&probe)).await;
        vec![match outcome {
            Ok(receipt) => {
                let message = if check == "email" {
                    let mut m = format!(
                        "{} accepted the session (TLS and login as configured); nothing sent",
                        receipt.details.get("smtpServer").map_or("the relay", |s| s)
                    );
                    if let Some(object) = receipt.details.get("linkChecked") {
                        m.push_str(&format!(
                            "; the link store took a probe at {object}, served it through a \
                             presigned link and deleted it"
                        ));
                    }
                    m
                } else if let Some(entries) = receipt.details.get("listedEntries") {
                    // `check: list`: the receipt names the probe in the directory listed.
                    let dir = receipt
                        .location
                        .rsplit_once('/')
                        .map_or(receipt.location.as_str(), |(dir, _)| dir);
                    format!("{dir}/ was listed ({entries} entries); nothing written")
                } else if kind_key == "objectStore" {
                    format!(
                        "a probe object was written, read back and deleted at {}",
                        receipt.location
                    )
                } else {
                    let mut m = format!(
                        "a probe file was written, renamed and removed at {}",
                        receipt.location
                    );
                    if let Some(free) = receipt
                        .details
                        .get("freeBytes")
                        .and_then(|b| b.parse::<u64>().ok())
                    {
                        m.push_str(&format!("; {} free", human_bytes(free)));
                    }
                    if kind_key == "hostedSftp"
                        && let Some(key) = receipt.details.get("hostKey")
                    {
                        m.push_str(&format!("; the server's host key: {key}"));
                    }
                    m
                };
                self.result(check, &field, Status::Ok, message)
            }
            Err(e) => self.result(check, &field, Status::Failed, e),
        }]
    }
}

/// The line a source error names within the query (`... (line 2 of the query)`, the
/// PostgreSQL source's wording), if any.
fn query_line(message: &str) -> Option<usize> {
    let (before, _) = message.rsplit_once(" of the query)")?;
    let (_, number) = before.rsplit_once("(line ")?;
    number.parse().ok().filter(|&n| n > 0)
}

/// `free` bytes for people: `12.3 GiB`.
fn human_bytes(free: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = free as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{free} bytes"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// SHA-256 of no bytes: the probe file's.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A run id for a probe's names: distinct per check (the microseconds of now, counted on),
/// far from a run's (those count up from 1).
fn probe_run_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(0);
    jiff::Timestamp::now().as_microsecond().abs() + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// CustomerMappings: the plan's PSA refresh (company active, contracts resolved).
async fn check_mappings(
    mappings: &[(&LoadedResource, &CustomerMappingSpec)],
    resources: &[LoadedResource],
    secrets: &FileSecrets,
    options: &CheckOptions,
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let mut views = Vec::new();
    let mut checked = Vec::new();
    for &(resource, spec) in mappings {
        let target = resources.iter().find_map(|r| match &r.spec {
            Spec::DeliveryTarget(t)
                if r.key.namespace == resource.key.namespace
                    && r.key.name == spec.psa.target
                    && (t.connectwise.is_some() || t.autotask.is_some()) =>
            {
                Some(t.as_ref().clone())
            }
            _ => None,
        });
        let Some(target) = target else {
            results.push(CheckResult::new(
                resource,
                "psa",
                "spec.psa.target",
                Status::Skipped,
                format!(
                    "its PSA target `{}` is not among the files checked",
                    spec.psa.target
                ),
            ));
            continue;
        };
        views.push((
            crate::psa::sync::MappingView::new(resource.key.clone(), spec.clone(), target, None),
            serde_json::Value::Null,
        ));
        checked.push((resource, spec));
    }
    if views.is_empty() {
        return results;
    }
    let refreshed = tokio::time::timeout(
        options.timeout.saturating_mul(2),
        crate::psa::drift::refresh(&views, secrets, options.now),
    )
    .await;
    let (notes, warnings) = match refreshed {
        Ok(r) => r,
        Err(_) => {
            for (resource, _) in checked {
                results.push(CheckResult::new(
                    resource,
                    "psa",
                    "spec.psa",
                    Status::Failed,
                    format!(
                        "the PSA did not answer within {}s",
                        options.timeout.as_secs() * 2
                    ),
                ));
            }
            return results;
        }
    };
    for (resource, spec) in checked {
        let errors: Vec<&str> = notes
            .iter()
            .filter(|n| {
                n.error && n.namespace == resource.key.namespace && n.name == resource.key.name
            })
            .map(|n| n.message.as_str())
            .collect();
        let target_marker = format!("{}/{} ", resource.key.namespace, spec.psa.target);
        let unreachable: Vec<&str> = warnings
            .iter()
            .filter(|w| w.contains(&target_marker))
            .map(String::as_str)
            .collect();
        let (status, message) = if let Some(w) = unreachable.first() {
            (Status::Failed, (*w).to_string())
        } else if errors.is_empty() {
            (
                Status::Ok,
                "the company and its contracts resolve in the PSA".to_string(),
            )
        } else {
            (Status::Failed, errors.join("; "))
        };
        results.push(CheckResult::new(
            resource, "psa", "spec.psa", status, message,
        ));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_a_query_error_is_read_from_the_sources_message() {
        assert_eq!(
            query_line("relation \"x\" does not exist (line 2 of the query)"),
            Some(2)
        );
        assert_eq!(query_line("connection refused"), None);
        assert_eq!(query_line("(line 0 of the query)"), None);
    }

    #[test]
    fn free_space_reads_in_binary_units() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(13_207_024_435), "12.3 GiB");
    }
}
