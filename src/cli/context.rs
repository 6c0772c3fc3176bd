//! What every command shares: the state location, the secrets, the lock timeout, whether to
//! colour, and the small helpers around them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::secrets::FileSecrets;
use crate::state;
use crate::{Error, Result};

use super::args::Cli;

/// Shared per-invocation settings.
pub(super) struct Ctx {
    /// `--state`: a SQLite file or a `postgres://` URL.
    pub(super) state_path: PathBuf,
    /// `--secrets-dir`.
    pub(super) secrets: FileSecrets,
    lock_timeout: Duration,
    /// ANSI colours on standard output (plans).
    pub(super) color: bool,
    /// Escape codes on standard error: coloured logs, and the progress line (a spinner that
    /// redraws itself), so `--no-color` on a terminal gets plain lines too.
    pub(super) color_stderr: bool,
}

impl Ctx {
    /// The settings of this invocation.
    pub(super) fn from_cli(cli: &Cli) -> Result<Ctx> {
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

    /// Takes the state lock for `purpose`, waiting up to `--lock-timeout`.
    pub(super) async fn lock(&self, purpose: &str) -> Result<state::StateLock> {
        state::lock_state(&self.state_path, self.lock_timeout, purpose).await
    }
}

/// Whether to write ANSI colours to a stream: only to a terminal, and neither `--no-color`
/// nor `NO_COLOR` (any non-empty value, as no-color.org says) asks otherwise. Files and pipes
/// (`ferry run --once 2>log`) never get escape codes.
pub fn use_color(no_color_flag: bool, terminal: bool) -> bool {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    terminal && !no_color_flag && !no_color_env
}

/// Frees a large structure on a detached thread: a command about to exit should not spend
/// a tenth of a second returning ten thousand resources to the allocator.
pub(super) fn discard<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

pub(super) fn confirm() -> Result<bool> {
    out!("\nDo you want to apply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("<stdin>", e))?;
    Ok(line.trim() == "yes")
}
