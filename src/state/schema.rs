//! The state store's schema: its migrations, written once in SQLite's dialect and spelled
//! for PostgreSQL by [`postgres_dialect`]. A leaf: plain data and one string function.

/// Schema migrations, applied in order; the index + 1 is the schema version.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    kind           TEXT NOT NULL,
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    generation     INTEGER NOT NULL,
    spec           TEXT NOT NULL,
    meta           TEXT NOT NULL,
    secret_digests TEXT NOT NULL,
    external_ids   TEXT NOT NULL DEFAULT '{}',
    status         TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
"#,
    r#"
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    slot        TEXT NOT NULL,
    slot_epoch  INTEGER NOT NULL,
    trigger     TEXT NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    rows        INTEGER,
    bytes       INTEGER,
    sha256      TEXT,
    file_name   TEXT,
    staged_path TEXT,
    error       TEXT,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_schedule ON runs (namespace, schedule, slot_epoch);
CREATE TABLE IF NOT EXISTS deliveries (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    namespace   TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    slot_epoch  INTEGER NOT NULL,
    target      TEXT NOT NULL,
    resend      INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    receipt     TEXT,
    error       TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, target)
);
-- The idempotency key: a (schedule, slot, target) succeeds at most once, except for an
-- explicit re-send, which carries its own run id in `resend`.
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_once
    ON deliveries (namespace, schedule, slot_epoch, target, resend) WHERE outcome = 'succeeded';
"#,
    r#"
-- Generated hosted SFTP passwords, as Argon2id PHC strings only: the clear text is shown once
-- and never stored. One per login user (connections naming the same user share it).
CREATE TABLE IF NOT EXISTS hosted_sftp_passwords (
    user       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
    r#"
-- PSA syncs of CustomerMappings: one row per attempt of a (mapping, kind, slot).
CREATE TABLE IF NOT EXISTS psa_syncs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT NOT NULL,
    mapping     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    slot_epoch  INTEGER NOT NULL,
    trigger     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT,
    pushed      TEXT,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS psa_syncs_by_mapping ON psa_syncs (namespace, mapping, kind, slot_epoch);
-- The PSA ticket Ferry keeps open per mapping and failure kind (one, not one per attempt).
CREATE TABLE IF NOT EXISTS psa_tickets (
    namespace  TEXT NOT NULL,
    mapping    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    ticket_id  INTEGER NOT NULL,
    title      TEXT NOT NULL,
    opened_at  TEXT NOT NULL,
    PRIMARY KEY (namespace, mapping, kind)
);
"#,
];

/// The PostgreSQL spelling of a migration, so that the schema is written once: 64-bit
/// integers, identity ids, and the `user` column quoted (a reserved word there).
pub(super) fn postgres_dialect(sqlite: &str) -> String {
    sqlite
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("\n    user ", "\n    \"user\" ")
}
