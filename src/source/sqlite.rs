//! The SQLite source.
//!
//! The database is opened read-only (a report never writes) on a blocking thread, and rows are
//! decoded straight from the statement into [`Value`]s and sent in batches of
//! [`BATCH_ROWS`]. This talks to the SQLite library that sqlx links (libsqlite3-sys, bundled)
//! through a handful of C functions rather than through sqlx's SQLite driver: the driver copies
//! every value into a `sqlite3_value` and hands rows one by one to the async side, which costs
//! more than twice the time of the whole `sqlite3 -csv` export on a million rows; it also hides
//! the declared column types (`DECIMAL(12,2)`) this mapping needs.
//!
//! Mapping: the stored value's type decides (INTEGER -> Int, REAL -> Float, TEXT -> Text,
//! BLOB -> Bytes, NULL -> Null), refined by the column's declared type when there is one:
//!
//! | declared type            | refinement                                                    |
//! |--------------------------|---------------------------------------------------------------|
//! | BOOLEAN, BOOL            | 0/1 (and text `true`/`false`) -> Bool                          |
//! | DATE                     | `YYYY-MM-DD` text -> Date                                      |
//! | TIME                     | `HH:MM[:SS[.f]]` text -> Time                                  |
//! | DATETIME, TIMESTAMP...   | ISO 8601 text (`T` or space) with `Z`/offset -> Timestamp,      |
//! |                          | without -> DateTime                                            |
//! | DECIMAL, NUMERIC, MONEY  | Decimal: an integer's digits, a real's shortest round-trip     |
//! |                          | text, a numeric text as stored                                 |
//!
//! A value that does not fit the refinement (e.g. text that is not a date in a DATE column)
//! keeps the storage mapping. Expressions have no declared type and keep the storage mapping.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;
use tokio::sync::mpsc;

use super::params::{Dialect, bind_named};
use super::{BatchFiller, BatchPool, Params, SourceEvent};
use crate::export::Value;
use crate::{Error, Result};

