//! A fault-injecting TCP proxy for the delivery tests: it listens on 127.0.0.1 (port 0, so the
//! kernel picks a free one), forwards each connection to one upstream server on the loopback
//! and applies a [`Fault`] to the connections its [`Faults`] plan names: cut after some bytes,
//! stall then cut, throttle, or pass untouched.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] proxied connections at a time (the next one waits to be
//! accepted), at most one FTP data connection per control connection (announcing another ends
//! the previous one; the control connection's end ends it), one fixed buffer per direction of
//! each connection, bounded waits for a data connection and for the upstream, and every task
//! runs on the proxy's own runtime, which dropping the [`FaultProxy`] shuts down: no task
//! outlives it. It binds and forwards to loopback addresses only.
//!
//! FTP ([`Protocol::Ftp`]): the file travels on a separate passive data connection, so the
//! proxy rewrites the server's `229 Entering Extended Passive Mode (|||port|)` and
//! `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` replies on the control connection to name a
//! one-shot listener of its own (127.0.0.1, port 0) that forwards to the server's data port.
//! The faults then apply to the data connections (numbered in the order they are accepted);
//! control connections pass untouched. Plain FTP only: a TLS control channel (FTPS) cannot be
//! read, so its replies cannot be rewritten.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// Proxied connections (plain or FTP control) open at once; the next waits to be accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection over [`FaultProxy::start_limited`]'s limit may wait for another to
/// finish closing before it is refused.
pub const LIMIT_GRACE: Duration = Duration::from_millis(250);
/// One direction's buffer.
const BUFFER: usize = 64 * 1024;
/// The longest FTP control reply line kept whole for rewriting; longer ones pass as they are.
const MAX_LINE: usize = 4096;
/// How long a one-shot FTP data listener waits for the client.
const DATA_ACCEPT_WITHIN: Duration = Duration::from_secs(30);
/// Connecting to the upstream server.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Records kept (one per connection): far more than a test makes.
const MAX_RECORDS: usize = 1000;

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded untouched.
    Pass,
    /// Once `after_bytes` bytes went from the client to the server, both sides are closed
    /// abruptly (a TCP reset: SO_LINGER 0), whatever is still in flight.
    Cut { after_bytes: u64 },
    /// Once `after_bytes` bytes went from the client to the server, nothing more is forwarded
    /// either way for `for_`, then both sides are cut as by [`Fault::Cut`].
    Stall { after_bytes: u64, for_: Duration },
    /// Each direction forwarded at no more than `bytes_per_sec`.
    Slow { bytes_per_sec: u64 },
}

/// Which connections get a fault (the others pass): numbered from 0 in the order accepted (for
/// FTP, the data connections).
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    first: usize,
    fault: Fault,
}

impl Faults {
    /// The first `n` connections get `fault`.
    pub fn first(n: usize, fault: Fault) -> Self {
        Faults { first: n, fault }
    }

    /// Every connection gets `fault`.
    pub fn all(fault: Fault) -> Self {
        Faults::first(usize::MAX, fault)
    }

    fn for_connection(&self, index: usize) -> Fault {
        if index < self.first {
            self.fault
        } else {
            Fault::Pass
        }
    }
}

/// How the proxied protocol is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Any protocol on one connection (SFTP, SMTP): the faults apply to the connections.
    Tcp,
    /// Plain FTP: passive replies rewritten, the faults apply to the data connections.
    Ftp,
}

/// What became of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed normally.
    Closed,
    /// The fault cut it (after a stall, for [`Fault::Stall`]).
    Cut,
    /// A read or write failed (e.g. the client reset it), or the upstream refused.
    Failed(String),
    /// Its task was cancelled first: its FTP control connection or the proxy ended.
    Cancelled,
}

