//! One SSH connection of the hosted SFTP server, from accept to close: the accept loop, the
//! unauthenticated pool of the [`admission`] gate, the login grace, authentication with
//! throttling and lock-out ([`Client`], russh's handler), the session slot, and the SFTP
//! channels it opens (each run by [`super::channel`]).
//!
//! [`admission`]: super::admission

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::admission::{PendingEnd, SessionRefusal};
use super::channel::run_sftp_channel;
use super::jail;
use super::session::{Credential, LiveSession, Login, SHUTDOWN_WAIT, Shared, lock};
use super::sftp::SessionContext;
use super::throttle::{Refused, Subject};
use super::users;
use crate::Result;

/// How often the gauges of connections, sessions and penalized sources are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    ssh_config: Arc<russh::server::Config>,
    login_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    match shared.gate.admit(id, peer.ip(), Instant::now()) {
                        Ok(admitted) => {
                            shared.connections.fetch_add(1, Ordering::AcqRel);
                            tokio::spawn(connection(
                                shared.clone(),
                                ssh_config.clone(),
                                stream,
                                peer,
                                id,
                                admitted.evicted,
                                login_grace,
                                shutdown.clone(),
                            ));
                        }
                        Err(refusal) => {
                            // Closed at once, without a word: an SSH server owes nothing to a
                            // source over its limits (sshd does the same).
                            tracing::debug!(
                                address = %peer,
                                reason = refusal.label(),
                                "hosted SFTP: connection refused"
                            );
                            crate::observe::sftp_connection_refused(refusal.label());
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "hosted SFTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Keeps the gauges of unauthenticated connections, sessions and penalized sources current
/// (penalties expire on their own), until the server stops.
pub(super) async fn refresh_gauges(
    shared: std::sync::Weak<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let counts = shared.gate.counts(Instant::now());
        drop(shared);
        crate::observe::sftp_connections(counts.unauthenticated, counts.sessions, counts.penalized);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
    }
}

/// What a connection's task and its SSH handler both know.
#[derive(Default)]
struct ConnectionState {
    /// Logged in and holding a session slot.
    authenticated: AtomicBool,
    /// A login was attempted (for the penalty of connections that never try).
    auth_tried: AtomicBool,
    /// The user once logged in.
    user: Mutex<Option<String>>,
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    shared: Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    evicted: oneshot::Receiver<()>,
    login_grace: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnectionState::default());
    let ended = serve_connection(
        &shared,
        ssh_config,
        stream,
        peer,
        id,
        &state,
        evicted,
        login_grace,
        shutdown,
    )
    .await;
    if state.authenticated.load(Ordering::Acquire) {
        let user = lock(&state.user).clone().unwrap_or_default();
        shared.gate.end_session(&user);
        if let Some(live) = lock(&shared.sessions).remove(&id) {
            tracing::info!(
                user = %live.login.user,
                address = %peer,
                "hosted SFTP: logged out"
            );
        }
    } else {
        let how = ended.unwrap_or(if state.auth_tried.load(Ordering::Acquire) {
            PendingEnd::AuthFailed
        } else {
            PendingEnd::NoAuth
        });
        shared.gate.end_pending(id, peer.ip(), how, Instant::now());
        crate::observe::sftp_unauthenticated_closed(how.label());
    }
    shared.connections.fetch_sub(1, Ordering::AcqRel);
}

