//! `ferry check`: the resources of the files checked against what they point at.

use std::path::PathBuf;

use super::args::{CheckOutput, parse_flag_duration, parse_resource};
use super::context::Ctx;
use super::plan::load_valid;
use crate::check::{CheckOptions, check_all, render};
use crate::{Error, Result};

/// Runs every check of the resources in `files` (none: those applied to the state); exit 0
/// when all pass, 1 otherwise.
pub(super) async fn check_cmd(
    ctx: &Ctx,
    files: &[PathBuf],
    output: CheckOutput,
    only: Option<&str>,
    timeout: &str,
) -> Result<u8> {
    let timeout = parse_flag_duration("--timeout", timeout)?;
    if timeout.is_zero() {
        return Err(Error::Usage("--timeout must be greater than zero".into()));
    }
    let only = match only {
        Some(s) => match parse_resource(s, None)? {
            (kind, Some(name)) => Some((kind, name)),
            (_, None) => {
                return Err(Error::Usage(format!(
                    "--only {s}: name the resource as KIND/NAME"
                )));
            }
        },
        None => None,
    };
    let resources = if files.is_empty() {
        // The applied resources, located as `state:Kind/namespace/name`.
        let store = crate::state::StateStore::open_read_only(&ctx.state_path).await?;
        crate::check::periodic::applied(&store.snapshot().await?)
    } else {
        load_valid(files, false)?
    };
    let options = CheckOptions {
        timeout,
        only,
        hosted_sftp_data: crate::hosted_sftp::data_dir_for_state(&ctx.state_path),
        now: crate::clock::now()?,
    };
    let results = check_all(&resources, &ctx.secrets, &options).await?;
    out!(
        "{}",
        match output {
            CheckOutput::Text => render::text(&results),
            CheckOutput::Json => render::json(&results) + "\n",
            CheckOutput::Markdown => render::markdown(&results),
        }
    );
    let failed = results
        .iter()
        .any(|r| r.status == crate::check::Status::Failed);
    Ok(u8::from(failed))
}
