//! A strict simulator of Google Cloud Storage's XML API, the part object_store writes with:
//! PUT, HEAD, GET and DELETE of `/<bucket>/<object>`. No GCS server can run here, and the one
//! emulator on PyPI (`gcp-storage-emulator`) neither returns an ETag from an XML PUT nor keeps
//! its `x-goog-meta-*` metadata, so it is not used.
//!
//! What it holds to, from Google's reference (cloud.google.com/storage/docs/xml-api/
//! put-object-upload, get-object, head-object, delete-object, reference-headers, and
//! /docs/authentication for service accounts' self-signed JWTs):
//! - every request carries `Authorization: Bearer <JWT>`; a service account may sign its own
//!   JWT (RS256, `iss` and `sub` its email, a `scope` or `aud`, `exp` in the future): the
//!   signature is verified here against the account's public key (with `openssl`); anything
//!   else is `401`;
//! - a bucket that does not exist is `404 NoSuchBucket`; the forbidden bucket is
//!   `403 AccessDenied`; a missing object `404 NoSuchKey`;
//! - a PUT answers `200` with `ETag` (the MD5 of the content, quoted), `x-goog-generation` and
//!   `x-goog-hash: md5=<base64>`, and keeps `Content-Type` and every `x-goog-meta-*` header;
//! - HEAD and GET answer `Content-Length`, `Last-Modified`, `ETag`, `x-goog-generation`,
//!   `Content-Type` and the `x-goog-meta-*` headers; DELETE answers `204`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};

/// The bucket that exists.
pub const GCS_BUCKET: &str = "partner-statements";
/// A bucket that exists but the service account may not use.
pub const GCS_FORBIDDEN_BUCKET: &str = "someone-elses-statements";

/// A stored object.
#[derive(Clone, Debug)]
pub struct GcsObject {
    /// The content.
    pub data: Bytes,
    /// `Content-Type` as uploaded.
    pub content_type: String,
    /// The `x-goog-meta-*` headers, without the prefix.
    pub metadata: BTreeMap<String, String>,
    /// The generation number.
    pub generation: u64,
    /// The quoted MD5, hex.
    pub etag: String,
}

/// A running simulator.
pub struct GcsServer {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The service account's JSON key, for the target's Secret.
    pub key_json: String,
    /// Objects of [`GCS_BUCKET`] by name.
    pub objects: Arc<Mutex<BTreeMap<String, GcsObject>>>,
    /// Every request: method, path and the status answered.
    pub seen: Arc<Mutex<Vec<(String, String, u16)>>>,
    _dir: tempfile::TempDir,
}

struct State {
    public_key: PathBuf,
    email: String,
    dir: PathBuf,
    objects: Arc<Mutex<BTreeMap<String, GcsObject>>>,
    seen: Arc<Mutex<Vec<(String, String, u16)>>>,
    generation: Mutex<u64>,
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// Starts the simulator on the current tokio runtime, with a fresh service account.
pub async fn start_gcs() -> GcsServer {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let public_key = dir.path().join("public.pem");
    let made = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(made.status.success(), "{made:?}");
    let public = openssl(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public_key.to_str().unwrap(),
        ],
        None,
    );
    assert!(public.status.success(), "{public:?}");
    let email = "reports@ferry-test.iam.gserviceaccount.com".to_string();
    let key_json = serde_json::json!({
        "type": "service_account",
        "project_id": "ferry-test",
        "private_key_id": "0123456789abcdef",
        "private_key": std::fs::read_to_string(&key).unwrap(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token"
    })
    .to_string();
    let objects = Arc::new(Mutex::new(BTreeMap::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(State {
        public_key,
        email,
        dir: dir.path().to_path_buf(),
        objects: objects.clone(),
        seen: seen.clone(),
        generation: Mutex::new(1_700_000_000_000_000),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                });
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    GcsServer {
        endpoint: format!("http://{addr}"),
        key_json,
        objects,
        seen,
        _dir: dir,
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml; charset=UTF-8")
        .body(Full::new(Bytes::from(format!(
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>\
             <Message>{message}</Message></Error>"
        ))))
        .unwrap()
}

fn b64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Whether `authorization` is a bearer JWT of the service account, signed with its key.
fn authorized(state: &State, authorization: Option<&str>) -> Result<(), String> {
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or("no bearer token")?;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let head: serde_json::Value = serde_json::from_slice(&b64url(header).ok_or("header encoding")?)
        .map_err(|e| e.to_string())?;
    if head["alg"] != "RS256" {
        return Err(format!("alg {}", head["alg"]));
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&b64url(payload).ok_or("payload encoding")?)
            .map_err(|e| e.to_string())?;
    if claims["iss"] != state.email.as_str() {
        return Err(format!("iss {}", claims["iss"]));
    }
    let now = jiff::Timestamp::now().as_second();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return Err("expired".into());
    }
    if claims["scope"].is_null() && claims["aud"].is_null() {
        return Err("no scope or audience".into());
    }
    let signed = format!("{header}.{payload}");
    let sig = state.dir.join(format!(
        "sig-{}",
        std::process::id() as u64 ^ now as u64 ^ signed.len() as u64
    ));
    std::fs::write(&sig, b64url(signature).ok_or("signature encoding")?).unwrap();
    let verified = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            state.public_key.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
        ],
        Some(signed.as_bytes()),
    );
    let _ = std::fs::remove_file(&sig);
    if !verified.status.success() {
        return Err("bad signature".into());
    }
    Ok(())
}

async fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let response = answer(state, req).await;
    state
        .seen
        .lock()
        .unwrap()
        .push((method, path, response.status().as_u16()));
    response
}

