//! Who may log in to the hosted SFTP server, with what, and where they may go.
//!
//! The registry is built from the `hostedSftp` DeliveryTargets ([`Connection`]s) plus the
//! Argon2id hashes of generated passwords, and swapped as a whole when the targets change
//! ([`super::HostedSftpServer::update_users`]). Connections naming the same user are merged:
//! one login, the union of their keys, every connection directory visible. Passwords exist
//! only for users without any public key (a key always wins), and only as PHC strings: the
//! clear text is shown once at apply and never stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::api::{HostedAccess, HostedSftpTarget};
use crate::ssh::{self, PublicKey};
use crate::{Error, Result};

/// Length of a password made by [`generate_password`]: 32 characters of a 62-character
/// alphabet, about 190 bits.
pub const PASSWORD_LENGTH: usize = 32;

/// The alphabet of generated passwords: letters and digits only, so a password survives
/// copying from a terminal, a YAML file or a chat message.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// One `hostedSftp` DeliveryTarget, as the server needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Namespace of the DeliveryTarget.
    pub namespace: String,
    /// Name of the DeliveryTarget.
    pub target_name: String,
    /// `spec.hostedSftp.connectionName`.
    pub connection_name: String,
    /// `spec.hostedSftp.displayName`, for people.
    pub display_name: Option<String>,
    /// Login user; connections naming the same user share its credentials.
    pub user: String,
    /// OpenSSH public key lines allowed to log in as `user`.
    pub public_keys: Vec<String>,
    /// Directory inside the user's jail, relative (`reports/`, or empty for the jail root).
    pub directory: String,
    /// What the user may do in that directory.
    pub access: HostedAccess,
}

impl Connection {
    /// The connection declared by DeliveryTarget `namespace/target_name`.
    pub fn from_target(namespace: &str, target_name: &str, target: &HostedSftpTarget) -> Self {
        Connection {
            namespace: namespace.to_string(),
            target_name: target_name.to_string(),
            connection_name: target.connection_name.clone(),
            display_name: target.display_name.clone(),
            user: target.user.clone(),
            public_keys: target.public_keys.clone(),
            directory: target.directory.clone(),
            access: target.access,
        }
    }
}

/// A directory a user was given by one or more connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The directory inside the user's jail, as path components (empty: the jail root).
    pub components: Vec<String>,
    /// The access granted there (the widest, when two connections name the same directory).
    pub access: HostedAccess,
    /// The connections granting it, as `namespace/target`.
    pub targets: Vec<String>,
}

impl Grant {
    /// The directory as the user sees it: `/` or `/reports`.
    pub fn virtual_path(&self) -> String {
        format!("/{}", self.components.join("/"))
    }
}

/// A user of the hosted SFTP server, merged from all its connections.
#[derive(Clone, Debug)]
pub struct User {
    /// Login name (also the name of its jail directory, `<data_dir>/users/<name>`).
    pub name: String,
    /// Keys allowed to log in, parsed (union over the connections, duplicates removed).
    pub keys: Vec<PublicKey>,
    /// The Argon2id PHC string of the user's password, when it logs in with one (only users
    /// without keys do).
    pub password_hash: Option<String>,
    /// The directories it sees, sorted; the longest containing grant decides the access.
    pub grants: Vec<Grant>,
}

impl User {
    /// The `SHA256:` fingerprints of its keys, in the order declared.
    pub fn key_fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(ssh::fingerprint).collect()
    }

    /// Whether `key` is one of the user's keys.
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| ssh::same_key(key, k))
    }

    /// Whether the user logs in with a password (it has no key, and a hash was given).
    pub fn uses_password(&self) -> bool {
        self.keys.is_empty() && self.password_hash.is_some()
    }
}

/// The whole registry of users, as served at one moment. Immutable: the server swaps it
/// whole, so an operation sees either the old or the new registry, never a mix.
#[derive(Clone, Debug, Default)]
pub struct Users {
    users: BTreeMap<String, Arc<User>>,
}

impl Users {
    /// No users at all (the server starts and refuses every login).
    pub fn empty() -> Self {
        Users::default()
    }