/// The C functions used, resolved against the SQLite library linked by sqlx (libsqlite3-sys).
#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::{c_char, c_double, c_int, c_void};

    #[repr(C)]
    pub struct sqlite3 {
        _private: [u8; 0],
    }

    #[repr(C)]
    pub struct sqlite3_stmt {
        _private: [u8; 0],
    }

    pub const SQLITE_OK: c_int = 0;
    pub const SQLITE_INTERRUPT: c_int = 9;
    pub const SQLITE_ROW: c_int = 100;
    pub const SQLITE_DONE: c_int = 101;

    pub const SQLITE_INTEGER: c_int = 1;
    pub const SQLITE_FLOAT: c_int = 2;
    pub const SQLITE_TEXT: c_int = 3;
    pub const SQLITE_BLOB: c_int = 4;

    pub const SQLITE_OPEN_READONLY: c_int = 0x0000_0001;
    pub const SQLITE_OPEN_MEMORY: c_int = 0x0000_0080;
    pub const SQLITE_OPEN_NOMUTEX: c_int = 0x0000_8000;

    /// `SQLITE_TRANSIENT`: SQLite copies the bound text.
    pub const SQLITE_TRANSIENT: isize = -1;

    pub type ProgressCallback = unsafe extern "C" fn(*mut c_void) -> c_int;

    unsafe extern "C" {
        pub fn sqlite3_open_v2(
            filename: *const c_char,
            db: *mut *mut sqlite3,
            flags: c_int,
            vfs: *const c_char,
        ) -> c_int;
        pub fn sqlite3_close_v2(db: *mut sqlite3) -> c_int;
        pub fn sqlite3_errmsg(db: *mut sqlite3) -> *const c_char;
        pub fn sqlite3_busy_timeout(db: *mut sqlite3, ms: c_int) -> c_int;
        pub fn sqlite3_progress_handler(
            db: *mut sqlite3,
            instructions: c_int,
            callback: Option<ProgressCallback>,
            arg: *mut c_void,
        );
        pub fn sqlite3_prepare_v2(
            db: *mut sqlite3,
            sql: *const c_char,
            bytes: c_int,
            stmt: *mut *mut sqlite3_stmt,
            tail: *mut *const c_char,
        ) -> c_int;
        pub fn sqlite3_finalize(stmt: *mut sqlite3_stmt) -> c_int;
        pub fn sqlite3_step(stmt: *mut sqlite3_stmt) -> c_int;
        pub fn sqlite3_stmt_readonly(stmt: *mut sqlite3_stmt) -> c_int;
        pub fn sqlite3_bind_parameter_count(stmt: *mut sqlite3_stmt) -> c_int;
        pub fn sqlite3_bind_parameter_name(stmt: *mut sqlite3_stmt, i: c_int) -> *const c_char;
        pub fn sqlite3_bind_text(
            stmt: *mut sqlite3_stmt,
            i: c_int,
            text: *const c_char,
            bytes: c_int,
            destructor: isize,
        ) -> c_int;
        pub fn sqlite3_bind_null(stmt: *mut sqlite3_stmt, i: c_int) -> c_int;
        pub fn sqlite3_column_count(stmt: *mut sqlite3_stmt) -> c_int;
        pub fn sqlite3_column_name(stmt: *mut sqlite3_stmt, i: c_int) -> *const c_char;
        pub fn sqlite3_column_decltype(stmt: *mut sqlite3_stmt, i: c_int) -> *const c_char;
        pub fn sqlite3_column_type(stmt: *mut sqlite3_stmt, i: c_int) -> c_int;
        pub fn sqlite3_column_int64(stmt: *mut sqlite3_stmt, i: c_int) -> i64;
        pub fn sqlite3_column_double(stmt: *mut sqlite3_stmt, i: c_int) -> c_double;
        pub fn sqlite3_column_text(stmt: *mut sqlite3_stmt, i: c_int) -> *const u8;
        pub fn sqlite3_column_blob(stmt: *mut sqlite3_stmt, i: c_int) -> *const c_void;
        pub fn sqlite3_column_bytes(stmt: *mut sqlite3_stmt, i: c_int) -> c_int;
    }
}

/// Streams the rows of `query` from the SQLite database of `url` (`sqlite://PATH` or
/// `sqlite:PATH`, relative to the working directory; `?options` are ignored).
pub async fn stream(
    url: &str,
    query: &str,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let target = parse_url(url)?;
    let bound = bind_named(query, Dialect::Sqlite).map_err(Error::Source)?;
    let values: Vec<Option<String>> = bound.names.iter().map(|n| params.rfc3339(n)).collect();
    let abandoned = Arc::new(AtomicBool::new(false));
    // If this future is dropped (the run was cancelled), the worker stops at its next check.
    let _guard = SetOnDrop(abandoned.clone());
    tokio::task::spawn_blocking(move || run(&target, &bound.sql, &values, &tx, &abandoned))
        .await
        .map_err(|e| Error::Source(format!("the SQLite worker failed: {e}")))?
}

/// The result columns of `query`, prepared (never run) on the database of `url`: what
/// `ferry check` compares with a schedule's declared columns.
pub async fn columns(url: &str, query: &str) -> Result<Vec<String>> {
    let target = parse_url(url)?;
    let bound = bind_named(query, Dialect::Sqlite).map_err(Error::Source)?;
    tokio::task::spawn_blocking(move || {
        let db = open(&target)?;
        let stmt = prepare(&db, &bound.sql)?;
        Ok(column_names(&stmt))
    })
    .await
    .map_err(|e| Error::Source(format!("the SQLite worker failed: {e}")))?
}

/// The names of a prepared statement's result columns (`columnN` where SQLite has none).
fn column_names(stmt: &Stmt) -> Vec<String> {
    // SAFETY: valid statement; names are NUL-terminated UTF-8 (or NULL).
    let count = unsafe { ffi::sqlite3_column_count(stmt.0) };
    (0..count)
        .map(|i| {
            let name = unsafe { ffi::sqlite3_column_name(stmt.0, i) };
            if name.is_null() {
                format!("column{}", i + 1)
            } else {
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned()
            }
        })
        .collect()
}

