//! Delivery to a bucket of an object store (`objectStore`: S3 and S3-compatible stores, Google
//! Cloud Storage, Azure Blob Storage), through the `object_store` crate, which speaks each
//! store's own API and signs (SigV4, a service account's JWT, Shared Key or SAS).
//!
//! An object store has no rename, and needs none: an object becomes visible only when its
//! single PUT or its multipart upload's completion succeeds, whole. So a report is written
//! straight to its final key `<prefix>/<fileName>` (the prefix's tokens rendered from the slot)
//! and nobody ever sees a part of it. Files up to [`PART_SIZE`] go in one PUT, larger ones in
//! a streamed multipart upload (never read into memory whole), aborted on failure so no part
//! is left to pay for.
//!
//! What is verified: the staged file's size and SHA-256 while it is read; on S3 the store
//! itself checks each request's SHA-256 (`x-amz-checksum-sha256`, refused with `BadDigest` when
//! the bytes it got differ); afterwards the object's size as the store reports it (HEAD). The
//! object carries its SHA-256 as user metadata (`sha256`), which is how a retry, a resumed run
//! or a crash recovery recognises an object already delivered ([`Transport::confirm`]): same
//! key, same size, same hash. The receipt keeps the store's ETag and version id.
//!
//! The email link store (`deliver::email::s3`) shares [`Objects`] and [`s3_client`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::spec::{TargetSpec, max_connections_notes};
use super::transport::{BoxFuture, Confirmation, Outgoing, Receipt, Transport, content_type_for};
use crate::api::{
    AzureContainer, GcsBucket, ObjectStoreTarget, S3Addressing, S3Bucket, StoreKind, TargetCheck,
    TargetKind,
};
use crate::filename::{self, TemplateContext};
use crate::secrets::{FileSecrets, SecretValue};
use crate::validate::fields::{Problems, check_http_url, check_max_connections};
use crate::{Error, Result};

/// Files up to this size go up in one PUT; larger ones in parts of at least this size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts uploaded concurrently (each holds one part in memory).
pub const MAX_PARTS_IN_FLIGHT: usize = 4;

/// S3 allows at most 10,000 parts; stay below it with room to spare.
const MAX_PARTS: u64 = 9_000;

/// User metadata key holding the object's SHA-256 (hex).
const SHA256_METADATA: &str = "sha256";

/// An uploaded (or found) object.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The object's path.
    pub path: ObjectPath,
    /// The object key in the bucket.
    pub key: String,
    /// Its size as the store reports it.
    pub bytes: u64,
    /// True when an earlier attempt had already uploaded it and it was not sent again.
    pub reused: bool,
    /// The store's ETag, when it gives one.
    pub e_tag: Option<String>,
    /// The object's version id, in a versioned bucket.
    pub version: Option<String>,
}