/// One proxied connection, recorded when it ended.
#[derive(Clone, Debug)]
pub struct Record {
    /// A data connection of FTP (else a plain or control connection).
    pub data: bool,
    /// Its number among the connections the faults are counted over.
    pub index: usize,
    pub fault: Fault,
    /// Bytes forwarded from the client to the server.
    pub up: u64,
    /// Bytes forwarded from the server to the client.
    pub down: u64,
    pub ended: Ended,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    data_accepted: AtomicUsize,
    /// Connections on the proxy's port open now.
    open: AtomicUsize,
    /// Connections turned away by [`FaultProxy::start_limited`]'s limit.
    refused: AtomicUsize,
    records: Mutex<Vec<Record>>,
}

impl Stats {
    fn record(&self, r: Record) {
        let mut records = self.records.lock().unwrap();
        if records.len() < MAX_RECORDS {
            records.push(r);
        }
    }
}

/// A running proxy. Dropping it stops every listener and connection.
pub struct FaultProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (a loopback address).
    pub fn start(upstream: SocketAddr, protocol: Protocol, faults: Faults) -> FaultProxy {
        Self::start_with(upstream, protocol, faults, None)
    }

    /// The same, with a server's connection limit: a connection that finds `limit` others
    /// open, and still does after [`LIMIT_GRACE`] (the others' teardown, which reaches this
    /// proxy a little after their client finished), is refused (closed at once), as a server
    /// with `MaxStartups` or a per-user cap does. [`FaultProxy::refused`] counts them.
    pub fn start_limited(upstream: SocketAddr, faults: Faults, limit: usize) -> FaultProxy {
        Self::start_with(upstream, Protocol::Tcp, faults, Some(limit))
    }

    fn start_with(
        upstream: SocketAddr,
        protocol: Protocol,
        faults: Faults,
        limit: Option<usize>,
    ) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to the loopback"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("the proxy's address");
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            upstream,
            protocol,
            faults,
            limit,
            stats: stats.clone(),
        });
        runtime.spawn(accept_loop(listener, shared));
        FaultProxy {
            addr,
            stats,
            runtime: Some(runtime),
        }
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted on the proxy's port (for FTP, control connections).
    pub fn connections(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused by the limit of [`FaultProxy::start_limited`].
    pub fn refused(&self) -> usize {
        self.stats.refused.load(Ordering::SeqCst)
    }

    /// FTP data connections accepted (always 0 for [`Protocol::Tcp`]).
    pub fn data_connections(&self) -> usize {
        self.stats.data_accepted.load(Ordering::SeqCst)
    }

    /// The connections that ended so far, in the order they ended.
    pub fn records(&self) -> Vec<Record> {
        self.stats.records.lock().unwrap().clone()
    }

    /// The ended connections the faults were counted over (FTP: data; else all), by index.
    pub fn faulted_records(&self, protocol: Protocol) -> Vec<Record> {
        let mut r: Vec<Record> = self
            .records()
            .into_iter()
            .filter(|r| r.data == (protocol == Protocol::Ftp))
            .collect();
        r.sort_by_key(|r| r.index);
        r
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Every task is cancelled at its next await; none blocks.
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    protocol: Protocol,
    faults: Faults,
    limit: Option<usize>,
    stats: Arc<Stats>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let Ok((client, _)) = listener.accept().await else {
            sleep(Duration::from_millis(50)).await;
            continue;
        };
        if let Some(limit) = shared.limit {
            let deadline = tokio::time::Instant::now() + LIMIT_GRACE;
            while shared.stats.open.load(Ordering::SeqCst) >= limit
                && tokio::time::Instant::now() < deadline
            {
                sleep(Duration::from_millis(2)).await;
            }
            if shared.stats.open.load(Ordering::SeqCst) >= limit {
                shared.stats.refused.fetch_add(1, Ordering::SeqCst);
                drop(client);
                continue;
            }
        }
        let index = shared.stats.accepted.fetch_add(1, Ordering::SeqCst);
        shared.stats.open.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection(shared.stats.clone());
            match shared.protocol {
                Protocol::Tcp => {
                    let fault = shared.faults.for_connection(index);
                    let up = shared.upstream;
                    proxy(client, up, fault, false, index, shared.stats.clone(), None).await;
                }
                Protocol::Ftp => {
                    let up = shared.upstream;
                    let control = FtpControl {
                        shared: shared.clone(),
                        data_task: None,
                    };
                    let stats = shared.stats.clone();
                    proxy(client, up, Fault::Pass, false, index, stats, Some(control)).await;
                }
            }
        });
    }
}

