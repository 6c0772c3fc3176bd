//! Splitting one report query into ranges of a column (`source.sql.partition`), so that
//! several database sessions can read it at once, as `pg_dump -j` does with tables.
//!
//! A query can be split when every row it returns comes from one row of its `FROM` clause:
//! one `SELECT` (a `WITH` before it is fine) without `GROUP BY`, `HAVING`, `DISTINCT`,
//! aggregates, window functions, `LIMIT`, `OFFSET` or `FETCH`, and not a `UNION`. Each range
//! is then the same query with `AND <column> >= <low> AND <column> < <high>` added to its
//! `WHERE`, so the column may be any column of the `FROM` clause, selected or not, and an
//! index on it serves every range. The ranges of a split cover every value exactly once
//! (adjacent ranges share their boundary, `>=` on one side and `<` on the other); rows whose
//! column is NULL go with the range written last (first when the query orders by the column
//! with `NULLS FIRST`, which `DESC` implies), where `ORDER BY column` puts them.
//!
//! The range of values to split comes from `SELECT min(column), max(column)` over the same
//! `FROM` and `WHERE` (without the `ORDER BY`, so PostgreSQL answers from an index when there
//! is one). Pure text in, text out: the sessions, the snapshot and the reading are the
//! source's.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, GroupByExpr, OrderByKind, OrderBySort, Query, SelectItem,
    SetExpr, Statement, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Aggregate functions of PostgreSQL (its documentation's "Aggregate Functions" chapter):
/// a query using one returns one row per group, which a split would repeat per range.
const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "grouping",
    "json_agg",
    "json_agg_strict",
    "json_arrayagg",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "json_objectagg",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "max",
    "min",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

/// A query that can be read in ranges of one column.
#[derive(Clone, Debug)]
pub struct SplitQuery {
    query: Query,
    column: Expr,
    /// The query's `ORDER BY` starts with the column descending: ranges are written from
    /// the highest.
    pub descending: bool,
    /// Rows whose column is NULL come first (`NULLS FIRST`, or `DESC` without `NULLS LAST`).
    pub nulls_first: bool,
}

/// One range of a split, in the order it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range<B> {
    /// `column >= low` (none: no lower bound).
    pub low: Option<B>,
    /// `column < high` (none: no upper bound).
    pub high: Option<B>,
    /// Rows whose column is NULL belong here too.
    pub nulls: bool,
}

/// Parses `column` (a column name, optionally qualified: `id`, `o.created_at`, `"Order Id"`).
pub fn parse_column(column: &str) -> Result<Expr, String> {
    let expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(column)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map_err(|_| not_a_column(column))?;
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Ok(expr),
        _ => Err(not_a_column(column)),
    }
}

fn not_a_column(column: &str) -> String {
    format!(
        "`{column}` is not a column name: give one column of the query's FROM clause, e.g. `id` \
         or `o.created_at` (an integer, date or timestamp column, ideally indexed)"
    )
}

