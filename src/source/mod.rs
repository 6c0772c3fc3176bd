//! Row sources. A source runs a query and streams typed rows in batches through a bounded
//! channel, so that decoding (here) and file writing (a format, on another thread) overlap
//! and memory stays flat however many rows there are.

pub mod mysql;
pub mod params;
pub mod postgres;
pub mod rows;
pub mod split;
pub mod sqlite;
pub mod statement;

pub use params::{
    BoundQuery, Dialect, KNOWN_PARAMS, Params, bind_named, referenced_params, rfc3339,
};

pub use rows::{
    BATCH_ROWS, BatchFiller, BatchPool, Encoding, FieldWriter, RECORDS_CHUNK, RecordEncoder,
    Records, RecordsFiller, RowBatch, SourceEvent,
};

use tokio::sync::mpsc;

use crate::api::Partition;
use crate::{Error, Result};

/// The database URL of `sql`: its `url`, or the Secret `connectionSecretRef` names (in
/// `namespace`); `None` when it has neither.
pub fn database_url(
    sql: &crate::api::SqlSource,
    namespace: &str,
    secrets: &crate::secrets::FileSecrets,
) -> Result<Option<String>> {
    match (&sql.url, &sql.connection_secret_ref) {
        (Some(url), _) => Ok(Some(url.clone())),
        (None, Some(r)) => Ok(Some(
            secrets.require(namespace, r)?.expose_str()?.to_string(),
        )),
        (None, None) => Ok(None),
    }
}

/// Whether `url` names a MySQL or MariaDB server (`mysql://...` or `mariadb://...`, the same
/// protocol): the one place the schemes are listed, for the runs and for `ferry validate`.
pub fn is_mysql_url(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

/// The result columns of `query` on the database at `url`, prepared and never run (for
/// `ferry check`): a broken query, a missing table or a column of a type Ferry cannot export
/// fails here as it would fail the run.
pub async fn columns(url: &str, query: &str, params: &Params) -> Result<Vec<String>> {
    if url.starts_with("sqlite:") {
        sqlite::columns(url, query).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::columns(url, query, params).await
    } else if is_mysql_url(url) {
        mysql::columns(url, query, params).await
    } else {
        Err(Error::Source(format!(
            "unsupported database URL `{}`: expected sqlite:PATH, postgres://... or mysql://...",
            crate::redact::redact_url(url)
        )))
    }
}

/// Runs `query` against the database at `url` (sqlite:..., postgres://... or mysql://...) with
/// the named parameters bound, sending columns and row batches to `tx`. Returns the number of
/// rows.
/// A closed receiver (the consumer failed or was cancelled) stops the query early.
/// `partition` splits a PostgreSQL read over several sessions (see [`postgres`]).
pub async fn stream_sql(
    url: &str,
    query: &str,
    partition: Option<&Partition>,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    stream_sql_encoded(url, query, partition, params, tx, None).await
}

/// [`stream_sql`] for a consumer that can take its rows encoded (see [`Encoding`]): a
/// PostgreSQL COPY sends [`Records`]; other sources and paths send rows all the same.
pub async fn stream_sql_encoded(
    url: &str,
    query: &str,
    partition: Option<&Partition>,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
    encoding: Option<Encoding>,
) -> Result<u64> {
    if url.starts_with("sqlite:") {
        if partition.is_some() {
            return Err(Error::Source(
                "source.sql.partition is for PostgreSQL; a SQLite database is read by one \
                 connection: remove partition"
                    .into(),
            ));
        }
        sqlite::stream(url, query, params, tx).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::stream(url, query, partition, params, tx, encoding).await
    } else if is_mysql_url(url) {
        if partition.is_some() {
            return Err(Error::Source(
                "source.sql.partition is for PostgreSQL; a MySQL/MariaDB database is read by \
                 one connection: remove partition"
                    .into(),
            ));
        }
        mysql::stream(url, query, params, tx).await
    } else {
        Err(Error::Source(format!(
            "unsupported database URL `{}`: expected sqlite:PATH, postgres://... or mysql://...",
            crate::redact::redact_url(url)
        )))
    }
}
