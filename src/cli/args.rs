//! The command line's arguments: the global flags, every command and its options (clap
//! derive; the help text is the doc comments), and the small parsers of flag values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::{DEFAULT_NAMESPACE, Kind};
use crate::plan::render::Output;
use crate::{Error, Result};

/// Ferry: scheduled report exports, file delivery and PSA sync, declared in YAML.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The state: a SQLite file, or a `postgres://` URL (its password is never shown).
    #[arg(
        long,
        global = true,
        env = "FERRY_STATE",
        default_value = ".ferry/state.db",
        value_name = "PATH|URL"
    )]
    pub state: PathBuf,
    /// Directory of secrets in file mode, laid out as `<namespace>/<name>/<key>`.
    #[arg(
        long,
        global = true,
        env = "FERRY_SECRETS_DIR",
        default_value = ".ferry/secrets",
        value_name = "DIR"
    )]
    pub secrets_dir: PathBuf,
    /// How long to wait for another ferry process to release the state lock, e.g. `30s`.
    #[arg(long, global = true, default_value = "0s", value_name = "DURATION")]
    pub lock_timeout: String,
    /// Never colour output (also honoured: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// More log output (-v info, -vv debug, -vvv trace); logs go to standard error.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on standard error: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(
        long,
        global = true,
        env = "FERRY_LOG_FORMAT",
        value_enum,
        default_value_t = crate::observe::LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: crate::observe::LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListOutput {
    /// A human-readable table.
    Text,
    /// JSON.
    Json,
}

/// `--output` of `ferry check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    /// One line per check.
    Text,
    /// JSON: `{"checks": [...], "summary": {...}}`.
    Json,
    /// A Markdown table, for a pull-request comment.
    Markdown,
}

/// `--sync-status` of `ferry get customermappings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncStatusFilter {
    /// The last usage sync succeeded.
    Succeeded,
    /// The last usage sync failed.
    Failed,
    /// No usage sync ran yet.
    Never,
}

/// `--usage-sync` of `ferry get customermappings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EnabledFilter {
    /// Usage sync is on (own or general settings).
    Enabled,
    /// Usage sync is off.
    Disabled,
}

