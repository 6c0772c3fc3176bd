//! The Autotask connection: configuration and credential headers, the zone (discovered on
//! first use and again, once, after a 401), requests through the per-endpoint gates, queries
//! followed page by page along `nextPageUrl` (rebased onto the current zone), and Autotask's
//! retry rule.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::gates::{Gates, endpoint_of};
use super::picklists::TicketPicklists;
use super::zone::{Zone, discover};
use crate::psa::http::{
    Http, Outgoing, Replay, Reply, RetryPolicy, contains_ignore_ascii_case,
    thread_threshold_exceeded,
};
use crate::{Error, Result};

const PSA: &str = "Autotask";

/// Where zone discovery is asked.
pub const DEFAULT_ZONE_DISCOVERY_URL: &str =
    "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation";

/// Largest page a query may ask for.
const MAX_RECORDS: u32 = 500;
/// A query longer than this many pages is a server that keeps answering `nextPageUrl`.
const MAX_PAGES: usize = 10_000;

/// Phrases (compared without case) that make a 500 a refusal rather than a server failure:
/// validation messages (`"dueDateTime is required.; on record number [0]."`), unknown users
/// and zones, references that do not exist, contract rules.
pub const REFUSAL_MARKERS: &[&str] = &[
    "is required",
    "on record number",
    "could not be determined",
    "not found",
    "unable to find",
    "does not exist",
    "services can only",
    "can only be",
    "not a valid",
    "invalid",
    "is not an active",
    "is not active",
    "is missing",
    "does not match",
    "already",
    "cannot",
];

/// Autotask's retry rule: 429 and "Thread Threshold Exceeded" (whatever the status), 501-599,
/// and a 500 only when no error message contains one of [`REFUSAL_MARKERS`]. Other 4xx never.
pub fn autotask_retryable(status: u16, body: &[u8]) -> bool {
    if thread_threshold_exceeded(body) {
        return true;
    }
    match status {
        429 => true,
        500 => !REFUSAL_MARKERS
            .iter()
            .any(|m| contains_ignore_ascii_case(body, m)),
        501..=599 => true,
        _ => false,
    }
}

/// As whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct AutotaskConfig {
    /// The API user (`UserName`).
    pub username: String,
    /// The API user's secret (`Secret`).
    pub secret: String,
    /// The integration's tracking identifier (`ApiIntegrationCode`).
    pub integration_code: String,
    /// Zone discovery, normally [`DEFAULT_ZONE_DISCOVERY_URL`].
    pub zone_discovery_url: String,
}

impl fmt::Debug for AutotaskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskConfig")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("integration_code", &"<redacted>")
            .field("zone_discovery_url", &self.zone_discovery_url)
            .finish()
    }
}

/// An Autotask client. Cheap to clone; clones share the connection pool, the zone, the
/// per-endpoint limits, the ticket picklists and the request counter.
#[derive(Clone)]
pub struct Autotask {
    pub(super) inner: Arc<Inner>,
}

/// What clones share.
pub(super) struct Inner {
    pub(super) http: Http,
    pub(super) username: String,
    pub(super) discovery_url: String,
    /// ApiIntegrationCode, UserName, Secret, Content-Type, Accept.
    pub(super) headers: HeaderMap,
    /// The current zone, once discovered.
    pub(super) zone: tokio::sync::Mutex<Option<Zone>>,
    /// One semaphore per endpoint.
    pub(super) gates: Gates,
    /// `GET Tickets/entityInformation/fields`, read once.
    pub(super) ticket_fields: OnceCell<TicketPicklists>,
}

impl fmt::Debug for Autotask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autotask")
            .field("username", &self.inner.username)
            .field("discovery_url", &self.inner.discovery_url)
            .finish_non_exhaustive()
    }
}

