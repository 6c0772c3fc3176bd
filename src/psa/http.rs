//! Plumbing shared by the ConnectWise ([`super::connectwise`]) and Autotask
//! ([`super::autotask`]) clients: one reqwest client per PSA client (rustls with ring and the
//! system's trust roots, connect timeout 10 s, request timeout 60 s, no redirects so that
//! credentials never follow a `Location` to another host), retries, a count of the HTTP
//! requests sent, and error messages that never carry credentials.
//!
//! # Retry rules ([`Http::send`])
//!
//! - A reply is retried when the client's [`RetryRule`] says so: [`standard_retryable`]
//!   (ConnectWise: 429, every 5xx, and any reply whose body says "Thread Threshold Exceeded")
//!   or the Autotask rule (`super::autotask::autotask_retryable`, which does not retry a 500
//!   whose body reads as a validation or lookup failure). Other 4xx are never retried.
//! - Requests that must not be applied twice ([`Replay::CreateOnce`]: creating an addition, a
//!   contract service, a ticket, a unit adjustment whose `unitChange` is a delta) are retried
//!   only when the server certainly did not act: 429, 503, "Thread Threshold Exceeded", or a
//!   connection that could not be opened. A 500/502/504 or a timeout after the request went
//!   out is reported instead of repeated (the sync engine looks records up before creating
//!   them, so the next run repairs it without a duplicate or a doubled delta).
//! - Transport failures (connection refused, reset, timeout) are retried for
//!   [`Replay::Safe`] requests (reads and absolute updates).
//! - The pause is `Retry-After` when the reply has one (delta seconds or an HTTP date), capped
//!   at [`RetryPolicy::max_retry_after`], plus up to 250 ms of jitter; otherwise exponential
//!   backoff from [`RetryPolicy::base_backoff`], doubling per attempt, capped at
//!   [`RetryPolicy::max_backoff`], with "equal jitter" (between half and all of it).
//! - At most [`RetryPolicy::attempts`] requests in all (the first one included); throttling
//!   replies that carry `Retry-After` (the server asks to come back, it did not fail) do not
//!   use attempts up, up to [`MAX_THROTTLED`] of them per request.
//! - A `Retry-After` pauses the whole client, not only the request that got it: every request
//!   waits until then, so concurrent requests do not keep hitting a rate limit they all share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// Throttling replies with `Retry-After` a single request waits out before it fails.
pub const MAX_THROTTLED: u32 = 30;

/// TCP + TLS connection timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout (sending, waiting, reading the body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How hard a client tries before reporting a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests in all, the first one included (0 counts as 1).
    pub attempts: u32,
    /// The first backoff; it doubles with each further attempt.
    pub base_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest wait a `Retry-After` header can impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based) when the reply named none:
    /// `base_backoff * 2^(attempt-1)`, capped at `max_backoff`, of which the upper half is
    /// scaled by `jitter` (in `[0, 1]`).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .base_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The wait a `Retry-After` of `asked` imposes.
    pub fn retry_after_wait(&self, asked: Duration) -> Duration {
        asked.min(self.max_retry_after)
    }
}

/// Whether a request may be sent again after a failure whose effect is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Reads and absolute updates (set quantity, cancel, close): repeating them is harmless.
    Safe,
    /// Creates and relative changes: repeated only when the server certainly did not act.
    CreateOnce,
}

/// Decides from a non-2xx reply's status and body whether another attempt may succeed.
pub type RetryRule = fn(u16, &[u8]) -> bool;

/// ConnectWise's rule: 429, every 5xx, and "Thread Threshold Exceeded" whatever the status.
pub fn standard_retryable(status: u16, body: &[u8]) -> bool {
    status == 429 || (500..=599).contains(&status) || thread_threshold_exceeded(body)
}

/// Whether the body carries Autotask's per-endpoint concurrency refusal.
pub fn thread_threshold_exceeded(body: &[u8]) -> bool {
    contains_ignore_ascii_case(body, "thread threshold exceeded")
}

/// Whether the server certainly did not act on the request: a throttle (429, "Thread Threshold
/// Exceeded") or 503 Service Unavailable.
pub fn not_acted_upon(status: u16, body: &[u8]) -> bool {
    status == 429 || status == 503 || thread_threshold_exceeded(body)
}

