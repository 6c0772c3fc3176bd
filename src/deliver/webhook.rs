//! The `webhook` DeliveryTarget: an HTTPS endpoint that receives alerts (a schedule's or
//! mapping's `notify`), never report files. One POST of a JSON body per alert, in Ferry's own
//! format or as a Slack or Microsoft Teams incoming-webhook message, optionally signed with a
//! shared key the way GitHub and Stripe sign theirs: `X-Ferry-Signature: sha256=<hex HMAC-SHA256
//! of "<timestamp>.<body>">` and `X-Ferry-Timestamp`, so a receiver can refuse forgeries and
//! replays.
//!
//! Retries: a connection failure, a timeout, `408`, `429` and `5xx` are tried again with
//! exponential backoff (1 s, 2 s, 4 s, 8 s: five attempts); any other `4xx` is the receiver
//! saying no (a revoked Slack URL answers `404 no_service`), which trying again will not change.
//! The URL may hold a credential (Slack's and Teams' do): errors name its host only.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::spec::TargetSpec;
use crate::api::{TargetKind, WebhookTarget};
use crate::secrets::{FileSecrets, SecretValue};
use crate::validate::fields::Problems;

/// Attempts per alert.
pub const ATTEMPTS: u32 = 5;

/// A webhook with its secrets resolved.
pub struct Webhook {
    url: SecretValue,
    host: String,
    signing_key: Option<SecretValue>,
    client: reqwest::Client,
    /// The first retry's wait; doubled each time.
    pub backoff: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What a receiver answered to the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Attempts made.
    pub attempts: u32,
}

impl Webhook {
    /// The webhook of `spec` (in `namespace`), its URL, key and CA read from `secrets`.
    pub fn new(
        namespace: &str,
        spec: &WebhookTarget,
        secrets: &FileSecrets,
    ) -> crate::Result<Webhook> {
        let url = match (&spec.url, &spec.url_secret_ref) {
            (Some(url), _) => SecretValue::new(url.as_bytes().to_vec()),
            (None, Some(r)) => secrets.require(namespace, r)?,
            (None, None) => {
                return Err(crate::Error::Delivery {
                    target: String::new(),
                    message: "the webhook has neither url nor urlSecretRef".into(),
                });
            }
        };
        let text = url.expose_str()?.trim().to_string();
        let host = host_of(&text).unwrap_or("(no host)").to_string();
        let signing_key = spec
            .signing_secret_ref
            .as_ref()
            .map(|r| secrets.require(namespace, r))
            .transpose()?;
        let ca = spec
            .ca_secret_ref
            .as_ref()
            .map(|r| secrets.require(namespace, r))
            .transpose()?;
        let tls = crate::tls::ClientTls::new(ca.as_ref().map(|c| c.expose())).map_err(|m| {
            crate::Error::Delivery {
                target: String::new(),
                message: format!("webhook {host}: {m}"),
            }
        })?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls.config).clone())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::Error::Delivery {
                target: String::new(),
                message: format!("webhook {host}: {e}"),
            })?;
        Ok(Webhook {
            url: SecretValue::new(text.into_bytes()),
            host,
            signing_key,
            client,
            backoff: Duration::from_secs(1),
        })
    }

    /// The endpoint's host, what messages name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// POSTs `body` (JSON), signed when a key is set, with retries. `now` is the clock (Unix
    /// seconds) the signature's timestamp is read from.
    pub async fn post(&self, body: &str, now: impl Fn() -> i64) -> Result<Answer, String> {
        let url = self.url.expose_str().map_err(|e| e.to_string())?;
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("user-agent", concat!("ferry/", env!("CARGO_PKG_VERSION")));
            if let Some(key) = &self.signing_key {
                let timestamp = now().to_string();
                request = request
                    .header("x-ferry-timestamp", &timestamp)
                    .header("x-ferry-signature", sign(key.expose(), &timestamp, body));
            }
            match request.body(body.to_string()).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.status().is_success() {
                        return Ok(Answer {
                            status,
                            attempts: attempt,
                        });
                    }
                    let text = response.text().await.unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    last = format!("HTTP {status} {}", text.trim());
                    if !(status == 408 || status == 429 || status >= 500) {
                        return Err(format!("webhook {} refused the alert: {last}", self.host));
                    }
                }
                Err(e) => {
                    last = scrub_url(&crate::deliver::bucket::chain(&e), url, &self.host);
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        Err(format!(
            "webhook {} failed {ATTEMPTS} times; last: {last}",
            self.host
        ))
    }
}

