//! The plan seen from the hosted SFTP server: its logins, merged across the `hostedSftp`
//! DeliveryTargets that name them. A reviewer wants to know who gains or loses access, which
//! keys (by fingerprint) change, and who gets a generated password; never a password itself.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Action, DesiredResource, HostedUserChange, PasswordAction};
use crate::api::{HostedSftpTarget, Kind, Spec};
use crate::state::ActualState;

/// One side (before or after) of a user: its connections and key labels.
#[derive(Default)]
struct UserSide {
    connections: BTreeSet<String>,
    keys: BTreeSet<String>,
}

/// The user changes between the applied and the desired `hostedSftp` connections, sorted by
/// user. Users that do not change are left out.
pub fn changes(desired: &[DesiredResource], actual: &ActualState) -> Vec<HostedUserChange> {
    let mut after: BTreeMap<String, UserSide> = BTreeMap::new();
    for d in desired {
        if let Spec::DeliveryTarget(dt) = &d.spec
            && let Some(t) = &dt.hosted_sftp
        {
            add(&mut after, &d.key.namespace, &d.key.name, t);
        }
    }
    let mut before: BTreeMap<String, UserSide> = BTreeMap::new();
    for (key, stored) in &actual.resources {
        if key.kind != Kind::DeliveryTarget {
            continue;
        }
        // Only the hosted part is decoded: a plan over thousands of targets stays cheap.
        let Some(hosted) = stored.spec.get("hostedSftp") else {
            continue;
        };
        if let Ok(t) = serde_json::from_value::<HostedSftpTarget>(hosted.clone()) {
            add(&mut before, &key.namespace, &key.name, &t);
        }
    }
    let users: BTreeSet<&String> = after
        .keys()
        .chain(before.keys())
        .chain(actual.password_users.iter())
        .collect();
    let mut out = Vec::new();
    for user in users {
        let (was, will) = (before.get(user), after.get(user));
        let has_hash = actual.password_users.contains(user);
        let needs_password = will.is_some_and(|s| s.keys.is_empty());
        let password = match (needs_password, has_hash) {
            (true, false) => Some(PasswordAction::Generate),
            (false, true) => Some(PasswordAction::Drop),
            _ => None,
        };
        let empty = UserSide::default();
        let (old, new) = (was.unwrap_or(&empty), will.unwrap_or(&empty));
        let action = match (was, will) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(o), Some(n)) if o.keys != n.keys || o.connections != n.connections => {
                Action::Update
            }
            _ => Action::NoOp,
        };
        if action == Action::NoOp && password.is_none() {
            continue;
        }
        let connections = if action == Action::Delete {
            &old.connections
        } else {
            &new.connections
        };
        out.push(HostedUserChange {
            user: user.clone(),
            action,
            connections: connections.iter().cloned().collect(),
            keys_added: new.keys.difference(&old.keys).cloned().collect(),
            keys_removed: old.keys.difference(&new.keys).cloned().collect(),
            password,
        });
    }
    out
}

fn add(sides: &mut BTreeMap<String, UserSide>, namespace: &str, name: &str, t: &HostedSftpTarget) {
    let side = sides.entry(t.user.clone()).or_default();
    side.connections.insert(format!("{namespace}/{name}"));
    side.keys
        .extend(t.public_keys.iter().map(|k| crate::ssh::key_label(k)));
}