/// Where a request goes: a path under the API base, or a next-page URL.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target<'a> {
    Path(&'a str),
    Page(&'a str),
}

/// The part of `url` after `/v1.0/` (case-insensitive).
fn after_version(url: &str) -> Option<&str> {
    let marker = "/v1.0/";
    let at = url.to_ascii_lowercase().find(marker)?;
    Some(&url[at + marker.len()..])
}

/// `{"op":"eq","field":..,"value":..}`.
pub(super) fn eq(field: &str, value: impl Into<Value>) -> Value {
    json!({"op": "eq", "field": field, "value": value.into()})
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    page_details: Option<PageDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    next_page_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Single<T> {
    pub(super) item: Option<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemId {
    item_id: i64,
}

impl Autotask {
    /// A client; nothing is sent until the first call.
    pub fn new(config: AutotaskConfig, retry: RetryPolicy) -> Result<Self> {
        let bad = |what: &str| Error::Psa(format!("Autotask: {what}"));
        if config.username.trim().is_empty() {
            return Err(bad("the API user name is empty"));
        }
        if config.secret.is_empty() {
            return Err(bad("the API secret is empty"));
        }
        if config.integration_code.trim().is_empty() {
            return Err(bad("the API integration code is empty"));
        }
        let discovery_url = config.zone_discovery_url.trim().to_string();
        if !(discovery_url.starts_with("https://") || discovery_url.starts_with("http://")) {
            return Err(bad(&format!(
                "the zone discovery URL `{discovery_url}` is not an http(s) URL"
            )));
        }
        let header = |name: &str, value: &str, sensitive: bool| -> Result<HeaderValue> {
            let mut v = HeaderValue::from_str(value.trim()).map_err(|_| {
                bad(&format!(
                    "the {name} contains characters a header cannot carry"
                ))
            })?;
            v.set_sensitive(sensitive);
            Ok(v)
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("apiintegrationcode"),
            header("integration code", &config.integration_code, true)?,
        );
        headers.insert(
            HeaderName::from_static("username"),
            header("user name", &config.username, false)?,
        );
        headers.insert(
            HeaderName::from_static("secret"),
            header("secret", &config.secret, true)?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = Http::new(
            PSA,
            retry,
            autotask_retryable,
            vec![config.secret, config.integration_code],
        )?;
        Ok(Autotask {
            inner: Arc::new(Inner {
                http,
                username: config.username.trim().to_string(),
                discovery_url,
                headers,
                zone: tokio::sync::Mutex::new(None),
                gates: Gates::default(),
                ticket_fields: OnceCell::new(),
            }),
        })
    }

    /// HTTP requests sent so far (retries and zone discoveries included).
    pub fn requests(&self) -> u64 {
        self.inner.http.requests()
    }

    /// `GET {path}` as `T`.
    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let label = format!("/{path}");
        let reply = self
            .exchange(Method::GET, Target::Path(path), None, Replay::Safe, &label)
            .await?;
        self.expect(&Method::GET, &label, &reply)
    }

    /// `POST {path}` of a new record; its `itemId`.
    pub(super) async fn create(&self, path: &str, body: &Value) -> Result<i64> {
        let label = format!("/{path}");
        let reply = self
            .exchange(
                Method::POST,
                Target::Path(path),
                Some(body),
                Replay::CreateOnce,
                &label,
            )
            .await?;
        let id: ItemId = self.expect(&Method::POST, &label, &reply)?;
        Ok(id.item_id)
    }

    /// Every item of a query, page by page.
    pub(super) async fn query<T: DeserializeOwned>(
        &self,
        entity: &str,
        filter: Value,
    ) -> Result<Vec<T>> {
        let path = format!("{entity}/query");
        let label = format!("/{path}");
        let body = json!({"filter": filter, "MaxRecords": MAX_RECORDS});
        let mut reply = self
            .exchange(
                Method::POST,
                Target::Path(&path),
                Some(&body),
                Replay::Safe,
                &label,
            )
            .await?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.expect(&Method::POST, &label, &reply)?;
            out.extend(page.items);
            let next = page
                .page_details
                .and_then(|d| d.next_page_url)
                .filter(|u| !u.trim().is_empty());
            let Some(next) = next else {
                return Ok(out);
            };
            reply = self
                .exchange(
                    Method::POST,
                    Target::Page(&next),
                    Some(&body),
                    Replay::Safe,
                    &label,
                )
                .await?;
        }
        Err(Error::Psa(format!(
            "Autotask POST {label}: more than {MAX_PAGES} pages; giving up"
        )))
    }

    /// The body of a 2xx reply as `T`; an error for any other.
    pub(super) fn expect<T: DeserializeOwned>(
        &self,
        method: &Method,
        label: &str,
        reply: &Reply,
    ) -> Result<T> {
        if !reply.ok() {
            return Err(self.inner.http.status_error(method, label, reply));
        }
        self.inner.http.parse(method, label, reply)
    }

    /// The tenant's zone as zone discovery answers now, numbered `generation`.
    async fn discover_zone(&self, generation: u64) -> Result<Zone> {
        let base = discover(
            &self.inner.http,
            &self.inner.discovery_url,
            &self.inner.username,
        )
        .await?;
        Ok(Zone { base, generation })
    }

    /// The current zone, discovering it on first use.
    pub(super) async fn zone(&self) -> Result<Zone> {
        let mut zone = self.inner.zone.lock().await;
        if let Some(z) = zone.as_ref() {
            return Ok(z.clone());
        }
        let z = self.discover_zone(1).await?;
        *zone = Some(z.clone());
        Ok(z)
    }

    /// A zone newer than `stale`: discovered again, unless another task already did.
    pub(super) async fn rediscover(&self, stale: &Zone) -> Result<Zone> {
        let mut zone = self.inner.zone.lock().await;
        if let Some(z) = zone.as_ref()
            && z.generation != stale.generation
        {
            return Ok(z.clone());
        }
        let z = self.discover_zone(stale.generation + 1).await?;
        tracing::debug!(
            psa = PSA,
            generation = z.generation,
            "Autotask zone discovered again after a 401"
        );
        *zone = Some(z.clone());
        Ok(z)
    }

    /// One API request in the current zone; on a 401 the zone is discovered again and the
    /// request sent once more; a second 401 is an authentication error. Other replies are
    /// returned.
    pub(super) async fn exchange(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<&Value>,
        replay: Replay,
        label: &str,
    ) -> Result<Reply> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let zone = self.zone().await?;
        let reply = self
            .send_in(&zone, &method, target, body.clone(), replay, label)
            .await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let fresh = self.rediscover(&zone).await?;
        let reply = self
            .send_in(&fresh, &method, target, body, replay, label)
            .await?;
        if reply.status == 401 {
            return Err(Error::Psa(format!(
                "Autotask {method} {label}: HTTP 401: the API secret of user `{}` was refused, \
                 also after looking up the zone again (expired or revoked?); check the API \
                 user's secret and integration code",
                self.inner.username
            )));
        }
        Ok(reply)
    }

    pub(super) async fn send_in(
        &self,
        zone: &Zone,
        method: &Method,
        target: Target<'_>,
        body: Option<Bytes>,
        replay: Replay,
        label: &str,
    ) -> Result<Reply> {
        let rest = match target {
            Target::Path(p) => p,
            Target::Page(url) => after_version(url).ok_or_else(|| {
                Error::Psa(format!(
                    "Autotask POST {label}: the nextPageUrl is not under /v1.0/"
                ))
            })?,
        };
        let url = format!("{}{rest}", zone.base);
        let gate = self.inner.gates.gate(&endpoint_of(rest));
        self.inner
            .http
            .send(Outgoing {
                method: method.clone(),
                url: &url,
                label,
                headers: &self.inner.headers,
                body,
                replay,
                gate: Some(&gate),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::tests::{CODE, SECRET, USER, client, fake, items, zone};
    use super::super::zone::api_base_of;
    use super::*;
    use crate::psa::http::fake::{Answer, Seen};
    use crate::psa::http::should_retry;

    #[test]
    fn a_500_is_retried_unless_it_reads_as_a_validation_or_lookup_failure() {
        let r = autotask_retryable;
        assert!(r(500, br#"{"errors":["Injected failure"]}"#));
        assert!(r(500, b""));
        assert!(r(503, br#"{"errors":["is required"]}"#));
        assert!(r(429, b"{}"));
        assert!(r(400, br#"{"errors":["Thread Threshold Exceeded"]}"#));
        for refusal in [
            "dueDateTime is required.; on record number [0].",
            "Zone information could not be determined",
            "Unable to find an API user named x.",
            "The ApiIntegrationCode header is missing or is not a valid integration code.",
            "Services can only be added to Recurring Service contracts (contractType 7).",
            "Contract 9 does not exist.",
            "Resource not found",
        ] {
            let body = json!({"errors": [refusal]}).to_string();
            assert!(!r(500, body.as_bytes()), "{refusal}");
        }
        for status in [400, 401, 403, 404, 405, 409] {
            assert!(!r(status, b"{}"), "{status}");
        }
        assert!(!should_retry(r, Replay::CreateOnce, 500, b"{}"));
        assert!(should_retry(r, Replay::CreateOnce, 429, b"{}"));
    }

    #[test]
    fn next_page_urls_are_rebased_after_v1_0() {
        assert_eq!(
            after_version(
                "https://ws5.autotask.net/ATServicesRest/V1.0/Companies/query/next?paging=x"
            ),
            Some("Companies/query/next?paging=x")
        );
        assert_eq!(after_version("https://elsewhere/next"), None);
        assert_eq!(
            api_base_of("https://webservices5.autotask.net/atservicesrest/"),
            "https://webservices5.autotask.net/atservicesrest/v1.0/"
        );
        assert_eq!(
            api_base_of("http://h/z/atservicesrest"),
            "http://h/z/atservicesrest/v1.0/"
        );
        assert_eq!(
            api_base_of("http://h/z/atservicesrest/v1.0/"),
            "http://h/z/atservicesrest/v1.0/"
        );
    }

    #[test]
    fn the_configuration_s_debug_output_hides_the_secret() {
        let c = AutotaskConfig {
            username: USER.into(),
            secret: SECRET.into(),
            integration_code: CODE.into(),
            zone_discovery_url: DEFAULT_ZONE_DISCOVERY_URL.into(),
        };
        let s = format!("{c:?} {:?}", client("http://127.0.0.1:9"));
        assert!(!s.contains(SECRET) && !s.contains(CODE), "{s}");
    }

    #[tokio::test]
    async fn queries_carry_the_credentials_and_follow_next_page_urls() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            if s.method == "POST" && !s.path().ends_with("/next") {
                // The next page in the real service's spelling, on another host name.
                return Answer::json(200, json!({
                    "items": [{"id": 1, "companyName": "Acme", "companyNumber": "A1", "isActive": true}],
                    "pageDetails": {"nextPageUrl": "https://other.example/ATServicesRest/V1.0/Companies/query/next?paging=%7B%7D"},
                }));
            }
            items(json!([{"id": 2, "companyName": "Acme", "isActive": false}]))
        })
        .await;
        let at = client(&fake.url);
        let found = at.companies_by_name("Acme").await.unwrap();
        assert_eq!(
            found.iter().map(|c| (c.id, c.active)).collect::<Vec<_>>(),
            [(1, true), (2, false)]
        );
        assert_eq!(found[0].identifier.as_deref(), Some("A1"));
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(at.requests(), 3);
        assert_eq!(
            seen[0].uri,
            "/atservicesrest/v1.0/zoneInformation?user=api%40acme.example"
        );
        assert!(seen[0].header("secret").is_none());
        let q = &seen[1];
        assert_eq!(q.uri, "/zone1/atservicesrest/v1.0/Companies/query");
        assert_eq!(
            q.json(),
            json!({"filter": [{"op": "eq", "field": "companyName", "value": "Acme"}], "MaxRecords": 500})
        );
        assert_eq!(q.header("secret").as_deref(), Some(SECRET));
        assert_eq!(q.header("apiintegrationcode").as_deref(), Some(CODE));
        assert_eq!(q.header("username").as_deref(), Some(USER));
        assert_eq!(
            q.header("content-type").as_deref(),
            Some("application/json")
        );
        // The next page is posted with the first page's query, in the discovered zone.
        assert_eq!(seen[2].method, "POST");
        assert_eq!(
            seen[2].uri,
            "/zone1/atservicesrest/v1.0/Companies/query/next?paging=%7B%7D"
        );
        assert_eq!(seen[2].json(), q.json());
        assert_eq!(seen[2].header("secret").as_deref(), Some(SECRET));
    }

    #[tokio::test]
    async fn a_401_triggers_exactly_one_zone_rediscovery_then_succeeds() {
        let lookups = Arc::new(AtomicU32::new(0));
        let counted = lookups.clone();
        let fake = fake(move |s: Seen, url: String| {
            let counted = counted.clone();
            async move {
                if s.path().ends_with("zoneInformation") {
                    let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    return zone(&url, n);
                }
                if s.path().starts_with("/zone1/") {
                    return Answer::json(401, json!({"errors": ["Authentication failed"]}));
                }
                Answer::json(
                    200,
                    json!({"item": {"id": 5, "companyName": "Acme", "isActive": true}}),
                )
            }
        })
        .await;
        let at = client(&fake.url);
        let c = at.company(5).await.unwrap().unwrap();
        assert_eq!(c.name, "Acme");
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        // The new zone is kept.
        at.company(5).await.unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        let paths: Vec<String> = fake.seen().iter().map(|s| s.path().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/atservicesrest/v1.0/zoneInformation",
                "/zone1/atservicesrest/v1.0/Companies/5",
                "/atservicesrest/v1.0/zoneInformation",
                "/zone2/atservicesrest/v1.0/Companies/5",
                "/zone2/atservicesrest/v1.0/Companies/5",
            ]
        );
    }

    #[tokio::test]
    async fn an_expired_secret_fails_after_one_rediscovery_without_naming_the_secret() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            Answer::json(
                401,
                json!({"errors": [format!("Secret {SECRET} is not valid")]}),
            )
        })
        .await;
        let at = client(&fake.url);
        let e = at.company(5).await.unwrap_err().to_string();
        assert!(e.contains(USER) && e.contains("refused"), "{e}");
        assert!(!e.contains(SECRET) && !e.contains(CODE), "{e}");
        assert_eq!(fake.seen().len(), 4);
    }

    #[tokio::test]
    async fn a_validation_500_is_not_retried_and_its_message_is_reported() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            Answer::json(500, json!({"errors": ["Service 9 is not on contract 3; add it with POST /Contracts/3/Services first.; on record number [0]."]}))
        })
        .await;
        let at = client(&fake.url);
        let e = at
            .adjust_units(3, 9, jiff::civil::date(2026, 11, 1), 5, None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Autotask POST /Contracts/3/ServiceAdjustments: HTTP 500: Service 9 is not on contract 3; add it with POST /Contracts/3/Services first.; on record number [0]."
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1].json(),
            json!({"contractID": 3, "serviceID": 9, "effectiveDate": "2026-11-01", "unitChange": 5})
        );
    }

    #[tokio::test]
    async fn a_thread_threshold_refusal_is_retried() {
        let n = Arc::new(AtomicU32::new(0));
        let fake = fake(move |s: Seen, url: String| {
            let n = n.clone();
            async move {
                if s.path().ends_with("zoneInformation") {
                    return zone(&url, 1);
                }
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Answer::json(500, json!({"errors": ["Thread Threshold Exceeded"]}));
                }
                Answer::json(200, json!({"itemId": 77}))
            }
        })
        .await;
        let at = client(&fake.url);
        let id = at.add_contract_service(3, 9, Some(12.5)).await.unwrap();
        assert_eq!(id, 77);
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[2].path(),
            "/zone1/atservicesrest/v1.0/Contracts/3/Services"
        );
        assert_eq!(
            seen[2].json(),
            json!({"contractID": 3, "serviceID": 9, "unitPrice": 12.5})
        );
    }

    #[tokio::test]
    async fn at_most_three_requests_per_endpoint_are_in_flight() {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), max.clone());
        let fake = fake(move |s: Seen, url: String| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                if s.path().ends_with("zoneInformation") {
                    return zone(&url, 1);
                }
                let current = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(60)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                items(json!([]))
            }
        })
        .await;
        let at = client(&fake.url);
        at.companies_by_name("warm-up").await.unwrap();
        let tasks: Vec<_> = (0..9)
            .map(|i| {
                let at = at.clone();
                tokio::spawn(async move { at.companies_by_name(&format!("C{i}")).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let max = max.load(Ordering::SeqCst);
        assert!(max <= 3, "{max} in flight");
        assert!(max >= 2, "requests ran one at a time ({max})");
        assert_eq!(fake.seen().len(), 11);
    }

    #[test]
    fn client_futures_can_be_spawned() {
        fn send<T: Send>(_: &T) {}
        let at = client("http://127.0.0.1:9");
        send(&at.companies_by_name("A"));
        send(&at.create_ticket(1, "q", "t", "d"));
        send(&at.adjust_units(1, 2, jiff::civil::date(2026, 1, 1), 1, None));
    }
}
