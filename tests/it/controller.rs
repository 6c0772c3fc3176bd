//! `ferry controller` reconciles, the kube-rs way: the Kubernetes API server is a mock
//! (tower-test) and a verifier asserts the exact sequence of requests and their bodies.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry::api::{DeliveryTarget, ReportSchedule};
use ferry::controller::{Caches, Context, INVALID_REQUEUE, STATUS_REQUEUE};
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected request: method, path and query, and the JSON answered.
struct Expect {
    method: Method,
    status: u16,
    uri: &'static str,
    reply: Value,
}

/// Answers `expected` in order, asserting each request; returns the request bodies (and the
/// handle, for a later round).
async fn verify(mut handle: Handle, expected: Vec<Expect>) -> (Vec<Value>, Handle) {
    let mut bodies = Vec::new();
    for e in expected {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {} {}", e.method, e.uri))
            .expect("the client is alive");
        assert_eq!(request.method(), e.method, "{}", request.uri());
        let uri = request.uri().to_string();
        assert!(
            uri.starts_with(e.uri),
            "expected {} {}, got {}",
            e.method,
            e.uri,
            uri
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        bodies.push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        send.send_response(
            Response::builder()
                .status(e.status)
                .body(Body::from(serde_json::to_vec(&e.reply).unwrap()))
                .unwrap(),
        );
    }
    // Nothing else is asked.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handle.next_request())
            .await
            .is_err(),
        "an unexpected extra request was made"
    );
    (bodies, handle)
}

/// The Event a reconcile publishes (`events.k8s.io/v1`), answered as created.
fn event_posted() -> Expect {
    Expect {
        method: Method::POST,
        status: 200,
        uri: "/apis/events.k8s.io/v1/namespaces/default/events",
        reply: json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null}),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: Arc<(Context, Caches)>,
    handle: Option<Handle>,
}

async fn fixture(schedules: &[&ReportSchedule], targets: &[&DeliveryTarget]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let store = ferry::state::StateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mirror =
        ferry::controller::secrets::SecretMirror::new(&dir.path().join("secrets")).unwrap();
    let runner = ferry::runner::Runner::new(store.clone(), mirror.files().clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ferry-controller".into(),
            instance: Some("test".into()),
        },
    );
    let (s_reader, mut s_writer) = reflector::store::<ReportSchedule>();
    for s in schedules {
        s_writer.apply_watcher_event(&watcher::Event::Apply((*s).clone()));
    }
    let (t_reader, mut t_writer) = reflector::store::<DeliveryTarget>();
    for t in targets {
        t_writer.apply_watcher_event(&watcher::Event::Apply((*t).clone()));
    }
    let caches = Caches {
        schedules: Some(s_reader),
        targets: Some(t_reader),
        mappings: None,
    };
    Fixture {
        ctx: Arc::new((
            Context {
                client,
                store,
                secrets: mirror,
                recorder,
                runner,
                executor: None,
                backoff: Default::default(),
            },
            caches,
        )),
        handle: Some(handle),
        _dir: dir,
    }
}

fn object<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a valid object")
}

fn usage_db(dir: &Path) -> String {
    let path = dir.join("shop.db");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.execute('create table orders(id integer, total real)');c.execute('insert into orders values (1, 9.5)');c.commit()",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    format!("sqlite:{}", path.display())
}

fn schedule(name: &str, db: &str, time_zone: &str, extra_meta: Value) -> ReportSchedule {
    let mut meta = json!({"name": name, "namespace": "default", "generation": 3, "uid": "u-1", "resourceVersion": "10"});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    object(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "ReportSchedule",
        "metadata": meta,
        "spec": {
            "schedule": {"daily": {"at": "00:30"}},
            "timeZone": time_zone,
            "source": {"sql": {"url": db, "query": "SELECT id, total FROM orders"}},
            "format": {"csv": {}},
            "fileName": "orders_{yyyyMMdd}.csv",
            "deliverTo": [{"target": "drop"}],
        }
    }))
}

