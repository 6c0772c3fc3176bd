//! Alerts to people: what a schedule's `notify` asks to be told, when, and in what words.
//!
//! A schedule is *healthy* or *failing*, read from the run history itself (the ledger): the
//! outcome recorded before the one at hand. So an alert goes out once per change of state, not
//! once per attempt or per failed run, and a restart neither repeats nor forgets one, with no
//! state of its own to keep. `onFailure` when a run fails (failed, partial or unknown) after a
//! healthy one; `onMissed` when a slot is missed after a healthy run; `onRecovery` when a run
//! succeeds after failing or missed ones; `onSuccess` after every success. A schedule with no
//! history counts as healthy: its first failure is news.
//!
//! Alerts go to `webhook` targets ([`crate::deliver::webhook`]: Ferry's JSON document, Slack or
//! Teams) and to `email` targets (a plain mail, never the report, its link or an attachment).
//! What an alert says is what `ferry history` shows: names, slot, outcome, the (already
//! scrubbed) error, each target's outcome. Never a receipt, a link or a secret.

pub mod send;

use serde::Serialize;

use crate::api::{Notify, WebhookFormat};
use crate::ledger::Outcome;

/// What happened, as `notify` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    /// A run failed after a healthy one.
    Failure,
    /// A slot was missed after a healthy run.
    Missed,
    /// A run succeeded after failing or missed ones.
    Recovery,
    /// A run succeeded.
    Success,
    /// A periodic check found a schedule's source or one of its targets failing.
    CheckFailed,
    /// That check passes again.
    CheckPassed,
}

impl Event {
    /// The word in the payload and the mail's subject.
    pub fn as_str(&self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Missed => "missed",
            Event::Recovery => "recovery",
            Event::Success => "success",
            Event::CheckFailed => "checkFailed",
            Event::CheckPassed => "checkPassed",
        }
    }

    /// The targets `notify` names for this event.
    pub fn targets<'a>(&self, notify: &'a Notify) -> &'a [String] {
        match self {
            Event::Failure => &notify.on_failure,
            Event::Missed => &notify.on_missed,
            Event::Recovery => &notify.on_recovery,
            Event::Success => &notify.on_success,
            Event::CheckFailed | Event::CheckPassed => &notify.on_check_failed,
        }
    }
}

/// Whether an outcome leaves the schedule failing (`Some(true)`), healthy (`Some(false)`), or
/// says nothing about it (skipped, cancelled, still running).
pub fn failing(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Succeeded => Some(false),
        Outcome::Failed | Outcome::Partial | Outcome::Unknown | Outcome::Missed => Some(true),
        Outcome::Running | Outcome::Skipped | Outcome::Cancelled => None,
    }
}

/// The events of `outcome` after `previous` (the outcome recorded before it, if any).
pub fn events(previous: Option<Outcome>, outcome: Outcome) -> Vec<Event> {
    let was_failing = previous.and_then(failing).unwrap_or(false);
    match (failing(outcome), was_failing) {
        (Some(false), true) => vec![Event::Recovery, Event::Success],
        (Some(false), false) => vec![Event::Success],
        (Some(true), false) if outcome == Outcome::Missed => vec![Event::Missed],
        (Some(true), false) => vec![Event::Failure],
        _ => Vec::new(),
    }
}

/// One target's part in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetOutcome {
    /// The DeliveryTarget.
    pub target: String,
    /// Its outcome or why it failed, as `ferry history` says it.
    pub outcome: String,
}

/// An alert: the event and the run (or missed slots) it is about.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `ferry.dev/alert/v1`: the document's version.
    pub version: &'static str,
    /// What happened.
    pub event: Event,
    /// `ReportSchedule` or `CustomerMapping`.
    pub kind: &'static str,
    /// The resource's namespace.
    pub namespace: String,
    /// The resource's name.
    pub name: String,
    /// For a CustomerMapping: `usage` (usage sync) or `billing` (billing push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<&'static str>,
    /// For a CustomerMapping: our customer's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The slot, RFC 3339 with the zone's offset (the first missed one, for `missed`; none
    /// for a check).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub slot: String,
    /// For a check: the condition (`SourceReady` of a schedule, `Reachable` of a target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<&'static str>,
    /// For a check: the schedules the checked resource serves, whose `onCheckFailed` names
    /// the target told.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<String>,
    /// The run's ledger id (none for missed slots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// The outcome, as `ferry history` spells it.
    pub outcome: String,
    /// Why it failed, or why slots were missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Slots missed together (for `missed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_slots: Option<usize>,
    /// Rows exported (reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Quantities set in the PSA (syncs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<usize>,
    /// The report's file name (empty when there was none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// Each target's outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<TargetOutcome>,
    /// When the alert was made (RFC 3339, UTC).
    pub at: String,
}