/// Counts a connection as open until dropped.
struct OpenConnection(Arc<Stats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An FTP control connection's state: the data connection it announced last.
struct FtpControl {
    shared: Arc<Shared>,
    data_task: Option<AbortOnDrop>,
}

/// A task aborted when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FtpControl {
    /// A server reply line (without its CRLF), rewritten when it announces a passive data port:
    /// a one-shot listener of the proxy takes its place.
    async fn rewrite(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(line).ok()?;
        let server_port = if text.starts_with("229 ") {
            epsv_port(text)?
        } else if text.starts_with("227 ") {
            pasv_port(text)?
        } else {
            return None;
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let upstream = SocketAddr::new(self.shared.upstream.ip(), server_port);
        // One data connection at a time: announcing another ends the previous one.
        let forward = data_connection(listener, upstream, self.shared.clone());
        self.data_task = Some(AbortOnDrop(tokio::spawn(forward)));
        let open = text.find('(')?;
        Some(if text.starts_with("229 ") {
            format!("{}(|||{port}|)", &text[..open]).into_bytes()
        } else {
            format!(
                "{}(127,0,0,1,{},{}).",
                &text[..open],
                port >> 8,
                port & 0xff
            )
            .into_bytes()
        })
    }
}

/// Forwards the one data connection `listener` accepts (within [`DATA_ACCEPT_WITHIN`]) to
/// `upstream`, with the fault of its number. Boxed: a control connection's forwarding spawns it.
fn data_connection(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let Ok(Ok((client, _))) = timeout(DATA_ACCEPT_WITHIN, listener.accept()).await else {
            return;
        };
        drop(listener);
        let index = shared.stats.data_accepted.fetch_add(1, Ordering::SeqCst);
        let fault = shared.faults.for_connection(index);
        proxy(
            client,
            upstream,
            fault,
            true,
            index,
            shared.stats.clone(),
            None,
        )
        .await;
    })
}

/// The port of `229 Entering Extended Passive Mode (|||port|)` (any delimiter).
fn epsv_port(reply: &str) -> Option<u16> {
    let inner = &reply[reply.find('(')? + 1..reply.rfind(')')?];
    let delimiter = inner.chars().next()?;
    inner.split(delimiter).nth(3).and_then(|p| p.parse().ok())
}

/// The port of `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
fn pasv_port(reply: &str) -> Option<u16> {
    let inner = &reply[reply.find('(')? + 1..reply.rfind(')')?];
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    (n.len() == 6 && n[4] < 256 && n[5] < 256).then(|| n[4] * 256 + n[5])
}

/// How one direction ended.
enum Pumped {
    Eof,
    /// The byte limit was reached (the fault's trigger).
    Limit,
}

/// Copies `from` to `to` until the end, counting in `count`; stops once `limit` bytes went
/// through (never forwarding more); no faster than `rate` bytes per second.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    count: &AtomicU64,
    limit: Option<u64>,
    rate: Option<u64>,
) -> std::io::Result<Pumped> {
    let chunk = rate.map_or(BUFFER, |r| (r as usize / 20).clamp(512, BUFFER));
    let mut buf = vec![0u8; chunk];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let want = match limit {
            Some(l) if total >= l => return Ok(Pumped::Limit),
            Some(l) => chunk.min((l - total) as usize),
            None => chunk,
        };
        let n = from.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(Pumped::Eof);
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
        count.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(r) = rate {
            sleep_until(started + Duration::from_secs_f64(total as f64 / r as f64)).await;
        }
    }
}

