//! The state store: per resource the applied spec, resolved external ids and status, plus a
//! lineage id and a serial that increments on every apply, and the run and PSA ledgers. SQLite
//! on a local volume by default; PostgreSQL (`--state postgres://...`) when several controller
//! replicas share it. A lock (file, or PostgreSQL advisory lock) keeps two applies from
//! interleaving, and the serial is compared and set in the commit itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyPool;
use sqlx::any::{Any, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Row, Transaction};

use crate::api::{Kind, ResourceKey, Spec};
use crate::load::Meta;
use crate::{Error, Result};

mod lazy_json;
mod read_only;
mod schema;

pub use lazy_json::LazyJson;

use schema::{MIGRATIONS, postgres_dialect};

/// A resource as last applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredResource {
    /// Kind, namespace, name.
    pub key: ResourceKey,
    /// Incremented whenever the spec, metadata or a secret changes.
    pub generation: i64,
    /// The applied spec, canonical JSON (what plans diff and the store keeps), parsed only
    /// when read.
    pub spec: LazyJson,
    /// The same spec as its type, decoded at most once per read and only when asked for
    /// ([`StoredResource::decoded`]): a plan of 10,000 resources decodes only those it
    /// describes. Not serialized, not part of equality.
    #[serde(skip)]
    pub(crate) typed: SpecCache,
    /// Labels and annotations.
    pub meta: Meta,
    /// Keyed hashes of referenced secret values by field path (`None`: missing at apply).
    pub secret_digests: BTreeMap<String, Option<String>>,
    /// Ids resolved in external systems (PSA company id, ...).
    pub external_ids: Value,
    /// Observed status (conditions, last run, ...), parsed only when read.
    pub status: LazyJson,
    /// When first applied (RFC 3339).
    pub created_at: String,
    /// When last applied (RFC 3339).
    pub updated_at: String,
}

/// A stored resource's decoded spec (or why it could not be decoded), filled on first use.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecCache(std::sync::OnceLock<std::result::Result<Spec, String>>);

/// A cache says nothing about the resource: two resources are equal by their fields.
impl PartialEq for SpecCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl StoredResource {
    /// The applied spec as its type, decoded once. An error only for a row this version
    /// cannot read (written by another version of Ferry).
    pub fn decoded(&self) -> Result<&Spec> {
        self.typed
            .0
            .get_or_init(|| {
                Spec::from_json_text(self.key.kind, self.spec.text()).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::State(format!("stored {}: {e}", self.key)))
    }

    /// The applied spec as its type; `None` for a row this version cannot read, which
    /// callers treat as absent.
    pub fn typed_spec(&self) -> Option<&Spec> {
        self.decoded().ok()
    }

    /// The observed status as a JSON object to update: empty when none was written yet.
    pub fn status_object(&self) -> Value {
        if self.status.is_object() {
            self.status.to_value()
        } else {
            Value::Object(Default::default())
        }
    }
}

/// The whole actual state at one serial.
#[derive(Clone, Debug, Default)]
pub struct ActualState {
    /// Identifies this state's history; a saved plan only applies to the lineage it was made for.
    pub lineage: String,
    /// Incremented by every apply that changed something.
    pub serial: u64,
    /// Applied resources.
    pub resources: BTreeMap<ResourceKey, StoredResource>,
    /// Hosted SFTP users that have a generated password (names only; the hashes stay in the
    /// store, see [`StateStore::password_hashes`]).
    pub password_users: BTreeSet<String>,
}

/// A write to apply in one transaction.
#[derive(Clone, Debug)]
pub enum StateWrite {
    /// Insert or replace a resource (generation and timestamps are handled here).
    Upsert(Box<StoredResource>),
    /// Remove a resource.
    Delete(ResourceKey),
    /// Keep the Argon2id hash of a hosted SFTP user's newly generated password.
    SetPassword {
        /// Login user.
        user: String,
        /// Argon2id PHC string.
        hash: String,
    },
    /// Forget a hosted SFTP user's password (the user is gone or now logs in with a key).
    DropPassword(String),
}

/// Which database holds the state: the dialects differ in a few places only (schema types,
/// snapshot isolation, locks), so the queries are shared and these spots ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file on a local volume (the default).
    Sqlite,
    /// A PostgreSQL database that several controller replicas share.
    Postgres,
}