/// `sha256=<hex>` of HMAC-SHA256 with `key` over `<timestamp>.<body>`.
pub fn sign(key: &[u8], timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `message` with the URL (which may hold a credential) replaced by its host.
fn scrub_url(message: &str, url: &str, host: &str) -> String {
    let mut out = message.replace(url, host);
    if let Some((_, path)) = url.split_once("://").and_then(|(_, r)| r.split_once('/'))
        && !path.is_empty()
    {
        out = out.replace(path, "(path)");
    }
    out
}

/// The host of an `http(s)://host[:port]/...` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// Whether `url` may carry alerts: HTTPS, or plain HTTP to this machine only.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    crate::validate::fields::check_http_url(url)?;
    if url.starts_with("http://") {
        let host = host_of(url).unwrap_or("");
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(format!(
                "`{url}` is plain HTTP: alerts go over HTTPS (http:// is allowed to this machine only)"
            ));
        }
    }
    Ok(())
}

impl TargetSpec for WebhookTarget {
    fn check(&self, p: &mut Problems) {
        match (&self.url, &self.url_secret_ref) {
            (Some(_), Some(_)) => p.error(
                "spec.webhook",
                "give url or urlSecretRef, not both",
            ),
            (None, None) => p.error(
                "spec.webhook",
                "missing the endpoint: give url, or urlSecretRef for a URL that is a credential (Slack, Teams)",
            ),
            (Some(url), None) => p.check("spec.webhook.url", check_webhook_url(url)),
            (None, Some(_)) => {}
        }
    }

    fn summary(&self) -> String {
        let at = match &self.url {
            Some(url) => host_of(url).unwrap_or(url).to_string(),
            None => "a URL kept in a Secret".to_string(),
        };
        format!("webhook to {at} ({:?} format)", self.format).to_lowercase()
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let TargetKind::Webhook(old) = old else {
            return;
        };
        if old.format != self.format {
            notes.push(format!(
                "alerts are sent in {:?} format instead of {:?}",
                self.format, old.format
            ));
        }
        if old.signing_secret_ref.is_some() != self.signing_secret_ref.is_some() {
            notes.push(if self.signing_secret_ref.is_some() {
                "alerts are signed (X-Ferry-Signature)".into()
            } else {
                "alerts are no longer signed".into()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed with Python's hmac module, as a receiver would check it.
        assert_eq!(
            sign(b"whsec-test", "1767225600", r#"{"event":"failure"}"#),
            "sha256=74ae226753d11591d076137e41414c0552bb016e7d06ee2724c79f07eeb3354f"
        );
    }

    #[test]
    fn urls_are_https_or_local_http() {
        assert!(check_webhook_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook_url("http://localhost/hook").is_ok());
        assert!(
            check_webhook_url("http://alerts.example/hook")
                .unwrap_err()
                .contains("HTTPS")
        );
        assert!(check_webhook_url("ftp://x").is_err());
    }

    #[test]
    fn errors_name_the_host_never_the_path() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let message = format!("error sending request for url ({url}): connection refused");
        let scrubbed = scrub_url(&message, url, "hooks.slack.com");
        assert!(!scrubbed.contains("XXXXSECRET"), "{scrubbed}");
        assert!(scrubbed.contains("hooks.slack.com"), "{scrubbed}");
        assert_eq!(host_of(url), Some("hooks.slack.com"));
    }
}
