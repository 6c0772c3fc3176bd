//! The ConnectWise connection: configuration, credentials and headers, the codebase
//! discovered once, requests (authentication failures told apart) and lists followed page by
//! page along the `Link` header, rebased onto the discovered API base.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::wire::{BoardStatus, CompanyStatus};
use crate::psa::http::{
    Http, Outgoing, Replay, Reply, RetryPolicy, base64, contains_ignore_ascii_case, next_link,
    percent_encode, standard_retryable,
};
use crate::{Error, Result};

const PSA: &str = "ConnectWise";
/// The API version pinned in `Accept` unless a target sets its own.
pub const DEFAULT_API_VERSION: &str = "2025.1";

/// The largest page the API serves.
const PAGE_SIZE: u32 = 1000;
/// A list longer than this many pages is a server that keeps answering `next`.
const MAX_PAGES: usize = 10_000;

/// Where and as whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectWiseConfig {
    /// The API host (`api-na.myconnectwise.net`); `https://` is implied.
    pub site: Option<String>,
    /// The root URL instead of `site` (`http://127.0.0.1:PORT` for the simulator); wins over
    /// `site` when both are set.
    pub base_url: Option<String>,
    /// The ConnectWise company id (the login company, e.g. `acmemsp`).
    pub company_id: String,
    /// The registered integration's `clientId`.
    pub client_id: String,
    /// The API member's public key.
    pub public_key: String,
    /// The API member's private key.
    pub private_key: String,
    /// The `Accept` version; `None` is [`DEFAULT_API_VERSION`].
    pub api_version: Option<String>,
}

impl fmt::Debug for ConnectWiseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseConfig")
            .field("site", &self.site)
            .field("base_url", &self.base_url)
            .field("company_id", &self.company_id)
            .field("client_id", &"<redacted>")
            .field("public_key", &"<redacted>")
            .field("private_key", &"<redacted>")
            .field("api_version", &self.api_version)
            .finish()
    }
}

/// A ConnectWise client. Cheap to clone; clones share the connection pool, the discovered
/// codebase and the request counter.
#[derive(Clone)]
pub struct ConnectWise {
    pub(super) inner: Arc<Inner>,
}

/// What clones share.
pub(super) struct Inner {
    pub(super) http: Http,
    /// `https://site` or the base URL, without a trailing `/`.
    pub(super) root: String,
    pub(super) company_id: String,
    /// Authorization, clientId, Accept.
    pub(super) headers: HeaderMap,
    /// `{root}/{codebase}apis/3.0/`, once discovered.
    pub(super) api_base: OnceCell<String>,
    /// `company/companies/statuses`, read once.
    pub(super) company_statuses: OnceCell<Vec<CompanyStatus>>,
    /// Each board's statuses, read once per board.
    pub(super) board_statuses: tokio::sync::Mutex<std::collections::HashMap<i64, Vec<BoardStatus>>>,
    /// Board ids by name, looked up once per name.
    pub(super) boards: tokio::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl fmt::Debug for ConnectWise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWise")
            .field("root", &self.inner.root)
            .field("company_id", &self.inner.company_id)
            .finish_non_exhaustive()
    }
}

/// `application/vnd.connectwise.com+json; version={version}`.
pub fn accept_value(version: &str) -> String {
    format!("application/vnd.connectwise.com+json; version={version}")
}

/// `{root}/{codebase}apis/3.0/`.
fn api_base_of(root: &str, codebase: &str) -> String {
    let codebase = codebase.trim().trim_matches('/');
    if codebase.is_empty() {
        format!("{root}/apis/3.0/")
    } else {
        format!("{root}/{codebase}/apis/3.0/")
    }
}

/// The API path (`company/companies?...`) of a `Link` URL, relative to `/apis/3.0/`.
fn api_relative(url: &str) -> Option<&str> {
    let marker = "/apis/3.0/";
    let lower = url.to_ascii_lowercase();
    let at = lower.find(marker)?;
    Some(&url[at + marker.len()..])
}

