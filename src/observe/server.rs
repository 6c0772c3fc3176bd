//! The operations HTTP server: a small HTTP/1.1 server ([`serve`]) answering `GET /metrics`
//! from the registry and `GET /healthz`, `GET /readyz` from a [`Health`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::health::{Health, Probe};
use super::metrics::render;
use crate::{Error, Result};

/// `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running operations server.
pub struct ObserveServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ObserveServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and closes the open ones. (Dropping the server stops it
    /// too, without waiting.)
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds `listen` (port 0: any free port) and serves `/metrics`, `/healthz` and `/readyz`
/// until [`ObserveServer::shutdown`].
pub async fn serve(listen: SocketAddr, health: Health) -> Result<ObserveServer> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Usage(format!("metrics: cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("metrics: {e}")))?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        // Dropped with the accept loop: open connections close when the server stops.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => return,
            };
            // Reap finished connections.
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = accepted else {
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let health = health.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let health = health.clone();
                    async move { Ok::<_, Infallible>(answer(&health, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(ObserveServer { addr, stop, task })
}

fn answer(health: &Health, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(404, "not found\n");
    }
    if req.method() != hyper::Method::GET {
        let mut response = text(405, "method not allowed: use GET\n");
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = text(200, &render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        "/healthz" => probe(health.liveness()),
        _ => probe(health.readiness()),
    }
}

fn probe(p: Probe) -> hyper::Response<Full<Bytes>> {
    text(if p.ok { 200 } else { 503 }, &format!("{}\n", p.message))
}

fn text(status: u16, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::slot_missed;

    /// One HTTP/1.1 request on a fresh connection: (status, headers lower-cased, body).
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn the_server_answers_metrics_health_and_readiness_and_refuses_the_rest() {
        let health = Health::new();
        let server = serve("127.0.0.1:0".parse().unwrap(), health.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        slot_missed("obs-http", "orders");

        let (status, head, body) = request(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains(
                "\nferry_slots_missed_total{namespace=\"obs-http\",schedule=\"orders\"} 1\n"
            ),
            "{body}"
        );
        assert!(body.ends_with("ferry_up 1\n"));

        let (status, _, body) = request(addr, "GET", "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, _, body) = request(addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready: starting\n"));
        health.set_ready(true);
        let (status, _, body) = request(addr, "GET", "/readyz?verbose").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let (status, _, _) = request(addr, "GET", "/nope").await;
        assert_eq!(status, 404);
        let (status, head, _) = request(addr, "POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(head.contains("allow: get"), "{head}");

        health.set_alive(false);
        let (status, _, body) = request(addr, "GET", "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "not alive\n"));

        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn serving_on_an_address_in_use_fails_with_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Health::new()).await.err().unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