// `ferry run`'s flags (the subcommand's help is the `Run` variant's doc).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Files or directories (recursive, .yaml/.yml).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Run what is due now (reports and PSA syncs; interrupted runs resume), wait for it,
    /// print how many runs (and PSA syncs, when any) succeeded and failed, then exit; exit
    /// 1 if any run or sync failed.
    #[arg(long)]
    pub once: bool,
    /// After SIGTERM, how long running exports may take to finish.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub shutdown_grace: String,
    /// How often the files are checked for changes.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub poll: String,
    /// Ferry's SFTP server.
    #[command(flatten)]
    pub sftp: SftpArgs,
    /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`) on
    /// this address, e.g. `0.0.0.0:9090`. Off when not given, and with `--once`.
    #[arg(long, env = "FERRY_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Accept files that hold no resources, at start and on reload, and delete every
    /// resource in the state then. By default such input is refused at start, and a
    /// reload that finds no resources (a checkout in progress looks like that) keeps the
    /// previous ones and warns.
    #[arg(long)]
    pub allow_empty: bool,
    /// How many runs may export and deliver at once; due runs beyond wait in order, each
    /// keeping its slot, window and file name (the wait does not count against
    /// `startingDeadline`). Deliveries to one target are limited apart, by its
    /// `maxConnections`.
    #[arg(long, env = "FERRY_MAX_CONCURRENT_RUNS", default_value_t = crate::daemon::DEFAULT_MAX_CONCURRENT_RUNS, value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    pub max_concurrent_runs: u32,
    /// Periodic checks.
    #[command(flatten)]
    pub checks: CheckArgs,
}

/// The periodic checks of `ferry run` and `ferry controller` (`ferry check`'s checks of the
/// applied DeliveryTargets and ReportSchedules, recorded as their `Reachable` and
/// `SourceReady` conditions).
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// How often the applied resources are checked (`0s`: never). Resources just applied
    /// are checked at once.
    #[arg(
        long,
        env = "FERRY_CHECK_INTERVAL",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub check_interval: String,
    /// Each schedule is checked at least once within this long before each of its slots.
    #[arg(
        long,
        env = "FERRY_CHECK_BEFORE",
        default_value = "2h",
        value_name = "DURATION"
    )]
    pub check_before: String,
}

impl CheckArgs {
    /// The daemon's setting.
    pub fn periodic(
        &self,
        state_path: &std::path::Path,
    ) -> Result<crate::check::periodic::Periodic> {
        Ok(crate::check::periodic::Periodic {
            interval: parse_flag_duration("--check-interval", &self.check_interval)?,
            before: parse_flag_duration("--check-before", &self.check_before)?,
            hosted_sftp_data: crate::hosted_sftp::data_dir_for_state(state_path),
        })
    }
}

// `ferry controller`'s flags (the subcommand's help is the `Controller` variant's doc).
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "FERRY_WATCH_NAMESPACE", value_name = "NS")]
    pub watch_namespace: Option<String>,
    /// Where referenced Secrets are mirrored for the runs (owner-only; mount an
    /// `emptyDir: {medium: Memory}` here).
    #[arg(
        long,
        env = "FERRY_SECRETS_MIRROR",
        default_value = "/run/ferry/secrets",
        value_name = "DIR"
    )]
    pub secrets_mirror: PathBuf,
    /// This instance's name in Events (the pod's name).
    #[arg(long, env = "POD_NAME", default_value = "ferry", value_name = "NAME")]
    pub instance: String,
    /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`) on
    /// this address, e.g. `0.0.0.0:9090`. Off when not given.
    #[arg(long, env = "FERRY_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Elect a leader among replicas on a coordination.k8s.io Lease: only the leader
    /// reconciles and runs schedules and syncs; a standby takes over within the Lease's
    /// duration once the leader stops renewing.
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "ferry-controller", value_name = "NAME")]
    pub lease_name: String,
    /// The Lease's namespace (the controller's own).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "default",
        value_name = "NS"
    )]
    pub lease_namespace: String,
    /// How long the Lease stays valid without renewal (renewed every third of it).
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub lease_duration: String,
    /// How many runs may export and deliver at once; due runs beyond wait in order, each
    /// keeping its slot, window and file name (the wait does not count against
    /// `startingDeadline`). Deliveries to one target are limited apart, by its
    /// `maxConnections`.
    #[arg(long, env = "FERRY_MAX_CONCURRENT_RUNS", default_value_t = crate::daemon::DEFAULT_MAX_CONCURRENT_RUNS, value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    pub max_concurrent_runs: u32,
    /// Periodic checks.
    #[command(flatten)]
    pub checks: CheckArgs,
    /// Where runs execute: `in-process` (in the leader's pod) or `job` (each run in a
    /// Kubernetes Job running `ferry exec-run`; needs a PostgreSQL state and
    /// `--job-template`). In both, the leader decides, records and reports.
    #[arg(
        long,
        env = "FERRY_EXECUTOR",
        value_enum,
        default_value_t = ExecutorKind::InProcess,
        value_name = "KIND"
    )]
    pub executor: ExecutorKind,
    /// With `--executor job`: the batch/v1 Job (JSON or YAML) each run's Job is made from:
    /// image, service account, env FERRY_STATE from the state's Secret, resources, TTL,
    /// backoff limit (the chart renders it from its values).
    #[arg(long, env = "FERRY_JOB_TEMPLATE", value_name = "FILE")]
    pub job_template: Option<PathBuf>,
    /// With `--executor job`: the namespace of the runs' Jobs. Default: the controller's
    /// own (POD_NAMESPACE), where its ServiceAccount and the state's Secret are.
    #[arg(long, env = "FERRY_JOB_NAMESPACE", value_name = "NS")]
    pub job_namespace: Option<String>,
    /// With `--executor job`: how often the leader looks at a running Job and its run.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub job_poll: String,
    /// Ferry's SFTP server.
    #[command(flatten)]
    pub sftp: SftpArgs,
}

