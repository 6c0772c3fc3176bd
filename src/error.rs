//! The crate's one error type. Messages name what failed and never carry secret values.
//!
//! A cause is kept as a typed source (`Io`, `StateQuery`) where it cannot hold a credential,
//! and a variant of its own where callers must tell it apart (`SourceCancelled`, `Locked`,
//! `StalePlan`). Causes that can echo a credential (a PSA reply, an FTP server's echo, a
//! database URL in a connection error) are kept only as scrubbed text: a source object would
//! carry the unscrubbed value past every scrub to whoever walks the chain.

use std::path::PathBuf;

/// Every failure Ferry reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input files failed validation; each diagnostic is already located and rendered.
    #[error("{} validation error(s)", .0.len())]
    Invalid(Vec<crate::diagnostic::Diagnostic>),
    /// The input holds no resources (an empty directory or file, only comments): planned, it
    /// would delete everything applied, so it is refused unless `--allow-empty`, as kubectl
    /// refuses "no objects passed to apply". One diagnostic per path.
    #[error("no resources in {}", .0.iter().map(|d| d.file.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoResources(Vec<crate::diagnostic::Diagnostic>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The state store failed (a stored value it cannot read, a lost task, a failed
    /// connection: the message is scrubbed of the store's URL).
    #[error("state store: {0}")]
    State(String),
    /// A state store query failed; the database's own error is kept as the source, so a
    /// caller can tell e.g. a unique violation from a dropped connection.
    #[error("state store: {0}")]
    StateQuery(#[from] sqlx::Error),
    /// Another process holds the state lock.
    #[error("state is locked by another ferry process ({0}); try again when it has finished")]
    Locked(String),
    /// A saved plan no longer matches the state it was made against.
    #[error("{0}")]
    StalePlan(String),
    /// A referenced secret is missing or unreadable.
    #[error("{0}")]
    Secret(String),
    /// A data source (database, query) failed. Never carries credentials.
    #[error("source: {0}")]
    Source(String),
    /// A source stopped because the consumer of its rows went away (the file writer failed,
    /// or the run was cancelled): the consumer's error, if any, is the cause to report.
    #[error("source: export cancelled")]
    SourceCancelled,
    /// Writing a report file failed (e.g. a character the encoding cannot represent).
    #[error("export: {0}")]
    Export(String),
    /// Delivering a file to a target failed.
    #[error("delivery to {target}: {message}")]
    Delivery {
        /// The DeliveryTarget.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// `ferry keyscan` could not read a server's host keys (no delivery is involved).
    #[error("keyscan {address}: {message}")]
    Keyscan {
        /// `host:port`.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// A PSA (ConnectWise, Autotask) call failed after its retries. Never carries keys.
    #[error("{0}")]
    Psa(String),
    /// The command line asked for something that does not exist or does not fit.
    #[error("{0}")]
    Usage(String),
    /// The user declined the confirmation prompt.
    #[error("apply cancelled")]
    Cancelled,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same request can succeed later with nothing changed: a store, server or
    /// file system that fails now, or a state another writer changed meanwhile (a reconcile
    /// plans again). Invalid input, an empty input, a usage mistake or a declined prompt stay
    /// what they are until someone changes something.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Error::Invalid(_) | Error::NoResources(_) | Error::Usage(_) | Error::Cancelled
        )
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_failed_state_query_reads_as_before_and_keeps_the_database_error() {
        let e = Error::from(sqlx::Error::RowNotFound);
        assert_eq!(
            e.to_string(),
            format!("state store: {}", sqlx::Error::RowNotFound)
        );
        let source = e.source().expect("the sqlx error is kept");
        assert!(matches!(
            source.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::RowNotFound)
        ));
        assert!(e.is_transient());
    }

    #[test]
    fn a_cancelled_source_is_a_kind_of_its_own_not_a_message() {
        assert_eq!(
            Error::SourceCancelled.to_string(),
            "source: export cancelled"
        );
        assert!(!matches!(
            Error::Source("export cancelled".into()),
            Error::SourceCancelled
        ));
    }
}