/// The server-to-client direction of an FTP control connection: whole lines, passive replies
/// rewritten.
async fn pump_control(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    count: &AtomicU64,
    control: &mut FtpControl,
) -> std::io::Result<Pumped> {
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut buf = vec![0u8; MAX_LINE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.write_all(&pending).await?;
            return Ok(Pumped::Eof);
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let bare = line
                .strip_suffix(b"\r\n")
                .unwrap_or(&line[..line.len() - 1]);
            match control.rewrite(bare).await {
                Some(mut rewritten) => {
                    rewritten.extend_from_slice(b"\r\n");
                    to.write_all(&rewritten).await?;
                }
                None => to.write_all(&line).await?,
            }
            count.fetch_add(line.len() as u64, Ordering::SeqCst);
        }
        if pending.len() >= MAX_LINE {
            to.write_all(&pending).await?;
            count.fetch_add(pending.len() as u64, Ordering::SeqCst);
            pending.clear();
        }
    }
}

/// Records a connection when it ends, also when its task is cancelled (an FTP data connection
/// ends with its control connection; every connection ends with the proxy).
struct Recorder {
    stats: Arc<Stats>,
    data: bool,
    index: usize,
    fault: Fault,
    up: AtomicU64,
    down: AtomicU64,
    ended: Option<Ended>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stats.record(Record {
            data: self.data,
            index: self.index,
            fault: self.fault,
            up: self.up.load(Ordering::SeqCst),
            down: self.down.load(Ordering::SeqCst),
            ended: self.ended.take().unwrap_or(Ended::Cancelled),
        });
    }
}

/// Forwards `client` to a new connection to `upstream` with `fault`, and records how it went.
async fn proxy(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    data: bool,
    index: usize,
    stats: Arc<Stats>,
    mut control: Option<FtpControl>,
) {
    let mut rec = Recorder {
        stats,
        data,
        index,
        fault,
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        ended: None,
    };
    let mut server = match timeout(CONNECT_WITHIN, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            rec.ended = Some(Ended::Failed(format!("connect to {upstream}: {e}")));
            return;
        }
        Err(_) => {
            rec.ended = Some(Ended::Failed(format!("connect to {upstream}: timed out")));
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let limit = match fault {
        Fault::Cut { after_bytes } | Fault::Stall { after_bytes, .. } => Some(after_bytes),
        _ => None,
    };
    let rate = match fault {
        Fault::Slow { bytes_per_sec } => Some(bytes_per_sec.max(1)),
        _ => None,
    };
    let outcome: Result<bool, String> = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let (up, down) = (&rec.up, &rec.down);
        let upward = async {
            let pumped = pump(&mut cr, &mut sw, up, limit, rate).await?;
            if let Pumped::Eof = pumped {
                sw.shutdown().await?;
            }
            Ok::<_, std::io::Error>(pumped)
        };
        let downward = async {
            match control.as_mut() {
                Some(c) => pump_control(&mut sr, &mut cw, down, c).await?,
                None => pump(&mut sr, &mut cw, down, None, rate).await?,
            };
            cw.shutdown().await
        };
        tokio::pin!(upward, downward);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break Ok(false);
            }
            tokio::select! {
                r = &mut upward, if !up_done => match r {
                    Ok(Pumped::Limit) => break Ok(true),
                    Ok(Pumped::Eof) => up_done = true,
                    Err(e) => break Err(format!("client to server: {e}")),
                },
                r = &mut downward, if !down_done => match r {
                    Ok(()) => down_done = true,
                    Err(e) => break Err(format!("server to client: {e}")),
                },
            }
        }
        // Leaving this block drops both directions: nothing more is forwarded.
    };
    rec.ended = Some(match outcome {
        Ok(false) => Ended::Closed,
        Ok(true) => {
            if let Fault::Stall { for_, .. } = fault {
                sleep(for_).await;
            }
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            Ended::Cut
        }
        Err(e) => {
            // Pass the failure on as abruptly as it came.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            Ended::Failed(e)
        }
    });
    drop((client, server));
    // The data connection an FTP control connection announced ends with it.
    drop(control);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies_are_parsed() {
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (|||41234|)"),
            Some(41234)
        );
        assert_eq!(
            pasv_port("227 Entering Passive Mode (127,0,0,1,160,32)."),
            Some(160 * 256 + 32)
        );
        assert_eq!(pasv_port("227 Entering Passive Mode (1,2,3)."), None);
    }
}
