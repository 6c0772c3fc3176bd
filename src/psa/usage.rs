//! Usage rows for PSA sync: a SQL query returning `customer`, `product`, `quantity`, read
//! through the same sources as reports (SQLite, PostgreSQL). Many mappings usually share one
//! query (the PSA target's general settings): it runs once per sync cycle, and each mapping
//! takes its customer's rows.

use std::collections::BTreeMap;

use jiff::Zoned;
use tokio::sync::mpsc;

use crate::api::SqlSource;
use crate::export::Value;
use crate::secrets::FileSecrets;
use crate::source::{Params, SourceEvent, stream_sql};
use crate::{Error, Result};

/// Quantities per customer, then per product (summed when the query returns several rows).
pub type Usage = BTreeMap<String, BTreeMap<String, f64>>;

/// Runs the usage query of `source` (in `namespace`, for its secrets) with `:slot` bound to
/// `slot` (and no window), and sums the quantities per customer and product.
pub async fn read_usage(
    source: &SqlSource,
    namespace: &str,
    secrets: &FileSecrets,
    slot: &Zoned,
) -> Result<Usage> {
    let url = crate::source::database_url(source, namespace, secrets)?
        .ok_or_else(|| Error::Source("no usage database configured".into()))?;
    let params = Params {
        window_start: None,
        window_end: None,
        slot: slot.clone(),
    };
    let (tx, mut rx) = mpsc::channel(4);
    let query = source.query.clone();
    let url = url.to_string();
    let reader = tokio::spawn(async move { stream_sql(&url, &query, None, &params, tx).await });
    let mut usage = Usage::new();
    let mut columns: Option<(usize, usize, usize)> = None;
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Columns(names) => {
                let find = |want: &str| {
                    names
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(want))
                        .ok_or_else(|| {
                            Error::Source(format!(
                                "the usage query must return a `{want}` column (it returns {})",
                                names.join(", ")
                            ))
                        })
                };
                columns = Some((find("customer")?, find("product")?, find("quantity")?));
            }
            SourceEvent::Rows(rows) => {
                let (c, p, q) =
                    columns.ok_or_else(|| Error::Source("rows before columns".into()))?;
                for row in rows.iter() {
                    let customer = text(&row[c]);
                    let product = text(&row[p]);
                    let Some(quantity) = number(&row[q]) else {
                        return Err(Error::Source(format!(
                            "usage row for customer `{customer}`, product `{product}`: the quantity \
                             is not a number"
                        )));
                    };
                    *usage
                        .entry(customer)
                        .or_default()
                        .entry(product)
                        .or_default() += quantity;
                }
            }
            // `stream_sql` sends rows: records come only to a consumer that gave an encoding.
            SourceEvent::Records(_) => {
                return Err(Error::Source(
                    "the usage query sent encoded records instead of rows".into(),
                ));
            }
        }
    }
    reader
        .await
        .map_err(|e| Error::Source(format!("the usage query task failed: {e}")))??;
    Ok(usage)
}

fn text(v: &Value) -> String {
    let mut out = String::new();
    v.to_text(&jiff::tz::TimeZone::UTC, &mut out);
    out
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(s) | Value::Text(s) => s.trim().parse().ok(),
        Value::Null => Some(0.0),
        _ => None,
    }
}
