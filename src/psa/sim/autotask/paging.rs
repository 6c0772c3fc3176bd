//! Autotask query pages: at most `MaxRecords` items in id order, and the absolute
//! `nextPageUrl` that carries the search and where the next page starts.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fields::{Kind, Record, render};
use super::filters::Search;

/// Where a page starts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Cursor {
    Start,
    /// Ids greater than this one.
    After(i64),
    /// The last page of ids less than this one.
    Before(i64),
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn page_url(api_base: &str, kind: Kind, search: &Search, cursor: Cursor) -> Value {
    let (dir, paging) = match cursor {
        Cursor::Before(id) => (
            "prev",
            json!({"pageSize": search.max_records, "beforeId": id}),
        ),
        Cursor::After(id) => (
            "next",
            json!({"pageSize": search.max_records, "afterId": id}),
        ),
        Cursor::Start => ("next", json!({"pageSize": search.max_records})),
    };
    Value::from(format!(
        "{api_base}/{}/query/{dir}?paging={}&search={}",
        kind.path(),
        encode(&paging.to_string()),
        encode(&search.raw.to_string())
    ))
}

pub(super) fn query_page<R: Record>(
    rows: &BTreeMap<i64, R>,
    kind: Kind,
    search: &Search,
    cursor: Cursor,
    api_base: &str,
) -> Value {
    let hit = |r: &&R| search.cond.matches(*r);
    let size = search.max_records;
    let (page, more_before, more_after): (Vec<&R>, bool, bool) = match cursor {
        Cursor::Start | Cursor::After(_) => {
            let from = match cursor {
                Cursor::After(id) => Bound::Excluded(id),
                _ => Bound::Unbounded,
            };
            let mut found = rows
                .range((from, Bound::Unbounded))
                .map(|(_, r)| r)
                .filter(hit);
            let page: Vec<&R> = found.by_ref().take(size).collect();
            let more_after = found.next().is_some();
            let more_before = match (cursor, page.first()) {
                (Cursor::After(_), Some(first)) => {
                    rows.range(..first.id()).map(|(_, r)| r).any(|r| hit(&r))
                }
                _ => false,
            };
            (page, more_before, more_after)
        }
        Cursor::Before(id) => {
            let mut found = rows.range(..id).rev().map(|(_, r)| r).filter(hit);
            let mut page: Vec<&R> = found.by_ref().take(size).collect();
            page.reverse();
            let more_before = found.next().is_some();
            let more_after = page.last().is_some_and(|last| {
                rows.range((Bound::Excluded(last.id()), Bound::Unbounded))
                    .map(|(_, r)| r)
                    .any(|r| hit(&r))
            });
            (page, more_before, more_after)
        }
    };
    let prev = match page.first() {
        Some(first) if more_before => page_url(api_base, kind, search, Cursor::Before(first.id())),
        _ => Value::Null,
    };
    let next = match page.last() {
        Some(last) if more_after => page_url(api_base, kind, search, Cursor::After(last.id())),
        _ => Value::Null,
    };
    let items: Vec<Value> = page
        .iter()
        .map(|r| {
            let mut item = render(kind, *r, search.include.as_deref());
            // Queries list attachments without their bytes.
            if let Some(o) = item.as_object_mut() {
                for name in kind.unqueryable() {
                    if *name == "data" {
                        o.remove(*name);
                    }
                }
            }
            item
        })
        .collect();
    json!({
        "items": items,
        "pageDetails": {
            "count": items.len(),
            "requestCount": size,
            "prevPageUrl": prev,
            "nextPageUrl": next,
        }
    })
}
