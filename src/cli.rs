//! The `ferry` command line. Every command shares the global flags (`--state`,
//! `--secrets-dir`, ...), addresses resources kubectl-style (`kind/name`, `-n NS`) and exits
//! with a documented code: 0 success, 1 error, 2 changes present (`plan --detailed-exitcode`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::api::{DEFAULT_NAMESPACE, Kind, ResourceKey, Spec};
use crate::diagnostic::Diagnostic;
use crate::ledger::Trigger;
use crate::load::LoadedResource;
use crate::plan::render::{self, Output};
use crate::plan::{self, DesiredResource, Plan, SavedPlan};
use crate::runner::{RunRequest, Runner, ScheduleView};
use crate::secrets::{self, FileSecrets};
use crate::state::{self, ActualState, StateStore};
use crate::{Error, Result};

/// Prints to standard output. A closed pipe (`ferry crds | head`) ends the process quietly
/// with exit code 1 instead of a panic, and before anything is applied.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(1);
        }
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => {{
        out!($($arg)*);
        out!("\n");
    }};
}

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
    fn config(&self, state_path: &Path) -> Result<Option<crate::hosted_sftp::HostedSftpConfig>> {
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
fn at_least_one(flag: &str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(Error::Usage(format!("{flag}: must be at least 1")));
    }
    Ok(value)
}

