//! Ticket picklists (`Tickets/entityInformation/fields`): queues, statuses and priorities,
//! chosen by label (or id) among the active entries.

use serde_json::Value;

use crate::{Error, Result};

/// One picklist entry: id, label, active.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Pick {
    pub(super) id: i64,
    pub(super) label: String,
    pub(super) active: bool,
}

/// The ticket picklists a create needs.
#[derive(Clone, Debug, Default)]
pub(super) struct TicketPicklists {
    pub(super) queues: Vec<Pick>,
    pub(super) statuses: Vec<Pick>,
    pub(super) priorities: Vec<Pick>,
}

impl TicketPicklists {
    /// From `{"fields":[{"name","picklistValues":[{"value","label","isActive"}]}]}`.
    pub(super) fn parse(v: &Value) -> TicketPicklists {
        let picks = |name: &str| -> Vec<Pick> {
            v.get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|f| {
                    f.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .filter_map(|f| f.get("picklistValues").and_then(Value::as_array))
                .flatten()
                .filter_map(|p| {
                    let id = match p.get("value")? {
                        Value::String(s) => s.trim().parse().ok()?,
                        Value::Number(n) => n.as_i64()?,
                        _ => return None,
                    };
                    Some(Pick {
                        id,
                        label: p
                            .get("label")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        active: p.get("isActive").and_then(Value::as_bool).unwrap_or(true),
                    })
                })
                .collect()
        };
        TicketPicklists {
            queues: picks("queueID"),
            statuses: picks("status"),
            priorities: picks("priority"),
        }
    }
}

/// The active entry labelled `wanted` (any case; a number also matches an id).
pub(super) fn resolve(picks: &[Pick], what: &str, wanted: &str) -> Result<i64> {
    let wanted = wanted.trim();
    let by_label = picks
        .iter()
        .find(|p| p.active && p.label.trim().eq_ignore_ascii_case(wanted));
    let by_id = || {
        let id: i64 = wanted.parse().ok()?;
        picks.iter().find(|p| p.active && p.id == id)
    };
    match by_label.or_else(by_id) {
        Some(p) => Ok(p.id),
        None => {
            let known: Vec<&str> = picks
                .iter()
                .filter(|p| p.active)
                .map(|p| p.label.as_str())
                .collect();
            Err(Error::Psa(format!(
                "Autotask: no active ticket {what} named \"{wanted}\" (active: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picklists_resolve_by_label_or_id_and_name_the_choices_when_missing() {
        let v = json!({"fields": [
            {"name": "queueID", "picklistValues": [
                {"value": "29683354", "label": "Client Portal", "isActive": true},
                {"value": "29683355", "label": "Old Queue", "isActive": false},
            ]},
            {"name": "status", "picklistValues": [{"value": "1", "label": "New"}, {"value": 5, "label": "Complete"}]},
        ]});
        let p = TicketPicklists::parse(&v);
        assert_eq!(
            resolve(&p.queues, "queue", "client portal").unwrap(),
            29683354
        );
        assert_eq!(resolve(&p.queues, "queue", "29683354").unwrap(), 29683354);
        assert_eq!(resolve(&p.statuses, "status", "New").unwrap(), 1);
        let e = resolve(&p.queues, "queue", "Old Queue")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Autotask: no active ticket queue named \"Old Queue\" (active: Client Portal)"
        );
        let e = resolve(&p.priorities, "priority", "Medium")
            .unwrap_err()
            .to_string();
        assert!(e.contains("(active: none)"), "{e}");
    }
}