/// Where `ferry controller` executes runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// In the controller's (the leader's) process.
    InProcess,
    /// Each in a Kubernetes Job.
    Job,
}

/// The hosted SFTP server's flags, shared by `run` and `controller`.
#[derive(Debug, clap::Args)]
pub struct SftpArgs {
    /// Run Ferry's SFTP server for the `hostedSftp` connections on this address, e.g.
    /// `0.0.0.0:2022`. Off when not given. Its data (the users' directories and the host
    /// key, generated on first start) lives in `hosted-sftp/` next to the state, or in
    /// FERRY_HOSTED_SFTP_DATA.
    #[arg(long, env = "FERRY_SFTP_LISTEN", value_name = "ADDR:PORT")]
    sftp_listen: Option<std::net::SocketAddr>,
    /// Close an SFTP session idle for this long.
    #[arg(
        long,
        env = "FERRY_SFTP_IDLE_TIMEOUT",
        default_value = "10m",
        value_name = "DURATION"
    )]
    sftp_idle_timeout: String,
    /// Time a client has to log in, counted from the moment it connects (OpenSSH's
    /// LoginGraceTime); a connection that has not logged in by then is closed and its address
    /// penalized.
    #[arg(
        long,
        env = "FERRY_SFTP_LOGIN_GRACE",
        default_value = "30s",
        value_name = "DURATION"
    )]
    sftp_login_grace: String,
    /// Most logged-in SFTP sessions at once; a login beyond is refused with a message.
    /// Connections still logging in are counted apart (--sftp-max-startups).
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_SESSIONS",
        default_value_t = 64,
        value_name = "N"
    )]
    sftp_max_sessions: usize,
    /// Most logged-in sessions of one user, so one customer's runaway client cannot take
    /// every slot (rclone opens up to 12 by default).
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_SESSIONS_PER_USER",
        default_value_t = 16,
        value_name = "N"
    )]
    sftp_max_sessions_per_user: usize,
    /// Connections not logged in yet, as OpenSSH's MaxStartups `start:rate:full`: from
    /// `start` on, a new connection from an address that already has one waiting is dropped
    /// with probability `rate` %, rising to 100 % at `full`. An address with none waiting is
    /// always admitted (taking the place of the busiest address's oldest).
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_STARTUPS",
        default_value = "10:30:100",
        value_name = "START:RATE:FULL"
    )]
    sftp_max_startups: String,
    /// Connections not logged in yet from one address (IPv4) or /64 (IPv6).
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_STARTUPS_PER_SOURCE",
        default_value_t = 10,
        value_name = "N"
    )]
    sftp_max_startups_per_source: usize,
    /// Longest penalty of an address that opens connections and does not log in (10 s per
    /// login grace exceeded, 1 s per connection closed without trying to log in; refused from
    /// 15 s on, decaying in real time). 0 turns penalties off.
    #[arg(
        long,
        env = "FERRY_SFTP_PENALTY_MAX",
        default_value = "10m",
        value_name = "DURATION"
    )]
    sftp_penalty_max: String,
    /// Addresses never penalized, `ADDRESS[/BITS]` (a load balancer's health checks, a
    /// trusted NAT); repeat or separate with commas.
    #[arg(
        long,
        env = "FERRY_SFTP_PENALTY_EXEMPT",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    sftp_penalty_exempt: Vec<String>,
    /// SFTP channels one session may open at once.
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_CHANNELS",
        default_value_t = 4,
        value_name = "N"
    )]
    sftp_max_channels: usize,
    /// Requests of one channel waiting to be handled; a client beyond (sending without reading
    /// the answers) is disconnected.
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_REQUESTS",
        default_value_t = 16_384,
        value_name = "N"
    )]
    sftp_max_requests: usize,
    /// Bytes of requests waiting across one session's channels; a client beyond is
    /// disconnected. Bounds the memory one session can take.
    #[arg(
        long,
        env = "FERRY_SFTP_MAX_BUFFER",
        default_value = "32MiB",
        value_name = "SIZE"
    )]
    sftp_max_buffer: String,
}