/// The document's version.
pub const VERSION: &str = "ferry.dev/alert/v1";

impl Alert {
    /// An alert of `event` about ReportSchedule `namespace/name` at `slot` with `outcome`,
    /// made now; the run's details (id, error, rows, file, deliveries) are set by the caller,
    /// and so are a CustomerMapping's (`kind`, `sync`, `customer`, `pushed`).
    pub fn new(event: Event, namespace: &str, name: &str, slot: &str, outcome: Outcome) -> Alert {
        Alert {
            version: VERSION,
            event,
            kind: "ReportSchedule",
            namespace: namespace.to_string(),
            name: name.to_string(),
            sync: None,
            customer: None,
            slot: slot.to_string(),
            condition: None,
            schedules: Vec::new(),
            run_id: None,
            outcome: outcome.as_str().to_string(),
            error: None,
            missed_slots: None,
            rows: None,
            pushed: None,
            file: String::new(),
            deliveries: Vec::new(),
            at: jiff::Timestamp::now().to_string(),
        }
    }

    /// `kind/namespace/name`, for logs.
    pub fn resource(&self) -> String {
        format!(
            "{}/{}/{}",
            self.kind.to_ascii_lowercase(),
            self.namespace,
            self.name
        )
    }

    /// One line for people: `ReportSchedule shop/sales failed at slot ...: <error>`.
    pub fn headline(&self) -> String {
        let mut what = format!("{} {}/{}", self.kind, self.namespace, self.name);
        match self.sync {
            Some("billing") => what.push_str(" billing push"),
            Some(_) => what.push_str(" usage sync"),
            None => {}
        }
        let counted = match (self.rows, self.pushed) {
            (Some(rows), _) => format!(" ({rows} rows)"),
            (None, Some(pushed)) => format!(" ({pushed} quantities set)"),
            (None, None) => String::new(),
        };
        match self.event {
            Event::Failure => format!("{what} failed ({}) at slot {}", self.outcome, self.slot),
            Event::Missed => format!(
                "{what} missed {} slot(s) from {}",
                self.missed_slots.unwrap_or(1),
                self.slot
            ),
            Event::Recovery => format!("{what} recovered: slot {} succeeded", self.slot),
            Event::Success => format!("{what} succeeded at slot {}{counted}", self.slot),
            Event::CheckFailed => format!(
                "{what} failed its check ({} false)",
                self.condition.unwrap_or("condition")
            ),
            Event::CheckPassed => format!("{what} passes its check again"),
        }
    }

