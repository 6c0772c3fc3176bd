//! SSH keys and hosted SFTP passwords: `keygen`, `keyscan`, `rotate-password`.

use crate::runner::Runner;
use crate::{Error, Result};

use super::context::*;
use super::deliver::applied_delivery_target;

pub(super) fn keygen_cmd(
    ctx: &Ctx,
    name: &str,
    key_type: &str,
    comment: Option<String>,
    namespace: &str,
    force: bool,
) -> Result<u8> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(name) || !valid(namespace) {
        return Err(Error::Usage(format!(
            "`{namespace}/{name}`: secret and namespace names are lowercase letters, digits, `-` and `.`"
        )));
    }
    let kind: crate::ssh::KeyType = key_type.parse()?;
    let dir = ctx.secrets.dir().join(namespace).join(name);
    let private_path = dir.join(kind.file_stem());
    let public_path = dir.join(format!("{}.pub", kind.file_stem()));
    if private_path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists: keep it, or replace it with --force",
            private_path.display()
        )));
    }
    let comment = comment.unwrap_or_else(|| format!("ferry-{name}"));
    let key = crate::ssh::generate_key(kind, &comment, None)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&dir, e))?;
    }
    crate::fsutil::write_atomic(&private_path, key.private_openssh.as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(
        &public_path,
        format!("{}\n", key.public_line).as_bytes(),
        0o644,
    )?;
    eprintln!(
        "Wrote {} (private; reference it as privateKeySecretRef: {{name: {name}, key: {}}})",
        private_path.display(),
        kind.file_stem()
    );
    eprintln!("Fingerprint: {}", key.fingerprint);
    eprintln!("Public key, for the receiving server's authorized_keys:");
    outln!("{}", key.public_line);
    Ok(0)
}

pub(super) async fn keyscan_cmd(address: &str, timeout: &str) -> Result<u8> {
    let timeout = crate::schedule::parse_duration(timeout)
        .map_err(|e| Error::Usage(format!("--timeout: {e}")))?;
    let (host, port) = split_host_port(address)?;
    let keys = crate::ssh::scan_host_keys(&host, port, timeout).await?;
    if keys.is_empty() {
        return Err(Error::Usage(format!(
            "{address}: the server offered no host key"
        )));
    }
    eprintln!(
        "# {address}: compare these fingerprints with the server's administrator before pinning a line"
    );
    for k in &keys {
        eprintln!("# {} {}", k.key_type, k.fingerprint);
    }
    for k in &keys {
        outln!("{}", k.line);
    }
    Ok(0)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the default port is 22.
pub(super) fn split_host_port(address: &str) -> Result<(String, u16)> {
    let bad = || Error::Usage(format!("`{address}`: expected HOST or HOST:PORT"));
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), parse_port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), 22)),
            None => Err(bad()),
        };
    }
    match address.rsplit_once(':') {
        Some((host, p)) if !host.is_empty() && !host.contains(':') => {
            Ok((host.to_string(), parse_port(p)?))
        }
        None if !address.is_empty() => Ok((address.to_string(), 22)),
        _ => Err(bad()),
    }
}

pub(super) async fn rotate_password_cmd(ctx: &Ctx, target: &str, namespace: &str) -> Result<u8> {
    let (store, name, spec) = applied_delivery_target(ctx, target, namespace, true).await?;
    let Some(hosted) = &spec.hosted_sftp else {
        return Err(Error::Usage(format!(
            "DeliveryTarget `{name}` is not a hostedSftp connection: only hosted SFTP users have \
             generated passwords"
        )));
    };
    let user = &hosted.user;
    let connections = Runner::new(store.clone(), ctx.secrets.clone())
        .hosted_connections()
        .await?;
    if !crate::hosted_sftp::users_needing_password(&connections).contains(user) {
        let with_keys: Vec<String> = connections
            .iter()
            .filter(|c| &c.user == user && !c.public_keys.is_empty())
            .map(|c| format!("{}/{}", c.namespace, c.target_name))
            .collect();
        return Err(Error::Usage(format!(
            "hosted SFTP user `{user}` logs in with the public keys of {}: it has no password to \
             rotate (remove its keys to switch it to a generated password)",
            with_keys.join(", ")
        )));
    }
    let (password, hash) = crate::hosted_sftp::issue_password().await?;
    store.rotate_password(user, &hash).await?;
    let via: Vec<String> = connections
        .iter()
        .filter(|c| &c.user == user)
        .map(|c| format!("{}/{}", c.namespace, c.target_name))
        .collect();
    outln!(
        "New password for hosted SFTP user `{user}` ({}). It is shown this once: only its \
         Argon2id hash is kept. The previous password no longer works and open sessions are closed.\n",
        via.join(", ")
    );
    outln!("  {password}");
    Ok(0)
}
