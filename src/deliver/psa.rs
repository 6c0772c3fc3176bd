//! Report files into a PSA: a ReportSchedule labelled `ferry.dev/customer: <customer>` that
//! delivers to a `connectwise` or `autotask` DeliveryTarget files each run's report in that
//! customer's company (the company of the customer's CustomerMapping on that target), on the
//! target's `reports.board` (ConnectWise board, Autotask queue):
//!
//! - `mode: ticket` (default): one ticket per run, the file attached (ConnectWise
//!   `system/documents` with `recordType=Ticket`; Autotask `TicketAttachments`).
//! - `mode: note` (ConnectWise): one standing ticket per schedule and company; each run adds a
//!   note and the file to it.
//!
//! Idempotent per (schedule, slot, target), like every transport: the ticket's summary names
//! the schedule and the slot, and the ticket, the note and the attachment are each looked up
//! before they are created, so a resumed or retried run (after a crash at any point) never
//! makes a second one. Creates are sent once (never retried blindly).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::spec::TargetSpec;
use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::{AutotaskTarget, ConnectWiseTarget};
use crate::api::{CustomerMappingSpec, DeliveryTargetSpec, PsaReports, ReportMode, TargetKind};
use crate::psa::autotask::{MAX_ATTACHMENT_BYTES, MAX_TITLE, fit_chars};
use crate::psa::client::PsaClient;
use crate::psa::connectwise::MAX_SUMMARY;
use crate::psa::http::RetryPolicy;
use crate::secrets::FileSecrets;
use crate::validate::fields::{Problems, check_host, check_http_url};
use crate::{Error, Result};

/// A delivery of report files to a PSA connection, for one customer.
pub struct PsaDelivery {
    target: String,
    client: PsaClient,
    reports: PsaReports,
    customer: String,
    mapping: CustomerMappingSpec,
}

/// Whether `customer` and the CustomerMappings allow a schedule to deliver to PSA target
/// `name`: the schedule must carry the customer label, the customer must be mapped on this
/// target, and the target must say where reports go. Used by validation and by the runner.
pub fn check_schedule_delivery(
    name: &str,
    target: &DeliveryTargetSpec,
    customer: Option<&str>,
    mapped: impl Fn(&str) -> bool,
) -> std::result::Result<(), String> {
    let Some(kind) = target.kind().filter(TargetKind::is_psa) else {
        return Ok(());
    };
    let Some(customer) = customer.filter(|c| !c.trim().is_empty()) else {
        return Err(format!(
            "DeliveryTarget `{name}` is a {} PSA connection: a schedule delivering to it needs \
             the label `{}: <customer>` naming whose company receives the report",
            kind.key(),
            crate::psa::sync::CUSTOMER_LABEL
        ));
    };
    if !mapped(customer) {
        return Err(format!(
            "no CustomerMapping maps customer `{customer}` on DeliveryTarget `{name}` (the \
             report goes to that mapping's company): add one with `customer: {customer}` and \
             `psa: {{target: {name}}}`"
        ));
    }
    if reports_of(target).is_none() {
        return Err(format!(
            "DeliveryTarget `{name}` has no `{}.reports` (the board or queue report tickets \
             are opened on)",
            kind.key()
        ));
    }
    Ok(())
}

/// Checks a PSA target's `reports`: a board is named; `mode: note` only on ConnectWise.
pub fn check_reports(spec: &DeliveryTargetSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (key, reports) = match (&spec.connectwise, &spec.autotask) {
        (Some(cw), _) => ("connectwise", cw.reports.as_ref()),
        (None, Some(at)) => ("autotask", at.reports.as_ref()),
        _ => return out,
    };
    let Some(r) = reports else {
        return out;
    };
    if r.board.trim().is_empty() {
        out.push((
            format!("spec.{key}.reports.board"),
            "name the board (ConnectWise) or queue (Autotask) report tickets go to".into(),
        ));
    }
    if key == "autotask" && r.mode == ReportMode::Note {
        out.push((
            format!("spec.{key}.reports.mode"),
            "`note` is for ConnectWise (a note on a standing ticket); Autotask takes `ticket`"
                .into(),
        ));
    }
    out
}

fn reports_of(spec: &DeliveryTargetSpec) -> Option<&PsaReports> {
    spec.connectwise
        .as_ref()
        .and_then(|c| c.reports.as_ref())
        .or_else(|| spec.autotask.as_ref().and_then(|a| a.reports.as_ref()))
}

/// `text` cut to `max` characters; when cut, it ends with a short digest of the whole text
/// so that two long texts that differ only past the cut stay different.
pub fn fit_unique(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let keep: String = text.chars().take(max.saturating_sub(9)).collect();
    format!("{keep}… #{}", &digest[..6])
}