/// Whether `--state` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(state: &Path) -> bool {
    let text = state.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// Where files that belong next to the state live (staging, hosted SFTP data): the SQLite
/// file's directory, or for a PostgreSQL state `FERRY_WORK_DIR` (default `.ferry`), a local
/// volume of each replica.
pub fn work_dir_for(state: &Path) -> PathBuf {
    if is_postgres_url(state) {
        match std::env::var_os("FERRY_WORK_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(".ferry"),
        }
    } else {
        state.parent().unwrap_or(Path::new(".")).to_path_buf()
    }
}

/// The state as messages name it: the file, or the PostgreSQL URL without its password.
pub fn display_location(state: &Path) -> String {
    let text = state.to_string_lossy();
    if !is_postgres_url(state) {
        return state.display().to_string();
    }
    // Query parameters may carry a password too (`password=`): keep only their names.
    match text.split_once('?') {
        Some((base, query)) => {
            let names: Vec<&str> = query
                .split('&')
                .map(|kv| kv.split('=').next().unwrap_or(""))
                .collect();
            format!("{}?{}", crate::redact::redact_url(base), names.join("&"))
        }
        None => crate::redact::redact_url(&text),
    }
}

/// The state store.
#[derive(Clone, Debug)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
    location: String,
    work_dir: PathBuf,
    /// The private copy a read-only open of an older state reads from, removed with the
    /// store's last clone.
    scratch: Option<std::sync::Arc<Scratch>>,
}

/// Pool options for a PostgreSQL state: `max_connections`, waiting up to 30 s for one.
fn postgres_pool_options(max_connections: u32) -> AnyPoolOptions {
    without_reaper(
        AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30)),
    )
}

/// No idle timeout and no maximum lifetime, so sqlx starts no pool maintenance task. Its
/// reaper loops `for _ in 0..num_idle()`, and sqlx 0.9.0's `num_idle` can wrap to `usize::MAX`
/// for a moment when a connection is taken as it is returned (transact-rs/sqlx#3645, fixed by
/// #4289 after 0.9.0): a reaper that reads it then spins a worker thread for good and the
/// process hangs. Seen here once, a `ferry get` at 100% CPU for minutes. Ferry's pools are
/// small and its connections are meant to last, so nothing is lost without the reaper.
fn without_reaper(options: AnyPoolOptions) -> AnyPoolOptions {
    options.idle_timeout(None).max_lifetime(None)
}

/// Connects to the PostgreSQL state at `path` with `options`; errors name the state without
/// its password.
async fn postgres_pool(path: &Path, location: &str, options: AnyPoolOptions) -> Result<AnyPool> {
    let url = path.to_string_lossy().into_owned();
    let connect = AnyConnectOptions::from_str(&url)
        .map_err(|e| Error::State(format!("{location}: {}", scrub_url(&e, &url))))?;
    options
        .connect_with(connect)
        .await
        .map_err(|e| Error::State(format!("{location}: {}", scrub_url(&e, &url))))
}

/// The error for a state whose schema is newer than this ferry's.
fn newer_schema(location: &str, version: usize) -> Error {
    Error::State(format!(
        "{location} was written by a newer ferry (schema {version}); upgrade ferry"
    ))
}

/// Pool options for a SQLite state: every connection waits up to 10 s for another writer
/// (the Any driver does not carry the typed driver's busy timeout).
fn sqlite_pool(max_connections: u32) -> AnyPoolOptions {
    without_reaper(AnyPoolOptions::new())
        .max_connections(max_connections)
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                Ok(())
            })
        })
}

/// A private directory, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PostgreSQL advisory locks on the state are keyed by this and the state's schema (several
/// states may share a database, one schema each): this one for `ferry apply`/`run`/`controller`,
/// the next for migrations.
const PG_LOCK_KEY: i32 = 0x4645_5259; // "FERY"