fn local_target(out: &Path, finalizer: bool) -> DeliveryTarget {
    let mut meta = json!({"name": "drop", "namespace": "default", "generation": 1, "uid": "u-2", "resourceVersion": "11"});
    if finalizer {
        meta["finalizers"] = json!(["ferry.dev/cleanup"]);
    }
    object(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DeliveryTarget",
        "metadata": meta,
        "spec": {"localDir": {"path": out.display().to_string()}},
    }))
}

const SCHEDULE_URI: &str = "/apis/ferry.dev/v1alpha1/namespaces/default/reportschedules/orders";

#[tokio::test]
async fn a_new_report_schedule_first_gets_the_ferry_finalizer() {
    let dir = tempfile::tempdir().unwrap();
    let db = usage_db(dir.path());
    let rs = schedule("orders", &db, "Asia/Tokyo", json!({}));
    let mut fx = fixture(&[&rs], &[]).await;
    let mut with_finalizer = serde_json::to_value(&rs).unwrap();
    with_finalizer["metadata"]["finalizers"] = json!(["ferry.dev/cleanup"]);
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![Expect {
            method: Method::PATCH,
            status: 200,
            uri: SCHEDULE_URI,
            reply: with_finalizer,
        }],
    ));
    let action = ferry::controller::reconcile(Arc::new(rs), fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let (bodies, handle) = verifier.await.unwrap();
    let _ = &handle;
    let patch = bodies[0].to_string();
    assert!(
        patch.contains("/metadata/finalizers") && patch.contains("ferry.dev/cleanup"),
        "{patch}"
    );
    // Nothing is applied before the finalizer is in place.
    assert!(
        fx.ctx
            .0
            .store
            .snapshot()
            .await
            .unwrap()
            .resources
            .is_empty()
    );
}

#[tokio::test]
async fn a_valid_schedule_is_applied_to_the_state_and_its_status_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let db = usage_db(dir.path());
    let rs = schedule(
        "orders",
        &db,
        "Asia/Tokyo",
        json!({"finalizers": ["ferry.dev/cleanup"]}),
    );
    let target = local_target(&dir.path().join("out"), true);
    let mut fx = fixture(&[&rs], &[&target]).await;
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![Expect {
            method: Method::PATCH,
            status: 200,
            uri: "/apis/ferry.dev/v1alpha1/namespaces/default/reportschedules/orders/status?&force=true&fieldManager=ferry-controller",
            reply: serde_json::to_value(&rs).unwrap(),
        }],
    ));
    let action = ferry::controller::reconcile(Arc::new(rs), fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STATUS_REQUEUE));
    let (bodies, handle) = verifier.await.unwrap();
    let _ = &handle;
    let status = &bodies[0]["status"];
    assert_eq!(bodies[0]["kind"], "ReportSchedule");
    assert_eq!(status["observedGeneration"], 3);
    let ready = &status["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["status"].as_str()),
        (Some("Ready"), Some("True"))
    );
    let state = fx.ctx.0.store.snapshot().await.unwrap();
    let key = ferry::api::ResourceKey::new(ferry::api::Kind::ReportSchedule, "default", "orders");
    assert_eq!(state.resources[&key].spec["timeZone"], "Asia/Tokyo");
}

#[tokio::test]
async fn an_invalid_schedule_gets_ready_false_with_the_message_and_is_not_retried_in_a_hot_loop() {
    let dir = tempfile::tempdir().unwrap();
    let db = usage_db(dir.path());
    let rs = schedule(
        "orders",
        &db,
        "Asia/Tokio",
        json!({"finalizers": ["ferry.dev/cleanup"]}),
    );
    let target = local_target(&dir.path().join("out"), true);
    let mut fx = fixture(&[&rs], &[&target]).await;
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            event_posted(),
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/reportschedules/orders/status",
                reply: serde_json::to_value(&rs).unwrap(),
            },
        ],
    ));
    let action = ferry::controller::reconcile(Arc::new(rs), fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(INVALID_REQUEUE));
    let (bodies, handle) = verifier.await.unwrap();
    let _ = &handle;
    assert_eq!(bodies[0]["reason"], "Invalid");
    assert_eq!(bodies[0]["type"], "Warning");
    let ready = &bodies[1]["status"]["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Invalid");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("unknown time zone `Asia/Tokio`"),
        "{message}"
    );
    assert!(
        fx.ctx
            .0
            .store
            .snapshot()
            .await
            .unwrap()
            .resources
            .is_empty(),
        "nothing applied"
    );
}