/// One bucket, with its credentials resolved: uploads that appear whole, checks that they
/// did, and messages scrubbed of the credentials.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// How messages and receipts name the bucket: `s3://bucket`, `gs://bucket`,
    /// `azure://account/container`.
    url: String,
    /// Values scrubbed from error messages.
    scrub: Vec<SecretValue>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Objects {
    /// `store` named `url` in messages; `scrub`: the credentials, never shown.
    pub fn new(store: Arc<dyn ObjectStore>, url: String, scrub: Vec<SecretValue>) -> Objects {
        Objects { store, url, scrub }
    }

    /// `s3://bucket/key` (or the store's equivalent) of `path`.
    pub fn locate(&self, path: &ObjectPath) -> String {
        format!("{}/{}", self.url, path.as_ref())
    }

    /// Uploads `file` to `path`, unless an earlier attempt already did, and confirms its size
    /// with a HEAD. Errors name the step and the object.
    pub async fn put(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
        content_type: &str,
    ) -> Result<Stored, String> {
        let key = path.as_ref().to_string();
        let at = self.locate(path);
        if let Some(found) = self.existing(path, file).await {
            tracing::info!(object = %at, bytes = found.size, "object already uploaded; reused");
            return Ok(Stored {
                path: path.clone(),
                key,
                bytes: found.size,
                reused: true,
                e_tag: found.e_tag,
                version: found.version,
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
            self.put_single(path, file, attributes).await
        } else {
            self.put_multipart(path, file, attributes).await
        };
        let put = uploaded.map_err(|e| format!("upload of {at} failed: {}", self.scrubbed(&e)))?;
        let meta = self.store.head(path).await.map_err(|e| {
            format!(
                "HEAD of {at} after the upload failed: {}",
                self.scrubbed(&chain(&e))
            )
        })?;
        if meta.size != file.bytes {
            return Err(format!(
                "{at} has {} bytes after the upload, expected {}",
                meta.size, file.bytes
            ));
        }
        tracing::info!(object = %at, bytes = meta.size, elapsed_ms = started.elapsed().as_millis() as u64, "uploaded");
        Ok(Stored {
            path: path.clone(),
            key,
            bytes: meta.size,
            reused: false,
            e_tag: put.e_tag.or(meta.e_tag),
            version: put.version.or(meta.version),
        })
    }

    /// The object at `path` when it already holds exactly `file` (same size and SHA-256
    /// metadata). Any error (including "not found") means "upload it".
    pub async fn existing(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
    ) -> Option<object_store::ObjectMeta> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let found = self.store.get_opts(path, options).await.ok()?;
        let sha = found
            .attributes
            .get(&Attribute::Metadata(SHA256_METADATA.into()))?;
        (found.meta.size == file.bytes && sha.as_ref().eq_ignore_ascii_case(file.sha256))
            .then_some(found.meta)
    }

    /// The object's bytes (a check's probe, read back).
    pub async fn read(&self, path: &ObjectPath) -> Result<bytes::Bytes, String> {
        let at = self.locate(path);
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("reading {at} back failed: {}", self.scrubbed(&chain(&e))))?;
        got.bytes()
            .await
            .map_err(|e| format!("reading {at} back failed: {}", self.scrubbed(&chain(&e))))
    }

    /// Deletes the object at `path`.
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), String> {
        self.store.delete(path).await.map_err(|e| {
            format!(
                "deleting {} failed: {}",
                self.locate(path),
                self.scrubbed(&chain(&e))
            )
        })
    }

    /// How many objects and folders are directly under `prefix` (a check's listing).
    pub async fn list(&self, prefix: &ObjectPath) -> Result<u64, String> {
        let listed = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| {
                format!(
                    "listing {}/ failed: {}",
                    self.locate(prefix),
                    self.scrubbed(&chain(&e))
                )
            })?;
        Ok((listed.objects.len() + listed.common_prefixes.len()) as u64)
    }

    /// One PUT of the whole (small) file.
    async fn put_single(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
        attributes: Attributes,
    ) -> Result<object_store::PutResult, String> {
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
            .map_err(|e| chain(&e))
    }

    /// A multipart upload streamed from the staged file, hashing what is read; aborted (parts
    /// removed) when anything fails.
    async fn put_multipart(
        &self,
        path: &ObjectPath,
        file: &Outgoing<'_>,
        attributes: Attributes,
    ) -> Result<object_store::PutResult, String> {
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
            Ok(()) => writer.finish().await.map_err(|e| chain(&e)),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// `text` with the credentials replaced by `(sensitive)`.
    pub fn scrubbed(&self, text: &str) -> String {
        let refs: Vec<&SecretValue> = self.scrub.iter().collect();
        scrub(text, &refs)
    }
}

/// The client settings every store shares: http allowed only for an `http://` endpoint,
/// bounded connects and requests.
pub fn client_options(endpoint: Option<&str>) -> ClientOptions {
    // reqwest is built without a crypto provider of its own.
    crate::tls::install_crypto_provider();
    ClientOptions::new()
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
        .with_connect_timeout(Duration::from_secs(30))
        .with_timeout(Duration::from_secs(300))
}

/// The runner retries whole deliveries; the client's own retries stay short so a dead
/// endpoint fails an attempt in seconds, not minutes.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// What an S3 client is built from (an `objectStore.s3` target or an email link's bucket).
pub struct S3Settings<'a> {
    /// The endpoint of an S3-compatible store; `None`: AWS's for the region.
    pub endpoint: Option<&'a str>,
    /// SigV4 region.
    pub region: &'a str,
    /// Bucket name.
    pub bucket: &'a str,
    /// Virtual-hosted-style addressing (else path-style).
    pub virtual_hosted: bool,
    /// Access key id and secret; `None`: the environment's credentials.
    pub keys: Option<(&'a SecretValue, &'a SecretValue)>,
    /// `x-amz-server-side-encryption`, and the KMS key id.
    pub encryption: Option<(&'a str, Option<&'a str>)>,
}