impl StateStore {
    /// Opens (creating when missing) the state: a SQLite file at `path`, or the PostgreSQL
    /// database of a `postgres://` URL (tables created on first use).
    pub async fn open(path: &Path) -> Result<StateStore> {
        sqlx::any::install_default_drivers();
        let location = display_location(path);
        let work_dir = work_dir_for(path);
        if is_postgres_url(path) {
            let pool = postgres_pool(path, &location, postgres_pool_options(8)).await?;
            let store = StateStore {
                pool,
                backend: Backend::Postgres,
                location,
                work_dir,
                scratch: None,
            };
            store.migrate().await?;
            return Ok(store);
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // The file is created and switched to WAL once with the typed driver (the journal mode
        // is persistent); the shared pool then goes through the Any driver.
        let typed = SqliteConnectOptions::from_str("sqlite:")
            .map_err(Error::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let url = typed.to_url_lossy();
        {
            use sqlx::Connection;
            let conn = typed
                .connect()
                .await
                .map_err(|e| Error::State(format!("{location}: {e}")))?;
            let _ = conn.close().await;
        }
        let options = AnyConnectOptions::from_url(&url)
            .map_err(|e| Error::State(format!("{location}: {e}")))?;
        let pool = sqlite_pool(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::State(format!("{location}: {e}")))?;
        // The state holds the key of the secret digests: owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let store = StateStore {
            pool,
            backend: Backend::Sqlite,
            location,
            work_dir,
            scratch: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The state as messages name it (a PostgreSQL URL without its password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where the files that belong next to the state live (staging, hosted SFTP data).
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for modules that keep their own tables (run ledger, ...).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let dialect = |m: &str| match self.backend {
            Backend::Sqlite => m.to_string(),
            Backend::Postgres => postgres_dialect(m),
        };
        if self.backend == Backend::Postgres {
            // Replicas starting together: one creates the tables, the others wait.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(PG_LOCK_KEY + 1)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(dialect(MIGRATIONS[0])))
            .execute(&mut *tx)
            .await?;
        let version: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
                .fetch_optional(&mut *tx)
                .await?;
        let version: usize = version.and_then(|v| v.parse().ok()).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(newer_schema(&self.location, version));
        }
        for m in &MIGRATIONS[version.max(1)..] {
            // Later migrations are static SQL from this file.
            sqlx::raw_sql(sqlx::AssertSqlSafe(dialect(m)))
                .execute(&mut *tx)
                .await?;
        }
        set_meta(&mut tx, "schema_version", &MIGRATIONS.len().to_string()).await?;
        if get_meta(&mut tx, "lineage").await?.is_none() {
            let lineage = hex::encode(crate::fsutil::random_bytes::<16>());
            set_meta(&mut tx, "lineage", &lineage).await?;
            set_meta(&mut tx, "serial", "0").await?;
            let key = hex::encode(crate::fsutil::random_bytes::<32>());
            set_meta(&mut tx, "secret_hash_key", &key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// This state's lineage: random, set when the state was created, the same for all its
    /// life. It tells one Ferry installation's deliveries from another's (an email's
    /// Message-ID derives from it).
    pub async fn lineage(&self) -> Result<String> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'lineage'")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or_default(),
        )
    }

    /// The key of the keyed hashes kept for secret values.
    pub async fn secret_hash_key(&self) -> Result<Vec<u8>> {
        let v: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'secret_hash_key'")
            .fetch_one(&self.pool)
            .await?;
        hex::decode(v).map_err(|e| Error::State(format!("corrupt secret hash key: {e}")))
    }

    /// Reads the whole state in one consistent snapshot.
    pub async fn snapshot(&self) -> Result<ActualState> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // One snapshot for the three reads, as SQLite's transaction gives.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let (lineage, serial) = read_version(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT kind, namespace, name, generation, spec, meta, secret_digests, external_ids, \
             status, created_at, updated_at FROM resources",
        )
        .fetch_all(&mut *tx)
        .await?;
        let password_users: Vec<String> =
            sqlx::query_scalar(r#"SELECT "user" FROM hosted_sftp_passwords"#)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        // Decoding the JSON columns dominates: spread it over the cores.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = rows.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<StoredResource>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = rows
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(row_to_resource).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a state decoding thread panicked"))
                .collect()
        });
        let mut resources = BTreeMap::new();
        for part in parts {
            for r in part? {
                resources.insert(r.key.clone(), r);
            }
        }
        Ok(ActualState {
            lineage,
            serial,
            resources,
            password_users: password_users.into_iter().collect(),
        })
    }

    /// One resource.
    pub async fn get(&self, key: &ResourceKey) -> Result<Option<StoredResource>> {
        let row = sqlx::query(
            "SELECT kind, namespace, name, generation, spec, meta, secret_digests, external_ids, \
             status, created_at, updated_at FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3",
        )
        .bind(key.kind.as_str())
        .bind(&key.namespace)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| row_to_resource(&r)).transpose()
    }

