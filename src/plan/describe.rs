//! Domain-level meaning of a change ("host key pin changed", "new recipient"), shown in plans
//! beside the field diff so a reviewer sees what a change does, not only what text moved.

use std::collections::BTreeSet;

use crate::api::*;

use super::model::FieldChange;

/// Notes for a resource that is about to be created.
pub(super) fn created(spec: &Spec) -> Vec<String> {
    match spec {
        Spec::ReportSchedule(rs) => {
            let targets: Vec<&str> = rs.deliver_to.iter().map(|d| d.target.as_str()).collect();
            vec![format!(
                "{} in {}, {} to {}",
                schedule_text(&rs.schedule),
                rs.time_zone,
                format_text(&rs.format),
                targets.join(", ")
            )]
        }
        Spec::DeliveryTarget(dt) => dt.kind().map(|k| vec![target_text(k)]).unwrap_or_default(),
        Spec::CustomerMapping(cm) => vec![format!(
            "customer `{}` -> {} company {}",
            cm.customer,
            cm.psa.target,
            cm.company
                .identifier
                .as_deref()
                .or(cm.company.name.as_deref())
                .unwrap_or("?")
        )],
    }
}

/// Notes for a resource about to be deleted (its file is gone, so they come from the state):
/// what deleting a CustomerMapping does in its PSA, by its stored `deletionPolicy`.
pub(super) fn deleted(
    key: &ResourceKey,
    stored: &crate::state::StoredResource,
    actual: &crate::state::ActualState,
) -> Vec<String> {
    if key.kind != Kind::CustomerMapping {
        return Vec::new();
    }
    let Some(Spec::CustomerMapping(cm)) = stored.typed_spec() else {
        return Vec::new();
    };
    if cm.deletion_policy == DeletionPolicy::Orphan {
        return vec!["deletionPolicy Orphan: the PSA is left as it is".into()];
    }
    let target = ResourceKey::new(Kind::DeliveryTarget, &key.namespace, &cm.psa.target);
    let psa = actual.resources.get(&target).map(|t| &t.spec);
    let what = match psa {
        Some(t) if t.get("connectwise").is_some() => "its ConnectWise additions will be cancelled",
        Some(t) if t.get("autotask").is_some() => "its Autotask units will be set to 0",
        _ => "what it manages in the PSA will be released",
    };
    vec![format!("deletionPolicy Delete: {what}")]
}

/// Notes for an update from `old` to `new`.
pub(super) fn updated(old: &Spec, new: &Spec, fields: &[FieldChange]) -> Vec<String> {
    let mut notes = Vec::new();
    for f in fields.iter().filter(|f| f.sensitive) {
        let what = f.path.trim_end_matches(" (value)");
        let what = what.rsplit('.').next().unwrap_or(what);
        notes.push(format!("secret value of {what} changed"));
    }
    match (old, new) {
        (Spec::ReportSchedule(a), Spec::ReportSchedule(b)) => report_schedule(a, b, &mut notes),
        (Spec::DeliveryTarget(a), Spec::DeliveryTarget(b)) => delivery_target(a, b, &mut notes),
        (Spec::CustomerMapping(a), Spec::CustomerMapping(b)) => customer_mapping(a, b, &mut notes),
        _ => {}
    }
    notes
}

fn report_schedule(a: &ReportScheduleSpec, b: &ReportScheduleSpec, notes: &mut Vec<String>) {
    if a.schedule != b.schedule || a.time_zone != b.time_zone {
        notes.push(format!(
            "runs move from {} in {} to {} in {}",
            schedule_text(&a.schedule),
            a.time_zone,
            schedule_text(&b.schedule),
            b.time_zone
        ));
    }
    match (a.suspend, b.suspend) {
        (false, true) => notes.push("suspended: scheduled runs stop".into()),
        (true, false) => notes.push("resumed: scheduled runs start again".into()),
        _ => {}
    }
    let old: BTreeSet<&str> = a.deliver_to.iter().map(|d| d.target.as_str()).collect();
    let new: BTreeSet<&str> = b.deliver_to.iter().map(|d| d.target.as_str()).collect();
    for t in new.difference(&old) {
        notes.push(format!("new delivery target {t}"));
    }
    for t in old.difference(&new) {
        notes.push(format!("no longer delivered to {t}"));
    }
    if a.format != b.format {
        notes.push(format!(
            "format {} -> {}",
            format_text(&a.format),
            format_text(&b.format)
        ));
    }
    if a.file_name != b.file_name {
        notes.push(format!("file name {} -> {}", a.file_name, b.file_name));
    }
    if a.source.sql.query != b.source.sql.query {
        notes.push("query changed".into());
    }
    if a.source.window != b.source.window {
        notes.push(format!(
            "window {:?} -> {:?}",
            a.source.window, b.source.window
        ));
    }
}