#[tokio::test]
async fn the_run_now_annotation_runs_once_and_is_echoed_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = usage_db(dir.path());
    let out = dir.path().join("out");
    let rs = schedule(
        "orders",
        &db,
        "UTC",
        json!({"finalizers": ["ferry.dev/cleanup"], "annotations": {"ferry.dev/run-now": "2026-11-21T10:00"}}),
    );
    let target = local_target(&out, true);
    let mut fx = fixture(&[&rs], &[&target]).await;
    // The target was reconciled before (its own controller).
    let mut ns = ferry::controller::Namespace::default();
    ns.add(&target).unwrap();
    ferry::controller::apply_object(
        &fx.ctx.0.store,
        fx.ctx.0.secrets.files(),
        &ns,
        &ferry::controller::key_of(&target),
    )
    .await
    .unwrap();
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            event_posted(),
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/reportschedules/orders/status",
                reply: serde_json::to_value(&rs).unwrap(),
            },
        ],
    ));
    ferry::controller::reconcile(Arc::new(rs.clone()), fx.ctx.clone())
        .await
        .unwrap();
    let (bodies, handle) = verifier.await.unwrap();
    let _ = &handle;
    assert_eq!(bodies[0]["reason"], "RunNow");
    assert!(
        bodies[0]["note"]
            .as_str()
            .unwrap()
            .contains("succeeded, 1 rows"),
        "{}",
        bodies[0]
    );
    let status = bodies[1]["status"].clone();
    assert_eq!(status["lastHandledRunNow"], "2026-11-21T10:00");
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one file delivered");

    // The same annotation again (the status now echoes it): no run, no write at all.
    let mut seen: Value = serde_json::to_value(&rs).unwrap();
    seen["status"] = status;
    let rs_again: ReportSchedule = object(seen);
    let again = tokio::spawn(verify_nothing(handle));
    ferry::controller::reconcile(Arc::new(rs_again), fx.ctx.clone())
        .await
        .unwrap();
    again.await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "no second run");
    let runs = ferry::ledger::Ledger::new(fx.ctx.0.store.pool().clone())
        .history("default", "orders", 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
}

async fn verify_nothing(mut handle: Handle) {
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handle.next_request())
            .await
            .is_err(),
        "an unexpected request was made"
    );
}

#[tokio::test]
async fn deleting_a_hosted_sftp_target_removes_its_user_then_the_finalizer() {
    let dir = tempfile::tempdir().unwrap();
    let mut target: DeliveryTarget = object(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DeliveryTarget",
        "metadata": {"name": "partner-drop", "namespace": "default", "generation": 1, "uid": "u-3",
                     "resourceVersion": "12", "finalizers": ["ferry.dev/cleanup"]},
        "spec": {"hostedSftp": {"connectionName": "partner-drop", "user": "partner01",
                 "publicKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"],
                 "directory": "reports"}},
    }));
    let mut fx = fixture(&[], &[&target]).await;
    // Applied first, as a reconcile would have.
    let mut ns = ferry::controller::Namespace::default();
    ns.add(&target).unwrap();
    let key = ferry::controller::key_of(&target);
    ferry::controller::apply_object(&fx.ctx.0.store, fx.ctx.0.secrets.files(), &ns, &key)
        .await
        .unwrap();
    let runner =
        ferry::runner::Runner::new(fx.ctx.0.store.clone(), fx.ctx.0.secrets.files().clone());
    assert_eq!(runner.hosted_connections().await.unwrap().len(), 1);

    target.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    let mut gone = serde_json::to_value(&target).unwrap();
    gone["metadata"]["finalizers"] = json!([]);
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            event_posted(),
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/deliverytargets/partner-drop",
                reply: gone,
            },
        ],
    ));
    let action = ferry::controller::reconcile(Arc::new(target), fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let (bodies, handle) = verifier.await.unwrap();
    let _ = &handle;
    assert_eq!(bodies[0]["reason"], "Deleted");
    let patch = bodies[1].to_string();
    assert!(
        patch.contains("\"remove\"") && patch.contains("/metadata/finalizers/0"),
        "{patch}"
    );
    assert!(
        runner.hosted_connections().await.unwrap().is_empty(),
        "the user is gone"
    );
    let _ = dir;
}

