//! The storage half of an email link: the report is uploaded to an S3-compatible bucket and the
//! mail carries a presigned GET URL that stops working after `expiresIn`.
//!
//! Why S3 presigning rather than a link to Ferry itself: the URL works without Ferry running,
//! the bucket stays private (the signature is the only key, checked by the store with SigV4),
//! and expiry is enforced by the store, not by anything Ferry must keep up. SigV4 caps a
//! presigned URL at 7 days.
//!
//! Object key: `<prefix>/<namespace>/<schedule>/<runId>/<fileName>`. The prefix is treated as a
//! folder (`partner` and `partner/` are the same). The run id keeps every email's link pointing
//! at exactly the file that email describes: a later run of the same slot (e.g. a resend with
//! fresh data) gets its own object instead of silently changing what older links return,
//! while retries and a resumed run (same run id) find the object they already uploaded. The
//! file name is the last segment, so a browser saves the download under the report's name.
//!
//! Upload: a single PUT up to [`PART_SIZE`], a streamed multipart upload above (the staged file
//! is never read into memory whole; at most [`MAX_PARTS_IN_FLIGHT`] + 1 parts are buffered).
//! The object carries its SHA-256 as user metadata (`x-amz-meta-sha256`); a retry after a
//! failed mail skips the upload when the object is already there with the right size and
//! hash. After an upload the object is HEADed and its size must equal the staged file's.
//!
//! The presigned URL grants access to the report, so it is treated like a secret: it goes into
//! the mail body only, never into receipts, logs or errors. Error messages are scrubbed of the
//! access key id and secret key in case a store echoes them.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use object_store::aws::AmazonS3;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::signer::{Method, Signer};

use crate::api::EmailLink;
use crate::deliver::bucket::{Objects, S3Settings, Stored, chain, s3_client};
use crate::deliver::transport::Outgoing;
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// SigV4's limit on a presigned URL's lifetime.
pub const MAX_LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A presigned GET link. `Debug` hides the URL.
pub struct Link {
    /// The URL: give it only to the mail body.
    pub url: String,
    /// When the store stops honouring it (no later than the real expiry).
    pub expires: Timestamp,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &"(sensitive)")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The bucket of one email target, with its credentials resolved.
pub struct LinkStore {
    objects: Objects,
    /// The same client, for presigning.
    signer: Arc<AmazonS3>,
    bucket: String,
    prefix: Vec<String>,
    expires_in: Duration,
}

