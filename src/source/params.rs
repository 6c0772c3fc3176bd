//! Named query parameters: `:window_start`, `:window_end` and `:slot`.
//!
//! A query names its parameters; each database wants positional placeholders (`?1` for
//! SQLite, `$1` for PostgreSQL, `?` for MySQL/MariaDB). [`bind_named`] rewrites one into the other with a small
//! scanner that knows where a colon is *not* a parameter:
//!
//! - inside single-quoted strings (`'it''s'`, and PostgreSQL's `E'it\'s'`; in MySQL every
//!   string may escape with a backslash, `'it\'s'`, and double quotes delimit strings too),
//! - inside double-quoted or backquoted identifiers (`"a:b"`),
//! - inside `--` line comments and `/* */` block comments (nested, as PostgreSQL allows), and
//!   MySQL's `#` line comments,
//! - inside PostgreSQL dollar-quoted strings (`$$...$$`, `$tag$...$tag$`),
//! - in a `::` cast (`x::date`), in PostgreSQL's `:=` named-argument notation and MySQL's `:=`
//!   assignment,
//! - inside square brackets (a PostgreSQL array slice `a[lo:hi]`, or a SQLite `[identifier]`).
//!
//! Anywhere else, `:name` is a parameter, and a name other than the three known ones is an
//! error that lists them. A name used twice reuses its placeholder.

use jiff::Zoned;

/// The parameters a query may name, in documentation order.
pub const KNOWN_PARAMS: [&str; 3] = ["window_start", "window_end", "slot"];

/// Values bound to `:window_start`, `:window_end` and `:slot`.
#[derive(Clone, Debug)]
pub struct Params {
    /// Start of the window (inclusive), if the window has bounds.
    pub window_start: Option<Zoned>,
    /// End of the window (exclusive), if the window has bounds.
    pub window_end: Option<Zoned>,
    /// The slot being exported.
    pub slot: Zoned,
}

impl Params {
    /// The parameters of a run of `slot`: `window` computed in the slot's zone relative to
    /// it (`last_success` for `sinceLastSuccess`; none reads like a first run).
    pub fn for_slot(
        window: crate::api::Window,
        slot: &Zoned,
        last_success: Option<&Zoned>,
    ) -> Params {
        let bounds = crate::schedule::window(window, slot, last_success);
        Params {
            window_start: bounds.as_ref().map(|w| w.0.clone()),
            window_end: bounds.map(|w| w.1),
            slot: slot.clone(),
        }
    }

    /// The value of a known parameter: `None` for an unknown name, `Some(None)` for a window
    /// bound that the window does not have (bound as SQL NULL).
    pub fn get(&self, name: &str) -> Option<Option<&Zoned>> {
        match name {
            "window_start" => Some(self.window_start.as_ref()),
            "window_end" => Some(self.window_end.as_ref()),
            "slot" => Some(Some(&self.slot)),
            _ => None,
        }
    }

    /// The value of `name` as RFC 3339 text with the zone's offset, e.g.
    /// `2026-07-30T00:00:00+09:00` (fractional seconds only when there are some); `None` for an
    /// absent window bound or an unknown name.
    pub fn rfc3339(&self, name: &str) -> Option<String> {
        self.get(name).flatten().map(rfc3339)
    }
}

/// `z` as RFC 3339 text with its offset, e.g. `2026-07-30T00:00:00+09:00`.
pub fn rfc3339(z: &Zoned) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

/// Which placeholder syntax the database wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    /// SQLite: `?1`, `?2`, ...
    Sqlite,
    /// PostgreSQL: `$1`, `$2`, ...
    Postgres,
    /// MySQL and MariaDB: `?`, bound by position of occurrence (a name used twice is bound
    /// twice).
    MySql,
}

/// A query rewritten to positional parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundQuery {
    /// The SQL text with `?N` (SQLite), `$N` (PostgreSQL) or `?` (MySQL) placeholders.
    pub sql: String,
    /// Parameter names in placeholder order: `names[0]` is bound to `?1`/`$1`. For MySQL,
    /// whose `?` are numbered by occurrence, one name per `?` (a name used twice is listed
    /// twice).
    pub names: Vec<String>,
}