    /// The plain text of a mail, or of a chat message.
    pub fn text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        if let Some(error) = &self.error {
            out.push_str(&format!("\nError: {error}\n"));
        }
        if !self.file.is_empty() {
            out.push_str(&format!(
                "\nFile: {} ({} rows)\n",
                self.file,
                self.rows.unwrap_or(0)
            ));
        }
        if !self.schedules.is_empty() {
            out.push_str(&format!("\nSchedules: {}\n", self.schedules.join(", ")));
        }
        if let Some(customer) = &self.customer {
            out.push_str(&format!("\nCustomer: {customer}\n"));
        }
        if !self.deliveries.is_empty() {
            out.push_str("\nDeliveries:\n");
            for d in &self.deliveries {
                out.push_str(&format!("  {}: {}\n", d.target, d.outcome));
            }
        }
        if let Some(run) = self.run_id {
            let what = if self.sync.is_some() {
                "Attempt"
            } else {
                "Run"
            };
            out.push_str(&format!(
                "\n{what} {run}: ferry history {}/{} -n {}\n",
                self.kind.to_ascii_lowercase(),
                self.name,
                self.namespace
            ));
        }
        out
    }

    /// The mail's subject.
    pub fn subject(&self) -> String {
        format!("[Ferry] {}", self.headline())
    }

    /// The JSON body a webhook of `format` receives.
    pub fn body(&self, format: WebhookFormat) -> String {
        let value = match format {
            WebhookFormat::Ferry => serde_json::to_value(self).unwrap_or_default(),
            // Slack's incoming webhooks take `text` (api.slack.com/messaging/webhooks).
            WebhookFormat::Slack => serde_json::json!({ "text": self.text() }),
            // Teams' incoming webhooks take a MessageCard (learn.microsoft.com, "Create an
            // Incoming Webhook": `@type`, `@context`, `summary`, `title`, `text`).
            WebhookFormat::Teams => serde_json::json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": self.headline(),
                "themeColor": match self.event {
                    Event::Failure | Event::Missed | Event::CheckFailed => "D83B01",
                    Event::Recovery | Event::Success | Event::CheckPassed => "107C10",
                },
                "title": self.headline(),
                "text": self.text().replace('\n', "\n\n"),
            }),
        };
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_change_of_state() {
        use Outcome::*;
        assert_eq!(events(None, Failed), [Event::Failure]);
        assert_eq!(events(Some(Succeeded), Partial), [Event::Failure]);
        assert_eq!(events(Some(Failed), Failed), []);
        assert_eq!(events(Some(Missed), Unknown), []);
        assert_eq!(events(Some(Succeeded), Missed), [Event::Missed]);
        assert_eq!(events(Some(Failed), Missed), []);
        assert_eq!(
            events(Some(Failed), Succeeded),
            [Event::Recovery, Event::Success]
        );
        assert_eq!(
            events(Some(Missed), Succeeded),
            [Event::Recovery, Event::Success]
        );
        assert_eq!(events(Some(Succeeded), Succeeded), [Event::Success]);
        assert_eq!(events(None, Succeeded), [Event::Success]);
        assert_eq!(events(Some(Failed), Skipped), []);
        assert_eq!(events(Some(Succeeded), Cancelled), []);
    }

    fn failure() -> Alert {
        Alert {
            run_id: Some(7),
            error: Some("source: relation \"orders\" does not exist".into()),
            deliveries: vec![TargetOutcome {
                target: "partner-sftp".into(),
                outcome: "not attempted".into(),
            }],
            at: "2026-07-30T15:30:02Z".into(),
            ..Alert::new(
                Event::Failure,
                "shop",
                "sales",
                "2026-07-31T00:30:00+09:00",
                Outcome::Failed,
            )
        }
    }

    #[test]
    fn the_ferry_document_names_the_event_the_schedule_the_slot_and_the_error() {
        let body: serde_json::Value =
            serde_json::from_str(&failure().body(WebhookFormat::Ferry)).unwrap();
        assert_eq!(body["version"], "ferry.dev/alert/v1");
        assert_eq!(body["event"], "failure");
        assert_eq!(body["kind"], "ReportSchedule");
        assert_eq!(body["namespace"], "shop");
        assert_eq!(body["name"], "sales");
        assert_eq!(body["slot"], "2026-07-31T00:30:00+09:00");
        assert_eq!(body["runId"], 7);
        assert_eq!(body["deliveries"][0]["target"], "partner-sftp");
        assert!(body.get("missedSlots").is_none());
    }

    #[test]
    fn slack_gets_text_and_teams_a_message_card() {
        let slack: serde_json::Value =
            serde_json::from_str(&failure().body(WebhookFormat::Slack)).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "ReportSchedule shop/sales failed (failed) at slot 2026-07-31T00:30:00+09:00"
            ),
            "{text}"
        );
        assert!(text.contains("Error: source: relation"), "{text}");
        let teams: serde_json::Value =
            serde_json::from_str(&failure().body(WebhookFormat::Teams)).unwrap();
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["title"], failure().headline());
        assert_eq!(teams["themeColor"], "D83B01");
    }

    #[test]
    fn a_check_alert_names_the_condition_and_the_schedules_it_serves() {
        let alert = Alert {
            kind: "DeliveryTarget",
            condition: Some("Reachable"),
            schedules: vec!["sales".into(), "stock".into()],
            error: Some("delivery: host key verification failed".into()),
            ..Alert::new(
                Event::CheckFailed,
                "shop",
                "partner-sftp",
                "",
                Outcome::Failed,
            )
        };
        assert_eq!(
            alert.headline(),
            "DeliveryTarget shop/partner-sftp failed its check (Reachable false)"
        );
        assert!(alert.text().contains("Schedules: sales, stock"));
        let body: serde_json::Value =
            serde_json::from_str(&alert.body(WebhookFormat::Ferry)).unwrap();
        assert_eq!(body["event"], "checkFailed");
        assert!(body.get("slot").is_none() && body.get("rows").is_none());
        let teams: serde_json::Value =
            serde_json::from_str(&alert.body(WebhookFormat::Teams)).unwrap();
        assert_eq!(teams["themeColor"], "D83B01");
    }
}
