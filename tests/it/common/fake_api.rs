//! A Kubernetes API server, in memory, served over HTTP on 127.0.0.1: real `ferry controller`
//! and `ferry exec-run` processes talk to it through a kubeconfig
//! ([`FakeApi::write_kubeconfig`]). It keeps objects of any collection (ferry.dev resources,
//! Secrets, Pods, Leases, Events, batch/v1 Jobs) with the API server's semantics: resource
//! versions with optimistic concurrency, list and watch (from a resourceVersion), create,
//! replace, JSON / merge / server-side-apply patches, the status subresource, and deletion that
//! waits for finalizers. Tests read and write it directly too (a test kubelet writes Jobs'
//! status with [`FakeApi::set_status`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One stored object: collection (`group/version/plural`), namespace, name.
type ObjectKey = (String, String, String);

#[derive(Default)]
struct ApiState {
    objects: BTreeMap<ObjectKey, Value>,
    version: u64,
    /// Every change, for watches that start from an older resourceVersion.
    log: Vec<(u64, String, String, Value)>,
}

/// The simulated API server: objects with resource versions, list and watch, create, replace
/// (409 on a stale resourceVersion), JSON / merge / server-side-apply patches, the status
/// subresource, and deletion that waits for finalizers.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    events: broadcast::Sender<(u64, String, String, Value)>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(v: &Value, status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

fn status_error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "message": message, "code": code.as_u16()}),
        code,
    )
}