/// The whole decision for one reply: retry only non-2xx replies the rule accepts and, for a
/// [`Replay::CreateOnce`] request, only when the server did not act.
pub fn should_retry(rule: RetryRule, replay: Replay, status: u16, body: &[u8]) -> bool {
    if (200..300).contains(&status) || !rule(status, body) {
        return false;
    }
    match replay {
        Replay::Safe => true,
        Replay::CreateOnce => not_acted_upon(status, body),
    }
}

/// Case-insensitive (ASCII) substring search in a body.
pub fn contains_ignore_ascii_case(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A `Retry-After` value: delta seconds (`"120"`, also `"1.5"`) or an HTTP date
/// (`"Wed, 21 Oct 2026 07:28:00 GMT"`, counted from `now`; a date in the past is 0).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = v.parse().ok()?;
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?;
    let millis = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(millis.max(0) as u64))
}

/// The `rel="next"` target of RFC 8288 `Link` header values (several headers, or several
/// comma-separated links in one; commas inside `<...>` are part of the URL).
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values.into_iter().find_map(|v| {
        parse_links(v).into_iter().find_map(|(url, params)| {
            params
                .iter()
                .any(|(k, v)| {
                    k == "rel"
                        && v.split_ascii_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
                .then_some(url)
        })
    })
}

/// `(url, [(param, value)])` of each link in one `Link` header value; parameter names are
/// lower-cased, quotes removed from values.
fn parse_links(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(r) = rest.strip_prefix('<') else {
            break;
        };
        let Some(end) = r.find('>') else {
            break;
        };
        let url = r[..end].trim().to_string();
        rest = &r[end + 1..];
        // The parameters run to the next comma outside a quoted string.
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut quoted = false;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => quoted = !quoted,
                b'\\' if quoted => i += 1,
                b',' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        let i = i.min(rest.len());
        let params = rest[..i]
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        out.push((url, params));
        rest = &rest[i..];
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value or a
/// path segment; a space becomes `%20`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (for HTTP Basic credentials).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text of a PSA error body: ConnectWise `message` plus `errors[].field: message`,
/// Autotask `errors[]` strings, joined with `"; "`; a non-JSON body's first 200 characters on
/// one line.
pub fn body_message(body: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            parts.push(m.trim().to_string());
        }
        if let Some(errors) = v.get("errors").and_then(Value::as_array) {
            for e in errors {
                let text = match e {
                    Value::String(s) => s.trim().to_string(),
                    Value::Object(_) => {
                        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                        match e.get("field").and_then(Value::as_str) {
                            Some(f) if !f.is_empty() && !message.is_empty() => {
                                format!("{f}: {message}")
                            }
                            Some(f) if !f.is_empty() => format!("{f}: invalid"),
                            _ => message.to_string(),
                        }
                    }
                    _ => String::new(),
                };
                parts.push(text);
            }
        }
        if parts.iter().all(|p| p.is_empty())
            && let Some(code) = v.get("code").and_then(Value::as_str)
        {
            parts.push(code.to_string());
        }
        if parts.iter().all(|p| p.is_empty())
            && let Some(e) = v.get("error").and_then(Value::as_str)
        {
            parts.push(e.to_string());
        }
    } else {
        let text = String::from_utf8_lossy(body);
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        parts.push(line.chars().take(200).collect());
    }
    let mut seen = Vec::new();
    for p in parts {
        if !p.is_empty() && !seen.contains(&p) {
            seen.push(p);
        }
    }
    seen.join("; ")
}

/// `"{psa} {method} {path}: HTTP {status}: {message}"`, plus the number of attempts when
/// there was more than one. An empty message becomes the status's reason phrase.
pub fn format_status_error(
    psa: &str,
    method: &Method,
    path: &str,
    status: u16,
    message: &str,
    attempts: u32,
) -> String {
    let mut s = format!("{psa} {method} {path}: HTTP {status}");
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match (message.is_empty(), reason) {
        (false, _) => {
            s.push_str(": ");
            s.push_str(message);
        }
        (true, Some(r)) => {
            s.push(' ');
            s.push_str(r);
        }
        (true, None) => {}
    }
    if attempts > 1 {
        s.push_str(&format!(" (after {attempts} attempts)"));
    }
    s
}

/// A fraction in `[0, 1)` from the operating system's randomness (0.5 if it has none).
fn jitter() -> f64 {
    getrandom::u64()
        .map(|r| (r >> 11) as f64 / (1u64 << 53) as f64)
        .unwrap_or(0.5)
}