/// An S3 client for `settings`, sending each request's SHA-256 for the store to check.
pub fn s3_client(settings: &S3Settings<'_>) -> Result<AmazonS3, String> {
    let mut builder = match settings.keys {
        // Keys given: nothing from the environment, so a stray AWS_* variable cannot change
        // which account a target writes to.
        Some((id, secret)) => AmazonS3Builder::new()
            .with_access_key_id(id.expose_str().map_err(|e| e.to_string())?)
            .with_secret_access_key(secret.expose_str().map_err(|e| e.to_string())?),
        None => AmazonS3Builder::from_env(),
    };
    builder = builder
        .with_region(settings.region)
        .with_bucket_name(settings.bucket)
        .with_virtual_hosted_style_request(settings.virtual_hosted)
        .with_checksum_algorithm(Checksum::SHA256)
        .with_client_options(client_options(settings.endpoint))
        .with_retry(retry_config());
    if let Some(endpoint) = settings.endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        // object_store takes a virtual-hosted endpoint as the bucket's own (the bucket in the
        // host already); given the store's endpoint, it would send every key to the store's
        // root, where the key's first segment reads as a bucket.
        builder = builder.with_endpoint(if settings.virtual_hosted {
            bucket_host_endpoint(endpoint, settings.bucket)?
        } else {
            endpoint.to_string()
        });
    }
    if let Some((kind, kms_key)) = settings.encryption {
        let key: AmazonS3ConfigKey = "aws_server_side_encryption"
            .parse()
            .map_err(|e: object_store::Error| e.to_string())?;
        builder = builder.with_config(key, kind);
        if let Some(kms_key) = kms_key {
            let key: AmazonS3ConfigKey = "aws_sse_kms_key_id"
                .parse()
                .map_err(|e: object_store::Error| e.to_string())?;
            builder = builder.with_config(key, kms_key);
        }
    }
    let refs: Vec<&SecretValue> = settings.keys.iter().flat_map(|(a, b)| [*a, *b]).collect();
    builder
        .build()
        .map_err(|e| format!("S3 client: {}", scrub(&chain(&e), &refs)))
}

/// `https://<bucket>.<host>[:port][/path]` for the store's endpoint `https://<host>...`:
/// where virtual-hosted-style requests go. An endpoint that already starts with the bucket's
/// name is kept.
fn bucket_host_endpoint(endpoint: &str, bucket: &str) -> Result<String, String> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err(format!("endpoint `{endpoint}` has no scheme (https://...)"));
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    if host.parse::<std::net::IpAddr>().is_ok() || rest.starts_with('[') {
        return Err(format!(
            "endpoint `{endpoint}` is an IP address, which has no subdomain for the bucket: \
             use addressing: path, or the store's host name"
        ));
    }
    if rest.starts_with(&format!("{bucket}.")) {
        return Ok(endpoint.to_string());
    }
    Ok(format!("{scheme}://{bucket}.{rest}"))
}

/// A GCS client for `gcs`, signing with the service account's JSON `key` (else the
/// environment's credentials).
fn gcs_client(
    gcs: &GcsBucket,
    key: Option<&SecretValue>,
) -> Result<object_store::gcp::GoogleCloudStorage, String> {
    let mut builder = match key {
        Some(key) => GoogleCloudStorageBuilder::new()
            .with_service_account_key(key.expose_str().map_err(|e| e.to_string())?),
        None => GoogleCloudStorageBuilder::from_env(),
    };
    builder = builder
        .with_bucket_name(&gcs.bucket)
        .with_client_options(client_options(gcs.endpoint.as_deref()))
        .with_retry(retry_config());
    if let Some(endpoint) = &gcs.endpoint {
        builder = builder.with_base_url(endpoint.trim_end_matches('/'));
    }
    let refs: Vec<&SecretValue> = key.into_iter().collect();
    builder
        .build()
        .map_err(|e| format!("GCS client: {}", scrub(&chain(&e), &refs)))
}