async fn answer(state: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Err(why) = authorized(state, authorization.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "AuthenticationRequired", &why);
    }
    let path = req.uri().path().trim_start_matches('/').to_string();
    // Bucket and object are each percent-encoded (an object's own `/` arrives as `%2F`).
    let (bucket, object) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let (bucket, object) = (percent_decode(bucket), percent_decode(object));
    let bucket = bucket.as_str();
    if bucket == GCS_FORBIDDEN_BUCKET {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access denied. The service account does not have storage.objects access.",
        );
    }
    if bucket != GCS_BUCKET {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist.",
        );
    }
    if object.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "listing is not simulated",
        );
    }
    let method = req.method().clone();
    match method.as_str() {
        "PUT" => {
            let headers = req.headers().clone();
            let data = req.into_body().collect().await.unwrap().to_bytes();
            if let Some(length) = headers.get("content-length")
                && length.to_str().ok().and_then(|l| l.parse::<usize>().ok()) != Some(data.len())
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "Content-Length differs",
                );
            }
            let md5 = openssl(&["dgst", "-md5", "-binary"], Some(&data)).stdout;
            let generation = {
                let mut g = state.generation.lock().unwrap();
                *g += 1;
                *g
            };
            let stored = GcsObject {
                content_type: headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                metadata: headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            k.as_str().strip_prefix("x-goog-meta-")?.to_string(),
                            v.to_str().ok()?.to_string(),
                        ))
                    })
                    .collect(),
                generation,
                etag: format!("\"{}\"", hex::encode(&md5)),
                data,
            };
            let response = Response::builder()
                .status(StatusCode::OK)
                .header("etag", &stored.etag)
                .header("x-goog-generation", generation.to_string())
                .header("x-goog-hash", {
                    use base64::Engine;
                    format!(
                        "md5={}",
                        base64::engine::general_purpose::STANDARD.encode(&md5)
                    )
                })
                .body(Full::new(Bytes::new()))
                .unwrap();
            state.objects.lock().unwrap().insert(object, stored);
            response
        }
        "GET" | "HEAD" => {
            let Some(found) = state.objects.lock().unwrap().get(&object).cloned() else {
                return error(
                    StatusCode::NOT_FOUND,
                    "NoSuchKey",
                    "The specified key does not exist.",
                );
            };
            let mut response = Response::builder()
                .status(StatusCode::OK)
                .header("content-length", found.data.len().to_string())
                .header("content-type", &found.content_type)
                .header("etag", &found.etag)
                .header("x-goog-generation", found.generation.to_string())
                .header("last-modified", "Thu, 30 Jul 2026 00:00:00 GMT");
            for (k, v) in &found.metadata {
                response = response.header(format!("x-goog-meta-{k}"), v);
            }
            let body = if method == "HEAD" {
                Bytes::new()
            } else {
                found.data.clone()
            };
            response.body(Full::new(body)).unwrap()
        }
        "DELETE" => match state.objects.lock().unwrap().remove(&object) {
            Some(_) => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .unwrap(),
            None => error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
        },
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not simulated",
        ),
    }
}

/// `%XX` sequences decoded (object names arrive percent-encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
