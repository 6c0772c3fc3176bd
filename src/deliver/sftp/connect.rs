//! Connecting to an SFTP server: TCP and SSH with the pinned host key checked, login with
//! a key or a password (keyboard-interactive too), and the SFTP subsystem with its extensions.

use std::sync::Arc;

use russh::MethodKind;
use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::RawSftpSession;

use super::{
    CONNECT_TIMEOUT, Credentials, DEFAULT_CHUNK, LIMITS, MAX_CHUNK, REQUEST_TIMEOUT_SECS, Sftp,
    SftpTransport,
};
use crate::ssh::{self, HostKeyCheck, PublicKey};
use crate::{Error, Result};

impl SftpTransport {
    /// Connects and checks the host key. Returns the session and the key's fingerprint.
    pub(super) async fn connect(&self) -> Result<(Handle<HostKeyCheck>, String)> {
        let algorithms = ssh::host_key_algorithms_for(&self.pinned);
        let config = Arc::new(ssh::client_config(algorithms.clone()));
        let (handler, offered) = HostKeyCheck::new(self.pinned.clone());
        let attempt = russh::client::connect(config, (self.host.as_str(), self.port), handler);
        let result = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await;
        let seen = offered.lock().ok().and_then(|s| s.clone());
        match result {
            Err(_) => Err(self.error(format!(
                "cannot connect to {}: no SSH handshake within {}s",
                self.host_port(),
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Ok(handle)) => match seen {
                Some(key) => Ok((handle, ssh::fingerprint(&key))),
                None => Err(self.error(format!(
                    "{}: the server did not prove a host key",
                    self.host_port()
                ))),
            },
            Ok(Err(russh::Error::UnknownKey)) => Err(self.host_key_mismatch(seen.as_slice())),
            Ok(Err(russh::Error::NoCommonAlgo {
                kind: russh::AlgorithmKind::Key,
                ..
            })) => {
                // The server has no key of a pinned type: show what it has instead.
                let others = ssh::offered_host_key(
                    &self.host,
                    self.port,
                    ssh::all_host_key_algorithms(),
                    CONNECT_TIMEOUT,
                )
                .await
                .ok()
                .flatten();
                Err(self.host_key_mismatch(others.as_slice()))
            }
            Ok(Err(e)) => Err(self.error(format!(
                "cannot connect to {}: {}",
                self.host_port(),
                ssh::describe_connect_error(&e)
            ))),
        }
    }

    /// The error for a server whose host key is not pinned.
    pub(super) fn host_key_mismatch(&self, offered: &[PublicKey]) -> Error {
        let pinned = self
            .pinned
            .iter()
            .map(|k| format!("{} {}", k.algorithm().as_str(), ssh::fingerprint(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let offered = match offered.first() {
            Some(k) => format!(
                "the server offered the {} key {}",
                k.algorithm().as_str(),
                ssh::fingerprint(k)
            ),
            None => "the server offered no host key of a pinned type".to_string(),
        };
        self.error(format!(
            "host key verification failed for {hp}: {offered}, which is not pinned in hostKeys \
             (pinned: {pinned}); nothing was uploaded and no credentials were sent. This can mean someone is intercepting the \
             connection. If the server's key was changed on purpose, verify the new fingerprint \
             with its administrator (out of band), then pin the line printed by \
             `ferry keyscan {hp}`",
            hp = self.host_port()
        ))
    }

    /// Logs in with the key (then the password if one is also given) or the password.
    pub(super) async fn authenticate(&self, handle: &mut Handle<HostKeyCheck>) -> Result<()> {
        let user = self.username.as_str();
        let mut refused: Vec<String> = Vec::new();
        let mut methods = None;
        let failed = |e: russh::Error| {
            self.error(format!(
                "authentication as `{user}` at {}: {}",
                self.host_port(),
                ssh::describe_connect_error(&e)
            ))
        };
        let password = match &self.credentials {
            Credentials::Key { key, password } => {
                let hash = if key.algorithm().is_rsa() {
                    match handle.best_supported_rsa_hash().await.map_err(failed)? {
                        Some(alg) => alg,
                        None => Some(HashAlg::Sha512),
                    }
                } else {
                    None
                };
                let attempt = PrivateKeyWithHashAlg::new(key.clone(), hash);
                match handle
                    .authenticate_publickey(user, attempt)
                    .await
                    .map_err(failed)?
                {
                    AuthResult::Success => return Ok(()),
                    AuthResult::Failure {
                        remaining_methods, ..
                    } => {
                        refused.push(format!(
                            "the server refused the {} key {}",
                            key.algorithm().as_str(),
                            ssh::fingerprint(key.public_key())
                        ));
                        methods = Some(remaining_methods);
                    }
                }
                password.as_ref()
            }
            Credentials::Password(p) => Some(p),
        };
        if let Some(secret) = password {
            let password = secret
                .expose_str()
                .map_err(|_| self.error("the password secret is not UTF-8 text"))?;
            match handle
                .authenticate_password(user, password)
                .await
                .map_err(failed)?
            {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure {
                    remaining_methods, ..
                } => {
                    let interactive = remaining_methods.contains(&MethodKind::KeyboardInteractive);
                    methods = Some(remaining_methods);
                    if interactive
                        && self
                            .keyboard_interactive(handle, password)
                            .await
                            .map_err(failed)?
                    {
                        return Ok(());
                    }
                    refused.push("the server refused the password".into());
                }
            }
        }
        let accepts = methods
            .map(|m| m.iter().map(<&str>::from).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .map(|s| format!(" (it accepts: {s})"))
            .unwrap_or_default();
        Err(self.error(format!(
            "authentication as `{user}` at {} failed: {}{accepts}",
            self.host_port(),
            refused.join("; ")
        )))
    }

    /// Answers keyboard-interactive prompts that do not echo (password prompts) with the
    /// password. `Ok(true)` when that logged in.
    pub(super) async fn keyboard_interactive(
        &self,
        handle: &mut Handle<HostKeyCheck>,
        password: &str,
    ) -> Result<bool, russh::Error> {
        let mut response = handle
            .authenticate_keyboard_interactive_start(self.username.as_str(), None)
            .await?;
        for _ in 0..4 {
            match response {
                KeyboardInteractiveAuthResponse::Success => return Ok(true),
                KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|p| {
                            if p.echo {
                                String::new()
                            } else {
                                password.to_string()
                            }
                        })
                        .collect();
                    response = handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await?;
                }
            }
        }
        Ok(false)
    }

    /// Opens the `sftp` subsystem and negotiates the protocol.
    pub(super) async fn open_sftp(&self, handle: &Handle<HostKeyCheck>) -> Result<Sftp> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            self.error(format!(
                "{what} at {} as `{}`: {e}",
                self.host_port(),
                self.username
            ))
        };
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| fail("cannot open an SSH session channel", &e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| fail("cannot start the sftp subsystem", &e))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        let raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = raw
            .init()
            .await
            .map_err(|e| fail("the sftp subsystem did not start (is SFTP enabled?)", &e))?;
        let extensions = version.extensions;
        let mut chunk = DEFAULT_CHUNK;
        if extensions.contains_key(LIMITS)
            && let Ok(limits) = raw.limits().await
        {
            // Room for the packet header and handle within the server's packet limit.
            let by_packet = usize::try_from(limits.max_packet_len)
                .unwrap_or(usize::MAX)
                .saturating_sub(1024);
            let by_write = usize::try_from(limits.max_write_len).unwrap_or(usize::MAX);
            let allowed = match (limits.max_packet_len, limits.max_write_len) {
                (0, 0) => DEFAULT_CHUNK,
                (0, _) => by_write,
                (_, 0) => by_packet,
                _ => by_write.min(by_packet),
            };
            chunk = allowed.clamp(4096, MAX_CHUNK);
        }
        Ok(Sftp {
            raw,
            extensions,
            chunk,
        })
    }
}
