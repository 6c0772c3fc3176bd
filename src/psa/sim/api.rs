//! What a simulated PSA is to the server around it: the request and response it sees, the
//! faults a test injects, and the [`Api`] trait each product implements. A leaf: the server
//! (`psa::sim`) and the products (`psa::sim::connectwise`, `psa::sim::autotask`) both build
//! on it, and it depends on neither.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request as a simulated API sees it.
#[derive(Clone, Debug)]
pub struct SimRequest {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path, percent-decoded, without the query string (e.g. `/v4_6_release/apis/3.0/company/companies`).
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// Request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl SimRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name` (case-insensitive, as both PSAs treat them).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> std::result::Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the body is not JSON: {e}"))
    }
}

/// A response from a simulated API.
#[derive(Clone, Debug)]
pub struct SimResponse {
    /// HTTP status.
    pub status: u16,
    /// Extra headers (`Content-Type: application/json` is added for JSON bodies).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SimResponse {
    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Self {
        SimResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("JSON values serialize"),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A failure to inject, for tests and dry runs. Faults apply in the order injected, to the
/// API's requests only (never to `/_sim/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    /// The next `count` requests get 429 with `Retry-After: retry_after` (seconds).
    RateLimit {
        /// How many requests are refused.
        count: u32,
        /// The `Retry-After` value, in seconds.
        retry_after: u32,
    },
    /// The next `count` requests get a 500 in the API's error shape.
    ServerError {
        /// How many requests fail.
        count: u32,
    },
    /// Every request waits this long before being answered (0 removes it).
    Latency {
        /// Milliseconds.
        millis: u64,
    },
    /// The configured credentials stop working (as when an API key expires or is revoked):
    /// every authenticated request is refused as the real API refuses bad credentials, until
    /// [`Fault::RestoreKeys`].
    ExpireKeys,
    /// Undoes [`Fault::ExpireKeys`].
    RestoreKeys,
    /// Autotask only: the tenant moves to another zone. The old zone answers 401 to
    /// authenticated calls; zone discovery returns the new zone's URL (same server, another
    /// path prefix).
    MoveZone,
    /// After `after` more API requests, the next `count` API requests are answered with 503
    /// (the service going away), so a test can cut a sync in the middle; then service resumes.
    Outage {
        /// API requests still answered before the outage starts.
        after: u32,
        /// How many requests fail with 503.
        count: u32,
    },
}

/// Fault state shared by the scaffolding and the API (keys and zones are the API's business).
#[derive(Debug, Default)]
pub struct Faults {
    pub(super) queue: VecDeque<Fault>,
    pub(super) latency: Duration,
    /// Credentials refused (see [`Fault::ExpireKeys`]).
    pub keys_expired: bool,
    /// How many zone moves happened (see [`Fault::MoveZone`]).
    pub zone_moves: u32,
}

/// One logged request.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Status answered.
    pub status: u16,
}

/// What a simulated PSA implements.
pub trait Api: Send + Sync + 'static {
    /// Answers one API request. `faults` tells whether keys are expired or the zone moved.
    /// `base_url` is `http://ADDR` of this server (for `Link` and `nextPageUrl` headers).
    fn handle(&self, req: &SimRequest, faults: &Faults, base_url: &str) -> SimResponse;
    /// The error response the API gives for a failure injected by [`Fault::ServerError`] or
    /// [`Fault::Outage`] (`status` 500 or 503).
    fn error(&self, status: u16, message: &str) -> SimResponse;
    /// The whole data set, as JSON.
    fn state(&self) -> Value;
}

/// Base64 (standard alphabet) as both PSAs accept it in JSON bodies: padding optional,
/// surrounding white space ignored. `None` when the text is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s.trim()).ok()
}
