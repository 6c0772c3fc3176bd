//! The check `ferry validate` makes of a report query, with a maintained SQL parser
//! (`sqlparser`, in the source's dialect) rather than string matching: the query must parse,
//! and be exactly one statement that only reads (SELECT, WITH ... SELECT, VALUES, TABLE, and
//! for SQLite a PRAGMA that reads). Anything else is reported at the offending token, so a
//! `DROP TABLE` or a typo fails at review time, not at night. The sources still refuse a
//! writing statement when they run it (SQLite's `sqlite3_stmt_readonly`, PostgreSQL's and
//! MySQL's read-only transactions): this is the first line, not the only one.

use std::ops::ControlFlow;

use sqlparser::ast::{Select, Spanned, Statement, Visit, Visitor};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use super::params::{Dialect, rewrite_named};

/// Why a query is refused, and where: a character offset into the query text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryProblem {
    /// Offset (in characters) of the offending token in the query.
    pub offset: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// SQLite pragmas that take an argument and only read (the schema, the integrity checks).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

const READ_HINT: &str = "a report query only reads: write one SELECT (or WITH ... SELECT, VALUES)";

/// Checks `query` for `dialect`; `None` (the database URL is in a Secret, so unknown here)
/// accepts what PostgreSQL, SQLite or MySQL accepts, and reports PostgreSQL's objection.
/// Named parameters (`:window_start`...) are checked elsewhere; a query whose parameters do
/// not scan is left to that check.
pub fn check_query(query: &str, dialect: Option<Dialect>) -> Result<(), QueryProblem> {
    match dialect {
        Some(d) => check_in(query, d),
        None => {
            let postgres = check_in(query, Dialect::Postgres);
            if postgres.is_err()
                && (check_in(query, Dialect::Sqlite).is_ok()
                    || check_in(query, Dialect::MySql).is_ok())
            {
                return Ok(());
            }
            postgres
        }
    }
}

fn dialect_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "SQLite",
        Dialect::Postgres => "PostgreSQL",
        Dialect::MySql => "MySQL",
    }
}

/// `query` with each named parameter (`:name`) replaced by a string literal of the same
/// length, so that a SQL parser accepts it and offsets into it stay true; `None` when the
/// parameters do not scan (left to their own check).
pub fn with_placeholder_literals(query: &str, dialect: Dialect) -> Option<String> {
    rewrite_named(query, dialect, |_, name| {
        format!("'{}'", "_".repeat(name.len().saturating_sub(1)))
    })
    .ok()
    .map(|r| r.sql)
}

fn check_in(query: &str, dialect: Dialect) -> Result<(), QueryProblem> {
    let Some(sql) = with_placeholder_literals(query, dialect) else {
        return Ok(());
    };
    let (postgres, sqlite, mysql) = (PostgreSqlDialect {}, SQLiteDialect {}, MySqlDialect {});
    let parser_dialect: &dyn sqlparser::dialect::Dialect = match dialect {
        Dialect::Postgres => &postgres,
        Dialect::Sqlite => &sqlite,
        Dialect::MySql => &mysql,
    };
    if dialect == Dialect::Sqlite
        && sql.to_ascii_lowercase().contains("pragma")
        && let Some(pragma) = check_pragma(&sql, parser_dialect)
    {
        return pragma;
    }
    let statements = Parser::new(parser_dialect)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| syntax_problem(&sql, e, dialect))?;
    // Where statements start is needed only to locate a problem: tokenized again only then.
    let starts = || statement_starts(&sql, parser_dialect);
    match statements.as_slice() {
        [] => Err(QueryProblem {
            offset: 0,
            message: format!("the query holds no statement (only comments?); {READ_HINT}"),
        }),
        [statement] => check_statement(&sql, statement, dialect, || {
            starts().first().copied().unwrap_or(0)
        }),
        [_, ..] => Err(QueryProblem {
            offset: starts().get(1).copied().unwrap_or(0),
            message: format!(
                "the query holds {} statements; a report runs exactly one: remove the `;` and what follows",
                statements.len()
            ),
        }),
    }
}