impl SplitQuery {
    /// Checks that `sql` (PostgreSQL, parameters already inlined or replaced by literals)
    /// can be split on `column`; the reason in words when it cannot.
    pub fn parse(sql: &str, column: &str) -> Result<SplitQuery, String> {
        let column = parse_column(column)?;
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .map_err(|e| format!("the query cannot be split: {e}"))?;
        let [Statement::Query(query)] = statements.as_slice() else {
            return Err("the query cannot be split: it is not one SELECT".into());
        };
        let query = (**query).clone();
        let cannot = |why: &str| Err(format!("a query {why} cannot be split into ranges"));
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return cannot("with LIMIT, OFFSET or FETCH");
        }
        let SetExpr::Select(select) = query.body.as_ref() else {
            return cannot("that is not one plain SELECT (UNION, VALUES, ...)");
        };
        if select.distinct.is_some() {
            return cannot("with DISTINCT");
        }
        if !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            || select.having.is_some()
        {
            return cannot("with GROUP BY or HAVING");
        }
        if !select.named_window.is_empty() {
            return cannot("with a WINDOW clause");
        }
        if select.from.is_empty() {
            return cannot("without FROM");
        }
        let mut finder = Aggregates::default();
        for item in &select.projection {
            if let ControlFlow::Break(what) = item.visit(&mut finder) {
                return Err(format!(
                    "a query with {what} in its select list cannot be split into ranges (one \
                     row per group or window would come back once per range)"
                ));
            }
        }
        let (mut descending, mut nulls_first) = (false, false);
        if let Some(order) = &query.order_by
            && let OrderByKind::Expressions(exprs) = &order.kind
            && let Some(first) = exprs.first()
            && same_column(&first.expr, &column)
        {
            descending = matches!(first.options.sort, Some(OrderBySort::Desc));
            // PostgreSQL: NULLs sort as larger than any value unless told otherwise.
            nulls_first = first.options.nulls_first.unwrap_or(descending);
        }
        Ok(SplitQuery {
            query,
            column,
            descending,
            nulls_first,
        })
    }

    /// The column as SQL.
    pub fn column_sql(&self) -> String {
        self.column.to_string()
    }

    /// `SELECT min(column), max(column)` over the query's `FROM` and `WHERE`, without its
    /// `ORDER BY`.
    pub fn bounds_sql(&self) -> String {
        let mut query = self.query.clone();
        query.order_by = None;
        let SetExpr::Select(select) = query.body.as_mut() else {
            unreachable!("checked by parse")
        };
        let column = self.column_sql();
        select.projection = ["min", "max"]
            .into_iter()
            .map(|f| SelectItem::UnnamedExpr(parse_expr(&format!("{f}({column})"))))
            .collect();
        query.to_string()
    }

    /// The query restricted to the rows where `predicate` holds (ANDed with its `WHERE`).
    pub fn restricted_sql(&self, predicate: &str) -> String {
        let mut query = self.query.clone();
        let SetExpr::Select(select) = query.body.as_mut() else {
            unreachable!("checked by parse")
        };
        let predicate = Expr::Nested(Box::new(parse_expr(predicate)));
        select.selection = Some(match select.selection.take() {
            Some(existing) => Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(existing))),
                op: BinaryOperator::And,
                right: Box::new(predicate),
            },
            None => predicate,
        });
        query.to_string()
    }

    /// The predicate of `range`, with `literal` writing a boundary as SQL.
    pub fn predicate<B>(&self, range: &Range<B>, literal: impl Fn(&B) -> String) -> String {
        let column = self.column_sql();
        let mut bounds = Vec::new();
        if let Some(low) = &range.low {
            bounds.push(format!("{column} >= {}", literal(low)));
        }
        if let Some(high) = &range.high {
            bounds.push(format!("{column} < {}", literal(high)));
        }
        let values = if bounds.is_empty() {
            format!("{column} IS NOT NULL")
        } else {
            bounds.join(" AND ")
        };
        if range.nulls {
            format!("{values} OR {column} IS NULL")
        } else {
            values
        }
    }

    /// The ranges splitting the values `low..=high` into at most `parts`, in the order they
    /// are written (see [`SplitQuery::descending`]); the NULLs go with the first or last one.
    pub fn ranges(&self, low: i64, high: i64, parts: usize) -> Vec<Range<i64>> {
        let mut ranges = ranges(low, high, parts);
        if self.descending {
            ranges.reverse();
        }
        let nulls_at = if self.nulls_first {
            0
        } else {
            ranges.len() - 1
        };
        ranges[nulls_at].nulls = true;
        ranges
    }
}

/// `low..=high` in at most `parts` ranges of (nearly) equal width, ascending: the first has no
/// lower bound and the last no upper bound, so values outside `low..=high` still fall in one.
fn ranges(low: i64, high: i64, parts: usize) -> Vec<Range<i64>> {
    let (low128, high128) = (i128::from(low), i128::from(high.max(low)));
    let width = high128 - low128 + 1;
    let parts = (parts.max(1) as i128).min(width);
    let bound = |k: i128| (low128 + width * k / parts) as i64;
    (0..parts)
        .map(|k| Range {
            low: (k > 0).then(|| bound(k)),
            high: (k + 1 < parts).then(|| bound(k + 1)),
            nulls: false,
        })
        .collect()
}

fn parse_expr(sql: &str) -> Expr {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| panic!("Ferry's own SQL `{sql}` does not parse: {e}"))
}

/// Whether an `ORDER BY` expression names the split column (as written, case-insensitively
/// for unquoted names).
fn same_column(expr: &Expr, column: &Expr) -> bool {
    let norm = |e: &Expr| {
        let idents = match e {
            Expr::Identifier(i) => vec![i.clone()],
            Expr::CompoundIdentifier(i) => i.clone(),
            _ => return None,
        };
        Some(
            idents
                .iter()
                .map(|i| match i.quote_style {
                    Some(_) => i.value.clone(),
                    None => i.value.to_lowercase(),
                })
                .collect::<Vec<_>>(),
        )
    };
    match (norm(expr), norm(column)) {
        (Some(a), Some(b)) => a == b || a.last() == b.last() && (a.len() == 1 || b.len() == 1),
        _ => false,
    }
}

/// Finds an aggregate or a window function outside subqueries.
#[derive(Default)]
struct Aggregates {
    depth: usize,
}

