//! The `ferry` command line. Every command shares the global flags (`--state`,
//! `--secrets-dir`, ...), addresses resources kubectl-style (`kind/name`, `-n NS`) and exits
//! with a documented code: 0 success, 1 error, 2 changes present (`plan --detailed-exitcode`).
//!
//! One file per command family: [`args`] (the flags), [`context`] (what commands share),
//! [`plan`] (validate, plan, apply), [`run`] (run, controller, run-now, history), [`get`]
//! (get, next), [`psa`] (CustomerMapping run-now and history, psa-sim), [`keys`] (keygen,
//! keyscan, rotate-password), [`deliver`], and [`view`] (tables). This file parses the command
//! line and dispatches.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::api::Kind;
use crate::diagnostic::Diagnostic;
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

pub mod args;
mod check;
mod context;
mod deliver;
mod get;
mod keys;
mod plan;
mod psa;
mod run;
mod view;

pub use crate::clock::now;
pub use args::{Cli, Command, EnabledFilter, ListOutput, SftpArgs, SyncStatusFilter};
pub use context::use_color;

use args::parse_resource;
use context::Ctx;

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

async fn run(cli: Cli) -> Result<u8> {
    let ctx = Ctx::from_cli(&cli)?;
    match cli.command {
        Command::Validate {
            files,
            output,
            allow_empty,
        } => plan::validate_cmd(&files, output, allow_empty),
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
                plan::plan_cluster_cmd(&ctx, &files, output, detailed_exitcode, namespace).await
            } else {
                let loaded = plan::load_valid(&files, allow_empty)?;
                plan::plan_cmd(&ctx, loaded, output, detailed_exitcode, out, refresh).await
            }
        }
        Command::Apply {
            files,
            plan_file,
            auto_approve,
            allow_empty,
        } => match plan_file {
            Some(file) => plan::apply_saved(&ctx, &file).await,
            None if files.is_empty() => Err(Error::Usage(
                "give files to apply (-f PATH...) or a saved plan file".into(),
            )),
            None => plan::apply_files(&ctx, &files, auto_approve, allow_empty).await,
        },
        Command::Check {
            files,
            output,
            only,
            timeout,
        } => check::check_cmd(&ctx, &files, output, only.as_deref(), &timeout).await,
        Command::Next {
            resource,
            files,
            namespace,
            after,
            count,
            output,
        } => get::next_cmd(&resource, &files, &namespace, after, count, output),
        Command::Get {
            resource,
            name,
            namespace,
            all_namespaces,
            output,
            sync_status,
            usage_sync,
        } => {
            get::get_cmd(
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
        Command::Run(args) => run::run_cmd(&ctx, args).await,
        Command::Controller(args) => run::controller_cmd(&ctx, args).await,
        Command::ExecRun {
            run_id,
            secrets_mirror,
        } => run::exec_run_cmd(&ctx, run_id, &secrets_mirror).await,
        Command::RunNow {
            resource,
            namespace,
            slot,
            resend,
            billing,
        } => {
            if parse_resource(&resource, None)?.0 == Kind::CustomerMapping {
                psa::psa_run_now_cmd(&ctx, &resource, &namespace, billing).await
            } else if billing {
                Err(Error::Usage(
                    "--billing applies to customermapping/NAME only".into(),
                ))
            } else {
                run::run_now_cmd(&ctx, &resource, &namespace, slot, resend).await
            }
        }
        Command::History {
            resource,
            namespace,
            limit,
            receipts,
            output,
        } => run::history_cmd(&ctx, &resource, &namespace, limit, receipts, output).await,
        Command::Keygen {
            name,
            key_type,
            comment,
            namespace,
            force,
        } => keys::keygen_cmd(&ctx, &name, &key_type, comment, &namespace, force),
        Command::Keyscan { address, timeout } => keys::keyscan_cmd(&address, &timeout).await,
        Command::Deliver {
            target,
            file,
            as_name,
            namespace,
            output,
        } => deliver::deliver_cmd(&ctx, &target, &file, as_name, &namespace, output).await,
        Command::RotatePassword { target, namespace } => {
            keys::rotate_password_cmd(&ctx, &target, &namespace).await
        }
        Command::PsaSim { kind, listen, data } => psa::psa_sim_cmd(kind, listen, &data).await,
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