fn delivery_target(a: &DeliveryTargetSpec, b: &DeliveryTargetSpec, notes: &mut Vec<String>) {
    match (a.kind(), b.kind()) {
        (Some(ka), Some(kb)) if ka.key() != kb.key() => {
            notes.push(format!(
                "transport changes from {} to {}",
                ka.key(),
                kb.key()
            ));
        }
        (Some(ka), Some(kb)) => crate::deliver::spec_of(kb).change_notes(&ka, notes),
        _ => {}
    }
}

fn customer_mapping(a: &CustomerMappingSpec, b: &CustomerMappingSpec, notes: &mut Vec<String>) {
    if a.company != b.company || a.psa != b.psa {
        notes.push("mapped to a different PSA company: it will be verified again".into());
    }
    let old: BTreeSet<&str> = a.contracts.iter().map(|c| c.product.as_str()).collect();
    let new: BTreeSet<&str> = b.contracts.iter().map(|c| c.product.as_str()).collect();
    for p in new.difference(&old) {
        notes.push(format!("product {p} now synced"));
    }
    for p in old.difference(&new) {
        notes.push(format!("product {p} no longer synced"));
    }
    let enabled = |u: &Option<UsageSync>| u.as_ref().is_some_and(|u| u.enabled);
    match (enabled(&a.usage_sync), enabled(&b.usage_sync)) {
        (false, true) => notes.push("usage sync enabled".into()),
        (true, false) => notes.push("usage sync disabled".into()),
        _ => {}
    }
    if a.settings != b.settings {
        notes.push(format!("settings {:?} -> {:?}", a.settings, b.settings));
    }
}

/// A one-line description of a schedule, e.g. "daily at 00:30".
pub fn schedule_text(s: &Schedule) -> String {
    match s {
        Schedule::Daily(d) => format!("daily at {}", d.at),
        Schedule::Weekly(w) => {
            let days: Vec<String> =
                w.on.iter()
                    .map(|d| format!("{d:?}").to_lowercase())
                    .collect();
            format!("weekly on {} at {}", days.join(","), w.at)
        }
        Schedule::Monthly(m) => format!("monthly on day {} at {}", m.day, m.at),
        Schedule::Cron(c) => format!("cron `{c}`"),
        Schedule::Every(e) => format!("every {e}"),
    }
}

fn format_text(f: &ReportFormat) -> &'static str {
    match f {
        ReportFormat::Csv(_) => "CSV",
        ReportFormat::Xlsx(_) => "XLSX",
        ReportFormat::Pdf(_) => "PDF",
    }
}

fn target_text(k: TargetKind) -> String {
    crate::deliver::spec_of(k).summary()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretRef, SftpTarget};

    const OLD_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const NEW_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7dn/3ERJpkVpXMBmSa5nD2TRjORWv1tnxyXyx2+2Gg";

    fn sftp(host_keys: &[&str], user: &str) -> DeliveryTargetSpec {
        DeliveryTargetSpec {
            sftp: Some(SftpTarget {
                host: "sftp.example".into(),
                port: 22,
                directory: "/upload".into(),
                username: user.into(),
                private_key_secret_ref: Some(SecretRef {
                    name: "k".into(),
                    key: "id_ed25519".into(),
                }),
                passphrase_secret_ref: None,
                password_secret_ref: None,
                host_keys: host_keys.iter().map(|k| k.to_string()).collect(),
                partial: Default::default(),
                check: Default::default(),
                max_connections: None,
            }),
            ..Default::default()
        }
    }

    fn notes(a: DeliveryTargetSpec, b: DeliveryTargetSpec) -> Vec<String> {
        let mut notes = Vec::new();
        delivery_target(&a, &b, &mut notes);
        notes
    }

    #[test]
    fn a_new_host_key_pin_is_described_by_its_fingerprint_never_by_the_whole_key() {
        let got = notes(sftp(&[OLD_KEY], "u"), sftp(&[NEW_KEY], "u"));
        assert!(got[0].starts_with("host key pin changed"), "{got:?}");
        let new_fp = crate::ssh::fingerprint_line(NEW_KEY).unwrap();
        let old_fp = crate::ssh::fingerprint_line(OLD_KEY).unwrap();
        assert_eq!(got[1], format!("host key pinned: ssh-ed25519 {new_fp}"));
        assert_eq!(
            got[2],
            format!("host key no longer accepted: ssh-ed25519 {old_fp}")
        );
        assert!(got.iter().all(|n| !n.contains("AAAA")), "{got:?}");
    }

    #[test]
    fn an_unchanged_pin_in_another_order_or_with_a_comment_is_not_a_change() {
        let with_comment = format!("{OLD_KEY} admin@host");
        let got = notes(
            sftp(&[OLD_KEY, NEW_KEY], "u"),
            sftp(&[NEW_KEY, &with_comment], "v"),
        );
        assert_eq!(got, ["login user u -> v"]);
    }
}
