//! An in-process S3 server (s3s + s3s-fs) that checks SigV4 signatures and presigned-URL
//! expiry for real, for the expiring-link tests. It lives as long as the tokio runtime that
//! started it.

/// Access key id the server accepts.
pub const S3_ACCESS_KEY: &str = "FERRYTESTACCESSKEY";
/// Secret access key the server accepts.
pub const S3_SECRET_KEY: &str = "ferry-test-s3-secret-key-0815";
/// The one bucket it has.
pub const BUCKET: &str = "reports";

/// A running server: its `http://127.0.0.1:PORT` endpoint and its storage directory.
pub struct S3Server {
    /// Endpoint URL, path-style addressing.
    pub endpoint: String,
    /// Where objects are stored (`<root>/<bucket>/<key>`).
    pub root: tempfile::TempDir,
}

/// Starts a server on 127.0.0.1 with bucket [`BUCKET`], on the current tokio runtime.
pub async fn start_s3() -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket directory");
    let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs store");
    let service = {
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
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
    }
}