/// One request to send, possibly several times.
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    /// The absolute URL.
    pub url: &'a str,
    /// What messages and logs call it: the path under the API base, without the query.
    pub label: &'a str,
    /// Every header, credentials included (marked sensitive).
    pub headers: &'a HeaderMap,
    /// A JSON body (`Content-Type` is the caller's header to set).
    pub body: Option<Bytes>,
    pub replay: Replay,
    /// A permit of this semaphore is held while each attempt is on the wire (not during
    /// backoff pauses).
    pub gate: Option<&'a Semaphore>,
}

/// A reply, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Requests sent to get it.
    pub attempts: u32,
}

impl Reply {
    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The HTTP client of one PSA client, with its retry rules and request counter.
pub(crate) struct Http {
    psa: &'static str,
    client: reqwest::Client,
    policy: RetryPolicy,
    rule: RetryRule,
    requests: Arc<AtomicU64>,
    /// No request is sent before this instant (set by a `Retry-After`).
    paused_until: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Credential values (and encodings of them) scrubbed from every message, should a
    /// server or proxy ever echo one.
    secrets: Vec<String>,
}

impl Http {
    /// A client for `psa` (`"ConnectWise"`, `"Autotask"`, the first word of its messages).
    pub fn new(
        psa: &'static str,
        policy: RetryPolicy,
        rule: RetryRule,
        secrets: Vec<String>,
    ) -> Result<Http> {
        let fail = |e: String| Error::Psa(format!("{psa}: cannot set up the HTTP client: {e}"));
        let tls = crate::tls::system_client_config().map_err(fail)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Our own retries only, so that every request sent is counted.
            .retry(reqwest::retry::never())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(describe(&e)))?;
        Ok(Http {
            psa,
            client,
            policy,
            rule,
            requests: Arc::new(AtomicU64::new(0)),
            paused_until: Arc::new(std::sync::Mutex::new(None)),
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
        })
    }

    /// HTTP requests sent so far, retries and discovery included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends `out`, retrying as the module documentation says. Returns the last reply,
    /// whatever its status (the caller interprets errors); fails only when no reply came.
    pub async fn send(&self, out: Outgoing<'_>) -> Result<Reply> {
        let mut attempts = self.policy.attempts.max(1);
        let mut throttled = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pause = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = pause
                && until > Instant::now()
            {
                tokio::time::sleep_until(until.into()).await;
            }
            let permit = match out.gate {
                Some(g) => Some(g.acquire().await.map_err(|_| {
                    Error::Psa(format!(
                        "{} {} {}: client closed",
                        self.psa, out.method, out.label
                    ))
                })?),
                None => None,
            };
            let started = Instant::now();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .client
                .request(out.method.clone(), out.url)
                .headers(out.headers.clone());
            if let Some(body) = &out.body {
                request = request.body(body.clone());
            }
            let result = exchange(request).await;
            drop(permit);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok((status, headers, body)) => {
                    tracing::debug!(
                        psa = self.psa,
                        method = %out.method,
                        path = out.label,
                        status,
                        attempt,
                        elapsed_ms,
                        "PSA request"
                    );
                    if attempt < attempts && should_retry(self.rule, out.replay, status, &body) {
                        let asked = headers
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
                        let wait = match asked {
                            Some(d) => {
                                let wait = self.policy.retry_after_wait(d);
                                // The whole client waits: the limit is shared.
                                let until = Instant::now() + wait;
                                let mut paused =
                                    self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
                                if paused.is_none_or(|p| p < until) {
                                    *paused = Some(until);
                                }
                                if (status == 429 || thread_threshold_exceeded(&body))
                                    && throttled < MAX_THROTTLED
                                {
                                    throttled += 1;
                                    attempts += 1;
                                }
                                wait + Duration::from_millis((jitter() * 250.0) as u64)
                            }
                            None => self.policy.backoff(attempt, jitter()),
                        };
                        tracing::debug!(
                            psa = self.psa,
                            method = %out.method,
                            path = out.label,
                            status,
                            attempt,
                            wait_ms = wait.as_millis() as u64,
                            "PSA request will be retried"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Ok(Reply {
                        status,
                        headers,
                        body,
                        attempts: attempt,
                    });
                }
                Err(e) => {
                    let what = describe(&e);
                    tracing::debug!(
                        psa = self.psa,
                        method = %out.method,
                        path = out.label,
                        attempt,
                        elapsed_ms,
                        error = %self.scrub(what.clone()),
                        "PSA request failed"
                    );
                    let retry = e.is_connect()
                        || (out.replay == Replay::Safe && !e.is_builder() && !e.is_redirect());
                    if attempt < attempts && retry {
                        tokio::time::sleep(self.policy.backoff(attempt, jitter())).await;
                        continue;
                    }
                    let mut msg = format!("{} {} {}: {what}", self.psa, out.method, out.label);
                    if attempt > 1 {
                        msg.push_str(&format!(" (after {attempt} attempts)"));
                    }
                    return Err(Error::Psa(self.scrub(msg)));
                }
            }
        }
    }