impl std::fmt::Debug for LinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl LinkStore {
    /// Resolves the S3 keys of `link` (in `namespace`) and builds the client. `target` names
    /// the DeliveryTarget in errors.
    pub fn new(
        namespace: &str,
        target: &str,
        link: &EmailLink,
        secrets: &FileSecrets,
    ) -> Result<LinkStore> {
        let fail = |message: String| Error::Delivery {
            target: target.to_string(),
            message,
        };
        let expires_in = crate::schedule::parse_duration(&link.expires_in)
            .map_err(|m| fail(format!("link.expiresIn: {m}")))?;
        if expires_in.is_zero() || expires_in > MAX_LINK_LIFETIME {
            return Err(fail(format!(
                "link.expiresIn `{}` is out of range: a presigned link lasts from 1s to 7d \
                 (SigV4's limit)",
                link.expires_in
            )));
        }
        let s3 = &link.s3;
        let access_key = secrets.require(namespace, &s3.access_key_id_secret_ref)?;
        let secret_key = secrets.require(namespace, &s3.secret_access_key_secret_ref)?;
        let endpoint = s3.endpoint.trim_end_matches('/');
        let store = s3_client(&S3Settings {
            endpoint: Some(endpoint),
            region: &s3.region,
            bucket: &s3.bucket,
            virtual_hosted: false,
            keys: Some((&access_key, &secret_key)),
            encryption: None,
        })
        .map_err(|e| fail(format!("{e} (endpoint {endpoint}, bucket `{}`)", s3.bucket)))?;
        let signer = Arc::new(store);
        Ok(LinkStore {
            objects: Objects::new(
                signer.clone(),
                format!("s3://{}", s3.bucket),
                vec![access_key, secret_key],
            ),
            signer,
            bucket: s3.bucket.clone(),
            prefix: s3
                .prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            expires_in,
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object path of `file`: `<prefix>/<namespace>/<schedule>/<runId>/<fileName>`, each
    /// segment kept as written (`売上 #1.csv` stays readable in the bucket and in the link;
    /// requests percent-encode it). A segment S3 paths cannot hold (`.`, `..`, control
    /// characters) is an error.
    pub fn path_for(&self, file: &Outgoing<'_>) -> Result<ObjectPath, String> {
        let run = file.run_id.to_string();
        self.prefix
            .iter()
            .map(String::as_str)
            .chain([
                file.about.namespace.as_str(),
                file.about.schedule_segment(),
                run.as_str(),
                file.file_name,
            ])
            .map(|segment| {
                PathPart::parse(segment)
                    .map_err(|e| format!("S3 object key segment {segment:?} is not usable: {e}"))
            })
            .collect()
    }

    /// Uploads `file` under [`path_for`](Self::path_for), unless an earlier attempt already
    /// did, and confirms its size (see [`Objects::put`]).
    pub async fn put(&self, file: &Outgoing<'_>, content_type: &str) -> Result<Stored, String> {
        let path = self.path_for(file)?;
        self.objects
            .put(&path, file, content_type)
            .await
            .map_err(|e| format!("S3 {e}"))
    }

    /// A presigned GET URL for the object, valid for the configured lifetime from now.
    pub async fn presign(&self, stored: &Stored) -> Result<Link, String> {
        let (path, key) = (&stored.path, &stored.key);
        // Taken before signing, so the stated expiry is never later than the real one.
        // SigV4 dates have whole seconds: truncate likewise.
        let now = Timestamp::now();
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let url = self
            .signer
            .signed_url(Method::GET, path, self.expires_in)
            .await
            .map_err(|e| {
                format!(
                    "presigning s3://{}/{key} failed: {}",
                    self.bucket,
                    self.objects.scrubbed(&chain(&e))
                )
            })?;
        let lifetime = jiff::SignedDuration::try_from(self.expires_in)
            .map_err(|e| format!("link lifetime: {e}"))?;
        let expires = now
            .checked_add(lifetime)
            .map_err(|e| format!("link expiry: {e}"))?;
        Ok(Link {
            url: url.to_string(),
            expires,
        })
    }

    /// A check of the store (`ferry check`): `probe` uploaded as a report is, read back through
    /// a presigned link as a recipient would, then deleted. Returns the object it used.
    pub async fn check(&self, probe: &Outgoing<'_>) -> Result<String, String> {
        let stored = self.put(probe, "application/octet-stream").await?;
        let at = format!("s3://{}/{}", self.bucket, stored.key);
        let fetched = async {
            let link = self.presign(&stored).await?;
            let response =
                link_client()?.get(&link.url).send().await.map_err(|e| {
                    format!("fetching {at} through its presigned link: {}", chain(&e))
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            // S3 names the reason in <Code> (SignatureDoesNotMatch, AccessDenied, ...); the
            // rest of the body may echo the request, so only the code is shown.
            let body = response.text().await.unwrap_or_default();
            let code = body
                .split_once("<Code>")
                .and_then(|(_, rest)| rest.split_once("</Code>"))
                .map_or("", |(code, _)| code);
            Err(format!(
                "the store refused the presigned link to {at}: HTTP {status} {code}"
            ))
        }
        .await;
        let deleted = self.objects.delete(&stored.path).await;
        fetched?;
        deleted.map_err(|e| {
            format!("the probe object could not be deleted (delete it by hand): {e}")
        })?;
        Ok(at)
    }
}

/// The HTTP client a check fetches a presigned link with, as a recipient's browser would:
/// the system's roots, no redirects followed.
fn link_client() -> Result<reqwest::Client, String> {
    let tls = crate::tls::system_client_config()?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| chain(&e))
}
