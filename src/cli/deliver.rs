//! `deliver`: one file through an applied DeliveryTarget, by hand, with its receipt.

use std::path::Path;

use crate::api::Kind;
use crate::clock::now;
use crate::state::StateStore;
use crate::{Error, Result};

use super::args::*;
use super::context::*;
use super::view::receipt_lines;

/// The applied DeliveryTarget named by `deliverytarget/NAME` (with the opened state and its
/// name), or a usage error saying what to do. The state is opened for writing only when
/// `writes` (`rotate-password`); `deliver` records nothing.
pub(super) async fn applied_delivery_target(
    ctx: &Ctx,
    target: &str,
    namespace: &str,
    writes: bool,
) -> Result<(StateStore, String, crate::api::DeliveryTargetSpec)> {
    let (kind, name) = parse_resource(target, None)?;
    let Some(name) = name.filter(|_| kind == Kind::DeliveryTarget) else {
        return Err(Error::Usage(format!(
            "`{target}`: expected deliverytarget/NAME"
        )));
    };
    let store = if writes {
        StateStore::open(&ctx.state_path).await?
    } else {
        StateStore::open_read_only(&ctx.state_path).await?
    };
    let spec = store.delivery_target(namespace, &name)
        .await?
        .ok_or_else(|| {
            Error::Usage(format!(
                "DeliveryTarget `{name}` is not applied in namespace `{namespace}` of {}: run `ferry apply -f ...` first",
                store.location()
            ))
        })?;
    Ok((store, name, spec))
}

/// The hex SHA-256 of `file` from a hashing task, refused if the file changed size meanwhile.
pub(super) fn joined_digest(
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

pub(super) async fn deliver_cmd(
    ctx: &Ctx,
    target: &str,
    file: &Path,
    as_name: Option<String>,
    namespace: &str,
    output: ListOutput,
) -> Result<u8> {
    // A delivery by hand is recorded nowhere: the state is only read.
    let (_, name, spec) = applied_delivery_target(ctx, target, namespace, false).await?;
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
    let about = crate::deliver::About::by_hand(namespace, now.to_zoned(jiff::tz::TimeZone::UTC));
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
        delivery_key: None,
        stale_runs: &[],
        commit: crate::deliver::CommitHook::default(),
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