    /// The error for a non-2xx reply: `"{psa} {METHOD} {path}: HTTP {status}: {message}"`.
    pub fn status_error(&self, method: &Method, label: &str, reply: &Reply) -> Error {
        Error::Psa(self.scrub(format_status_error(
            self.psa,
            method,
            label,
            reply.status,
            &body_message(&reply.body),
            reply.attempts,
        )))
    }

    /// The JSON of a 2xx reply as `T`.
    pub fn parse<T: DeserializeOwned>(
        &self,
        method: &Method,
        label: &str,
        reply: &Reply,
    ) -> Result<T> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            Error::Psa(self.scrub(format!(
                "{} {method} {label}: unexpected answer (HTTP {}): {e}",
                self.psa, reply.status
            )))
        })
    }

    /// `message` with every credential value replaced by `[redacted]`.
    pub fn scrub(&self, mut message: String) -> String {
        for s in &self.secrets {
            if message.contains(s.as_str()) {
                message = message.replace(s.as_str(), "[redacted]");
            }
        }
        message
    }
}

/// One request and its whole body.
async fn exchange(
    request: reqwest::RequestBuilder,
) -> std::result::Result<(u16, HeaderMap, Bytes), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok((status, headers, body))
}

/// A reqwest error and its causes, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut top = e.to_string();
    if let Some(url) = e.url() {
        // reqwest appends ` for url (...)`; keep messages short.
        top = top.replace(&format!(" for url ({url})"), "");
    }
    parts.push(top);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if e.is_timeout() && !parts.iter().any(|p| p.contains("timed out")) {
        parts.push("timed out".into());
    }
    parts.join(": ")
}

#[cfg(test)]
pub(crate) mod fake {
    //! A tiny HTTP/1.1 server answering with a test's handler, recording what it saw.

    use std::convert::Infallible;
    use std::future::Future;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use reqwest::header::HeaderMap;