/// Whether a reply is ConnectWise refusing the credentials.
pub fn is_auth_failure(status: u16, body: &[u8]) -> bool {
    status == 401 || (status == 404 && contains_ignore_ascii_case(body, "UserNotAuthenticated"))
}

#[derive(Debug, Deserialize)]
struct CompanyInfo {
    #[serde(rename = "Codebase")]
    codebase: Option<String>,
}

impl ConnectWise {
    /// A client; nothing is sent until the first call.
    pub fn new(config: ConnectWiseConfig, retry: RetryPolicy) -> Result<Self> {
        let bad = |what: &str| Error::Psa(format!("ConnectWise: {what}"));
        let root = match (config.base_url.as_deref(), config.site.as_deref()) {
            (Some(u), _) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_string(),
            (_, Some(s)) if !s.trim().is_empty() => {
                let s = s.trim().trim_end_matches('/');
                if s.contains("://") {
                    s.to_string()
                } else {
                    format!("https://{s}")
                }
            }
            _ => return Err(bad("neither a site nor a base URL is configured")),
        };
        if !(root.starts_with("https://") || root.starts_with("http://")) {
            return Err(bad(&format!("`{root}` is not an http(s) URL")));
        }
        if config.company_id.trim().is_empty() {
            return Err(bad("the company id is empty"));
        }
        if config.client_id.trim().is_empty() {
            return Err(bad("the clientId is empty"));
        }
        if config.public_key.is_empty() || config.private_key.is_empty() {
            return Err(bad("the API member's public or private key is empty"));
        }
        let user = format!("{}+{}", config.company_id, config.public_key);
        let token = base64(format!("{user}:{}", config.private_key).as_bytes());
        let mut authorization = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| bad("the API keys contain characters a header cannot carry"))?;
        authorization.set_sensitive(true);
        let mut client_id = HeaderValue::from_str(config.client_id.trim())
            .map_err(|_| bad("the clientId contains characters a header cannot carry"))?;
        client_id.set_sensitive(true);
        let version = config
            .api_version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION);
        if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad(&format!(
                "apiVersion `{version}` is not a version such as {DEFAULT_API_VERSION}"
            )));
        }
        let accept = HeaderValue::from_str(&accept_value(version))
            .map_err(|_| bad("the apiVersion cannot be sent in a header"))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(HeaderName::from_static("clientid"), client_id);
        headers.insert(ACCEPT, accept);
        let http = Http::new(
            PSA,
            retry,
            standard_retryable,
            vec![config.public_key.clone(), config.private_key, token],
        )?;
        Ok(ConnectWise {
            inner: Arc::new(Inner {
                http,
                root,
                company_id: config.company_id.trim().to_string(),
                headers,
                api_base: OnceCell::new(),
                company_statuses: OnceCell::new(),
                board_statuses: Default::default(),
                boards: Default::default(),
            }),
        })
    }

    /// HTTP requests sent so far (retries and codebase discovery included).
    pub fn requests(&self) -> u64 {
        self.inner.http.requests()
    }

    /// `{root}/{codebase}apis/3.0/`, discovered on first use.
    pub(super) async fn api_base(&self) -> Result<&str> {
        let inner = &self.inner;
        inner
            .api_base
            .get_or_try_init(|| async {
                let label = format!("/login/companyinfo/{}", inner.company_id);
                let url = format!(
                    "{}/login/companyinfo/{}",
                    inner.root,
                    percent_encode(&inner.company_id)
                );
                let mut headers = HeaderMap::new();
                headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
                let reply = inner
                    .http
                    .send(Outgoing {
                        method: Method::GET,
                        url: &url,
                        label: &label,
                        headers: &headers,
                        body: None,
                        replay: Replay::Safe,
                        gate: None,
                    })
                    .await?;
                if !reply.ok() {
                    return Err(inner.http.status_error(&Method::GET, &label, &reply));
                }
                let info: Option<CompanyInfo> = inner.http.parse(&Method::GET, &label, &reply)?;
                match info
                    .and_then(|i| i.codebase)
                    .filter(|c| !c.trim().is_empty())
                {
                    Some(codebase) => Ok(api_base_of(&inner.root, &codebase)),
                    None => Err(Error::Psa(format!(
                        "ConnectWise GET {label}: no codebase for company id `{}` at {}; is \
                         the company id right?",
                        inner.company_id, inner.root
                    ))),
                }
            })
            .await
            .map(String::as_str)
    }

    /// One API request (relative `path`, optional JSON body); an authentication failure is an
    /// error, any other reply is returned.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Reply> {
        let url = format!("{}{path}", self.api_base().await?);
        self.send_url(method, &url, path, body, replay).await
    }

    pub(super) async fn send_url(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Reply> {
        match body {
            Some(b) => {
                let mut headers = self.inner.headers.clone();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.send_raw(
                    method,
                    url,
                    path,
                    &headers,
                    Bytes::from(b.to_string()),
                    replay,
                )
                .await
            }
            None => {
                self.send_with(method, url, path, &self.inner.headers, None, replay)
                    .await
            }
        }
    }

    pub(super) async fn send_raw(
        &self,
        method: Method,
        url: &str,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        replay: Replay,
    ) -> Result<Reply> {
        self.send_with(method, url, path, headers, Some(body), replay)
            .await
    }

    pub(super) async fn send_with(
        &self,
        method: Method,
        url: &str,
        path: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
        replay: Replay,
    ) -> Result<Reply> {
        let label = format!("/{}", path.split('?').next().unwrap_or(path));
        let reply = self
            .inner
            .http
            .send(Outgoing {
                method: method.clone(),
                url,
                label: &label,
                headers,
                body,
                replay,
                gate: None,
            })
            .await?;
        if is_auth_failure(reply.status, &reply.body) {
            return Err(Error::Psa(format!(
                "ConnectWise {method} {label}: HTTP {}: the API keys of company id `{}` were \
                 refused (expired or revoked?); check the API member's public and private key \
                 secrets and the clientId",
                reply.status, self.inner.company_id
            )));
        }
        Ok(reply)
    }

    /// The body of a 2xx reply as `T`; an error for any other.
    pub(super) fn expect<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        reply: &Reply,
    ) -> Result<T> {
        let label = format!("/{path}");
        if !reply.ok() {
            return Err(self.inner.http.status_error(method, &label, reply));
        }
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            // A PATCH may answer 204 or an empty 200.
            return self.inner.http.parse(
                method,
                &label,
                &Reply {
                    status: reply.status,
                    headers: HeaderMap::new(),
                    body: Bytes::from_static(b"null"),
                    attempts: reply.attempts,
                },
            );
        }
        self.inner.http.parse(method, &label, reply)
    }

    /// Every row of a list, page by page.
    pub(super) async fn list<T: DeserializeOwned>(
        &self,
        resource: &str,
        conditions: &str,
    ) -> Result<Vec<T>> {
        self.list_with(resource, conditions, "").await
    }

    /// Every row of a list with extra query parameters (`a=1&b=2`), page by page. Empty
    /// `conditions` are left out.
    pub(super) async fn list_with<T: DeserializeOwned>(
        &self,
        resource: &str,
        conditions: &str,
        params: &str,
    ) -> Result<Vec<T>> {
        let base = self.api_base().await?.to_string();
        let mut query = Vec::new();
        if !conditions.is_empty() {
            query.push(format!("conditions={}", percent_encode(conditions)));
        }
        if !params.is_empty() {
            query.push(params.to_string());
        }
        query.push(format!("pageSize={PAGE_SIZE}"));
        let mut path = format!("{resource}?{}", query.join("&"));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let url = format!("{base}{path}");
            let reply = self
                .send_url(Method::GET, &url, &path, None, Replay::Safe)
                .await?;
            let rows: Vec<T> = self.expect(&Method::GET, resource, &reply)?;
            out.extend(rows);
            let links = reply
                .headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok());
            let Some(next) = next_link(links) else {
                return Ok(out);
            };
            let next = reqwest::Url::parse(&url)
                .and_then(|u| u.join(&next))
                .map(String::from)
                .unwrap_or(next);
            match api_relative(&next) {
                Some(rel) => path = rel.to_string(),
                None => {
                    return Err(Error::Psa(format!(
                        "ConnectWise GET /{resource}: the `Link` next page is not under \
                         /apis/3.0/"
                    )));
                }
            }
        }
        Err(Error::Psa(format!(
            "ConnectWise GET /{resource}: more than {MAX_PAGES} pages; giving up"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{PRIVATE, PUBLIC, client, companyinfo, policy};
    use super::*;
    use crate::psa::http::fake::{Answer, Fake, Seen};

    #[test]
    fn link_urls_are_rebased_after_apis_3_0() {
        assert_eq!(
            api_relative("https://h/v4_6_release/apis/3.0/company/companies?page=2"),
            Some("company/companies?page=2")
        );
        assert_eq!(api_relative("https://h/elsewhere?page=2"), None);
    }

    #[test]
    fn the_configuration_s_debug_output_hides_the_keys() {
        let c = client("http://127.0.0.1:9");
        let s = format!("{c:?}");
        assert!(!s.contains(PUBLIC) && !s.contains(PRIVATE), "{s}");
        let cfg = ConnectWiseConfig {
            site: Some("api-na.myconnectwise.net".into()),
            base_url: None,
            company_id: "x".into(),
            client_id: "y".into(),
            public_key: PUBLIC.into(),
            private_key: PRIVATE.into(),
            api_version: None,
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains(PUBLIC) && !s.contains(PRIVATE), "{s}");
    }

    #[tokio::test]
    async fn the_codebase_is_discovered_once_and_every_call_carries_the_credentials() {
        let fake = Fake::start(|s: Seen| async move {
            match s.path() {
                "/login/companyinfo/acmemsp" => companyinfo(),
                "/v2025_1/apis/3.0/company/companies" => Answer::json(
                    200,
                    json!([{"id": 250, "identifier": "ACME01", "name": "Acme", "status": {"id": 1, "name": "Active"}, "deletedFlag": false}]),
                ),
                "/v2025_1/apis/3.0/company/companies/7" => {
                    Answer::json(404, json!({"code": "NotFound", "message": "Company not found"}))
                }
                "/v2025_1/apis/3.0/company/companies/statuses" => Answer::json(
                    200,
                    json!([{"id": 1, "name": "Active", "inactiveFlag": false}]),
                ),
                _ => Answer::json(400, json!({"message": "unexpected"})),
            }
        })
        .await;
        let cw = client(&fake.url);
        let found = cw.companies_by_identifier("ACME01").await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].active);
        assert_eq!(found[0].identifier.as_deref(), Some("ACME01"));
        assert_eq!(cw.clone().company(7).await.unwrap(), None);
        let seen = fake.seen();
        assert_eq!(
            seen.len(),
            4,
            "discovery, companies, statuses (once), company 7"
        );
        assert_eq!(cw.requests(), 4);
        assert!(
            seen[2]
                .uri
                .starts_with("/v2025_1/apis/3.0/company/companies/statuses?")
        );
        assert!(seen[0].header("authorization").is_none());
        let list = &seen[1];
        assert_eq!(
            list.uri,
            "/v2025_1/apis/3.0/company/companies?conditions=identifier%3D%22ACME01%22&pageSize=1000"
        );
        let expected = format!(
            "Basic {}",
            base64(format!("acmemsp+{PUBLIC}:{PRIVATE}").as_bytes())
        );
        assert_eq!(
            list.header("authorization").as_deref(),
            Some(expected.as_str())
        );
        assert_eq!(
            list.header("clientid").as_deref(),
            Some("0f2b6c1e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            list.header("accept").as_deref(),
            Some("application/vnd.connectwise.com+json; version=2025.1")
        );
    }

    #[tokio::test]
    async fn lists_follow_the_link_header_until_there_is_no_next_page() {
        let fake = Fake::start(|s: Seen| async move {
            if s.path().starts_with("/login/") {
                return companyinfo();
            }
            let page = if s.uri.contains("page=2") { 2 } else { 1 };
            let a = Answer::json(200, json!([{"id": page, "name": format!("A{page}"), "agreementStatus": "Active", "cancelledFlag": false, "type": {"id": 1, "name": "MSP"}}]));
            if page == 1 {
                // Another codebase in the link, as the real service does: rebased onto ours.
                a.with_header(
                    "link",
                    r#"<https://elsewhere/v4_6_release/apis/3.0/finance/agreements?conditions=company%2Fid%3D250&pageSize=1000&page=2>; rel="next", <https://elsewhere/x?page=2>; rel="last""#,
                )
            } else {
                a
            }
        })
        .await;
        let cw = client(&fake.url);
        let agreements = cw.agreements(250).await.unwrap();
        assert_eq!(agreements.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2]);
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[2].uri,
            "/v2025_1/apis/3.0/finance/agreements?conditions=company%2Fid%3D250&pageSize=1000&page=2"
        );
    }

    #[tokio::test]
    async fn expired_keys_fail_with_a_message_naming_the_company_but_no_key() {
        for (status, body) in [
            (
                401,
                json!({"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}),
            ),
            (
                404,
                json!({"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}),
            ),
        ] {
            let fake = Fake::start(move |s: Seen| {
                let body = body.clone();
                async move {
                    if s.path().starts_with("/login/") {
                        companyinfo()
                    } else {
                        Answer::json(status, body)
                    }
                }
            })
            .await;
            let cw = client(&fake.url);
            let e = cw.company(250).await.unwrap_err().to_string();
            assert!(e.contains("acmemsp"), "{e}");
            assert!(e.contains("refused"), "{e}");
            assert!(!e.contains(PUBLIC) && !e.contains(PRIVATE), "{e}");
            assert!(
                !e.contains(&base64(format!("acmemsp+{PUBLIC}:{PRIVATE}").as_bytes())),
                "{e}"
            );
            assert_eq!(fake.seen().len(), 2, "auth failures are not retried");
        }
    }

    #[test]
    fn the_api_version_is_pinned_and_a_target_may_choose_another() {
        let mut cfg = ConnectWiseConfig {
            site: Some("api-na.myconnectwise.net".into()),
            base_url: None,
            company_id: "x".into(),
            client_id: "y".into(),
            public_key: PUBLIC.into(),
            private_key: PRIVATE.into(),
            api_version: Some("2024.1".into()),
        };
        let cw = ConnectWise::new(cfg.clone(), policy()).unwrap();
        assert_eq!(
            cw.inner.headers.get(ACCEPT).unwrap(),
            "application/vnd.connectwise.com+json; version=2024.1"
        );
        cfg.api_version = Some("latest; x=1".into());
        let e = ConnectWise::new(cfg, policy()).unwrap_err().to_string();
        assert!(e.contains("apiVersion"), "{e}");
    }

    #[test]
    fn client_futures_can_be_spawned() {
        fn send<T: Send>(_: &T) {}
        let cw = client("http://127.0.0.1:9");
        send(&cw.companies_by_identifier("A"));
        send(&cw.create_addition(1, "A", 1.0, jiff::civil::date(2026, 1, 1), ""));
        send(&cw.close_ticket(1, None));
    }
}