/// An Azure Blob client for `azure`, with its access key or SAS token (else the environment's
/// credentials).
fn azure_client(
    azure: &AzureContainer,
    access_key: Option<&SecretValue>,
    sas: Option<&SecretValue>,
) -> Result<object_store::azure::MicrosoftAzure, String> {
    let mut builder = if access_key.is_none() && sas.is_none() {
        MicrosoftAzureBuilder::from_env()
    } else {
        MicrosoftAzureBuilder::new()
    };
    builder = builder
        .with_account(&azure.account)
        .with_container_name(&azure.container)
        .with_client_options(client_options(azure.endpoint.as_deref()))
        .with_retry(retry_config());
    if let Some(key) = access_key {
        builder = builder.with_access_key(key.expose_str().map_err(|e| e.to_string())?);
    }
    if let Some(sas) = sas {
        let token = sas.expose_str().map_err(|e| e.to_string())?;
        builder = builder.with_config(AzureConfigKey::SasKey, token.trim_start_matches('?'));
    }
    if let Some(endpoint) = &azure.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let refs: Vec<&SecretValue> = access_key.into_iter().chain(sas).collect();
    builder
        .build()
        .map_err(|e| format!("Azure client: {}", scrub(&chain(&e), &refs)))
}

/// The transport of an `objectStore` target.
pub struct ObjectStoreTransport {
    target: String,
    objects: Objects,
    prefix: String,
    check: TargetCheck,
}

impl ObjectStoreTransport {
    /// Resolves the credentials of target `namespace/name` and builds its client.
    pub fn new(
        namespace: &str,
        name: &str,
        spec: &ObjectStoreTarget,
        secrets: &FileSecrets,
    ) -> Result<ObjectStoreTransport> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        let secret = |r: &Option<crate::api::SecretRef>| -> Result<Option<SecretValue>> {
            r.as_ref()
                .map(|r| secrets.require(namespace, r))
                .transpose()
        };
        let objects = match spec.store() {
            Some(StoreKind::S3(s3)) => {
                let id = secret(&s3.access_key_id_secret_ref)?;
                let key = secret(&s3.secret_access_key_secret_ref)?;
                let client = s3_client(&S3Settings {
                    endpoint: s3.endpoint.as_deref(),
                    region: &s3.region,
                    bucket: &s3.bucket,
                    virtual_hosted: s3_virtual_hosted(s3),
                    keys: id.as_ref().zip(key.as_ref()),
                    encryption: s3
                        .server_side_encryption
                        .map(|e| (e.header_value(), s3.kms_key_id.as_deref())),
                })
                .map_err(fail)?;
                Objects::new(
                    Arc::new(client),
                    format!("s3://{}", s3.bucket),
                    id.into_iter().chain(key).collect(),
                )
            }
            Some(StoreKind::Gcs(gcs)) => {
                let key = secret(&gcs.service_account_key_secret_ref)?;
                let client = gcs_client(gcs, key.as_ref()).map_err(fail)?;
                Objects::new(
                    Arc::new(client),
                    format!("gs://{}", gcs.bucket),
                    key.into_iter().collect(),
                )
            }
            Some(StoreKind::Azure(azure)) => {
                let access_key = secret(&azure.access_key_secret_ref)?;
                let sas = secret(&azure.sas_token_secret_ref)?;
                let client =
                    azure_client(azure, access_key.as_ref(), sas.as_ref()).map_err(fail)?;
                Objects::new(
                    Arc::new(client),
                    format!("azure://{}/{}", azure.account, azure.container),
                    access_key.into_iter().chain(sas).collect(),
                )
            }
            None => return Err(fail("give exactly one of s3, gcs and azure".into())),
        };
        Ok(ObjectStoreTransport {
            target: name.to_string(),
            objects,
            prefix: spec.prefix.clone(),
            check: spec.check,
        })
    }

    fn fail(&self, message: String) -> Error {
        Error::Delivery {
            target: self.target.clone(),
            message,
        }
    }

    /// The folder of `file`: the prefix with its tokens rendered from the slot.
    fn folder(&self, file: &Outgoing<'_>) -> Result<Vec<String>> {
        let rendered = filename::render(
            &self.prefix,
            &TemplateContext {
                slot: &file.about.slot,
                schedule: file.about.schedule_segment(),
                namespace: &file.about.namespace,
                extra: &[],
            },
        );
        let segments: Vec<String> = rendered
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for segment in &segments {
            PathPart::parse(segment).map_err(|e| {
                self.fail(format!(
                    "prefix `{}` renders the folder {segment:?}, which an object key cannot \
                     hold: {e}",
                    self.prefix
                ))
            })?;
        }
        Ok(segments)
    }

    /// The object path of `file`: `<prefix>/<fileName>`.
    fn path_for(&self, file: &Outgoing<'_>) -> Result<ObjectPath> {
        let mut segments = self.folder(file)?;
        PathPart::parse(file.file_name).map_err(|e| {
            self.fail(format!(
                "the file name {:?} cannot be an object key's last segment: {e}",
                file.file_name
            ))
        })?;
        segments.push(file.file_name.to_string());
        Ok(ObjectPath::from_iter(segments))
    }

    fn receipt_confirmed(&self, stored: &Stored, file: &Outgoing<'_>) -> Receipt {
        let mut receipt = self.receipt(stored, file);
        receipt.details.remove("reused");
        receipt
            .details
            .insert("confirmedBy".into(), "sha256Metadata".into());
        receipt
    }

    fn receipt(&self, stored: &Stored, file: &Outgoing<'_>) -> Receipt {
        let mut details = BTreeMap::new();
        if let Some(e_tag) = &stored.e_tag {
            details.insert("eTag".to_string(), e_tag.clone());
        }
        if let Some(version) = &stored.version {
            details.insert("versionId".to_string(), version.clone());
        }
        if stored.reused {
            details.insert("reused".to_string(), "true".to_string());
        }
        Receipt {
            location: self.objects.locate(&stored.path),
            bytes: stored.bytes,
            sha256: file.sha256.to_string(),
            details,
        }
    }
}