    /// The applied spec of DeliveryTarget `namespace/name`, if it is applied: what runs,
    /// alerts and hand deliveries send through.
    pub async fn delivery_target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::api::DeliveryTargetSpec>> {
        let key = ResourceKey::new(Kind::DeliveryTarget, namespace, name);
        let Some(stored) = self.get(&key).await? else {
            return Ok(None);
        };
        match stored.decoded()? {
            Spec::DeliveryTarget(spec) => Ok(Some((**spec).clone())),
            _ => Ok(None),
        }
    }

    /// Applies `writes` atomically if the state is still at `lineage`/`serial`; increments the
    /// serial when anything was written. Returns the new serial.
    pub async fn commit(&self, lineage: &str, serial: u64, writes: &[StateWrite]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let (current_lineage, current_serial) = read_version(&mut tx).await?;
        let stale = |now: u64| {
            Error::StalePlan(format!(
                "the state changed since the plan was made (serial {serial} then, {now} now): \
                 another apply ran in between; run `ferry plan` again and review the new plan"
            ))
        };
        if current_lineage != lineage {
            return Err(Error::StalePlan(format!(
                "the plan was made for state lineage {lineage}, but {} has lineage {current_lineage}: \
                 it belongs to another state; run `ferry plan` again against this state",
                self.location
            )));
        }
        if current_serial != serial {
            return Err(stale(current_serial));
        }
        if writes.is_empty() {
            tx.commit().await?;
            return Ok(serial);
        }
        // Compare and set, before any write: two applies that read the same serial (possible
        // in PostgreSQL's read committed) cannot both move it; the second waits for the
        // first's row lock, then finds the serial moved and writes nothing.
        let next = serial + 1;
        let moved = sqlx::query("UPDATE meta SET value = $1 WHERE key = 'serial' AND value = $2")
            .bind(next.to_string())
            .bind(serial.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved != 1 {
            let (_, now) = read_version(&mut tx).await?;
            return Err(stale(now));
        }
        for w in writes {
            match w {
                StateWrite::Upsert(r) => {
                    sqlx::query(
                        "INSERT INTO resources (kind, namespace, name, generation, spec, meta, \
                         secret_digests, external_ids, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (kind, namespace, name) DO UPDATE SET \
                         generation = excluded.generation, spec = excluded.spec, meta = excluded.meta, \
                         secret_digests = excluded.secret_digests, external_ids = excluded.external_ids, \
                         status = excluded.status, updated_at = excluded.updated_at",
                    )
                    .bind(r.key.kind.as_str())
                    .bind(&r.key.namespace)
                    .bind(&r.key.name)
                    .bind(r.generation)
                    .bind(r.spec.text())
                    .bind(json(&r.meta))
                    .bind(json(&r.secret_digests))
                    .bind(r.external_ids.to_string())
                    .bind(r.status.text())
                    .bind(&r.created_at)
                    .bind(&r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                StateWrite::Delete(key) => {
                    sqlx::query(
                        "DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3",
                    )
                    .bind(key.kind.as_str())
                    .bind(&key.namespace)
                    .bind(&key.name)
                    .execute(&mut *tx)
                    .await?;
                }
                StateWrite::SetPassword { user, hash } => {
                    store_password(&mut tx, user, hash).await?;
                }
                StateWrite::DropPassword(user) => {
                    sqlx::query(r#"DELETE FROM hosted_sftp_passwords WHERE "user" = $1"#)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                    bump_credentials(&mut tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(next)
    }

    /// Replaces the status of one resource (runs and syncs report here) without touching the
    /// serial: status is observed state, not desired state.
    pub async fn set_status(&self, key: &ResourceKey, status: &Value) -> Result<()> {
        sqlx::query(
            "UPDATE resources SET status = $1 WHERE kind = $2 AND namespace = $3 AND name = $4",
        )
        .bind(status.to_string())
        .bind(key.kind.as_str())
        .bind(&key.namespace)
        .bind(&key.name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl StateStore {
    /// The Argon2id hashes of the hosted SFTP users' generated passwords, by user.
    pub async fn password_hashes(&self) -> Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as(r#"SELECT "user", hash FROM hosted_sftp_passwords"#)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Replaces the password hash of one hosted SFTP user (`ferry rotate-password`). Not an
    /// apply: the serial stays, so saved plans remain valid; the credentials counter moves so a
    /// running server picks the new hash up.
    pub async fn rotate_password(&self, user: &str, hash: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        store_password(&mut tx, user, hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The serial and the credentials counter, cheaply: a running daemon re-reads the specs
    /// when the serial moves (an apply) and its SFTP users when either moves (a password
    /// rotated).
    pub async fn change_marks(&self) -> Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        let (_, serial) = read_version(&mut tx).await?;
        let credentials = get_meta(&mut tx, "credentials_serial")
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        tx.commit().await?;
        Ok((serial, credentials))
    }
}

async fn store_password(tx: &mut Transaction<'_, Any>, user: &str, hash: &str) -> Result<()> {
    sqlx::query(
        r#"INSERT INTO hosted_sftp_passwords ("user", hash, created_at) VALUES ($1, $2, $3)
           ON CONFLICT ("user") DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at"#,
    )
    .bind(user)
    .bind(hash)
    .bind(jiff::Timestamp::now().to_string())
    .execute(&mut **tx)
    .await?;
    bump_credentials(tx).await
}

/// Moves the credentials counter (see [`StateStore::change_marks`]).
async fn bump_credentials(tx: &mut Transaction<'_, Any>) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('credentials_serial', '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("state values serialize to JSON")
}

fn row_to_resource(row: &AnyRow) -> Result<StoredResource> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| Error::State(format!("corrupt {what}: {e}"));
    let kind: String = row.get("kind");
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| corrupt("kind", &kind))?;
    let parse = |col: &str| -> Result<Value> {
        let text: String = row.get(col);
        serde_json::from_str(&text).map_err(|e| corrupt(col, &e))
    };
    // Spec and status stay text until read (see [`LazyJson`]), checked here all the same.
    let lazy = |col: &str| -> Result<LazyJson> {
        let text: String = row.get(col);
        LazyJson::check(&text).map_err(|e| corrupt(col, &e))?;
        Ok(LazyJson::from_text(text))
    };
    Ok(StoredResource {
        key: ResourceKey::new(
            kind,
            row.get::<String, _>("namespace"),
            row.get::<String, _>("name"),
        ),
        generation: row.get("generation"),
        spec: lazy("spec")?,
        typed: SpecCache::default(),
        meta: serde_json::from_value(parse("meta")?).map_err(|e| corrupt("meta", &e))?,
        secret_digests: serde_json::from_value(parse("secret_digests")?)
            .map_err(|e| corrupt("secret digests", &e))?,
        external_ids: parse("external_ids")?,
        status: lazy("status")?,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

/// Lineage and serial, read inside the caller's transaction.
async fn read_version(tx: &mut Transaction<'_, Any>) -> Result<(String, u64)> {
    let lineage = get_meta(tx, "lineage").await?.unwrap_or_default();
    let serial = get_meta(tx, "serial")
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((lineage, serial))
}

async fn get_meta(tx: &mut Transaction<'_, Any>, key: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn set_meta(tx: &mut Transaction<'_, Any>, key: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An exclusive lock on a state, held from plan to apply. Released when dropped, and by the
/// operating system if the process dies, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct StateLock {
    _held: Held,
}

/// What keeps a [`StateLock`] held (never read: holding it is the point).
#[derive(Debug)]
#[allow(dead_code)]
enum Held {
    /// A lock file of a SQLite state.
    File(File),
    /// A PostgreSQL session holding the advisory lock; closing the session releases it.
    Session(Box<sqlx::AnyConnection>),
}

/// Takes the state's lock for a command that must not run twice at once (`apply`, `run`,
/// `controller`), waiting up to `timeout` for another holder: a lock file next to a SQLite
/// state, a session advisory lock in PostgreSQL (held by a connection of its own, released
/// when dropped or when the process dies).
pub async fn lock_state(state: &Path, timeout: Duration, purpose: &str) -> Result<StateLock> {
    if !is_postgres_url(state) {
        return lock(state, timeout, purpose);
    }
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let location = display_location(state);
    let url = state.to_string_lossy().into_owned();
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .map_err(|e| Error::State(format!("{location}: {}", scrub_url(&e, &url))))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                .bind(PG_LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
        if got {
            return Ok(StateLock {
                _held: Held::Session(Box::new(conn)),
            });
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked(format!(
                "{location} (another ferry holds its advisory lock, for {purpose} or otherwise)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes a SQLite state's lock file, waiting up to `timeout` for another holder to finish.
pub fn lock(state_path: &Path, timeout: Duration, purpose: &str) -> Result<StateLock> {
    let mut lock_path = state_path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    if let Some(dir) = lock_path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if std::time::Instant::now() >= deadline {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(Error::Locked(if holder.is_empty() {
                        lock_path.display().to_string()
                    } else {
                        holder.to_string()
                    }));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
    }
    let info = format!(
        "pid {} on {}, {} since {}",
        std::process::id(),
        hostname(),
        purpose,
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or(jiff::Timestamp::now())
    );
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(info.as_bytes());
    let _ = file.sync_all();
    Ok(StateLock {
        _held: Held::File(file),
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// An error message without the connection URL or its password.
fn scrub_url(e: &dyn std::fmt::Display, url: &str) -> String {
    let mut out = e.to_string().replace(url, "(state URL)");
    if let Some(password) = crate::redact::url_password(url).filter(|p| !p.is_empty()) {
        out = out.replace(password, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_state_is_named_without_its_password() {
        let shown = display_location(Path::new(
            "postgres://ferry:s3cret@db.internal:5432/ferry?sslmode=require&password=other",
        ));
        assert_eq!(
            shown,
            "postgres://ferry:***@db.internal:5432/ferry?sslmode&password"
        );
        assert_eq!(
            display_location(Path::new("postgresql://db/ferry")),
            "postgresql://db/ferry"
        );
        assert_eq!(
            display_location(Path::new(".ferry/state.db")),
            ".ferry/state.db"
        );
    }

    #[test]
    fn the_postgres_schema_is_the_sqlite_one_in_its_dialect() {
        let all: String = MIGRATIONS.iter().map(|m| postgres_dialect(m)).collect();
        assert!(!all.contains("AUTOINCREMENT") && !all.contains("INTEGER"));
        assert!(all.contains("id          BIGSERIAL PRIMARY KEY"));
        assert!(all.contains("slot_epoch  BIGINT NOT NULL"));
        assert!(all.contains("\"user\"       TEXT PRIMARY KEY"));
    }

    #[test]
    fn files_next_to_a_state_go_beside_the_sqlite_file_or_into_the_work_dir() {
        assert_eq!(
            work_dir_for(Path::new("/data/state.db")),
            PathBuf::from("/data")
        );
        assert!(is_postgres_url(Path::new("postgres://db/ferry")));
        assert!(!is_postgres_url(Path::new("postgres.db")));
    }

    #[test]
    fn error_messages_lose_the_url_and_its_password() {
        let url = "postgres://ferry:hunter2-long@db/ferry";
        let e = format!("error connecting to {url}: password hunter2-long rejected");
        assert_eq!(
            scrub_url(&e, url),
            "error connecting to (state URL): password *** rejected"
        );
    }
}