impl PsaDelivery {
    /// The delivery of PSA target `name` (its spec `spec`) for `customer`, whose
    /// CustomerMapping on that target is `mapping`. Nothing is sent until the first file.
    pub fn new(
        namespace: &str,
        name: &str,
        spec: &DeliveryTargetSpec,
        customer: &str,
        mapping: CustomerMappingSpec,
        secrets: &FileSecrets,
    ) -> Result<PsaDelivery> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        let reports = reports_of(spec)
            .cloned()
            .ok_or_else(|| fail("the target has no `reports` (board or queue)".into()))?;
        let client = PsaClient::for_target(namespace, name, spec, secrets, RetryPolicy::default())?;
        Ok(PsaDelivery {
            target: name.to_string(),
            client,
            reports,
            customer: customer.to_string(),
            mapping,
        })
    }

    async fn deliver_file(&self, file: &Outgoing<'_>) -> Result<Receipt> {
        let product = self.client.product();
        if let PsaClient::Autotask(_) = self.client
            && file.bytes > MAX_ATTACHMENT_BYTES
        {
            return Err(self.fail(format!(
                "`{}` is {} bytes; Autotask accepts attachments of at most 6 to 7 MB (Ferry \
                 sends at most {MAX_ATTACHMENT_BYTES} bytes), so nothing was sent",
                file.file_name, file.bytes
            )));
        }
        let bytes = tokio::fs::read(file.staged)
            .await
            .map_err(|e| Error::io(file.staged, e))?;
        if bytes.len() as u64 != file.bytes {
            return Err(self.fail(format!(
                "the staged file has {} bytes, expected {}",
                bytes.len(),
                file.bytes
            )));
        }
        let key = self.client.company_key(&self.mapping.company)?;
        let candidates = self.client.companies(&self.mapping.company).await?;
        let company = crate::psa::sync::choose_company(product, key, &candidates)
            .map_err(|m| self.fail(m))?;
        let about = file.about;
        let slot = about.slot.strftime("%Y-%m-%d %H:%M %Z").to_string();
        let marker = format!(
            "[ferry {}/{} {}]",
            about.namespace,
            about.schedule,
            crate::ledger::rfc3339(&about.slot)
        );
        let description = format!(
            "Report `{}` of Ferry for customer `{}`, slot {slot}: {} ({} rows, {} bytes, \
             SHA-256 {}).\n\n{marker}",
            about.schedule, self.customer, file.file_name, about.rows, file.bytes, file.sha256
        );
        let doc_title = fit_chars(&format!("{} ({slot})", file.file_name), MAX_TITLE);
        let mut details = BTreeMap::new();
        details.insert("company".to_string(), company.id.to_string());
        let location = match (&self.client, self.reports.mode) {
            (PsaClient::ConnectWise(cw), mode) => {
                let (summary, per_run) = match mode {
                    ReportMode::Ticket => (
                        format!("Report {}: {slot} ({})", about.schedule, self.customer),
                        true,
                    ),
                    ReportMode::Note => (
                        format!("Reports {} ({})", about.schedule, self.customer),
                        false,
                    ),
                };
                let summary = fit_unique(&summary, MAX_SUMMARY);
                let existing = if per_run {
                    cw.tickets_with_summary(company.id, &summary).await?
                } else {
                    cw.open_tickets(company.id, &summary).await?
                };
                let ticket = match existing.iter().map(|t| t.id).min() {
                    Some(id) => id,
                    None => {
                        cw.create_ticket(
                            company.id,
                            &self.reports.board,
                            &summary,
                            &description,
                            None,
                        )
                        .await?
                        .id
                    }
                };
                details.insert("ticket".into(), ticket.to_string());
                if !per_run {
                    let notes = cw.ticket_notes(ticket).await?;
                    let note = match notes.iter().find(|n| n.text.contains(&marker)) {
                        Some(n) => n.id,
                        None => cw.add_note(ticket, &description).await?,
                    };
                    details.insert("note".into(), note.to_string());
                }
                let docs = cw.ticket_documents(ticket).await?;
                let doc = match docs
                    .iter()
                    .find(|d| d.title == doc_title && d.file_name == file.file_name)
                {
                    Some(d) => d.id,
                    None => {
                        cw.upload_ticket_document(ticket, &doc_title, file.file_name, bytes)
                            .await?
                            .id
                    }
                };
                details.insert("document".into(), doc.to_string());
                format!("ConnectWise ticket #{ticket}, document #{doc}")
            }
            (PsaClient::Autotask(at), _) => {
                let title = fit_unique(
                    &format!("Report {}: {slot} ({})", about.schedule, self.customer),
                    MAX_TITLE,
                );
                let existing = at.tickets_titled(company.id, &title).await?;
                let ticket = match existing.iter().map(|t| t.id).min() {
                    Some(id) => id,
                    None => {
                        at.create_ticket(company.id, &self.reports.board, &title, &description)
                            .await?
                            .id
                    }
                };
                details.insert("ticket".into(), ticket.to_string());
                let attached = at.ticket_attachments(ticket).await?;
                let attachment = match attached
                    .iter()
                    .find(|a| a.title == doc_title && a.file_name == file.file_name)
                {
                    Some(a) => a.id,
                    None => {
                        at.attach_to_ticket(ticket, &doc_title, file.file_name, &bytes)
                            .await?
                    }
                };
                details.insert("attachment".into(), attachment.to_string());
                format!("Autotask ticket #{ticket}, attachment #{attachment}")
            }
        };
        Ok(Receipt {
            location: format!("{location} ({} {})", company.name, product),
            bytes: file.bytes,
            sha256: file.sha256.to_string(),
            details,
        })
    }

    fn fail(&self, message: String) -> Error {
        Error::Delivery {
            target: self.target.clone(),
            message,
        }
    }
}