/// SQLite's `PRAGMA`, checked on its tokens: sqlparser parses only pragmas whose argument is a
/// literal, not `PRAGMA table_info(orders)`. `None` when the query is not a pragma.
/// `PRAGMA name` and `PRAGMA name(argument)` of a pragma that only reads are accepted;
/// `PRAGMA name = value` (and the argument form of any other pragma) sets something.
fn check_pragma(
    sql: &str,
    dialect: &dyn sqlparser::dialect::Dialect,
) -> Option<Result<(), QueryProblem>> {
    let tokens = Tokenizer::new(dialect, sql).tokenize_with_location().ok()?;
    let mut tokens = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF));
    let first = tokens.next()?;
    match &first.token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("pragma") => {}
        _ => return None,
    }
    let start = offset_of(sql, first.span.start);
    let rest: Vec<_> = tokens.collect();
    // `[schema.]name`
    let mut i = 0;
    let mut name = String::new();
    while let Some(Token::Word(w)) = rest.get(i).map(|t| &t.token) {
        name = w.value.to_ascii_lowercase();
        i += 1;
        if rest.get(i).map(|t| &t.token) == Some(&Token::Period) {
            i += 1;
        } else {
            break;
        }
    }
    let statement = sql.trim().trim_end_matches(';').trim();
    let sets = || {
        Some(Err(QueryProblem {
            offset: start,
            message: format!("`{statement}` sets a value, which changes the database; {READ_HINT}"),
        }))
    };
    if name.is_empty() {
        return Some(Err(QueryProblem {
            offset: rest.first().map_or(start, |t| offset_of(sql, t.span.start)),
            message: "not valid SQLite SQL: expected a pragma name after PRAGMA".into(),
        }));
    }
    let after: Vec<&Token> = rest[i..]
        .iter()
        .map(|t| &t.token)
        .filter(|t| **t != Token::SemiColon)
        .collect();
    match after.first() {
        None => Some(Ok(())),
        Some(Token::Eq) => sets(),
        Some(Token::LParen) if READ_PRAGMAS.contains(&name.as_str()) => {
            if after.last() == Some(&&Token::RParen) {
                Some(Ok(()))
            } else {
                Some(Err(QueryProblem {
                    offset: start,
                    message: format!("not valid SQLite SQL: `PRAGMA {name}(...)` is not closed"),
                }))
            }
        }
        Some(Token::LParen) => sets(),
        Some(_) => Some(Err(QueryProblem {
            offset: offset_of(sql, rest[i].span.start),
            message: format!(
                "not valid SQLite SQL: expected `=`, `(` or the end after `PRAGMA {name}`"
            ),
        })),
    }
}

/// A parse error in words, at its token: sqlparser ends its messages with
/// ` at Line: L, Column: C`.
fn syntax_problem(sql: &str, e: ParserError, dialect: Dialect) -> QueryProblem {
    let text = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return QueryProblem {
                offset: 0,
                message: "the query nests too deeply to check (more than 50 levels)".into(),
            };
        }
    };
    // The end of the query, where a statement that stops too early is reported.
    let end = sql.trim_end().chars().count();
    let (what, mut offset) = match text.rsplit_once(" at Line: ") {
        Some((what, at)) => {
            let mut parts = at.split(", Column: ");
            let line = parts
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            let column = parts
                .next()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0);
            let offset = if line == 0 {
                end
            } else {
                offset_of(sql, Location { line, column })
            };
            (what.to_string(), offset)
        }
        None => (text, end),
    };
    // `Expected: end of statement, found: orders` -> `expected end of statement, found `orders``
    let what = match what
        .strip_prefix("Expected: ")
        .and_then(|w| w.split_once(", found: "))
    {
        Some((expected, "EOF")) => {
            offset = end;
            format!("the query ends too early: expected {expected}")
        }
        Some((expected, found)) => format!("expected {expected}, found `{found}`"),
        None => what,
    };
    QueryProblem {
        offset,
        message: format!("not valid {} SQL: {what}", dialect_name(dialect)),
    }
}

/// The character offset of a 1-based line and column.
fn offset_of(sql: &str, at: Location) -> usize {
    let mut offset = 0;
    for (i, line) in sql.split_inclusive('\n').enumerate() {
        if i + 1 == at.line as usize {
            return offset
                + (at.column as usize)
                    .saturating_sub(1)
                    .min(line.chars().count());
        }
        offset += line.chars().count();
    }
    offset
}

/// The offset of each statement's first token (statements end at a top-level `;`).
fn statement_starts(sql: &str, dialect: &dyn sqlparser::dialect::Dialect) -> Vec<usize> {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize_with_location() else {
        return vec![0];
    };
    let mut starts = Vec::new();
    let mut in_statement = false;
    for t in tokens {
        match t.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => in_statement = false,
            _ if !in_statement => {
                in_statement = true;
                starts.push(offset_of(sql, t.span.start));
            }
            _ => {}
        }
    }
    starts
}

