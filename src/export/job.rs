//! One export: the source streams rows on the async runtime while the format writes them on a
//! blocking thread; a bounded channel between them keeps memory flat and both cores busy. The
//! file is written under a temporary name and renamed only when complete.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

pub use super::format::select_columns;
use super::{FormatContext, Value, hash_file, writer_for};
use crate::api::{Column, Partition, ReportFormat};
use crate::source::{self, Params, SourceEvent};
use crate::{Error, Result};

/// Everything one export needs.
pub struct ExportJob<'a> {
    /// Database URL (already resolved from its Secret).
    pub url: &'a str,
    /// The query.
    pub query: &'a str,
    /// How a PostgreSQL read is split over several sessions, if it is.
    pub partition: Option<&'a Partition>,
    /// Window and slot parameters.
    pub params: Params,
    /// Selected columns (empty: every column of the query).
    pub columns: &'a [Column],
    /// File format.
    pub format: &'a ReportFormat,
    /// Title, generation time, zone.
    pub context: FormatContext,
    /// Where the finished file goes.
    pub path: PathBuf,
    /// Called with the running row count (for progress display), every batch.
    pub progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

/// What an export produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOutput {
    /// Rows written.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Runs an export to `job.path`. On any failure nothing is left at `job.path`.
pub async fn export(job: ExportJob<'_>) -> Result<ExportOutput> {
    // UTF-8 CSV rows are encoded by the source where it can (PostgreSQL's COPY). Decided
    // before the writer starts, so that a failure here leaves no file behind.
    let encoding = super::record_encoding(job.format, &job.context, job.columns)?;
    let partial = partial_path(&job.path);
    let (tx, rx) = mpsc::channel::<SourceEvent>(4);
    let format = job.format.clone();
    let selection = job.columns.to_vec();
    let context = job.context.clone();
    let writer_path = partial.clone();
    let progress = job.progress;
    let writer = tokio::task::spawn_blocking(move || {
        write_file(rx, &format, &selection, &context, &writer_path, progress)
    });
    let read =
        source::stream_sql_encoded(job.url, job.query, job.partition, &job.params, tx, encoding)
            .await;
    let written = writer
        .await
        .map_err(|e| Error::Export(format!("the writer thread failed: {e}")))?;
    // A writer failure makes the source stop on a closed channel (then the writer's error is
    // the cause); a source failure leaves the writer without input (then the source's is).
    let result = match (read, written) {
        (Err(Error::SourceCancelled), Err(w)) => Err(w),
        (Err(e), _) => Err(e),
        (Ok(_), Err(w)) => Err(w),
        (Ok(_), Ok(out)) => Ok(out),
    };
    match result {
        Ok((rows, digest)) => {
            let (sha, bytes) = match digest {
                Some(d) => (
                    d,
                    std::fs::metadata(&partial)
                        .map_err(|e| Error::io(&partial, e))?
                        .len(),
                ),
                None => hash_file(&partial)?,
            };
            std::fs::rename(&partial, &job.path).map_err(|e| Error::io(&job.path, e))?;
            Ok(ExportOutput {
                rows,
                bytes,
                sha256: hex::encode(sha),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// The temporary name a file is written under.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

type Written = (u64, Option<[u8; 32]>);

fn write_file(
    mut rx: mpsc::Receiver<SourceEvent>,
    format: &ReportFormat,
    selection: &[Column],
    context: &FormatContext,
    path: &Path,
    progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
) -> Result<Written> {
    let mut writer = writer_for(format, path, context)?;
    let mut picks: Option<Vec<usize>> = None;
    let mut rows = 0u64;
    let mut picked: Vec<Value> = Vec::new();
    while let Some(event) = rx.blocking_recv() {
        let indices = match event {
            SourceEvent::Columns(names) => {
                let (specs, indices) = select_columns(&names, selection)?;
                writer.begin(&specs)?;
                picks = Some(indices);
                continue;
            }
            _ => picks
                .as_deref()
                .ok_or_else(|| Error::Export("the source sent rows before its columns".into()))?,
        };
        match event {
            SourceEvent::Columns(_) => {}
            SourceEvent::Rows(mut batch) => {
                let identity = indices.iter().enumerate().all(|(i, &j)| i == j);
                // The rows stay in the batch: dropped, it may go back to the source to be
                // refilled (see `source::BatchPool`).
                for row in batch.iter_mut() {
                    rows += 1;
                    if identity && indices.len() == row.len() {
                        writer.row(rows, row)?;
                    } else {
                        // The picked values are moved out and back (`columns` names each
                        // column once): no copy of their text.
                        picked.clear();
                        picked.extend(indices.iter().map(|&i| std::mem::take(&mut row[i])));
                        writer.row(rows, &picked)?;
                        for (&i, value) in indices.iter().zip(picked.drain(..)) {
                            row[i] = value;
                        }
                    }
                }
            }
            // Encoded by the source with `record_encoding`, for the selected columns.
            SourceEvent::Records(records) => {
                writer.records(&records.bytes)?;
                rows += records.rows;
            }
        }
        if let Some(p) = &progress {
            p(rows);
        }
    }
    if picks.is_none() {
        return Err(Error::Export(
            "the source ended without sending its columns".into(),
        ));
    }
    let digest = writer.finish()?;
    Ok((rows, digest))
}
