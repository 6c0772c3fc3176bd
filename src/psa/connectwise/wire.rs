//! How ConnectWise writes things: the `conditions` language ([`Conditions`], [`quote`]),
//! dates ([`cw_date`]) and numbers ([`number`]), the `{id, identifier, name}` reference, and the
//! status records the client reads once and keeps ([`CompanyStatus`], [`BoardStatus`]).

use serde::Deserialize;
use serde_json::{Value, json};

/// A company status: `inactiveFlag` decides whether its companies are usable.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStatus {
    /// Id.
    pub id: i64,
    /// The tenant's name for it.
    #[serde(default)]
    pub name: String,
    /// Companies in it are inactive.
    #[serde(default)]
    pub inactive_flag: bool,
}

/// A ticket status of one board.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardStatus {
    /// Id.
    pub id: i64,
    /// The tenant's name for it.
    #[serde(default)]
    pub name: String,
    /// Tickets in it are closed.
    #[serde(default)]
    pub closed_status: bool,
    /// No longer selectable.
    #[serde(default)]
    pub inactive: bool,
    /// The status new tickets get.
    #[serde(default)]
    pub default_flag: bool,
    /// Position in the board's list.
    #[serde(default)]
    pub sort_order: i64,
}

/// A ConnectWise `conditions` expression, clauses joined with `and`.
#[derive(Clone, Debug, Default)]
pub struct Conditions(Vec<String>);

impl Conditions {
    /// No clause yet.
    pub fn new() -> Self {
        Conditions::default()
    }

    /// `field="value"`, the value quoted by [`quote`].
    pub fn eq_str(mut self, field: &str, value: &str) -> Self {
        self.0.push(format!("{field}={}", quote(value)));
        self
    }

    /// `field=123`.
    pub fn eq_int(mut self, field: &str, value: i64) -> Self {
        self.0.push(format!("{field}={value}"));
        self
    }

    /// `field=True` / `field=False`.
    pub fn eq_bool(mut self, field: &str, value: bool) -> Self {
        self.0
            .push(format!("{field}={}", if value { "True" } else { "False" }));
        self
    }

    /// `field=null`.
    pub fn is_null(mut self, field: &str) -> Self {
        self.0.push(format!("{field}=null"));
        self
    }

    /// The expression.
    pub fn build(&self) -> String {
        self.0.join(" and ")
    }
}

/// A string literal of the conditions language: in double quotes, `\` and `"` escaped with a
/// backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A date as ConnectWise datetimes are written: `2026-11-01T00:00:00Z`.
pub fn cw_date(date: jiff::civil::Date) -> String {
    format!("{date}T00:00:00Z")
}

/// A JSON number, integral when the value is (`25`, not `25.0`).
pub(crate) fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Ref {
    pub(super) id: Option<i64>,
    pub(super) identifier: Option<String>,
    pub(super) name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_in_conditions_are_quoted_and_escaped() {
        assert_eq!(quote("ACME01"), r#""ACME01""#);
        assert_eq!(quote(r#"Say "hi" \o/"#), r#""Say \"hi\" \\o/""#);
        assert_eq!(
            Conditions::new().eq_str("identifier", "ACME01").build(),
            r#"identifier="ACME01""#
        );
        assert_eq!(
            Conditions::new()
                .eq_str("product/identifier", "EP-PROT")
                .is_null("cancelledDate")
                .build(),
            r#"product/identifier="EP-PROT" and cancelledDate=null"#
        );
        assert_eq!(
            Conditions::new()
                .eq_int("company/id", 250)
                .eq_str("summary", "Usage \"sync\" failed")
                .eq_bool("closedFlag", false)
                .build(),
            r#"company/id=250 and summary="Usage \"sync\" failed" and closedFlag=False"#
        );
    }

    #[test]
    fn dates_and_quantities_are_written_as_connectwise_expects() {
        assert_eq!(
            cw_date(jiff::civil::date(2026, 11, 1)),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(number(25.0), json!(25));
        assert_eq!(number(2.5), json!(2.5));
    }
}