/// A size such as `32MiB`, `512KiB`, `1GiB` or a number of bytes; at least 1 MiB.
fn parse_size(flag: &str, value: &str) -> Result<usize> {
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
    Run {
        /// Files or directories (recursive, .yaml/.yml).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Run what is due now (reports and PSA syncs; interrupted runs resume), wait for it,
        /// print how many runs (and PSA syncs, when any) succeeded and failed, then exit; exit
        /// 1 if any run or sync failed.
        #[arg(long)]
        once: bool,
        /// After SIGTERM, how long running exports may take to finish.
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        shutdown_grace: String,
        /// How often the files are checked for changes.
        #[arg(long, default_value = "2s", value_name = "DURATION")]
        poll: String,
        /// Ferry's SFTP server.
        #[command(flatten)]
        sftp: SftpArgs,
        /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`) on
        /// this address, e.g. `0.0.0.0:9090`. Off when not given, and with `--once`.
        #[arg(long, env = "FERRY_METRICS_LISTEN", value_name = "ADDR:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Accept files that hold no resources, at start and on reload, and delete every
        /// resource in the state then. By default such input is refused at start, and a
        /// reload that finds no resources (a checkout in progress looks like that) keeps the
        /// previous ones and warns.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Reconcile the ReportSchedules, DeliveryTargets and CustomerMappings of a Kubernetes
    /// cluster (in-cluster config or KUBECONFIG): each object is validated with the others of
    /// its namespace and applied to the state exactly as `ferry apply` would, with a finalizer
    /// and its status (`observedGeneration`, `Ready`, runs and syncs); Secrets are read from the
    /// cluster; schedules, PSA syncs and the hosted SFTP server run as under `ferry run`;
    /// `ferry.dev/run-now: <any new value>` runs a schedule once. Stops on SIGTERM.
    Controller {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "FERRY_WATCH_NAMESPACE", value_name = "NS")]
        watch_namespace: Option<String>,
        /// Where referenced Secrets are mirrored for the runs (owner-only; mount an
        /// `emptyDir: {medium: Memory}` here).
        #[arg(
            long,
            env = "FERRY_SECRETS_MIRROR",
            default_value = "/run/ferry/secrets",
            value_name = "DIR"
        )]
        secrets_mirror: PathBuf,
        /// This instance's name in Events (the pod's name).
        #[arg(long, env = "POD_NAME", default_value = "ferry", value_name = "NAME")]
        instance: String,
        /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`) on
        /// this address, e.g. `0.0.0.0:9090`. Off when not given.
        #[arg(long, env = "FERRY_METRICS_LISTEN", value_name = "ADDR:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Elect a leader among replicas on a coordination.k8s.io Lease: only the leader
        /// reconciles and runs schedules and syncs; a standby takes over within the Lease's
        /// duration once the leader stops renewing.
        #[arg(long)]
        leader_elect: bool,
        /// The Lease's name.
        #[arg(long, default_value = "ferry-controller", value_name = "NAME")]
        lease_name: String,
        /// The Lease's namespace (the controller's own).
        #[arg(
            long,
            env = "POD_NAMESPACE",
            default_value = "default",
            value_name = "NS"
        )]
        lease_namespace: String,
        /// How long the Lease stays valid without renewal (renewed every third of it).
        #[arg(long, default_value = "15s", value_name = "DURATION")]
        lease_duration: String,
        /// Ferry's SFTP server.
        #[command(flatten)]
        sftp: SftpArgs,
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

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    crate::observe::init_logging(
        cli.verbose,
        cli.log_format,
        use_color(cli.no_color, std::io::stderr().is_terminal()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Error::Invalid(diags) | Error::NoResources(diags)) => {
            print_diagnostics(&diags);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

/// Shared per-invocation settings.
struct Ctx {
    state_path: PathBuf,
    secrets: FileSecrets,
    lock_timeout: Duration,
    /// ANSI colours on standard output (plans).
    color: bool,
    /// Escape codes on standard error: coloured logs, and the progress line (a spinner that
    /// redraws itself), so `--no-color` on a terminal gets plain lines too.
    color_stderr: bool,
}

impl Ctx {
    fn from_cli(cli: &Cli) -> Result<Ctx> {
        let lock_timeout = crate::schedule::parse_duration(&cli.lock_timeout)
            .map_err(|e| Error::Usage(format!("--lock-timeout: {e}")))?;
        Ok(Ctx {
            state_path: cli.state.clone(),
            secrets: FileSecrets::new(&cli.secrets_dir),
            lock_timeout,
            color: use_color(cli.no_color, std::io::stdout().is_terminal()),
            color_stderr: use_color(cli.no_color, std::io::stderr().is_terminal()),
        })
    }

    async fn lock(&self, purpose: &str) -> Result<state::StateLock> {
        state::lock_state(&self.state_path, self.lock_timeout, purpose).await
    }
}

pub use crate::clock::now;

/// Whether to write ANSI colours to a stream: only to a terminal, and neither `--no-color`
/// nor `NO_COLOR` (any non-empty value, as no-color.org says) asks otherwise. Files and pipes
/// (`ferry run --once 2>log`) never get escape codes.
pub fn use_color(no_color_flag: bool, terminal: bool) -> bool {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    terminal && !no_color_flag && !no_color_env
}

async fn run(cli: Cli) -> Result<u8> {
    let ctx = Ctx::from_cli(&cli)?;
    match cli.command {
        Command::Validate {
            files,
            output,
            allow_empty,
        } => validate_cmd(&files, output, allow_empty),
        Command::Plan {
            files,
            output,
            detailed_exitcode,
            out,
            refresh,
            cluster,
            namespace,
            allow_empty,
        } => {
            if cluster {
                plan_cluster_cmd(&ctx, &files, output, detailed_exitcode, namespace).await
            } else {
                let loaded = load_valid(&files, allow_empty)?;
                plan_cmd(&ctx, loaded, output, detailed_exitcode, out, refresh).await
            }
        }
        Command::Apply {
            files,
            plan_file,
            auto_approve,
            allow_empty,
        } => match plan_file {
            Some(file) => apply_saved(&ctx, &file).await,
            None if files.is_empty() => Err(Error::Usage(
                "give files to apply (-f PATH...) or a saved plan file".into(),
            )),
            None => apply_files(&ctx, &files, auto_approve, allow_empty).await,
        },
        Command::Next {
            resource,
            files,
            namespace,
            after,
            count,
            output,
        } => next_cmd(&resource, &files, &namespace, after, count, output),
        Command::Get {
            resource,
            name,
            namespace,
            all_namespaces,
            output,
            sync_status,
            usage_sync,
        } => {
            get_cmd(
                &ctx,
                &resource,
                name,
                &namespace,
                all_namespaces,
                output,
                (sync_status, usage_sync),
            )
            .await
        }
        Command::Run {
            files,
            once,
            shutdown_grace,
            poll,
            sftp,
            metrics_listen,
            allow_empty,
        } => {
            let sftp = sftp.config(&ctx.state_path)?;
            run_cmd(
                &ctx,
                RunArgs {
                    files,
                    once,
                    shutdown_grace,
                    poll,
                    sftp,
                    metrics_listen,
                    allow_empty,
                },
            )
            .await
        }
        Command::Controller {
            watch_namespace,
            secrets_mirror,
            instance,
            metrics_listen,
            leader_elect,
            lease_name,
            lease_namespace,
            lease_duration,
            sftp,
        } => {
            let sftp = sftp.config(&ctx.state_path)?;
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
                },
            )
            .await?;
            Ok(0)
        }
        Command::RunNow {
            resource,
            namespace,
            slot,
            resend,
            billing,
        } => {
            if parse_resource(&resource, None)?.0 == Kind::CustomerMapping {
                psa_run_now_cmd(&ctx, &resource, &namespace, billing).await
            } else if billing {
                Err(Error::Usage(
                    "--billing applies to customermapping/NAME only".into(),
                ))
            } else {
                run_now_cmd(&ctx, &resource, &namespace, slot, resend).await
            }
        }
        Command::History {
            resource,
            namespace,
            limit,
            receipts,
            output,
        } => history_cmd(&ctx, &resource, &namespace, limit, receipts, output).await,
        Command::Keygen {
            name,
            key_type,
            comment,
            namespace,
            force,
        } => keygen_cmd(&ctx, &name, &key_type, comment, &namespace, force),
        Command::Keyscan { address, timeout } => keyscan_cmd(&address, &timeout).await,
        Command::Deliver {
            target,
            file,
            as_name,
            namespace,
            output,
        } => deliver_cmd(&ctx, &target, &file, as_name, &namespace, output).await,
        Command::RotatePassword { target, namespace } => {
            rotate_password_cmd(&ctx, &target, &namespace).await
        }
        Command::PsaSim { kind, listen, data } => {
            let api = crate::psa::sim::load_api(kind, &data)?;
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
        Command::Crds { reference } => {
            if reference {
                out!("{}", crate::crds::reference_markdown());
            } else {
                out!("{}", crate::crds::all_crds_yaml());
            }
            Ok(0)
        }
    }
}

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

fn validate_cmd(files: &[PathBuf], output: ListOutput, allow_empty: bool) -> Result<u8> {
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
async fn make_plan(
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
    let actual = store.snapshot().await?;
    tracing::info!(resources = actual.resources.len(), elapsed = ?started.elapsed(), "state read");
    let plan = plan::plan(&desired, &actual, warnings, now()?);
    tracing::info!(elapsed = ?started.elapsed(), "planned");
    discard(loaded);
    Ok((plan, desired, actual))
}

fn render_plan(plan: &Plan, output: Output, color: bool) -> String {
    match output {
        Output::Text => render::text(plan, color),
        Output::Json => render::json(plan),
        Output::Markdown => render::markdown(plan),
    }
}

async fn plan_cmd(
    ctx: &Ctx,
    loaded: Vec<LoadedResource>,
    output: Output,
    detailed_exitcode: bool,
    out: Option<PathBuf>,
    refresh: bool,
) -> Result<u8> {
    let store = StateStore::open(&ctx.state_path).await?;
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
async fn plan_cluster_cmd(
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
async fn refresh_psa(
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
                .map(|r| r.status.clone())
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

/// Frees a large structure on a detached thread: a command about to exit should not spend
/// a tenth of a second returning ten thousand resources to the allocator.
fn discard<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

async fn apply_files(
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

async fn apply_saved(ctx: &Ctx, file: &PathBuf) -> Result<u8> {
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
    if !state::is_postgres_url(&ctx.state_path) && !ctx.state_path.exists() {
        return Err(Error::StalePlan(format!(
            "saved plan {} was made for state lineage {}, but {} does not exist",
            file.display(),
            saved.plan.lineage,
            state::display_location(&ctx.state_path)
        )));
    }
    let store = StateStore::open(&ctx.state_path).await?;
    let actual = store.snapshot().await?;
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

async fn commit(
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

fn confirm() -> Result<bool> {
    out!("\nDo you want to apply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("<stdin>", e))?;
    Ok(line.trim() == "yes")
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

fn next_cmd(
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

async fn get_cmd(
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
    let store = StateStore::open(&ctx.state_path).await?;
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
                    r.spec["customer"].as_str().unwrap_or("").to_string(),
                    r.spec["psa"]["target"].as_str().unwrap_or("").to_string(),
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
fn detail(r: &state::StoredResource, now: Timestamp) -> String {
    match Spec::from_json(r.key.kind, r.spec.clone()) {
        Ok(Spec::ReportSchedule(rs)) => {
            let next = plan::preview_runs(&r.key, &rs, now, 1);
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
        Ok(Spec::DeliveryTarget(dt)) => dt.kind().map(|k| k.key().to_string()).unwrap_or_default(),
        Ok(Spec::CustomerMapping(cm)) => format!("{} -> {}", cm.customer, cm.psa.target),
        Err(_) => String::new(),
    }
}

/// Prints rows as left-aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
}

fn parse_flag_duration(flag: &str, value: &str) -> Result<Duration> {
    crate::schedule::parse_duration(value).map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// `ferry run`'s flags.
struct RunArgs {
    files: Vec<PathBuf>,
    once: bool,
    shutdown_grace: String,
    poll: String,
    sftp: Option<crate::hosted_sftp::HostedSftpConfig>,
    metrics_listen: Option<std::net::SocketAddr>,
    allow_empty: bool,
}

async fn run_cmd(ctx: &Ctx, args: RunArgs) -> Result<u8> {
    let RunArgs {
        files,
        once,
        shutdown_grace,
        poll,
        sftp,
        metrics_listen,
        allow_empty,
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

async fn schedule_view(
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

/// `ferry run-now customermapping/NAME [--billing]`: syncs one mapping now.
async fn psa_run_now_cmd(ctx: &Ctx, resource: &str, namespace: &str, billing: bool) -> Result<u8> {
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

async fn run_now_cmd(
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
    if report.targets.is_empty() && report.error.is_some() {
        // The export failed: there is no file, only the error (printed once, below).
        outln!(
            "{}: slot {} ({}): {}, no file written",
            view.key,
            crate::ledger::rfc3339(&slot),
            trigger.as_str(),
            report.outcome.as_str(),
        );
        if let Some(e) = &report.error {
            eprintln!("Error: {e}");
        }
    } else {
        // Each target's line says how it went (a failure with its error).
        outln!(
            "{}: slot {} ({}): {}, {} rows, {} bytes, file {}",
            view.key,
            crate::ledger::rfc3339(&slot),
            trigger.as_str(),
            report.outcome.as_str(),
            report.rows,
            report.bytes,
            report.file_name
        );
        for (target, outcome) in &report.targets {
            outln!("  {target}: {outcome}");
        }
    }
    Ok(if report.outcome == crate::ledger::Outcome::Succeeded {
        0
    } else {
        1
    })
}

/// `ferry history customermapping/NAME`: its usage syncs and billing pushes, newest first.
async fn psa_history(
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
                        "kind": kind.as_str(), "slot": slot(r.slot_epoch), "trigger": r.trigger,
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

async fn history_cmd(
    ctx: &Ctx,
    resource: &str,
    namespace: &str,
    limit: u32,
    receipts: bool,
    output: ListOutput,
) -> Result<u8> {
    let store = StateStore::open(&ctx.state_path).await?;
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

/// A receipt as `key: value` lines, transport details last.
fn receipt_lines(receipt: &serde_json::Value) -> Vec<String> {
    let Ok(receipt) = serde_json::from_value::<crate::deliver::Receipt>(receipt.clone()) else {
        return vec![receipt.to_string()];
    };
    let mut lines = vec![
        format!("location: {}", receipt.location),
        format!("bytes: {}", receipt.bytes),
        format!("sha256: {}", receipt.sha256),
    ];
    lines.extend(receipt.details.iter().map(|(k, v)| format!("{k}: {v}")));
    lines
}

/// The hex SHA-256 of `file` from a hashing task, refused if the file changed size meanwhile.
fn joined_digest(
    hashed: std::result::Result<Result<([u8; 32], u64)>, tokio::task::JoinError>,
    file: &Path,
    bytes: u64,
) -> Result<String> {
    let (digest, hashed_bytes) =
        hashed.map_err(|e| Error::Usage(format!("hashing {}: {e}", file.display())))??;
    if hashed_bytes != bytes {
        return Err(Error::Usage(format!(
            "{} changed while it was being sent ({bytes} bytes, then {hashed_bytes})",
            file.display()
        )));
    }
    Ok(hex::encode(digest))
}

fn keygen_cmd(
    ctx: &Ctx,
    name: &str,
    key_type: &str,
    comment: Option<String>,
    namespace: &str,
    force: bool,
) -> Result<u8> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(name) || !valid(namespace) {
        return Err(Error::Usage(format!(
            "`{namespace}/{name}`: secret and namespace names are lowercase letters, digits, `-` and `.`"
        )));
    }
    let kind: crate::ssh::KeyType = key_type.parse()?;
    let dir = ctx.secrets.dir().join(namespace).join(name);
    let private_path = dir.join(kind.file_stem());
    let public_path = dir.join(format!("{}.pub", kind.file_stem()));
    if private_path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists: keep it, or replace it with --force",
            private_path.display()
        )));
    }
    let comment = comment.unwrap_or_else(|| format!("ferry-{name}"));
    let key = crate::ssh::generate_key(kind, &comment, None)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&dir, e))?;
    }
    crate::fsutil::write_atomic(&private_path, key.private_openssh.as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(
        &public_path,
        format!("{}\n", key.public_line).as_bytes(),
        0o644,
    )?;
    eprintln!(
        "Wrote {} (private; reference it as privateKeySecretRef: {{name: {name}, key: {}}})",
        private_path.display(),
        kind.file_stem()
    );
    eprintln!("Fingerprint: {}", key.fingerprint);
    eprintln!("Public key, for the receiving server's authorized_keys:");
    outln!("{}", key.public_line);
    Ok(0)
}

async fn keyscan_cmd(address: &str, timeout: &str) -> Result<u8> {
    let timeout = crate::schedule::parse_duration(timeout)
        .map_err(|e| Error::Usage(format!("--timeout: {e}")))?;
    let (host, port) = split_host_port(address)?;
    let keys = crate::ssh::scan_host_keys(&host, port, timeout).await?;
    if keys.is_empty() {
        return Err(Error::Usage(format!(
            "{address}: the server offered no host key"
        )));
    }
    eprintln!(
        "# {address}: compare these fingerprints with the server's administrator before pinning a line"
    );
    for k in &keys {
        eprintln!("# {} {}", k.key_type, k.fingerprint);
    }
    for k in &keys {
        outln!("{}", k.line);
    }
    Ok(0)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the default port is 22.
fn split_host_port(address: &str) -> Result<(String, u16)> {
    let bad = || Error::Usage(format!("`{address}`: expected HOST or HOST:PORT"));
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), parse_port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), 22)),
            None => Err(bad()),
        };
    }
    match address.rsplit_once(':') {
        Some((host, p)) if !host.is_empty() && !host.contains(':') => {
            Ok((host.to_string(), parse_port(p)?))
        }
        None if !address.is_empty() => Ok((address.to_string(), 22)),
        _ => Err(bad()),
    }
}

/// The applied DeliveryTarget named by `deliverytarget/NAME` (with the opened state and its
/// name), or a usage error saying what to do.
async fn applied_delivery_target(
    ctx: &Ctx,
    target: &str,
    namespace: &str,
) -> Result<(StateStore, String, crate::api::DeliveryTargetSpec)> {
    let (kind, name) = parse_resource(target, None)?;
    let Some(name) = name.filter(|_| kind == Kind::DeliveryTarget) else {
        return Err(Error::Usage(format!(
            "`{target}`: expected deliverytarget/NAME"
        )));
    };
    let store = StateStore::open(&ctx.state_path).await?;
    let spec = crate::runner::applied_target(&store, namespace, &name)
        .await?
        .ok_or_else(|| {
            Error::Usage(format!(
                "DeliveryTarget `{name}` is not applied in namespace `{namespace}` of {}: run `ferry apply -f ...` first",
                store.location()
            ))
        })?;
    Ok((store, name, spec))
}

async fn rotate_password_cmd(ctx: &Ctx, target: &str, namespace: &str) -> Result<u8> {
    let (store, name, spec) = applied_delivery_target(ctx, target, namespace).await?;
    let Some(hosted) = &spec.hosted_sftp else {
        return Err(Error::Usage(format!(
            "DeliveryTarget `{name}` is not a hostedSftp connection: only hosted SFTP users have \
             generated passwords"
        )));
    };
    let user = &hosted.user;
    let connections = Runner::new(store.clone(), ctx.secrets.clone())
        .hosted_connections()
        .await?;
    if !crate::hosted_sftp::users_needing_password(&connections).contains(user) {
        let with_keys: Vec<String> = connections
            .iter()
            .filter(|c| &c.user == user && !c.public_keys.is_empty())
            .map(|c| format!("{}/{}", c.namespace, c.target_name))
            .collect();
        return Err(Error::Usage(format!(
            "hosted SFTP user `{user}` logs in with the public keys of {}: it has no password to \
             rotate (remove its keys to switch it to a generated password)",
            with_keys.join(", ")
        )));
    }
    let (password, hash) = crate::hosted_sftp::issue_password().await?;
    store.rotate_password(user, &hash).await?;
    let via: Vec<String> = connections
        .iter()
        .filter(|c| &c.user == user)
        .map(|c| format!("{}/{}", c.namespace, c.target_name))
        .collect();
    outln!(
        "New password for hosted SFTP user `{user}` ({}). It is shown this once: only its \
         Argon2id hash is kept. The previous password no longer works and open sessions are closed.\n",
        via.join(", ")
    );
    outln!("  {password}");
    Ok(0)
}

async fn deliver_cmd(
    ctx: &Ctx,
    target: &str,
    file: &Path,
    as_name: Option<String>,
    namespace: &str,
    output: ListOutput,
) -> Result<u8> {
    let (_, name, spec) = applied_delivery_target(ctx, target, namespace).await?;
    if spec.kind().is_some_and(|k| k.is_psa()) {
        return Err(Error::Usage(format!(
            "DeliveryTarget `{name}` is a PSA connection: it receives report files only from \
             a ReportSchedule labelled `ferry.dev/customer`, whose company it files them in"
        )));
    }
    let file_name = match as_name {
        Some(n) => n,
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", file.display())))?
            .to_string(),
    };
    if file_name.is_empty() || file_name.contains('/') || file_name.starts_with('.') {
        return Err(Error::Usage(format!(
            "`{file_name}`: the destination name must be a plain file name"
        )));
    }
    let bytes = std::fs::metadata(file)
        .map_err(|e| Error::io(file, e))?
        .len();
    let now = now()?;
    let transport = crate::deliver::transport_for(
        namespace,
        &name,
        &spec,
        &ctx.secrets,
        &crate::hosted_sftp::data_dir_for_state(&ctx.state_path),
    )?;
    let about = crate::deliver::About {
        namespace: namespace.to_string(),
        schedule: file_name.clone(),
        slot: now.to_zoned(jiff::tz::TimeZone::UTC),
        rows: 0,
    };
    // The receipt's SHA-256: hashed while the upload runs, except for email, which stores the
    // digest with the object and so needs it first.
    let path = file.to_path_buf();
    let mut hashing = Some(tokio::task::spawn_blocking(move || {
        crate::export::hash_file(&path)
    }));
    let early = match (spec.kind(), hashing.take()) {
        (Some(crate::api::TargetKind::Email(_)), Some(task)) => {
            Some(joined_digest(task.await, file, bytes)?)
        }
        (_, task) => {
            hashing = task;
            None
        }
    };
    let outgoing = crate::deliver::Outgoing {
        staged: file,
        file_name: &file_name,
        bytes,
        sha256: early.as_deref().unwrap_or(""),
        run_id: now.as_millisecond(),
        about: &about,
        sharing: crate::deliver::Sharing::Foreign,
    };
    let started = std::time::Instant::now();
    let mut receipt = match hashing {
        None => transport.deliver(&outgoing).await?,
        Some(task) => {
            let (receipt, digest) = tokio::join!(transport.deliver(&outgoing), task);
            let mut receipt = receipt?;
            receipt.sha256 = joined_digest(digest, file, bytes)?;
            receipt
        }
    };
    if let Some(sha) = &early {
        receipt.sha256.clone_from(sha);
    }
    let elapsed = started.elapsed();
    match output {
        ListOutput::Json => outln!("{}", serde_json::to_string_pretty(&receipt).expect("json")),
        ListOutput::Text => {
            outln!(
                "Delivered {} to deliverytarget/{name} in {:.2}s ({:.1} MiB/s)",
                file_name,
                elapsed.as_secs_f64(),
                bytes as f64 / 1048576.0 / elapsed.as_secs_f64().max(1e-9)
            );
            let value = serde_json::to_value(&receipt).expect("receipts serialize");
            for line in receipt_lines(&value) {
                outln!("  {line}");
            }
        }
    }
    Ok(0)
}