impl Transport for ObjectStoreTransport {
    fn deliver<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let path = self.path_for(file)?;
            // The point of no return: once the PUT (or the completion of the multipart
            // upload) is sent, the object may be there; a crash after it is confirmed, not
            // sent blindly again.
            file.commit
                .reached(BTreeMap::from([(
                    "object".to_string(),
                    self.objects.locate(&path),
                )]))
                .await?;
            let stored = self
                .objects
                .put(&path, file, content_type_for(file.file_name))
                .await
                .map_err(|m| self.fail(m))?;
            Ok(self.receipt(&stored, file))
        })
    }

    fn confirm<'a>(&'a self, file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Confirmation>> {
        Box::pin(async move {
            let path = self.path_for(file)?;
            Ok(match self.objects.existing(&path, file).await {
                // Recognised by the SHA-256 the object was uploaded with (its metadata) and
                // its size; the store checked the bytes against it at the upload (S3).
                Some(meta) => Confirmation::Present(self.receipt_confirmed(
                    &Stored {
                        key: path.as_ref().to_string(),
                        path,
                        bytes: meta.size,
                        reused: true,
                        e_tag: meta.e_tag,
                        version: meta.version,
                    },
                    file,
                )),
                None => Confirmation::Absent,
            })
        })
    }

    /// `probe`: the probe object written like a report, read back and deleted. `list`: the
    /// prefix listed (`listedEntries`).
    fn probe<'a>(&'a self, probe: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let path = self.path_for(probe)?;
            if self.check == TargetCheck::List {
                let folder = ObjectPath::from_iter(self.folder(probe)?);
                let entries = self.objects.list(&folder).await.map_err(|m| self.fail(m))?;
                return Ok(Receipt {
                    location: self.objects.locate(&path),
                    bytes: 0,
                    sha256: probe.sha256.to_string(),
                    details: BTreeMap::from([("listedEntries".into(), entries.to_string())]),
                });
            }
            let stored = self
                .objects
                .put(&path, probe, "application/octet-stream")
                .await
                .map_err(|m| self.fail(m))?;
            let read = self.objects.read(&path).await;
            let deleted = self.objects.delete(&path).await;
            let read = read.map_err(|m| self.fail(m))?;
            if read.len() as u64 != probe.bytes {
                return Err(self.fail(format!(
                    "{} read back {} bytes, {} were written",
                    self.objects.locate(&path),
                    read.len(),
                    probe.bytes
                )));
            }
            deleted.map_err(|m| {
                self.fail(format!(
                    "the probe object was written and read back but not deleted (delete it by \
                     hand): {m}"
                ))
            })?;
            Ok(self.receipt(&stored, probe))
        })
    }
}

