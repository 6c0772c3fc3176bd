//! Status conditions, typed. Every kind's status carries `Ready` (the resource is valid and
//! applied) and `Synced` (its last run, delivery or PSA sync succeeded), in the Kubernetes
//! style: setting one keeps its `lastTransitionTime` while its truth value holds.

use serde_json::Value;

use crate::api::Condition;

/// Which condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The resource is valid and applied to the state.
    Ready,
    /// The last run, delivery or PSA sync of the resource succeeded.
    Synced,
    /// A DeliveryTarget's server answered the last check (`ferry check`, periodic): login,
    /// directory and a probe delivered and removed, or the SMTP relay up to AUTH.
    Reachable,
    /// A ReportSchedule's query prepared on its database at the last check, with the
    /// declared columns in its result.
    SourceReady,
}

/// A condition's truth value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// It holds.
    True,
    /// It does not.
    False,
    /// Not known yet (nothing ran).
    Unknown,
}

impl ConditionType {
    /// The name in `status.conditions[].type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Synced => "Synced",
            ConditionType::Reachable => "Reachable",
            ConditionType::SourceReady => "SourceReady",
        }
    }
}

impl Truth {
    /// The value in `status.conditions[].status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// Sets condition `type_` in `status` (a status object; made one when it is not), keeping its
/// `lastTransitionTime` when its truth value does not change.
pub fn set_condition(
    status: &mut Value,
    type_: ConditionType,
    truth: Truth,
    reason: &str,
    message: &str,
    now: &str,
) {
    if !status.is_object() {
        *status = Value::Object(Default::default());
    }
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = Value::Array(Vec::new());
    }
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("just made an array");
    let mut new = Condition {
        type_: type_.as_str().into(),
        status: truth.as_str().into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: now.into(),
    };
    match conditions.iter_mut().find(|c| c["type"] == type_.as_str()) {
        Some(c) => {
            if c["status"] == truth.as_str()
                && let Some(since) = c["lastTransitionTime"].as_str()
            {
                new.last_transition_time = since.to_string();
            }
            *c = serde_json::to_value(&new).expect("a condition serializes");
        }
        None => conditions.push(serde_json::to_value(&new).expect("a condition serializes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_truth_holds() {
        let mut status = Value::Null;
        set_condition(
            &mut status,
            ConditionType::Synced,
            Truth::True,
            "Delivered",
            "a",
            "t1",
        );
        set_condition(
            &mut status,
            ConditionType::Synced,
            Truth::True,
            "Delivered",
            "b",
            "t2",
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t1");
        assert_eq!(status["conditions"][0]["message"], "b");
        set_condition(
            &mut status,
            ConditionType::Synced,
            Truth::False,
            "Failed",
            "c",
            "t3",
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t3");
        set_condition(
            &mut status,
            ConditionType::Ready,
            Truth::True,
            "Applied",
            "",
            "t4",
        );
        assert_eq!(status["conditions"].as_array().map(Vec::len), Some(2));
        assert_eq!(status["conditions"][1]["type"], "Ready");
    }
}
