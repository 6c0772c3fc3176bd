//! Strict local simulators of the two PSA REST APIs (`../shared/psa-api.md`), served by
//! `ferry psa-sim connectwise|autotask --listen ADDR --data FILE` and started in-process by the
//! tests. "Strict": they refuse what the real services refuse (authentication, page sizes,
//! required fields, query syntax) with the documented error shapes, so a client that passes
//! against them speaks the real contract.
//!
//! This module is the shared HTTP scaffolding: one [`Api`] per PSA answers requests; around it
//! the server injects the failures tests ask for ([`Fault`]: 429 storms with `Retry-After`,
//! 500s, latency, expired keys, an Autotask zone move), keeps a request log, and serves a small
//! control API under `/_sim/` (no authentication; bind it to 127.0.0.1):
//!
//! - `GET /_sim/state`: the whole simulated data set, as JSON (what tests assert on).
//! - `POST /_sim/faults`: a JSON [`Fault`] to inject; `DELETE /_sim/faults` clears them.
//! - `GET /_sim/requests`: the request log (`[{method, path, status}]`).

pub mod api;
pub mod autotask;
pub mod connectwise;

pub use api::{Api, Fault, Faults, LoggedRequest, SimRequest, SimResponse};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use serde_json::Value;

use crate::{Error, Result};

struct Shared {
    api: Box<dyn Api>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<LoggedRequest>>,
    served: AtomicU64,
    base_url: String,
}

/// A running simulator.
pub struct SimServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Binds `listen` (port 0: any free port) and serves `api` until [`SimServer::shutdown`].
    pub async fn start(listen: SocketAddr, api: Box<dyn Api>) -> Result<SimServer> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Usage(format!("psa-sim: cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("psa-sim: {e}")))?;
        let shared = Arc::new(Shared {
            api,
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
            base_url: format!("http://{addr}"),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(serve(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(SimServer {
            shared,
            addr,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        inject(&self.shared, fault);
    }

    /// Removes queued faults and latency (expired keys and zone moves stay).
    pub fn clear_faults(&self) {
        let mut f = lock(&self.shared.faults);
        f.queue.clear();
        f.latency = Duration::ZERO;
    }

    /// The simulated data set.
    pub fn state(&self) -> Value {
        self.shared.api.state()
    }

    /// API requests answered so far (control requests excluded).
    pub fn requests_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// The request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Stops accepting connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn inject(shared: &Shared, fault: Fault) {
    let mut f = lock(&shared.faults);
    match fault {
        Fault::Latency { millis } => f.latency = Duration::from_millis(millis),
        Fault::ExpireKeys => f.keys_expired = true,
        Fault::RestoreKeys => f.keys_expired = false,
        Fault::MoveZone => f.zone_moves += 1,
        other => f.queue.push_back(other),
    }
}

/// The fault that applies to the next API request, consuming it.
fn next_fault(faults: &mut Faults) -> Option<(u16, Option<u32>)> {
    let front = faults.queue.front_mut()?;
    let (answer, done) = match front {
        Fault::RateLimit { count, retry_after } => {
            *count = count.saturating_sub(1);
            (Some((429, Some(*retry_after))), *count == 0)
        }
        Fault::ServerError { count } => {
            *count = count.saturating_sub(1);
            (Some((500, None)), *count == 0)
        }
        Fault::Outage { after, count } => {
            if *after > 0 {
                *after -= 1;
                (None, false)
            } else {
                *count = count.saturating_sub(1);
                (Some((503, None)), *count == 0)
            }
        }
        _ => (None, true),
    };
    if done {
        faults.queue.pop_front();
    }
    answer
}

async fn serve(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let raw_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (path, query) = split_query(&raw_path);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let request = SimRequest {
        method: method.clone(),
        path,
        query,
        headers,
        body,
    };
    let response = if request.path.starts_with("/_sim/") {
        control(&shared, &request)
    } else {
        let (fault, latency) = {
            let mut f = lock(&shared.faults);
            (next_fault(&mut f), f.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let response = match fault {
            Some((429, retry_after)) => {
                let mut r = shared.api.error(429, "Too many requests");
                if let Some(s) = retry_after {
                    r = r.with_header("retry-after", s.to_string());
                }
                r
            }
            Some((status, _)) => shared.api.error(status, "Injected failure"),
            None => {
                // A snapshot of the faults, so requests reach the API concurrently (the
                // Autotask thread limit needs that), on a blocking thread (an API may sleep).
                let snapshot = {
                    let f = lock(&shared.faults);
                    Faults {
                        keys_expired: f.keys_expired,
                        zone_moves: f.zone_moves,
                        ..Faults::default()
                    }
                };
                let api = shared.clone();
                let req = request.clone();
                tokio::task::spawn_blocking(move || api.api.handle(&req, &snapshot, &api.base_url))
                    .await
                    .unwrap_or_else(|_| shared.api.error(500, "the simulator panicked"))
            }
        };
        shared.served.fetch_add(1, Ordering::Relaxed);
        lock(&shared.log).push(LoggedRequest {
            method,
            path: raw_path,
            status: response.status,
        });
        response
    };
    let mut builder = hyper::Response::builder().status(response.status);
    for (k, v) in &response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

fn control(shared: &Shared, req: &SimRequest) -> SimResponse {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_sim/state") => SimResponse::json(200, &shared.api.state()),
        ("GET", "/_sim/requests") => SimResponse::json(
            200,
            &serde_json::to_value(&*lock(&shared.log)).unwrap_or(Value::Null),
        ),
        ("POST", "/_sim/faults") => match serde_json::from_slice::<Fault>(&req.body) {
            Ok(fault) => {
                inject(shared, fault);
                SimResponse::json(204, &Value::Null)
            }
            Err(e) => SimResponse::json(400, &serde_json::json!({"error": e.to_string()})),
        },
        ("DELETE", "/_sim/faults") => {
            let mut f = lock(&shared.faults);
            f.queue.clear();
            f.latency = Duration::ZERO;
            SimResponse::json(204, &Value::Null)
        }
        _ => SimResponse::json(404, &serde_json::json!({"error": "unknown control path"})),
    }
}

/// Splits `path?query` and percent-decodes both (`+` is a space in the query).
pub fn split_query(raw: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect();
    (decode(path, false), params)
}

/// Percent-decoding; with `plus`, `+` decodes to a space.
pub fn decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which simulator `ferry psa-sim` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKind {
    /// ConnectWise Manage REST API 3.0.
    Connectwise,
    /// Autotask REST API v1.0.
    Autotask,
}

/// Builds the API of `kind` from a data file (YAML or JSON; see each simulator's `Data`).
pub fn load_api(kind: SimKind, data_file: &std::path::Path) -> Result<Box<dyn Api>> {
    let text = std::fs::read_to_string(data_file).map_err(|e| Error::io(data_file, e))?;
    let bad = |e: String| Error::Usage(format!("{}: {e}", data_file.display()));
    Ok(match kind {
        SimKind::Connectwise => {
            let data: connectwise::Data =
                serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
            Box::new(connectwise::ConnectWise::new(data).map_err(bad)?)
        }
        SimKind::Autotask => {
            let data: autotask::Data =
                serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
            Box::new(autotask::Autotask::new(data).map_err(bad)?)
        }
    })
}