impl Transport for PsaDelivery {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(self.deliver_file(file))
    }
}

// A PSA connection is a DeliveryTarget kind too: its endpoint and credentials are checked here,
// its `defaults` by validation with the rules of a mapping's own settings.

impl TargetSpec for ConnectWiseTarget {
    fn check(&self, p: &mut Problems) {
        match (&self.site, &self.base_url) {
            (Some(_), Some(_)) => p.error(
                "spec.connectwise.baseUrl",
                "give either site or baseUrl, not both",
            ),
            (None, None) => p.error(
                "spec.connectwise",
                "missing endpoint: give site (e.g. api-na.myconnectwise.net) or baseUrl",
            ),
            (Some(site), None) => {
                if site.contains("://") || site.contains('/') {
                    p.error(
                        "spec.connectwise.site",
                        "give a host name only (e.g. api-na.myconnectwise.net); use baseUrl for a full URL",
                    );
                } else {
                    p.check("spec.connectwise.site", check_host(site));
                }
            }
            (None, Some(url)) => p.check("spec.connectwise.baseUrl", check_http_url(url)),
        }
        p.non_empty("spec.connectwise.companyId", &self.company_id);
        p.non_empty("spec.connectwise.clientId", &self.client_id);
    }

    fn summary(&self) -> String {
        format!(
            "ConnectWise Manage {} (company {})",
            self.site
                .as_deref()
                .or(self.base_url.as_deref())
                .unwrap_or("?"),
            self.company_id
        )
    }

    fn change_notes(&self, _old: &TargetKind<'_>, _notes: &mut Vec<String>) {}
}

impl TargetSpec for AutotaskTarget {
    fn check(&self, p: &mut Problems) {
        p.non_empty("spec.autotask.username", &self.username);
        if let Some(url) = &self.zone_discovery_url {
            p.check("spec.autotask.zoneDiscoveryUrl", check_http_url(url));
        }
    }

    fn summary(&self) -> String {
        format!("Autotask as {}", self.username)
    }

    fn change_notes(&self, _old: &TargetKind<'_>, _notes: &mut Vec<String>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_titles_are_cut_with_a_digest_that_keeps_them_apart() {
        let a = format!("Report {}: 2026-11-30 06:00 CET (acme)", "x".repeat(120));
        let b = format!("Report {}: 2026-12-07 06:00 CET (acme)", "x".repeat(120));
        let (fa, fb) = (fit_unique(&a, 100), fit_unique(&b, 100));
        assert_eq!(fa.chars().count(), 100);
        assert_ne!(fa, fb);
        assert_eq!(fit_unique("short", 100), "short");
    }

    #[test]
    fn a_psa_delivery_needs_the_customer_label_a_mapping_and_a_board() {
        let spec: DeliveryTargetSpec = serde_json::from_value(serde_json::json!({
            "autotask": {
                "username": "u",
                "secretSecretRef": {"name": "at", "key": "s"},
                "integrationCodeSecretRef": {"name": "at", "key": "c"},
                "reports": {"board": "Reports"},
            }
        }))
        .unwrap();
        let no_label = check_schedule_delivery("at", &spec, None, |_| true).unwrap_err();
        assert!(no_label.contains("ferry.dev/customer"), "{no_label}");
        let unmapped = check_schedule_delivery("at", &spec, Some("acme"), |_| false).unwrap_err();
        assert!(
            unmapped.contains("no CustomerMapping maps customer `acme`"),
            "{unmapped}"
        );
        assert_eq!(
            check_schedule_delivery("at", &spec, Some("acme"), |c| c == "acme"),
            Ok(())
        );
        let mut bare = spec.clone();
        bare.autotask.as_mut().unwrap().reports = None;
        let no_board = check_schedule_delivery("at", &bare, Some("acme"), |_| true).unwrap_err();
        assert!(no_board.contains("autotask.reports"), "{no_board}");
    }

    #[test]
    fn notes_are_for_connectwise_only() {
        let spec: DeliveryTargetSpec = serde_json::from_value(serde_json::json!({
            "autotask": {
                "username": "u",
                "secretSecretRef": {"name": "at", "key": "s"},
                "integrationCodeSecretRef": {"name": "at", "key": "c"},
                "reports": {"board": "", "mode": "note"},
            }
        }))
        .unwrap();
        let problems = check_reports(&spec);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[1].0, "spec.autotask.reports.mode");
    }
}