/// Runs one connection until it ends; says how, when the connection itself did not end it
/// (the login grace ran out, it was evicted, the server stops).
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    shared: &Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    state: &Arc<ConnectionState>,
    mut evicted: oneshot::Receiver<()>,
    login_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<PendingEnd> {
    // The grace runs from the first byte: a client that connects and says nothing, or stalls
    // in the handshake, is out when it ends.
    let deadline = tokio::time::Instant::now() + login_grace;
    let _ = stream.set_nodelay(true);
    let handler = Client {
        shared: shared.clone(),
        id,
        peer,
        state: state.clone(),
        login: None,
        revoked: Arc::new(AtomicBool::new(false)),
        channels: HashMap::new(),
        opened: 0,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    let handshake = tokio::time::timeout_at(
        deadline,
        russh::server::run_stream(ssh_config, stream, handler),
    );
    let session = tokio::select! {
        started = handshake => match started {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection failed");
                return None;
            }
            Err(_) => {
                tracing::info!(address = %peer, "hosted SFTP: no SSH greeting within the login grace; disconnected");
                return Some(PendingEnd::GraceExceeded);
            }
        },
        _ = &mut evicted => return Some(PendingEnd::Evicted),
        _ = shutdown.changed() => return Some(PendingEnd::Shutdown),
    };
    let handle = session.handle();
    tokio::pin!(session);
    let grace = tokio::time::sleep_until(deadline);
    tokio::pin!(grace);
    let mut grace_pending = true;
    let mut evict_pending = true;
    let mut ended = None;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(address = %peer, error = %e, "hosted SFTP: connection ended");
                }
                return ended;
            }
            () = &mut grace, if grace_pending => {
                grace_pending = false;
                if !state.authenticated.load(Ordering::Acquire) {
                    tracing::info!(address = %peer, "hosted SFTP: no login within the login grace; disconnected");
                    ended = Some(PendingEnd::GraceExceeded);
                    break;
                }
            }
            result = &mut evicted, if evict_pending => {
                evict_pending = false;
                if result.is_ok() && !state.authenticated.load(Ordering::Acquire) {
                    tracing::debug!(address = %peer, "hosted SFTP: waiting connection evicted for another source");
                    ended = Some(PendingEnd::Evicted);
                    break;
                }
            }
            _ = shutdown.changed() => {
                ended = Some(PendingEnd::Shutdown);
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "server shutting down".into(), String::new())
                    .await;
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, &mut session).await;
                return ended;
            }
        }
    }
    // Grace over or evicted: say so if the client listens, but never wait on it for long (a
    // client that reads nothing would hold the task until the idle timeout).
    let reason = match ended {
        Some(PendingEnd::Evicted) => "too many connections waiting to log in",
        _ => "login grace time over",
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = handle
            .disconnect(Disconnect::ByApplication, reason.into(), String::new())
            .await;
        let _ = (&mut session).await;
    })
    .await;
    ended
}

/// One connection's SSH handler.
struct Client {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    state: Arc<ConnectionState>,
    login: Option<Login>,
    revoked: Arc<AtomicBool>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    opened: usize,
    /// Bytes of requests waiting across this session's channels.
    queued: Arc<AtomicUsize>,
}

impl Client {
    fn ip(&self) -> IpAddr {
        self.peer.ip()
    }

    /// Whether the address, or `user` when given, is locked out.
    fn locked(&self, user: Option<&str>) -> bool {
        let logins = &self.shared.logins;
        logins.is_locked(&Subject::Address(self.ip()))
            || user.is_some_and(|u| logins.is_locked(&Subject::User(u.to_string())))
    }

    /// Logs and counts an attempt refused before its check.
    fn refused(&self, user: &str, method: &str, refused: &Refused) {
        let (reason, subject) = match refused {
            Refused::Locked(s) => ("locked out", s),
            Refused::AttemptsInFlight(s) => ("too many attempts under way", s),
        };
        // Each lock-out is logged once, when it starts; the attempts it refuses only at debug.
        tracing::debug!(
            user = ?user,
            address = %self.peer,
            method,
            subject = %subject,
            "hosted SFTP: login refused: {reason}"
        );
        crate::observe::sftp_login(method, "refused");
    }

    /// Records a failed check; returns how long to wait before answering.
    fn failed(&self, user: &str, method: &str, verdict: super::throttle::Verdict) -> Duration {
        tracing::info!(user = ?user, address = %self.peer, method, "hosted SFTP: login failed");
        crate::observe::sftp_login(method, "failed");
        if verdict.address_locked_now {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins from this address: locked out"
            );
            crate::observe::sftp_lockout("address");
        }
        if verdict.user_locked_now {
            tracing::warn!(
                user = ?user,
                address = %self.peer.ip(),
                "hosted SFTP: too many failed logins for this user: locked out"
            );
            crate::observe::sftp_lockout("user");
        }
        verdict.delay
    }

    fn succeeded(&mut self, user: &str, credential: Credential, method: &str) {
        crate::observe::sftp_login(method, "succeeded");
        self.login = Some(Login {
            user: user.to_string(),
            credential,
        });
    }

    fn start_sftp(&mut self, channel: Channel<Msg>, handle: russh::server::Handle) -> bool {
        let Some(login) = &self.login else {
            return false;
        };
        let namespace_lock = lock(&self.shared.namespace_locks)
            .entry(login.user.clone())
            .or_default()
            .clone();
        let ctx = SessionContext {
            users: self.shared.users.clone(),
            user: login.user.clone(),
            root: jail::user_root(&self.shared.data_dir, &login.user),
            revoked: self.revoked.clone(),
            peer: self.peer,
            namespace_lock,
        };
        run_sftp_channel(&self.shared, channel, ctx, self.queued.clone(), handle)
    }
}