// ---------------------------------------------------------------------------------------------
// Leader election on a Lease

const LEASE_URI: &str = "/apis/coordination.k8s.io/v1/namespaces/ferry/leases/ferry-controller";

fn elector(identity: &str) -> (ferry::controller::lease::LeaderElector, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "ferry");
    (
        ferry::controller::lease::LeaderElector::new(
            client,
            ferry::controller::lease::LeaseConfig {
                name: "ferry-controller".into(),
                namespace: "ferry".into(),
                identity: identity.into(),
                duration: Duration::from_secs(15),
            },
        ),
        handle,
    )
}

fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "ferry-controller", "namespace": "ferry", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-11-21T10:00:00.000000Z", "renewTime": renewed,
                 "leaseTransitions": transitions},
    })
}

fn not_found() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
           "code": 404, "message": "leases.coordination.k8s.io \"ferry-controller\" not found"})
}

fn conflict() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Conflict",
           "code": 409, "message": "the object has been modified"})
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn the_first_candidate_creates_the_lease_and_leads() {
    let (elector, handle) = elector("ferry-0");
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            Expect {
                method: Method::GET,
                status: 404,
                uri: LEASE_URI,
                reply: not_found(),
            },
            Expect {
                method: Method::POST,
                status: 201,
                uri: "/apis/coordination.k8s.io/v1/namespaces/ferry/leases?",
                reply: lease("ferry-0", "2026-11-21T10:00:00.000000Z", 0),
            },
        ],
    ));
    let outcome = elector.round(at("2026-11-21T10:00:00Z")).await.unwrap();
    assert_eq!(outcome, ferry::controller::lease::Leadership::Leading);
    let (bodies, _) = verifier.await.unwrap();
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "ferry-0");
    assert_eq!(bodies[1]["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn the_leader_renews_its_lease_with_the_version_it_read() {
    let (elector, handle) = elector("ferry-0");
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            Expect {
                method: Method::GET,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-0", "2026-11-21T10:00:00.000000Z", 0),
            },
            Expect {
                method: Method::PUT,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-0", "2026-11-21T10:00:05.000000Z", 0),
            },
        ],
    ));
    let outcome = elector.round(at("2026-11-21T10:00:05Z")).await.unwrap();
    assert_eq!(outcome, ferry::controller::lease::Leadership::Leading);
    let (bodies, _) = verifier.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "41");
    assert_eq!(
        bodies[1]["spec"]["renewTime"],
        "2026-11-21T10:00:05.000000Z"
    );
    assert_eq!(
        bodies[1]["spec"]["leaseTransitions"], 0,
        "a renewal is no transition"
    );
}

#[tokio::test]
async fn a_standby_waits_while_the_lease_is_fresh_and_takes_it_over_once_expired() {
    let (elector, handle) = elector("ferry-1");
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            Expect {
                method: Method::GET,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-0", "2026-11-21T10:00:00.000000Z", 0),
            },
            Expect {
                method: Method::GET,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-0", "2026-11-21T10:00:00.000000Z", 0),
            },
            Expect {
                method: Method::PUT,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-1", "2026-11-21T10:00:16.000000Z", 1),
            },
        ],
    ));
    let fresh = elector.round(at("2026-11-21T10:00:10Z")).await.unwrap();
    assert_eq!(
        fresh,
        ferry::controller::lease::Leadership::Standby {
            holder: "ferry-0".into()
        }
    );
    let expired = elector.round(at("2026-11-21T10:00:16Z")).await.unwrap();
    assert_eq!(expired, ferry::controller::lease::Leadership::Leading);
    let (bodies, _) = verifier.await.unwrap();
    assert_eq!(bodies[2]["spec"]["holderIdentity"], "ferry-1");
    assert_eq!(bodies[2]["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_leader_whose_renewal_conflicts_has_lost_the_lease() {
    let (elector, handle) = elector("ferry-0");
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            Expect {
                method: Method::GET,
                status: 200,
                uri: LEASE_URI,
                reply: lease("ferry-0", "2026-11-21T10:00:00.000000Z", 0),
            },
            Expect {
                method: Method::PUT,
                status: 409,
                uri: LEASE_URI,
                reply: conflict(),
            },
        ],
    ));
    let outcome = elector.round(at("2026-11-21T10:00:05Z")).await.unwrap();
    assert!(
        matches!(
            outcome,
            ferry::controller::lease::Leadership::Standby { .. }
        ),
        "{outcome:?}"
    );
    verifier.await.unwrap();
}