/// Rewrites the named parameters of `sql` to the placeholders of `dialect`.
///
/// Errors (as a message for the user) on an unknown `:name`, and on positional parameters
/// written in the query itself (`?` in SQLite, `$1` in PostgreSQL), which Ferry cannot bind.
pub fn bind_named(sql: &str, dialect: Dialect) -> Result<BoundQuery, String> {
    let prefix = match dialect {
        Dialect::Sqlite => '?',
        Dialect::Postgres => '$',
        Dialect::MySql => {
            let mut occurrences = Vec::new();
            let rewritten = rewrite_named(sql, dialect, |_, name| {
                occurrences.push(name.to_string());
                "?".to_string()
            })?;
            return Ok(BoundQuery {
                sql: rewritten.sql,
                names: occurrences,
            });
        }
    };
    let rewritten = rewrite_named(sql, dialect, |number, _| format!("{prefix}{number}"))?;
    Ok(BoundQuery {
        sql: rewritten.sql,
        names: rewritten.names,
    })
}

/// A query whose named parameters were replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The new SQL text.
    pub sql: String,
    /// Parameter names by number: `names[0]` is number 1.
    pub names: Vec<String>,
    /// The length of `sql` without trailing whitespace, semicolons and comments: the
    /// statement itself, e.g. to nest it in `COPY (...) TO STDOUT`.
    pub body_len: usize,
}

/// Replaces every named parameter with `replacement(number, name)`, numbering names in order
/// of first use (a name used twice gets the same number). Same errors as [`bind_named`].
pub fn rewrite_named(
    sql: &str,
    dialect: Dialect,
    mut replacement: impl FnMut(usize, &str) -> String,
) -> Result<Rewritten, String> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut copied = 0;
    let body_end = scan(sql, Some(dialect), |token| {
        let (start, end, name) = match token {
            Token::Named { start, end, name } => (start, end, name),
            Token::Positional { start, text } => {
                return Err(format!(
                    "{}: the query uses the positional parameter `{text}`; name parameters \
                     instead ({})",
                    line_of(sql, start),
                    known_list()
                ));
            }
        };
        let number = match names.iter().position(|n| n == name) {
            Some(i) => i + 1,
            None => {
                names.push(name.to_string());
                names.len()
            }
        };
        out.push_str(&sql[copied..start]);
        out.push_str(&replacement(number, name));
        copied = end;
        Ok(())
    })?;
    // Every parameter lies inside the body, so the tail after it is copied unchanged.
    let tail = sql.len() - body_end;
    out.push_str(&sql[copied..]);
    Ok(Rewritten {
        body_len: out.len() - tail,
        sql: out,
        names,
    })
}

/// The known parameters `sql` names, each once, in order of first use. Errors on an unknown
/// `:name` (the message lists the known ones).
pub fn referenced_params(sql: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    scan(sql, None, |token| {
        if let Token::Named { name, .. } = token
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
        Ok(())
    })?;
    Ok(names)
}

/// What the scanner reports.
enum Token<'a> {
    /// `:name` at `start..end` (byte offsets of the colon and the end of the name).
    Named {
        start: usize,
        end: usize,
        name: &'a str,
    },
    /// A positional parameter the user wrote (`?`, `?3`, `$1`).
    Positional { start: usize, text: &'a str },
}

fn known_list() -> String {
    let names: Vec<String> = KNOWN_PARAMS.iter().map(|n| format!(":{n}")).collect();
    format!("known parameters: {}", names.join(", "))
}