/// The statement's leading keywords as written (`DROP TABLE`, `INSERT`), for messages.
fn leading_words(sql: &str, start: usize) -> String {
    let words: Vec<String> = sql
        .chars()
        .skip(start)
        .collect::<String>()
        .split_whitespace()
        .take(2)
        .map(|w| {
            w.chars()
                .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
                .collect::<String>()
                .to_ascii_uppercase()
        })
        .take_while(|w| !w.is_empty())
        .collect();
    match words.first().map(String::as_str) {
        Some("CREATE" | "DROP" | "ALTER") => words.join(" "),
        Some(first) => first.to_string(),
        None => "this statement".to_string(),
    }
}

fn check_statement(
    sql: &str,
    statement: &Statement,
    dialect: Dialect,
    start: impl Fn() -> usize,
) -> Result<(), QueryProblem> {
    match statement {
        Statement::Query(_) => {}
        Statement::Pragma { name, value, is_eq } if dialect == Dialect::Sqlite => {
            let pragma = name.to_string().to_ascii_lowercase();
            let pragma = pragma.rsplit('.').next().unwrap_or(&pragma);
            let reads = !is_eq && (value.is_none() || READ_PRAGMAS.contains(&pragma));
            if !reads {
                return Err(QueryProblem {
                    offset: start(),
                    message: format!(
                        "`PRAGMA {pragma}` with a value changes the database's settings; {READ_HINT}"
                    ),
                });
            }
            return Ok(());
        }
        _ => {
            let start = start();
            return Err(QueryProblem {
                offset: start,
                message: format!(
                    "{} is not a read statement; {READ_HINT}",
                    leading_words(sql, start)
                ),
            });
        }
    }
    let mut writes = Writes { sql, start: &start };
    match statement.visit(&mut writes) {
        ControlFlow::Break(problem) => Err(problem),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Finds what writes inside a read statement: a data-modifying CTE (`WITH x AS (DELETE ...)`),
/// `SELECT ... INTO` (creates a table), `FOR UPDATE` (locks rows).
struct Writes<'a> {
    sql: &'a str,
    /// Where the statement starts, for problems without a span of their own.
    start: &'a dyn Fn() -> usize,
}

impl Writes<'_> {
    fn at(&self, span: sqlparser::tokenizer::Span, message: String) -> ControlFlow<QueryProblem> {
        let offset = if span.start.line == 0 {
            (self.start)()
        } else {
            offset_of(self.sql, span.start)
        };
        ControlFlow::Break(QueryProblem { offset, message })
    }
}

