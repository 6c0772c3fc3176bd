//! Row sources. A source runs a query and streams typed rows in batches through a bounded
//! channel, so that decoding (here) and file writing (a format, on another thread) overlap
//! and memory stays flat however many rows there are.

pub mod params;
pub mod postgres;
pub mod sqlite;
pub mod statement;

pub use params::{
    BoundQuery, Dialect, KNOWN_PARAMS, Params, bind_named, referenced_params, rfc3339,
};

use tokio::sync::mpsc;

use crate::export::Value;
use crate::{Error, Result};

/// Rows per batch sent through the channel: large enough to amortise channel costs, small
/// enough to keep memory flat.
pub const BATCH_ROWS: usize = 1024;

/// What a source sends, in order: the columns once, then row batches.
#[derive(Debug)]
pub enum SourceEvent {
    /// Result column names, in query order.
    Columns(Vec<String>),
    /// Rows; each row has one value per column.
    Rows(Vec<Vec<Value>>),
}

/// Runs `query` against the database at `url` (sqlite:... or postgres://...) with the named
/// parameters bound, sending columns and row batches to `tx`. Returns the number of rows.
/// A closed receiver (the consumer failed or was cancelled) stops the query early.
pub async fn stream_sql(
    url: &str,
    query: &str,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    if url.starts_with("sqlite:") {
        sqlite::stream(url, query, params, tx).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::stream(url, query, params, tx).await
    } else {
        Err(Error::Source(format!(
            "unsupported database URL `{}`: expected sqlite:PATH or postgres://...",
            crate::validate::redact_url(url)
        )))
    }
}