impl SftpArgs {
    /// The server's settings, when it is enabled.
    pub(super) fn config(
        &self,
        state_path: &Path,
    ) -> Result<Option<crate::hosted_sftp::HostedSftpConfig>> {
        let Some(listen) = self.sftp_listen else {
            return Ok(None);
        };
        let mut config = crate::hosted_sftp::HostedSftpConfig::new(
            listen,
            crate::hosted_sftp::data_dir_for_state(state_path),
        );
        config.idle_timeout = parse_flag_duration("--sftp-idle-timeout", &self.sftp_idle_timeout)?;
        config.login_grace = parse_flag_duration("--sftp-login-grace", &self.sftp_login_grace)?;
        if config.login_grace.is_zero() {
            return Err(Error::Usage(
                "--sftp-login-grace: must be more than 0".into(),
            ));
        }
        let admission = &mut config.admission;
        admission.max_sessions = at_least_one("--sftp-max-sessions", self.sftp_max_sessions)?;
        admission.max_sessions_per_user = at_least_one(
            "--sftp-max-sessions-per-user",
            self.sftp_max_sessions_per_user,
        )?;
        admission.startups = self
            .sftp_max_startups
            .parse()
            .map_err(|e| Error::Usage(format!("--sftp-max-startups: {e}")))?;
        admission.per_source = at_least_one(
            "--sftp-max-startups-per-source",
            self.sftp_max_startups_per_source,
        )?;
        admission.penalties.max =
            parse_flag_duration("--sftp-penalty-max", &self.sftp_penalty_max)?;
        admission.penalties.exempt = self
            .sftp_penalty_exempt
            .iter()
            .map(|b| {
                b.parse()
                    .map_err(|e| Error::Usage(format!("--sftp-penalty-exempt: {e}")))
            })
            .collect::<Result<_>>()?;
        let limits = &mut config.limits;
        limits.max_channels = at_least_one("--sftp-max-channels", self.sftp_max_channels)?;
        limits.max_requests = at_least_one("--sftp-max-requests", self.sftp_max_requests)?;
        limits.max_buffer = parse_size("--sftp-max-buffer", &self.sftp_max_buffer)?;
        Ok(Some(config))
    }
}

/// `value`, refused when 0 (a limit of nothing would lock everyone out).
pub(super) fn at_least_one(flag: &str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(Error::Usage(format!("{flag}: must be at least 1")));
    }
    Ok(value)
}