    /// Builds the registry from `connections` and the password hashes of the users that log
    /// in with a password (`user -> Argon2id PHC string`, as [`hash_password`] makes; hashes of
    /// users that have keys, or that no connection names, are ignored). Fails, naming every
    /// problem, when a user name, key, directory or hash is invalid (validation refuses those
    /// earlier; this is the server's own guard).
    pub fn new(
        connections: &[Connection],
        password_hashes: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut problems = Vec::new();
        let mut users: BTreeMap<String, User> = BTreeMap::new();
        for c in connections {
            let at = format!("hostedSftp {}/{}", c.namespace, c.target_name);
            if let Err(e) = check_user_name(&c.user) {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            let components = match directory_components(&c.directory) {
                Ok(components) => components,
                Err(e) => {
                    problems.push(format!("{at}: directory: {e}"));
                    continue;
                }
            };
            let user = users.entry(c.user.clone()).or_insert_with(|| User {
                name: c.user.clone(),
                keys: Vec::new(),
                password_hash: None,
                grants: Vec::new(),
            });
            for (i, line) in c.public_keys.iter().enumerate() {
                match ssh::parse_public_key(line) {
                    Ok(key) => {
                        if !user.has_key(&key) {
                            user.keys.push(key);
                        }
                    }
                    Err(e) => problems.push(format!("{at}: publicKeys[{i}]: {e}")),
                }
            }
            let target = format!("{}/{}", c.namespace, c.target_name);
            match user.grants.iter_mut().find(|g| g.components == components) {
                Some(grant) => {
                    if c.access == HostedAccess::ReadWrite {
                        grant.access = HostedAccess::ReadWrite;
                    }
                    grant.targets.push(target);
                }
                None => user.grants.push(Grant {
                    components,
                    access: c.access,
                    targets: vec![target],
                }),
            }
        }
        for (name, user) in users.iter_mut() {
            user.grants.sort_by(|a, b| a.components.cmp(&b.components));
            if !user.keys.is_empty() {
                continue;
            }
            match password_hashes.get(name) {
                Some(hash) => match check_password_hash(hash) {
                    Ok(()) => user.password_hash = Some(hash.clone()),
                    Err(e) => problems.push(format!("hostedSftp user `{name}`: {e}")),
                },
                None => tracing::warn!(
                    user = %name,
                    "hosted SFTP: user has no public key and no password; it cannot log in"
                ),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Usage(problems.join("\n")));
        }
        Ok(Users {
            users: users.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The registry as the server shares it between its sessions: swapped whole by
/// [`super::HostedSftpServer::update_users`], read at every request.
pub(crate) type SharedUsers = Arc<std::sync::RwLock<Arc<Users>>>;

/// The registry current now.
pub(crate) fn current(shared: &SharedUsers) -> Arc<Users> {
    shared.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The users of `connections` that log in with a password: those for which no connection
/// declares a public key. `apply` generates a password (shown once) for each of these that has
/// no hash yet, and drops the hashes of users not in this set.
pub fn users_needing_password(connections: &[Connection]) -> BTreeSet<String> {
    let mut with_keys = BTreeSet::new();
    let mut all = BTreeSet::new();
    for c in connections {
        all.insert(c.user.clone());
        if !c.public_keys.is_empty() {
            with_keys.insert(c.user.clone());
        }
    }
    all.difference(&with_keys).cloned().collect()
}

/// A strong random password: [`PASSWORD_LENGTH`] letters and digits from the operating
/// system's generator, without modulo bias.
///
/// # Panics
/// When the operating system's random number generator fails (never fall back to weak
/// randomness), as [`crate::fsutil::random_bytes`] does.
pub fn generate_password() -> String {
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    // 248 = 4 * 62: bytes at or above it would favour the first characters.
    let limit = (256 / PASSWORD_ALPHABET.len() * PASSWORD_ALPHABET.len()) as u8;
    while out.len() < PASSWORD_LENGTH {
        let bytes: [u8; 64] = crate::fsutil::random_bytes();
        for b in bytes {
            if b < limit && out.len() < PASSWORD_LENGTH {
                out.push(char::from(
                    PASSWORD_ALPHABET[usize::from(b) % PASSWORD_ALPHABET.len()],
                ));
            }
        }
    }
    out
}

/// The Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password`, with a
/// random salt and the argon2 crate's recommended parameters. This is all the state keeps.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Secret(format!("hashing the password failed: {e}")))
}

/// [`hash_password`] on a blocking thread: Argon2id is deliberately slow, and async callers
/// (apply, rotate-password, the controller) must not stall their runtime on it.
pub async fn hash_password_off_thread(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Secret(format!("hashing the password failed: {e}")))?
}

/// A new password and its Argon2id hash, for a user that logs in without a key: what an apply,
/// a rotation and the controller each issue (the password is shown or stored once, only the
/// hash is kept).
pub async fn issue_password() -> Result<(String, String)> {
    let password = generate_password();
    let hash = hash_password_off_thread(password.clone()).await?;
    Ok((password, hash))
}

/// [`verify_password`] on a blocking thread (see [`hash_password_off_thread`]).
pub async fn verify_password_off_thread(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Whether `password` matches the PHC string `hash`. The comparison of the computed and stored
/// outputs is constant-time (argon2's verifier); a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Checks that `hash` is an Argon2id PHC string.
fn check_password_hash(hash: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(hash)
        .map_err(|e| format!("the password hash is not a PHC string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the password hash uses `{}`; only argon2id is accepted",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the password hash has no salt or no output".into());
    }
    Ok(())
}

/// A login name: 1-32 letters, digits, `-`, `_`, `.`, not starting with `-` or `.` (it names
/// a directory under `<data_dir>/users/`).
pub(crate) fn check_user_name(user: &str) -> Result<(), String> {
    if crate::validate::fields::is_login_user(user) {
        Ok(())
    } else {
        Err(format!(
            "invalid user `{user}` (1-32 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`)"
        ))
    }
}

/// The components of a connection directory (`reports/`, `a/b`, `` for the root). Absolute
/// paths, `..`, NUL, backslashes and names of Ferry's temporary files are refused.
pub(crate) fn directory_components(dir: &str) -> Result<Vec<String>, String> {
    if dir.starts_with('/') {
        return Err(format!("`{dir}` must be relative to the user's jail"));
    }
    if dir.contains('\0') || dir.contains('\\') {
        return Err(format!("`{dir}` must not contain NUL or backslashes"));
    }
    let mut components = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{dir}` must not contain `..`")),
            name if crate::deliver::atomic::is_partial_name(name) => {
                return Err(format!("`{dir}` uses the name of a Ferry temporary file"));
            }
            name => components.push(name.to_string()),
        }
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(user: &str, dir: &str, access: HostedAccess, keys: &[&str]) -> Connection {
        Connection {
            namespace: "default".into(),
            target_name: format!("{user}-{dir}"),
            connection_name: format!("{user}-{dir}"),
            display_name: None,
            user: user.into(),
            public_keys: keys.iter().map(|k| k.to_string()).collect(),
            directory: dir.into(),
            access,
        }
    }

    #[test]
    fn generated_passwords_are_long_and_use_letters_and_digits() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LENGTH);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn connections_of_one_user_share_keys_and_show_both_directories() {
        let k1 = ssh::generate_key(ssh::KeyType::Ed25519, "a", None).expect("key");
        let k2 = ssh::generate_key(ssh::KeyType::Ed25519, "b", None).expect("key");
        let users = Users::new(
            &[
                connection("p", "reports/", HostedAccess::Read, &[&k1.public_line]),
                connection(
                    "p",
                    "upload",
                    HostedAccess::ReadWrite,
                    &[&k2.public_line, &k1.public_line],
                ),
            ],
            &BTreeMap::new(),
        )
        .expect("users");
        let p = users.get("p").expect("user p");
        assert_eq!(p.keys.len(), 2);
        let dirs: Vec<_> = p.grants.iter().map(Grant::virtual_path).collect();
        assert_eq!(dirs, ["/reports", "/upload"]);
        assert!(!p.uses_password());
    }

    #[test]
    fn only_users_without_keys_need_a_password() {
        let k = ssh::generate_key(ssh::KeyType::Ed25519, "a", None).expect("key");
        let connections = [
            connection("keyed", "a", HostedAccess::Read, &[&k.public_line]),
            connection("keyed", "b", HostedAccess::Read, &[]),
            connection("pw", "c", HostedAccess::Read, &[]),
        ];
        let needing = users_needing_password(&connections);
        assert_eq!(needing.into_iter().collect::<Vec<_>>(), ["pw"]);
        let hashes = BTreeMap::from([
            ("pw".to_string(), hash_password("x").expect("hash")),
            ("keyed".to_string(), hash_password("y").expect("hash")),
        ]);
        let users = Users::new(&connections, &hashes).expect("users");
        assert!(users.get("pw").expect("pw").uses_password());
        assert!(users.get("keyed").expect("keyed").password_hash.is_none());
    }

    #[test]
    fn bad_directories_users_and_hashes_are_refused() {
        for dir in ["/abs", "a/../b", ".x.ferry-partial-3"] {
            let e = Users::new(
                &[connection("u", dir, HostedAccess::Read, &[])],
                &BTreeMap::new(),
            )
            .expect_err(dir);
            assert!(e.to_string().contains("directory"), "{e}");
        }
        let e = Users::new(
            &[connection("../x", "a", HostedAccess::Read, &[])],
            &BTreeMap::new(),
        )
        .expect_err("bad user");
        assert!(e.to_string().contains("invalid user"), "{e}");
        let hashes = BTreeMap::from([("u".to_string(), "plain".to_string())]);
        let e = Users::new(&[connection("u", "a", HostedAccess::Read, &[])], &hashes)
            .expect_err("bad hash");
        assert!(e.to_string().contains("PHC"), "{e}");
    }

    #[test]
    fn the_same_directory_twice_gets_the_widest_access() {
        let users = Users::new(
            &[
                connection("u", "d", HostedAccess::Read, &[]),
                connection("u", "d/", HostedAccess::ReadWrite, &[]),
            ],
            &BTreeMap::new(),
        )
        .expect("users");
        let u = users.get("u").expect("u");
        assert_eq!(u.grants.len(), 1);
        assert_eq!(u.grants[0].access, HostedAccess::ReadWrite);
        assert_eq!(u.grants[0].targets.len(), 2);
    }
}