impl Visitor for Writes<'_> {
    type Break = QueryProblem;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<QueryProblem> {
        if matches!(statement, Statement::Query(_)) {
            return ControlFlow::Continue(());
        }
        let kind = match statement {
            Statement::Insert(_) => "INSERT",
            Statement::Update(_) => "UPDATE",
            Statement::Delete(_) => "DELETE",
            Statement::Merge(_) => "MERGE",
            _ => "a statement",
        };
        self.at(
            statement.span(),
            format!("the query runs {kind}, which changes the database; {READ_HINT}"),
        )
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<QueryProblem> {
        match select.into.as_ref().and_then(|into| into.targets.first()) {
            Some(target) => self.at(
                target.span(),
                format!("SELECT ... INTO creates the table `{target}`; {READ_HINT}"),
            ),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<QueryProblem> {
        match query.locks.first() {
            Some(lock) => self.at(
                query.span(),
                format!("`{lock}` locks rows, which a read-only report cannot do: remove it"),
            ),
            None => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str, dialect: Dialect) -> QueryProblem {
        check_query(sql, Some(dialect)).expect_err(sql)
    }

    #[test]
    fn selects_with_parameters_casts_and_comments_are_read_statements() {
        for sql in [
            "SELECT id, total FROM orders WHERE updated_at >= :window_start::timestamptz",
            "-- orders\nWITH o AS (SELECT * FROM orders) SELECT count(*) FROM o;",
            "VALUES (1, 'a'), (2, 'b')",
            "SELECT $$it's: :not_a_param$$ AS x",
        ] {
            assert_eq!(check_query(sql, Some(Dialect::Postgres)), Ok(()), "{sql}");
        }
        for sql in [
            "SELECT * FROM order_items WHERE julianday(updated_at) >= julianday(:window_start)",
            "PRAGMA table_info(orders)",
            "SELECT [odd:name] FROM t",
        ] {
            assert_eq!(check_query(sql, Some(Dialect::Sqlite)), Ok(()), "{sql}");
        }
    }

    #[test]
    fn a_writing_statement_is_refused_at_its_first_keyword() {
        let p = refused("\n  DROP TABLE orders", Dialect::Sqlite);
        assert_eq!(p.offset, 3);
        assert!(
            p.message.starts_with("DROP TABLE is not a read statement"),
            "{}",
            p.message
        );
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
        ] {
            assert!(
                refused(sql, Dialect::Postgres)
                    .message
                    .contains("not a read statement")
            );
        }
        let p = refused("PRAGMA journal_mode = WAL", Dialect::Sqlite);
        assert!(
            p.message
                .contains("`PRAGMA journal_mode = WAL` sets a value"),
            "{}",
            p.message
        );
        let p = refused("PRAGMA user_version = 3", Dialect::Sqlite);
        assert!(p.message.contains("PRAGMA user_version"), "{}", p.message);
    }

    #[test]
    fn writes_hidden_inside_a_select_are_found() {
        let sql = "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone";
        let p = refused(sql, Dialect::Postgres);
        assert!(p.message.contains("runs DELETE"), "{}", p.message);
        let p = refused("SELECT * INTO backup FROM orders", Dialect::Postgres);
        assert!(
            p.message.contains("creates the table `backup`"),
            "{}",
            p.message
        );
        assert_eq!(p.offset, "SELECT * INTO ".len());
        let p = refused("SELECT * FROM orders FOR UPDATE", Dialect::Postgres);
        assert!(p.message.contains("locks rows"), "{}", p.message);
    }

    #[test]
    fn a_second_statement_is_located_where_it_starts() {
        let sql = "SELECT 1;\nSELECT 2";
        let p = refused(sql, Dialect::Sqlite);
        assert_eq!(p.offset, "SELECT 1;\n".len());
        assert!(p.message.contains("2 statements"), "{}", p.message);
    }

    #[test]
    fn a_syntax_error_is_located_at_the_unexpected_token() {
        let sql = "SELECT id\nFROM orders\nWHERE total = = 1";
        let p = refused(sql, Dialect::Sqlite);
        assert!(
            p.message.starts_with("not valid SQLite SQL: expected"),
            "{}",
            p.message
        );
        let line3 = "SELECT id\nFROM orders\n".len();
        assert!(p.offset >= line3, "{p:?}");
        let p = refused("SELECT id FROM orders WHERE", Dialect::Postgres);
        assert!(p.message.contains("ends too early"), "{}", p.message);
        assert_eq!(p.offset, "SELECT id FROM orders WHERE".len());
    }

    #[test]
    fn mysql_queries_are_checked_in_mysqls_dialect() {
        for sql in [
            "SELECT `order id`, total FROM `orders` WHERE created_at >= :window_start # today",
            "SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, COUNT(*) FROM orders GROUP BY 1",
            "SELECT * FROM orders LIMIT 10, 20",
        ] {
            assert_eq!(check_query(sql, Some(Dialect::MySql)), Ok(()), "{sql}");
        }
        let p = refused("SELECT 1;\nUPDATE orders SET total = 0", Dialect::MySql);
        assert!(p.message.contains("2 statements"), "{}", p.message);
        let p = refused("\nREPLACE INTO orders VALUES (1)", Dialect::MySql);
        assert_eq!(p.offset, 1);
        assert!(p.message.contains("not a read statement"), "{}", p.message);
        let p = refused("SELECT * FROM orders FOR UPDATE", Dialect::MySql);
        assert!(p.message.contains("locks rows"), "{}", p.message);
        let p = refused("SELECT * FROM orders WHERE", Dialect::MySql);
        assert!(
            p.message.starts_with("not valid MySQL SQL"),
            "{}",
            p.message
        );
    }

    #[test]
    fn a_secret_url_accepts_what_either_dialect_accepts() {
        assert_eq!(
            check_query("SELECT `a b` FROM t # mysql only", None),
            Ok(())
        );
        assert_eq!(check_query("PRAGMA table_info(t)", None), Ok(()));
        assert!(check_query("DROP TABLE t", None).is_err());
    }
}
