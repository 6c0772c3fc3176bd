//! An in-process S3 server (s3s + s3s-fs) that checks SigV4 signatures and presigned-URL
//! expiry for real, for the expiring-link tests. It lives as long as the tokio runtime that
//! started it.

/// Access key id the server accepts.
pub const S3_ACCESS_KEY: &str = "FERRYTESTACCESSKEY";
/// Secret access key the server accepts.
pub const S3_SECRET_KEY: &str = "ferry-test-s3-secret-key-0815";
/// The one bucket it has.
pub const BUCKET: &str = "reports";
/// A bucket the key has no rights on: every request to it is refused with `AccessDenied`, as
/// S3 answers for another account's bucket.
pub const FORBIDDEN_BUCKET: &str = "someone-elses-reports";

/// A request the server accepted for checking: its operation (`PutObject`, ...), its path and
/// its headers (the SSE and checksum headers a client sent).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// The S3 operation's name.
    pub op: String,
    /// `bucket/key`, `bucket` or empty.
    pub path: String,
    /// The request's headers.
    pub headers: http::HeaderMap,
}

/// The access policy: a signature is required (s3s's default), [`FORBIDDEN_BUCKET`] is
/// refused, and every request is recorded.
struct Policy(std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>);

#[async_trait::async_trait]
impl s3s::access::S3Access for Policy {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let path = match cx.s3_path() {
            s3s::path::S3Path::Root => String::new(),
            s3s::path::S3Path::Bucket { bucket } => bucket.to_string(),
            s3s::path::S3Path::Object { bucket, key } => format!("{bucket}/{key}"),
        };
        self.0.lock().unwrap().push(SeenRequest {
            op: cx.s3_op().name().to_string(),
            path: path.clone(),
            headers: cx.headers().clone(),
        });
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        if path == FORBIDDEN_BUCKET || path.starts_with(&format!("{FORBIDDEN_BUCKET}/")) {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }
}

/// The domain of virtual-hosted-style requests: `Host: <bucket>.s3.test:<port>` names the
/// bucket (a client reaches it through `HTTP_PROXY` pointing at the server, as no resolver
/// knows the name). Requests to `127.0.0.1:<port>` stay path-style.
pub const VIRTUAL_HOST_DOMAIN: &str = "s3.test";

/// Reads the bucket from a `Host` header under [`VIRTUAL_HOST_DOMAIN`], the port ignored
/// (s3s's `SingleDomain` compares the whole header, port included).
struct VirtualHosts;

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = host.split(':').next().unwrap_or(host);
        Ok(
            match name
                .strip_suffix(VIRTUAL_HOST_DOMAIN)
                .and_then(|b| b.strip_suffix('.'))
            {
                Some(bucket) => s3s::host::VirtualHost::new(name).with_bucket(bucket),
                None => s3s::host::VirtualHost::new(name),
            },
        )
    }
}

/// A running server: its `http://127.0.0.1:PORT` endpoint and its storage directory.
pub struct S3Server {
    /// Endpoint URL, path-style addressing.
    pub endpoint: String,
    /// Where objects are stored (`<root>/<bucket>/<key>`).
    pub root: tempfile::TempDir,
    /// Every request checked, in order.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
}

impl S3Server {
    /// The requests of operation `op` (`PutObject`, ...) checked so far, in order.
    pub fn requests(&self, op: &str) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.op == op)
            .cloned()
            .collect()
    }
}

/// Starts a server on 127.0.0.1 with bucket [`BUCKET`], on the current tokio runtime.
pub async fn start_s3() -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket directory");
    let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs store");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = {
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
        b.set_access(Policy(seen.clone()));
        b.set_host(VirtualHosts);
        b.build()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the S3 server");
    let addr = listener.local_addr().expect("S3 server address");
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    S3Server {
        endpoint: format!("http://{addr}"),
        root,
        seen,
    }
}