/// One line per change for people, e.g. `+ user "acme" (default/acme-drop): a password is
/// generated at apply and shown once`.
pub fn describe(c: &HostedUserChange) -> String {
    let via = c.connections.join(", ");
    let mut parts = Vec::new();
    match c.action {
        Action::Create => parts.push(format!("new login via {via}")),
        Action::Delete => parts.push(format!(
            "loses access (was via {via}); its open sessions are closed"
        )),
        Action::Update => parts.push(format!("now via {via}")),
        Action::NoOp => {}
    }
    for k in &c.keys_added {
        parts.push(format!("key added {k}"));
    }
    for k in &c.keys_removed {
        parts.push(format!("key removed {k}"));
    }
    match c.password {
        Some(PasswordAction::Generate) => parts
            .push("a password is generated at apply and shown once (only its hash is kept)".into()),
        Some(PasswordAction::Drop) => parts.push(if c.action == Action::Delete {
            "its password hash is dropped".into()
        } else {
            "its password stops working: it logs in with a key now".into()
        }),
        None => {}
    }
    let symbol = match c.action {
        Action::NoOp => "~",
        a => a.symbol(),
    };
    format!("{symbol} user \"{}\": {}", c.user, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeliveryTargetSpec, HostedAccess, ResourceKey};
    use crate::state::StoredResource;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7dn/3ERJpkVpXMBmSa5nD2TRjORWv1tnxyXyx2+2Gg";

    fn connection(name: &str, user: &str, keys: &[&str]) -> (ResourceKey, Spec) {
        let spec = DeliveryTargetSpec {
            hosted_sftp: Some(HostedSftpTarget {
                connection_name: name.into(),
                display_name: None,
                user: user.into(),
                public_keys: keys.iter().map(|k| k.to_string()).collect(),
                directory: format!("{name}/"),
                access: HostedAccess::Read,
            }),
            ..Default::default()
        };
        (
            ResourceKey::new(Kind::DeliveryTarget, "default", name),
            Spec::DeliveryTarget(Box::new(spec)),
        )
    }

    fn desired(targets: &[(ResourceKey, Spec)]) -> Vec<DesiredResource> {
        targets
            .iter()
            .map(|(key, spec)| {
                DesiredResource::new(
                    key.clone(),
                    Default::default(),
                    spec.clone(),
                    Default::default(),
                    None,
                    None,
                )
            })
            .collect()
    }

    fn applied(targets: &[(ResourceKey, Spec)], with_password: &[&str]) -> ActualState {
        let mut actual = ActualState::default();
        for (key, spec) in targets {
            actual.resources.insert(
                key.clone(),
                StoredResource {
                    key: key.clone(),
                    generation: 1,
                    spec: spec.to_json().into(),
                    typed: Default::default(),
                    meta: Default::default(),
                    secret_digests: Default::default(),
                    external_ids: Default::default(),
                    status: Default::default(),
                    created_at: String::new(),
                    updated_at: String::new(),
                },
            );
        }
        actual.password_users = with_password.iter().map(|u| u.to_string()).collect();
        actual
    }

    fn label(key: &str) -> String {
        format!("ssh-ed25519 {}", crate::ssh::fingerprint_line(key).unwrap())
    }

    #[test]
    fn a_new_user_without_keys_is_announced_with_a_password_to_generate() {
        let got = changes(
            &desired(&[connection("drop", "acme", &[])]),
            &applied(&[], &[]),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, Action::Create);
        assert_eq!(got[0].connections, ["default/drop"]);
        assert_eq!(got[0].password, Some(PasswordAction::Generate));
        assert!(describe(&got[0]).contains("a password is generated at apply and shown once"));
    }

    #[test]
    fn a_key_change_names_both_fingerprints_and_never_the_key() {
        let got = changes(
            &desired(&[connection("drop", "acme", &[KEY_B])]),
            &applied(&[connection("drop", "acme", &[KEY_A])], &[]),
        );
        assert_eq!(got[0].action, Action::Update);
        assert_eq!(got[0].keys_added, [label(KEY_B)]);
        assert_eq!(got[0].keys_removed, [label(KEY_A)]);
        assert_eq!(got[0].password, None);
        let line = describe(&got[0]);
        assert!(!line.contains("AAAA"), "{line}");
        assert!(line.starts_with("~ user \"acme\""), "{line}");
    }

    #[test]
    fn a_removed_user_loses_access_and_its_password_hash_is_dropped() {
        let got = changes(
            &desired(&[]),
            &applied(&[connection("drop", "acme", &[])], &["acme"]),
        );
        assert_eq!(got[0].action, Action::Delete);
        assert_eq!(got[0].connections, ["default/drop"]);
        assert_eq!(got[0].password, Some(PasswordAction::Drop));
        assert!(describe(&got[0]).contains("loses access"));
    }

    #[test]
    fn a_user_given_a_key_drops_its_password() {
        let got = changes(
            &desired(&[connection("drop", "acme", &[KEY_A])]),
            &applied(&[connection("drop", "acme", &[])], &["acme"]),
        );
        assert_eq!(got[0].action, Action::Update);
        assert_eq!(got[0].password, Some(PasswordAction::Drop));
    }

    #[test]
    fn a_password_user_applied_before_passwords_existed_gets_one_without_other_changes() {
        let targets = [connection("drop", "acme", &[])];
        let got = changes(&desired(&targets), &applied(&targets, &[]));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, Action::NoOp);
        assert_eq!(got[0].password, Some(PasswordAction::Generate));
    }

    #[test]
    fn unchanged_users_and_a_second_connection_with_a_key_are_merged() {
        let targets = [
            connection("drop", "acme", &[]),
            connection("archive", "acme", &[KEY_A]),
        ];
        assert!(changes(&desired(&targets), &applied(&targets, &[])).is_empty());
        // Adding the second connection gives the user a key: no password any more.
        let got = changes(&desired(&targets), &applied(&targets[..1], &["acme"]));
        assert_eq!(got[0].action, Action::Update);
        assert_eq!(got[0].connections, ["default/archive", "default/drop"]);
        assert_eq!(got[0].keys_added, [label(KEY_A)]);
        assert_eq!(got[0].password, Some(PasswordAction::Drop));
    }
}