impl Visitor for Aggregates {
    type Break = String;

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<String> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        if let Expr::Function(Function {
            name,
            over,
            within_group,
            filter,
            ..
        }) = expr
        {
            let bare = name
                .0
                .last()
                .map(|p| p.to_string().trim_matches('"').to_lowercase())
                .unwrap_or_default();
            if over.is_some() {
                return ControlFlow::Break(format!("the window function `{name}(...) OVER`"));
            }
            if AGGREGATES.contains(&bare.as_str()) || !within_group.is_empty() || filter.is_some() {
                return ControlFlow::Break(format!("the aggregate `{name}(...)`"));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str, column: &str) -> SplitQuery {
        SplitQuery::parse(sql, column).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn ranges_cover_every_value_once_with_open_ends() {
        assert_eq!(
            ranges(1, 10, 3),
            vec![
                Range {
                    low: None,
                    high: Some(4),
                    nulls: false
                },
                Range {
                    low: Some(4),
                    high: Some(7),
                    nulls: false
                },
                Range {
                    low: Some(7),
                    high: None,
                    nulls: false
                },
            ]
        );
        // Fewer values than parts: one range per value.
        assert_eq!(ranges(5, 6, 4).len(), 2);
        assert_eq!(
            ranges(5, 5, 4),
            vec![Range {
                low: None,
                high: None,
                nulls: false
            }]
        );
        // The extremes of int8 do not overflow.
        let r = ranges(i64::MIN, i64::MAX, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].low, Some(i64::MIN / 2));
        assert_eq!(r[2].low, Some(0));
        assert_eq!(r[3].low, Some(i64::MAX / 2 + 1));
    }

    #[test]
    fn a_range_is_the_query_with_its_bounds_added_to_the_where_clause() {
        let q = split(
            "WITH recent AS (SELECT * FROM orders) SELECT o.id, o.total FROM recent o \
             WHERE o.total > 0 OR o.total IS NULL ORDER BY o.id",
            "o.id",
        );
        assert!(!q.descending && !q.nulls_first);
        let ranges = q.ranges(1, 100, 2);
        let p0 = q.predicate(&ranges[0], |b| b.to_string());
        let p1 = q.predicate(&ranges[1], |b| b.to_string());
        assert_eq!(p0, "o.id < 51");
        assert_eq!(p1, "o.id >= 51 OR o.id IS NULL");
        assert_eq!(
            q.restricted_sql(&p1),
            "WITH recent AS (SELECT * FROM orders) SELECT o.id, o.total FROM recent o \
             WHERE (o.total > 0 OR o.total IS NULL) AND (o.id >= 51 OR o.id IS NULL) ORDER BY o.id"
        );
        assert_eq!(
            q.bounds_sql(),
            "WITH recent AS (SELECT * FROM orders) SELECT min(o.id), max(o.id) FROM recent o \
             WHERE o.total > 0 OR o.total IS NULL"
        );
        // Without a WHERE, the bounds become it; a column outside the select list is fine.
        let q = split("SELECT name FROM customers", "id");
        assert_eq!(
            q.restricted_sql("id < 3"),
            "SELECT name FROM customers WHERE (id < 3)"
        );
    }

    #[test]
    fn a_descending_order_writes_the_highest_range_first_with_the_nulls() {
        let q = split("SELECT id FROM t ORDER BY ID DESC, name", "id");
        assert!(q.descending && q.nulls_first);
        let r = q.ranges(0, 9, 2);
        assert_eq!(r[0].low, Some(5));
        assert!(r[0].nulls && !r[1].nulls);
        let q = split("SELECT id FROM t ORDER BY id NULLS FIRST", "t.id");
        assert!(!q.descending && q.nulls_first);
        assert!(q.ranges(0, 9, 2)[0].nulls);
        // Ordered by something else: ascending ranges, NULLs last.
        let q = split("SELECT id FROM t ORDER BY name DESC", "id");
        assert!(!q.descending && !q.nulls_first);
        // A single range still carries the NULLs.
        let r = q.ranges(3, 3, 4);
        assert_eq!(
            q.predicate(&r[0], |b| b.to_string()),
            "id IS NOT NULL OR id IS NULL"
        );
    }

    #[test]
    fn queries_whose_rows_are_not_one_per_source_row_are_refused() {
        for (sql, why) in [
            ("SELECT count(*) FROM t", "aggregate `count(...)`"),
            ("SELECT id, sum(x) FROM t GROUP BY id", "GROUP BY"),
            ("SELECT DISTINCT id FROM t", "DISTINCT"),
            ("SELECT id FROM t LIMIT 10", "LIMIT"),
            ("SELECT id FROM t UNION SELECT id FROM u", "plain SELECT"),
            (
                "SELECT id, rank() OVER (ORDER BY x) FROM t",
                "window function",
            ),
            ("SELECT 1", "without FROM"),
            ("DELETE FROM t", "not one SELECT"),
        ] {
            let e = SplitQuery::parse(sql, "id").unwrap_err();
            assert!(e.contains(why), "{sql}: {e}");
        }
        // An aggregate inside a scalar subquery is per row: fine.
        split(
            "SELECT id, (SELECT count(*) FROM items i WHERE i.order_id = o.id) FROM orders o",
            "o.id",
        );
    }

    #[test]
    fn the_column_must_be_a_column_name() {
        for ok in ["id", "o.created_at", "\"Order Id\"", "public.orders.id"] {
            parse_column(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "id + 1", "id; DROP TABLE t", "lower(name)", "1"] {
            let e = parse_column(bad).unwrap_err();
            assert!(e.contains("is not a column name"), "{bad}: {e}");
        }
    }
}