impl russh::server::Handler for Client {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer proves nothing (no signature yet): it is answered, never counted.
        if self.locked(Some(user)) {
            return Ok(Auth::reject());
        }
        let users = users::current(&self.shared.users);
        let known = users.get(user).is_some_and(|u| u.has_key(offer.public_key));
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        const METHOD: &str = "publickey";
        self.state.auth_tried.store(true, Ordering::Release);
        if self.locked(Some(user)) {
            self.refused(
                user,
                METHOD,
                &Refused::Locked(Subject::User(user.to_string())),
            );
            return Ok(Auth::reject());
        }
        // Counted against the address only: a key cannot be guessed (see `throttle`).
        let attempt = match self.shared.logins.begin(self.ip(), None).await {
            Ok(attempt) => attempt,
            Err(refused) => {
                self.refused(user, METHOD, &refused);
                return Ok(Auth::reject());
            }
        };
        let users = users::current(&self.shared.users);
        if users.get(user).is_some_and(|u| u.has_key(key.public_key)) {
            attempt.succeeded();
            self.succeeded(user, Credential::Key(key.public_key.clone()), METHOD);
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, METHOD, attempt.failed());
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        const METHOD: &str = "password";
        self.state.auth_tried.store(true, Ordering::Release);
        let users = users::current(&self.shared.users);
        let hash = users
            .get(user)
            .filter(|u| u.uses_password())
            .and_then(|u| u.password_hash.clone());
        let is_password_user = hash.is_some();
        // Counted when it starts, against the address and, when the password could have been
        // right, the user: a burst of guesses gets no more checks than the threshold.
        let attempt = match self
            .shared
            .logins
            .begin(self.ip(), is_password_user.then_some(user))
            .await
        {
            Ok(attempt) => attempt,
            Err(refused) => {
                self.refused(user, METHOD, &refused);
                return Ok(Auth::reject());
            }
        };
        let against = hash
            .clone()
            .unwrap_or_else(|| self.shared.decoy_hash.clone());
        let guess = password.to_string();
        let matches = tokio::task::spawn_blocking(move || users::verify_password(&guess, &against))
            .await
            .unwrap_or(false);
        if let (true, Some(hash)) = (matches, hash) {
            attempt.succeeded();
            self.succeeded(user, Credential::Password(hash), METHOD);
            return Ok(Auth::Accept);
        }
        let delay = self.failed(user, METHOD, attempt.failed());
        tokio::time::sleep(delay).await;
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Err(russh::Error::NotAuthenticated);
        };
        // A session slot, global and per user: refused with a message the client shows.
        if let Err(refusal) = self.shared.gate.promote(self.id, &login.user) {
            let message = refusal.message(&login.user);
            tracing::warn!(
                user = %login.user,
                address = %self.peer,
                "hosted SFTP: session refused: {message}"
            );
            crate::observe::sftp_connection_refused(refusal.label());
            let code = match refusal {
                SessionRefusal::Evicted => Disconnect::ByApplication,
                _ => Disconnect::TooManyConnections,
            };
            session.disconnect(code, &message, "")?;
            return Ok(());
        }
        *lock(&self.state.user) = Some(login.user.clone());
        self.state.authenticated.store(true, Ordering::Release);
        let mut sessions = lock(&self.shared.sessions);
        // Checked again under the sessions lock: an update that removed the user between the
        // check at login and here either sees this session or is seen by this check.
        if !login.authorized_by(&users::current(&self.shared.users)) {
            drop(sessions);
            session.disconnect(Disconnect::ByApplication, "access revoked", "")?;
            return Ok(());
        }
        sessions.insert(
            self.id,
            LiveSession {
                login: login.clone(),
                peer: self.peer,
                handle: session.handle(),
                revoked: self.revoked.clone(),
                since: SystemTime::now(),
            },
        );
        drop(sessions);
        tracing::info!(
            user = %login.user,
            address = %self.peer,
            method = %login.method(),
            "hosted SFTP: logged in"
        );
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_none() || self.opened >= self.shared.limits.max_channels.max(1) {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.opened += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.opened = self.opened.saturating_sub(1);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp"
            && let Some(channel) = self.channels.remove(&channel_id)
        {
            session.channel_success(channel_id)?;
            if !self.start_sftp(channel, session.handle()) {
                session.close(channel_id)?;
            }
            return Ok(());
        }
        session.channel_failure(channel_id)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}
