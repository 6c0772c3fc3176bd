//! Zone discovery: `GET {zone_discovery_url}?user={username}` (no authentication) gives the
//! zone URL, and the API base is `{url}v1.0/`. The client ([`super::client`]) asks on first
//! use and once more after a 401.

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::psa::http::{
    Http, Outgoing, Replay, body_message, contains_ignore_ascii_case, percent_encode,
};
use crate::{Error, Result};

#[derive(Clone, Debug)]
/// A zone of the tenant: its API base and which discovery found it.
pub(super) struct Zone {
    /// `{zone url}v1.0/`.
    pub(super) base: String,
    /// How many discoveries produced it (1 for the first).
    pub(super) generation: u64,
}

/// `{zone url}v1.0/` (the zone URL ends with `atservicesrest/`).
pub(super) fn api_base_of(zone_url: &str) -> String {
    let url = zone_url.trim();
    let url = if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    if url.to_ascii_lowercase().ends_with("/v1.0/") {
        url
    } else {
        format!("{url}v1.0/")
    }
}

/// `GET {discovery_url}?user={username}` -> `{url}v1.0/`.
pub(super) async fn discover(http: &Http, discovery_url: &str, username: &str) -> Result<String> {
    let sep = if discovery_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}user={}", discovery_url, percent_encode(username));
    let label = "zoneInformation";
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let reply = http
        .send(Outgoing {
            method: Method::GET,
            url: &url,
            label,
            headers: &headers,
            body: None,
            replay: Replay::Safe,
            gate: None,
        })
        .await?;
    if !reply.ok() {
        if contains_ignore_ascii_case(&reply.body, "could not be determined") {
            return Err(Error::Psa(http.scrub(format!(
                "Autotask zone discovery found no zone for API user `{}` ({}); is the user \
                 name right?",
                username,
                body_message(&reply.body)
            ))));
        }
        return Err(Error::Psa(http.scrub(format!(
            "Autotask zone discovery for API user `{}`: HTTP {}: {}",
            username,
            reply.status,
            body_message(&reply.body)
        ))));
    }
    #[derive(Deserialize)]
    struct ZoneInfo {
        url: Option<String>,
    }
    let info: ZoneInfo = http.parse(&Method::GET, label, &reply)?;
    match info.url.filter(|u| !u.trim().is_empty()) {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(api_base_of(&u)),
        _ => Err(Error::Psa(format!(
            "Autotask zone discovery for API user `{}` answered no zone URL",
            username
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{USER, client};
    use crate::psa::http::fake::{Answer, Seen};

    #[tokio::test]
    async fn an_unknown_user_is_reported_by_name_and_not_retried() {
        let fake = super::super::tests::fake(|_s: Seen, _url: String| async move {
            Answer::json(
                500,
                json!({"errors": ["Zone information could not be determined"]}),
            )
        })
        .await;
        let at = client(&fake.url);
        let e = at.companies_by_name("Acme").await.unwrap_err().to_string();
        assert!(e.contains(USER) && e.contains("no zone"), "{e}");
        assert_eq!(fake.seen().len(), 1);
    }
}