/// Where a `sqlite:` URL points.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    File(PathBuf),
    Memory,
}

fn parse_url(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Source(format!("`{url}` is not a sqlite: URL")))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    match path {
        "" => Err(Error::Source(format!(
            "the SQLite URL `{url}` names no file: use sqlite://PATH or sqlite:PATH"
        ))),
        ":memory:" => Ok(Target::Memory),
        _ => Ok(Target::File(PathBuf::from(path))),
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the progress handler looks at to interrupt a long step (a sort, a scan without
/// matches) once nobody waits for the rows any more.
struct Watch<'a> {
    abandoned: &'a AtomicBool,
    tx: &'a mpsc::Sender<SourceEvent>,
}

impl Watch<'_> {
    fn cancelled(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed) || self.tx.is_closed()
    }
}

unsafe extern "C" fn progress(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Watch` registered in `run`, which outlives the connection.
    let watch = unsafe { &*(arg as *const Watch<'_>) };
    c_int::from(watch.cancelled())
}

fn cancelled() -> Error {
    Error::SourceCancelled
}

/// An open connection, closed on drop.
struct Db(*mut ffi::sqlite3);

impl Db {
    fn errmsg(&self) -> String {
        // SAFETY: the handle is valid; errmsg returns a NUL-terminated UTF-8 string.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: the handle came from sqlite3_open_v2; statements are finalized before.
        unsafe { ffi::sqlite3_close_v2(self.0) };
    }
}

/// A prepared statement, finalized on drop.
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the statement came from sqlite3_prepare_v2 and is finalized once.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

fn open(target: &Target) -> Result<Db> {
    let (name, flags) = match target {
        Target::Memory => (
            CString::from(c":memory:"),
            ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_MEMORY,
        ),
        Target::File(path) => {
            check_file(path)?;
            let name = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
                Error::Source(format!(
                    "the SQLite path `{}` contains a NUL byte",
                    path.display()
                ))
            })?;
            (name, ffi::SQLITE_OPEN_READONLY)
        }
    };
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated name and out-pointer.
    let rc = unsafe {
        ffi::sqlite3_open_v2(
            name.as_ptr(),
            &mut handle,
            flags | ffi::SQLITE_OPEN_NOMUTEX,
            std::ptr::null(),
        )
    };
    if handle.is_null() {
        return Err(Error::Source(
            "SQLite could not allocate a connection".into(),
        ));
    }
    let db = Db(handle);
    if rc != ffi::SQLITE_OK {
        return Err(Error::Source(format!(
            "cannot open SQLite database `{}`: {}",
            name.to_string_lossy(),
            db.errmsg()
        )));
    }
    // SAFETY: valid handle.
    unsafe { ffi::sqlite3_busy_timeout(db.0, 5_000) };
    Ok(db)
}

fn check_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::Source(format!(
            "the SQLite database `{}` is a directory, not a file",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut message = format!("the SQLite database `{}` does not exist", path.display());
            if path.is_relative()
                && let Ok(cwd) = std::env::current_dir()
            {
                message.push_str(&format!(
                    " (relative to the working directory `{}`)",
                    cwd.display()
                ));
            }
            Err(Error::Source(message))
        }
        Err(e) => Err(Error::Source(format!(
            "cannot open the SQLite database `{}`: {e}",
            path.display()
        ))),
    }
}

/// Prepares the single statement of `sql`.
fn prepare(db: &Db, sql: &str) -> Result<Stmt> {
    let len = c_int::try_from(sql.len())
        .map_err(|_| Error::Source("the query is too long for SQLite".into()))?;
    let mut stmt = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    // SAFETY: `sql` is valid for `len` bytes; out-pointers are valid.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db.0, sql.as_ptr().cast(), len, &mut stmt, &mut tail) };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Source(format!(
            "SQLite query failed: {}",
            db.errmsg()
        )));
    }
    if stmt.is_null() {
        return Err(Error::Source("the query is empty".into()));
    }
    let stmt = Stmt(stmt);
    // Anything but whitespace, semicolons and comments after the statement is a second one.
    let consumed = tail as usize - sql.as_ptr() as usize;
    let rest = &sql[consumed..];
    if !rest
        .trim_matches(|c: char| c.is_whitespace() || c == ';')
        .is_empty()
    {
        let mut next = std::ptr::null_mut();
        let rest_len = c_int::try_from(rest.len()).unwrap_or(c_int::MAX);
        // SAFETY: as above.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db.0,
                rest.as_ptr().cast(),
                rest_len,
                &mut next,
                std::ptr::null_mut(),
            )
        };
        if !next.is_null() {
            drop(Stmt(next));
        }
        if rc != ffi::SQLITE_OK || !next.is_null() {
            return Err(Error::Source(
                "the query holds more than one statement; a report runs exactly one".into(),
            ));
        }
    }
    // SAFETY: valid statement.
    if unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } == 0 {
        return Err(Error::Source(
            "the query would modify the database; a report only reads (SELECT, WITH, VALUES)"
                .into(),
        ));
    }
    Ok(stmt)
}

fn bind(db: &Db, stmt: &Stmt, values: &[Option<String>]) -> Result<()> {
    // SAFETY: valid statement.
    let count = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) };
    if usize::try_from(count).unwrap_or(0) > values.len() {
        let extra: Vec<String> = (values.len() as c_int + 1..=count)
            .map(|i| {
                // SAFETY: valid statement and index; the name may be NULL for `?`.
                let name = unsafe { ffi::sqlite3_bind_parameter_name(stmt.0, i) };
                if name.is_null() {
                    "?".to_string()
                } else {
                    unsafe { CStr::from_ptr(name) }
                        .to_string_lossy()
                        .into_owned()
                }
            })
            .collect();
        return Err(Error::Source(format!(
            "the query uses parameters Ferry does not bind ({}); use :window_start, \
             :window_end and :slot",
            extra.join(", ")
        )));
    }
    for (i, value) in values.iter().enumerate() {
        let index = i as c_int + 1;
        // SAFETY: valid statement and index; SQLITE_TRANSIENT makes SQLite copy the text.
        let rc = unsafe {
            match value {
                Some(text) => ffi::sqlite3_bind_text(
                    stmt.0,
                    index,
                    text.as_ptr().cast(),
                    text.len() as c_int,
                    ffi::SQLITE_TRANSIENT,
                ),
                None => ffi::sqlite3_bind_null(stmt.0, index),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(Error::Source(format!(
                "cannot bind query parameter {index}: {}",
                db.errmsg()
            )));
        }
    }
    Ok(())
}

/// How a column's declared type refines the storage mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decl {
    Storage,
    Bool,
    Date,
    Time,
    DateTime,
    Decimal,
}

impl Decl {
    fn of(declared: &str) -> Decl {
        let t = declared.trim().to_ascii_uppercase();
        let base = t.split(['(', ' ']).next().unwrap_or("");
        match base {
            "BOOLEAN" | "BOOL" => Decl::Bool,
            "DATE" => Decl::Date,
            "TIME" => Decl::Time,
            "DATETIME" | "TIMESTAMP" | "TIMESTAMPTZ" => Decl::DateTime,
            "DECIMAL" | "NUMERIC" | "MONEY" => Decl::Decimal,
            _ => Decl::Storage,
        }
    }
}

fn run(
    target: &Target,
    sql: &str,
    values: &[Option<String>],
    tx: &mpsc::Sender<SourceEvent>,
    abandoned: &AtomicBool,
) -> Result<u64> {
    let watch = Watch { abandoned, tx };
    let db = open(target)?;
    // SAFETY: `watch` outlives `db` (declared before it, so dropped after it).
    unsafe {
        ffi::sqlite3_progress_handler(
            db.0,
            100_000,
            Some(progress),
            &watch as *const Watch<'_> as *mut c_void,
        )
    };
    let stmt = prepare(&db, sql)?;
    bind(&db, &stmt, values)?;

    let names = column_names(&stmt);
    let mut decls = Vec::with_capacity(names.len());
    // SAFETY: valid statement; declared types are NUL-terminated UTF-8 (or NULL).
    for i in 0..names.len() as c_int {
        let decl = unsafe { ffi::sqlite3_column_decltype(stmt.0, i) };
        decls.push(if decl.is_null() {
            Decl::Storage
        } else {
            Decl::of(&unsafe { CStr::from_ptr(decl) }.to_string_lossy())
        });
    }
    tx.blocking_send(SourceEvent::Columns(names.clone()))
        .map_err(|_| cancelled())?;

    let mut rows: u64 = 0;
    let mut filler = BatchFiller::new(BatchPool::default());
    loop {
        // SAFETY: valid statement.
        let rc = unsafe { ffi::sqlite3_step(stmt.0) };
        if rc == ffi::SQLITE_DONE {
            break;
        }
        if rc != ffi::SQLITE_ROW {
            if rc == ffi::SQLITE_INTERRUPT && watch.cancelled() {
                return Err(cancelled());
            }
            return Err(Error::Source(format!(
                "SQLite query failed after {rows} rows: {}",
                db.errmsg()
            )));
        }
        rows += 1;
        let mut row = filler.row(decls.len());
        for (i, (&decl, slot)) in decls.iter().zip(row.iter_mut()).enumerate() {
            decode(&stmt, i as c_int, decl, &names, rows, slot)?;
        }
        if let Some(full) = filler.push(row)
            && (tx.blocking_send(SourceEvent::Rows(full)).is_err()
                || abandoned.load(Ordering::Relaxed))
        {
            return Err(cancelled());
        }
    }
    if let Some(rest) = filler.rest() {
        tx.blocking_send(SourceEvent::Rows(rest))
            .map_err(|_| cancelled())?;
    }
    Ok(rows)
}

/// Stores the value of column `i` of the current row in `slot` (a text column reuses the
/// slot's buffer).
fn decode(
    stmt: &Stmt,
    i: c_int,
    decl: Decl,
    names: &[String],
    row: u64,
    slot: &mut Value,
) -> Result<()> {
    let s = stmt.0;
    // SAFETY: valid statement positioned on a row; `i` is a valid column index. Text and blob
    // pointers stay valid until the next step, and are copied before that.
    unsafe {
        *slot = match ffi::sqlite3_column_type(s, i) {
            ffi::SQLITE_INTEGER => {
                let n = ffi::sqlite3_column_int64(s, i);
                match decl {
                    Decl::Bool if n == 0 || n == 1 => Value::Bool(n == 1),
                    Decl::Decimal => Value::Decimal(n.to_string()),
                    _ => Value::Int(n),
                }
            }
            ffi::SQLITE_FLOAT => {
                let f = ffi::sqlite3_column_double(s, i);
                match decl {
                    Decl::Decimal if f.is_finite() => Value::Decimal(f.to_string()),
                    _ => Value::Float(f),
                }
            }
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_column_text(s, i);
                let len = ffi::sqlite3_column_bytes(s, i) as usize;
                let bytes = if p.is_null() || len == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(p, len)
                };
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    Error::Source(format!(
                        "row {row}, column `{}`: the text is not valid UTF-8 (select \
                         CAST({0} AS BLOB) to export its bytes)",
                        names[i as usize]
                    ))
                })?;
                if decl == Decl::Storage {
                    slot.set_text(text);
                    return Ok(());
                }
                refine_text(text, decl)
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_column_blob(s, i) as *const u8;
                let len = ffi::sqlite3_column_bytes(s, i) as usize;
                if p.is_null() || len == 0 {
                    Value::Bytes(Vec::new())
                } else {
                    Value::Bytes(std::slice::from_raw_parts(p, len).to_vec())
                }
            }
            _ => Value::Null,
        };
    }
    Ok(())
}

/// A stored text, read through its column's declared type.
fn refine_text(text: &str, decl: Decl) -> Value {
    match decl {
        Decl::Storage => {}
        Decl::Bool => {
            if text.eq_ignore_ascii_case("true") {
                return Value::Bool(true);
            }
            if text.eq_ignore_ascii_case("false") {
                return Value::Bool(false);
            }
        }
        Decl::Date => {
            if let Some(d) = parse_date(text.as_bytes()).or_else(|| text.parse().ok()) {
                return Value::Date(d);
            }
        }
        Decl::Time => {
            if let Some(t) = parse_time(text.as_bytes()).or_else(|| text.parse().ok()) {
                return Value::Time(t);
            }
        }
        Decl::DateTime => {
            if let Some(v) = parse_date_time(text) {
                return v;
            }
        }
        Decl::Decimal => {
            if is_decimal(text) {
                return Value::Decimal(text.to_owned());
            }
        }
    }
    Value::Text(text.to_owned())
}

fn digits<const N: usize>(b: &[u8]) -> Option<i32> {
    let mut n = 0i32;
    for &c in b.get(..N)? {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i32::from(c - b'0');
    }
    Some(n)
}

/// `YYYY-MM-DD` exactly.
pub(super) fn parse_date(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits::<4>(b)?;
    let m = digits::<2>(&b[5..])?;
    let d = digits::<2>(&b[8..])?;
    Date::new(y as i16, m as i8, d as i8).ok()
}

/// `HH:MM[:SS[.fffffffff]]`; returns the time and the bytes consumed.
fn parse_time_prefix(b: &[u8]) -> Option<(Time, usize)> {
    if b.len() < 5 || b[2] != b':' {
        return None;
    }
    let h = digits::<2>(b)?;
    let m = digits::<2>(&b[3..])?;
    let mut used = 5;
    let (mut s, mut nanos) = (0, 0);
    if b.get(5) == Some(&b':') {
        s = digits::<2>(&b[6..])?;
        used = 8;
        if b.get(8) == Some(&b'.') {
            let frac = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
            if frac == 0 || frac > 9 {
                return None;
            }
            for k in 0..9 {
                nanos = nanos * 10
                    + if k < frac {
                        i32::from(b[9 + k] - b'0')
                    } else {
                        0
                    };
            }
            used = 9 + frac;
        }
    }
    let t = Time::new(h as i8, m as i8, s as i8, nanos).ok()?;
    Some((t, used))
}

pub(super) fn parse_time(b: &[u8]) -> Option<Time> {
    match parse_time_prefix(b)? {
        (t, used) if used == b.len() => Some(t),
        _ => None,
    }
}

/// ISO 8601 date-time (`T` or space) with `Z` or an offset -> Timestamp, without -> DateTime.
/// The common shapes are parsed by hand; anything else is left to jiff.
pub(super) fn parse_date_time(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    if let Some(date) = b.get(..10).and_then(parse_date) {
        if b.len() == 10 {
            return Some(Value::DateTime(date.to_datetime(Time::midnight())));
        }
        if matches!(b[10], b'T' | b't' | b' ')
            && let Some((time, used)) = parse_time_prefix(&b[11..])
        {
            let dt = DateTime::from_parts(date, time);
            let rest = &b[11 + used..];
            match rest {
                [] => return Some(Value::DateTime(dt)),
                [b'Z' | b'z'] => return Offset::UTC.to_timestamp(dt).ok().map(Value::Timestamp),
                [sign @ (b'+' | b'-'), h1, h2] => {
                    let h = digits::<2>(&[*h1, *h2])?;
                    let offset =
                        Offset::from_seconds(h * 3600 * if *sign == b'-' { -1 } else { 1 }).ok()?;
                    return offset.to_timestamp(dt).ok().map(Value::Timestamp);
                }
                [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
                | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
                    let h = digits::<2>(&[*h1, *h2])?;
                    let m = digits::<2>(&[*m1, *m2])?;
                    let secs = (h * 3600 + m * 60) * if *sign == b'-' { -1 } else { 1 };
                    let offset = Offset::from_seconds(secs).ok()?;
                    return offset.to_timestamp(dt).ok().map(Value::Timestamp);
                }
                _ => {}
            }
        }
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(Value::Timestamp(ts));
    }
    text.parse::<DateTime>().ok().map(Value::DateTime)
}

/// `[+-]digits[.digits][e[+-]digits]`, the text of a number.
pub(super) fn is_decimal(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_path_relative_to_the_working_directory() {
        assert_eq!(
            parse_url("sqlite://examples/shop.db").unwrap(),
            Target::File("examples/shop.db".into())
        );
        assert_eq!(
            parse_url("sqlite:shop.db?mode=ro").unwrap(),
            Target::File("shop.db".into())
        );
        assert_eq!(
            parse_url("sqlite:///var/db/shop.db").unwrap(),
            Target::File("/var/db/shop.db".into())
        );
        assert_eq!(parse_url("sqlite::memory:").unwrap(), Target::Memory);
        assert!(parse_url("sqlite://").is_err());
    }

    #[test]
    fn declared_types_choose_the_refinement() {
        assert_eq!(Decl::of("BOOLEAN"), Decl::Bool);
        assert_eq!(Decl::of("bool"), Decl::Bool);
        assert_eq!(Decl::of("Date"), Decl::Date);
        assert_eq!(Decl::of("DATETIME"), Decl::DateTime);
        assert_eq!(Decl::of("timestamp with time zone"), Decl::DateTime);
        assert_eq!(Decl::of("DECIMAL(12,2)"), Decl::Decimal);
        assert_eq!(Decl::of("numeric"), Decl::Decimal);
        assert_eq!(Decl::of("MONEY"), Decl::Decimal);
        assert_eq!(Decl::of("VARCHAR(20)"), Decl::Storage);
        assert_eq!(Decl::of("INTEGER"), Decl::Storage);
    }

    #[test]
    fn date_times_with_an_offset_are_instants_and_without_are_wall_clock_readings() {
        let ts = |s: &str| Value::Timestamp(s.parse().unwrap());
        let dt = |s: &str| Value::DateTime(s.parse().unwrap());
        assert_eq!(
            parse_date_time("2026-07-30T00:00:00+09:00"),
            Some(ts("2026-07-29T15:00:00Z"))
        );
        assert_eq!(
            parse_date_time("2026-07-30 00:00:00.5-0130"),
            Some(ts("2026-07-30T01:30:00.5Z"))
        );
        assert_eq!(
            parse_date_time("2026-07-30 10:11:12Z"),
            Some(ts("2026-07-30T10:11:12Z"))
        );
        assert_eq!(
            parse_date_time("2026-07-30 10:11:12.123456"),
            Some(dt("2026-07-30T10:11:12.123456"))
        );
        assert_eq!(
            parse_date_time("2026-07-30T10:11"),
            Some(dt("2026-07-30T10:11:00"))
        );
        assert_eq!(
            parse_date_time("2026-07-30"),
            Some(dt("2026-07-30T00:00:00"))
        );
        // Shapes the fast path does not know still parse through jiff.
        assert_eq!(
            parse_date_time("2026-07-30T00:00:00+09:00[Asia/Tokyo]"),
            Some(ts("2026-07-29T15:00:00Z"))
        );
        assert_eq!(parse_date_time("yesterday"), None);
        assert_eq!(parse_date_time("2026-02-30 00:00:00"), None);
    }

    #[test]
    fn dates_and_times_parse_exactly() {
        assert_eq!(
            parse_date(b"2026-07-30"),
            Some(jiff::civil::date(2026, 7, 30))
        );
        assert_eq!(parse_date(b"2026-13-01"), None);
        assert_eq!(parse_date(b"2026-07-30x"), None);
        assert_eq!(
            parse_time(b"23:59:58.25"),
            Some(jiff::civil::time(23, 59, 58, 250_000_000))
        );
        assert_eq!(parse_time(b"24:00"), None);
    }

    #[test]
    fn decimal_text_is_recognised() {
        for ok in [
            "0",
            "-12.50",
            "+1",
            ".5",
            "5.",
            "1e10",
            "12345678901234567890.123456789",
        ] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", "-", ".", "1e", "abc", "1.2.3", "1,5", " 1"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}