/// Whether an S3 target uses virtual-hosted-style requests (see `S3Bucket::addressing`).
pub fn s3_virtual_hosted(s3: &S3Bucket) -> bool {
    match s3.addressing {
        Some(S3Addressing::VirtualHosted) => true,
        Some(S3Addressing::Path) => false,
        None => s3.endpoint.is_none(),
    }
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

/// Checks of an `objectStore` prefix: a template of the file name's tokens, folders an object
/// key can hold.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    filename::check_template(prefix, filename::FILE_NAME_TOKENS)?;
    if prefix.chars().any(char::is_control) {
        return Err(format!(
            "prefix {prefix:?} must not contain control characters"
        ));
    }
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "prefix `{prefix}` must not contain `.` or `..` folders: object keys have none"
        ));
    }
    Ok(())
}

impl TargetSpec for ObjectStoreTarget {
    fn check(&self, p: &mut Problems) {
        let stores = self.stores();
        if stores.len() != 1 {
            p.error(
                "spec.objectStore",
                format!(
                    "give exactly one of s3, gcs and azure ({} given)",
                    stores.len()
                ),
            );
        }
        for store in stores {
            match store {
                StoreKind::S3(s3) => check_s3(s3, p),
                StoreKind::Gcs(gcs) => check_gcs(gcs, p),
                StoreKind::Azure(azure) => check_azure(azure, p),
            }
        }
        p.check("spec.objectStore.prefix", check_prefix(&self.prefix));
        p.check(
            "spec.objectStore.maxConnections",
            check_max_connections(self.max_connections),
        );
    }

    fn summary(&self) -> String {
        let at = match self.store() {
            Some(StoreKind::S3(s3)) => match &s3.endpoint {
                Some(endpoint) => format!("S3 bucket {} at {endpoint}", s3.bucket),
                None => format!("S3 bucket {} ({})", s3.bucket, s3.region),
            },
            Some(StoreKind::Gcs(gcs)) => format!("GCS bucket {}", gcs.bucket),
            Some(StoreKind::Azure(a)) => {
                format!("Azure container {} of account {}", a.container, a.account)
            }
            None => "object store".to_string(),
        };
        match self.prefix.trim_matches('/') {
            "" => at,
            prefix => format!("{at}, under {prefix}/"),
        }
    }

    fn change_notes(&self, old: &TargetKind<'_>, notes: &mut Vec<String>) {
        let TargetKind::ObjectStore(old) = old else {
            return;
        };
        max_connections_notes(old.max_connections, self.max_connections, notes);
        if old.summary() != self.summary() {
            notes.push(format!(
                "new reports go to {} instead of {}; delivered ones stay where they are",
                self.summary(),
                old.summary()
            ));
        }
        if let (Some(StoreKind::S3(x)), Some(StoreKind::S3(y))) = (old.store(), self.store())
            && (x.server_side_encryption, &x.kms_key_id)
                != (y.server_side_encryption, &y.kms_key_id)
        {
            notes.push(format!(
                "server-side encryption of new objects: {} (was {})",
                encryption_label(y),
                encryption_label(x)
            ));
        }
    }
}

fn encryption_label(s3: &S3Bucket) -> String {
    match (s3.server_side_encryption, &s3.kms_key_id) {
        (None, _) => "the bucket's default".to_string(),
        (Some(e), None) => e.header_value().to_string(),
        (Some(e), Some(key)) => format!("{} with key {key}", e.header_value()),
    }
}