fn password_target() -> DeliveryTarget {
    object(json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DeliveryTarget",
        "metadata": {"name": "finance-drop", "namespace": "default", "generation": 1, "uid": "u-9",
                     "resourceVersion": "20", "finalizers": ["ferry.dev/cleanup"]},
        "spec": {"hostedSftp": {"connectionName": "finance-drop", "user": "finance01", "directory": "payouts"}},
    }))
}

fn secret_reply(password: &str) -> Value {
    use base64_like::encode;
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "ferry-sftp-password-finance01", "namespace": "default"},
           "data": {"user": encode("finance01"), "password": encode(password)}})
}

/// Standard base64 for the Secret fixtures (no dependency needed for a test).
mod base64_like {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn a_hosted_sftp_user_without_keys_gets_a_generated_password_in_a_secret_and_only_its_hash_in_the_state()
 {
    let target = password_target();
    let mut fx = fixture(&[], &[&target]).await;
    const SECRET: &str = "/api/v1/namespaces/default/secrets/ferry-sftp-password-finance01";
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            Expect {
                method: Method::GET,
                status: 404,
                uri: SECRET,
                reply: not_found(),
            },
            Expect {
                method: Method::POST,
                status: 201,
                uri: "/api/v1/namespaces/default/secrets?",
                reply: secret_reply("placeholder"),
            },
            event_posted(),
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/deliverytargets/finance-drop/status",
                reply: serde_json::to_value(&target).unwrap(),
            },
        ],
    ));
    ferry::controller::reconcile(Arc::new(target), fx.ctx.clone())
        .await
        .unwrap();
    let (bodies, _) = verifier.await.unwrap();
    let secret = &bodies[1];
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "u-9");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "DeliveryTarget"
    );
    let encoded = secret["data"]["password"].as_str().unwrap();
    let hashes = fx.ctx.0.store.password_hashes().await.unwrap();
    let hash = &hashes["finance01"];
    assert!(hash.starts_with("$argon2id$"));
    // The Secret's password (base64 in `data`) is the one the hash verifies.
    let password = decode(encoded);
    assert_eq!(password.len(), 32);
    assert!(ferry::hosted_sftp::verify_password(&password, hash));
    assert_eq!(bodies[2]["reason"], "PasswordIssued");
    assert!(
        !bodies[2].to_string().contains(&password),
        "the Event never holds the password"
    );
    assert_eq!(
        bodies[3]["status"]["passwordSecretName"],
        "ferry-sftp-password-finance01"
    );
    assert!(!bodies[3].to_string().contains(&password), "nor the status");
}

#[tokio::test]
async fn an_existing_password_secret_is_adopted_after_a_lost_state_not_replaced() {
    let target = password_target();
    let mut fx = fixture(&[], &[&target]).await;
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            Expect {
                method: Method::GET,
                status: 200,
                uri: "/api/v1/namespaces/default/secrets/ferry-sftp-password-finance01",
                reply: secret_reply("Kept-password-from-the-Secret-01"),
            },
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/deliverytargets/finance-drop/status",
                reply: serde_json::to_value(&target).unwrap(),
            },
        ],
    ));
    ferry::controller::reconcile(Arc::new(target), fx.ctx.clone())
        .await
        .unwrap();
    verifier.await.unwrap();
    let hashes = fx.ctx.0.store.password_hashes().await.unwrap();
    assert!(ferry::hosted_sftp::verify_password(
        "Kept-password-from-the-Secret-01",
        &hashes["finance01"]
    ));
}