/// A size such as `32MiB`, `512KiB`, `1GiB` or a number of bytes; at least 1 MiB.
pub(super) fn parse_size(flag: &str, value: &str) -> Result<usize> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let unit_bytes: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => {
            return Err(Error::Usage(format!(
                "{flag}: unknown unit `{other}` in `{value}` (use B, KiB, MiB or GiB)"
            )));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| Error::Usage(format!("{flag}: `{value}` is not a size such as 32MiB")))?;
    let bytes = n
        .checked_mul(unit_bytes)
        .ok_or_else(|| Error::Usage(format!("{flag}: `{value}` is too large")))?;
    if bytes < 1 << 20 {
        return Err(Error::Usage(format!(
            "{flag}: `{value}` is below 1MiB, too small for one SFTP write"
        )));
    }
    Ok(bytes)
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check files without touching any state: syntax, unknown fields, references, time zones,
    /// cron, times, durations, file-name tokens, duplicates. Reports every error at once.
    Validate {
        /// Files or directories (recursive, .yaml/.yml); `-` reads standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: ListOutput,
        /// Accept input that holds no resources (refused by default: applied, it would
        /// delete every resource in the state).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Show what apply would change: create / update / delete per resource with a field-level
    /// diff, and the next runs of every ReportSchedule.
    Plan {
        /// Files or directories (recursive, .yaml/.yml).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: Output,
        /// Exit 0 when there are no changes, 1 on error, 2 when there are changes.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan to FILE, for `ferry apply FILE`.
        #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
        out: Option<PathBuf>,
        /// Refresh CustomerMappings from their PSA (read-only) and show errors (company
        /// missing, ambiguous, inactive; unusable agreements) and drift (quantities changed
        /// outside Ferry). Skipped for PSA targets whose keys are not available here, and
        /// with --cluster.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        refresh: bool,
        /// Compare with the live objects of a Kubernetes cluster (KUBECONFIG or in-cluster)
        /// instead of the state: an object diff like `kubectl diff`, then the domain plan.
        /// Lists only; reads no Secret and changes nothing.
        #[arg(long)]
        cluster: bool,
        /// With --cluster: the namespace of documents that name none (default: the kubeconfig
        /// context's), like kubectl -n.
        #[arg(short = 'n', long, requires = "cluster", value_name = "NS")]
        namespace: Option<String>,
        /// Accept input that holds no resources, and plan the deletion of every resource in
        /// the state (refused by default).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Make the state match the files (after confirmation), or apply a saved plan.
    Apply {
        /// Files or directories to plan and apply.
        #[arg(short = 'f', long = "filename", num_args = 1.., conflicts_with = "plan_file")]
        files: Vec<PathBuf>,
        /// A plan saved with `ferry plan --out`; refused if the state moved since.
        #[arg(value_name = "PLAN_FILE")]
        plan_file: Option<PathBuf>,
        /// Apply without asking (for CI).
        #[arg(long)]
        auto_approve: bool,
        /// Accept input that holds no resources, and delete every resource in the state
        /// (refused by default, as kubectl refuses "no objects passed to apply").
        #[arg(long)]
        allow_empty: bool,
    },
    /// Check ahead, read-only, that the next runs would succeed: each ReportSchedule's query
    /// prepared (never run) on its database for the next slot and its columns compared; each
    /// DeliveryTarget's server reached, its identity verified, logged in and a probe file
    /// delivered and removed (email: the SMTP relay up to AUTH, nothing sent); each
    /// CustomerMapping's PSA company and contracts resolved. Exit 0 when every check passes,
    /// 1 otherwise.
    Check {
        /// Files or directories (recursive, .yaml/.yml). Without: the resources applied to
        /// the state.
        #[arg(short = 'f', long = "filename", num_args = 1..)]
        files: Vec<PathBuf>,
        /// Output format: `markdown` for a pull-request comment.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: CheckOutput,
        /// Only this resource: `KIND/NAME` (`rs/NAME`, `dt/NAME`, `cm/NAME`).
        #[arg(long, value_name = "KIND/NAME")]
        only: Option<String>,
        /// How long each check may take (connecting, logging in, probing).
        #[arg(long, default_value = "20s", value_name = "DURATION")]
        timeout: String,
    },
    /// The next run instants of a ReportSchedule and the file names they produce.
    Next {
        /// `reportschedule/NAME` (or `rs/NAME`).
        resource: String,
        /// Files or directories holding the schedule (and its targets).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// Start after this instant (RFC 3339, e.g. 2026-07-31T00:00:00+09:00). Default: now.
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// How many runs.
        #[arg(long, default_value_t = 5, value_name = "N")]
        count: usize,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: ListOutput,
    },
    /// Apply the files, then run every ReportSchedule and every CustomerMapping sync (usage,
    /// billing) when due (a daemon): missed slots run once within `startingDeadline`,
    /// interrupted runs resume, files are reloaded when they change or on SIGHUP, SIGTERM lets
    /// running exports finish.
    Run(RunArgs),
    /// Reconcile the ReportSchedules, DeliveryTargets and CustomerMappings of a Kubernetes
    /// cluster (in-cluster config or KUBECONFIG): each object is validated with the others of
    /// its namespace and applied to the state exactly as `ferry apply` would, with a finalizer
    /// and its status (`observedGeneration`, `Ready`, runs and syncs); Secrets are read from the
    /// cluster; schedules, PSA syncs and the hosted SFTP server run as under `ferry run`;
    /// `ferry.dev/run-now: <any new value>` runs a schedule once. Stops on SIGTERM.
    Controller(ControllerArgs),
    /// Execute one run that `ferry controller --executor job` recorded, then exit: what each
    /// of its Kubernetes Jobs runs. Reads the run and its schedule from the shared state,
    /// mirrors the Secrets they refer to from the cluster, exports and delivers to the
    /// targets that do not have the slot, prints the run's outcome. Exit 0 when it
    /// succeeded (or was skipped), 3 when it ended otherwise (a retry changes nothing), 1
    /// when it could not be executed (a retry may).
    ExecRun {
        /// The run's id in the ledger.
        #[arg(long, value_name = "N")]
        run_id: i64,
        /// Where the referenced Secrets are mirrored (owner-only; an in-memory volume).
        #[arg(
            long,
            env = "FERRY_SECRETS_MIRROR",
            default_value = "/run/ferry/secrets",
            value_name = "DIR"
        )]
        secrets_mirror: PathBuf,
    },
    /// Run a ReportSchedule now (also while suspended), or re-run a past slot with that slot's
    /// window and file name; or sync a CustomerMapping now (usage, or billing with
    /// `--billing`). Uses the applied resources (`ferry apply` first).
    RunNow {
        /// `reportschedule/NAME` or `customermapping/NAME` (also `rs/NAME`, `cm/NAME`).
        resource: String,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// The slot to run, RFC 3339 (e.g. 2026-07-31T00:30:00+09:00): backfill or re-send
        /// that period. Default: now.
        #[arg(long, value_name = "RFC3339")]
        slot: Option<String>,
        /// Deliver again to targets that already received this slot.
        #[arg(long)]
        resend: bool,
        /// `customermapping/NAME`: push billing now instead of syncing usage.
        #[arg(long)]
        billing: bool,
    },
    /// The run history of a ReportSchedule (slot, trigger, outcome, rows, bytes, sha256 and
    /// every delivery with its receipt), or the usage syncs and billing pushes of a
    /// CustomerMapping (slot, trigger, outcome, quantities pushed, error).
    History {
        /// `reportschedule/NAME` or `customermapping/NAME` (also `rs/NAME`, `cm/NAME`).
        resource: String,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// How many runs, newest first.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Also print every delivery's receipt: where the file is, bytes and sha256 the
        /// destination confirmed, host key or certificate fingerprint, message id.
        #[arg(long)]
        receipts: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: ListOutput,
    },
    /// Send a file to a DeliveryTarget now, the way scheduled runs deliver (temporary name,
    /// rename, size check), and print the receipt: a connection test, or a one-off transfer.
    /// Not recorded in any schedule's history. Uses the applied target (`ferry apply` first).
    Deliver {
        /// `deliverytarget/NAME` (or `dt/NAME`).
        target: String,
        /// The file to send.
        file: PathBuf,
        /// Name at the destination. Default: the file's own name.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: ListOutput,
    },
    /// Generate an SSH key pair for an `sftp` target: the private key goes into the secrets
    /// dir as secret NAME (key `id_ed25519`, `id_rsa` or `id_ecdsa`, the name
    /// `privateKeySecretRef.key` uses), and the OpenSSH public key line is printed, to hand to
    /// the receiving server's administrator.
    Keygen {
        /// Secret name, e.g. `bdash-key`.
        name: String,
        /// `ed25519` (default), `rsa` (4096 bits), `rsa-<bits>` (e.g. `rsa-3072`) or `ecdsa`.
        #[arg(
            short = 't',
            long = "type",
            default_value = "ed25519",
            value_name = "TYPE"
        )]
        key_type: String,
        /// Comment at the end of the public key line. Default: `ferry-<NAME>`.
        #[arg(short = 'C', long, value_name = "COMMENT")]
        comment: Option<String>,
        /// Namespace (the secrets dir has one folder per namespace).
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// Replace an existing key of that name (the old key stops working wherever it was
        /// authorized only after the server drops it).
        #[arg(long)]
        force: bool,
    },
    /// Print the host keys an SSH server offers, as lines to paste into an `sftp` target's
    /// `hostKeys`, with their fingerprints. Compare a fingerprint with the server's
    /// administrator before pinning it: this command cannot tell a real server from an
    /// impostor.
    Keyscan {
        /// `HOST` or `HOST:PORT` (default port 22; `[::1]:2222` for IPv6).
        #[arg(value_name = "HOST[:PORT]")]
        address: String,
        /// How long to wait for the server to accept the connection and offer its keys, e.g.
        /// `3s`; then the scan fails naming the address.
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        timeout: String,
    },
    /// Issue a new generated password for the hosted SFTP user of a `hostedSftp` target (one
    /// without public keys), print it once, and keep only its Argon2id hash. The old password
    /// stops working and the user's open sessions are closed; a running `ferry run
    /// --sftp-listen` picks the change up within its poll interval. Needs no lock, so it works
    /// while `ferry run` holds the state.
    RotatePassword {
        /// `deliverytarget/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
    },
    /// Run a strict local simulator of the ConnectWise Manage or Autotask REST API (the subset
    /// Ferry uses), for dry runs and tests. Its data file (YAML or JSON) holds the companies,
    /// agreements/contracts, products/services and the credentials it accepts; its control API
    /// (`GET /_sim/state`, `POST /_sim/faults`, `GET /_sim/requests`) shows what Ferry changed
    /// and injects failures. Runs until interrupted.
    PsaSim {
        /// `connectwise` or `autotask`.
        #[arg(value_enum)]
        kind: crate::psa::sim::SimKind,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// The data file (YAML or JSON): the simulator's starting state.
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
    },
    /// List applied resources from the state.
    Get {
        /// A kind (`reportschedules`, `rs`, `dt`, `cm`, ...), optionally `kind/NAME`.
        resource: String,
        /// Only this name.
        name: Option<String>,
        /// Namespace.
        #[arg(short, long, default_value = DEFAULT_NAMESPACE, value_name = "NS")]
        namespace: String,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text", value_name = "FORMAT")]
        output: ListOutput,
        /// CustomerMappings only: by the outcome of their last usage sync.
        #[arg(long, value_enum, value_name = "OUTCOME")]
        sync_status: Option<SyncStatusFilter>,
        /// CustomerMappings only: by whether usage sync is on.
        #[arg(long, value_enum, value_name = "STATE")]
        usage_sync: Option<EnabledFilter>,
    },
    /// Print the CustomResourceDefinitions of the three kinds as multi-document YAML.
    Crds {
        /// Print the Markdown field reference generated from the CRD schemas instead.
        #[arg(long)]
        reference: bool,
    },
}

pub(super) fn parse_flag_duration(flag: &str, value: &str) -> Result<Duration> {
    crate::schedule::parse_duration(value).map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// Parses `kind/name` (or a bare kind plus a separate name).
pub fn parse_resource(s: &str, name: Option<String>) -> Result<(Kind, Option<String>)> {
    let (kind, inline) = match s.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (s, None),
    };
    let kind: Kind = kind.parse().map_err(Error::Usage)?;
    match (inline, name) {
        (Some(_), Some(_)) => Err(Error::Usage(format!(
            "give the name once: `{s}` already names the resource"
        ))),
        (Some(n), None) | (None, Some(n)) if n.is_empty() => {
            Err(Error::Usage(format!("`{s}`: empty name")))
        }
        (a, b) => Ok((kind, a.or(b))),
    }
}