fn check_s3(s3: &S3Bucket, p: &mut Problems) {
    p.non_empty("spec.objectStore.s3.bucket", &s3.bucket);
    p.non_empty("spec.objectStore.s3.region", &s3.region);
    if let Some(endpoint) = &s3.endpoint {
        p.check("spec.objectStore.s3.endpoint", check_http_url(endpoint));
        if s3_virtual_hosted(s3) && check_http_url(endpoint).is_ok() {
            p.check(
                "spec.objectStore.s3.addressing",
                bucket_host_endpoint(endpoint.trim_end_matches('/'), &s3.bucket).map(drop),
            );
        }
    }
    match (
        &s3.access_key_id_secret_ref,
        &s3.secret_access_key_secret_ref,
    ) {
        (Some(_), None) => p.error(
            "spec.objectStore.s3.secretAccessKeySecretRef",
            "missing: an access key id needs its secret access key",
        ),
        (None, Some(_)) => p.error(
            "spec.objectStore.s3.accessKeyIdSecretRef",
            "missing: a secret access key needs its access key id",
        ),
        _ => {}
    }
    if s3.kms_key_id.is_some()
        && !matches!(
            s3.server_side_encryption,
            Some(crate::api::S3Encryption::AwsKms | crate::api::S3Encryption::AwsKmsDsse)
        )
    {
        p.error(
            "spec.objectStore.s3.kmsKeyId",
            "a KMS key is used with serverSideEncryption: awsKms or awsKmsDsse",
        );
    }
}

fn check_gcs(gcs: &GcsBucket, p: &mut Problems) {
    p.non_empty("spec.objectStore.gcs.bucket", &gcs.bucket);
    if let Some(endpoint) = &gcs.endpoint {
        p.check("spec.objectStore.gcs.endpoint", check_http_url(endpoint));
    }
}

fn check_azure(azure: &AzureContainer, p: &mut Problems) {
    p.non_empty("spec.objectStore.azure.account", &azure.account);
    p.non_empty("spec.objectStore.azure.container", &azure.container);
    if azure.access_key_secret_ref.is_some() && azure.sas_token_secret_ref.is_some() {
        p.error(
            "spec.objectStore.azure",
            "give accessKeySecretRef or sasTokenSecretRef, not both",
        );
    }
    if let Some(endpoint) = &azure.endpoint {
        p.check("spec.objectStore.azure.endpoint", check_http_url(endpoint));
    }
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

    #[test]
    fn virtual_hosted_requests_go_to_the_bucket_under_the_stores_host() {
        assert_eq!(
            bucket_host_endpoint("https://s3.wasabisys.com", "reports").unwrap(),
            "https://reports.s3.wasabisys.com"
        );
        assert_eq!(
            bucket_host_endpoint("http://minio.internal:9000", "reports").unwrap(),
            "http://reports.minio.internal:9000"
        );
        assert_eq!(
            bucket_host_endpoint("https://reports.s3.example.com", "reports").unwrap(),
            "https://reports.s3.example.com",
            "already the bucket's host"
        );
        for ip in ["http://127.0.0.1:9000", "http://[::1]:9000"] {
            let e = bucket_host_endpoint(ip, "reports").unwrap_err();
            assert!(e.contains("addressing: path"), "{e}");
        }
        assert!(bucket_host_endpoint("s3.example.com", "reports").is_err());
    }

    #[test]
    fn aws_is_addressed_virtual_hosted_and_other_endpoints_path_style_unless_told() {
        let mut s3 = S3Bucket {
            bucket: "b".into(),
            region: "eu-west-3".into(),
            endpoint: None,
            addressing: None,
            access_key_id_secret_ref: None,
            secret_access_key_secret_ref: None,
            server_side_encryption: None,
            kms_key_id: None,
        };
        assert!(s3_virtual_hosted(&s3));
        s3.endpoint = Some("https://minio.example:9000".into());
        assert!(!s3_virtual_hosted(&s3));
        s3.addressing = Some(S3Addressing::VirtualHosted);
        assert!(s3_virtual_hosted(&s3));
    }

    #[test]
    fn a_prefix_takes_the_file_names_tokens_and_no_dot_folders() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("partner/{yyyy}/{MM}/").is_ok());
        assert!(check_prefix("{schedule}/{namespace}").is_ok());
        assert!(check_prefix("a/{link}/").unwrap_err().contains("link"));
        assert!(check_prefix("a/../b").unwrap_err().contains(".."));
        assert!(check_prefix("a\nb").is_err());
    }
}
