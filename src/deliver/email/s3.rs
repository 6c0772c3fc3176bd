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
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::api::EmailLink;
use crate::deliver::Outgoing;
use crate::secrets::{FileSecrets, SecretValue};
use crate::{Error, Result};

/// Files up to this size go up in one PUT; larger ones in parts of at least this size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts uploaded concurrently (each holds one part in memory).
pub const MAX_PARTS_IN_FLIGHT: usize = 4;

/// S3 allows at most 10,000 parts; stay below it with room to spare.
const MAX_PARTS: u64 = 9_000;

/// SigV4's limit on a presigned URL's lifetime.
pub const MAX_LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// User metadata key holding the object's SHA-256 (hex).
const SHA256_METADATA: &str = "sha256";

/// An uploaded (or found) object.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The object's path (what [`LinkStore::presign`] signs).
    pub path: ObjectPath,
    /// The object key in the bucket.
    pub key: String,
    /// Its size as the store reports it.
    pub bytes: u64,
    /// True when an earlier attempt had already uploaded it and it was not sent again.
    pub reused: bool,
}

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
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: Vec<String>,
    expires_in: Duration,
    /// Values scrubbed from error messages.
    scrub: Vec<SecretValue>,
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
        // reqwest is built without a crypto provider of its own.
        crate::tls::install_crypto_provider();
        // Allowing http lives in the client options: set it here, not on the builder, where
        // `with_client_options` would overwrite it.
        let options = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(30))
            .with_timeout(Duration::from_secs(300));
        // The runner retries whole deliveries; keep the client's own retries short so a dead
        // endpoint fails an attempt in seconds, not minutes.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(&s3.region)
            .with_bucket_name(&s3.bucket)
            .with_access_key_id(access_key.expose_str()?)
            .with_secret_access_key(secret_key.expose_str()?)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| {
                fail(format!(
                    "S3 client for {endpoint} bucket `{}`: {}",
                    s3.bucket,
                    scrub(&chain(&e), &[&access_key, &secret_key])
                ))
            })?;
        Ok(LinkStore {
            store: Arc::new(store),
            bucket: s3.bucket.clone(),
            prefix: s3
                .prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            expires_in,
            scrub: vec![access_key, secret_key],
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
    /// did, and confirms its size with a HEAD. Errors name the step and the object.
    pub async fn put(&self, file: &Outgoing<'_>, content_type: &str) -> Result<Stored, String> {
        let path = self.path_for(file)?;
        let key = path.as_ref().to_string();
        let at = format!("s3://{}/{key}", self.bucket);
        if let Some(size) = self.existing(&path, file).await {
            tracing::info!(object = %at, bytes = size, "S3 object already uploaded; reused");
            return Ok(Stored {
                path,
                key,
                bytes: size,
                reused: true,
            });
        }
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_string().into());
        attributes.insert(
            Attribute::Metadata(SHA256_METADATA.into()),
            file.sha256.to_string().into(),
        );
        let started = std::time::Instant::now();
        let uploaded = if file.bytes <= PART_SIZE as u64 {
            self.put_single(&path, file, attributes).await
        } else {
            self.put_multipart(&path, file, attributes).await
        };
        uploaded.map_err(|e| format!("S3 upload of {at} failed: {}", self.scrubbed(&e)))?;
        let meta = self.store.head(&path).await.map_err(|e| {
            format!(
                "S3 HEAD of {at} after the upload failed: {}",
                self.scrubbed(&chain(&e))
            )
        })?;
        if meta.size != file.bytes {
            return Err(format!(
                "S3 object {at} has {} bytes after the upload, expected {}",
                meta.size, file.bytes
            ));
        }
        tracing::info!(object = %at, bytes = meta.size, elapsed_ms = started.elapsed().as_millis() as u64, "uploaded to S3");
        Ok(Stored {
            path,
            key,
            bytes: meta.size,
            reused: false,
        })
    }

    /// The size of the object at `path` when it already holds exactly `file` (same size and
    /// SHA-256 metadata). Any error (including "not found") means "upload it".
    async fn existing(&self, path: &ObjectPath, file: &Outgoing<'_>) -> Option<u64> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let found = self.store.get_opts(path, options).await.ok()?;
        let sha = found
            .attributes
            .get(&Attribute::Metadata(SHA256_METADATA.into()))?;
        (found.meta.size == file.bytes && sha.as_ref() == file.sha256).then_some(found.meta.size)
    }

    /// One PUT of the whole (small) file.
    async fn put_single(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
        attributes: Attributes,
    ) -> Result<(), String> {
        let data = tokio::fs::read(file.staged)
            .await
            .map_err(|e| format!("reading {}: {e}", file.staged.display()))?;
        check_content(file, data.len() as u64, &hex::encode(Sha256::digest(&data)))?;
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(path, PutPayload::from(data), options)
            .await
            .map_err(|e| chain(&e))?;
        Ok(())
    }

    /// A multipart upload streamed from the staged file, hashing what is read; aborted (parts
    /// removed) when anything fails.
    async fn put_multipart(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
        attributes: Attributes,
    ) -> Result<(), String> {
        let part_size = part_size(file.bytes);
        let mut source = tokio::fs::File::open(file.staged)
            .await
            .map_err(|e| format!("opening {}: {e}", file.staged.display()))?;
        let options = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(path, options)
            .await
            .map_err(|e| chain(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; 1024 * 1024];
        let streamed: Result<(), String> = async {
            loop {
                let n = source
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading {}: {e}", file.staged.display()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n as u64;
                writer
                    .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| chain(&e))?;
                writer.write(&buf[..n]);
            }
            check_content(file, total, &hex::encode(hasher.finalize()))
        }
        .await;
        match streamed {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(|e| chain(&e)),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// A presigned GET URL for the object, valid for the configured lifetime from now.
    pub async fn presign(&self, stored: &Stored) -> Result<Link, String> {
        let (path, key) = (&stored.path, &stored.key);
        // Taken before signing, so the stated expiry is never later than the real one.
        // SigV4 dates have whole seconds: truncate likewise.
        let now = Timestamp::now();
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let url = self
            .store
            .signed_url(Method::GET, path, self.expires_in)
            .await
            .map_err(|e| {
                format!(
                    "presigning s3://{}/{key} failed: {}",
                    self.bucket,
                    self.scrubbed(&chain(&e))
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
        let deleted = self.store.delete(&stored.path).await;
        fetched?;
        deleted.map_err(|e| {
            format!(
                "the probe object {at} could not be deleted (delete it by hand): {}",
                self.scrubbed(&chain(&e))
            )
        })?;
        Ok(at)
    }

    fn scrubbed(&self, text: &str) -> String {
        let refs: Vec<&SecretValue> = self.scrub.iter().collect();
        scrub(text, &refs)
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

/// The staged file must be what the run produced: same size and SHA-256.
fn check_content(file: &Outgoing<'_>, bytes: u64, sha256: &str) -> Result<(), String> {
    if bytes != file.bytes {
        return Err(format!(
            "{} has {bytes} bytes, expected {}",
            file.staged.display(),
            file.bytes
        ));
    }
    if !sha256.eq_ignore_ascii_case(file.sha256) {
        return Err(format!(
            "{} changed since it was staged (SHA-256 {sha256}, expected {})",
            file.staged.display(),
            file.sha256
        ));
    }
    Ok(())
}

/// The part size for a file of `bytes`: [`PART_SIZE`], or larger (whole MiB) when the file
/// would otherwise need more than [`MAX_PARTS`] parts.
pub fn part_size(bytes: u64) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = bytes.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    usize::try_from(needed.max(PART_SIZE as u64)).unwrap_or(usize::MAX)
}

/// An error and its sources, `outer: inner: ...`, skipping a source whose text the outer
/// message already includes.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `message` with every non-empty secret value replaced by `(sensitive)`.
pub fn scrub(message: &str, secrets: &[&SecretValue]) -> String {
    let mut out = message.to_string();
    for secret in secrets {
        if let Ok(value) = secret.expose_str()
            && !value.is_empty()
        {
            out = out.replace(value, "(sensitive)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_use_the_default_part_size_and_huge_ones_stay_under_the_part_limit() {
        assert_eq!(part_size(0), PART_SIZE);
        assert_eq!(part_size(1 << 30), PART_SIZE);
        let huge = 200u64 << 30; // 200 GiB
        let size = part_size(huge) as u64;
        assert!(huge.div_ceil(size) <= MAX_PARTS, "{size}");
        assert_eq!(size % (1024 * 1024), 0);
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let key = SecretValue::new(b"AKIDEXAMPLE\n".to_vec());
        let empty = SecretValue::new(Vec::new());
        assert_eq!(
            scrub("denied for AKIDEXAMPLE (AKIDEXAMPLE)", &[&key, &empty]),
            "denied for (sensitive) ((sensitive))"
        );
    }
}
