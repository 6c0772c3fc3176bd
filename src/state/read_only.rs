//! The state as the commands that only read it see it (`plan`, `get`, `history`, `deliver`):
//! never created, never migrated, never written, so reviewing a change leaves no trace.
//! - A missing state reads as an empty one, held in memory (no lineage, serial 0): a plan
//!   made against it says so, and applying that plan creates the state.
//! - An existing SQLite state is opened read-only: its bytes stay as they were. (SQLite keeps
//!   a WAL database's `-wal`/`-shm` companions while any connection has it open; when none
//!   exist and the directory is read-only, the file is opened as immutable instead.)
//! - One written by an older ferry is read from a private copy, migrated and removed when
//!   the store is dropped. PostgreSQL runs every transaction `READ ONLY`; an older schema
//!   there is an error that says to apply first.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions};

use super::schema::MIGRATIONS;
use super::{
    Backend, Scratch, StateStore, display_location, is_postgres_url, newer_schema, postgres_pool,
    postgres_pool_options, sqlite_pool, work_dir_for,
};
use crate::{Error, Result};

impl StateStore {
    /// Opens the state at `path` for reading only (see the module's doc).
    pub async fn open_read_only(path: &Path) -> Result<StateStore> {
        sqlx::any::install_default_drivers();
        let location = display_location(path);
        let work_dir = work_dir_for(path);
        if is_postgres_url(path) {
            return open_postgres(path, location, work_dir).await;
        }
        if std::fs::symlink_metadata(path).is_err() {
            return empty(location, work_dir).await;
        }
        let pool = sqlite_read_only(path, &location).await?;
        let version = schema_version(&pool, Backend::Sqlite).await?;
        if version == Some(MIGRATIONS.len()) {
            return Ok(StateStore {
                pool,
                backend: Backend::Sqlite,
                location,
                work_dir,
                scratch: None,
            });
        }
        if let Some(v) = version.filter(|&v| v > MIGRATIONS.len()) {
            return Err(newer_schema(&location, v));
        }
        // Written by an older ferry: read a migrated private copy, the original untouched.
        let scratch = scratch_dir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let copy = scratch.0.join("state.db");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM INTO '{}'",
            copy.to_string_lossy().replace('\'', "''")
        )))
        .execute(&pool)
        .await
        .map_err(|e| Error::State(format!("{location}: copying an older state: {e}")))?;
        pool.close().await;
        let mut store = StateStore::open(&copy).await?;
        store.location = location;
        store.work_dir = work_dir;
        store.scratch = Some(Arc::new(scratch));
        Ok(store)
    }
}

/// A read-only pool on an existing SQLite state.
async fn sqlite_read_only(path: &Path, location: &str) -> Result<AnyPool> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10));
    let connect = |options: &SqliteConnectOptions| {
        let url = options.to_url_lossy();
        async move {
            let options = AnyConnectOptions::from_url(&url)?;
            sqlite_pool(2).connect_with(options).await
        }
    };
    let opened = match connect(&options).await {
        Ok(pool) => probe(pool).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok(pool) => Ok(pool),
        // A WAL state whose companions do not exist and cannot be created (a read-only
        // directory): nobody can be writing it, so it is read as immutable.
        Err(e) if !wal_companion(path).exists() => {
            tracing::debug!("{location}: read-only open failed ({e}); reading it as immutable");
            let immutable = async { probe(connect(&options.clone().immutable(true)).await?).await };
            immutable
                .await
                .map_err(|_| Error::State(format!("{location}: {e}")))
        }
        Err(e) => Err(Error::State(format!("{location}: {e}"))),
    }
}

/// The pool, once a first read went through (opening is lazy in SQLite).
async fn probe(pool: AnyPool) -> std::result::Result<AnyPool, sqlx::Error> {
    sqlx::query("SELECT count(*) FROM sqlite_master")
        .execute(&pool)
        .await?;
    Ok(pool)
}