    /// A request the fake received.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        /// Path and query.
        pub uri: String,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        }
        pub fn path(&self) -> &str {
            self.uri.split('?').next().unwrap_or("")
        }
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
        }
    }

    /// The fake's answer.
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Answer {
        pub fn json(status: u16, body: serde_json::Value) -> Answer {
            Answer {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string(),
            }
        }
        pub fn with_header(mut self, name: &str, value: &str) -> Answer {
            self.headers.push((name.into(), value.into()));
            self
        }
    }

    type Handler =
        Arc<dyn Fn(Seen) -> std::pin::Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

    pub struct Fake {
        pub url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Fake {
        /// Serves `handler` on 127.0.0.1 (any port).
        pub async fn start<F, Fut>(handler: F) -> Fake
        where
            F: Fn(Seen) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Answer> + Send + 'static,
        {
            let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let handler = handler.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let handler = handler.clone();
                                let log = log.clone();
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    let seen = Seen {
                                        method: parts.method.to_string(),
                                        uri: parts.uri.to_string(),
                                        headers: parts.headers,
                                        body,
                                    };
                                    log.lock().unwrap().push(seen.clone());
                                    let answer = handler(seen).await;
                                    let mut response =
                                        hyper::Response::builder().status(answer.status);
                                    for (k, v) in &answer.headers {
                                        response = response.header(k.as_str(), v.as_str());
                                    }
                                    Ok::<_, Infallible>(
                                        response.body(Full::new(Bytes::from(answer.body))).unwrap(),
                                    )
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Fake { url, seen, task }
        }

        /// Requests received so far.
        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::fake::{Answer, Fake};
    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_default_policy_is_six_attempts_from_half_a_second_to_thirty() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts, 6);
        assert_eq!(p.base_backoff, Duration::from_millis(500));
        assert_eq!(p.max_backoff, Duration::from_secs(30));
        assert_eq!(p.max_retry_after, Duration::from_secs(120));
    }

    #[test]
    fn backoff_doubles_per_attempt_and_stops_at_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(7, 1.0), Duration::from_secs(30));
        assert_eq!(p.backoff(1000, 1.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_keeps_backoff_between_half_and_all_of_it() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(3, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(1500));
        for _ in 0..100 {
            let d = p.backoff(3, jitter());
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now: jiff::Timestamp = "2026-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert!(parse_retry_after("99999999999999999999999", now).is_some());
    }

    #[test]
    fn retry_after_waits_are_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.retry_after_wait(Duration::from_secs(3600)),
            Duration::from_secs(120)
        );
        assert_eq!(
            p.retry_after_wait(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn throttles_and_server_errors_are_retried_and_other_client_errors_are_not() {
        let r = standard_retryable;
        for status in [429, 500, 502, 503, 504] {
            assert!(should_retry(r, Replay::Safe, status, b"{}"), "{status}");
        }
        for status in [200, 201, 204, 400, 401, 403, 404, 409, 422] {
            assert!(!should_retry(r, Replay::Safe, status, b"{}"), "{status}");
        }
        assert!(should_retry(
            r,
            Replay::Safe,
            403,
            br#"{"errors":["Thread Threshold Exceeded"]}"#
        ));
    }

    #[test]
    fn creates_are_retried_only_when_the_server_did_not_act() {
        let r = standard_retryable;
        assert!(should_retry(r, Replay::CreateOnce, 429, b""));
        assert!(should_retry(r, Replay::CreateOnce, 503, b""));
        assert!(should_retry(
            r,
            Replay::CreateOnce,
            500,
            b"thread threshold exceeded"
        ));
        for status in [500, 502, 504, 400] {
            assert!(
                !should_retry(r, Replay::CreateOnce, status, b"{}"),
                "{status}"
            );
        }
    }

    #[test]
    fn the_next_link_is_found_among_several() {
        let h = r#"<https://h/v4_6_release/apis/3.0/company/companies?pageSize=1000&page=2>; rel="next", <https://h/x?page=9>; rel="last""#;
        assert_eq!(
            next_link([h]).as_deref(),
            Some("https://h/v4_6_release/apis/3.0/company/companies?pageSize=1000&page=2")
        );
        assert_eq!(next_link([r#"<https://h/x?page=9>; rel="last""#]), None);
        assert_eq!(
            next_link([r#"<a>; rel=last"#, r#"<b>;rel=next"#]).as_deref(),
            Some("b")
        );
        assert_eq!(
            next_link([r#"<https://h/x?conditions=status/id in (1,2)&page=2>; title="a, b"; rel="prev next""#])
                .as_deref(),
            Some("https://h/x?conditions=status/id in (1,2)&page=2")
        );
        assert_eq!(next_link([""]), None);
        assert_eq!(next_link(["garbage"]), None);
    }

    #[test]
    fn percent_encoding_leaves_only_unreserved_characters() {
        assert_eq!(
            percent_encode(r#"identifier="A B" and x=1"#),
            "identifier%3D%22A%20B%22%20and%20x%3D1"
        );
        assert_eq!(percent_encode("a-z_0.9~"), "a-z_0.9~");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn error_bodies_of_both_psas_become_one_line() {
        let cw = br#"{"code":"InvalidObject","message":"Addition object is invalid","errors":[{"code":"NullValue","message":"Product is required","resource":"addition","field":"product"}]}"#;
        assert_eq!(
            body_message(cw),
            "Addition object is invalid; product: Product is required"
        );
        let at = br#"{"errors":["dueDateTime is required.; on record number [0].","queueID is required."]}"#;
        assert_eq!(
            body_message(at),
            "dueDateTime is required.; on record number [0].; queueID is required."
        );
        assert_eq!(
            body_message(b"<html>\n Bad   Gateway</html>"),
            "<html> Bad Gateway</html>"
        );
        assert_eq!(
            body_message(br#"{"code":"ConnectWiseApi"}"#),
            "ConnectWiseApi"
        );
        assert_eq!(body_message(b""), "");
    }

    #[test]
    fn status_errors_name_the_psa_method_path_and_status() {
        let m = format_status_error(
            "ConnectWise",
            &Method::GET,
            "/company/companies",
            400,
            "bad",
            1,
        );
        assert_eq!(m, "ConnectWise GET /company/companies: HTTP 400: bad");
        let m = format_status_error("Autotask", &Method::POST, "/Tickets", 429, "", 6);
        assert_eq!(
            m,
            "Autotask POST /Tickets: HTTP 429 Too Many Requests (after 6 attempts)"
        );
    }

    #[test]
    fn messages_never_carry_a_secret_even_if_a_server_echoes_it() {
        let http = Http::new(
            "Test",
            quick(),
            standard_retryable,
            vec!["s3cr3t-value".into(), "ab".into()],
        )
        .unwrap();
        let reply = Reply {
            status: 400,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"message":"bad header Secret: s3cr3t-value"}"#),
            attempts: 1,
        };
        let e = http.status_error(&Method::GET, "/x", &reply).to_string();
        assert!(!e.contains("s3cr3t-value"), "{e}");
        assert!(e.contains("[redacted]"), "{e}");
    }

    fn http(policy: RetryPolicy) -> Http {
        Http::new("Test", policy, standard_retryable, vec![]).unwrap()
    }

    async fn get(http: &Http, url: &str, replay: Replay) -> Result<Reply> {
        let headers = HeaderMap::new();
        http.send(Outgoing {
            method: if replay == Replay::Safe {
                Method::GET
            } else {
                Method::POST
            },
            url,
            label: "/x",
            headers: &headers,
            body: None,
            replay,
            gate: None,
        })
        .await
    }

    /// A fake answering with `statuses` in turn, then 200 (`Retry-After: 1` on 429s).
    async fn sequence(statuses: &'static [u16]) -> Fake {
        let n = Arc::new(AtomicU32::new(0));
        Fake::start(move |_| {
            let i = n.fetch_add(1, Ordering::SeqCst) as usize;
            async move {
                match statuses.get(i) {
                    Some(429) => Answer::json(429, serde_json::json!({"message": "slow down"}))
                        .with_header("retry-after", "1"),
                    Some(&s) => Answer::json(s, serde_json::json!({"message": "no"})),
                    None => Answer::json(200, serde_json::json!({"ok": true})),
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_retried_after_the_delay_it_asks_for() {
        let fake = sequence(&[429]).await;
        let http = http(quick());
        let started = Instant::now();
        let reply = get(&http, &format!("{}/x", fake.url), Replay::Safe)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.attempts, 2);
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(http.requests(), 2);
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let fake = sequence(&[400]).await;
        let http = http(quick());
        let reply = get(&http, &format!("{}/x", fake.url), Replay::Safe)
            .await
            .unwrap();
        assert_eq!(reply.status, 400);
        assert_eq!(fake.seen().len(), 1);
        assert_eq!(http.requests(), 1);
    }

    #[tokio::test]
    async fn a_500_then_a_200_succeeds() {
        let fake = sequence(&[500, 502]).await;
        let http = http(quick());
        let reply = get(&http, &format!("{}/x", fake.url), Replay::Safe)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(fake.seen().len(), 3);
        assert_eq!(http.requests(), 3);
    }

    #[tokio::test]
    async fn a_create_answered_500_is_not_sent_twice() {
        let fake = sequence(&[500]).await;
        let http = http(quick());
        let reply = get(&http, &format!("{}/x", fake.url), Replay::CreateOnce)
            .await
            .unwrap();
        assert_eq!(reply.status, 500);
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn retries_stop_after_the_policy_s_attempts() {
        let fake = sequence(&[503, 503, 503, 503, 503, 503]).await;
        let http = http(quick());
        let reply = get(&http, &format!("{}/x", fake.url), Replay::Safe)
            .await
            .unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.attempts, 4);
        assert_eq!(fake.seen().len(), 4);
        let e = http.status_error(&Method::GET, "/x", &reply).to_string();
        assert_eq!(e, "Test GET /x: HTTP 503: no (after 4 attempts)");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_then_reported_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/x?conditions=secret-ish",
            listener.local_addr().unwrap()
        );
        drop(listener);
        let http = http(quick());
        let e = get(&http, &url, Replay::Safe)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(http.requests(), 4);
        assert!(e.starts_with("Test GET /x: "), "{e}");
        assert!(!e.contains("secret-ish"), "{e}");
        assert!(e.contains("(after 4 attempts)"), "{e}");
    }
}
