//! Operations endpoints: Prometheus metrics, liveness and readiness, and the log format.
//!
//! - A process-wide metrics registry. The runner, the daemon and the PSA syncer record into it
//!   with plain functions ([`run_finished`], [`slot_missed`], [`delivery_finished`],
//!   [`psa_sync_finished`], ...), each an in-memory update under a short lock: cheap, no I/O,
//!   never a panic. [`render`] writes it in the Prometheus text exposition format 0.0.4.
//! - [`serve`]: a small HTTP/1.1 server answering `GET /metrics`, `GET /healthz` (the process
//!   loop ticked its [`Health`] heartbeat recently) and `GET /readyz` (the daemon applied its
//!   files; the controller leads or stands by).
//! - [`init_logging`]: human-readable or JSON log lines on standard error.
//!
//! Series are kept for the life of the process: a schedule or mapping deleted while Ferry runs
//! keeps its last values until the next restart (as Prometheus client libraries do).

mod exposition;
mod health;
mod metrics;
mod server;

pub use health::{DEFAULT_STALL_LIMIT, Health, Probe};
pub use metrics::{
    RUN_DURATION_BUCKETS, alert_sent, check_finished, delivery_finished, delivery_waiting,
    psa_sync_finished, render, run_finished, run_skipped, run_started, runs_queued,
    sftp_connection_refused, sftp_connections, sftp_lockout, sftp_login,
    sftp_session_limit_exceeded, sftp_unauthenticated_closed, slot_missed,
};
pub use server::{METRICS_CONTENT_TYPE, ObserveServer, serve};

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the event's
    /// fields), for log collectors.
    Json,
}

/// Installs the global log subscriber (once; later calls do nothing): level from `-v` (warn,
/// info, debug, trace) unless `FERRY_LOG` holds a filter, lines on standard error in `format`,
/// with ANSI colours only when `ansi` (see `cli::use_color`: a file or pipe never gets them).
pub fn init_logging(verbose: u8, format: LogFormat, ansi: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // suppaftp traces every FTP command it sends, the password of `PASS` included: never
        // let those records through, whatever the level asked for.
        .add_directive("suppaftp=off".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