/// `state.db-wal`.
fn wal_companion(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The state's schema version; `None` when it has no `meta` table yet (a file or schema no
/// ferry has finished creating).
async fn schema_version(pool: &AnyPool, backend: Backend) -> Result<Option<usize>> {
    let has_meta = match backend {
        Backend::Sqlite => {
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        }
        Backend::Postgres => {
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'meta'"
        }
    };
    let tables: i64 = sqlx::query_scalar(has_meta).fetch_one(pool).await?;
    if tables == 0 {
        return Ok(None);
    }
    let version: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
            .fetch_optional(pool)
            .await?;
    Ok(Some(version.and_then(|v| v.parse().ok()).unwrap_or(0)))
}

/// An empty state in memory: migrated, then without a lineage (nothing was ever applied).
async fn empty(location: String, work_dir: PathBuf) -> Result<StateStore> {
    let options = AnyConnectOptions::from_str("sqlite::memory:")?;
    // One connection for the store's whole life: each in-memory connection is its own database.
    let pool = AnyPoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    let store = StateStore {
        pool,
        backend: Backend::Sqlite,
        location,
        work_dir,
        scratch: None,
    };
    store.migrate().await?;
    sqlx::query("UPDATE meta SET value = '' WHERE key = 'lineage'")
        .execute(&store.pool)
        .await?;
    Ok(store)
}

/// PostgreSQL with every transaction read-only; an empty in-memory state when the schema
/// holds no state yet.
async fn open_postgres(path: &Path, location: String, work_dir: PathBuf) -> Result<StateStore> {
    let read_only = postgres_pool_options(4).after_connect(|conn, _| {
        Box::pin(async move {
            use sqlx::Executor;
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .await?;
            Ok(())
        })
    });
    let pool = postgres_pool(path, &location, read_only).await?;
    match schema_version(&pool, Backend::Postgres).await? {
        None => {
            pool.close().await;
            empty(location, work_dir).await
        }
        Some(v) if v == MIGRATIONS.len() => Ok(StateStore {
            pool,
            backend: Backend::Postgres,
            location,
            work_dir,
            scratch: None,
        }),
        Some(v) if v > MIGRATIONS.len() => Err(newer_schema(&location, v)),
        Some(v) => Err(Error::State(format!(
            "{location} has state schema {v}, written by an older ferry; this one reads schema \
             {}: run `ferry apply` (or `ferry run`) once to upgrade it, then plan again",
            MIGRATIONS.len()
        ))),
    }
}

/// A new private (0700) directory under the system's temporary directory.
fn scratch_dir() -> std::io::Result<Scratch> {
    let name = format!(
        "ferry-state-{}",
        hex::encode(crate::fsutil::random_bytes::<8>())
    );
    let dir = std::env::temp_dir().join(name);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&dir)?;
    Ok(Scratch(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_state_written_by_an_older_ferry_is_read_from_a_migrated_copy_left_untouched() {
        let dir = std::env::temp_dir().join(format!("ferry-ro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        runtime().block_on(async {
            // A schema-3 state: the PSA tables came with schema 4.
            let store = StateStore::open(&path).await.unwrap();
            let lineage = store.snapshot().await.unwrap().lineage;
            sqlx::raw_sql(
                "DROP TABLE psa_tickets; DROP TABLE psa_syncs; \
                 UPDATE meta SET value = '3' WHERE key = 'schema_version'",
            )
            .execute(store.pool())
            .await
            .unwrap();
            store.pool().close().await;
            let before = std::fs::read(&path).unwrap();

            let reader = StateStore::open_read_only(&path).await.unwrap();
            let scratch = reader.scratch.as_ref().expect("read from a copy").0.clone();
            assert!(scratch.exists());
            assert_eq!(reader.location(), path.display().to_string());
            assert_eq!(reader.snapshot().await.unwrap().lineage, lineage);
            let syncs: i64 = sqlx::query_scalar("SELECT count(*) FROM psa_syncs")
                .fetch_one(reader.pool())
                .await
                .unwrap();
            assert_eq!(syncs, 0, "the copy has the new tables");
            reader.pool().close().await;
            drop(reader);

            assert!(!scratch.exists(), "the copy is removed with the store");
            assert_eq!(std::fs::read(&path).unwrap(), before);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_state_reads_as_an_empty_one_without_a_lineage_and_is_not_created() {
        let path = std::env::temp_dir()
            .join(format!("ferry-ro-missing-{}", std::process::id()))
            .join("state.db");
        runtime().block_on(async {
            let reader = StateStore::open_read_only(&path).await.unwrap();
            let actual = reader.snapshot().await.unwrap();
            assert_eq!((actual.lineage.as_str(), actual.serial), ("", 0));
            assert!(actual.resources.is_empty());
            assert_eq!(reader.secret_hash_key().await.unwrap().len(), 32);
        });
        assert!(!path.parent().unwrap().exists());
    }
}