/// Where a request goes: the collection, the namespace (if any), the name (if any) and the
/// subresource (if any).
type Route = (String, Option<String>, Option<String>, Option<String>);

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`.
fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match *segments.first()? {
        "api" => (segments.get(1)?.to_string(), &segments[2..]),
        "apis" => (
            format!("{}/{}", segments.get(1)?, segments.get(2)?),
            &segments[3..],
        ),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first()?;
    Some((
        format!("{gv}/{plural}"),
        namespace,
        rest.get(1).map(|s| s.to_string()),
        rest.get(2).map(|s| s.to_string()),
    ))
}

fn pointer_parts(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// RFC 6902, the operations kube's finalizer helper sends (test, add, remove, replace).
fn json_patch(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let path = op["path"].as_str().ok_or("op without path")?;
        let parts = pointer_parts(path);
        let (last, parents) = parts.split_last().ok_or("empty path")?;
        match op["op"].as_str() {
            Some("test") => {
                let current = doc.pointer(path).cloned().unwrap_or(Value::Null);
                if current != op["value"] {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some(kind @ ("add" | "replace" | "remove")) => {
                let mut parent = &mut *doc;
                for p in parents {
                    if parent.is_null() {
                        *parent = json!({});
                    }
                    parent = match parent {
                        Value::Object(m) => m.entry(p.clone()).or_insert(Value::Null),
                        Value::Array(a) => a
                            .get_mut(p.parse::<usize>().map_err(|e| e.to_string())?)
                            .ok_or("index out of range")?,
                        _ => return Err(format!("cannot descend into {p}")),
                    };
                }
                if parent.is_null() {
                    *parent = json!({});
                }
                match (parent, kind) {
                    (Value::Object(m), "remove") => {
                        m.remove(last).ok_or("nothing to remove")?;
                    }
                    (Value::Object(m), _) => {
                        m.insert(last.clone(), op["value"].clone());
                    }
                    (Value::Array(a), "remove") => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= a.len() {
                            return Err("index out of range".into());
                        }
                        a.remove(i);
                    }
                    (Value::Array(a), "add") => {
                        let i = if last == "-" {
                            a.len()
                        } else {
                            last.parse().map_err(|_| "bad index")?
                        };
                        a.insert(i.min(a.len()), op["value"].clone());
                    }
                    (Value::Array(a), _) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        *a.get_mut(i).ok_or("index out of range")? = op["value"].clone();
                    }
                    _ => return Err(format!("cannot patch {path}")),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

/// RFC 7386.
fn merge_patch(doc: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !doc.is_object() {
                *doc = json!({});
            }
            let m = doc.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    m.remove(k);
                } else {
                    merge_patch(m.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *doc = other.clone(),
    }
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi {
            state: Arc::default(),
            events: broadcast::channel(4096).0,
        }
    }

    /// Stores `object` (a create from the test, outside the API).
    pub fn seed(&self, collection: &str, object: Value) {
        let mut s = self.state.lock().unwrap();
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        self.store(&mut s, (collection.into(), ns, name), object, "ADDED");
    }

    pub fn list(&self, collection: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.objects
            .iter()
            .filter(|((c, _, _), _)| c == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, collection: &str, ns: &str, name: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.objects
            .get(&(collection.into(), ns.into(), name.into()))
            .cloned()
    }

    /// Replaces an object's status, as a controller writing the status subresource would
    /// (the test kubelet reporting a Job's pods); `false` when the object is gone.
    pub fn set_status(&self, collection: &str, ns: &str, name: &str, status: Value) -> bool {
        let mut s = self.state.lock().unwrap();
        let key = (collection.to_string(), ns.to_string(), name.to_string());
        let Some(mut object) = s.objects.get(&key).cloned() else {
            return false;
        };
        object["status"] = status;
        self.store(&mut s, key, object, "MODIFIED");
        true
    }

    /// Writes a kubeconfig for the server on `port` into `dir`, current namespace `default`.
    pub fn write_kubeconfig(dir: &Path, port: u16) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
                 current-context: fake\n"
            ),
        )
        .unwrap();
        path
    }

    /// Writes an object with a new resourceVersion and tells the watches.
    fn store(&self, s: &mut ApiState, key: ObjectKey, mut object: Value, event: &str) -> Value {
        s.version += 1;
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.insert("resourceVersion".into(), json!(s.version.to_string()));
        meta.entry("uid")
            .or_insert_with(|| json!(format!("uid-{}-{}", key.2, s.version)));
        meta.entry("generation").or_insert(json!(1));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-01-01T00:00:00Z"));
        if event == "DELETED" {
            s.objects.remove(&key);
        } else {
            s.objects.insert(key.clone(), object.clone());
        }
        let entry = (
            s.version,
            key.0.clone(),
            key.1.clone(),
            json!({"type": event, "object": object}),
        );
        s.log.push(entry.clone());
        let _ = self.events.send(entry);
        object
    }

    async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let Some((collection, ns, name, sub)) = route(&path) else {
            return status_error(StatusCode::NOT_FOUND, "NotFound", &path);
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return status_error(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
                }
            }
        };
        match (method, name) {
            (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                let since: u64 = query
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                self.watch(collection, ns, since)
            }
            (Method::GET, None) => {
                let s = self.state.lock().unwrap();
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|((c, n, _), _)| {
                        *c == collection && ns.as_ref().is_none_or(|ns| ns == n)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                full(
                    &json!({"apiVersion": "v1", "kind": "List",
                            "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
                    StatusCode::OK,
                )
            }
            (Method::GET, Some(name)) => {
                match self.get(&collection, ns.as_deref().unwrap_or(""), &name) {
                    Some(v) => full(&v, StatusCode::OK),
                    None => status_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{name} not found"),
                    ),
                }
            }
            (Method::POST, None) => {
                let mut s = self.state.lock().unwrap();
                let name = body["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{}{}",
                            body["metadata"]["generateName"].as_str().unwrap_or("x-"),
                            s.version
                        )
                    });
                let key = (collection, ns.clone().unwrap_or_default(), name.clone());
                if s.objects.contains_key(&key) {
                    return status_error(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{name} already exists"),
                    );
                }
                let mut object = body;
                object["metadata"]["name"] = json!(name);
                if let Some(ns) = ns {
                    object["metadata"]["namespace"] = json!(ns);
                }
                let stored = self.store(&mut s, key, object, "ADDED");
                full(&stored, StatusCode::CREATED)
            }
            (Method::PUT, Some(name)) => {
                let mut s = self.state.lock().unwrap();
                let key = (collection, ns.unwrap_or_default(), name.clone());
                let Some(current) = s.objects.get(&key).cloned() else {
                    return status_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{name} not found"),
                    );
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status_error(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                let stored = self.store(&mut s, key, body, "MODIFIED");
                full(&stored, StatusCode::OK)
            }
            (Method::PATCH, Some(name)) => {
                let mut s = self.state.lock().unwrap();
                let key = (collection, ns.unwrap_or_default(), name.clone());
                let Some(current) = s.objects.get(&key).cloned() else {
                    return status_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{name} not found"),
                    );
                };
                let mut next = current.clone();
                if content_type.starts_with("application/json-patch+json") {
                    if let Err(e) =
                        json_patch(&mut next, body.as_array().map(Vec::as_slice).unwrap_or(&[]))
                    {
                        return status_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e);
                    }
                } else if content_type.starts_with("application/apply-patch")
                    && sub.as_deref() == Some("status")
                {
                    // One field manager owns the whole status: what it leaves out goes.
                    next["status"] = body["status"].clone();
                } else {
                    merge_patch(&mut next, &body);
                }
                if sub.as_deref() == Some("status") {
                    // The status subresource changes nothing else.
                    let status = next["status"].clone();
                    next = current.clone();
                    next["status"] = status;
                }
                if next == current {
                    return full(&current, StatusCode::OK);
                }
                let finalizers_gone = next["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty);
                let event = if next["metadata"]["deletionTimestamp"].is_string() && finalizers_gone
                {
                    "DELETED"
                } else {
                    "MODIFIED"
                };
                let stored = self.store(&mut s, key, next, event);
                full(&stored, StatusCode::OK)
            }
            (Method::DELETE, Some(name)) => {
                let mut s = self.state.lock().unwrap();
                let key = (collection, ns.unwrap_or_default(), name.clone());
                let Some(mut current) = s.objects.get(&key).cloned() else {
                    return status_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{name} not found"),
                    );
                };
                let has_finalizers = current["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                current["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                let stored = self.store(
                    &mut s,
                    key,
                    current,
                    if has_finalizers {
                        "MODIFIED"
                    } else {
                        "DELETED"
                    },
                );
                full(&stored, StatusCode::OK)
            }
            (m, _) => status_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                m.as_str(),
            ),
        }
    }

    /// A watch: the changes since `since`, then every new one, as JSON lines.
    fn watch(&self, collection: String, ns: Option<String>, since: u64) -> Response<Body> {
        let (backlog, receiver) = {
            let s = self.state.lock().unwrap();
            let backlog: Vec<_> = s.log.iter().filter(|e| e.0 > since).cloned().collect();
            (backlog, self.events.subscribe())
        };
        let wanted = move |e: &(u64, String, String, Value)| {
            e.1 == collection && ns.as_ref().is_none_or(|ns| *ns == e.2)
        };
        let last = backlog.last().map_or(since, |e| e.0);
        let backlog: Vec<Value> = backlog.into_iter().filter(&wanted).map(|e| e.3).collect();
        let stream = futures_util::stream::unfold(
            (backlog.into_iter(), receiver, last),
            move |(mut backlog, mut receiver, last)| {
                let wanted = wanted.clone();
                async move {
                    if let Some(event) = backlog.next() {
                        return Some((line(&event), (backlog, receiver, last)));
                    }
                    loop {
                        match receiver.recv().await {
                            Ok(e) if e.0 > last && wanted(&e) => {
                                let v = e.0;
                                return Some((line(&e.3), (backlog, receiver, v)));
                            }
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            },
        );
        fn line(v: &Value) -> Result<Frame<Bytes>, Infallible> {
            Ok(Frame::data(Bytes::from(format!("{v}\n"))))
        }
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap()
    }

    /// Serves on 127.0.0.1; returns the port.
    pub async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let api = api.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.serve(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }
}

/// A `ferry controller` process, killed when dropped.
pub struct Controller {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Controller {
    /// Starts `ferry controller --instance <instance> --leader-elect` (Lease
    /// `default/ferry-controller`, 3 s) on `state`, its files under `dir/<instance>`.
    pub fn start(dir: &Path, kubeconfig: &Path, state: &str, instance: &str) -> Controller {
        Controller::start_with(dir, kubeconfig, state, instance, &[])
    }

    /// [`Controller::start`] with more controller arguments.
    pub fn start_with(
        dir: &Path,
        kubeconfig: &Path,
        state: &str,
        instance: &str,
        extra: &[&str],
    ) -> Controller {
        let work = dir.join(instance);
        std::fs::create_dir_all(&work).unwrap();
        let log = work.join("controller.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("FERRY_WORK_DIR", &work)
            .env("FERRY_LOG", "ferry=debug,info")
            .env("NO_COLOR", "1")
            .args([
                "--state",
                state,
                "controller",
                "--instance",
                instance,
                "--leader-elect",
            ])
            .args([
                "--lease-name",
                "ferry-controller",
                "--lease-namespace",
                "default",
            ])
            .args(["--lease-duration", "3s", "--secrets-mirror"])
            .arg(work.join("secrets"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(work.join("stdout")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ferry controller starts");
        Controller { child, log }
    }

    /// Its standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after a minute.
    pub fn terminate(&mut self) {
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends SIGTERM to `pid` (with kill(1): no unsafe code).
pub fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