fn line_of(sql: &str, offset: usize) -> String {
    let line = sql[..offset].bytes().filter(|&b| b == b'\n').count() + 1;
    format!("line {line}")
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Walks `sql` and calls `emit` for every parameter outside strings, identifiers and comments.
/// With a dialect, positional parameters of that dialect are reported too.
fn scan<'a>(
    sql: &'a str,
    dialect: Option<Dialect>,
    mut emit: impl FnMut(Token<'a>) -> Result<(), String>,
) -> Result<usize, String> {
    let b = sql.as_bytes();
    let n = b.len();
    let mut i = 0;
    let mut brackets = 0usize;
    let mysql = dialect == Some(Dialect::MySql);
    // Just past the last character that is not whitespace, `;` or a comment.
    let mut body_end = 0;
    while i < n {
        let c = b[i];
        let start = i;
        match c {
            b'\'' => {
                // E'...' (PostgreSQL escape string): backslash escapes a character. MySQL
                // strings always may (unless the server runs with NO_BACKSLASH_ESCAPES).
                let escapes = mysql
                    || (i > 0
                        && matches!(b[i - 1], b'E' | b'e')
                        && (i < 2 || !is_ident_char(b[i - 2])));
                i = skip_quoted(b, i, b'\'', escapes);
            }
            // A MySQL string, or an identifier elsewhere.
            b'"' => i = skip_quoted(b, i, b'"', mysql),
            b'#' if mysql => {
                i = match b[i..].iter().position(|&x| x == b'\n') {
                    Some(p) => i + p + 1,
                    None => n,
                };
            }
            b'`' => i = skip_quoted(b, i, b'`', false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = match b[i..].iter().position(|&x| x == b'\n') {
                    Some(p) => i + p + 1,
                    None => n,
                };
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < n && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'[' => {
                brackets += 1;
                i += 1;
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                i += 1;
            }
            b'$' if !mysql && (i == 0 || !is_ident_char(b[i - 1])) => {
                // A positional $1, or $tag$ ... $tag$ (tag empty or an identifier).
                let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
                if digits > 0 {
                    if dialect == Some(Dialect::Postgres) {
                        emit(Token::Positional {
                            start: i,
                            text: &sql[i..i + 1 + digits],
                        })?;
                    }
                    i += 1 + digits;
                } else {
                    i = skip_dollar_quote(b, i);
                }
            }
            b'?' if matches!(dialect, Some(Dialect::Sqlite | Dialect::MySql)) => {
                let len = 1 + b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
                emit(Token::Positional {
                    start: i,
                    text: &sql[i..i + len],
                })?;
                i += len;
            }
            b':' => {
                let next = b.get(i + 1).copied();
                if next == Some(b':') {
                    // A cast: `x::date`. The type name after it is not a parameter.
                    i += 2;
                } else if brackets == 0 && next.is_some_and(is_ident_start) {
                    let start = i;
                    let mut end = i + 1;
                    while end < n && is_ident_char(b[end]) && b[end] != b'$' {
                        end += 1;
                    }
                    let name = &sql[start + 1..end];
                    if !KNOWN_PARAMS.contains(&name) {
                        return Err(format!(
                            "{}: unknown query parameter `:{name}` ({})",
                            line_of(sql, start),
                            known_list()
                        ));
                    }
                    emit(Token::Named { start, end, name })?;
                    i = end;
                } else {
                    i += 1;
                }
            }
            _ if is_ident_char(c) => {
                // Skip a whole word so that `$` inside identifiers (`a$b`) is not a quote.
                while i < n && is_ident_char(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        let insignificant = c.is_ascii_whitespace()
            || c == b';'
            || (mysql && c == b'#')
            || b[start..].starts_with(b"--")
            || b[start..].starts_with(b"/*");
        if !insignificant {
            body_end = i;
        }
    }
    Ok(body_end)
}

/// At a `$` that is not a positional parameter: the index past the `$tag$...$tag$` string it
/// opens (unterminated: the end), or just past the `$` when it opens none.
fn skip_dollar_quote(b: &[u8], i: usize) -> usize {
    let rest = &b[i + 1..];
    let tag_len = if rest.first().is_some_and(|&d| is_ident_start(d)) {
        rest.iter()
            .take_while(|&&d| is_ident_char(d) && d != b'$')
            .count()
    } else {
        0
    };
    if rest.get(tag_len) != Some(&b'$') {
        return i + 1;
    }
    let delimiter = &b[i..i + tag_len + 2];
    let body = i + delimiter.len();
    match b[body..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
    {
        Some(p) => body + p + delimiter.len(),
        None => b.len(),
    }
}

/// The index just past the quoted run starting at `start` (whose delimiter is `quote`); a
/// doubled delimiter is an escaped one. Unterminated quotes run to the end.
fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash_escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(sql: &str) -> (String, Vec<String>) {
        let q = bind_named(sql, Dialect::Sqlite).unwrap_or_else(|e| panic!("{sql}: {e}"));
        (q.sql, q.names)
    }

    fn pg(sql: &str) -> (String, Vec<String>) {
        let q = bind_named(sql, Dialect::Postgres).unwrap_or_else(|e| panic!("{sql}: {e}"));
        (q.sql, q.names)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parameters_become_numbered_placeholders_in_order_of_first_use() {
        let sql = "SELECT * FROM t WHERE u >= :window_start AND u < :window_end AND s <= :slot";
        assert_eq!(
            sqlite(sql),
            (
                "SELECT * FROM t WHERE u >= ?1 AND u < ?2 AND s <= ?3".into(),
                names(&["window_start", "window_end", "slot"])
            )
        );
        assert_eq!(
            pg(sql).0,
            "SELECT * FROM t WHERE u >= $1 AND u < $2 AND s <= $3"
        );
    }

    #[test]
    fn a_name_used_twice_reuses_its_number() {
        let (sql, used) =
            pg("SELECT :slot AS a, x FROM t WHERE d < :window_end OR d = :slot\n AND :slot>0");
        assert_eq!(
            sql,
            "SELECT $1 AS a, x FROM t WHERE d < $2 OR d = $1\n AND $1>0"
        );
        assert_eq!(used, names(&["slot", "window_end"]));
    }

    #[test]
    fn a_query_without_parameters_is_unchanged() {
        let sql = "SELECT 'a:b', \"c:d\" FROM t -- :nothing\n";
        assert_eq!(sqlite(sql), (sql.to_string(), vec![]));
    }

    #[test]
    fn strings_with_doubled_quotes_are_skipped() {
        let (sql, used) = sqlite("SELECT 'it''s :slot', :slot, '' || ':x'");
        assert_eq!(sql, "SELECT 'it''s :slot', ?1, '' || ':x'");
        assert_eq!(used, names(&["slot"]));
    }

    #[test]
    fn postgres_escape_strings_may_escape_quotes_with_a_backslash() {
        let (sql, _) = pg(r"SELECT E'it\'s :nope', e'\\', :slot");
        assert_eq!(sql, r"SELECT E'it\'s :nope', e'\\', $1");
        // Not an escape string: a column named `e` followed by a string is just a string.
        let (sql, _) = pg(r"SELECT name'\', :slot");
        assert_eq!(sql, r"SELECT name'\', $1");
    }

    #[test]
    fn quoted_identifiers_are_skipped() {
        let (sql, _) = sqlite("SELECT \"a:b\"\"c:d\", `x:y`, [p:q], :window_end FROM t");
        assert_eq!(sql, "SELECT \"a:b\"\"c:d\", `x:y`, [p:q], ?1 FROM t");
    }

    #[test]
    fn comments_are_skipped() {
        let (sql, used) = pg(
            "SELECT 1 -- :comment here\n, :slot /* :block /* nested :x */ still :y */ , 2 -- end",
        );
        assert_eq!(
            sql,
            "SELECT 1 -- :comment here\n, $1 /* :block /* nested :x */ still :y */ , 2 -- end"
        );
        assert_eq!(used, names(&["slot"]));
    }

    #[test]
    fn casts_are_not_parameters() {
        let (sql, used) = pg("SELECT x::date, :window_start::timestamptz, y :: text FROM t");
        assert_eq!(sql, "SELECT x::date, $1::timestamptz, y :: text FROM t");
        assert_eq!(used, names(&["window_start"]));
    }

    #[test]
    fn dollar_quoted_strings_are_skipped() {
        let (sql, used) =
            pg("SELECT $$ :a $ b $$, $fn$ :c $$ :d $fn$, $x$a$x$, :slot, price$usd FROM t");
        assert_eq!(
            sql,
            "SELECT $$ :a $ b $$, $fn$ :c $$ :d $fn$, $x$a$x$, $1, price$usd FROM t"
        );
        assert_eq!(used, names(&["slot"]));
    }

    #[test]
    fn array_slices_and_named_arguments_are_not_parameters() {
        let (sql, used) = pg("SELECT a[lo:hi], a[1:2], f(x := 1), :slot FROM t");
        assert_eq!(sql, "SELECT a[lo:hi], a[1:2], f(x := 1), $1 FROM t");
        assert_eq!(used, names(&["slot"]));
    }

    #[test]
    fn an_unknown_name_is_an_error_listing_the_known_ones() {
        let err = bind_named("SELECT 1\nWHERE a > :since", Dialect::Sqlite).unwrap_err();
        assert_eq!(
            err,
            "line 2: unknown query parameter `:since` (known parameters: :window_start, \
             :window_end, :slot)"
        );
        // Names are case-sensitive.
        assert!(referenced_params("SELECT :Slot").is_err());
    }

    #[test]
    fn positional_parameters_written_by_the_user_are_refused() {
        let err = bind_named("SELECT * FROM t WHERE a = ?", Dialect::Sqlite).unwrap_err();
        assert!(err.contains("positional parameter `?`"), "{err}");
        let err = bind_named("SELECT * FROM t WHERE a = $1", Dialect::Postgres).unwrap_err();
        assert!(err.contains("positional parameter `$1`"), "{err}");
        // `?` is a jsonb operator in PostgreSQL, and `$1` means nothing special to SQLite's
        // scanner here.
        assert_eq!(
            pg("SELECT data ? 'key' FROM t").0,
            "SELECT data ? 'key' FROM t"
        );
    }

    fn mysql(sql: &str) -> (String, Vec<String>) {
        let q = bind_named(sql, Dialect::MySql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        (q.sql, q.names)
    }

    #[test]
    fn mysql_placeholders_are_bound_once_per_occurrence() {
        assert_eq!(
            mysql(
                "SELECT :slot, x FROM t WHERE d >= :window_start AND d < :window_end OR d = :slot"
            ),
            (
                "SELECT ?, x FROM t WHERE d >= ? AND d < ? OR d = ?".into(),
                names(&["slot", "window_start", "window_end", "slot"])
            )
        );
    }

    #[test]
    fn mysql_strings_comments_and_assignments_are_not_parameters() {
        let (sql, used) =
            mysql("SELECT 'it\\'s :a', \"b\\\" :c\", `d:e`, @x := 1 # :h\n, :slot -- :i\n");
        assert_eq!(
            sql,
            "SELECT 'it\\'s :a', \"b\\\" :c\", `d:e`, @x := 1 # :h\n, ? -- :i\n"
        );
        assert_eq!(used, names(&["slot"]));
        let err = bind_named("SELECT * FROM t WHERE a = ?", Dialect::MySql).unwrap_err();
        assert!(err.contains("positional parameter `?`"), "{err}");
        let r = rewrite_named("SELECT :slot; # done\n", Dialect::MySql, |_, _| "?".into()).unwrap();
        assert_eq!(&r.sql[..r.body_len], "SELECT ?");
    }

    #[test]
    fn unterminated_quotes_and_comments_swallow_the_rest() {
        assert_eq!(referenced_params("SELECT ':slot"), Ok(vec![]));
        assert_eq!(referenced_params("SELECT /* :slot"), Ok(vec![]));
        assert_eq!(referenced_params("SELECT $q$ :slot"), Ok(vec![]));
    }

    #[test]
    fn referenced_params_lists_each_known_name_once() {
        assert_eq!(
            referenced_params(
                "SELECT * FROM t WHERE u >= :window_start AND u < :window_end OR u >= :window_start"
            ),
            Ok(names(&["window_start", "window_end"]))
        );
        assert_eq!(referenced_params("SELECT x::date FROM t"), Ok(vec![]));
        assert!(
            referenced_params("SELECT :oops")
                .unwrap_err()
                .contains(":window_start")
        );
    }

    #[test]
    fn the_statement_body_excludes_trailing_semicolons_and_comments() {
        let body = |sql: &str| {
            let r = rewrite_named(sql, Dialect::Postgres, |_, _| "'2026-07-30'".into()).unwrap();
            r.sql[..r.body_len].to_string()
        };
        assert_eq!(
            body("SELECT :slot ;  -- done\n/* end */ \n"),
            "SELECT '2026-07-30'"
        );
        assert_eq!(body("SELECT 1 -- no semicolon"), "SELECT 1");
        assert_eq!(body("SELECT ';' /* a */ , 2;"), "SELECT ';' /* a */ , 2");
        assert_eq!(body("SELECT $$ ; $$;"), "SELECT $$ ; $$");
        assert_eq!(body("SELECT a - 1"), "SELECT a - 1");
        assert_eq!(body(""), "");
    }

    #[test]
    fn multibyte_text_around_parameters_is_kept() {
        let (sql, _) = sqlite("SELECT '受注 :slot' AS \"受注\", 受注日 FROM 注文 WHERE d < :slot");
        assert_eq!(
            sql,
            "SELECT '受注 :slot' AS \"受注\", 受注日 FROM 注文 WHERE d < ?1"
        );
    }

    #[test]
    fn values_are_rfc3339_with_the_zone_offset() {
        let slot: Zoned = "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap();
        let params = Params {
            window_start: Some("2026-07-30T00:00:00.25+09:00[Asia/Tokyo]".parse().unwrap()),
            window_end: None,
            slot,
        };
        assert_eq!(
            params.rfc3339("slot").as_deref(),
            Some("2026-07-31T00:30:00+09:00")
        );
        assert_eq!(
            params.rfc3339("window_start").as_deref(),
            Some("2026-07-30T00:00:00.25+09:00")
        );
        assert_eq!(params.rfc3339("window_end"), None);
        let utc: Zoned = "2026-07-31T00:30:00+00:00[UTC]".parse().unwrap();
        assert_eq!(rfc3339(&utc), "2026-07-31T00:30:00+00:00");
    }
}