fn decode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = T.iter().position(|t| *t == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_mapping_with_deletion_policy_delete_cancels_its_additions_before_the_finalizer_goes()
 {
    use ferry::psa::sim::{SimServer, connectwise};
    let data: connectwise::Data = serde_saphyr::from_str(
        r#"
companyId: mymsp
clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
publicKey: pub-KEY
privateKey: priv-KEY
companies: [{id: 250, identifier: ACME01, name: "Acme"}]
agreements: [{id: 10, name: "Managed Services", companyId: 250}]
products: [{id: 501, identifier: EP-PROT, description: "Endpoint"}]
additions: [{id: 900, agreementId: 10, productIdentifier: EP-PROT, quantity: 12}]
"#,
    )
    .unwrap();
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(connectwise::ConnectWise::new(data).unwrap()),
    )
    .await
    .unwrap();
    let target: DeliveryTarget = object(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "DeliveryTarget",
        "metadata": {"name": "cw", "namespace": "default", "uid": "u-5", "finalizers": ["ferry.dev/cleanup"]},
        "spec": {"connectwise": {"baseUrl": sim.url(), "companyId": "mymsp",
                 "clientId": "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43",
                 "publicKeySecretRef": {"name": "cw", "key": "public"},
                 "privateKeySecretRef": {"name": "cw", "key": "private"}}},
    }));
    let mut mapping: ferry::api::CustomerMapping = object(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "CustomerMapping",
        "metadata": {"name": "acme", "namespace": "default", "uid": "u-6", "resourceVersion": "30",
                     "finalizers": ["ferry.dev/cleanup"]},
        "spec": {"customer": "acme", "psa": {"target": "cw"}, "company": {"identifier": "ACME01"},
                 "contracts": [{"product": "endpoint", "agreement": "Managed Services", "item": "EP-PROT"}],
                 "deletionPolicy": "Delete"},
    }));
    let mut fx = fixture(&[], &[&target]).await;
    let secrets = fx.ctx.0.secrets.files().dir().join("default/cw");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("public"), "pub-KEY").unwrap();
    std::fs::write(secrets.join("private"), "priv-KEY").unwrap();
    let mut ns = ferry::controller::Namespace::default();
    ns.add(&target).unwrap();
    ns.add(&mapping).unwrap();
    for key in [
        ferry::controller::key_of(&target),
        ferry::controller::key_of(&mapping),
    ] {
        let applied =
            ferry::controller::apply_object(&fx.ctx.0.store, fx.ctx.0.secrets.files(), &ns, &key)
                .await
                .unwrap();
        assert_eq!(applied, ferry::controller::Applied::Ready { changed: true });
    }

    mapping.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    let mut gone = serde_json::to_value(&mapping).unwrap();
    gone["metadata"]["finalizers"] = json!([]);
    let verifier = tokio::spawn(verify(
        fx.handle.take().unwrap(),
        vec![
            event_posted(),
            event_posted(),
            Expect {
                method: Method::PATCH,
                status: 200,
                uri: "/apis/ferry.dev/v1alpha1/namespaces/default/customermappings/acme",
                reply: gone,
            },
        ],
    ));
    let action = ferry::controller::reconcile(Arc::new(mapping), fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let (bodies, _) = verifier.await.unwrap();
    assert_eq!(bodies[0]["reason"], "PsaReleased");
    assert!(
        bodies[0]["note"]
            .as_str()
            .unwrap()
            .contains("addition #900 on agreement #10 cancelled"),
        "{}",
        bodies[0]
    );
    assert_eq!(bodies[1]["reason"], "Deleted");
    let additions = sim.state()["additions"].clone();
    assert!(!additions[0]["cancelledDate"].is_null(), "{additions}");
    sim.shutdown().await;
}
