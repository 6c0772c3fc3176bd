//! `ferry plan --cluster`, the kube-rs way: the Kubernetes API server is a mock (tower-test)
//! and a verifier asserts the exact list requests and answers them with fixtures.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use ferry::controller::plan::{self as cluster, ClusterPlan, ObjectAction, Options};
use ferry::plan::Action;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected request (a GET of this path) and the answer.
struct Expect {
    path: String,
    status: u16,
    body: Vec<u8>,
}

/// A `200` list of `kind` holding `items`.
fn list(ns: &str, plural: &str, kind: &str, items: Vec<Value>) -> Expect {
    Expect {
        path: format!("/apis/ferry.dev/v1alpha1/namespaces/{ns}/{plural}"),
        status: 200,
        body: serde_json::to_vec(&json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": "900"},
            "items": items,
        }))
        .unwrap(),
    }
}

/// The three lists of a namespace, in the order ferry asks: targets, schedules, mappings.
fn namespace(ns: &str, targets: Vec<Value>, schedules: Vec<Value>) -> Vec<Expect> {
    vec![
        list(ns, "deliverytargets", "DeliveryTarget", targets),
        list(ns, "reportschedules", "ReportSchedule", schedules),
        list(ns, "customermappings", "CustomerMapping", Vec::new()),
    ]
}

/// Answers `expected` in order, asserting each request is a GET (a list: no watch) of the
/// expected path; then asserts nothing else is asked.
async fn verify(mut handle: Handle, expected: Vec<Expect>) {
    for e in expected {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected GET {}", e.path))
            .expect("the client is alive");
        assert_eq!(request.method(), Method::GET, "{}", request.uri());
        assert_eq!(request.uri().path(), e.path);
        let query = request.uri().query().unwrap_or_default();
        assert!(!query.contains("watch"), "a list, not a watch: {query}");
        send.send_response(
            Response::builder()
                .status(e.status)
                .body(Body::from(e.body))
                .unwrap(),
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handle.next_request())
            .await
            .is_err(),
        "an unexpected extra request was made"
    );
}

/// Plans `files` against a mocked cluster answering `expected`; the client's default
/// namespace (the kubeconfig context's) is `context_ns`.
async fn plan_against(
    files: &[PathBuf],
    context_ns: &str,
    expected: Vec<Expect>,
) -> ferry::Result<ClusterPlan> {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, context_ns);
    let verifier = tokio::spawn(verify(handle, expected));
    let planned = cluster::plan(&client, files, &options()).await;
    if let Err(e) = &planned {
        eprintln!("plan --cluster failed: {e}");
    }
    verifier.await.expect("the verifier passed");
    planned
}

fn options() -> Options {
    Options {
        namespace: None,
        // 21:00 in Tokyo: the next 00:30 / 01:30 slots are on 2026-07-30.
        now: "2026-07-29T12:00:00Z".parse().unwrap(),
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const TARGET_YAML: &str = "\
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata:
  name: drop
spec:
  ftp:
    host: ftp.example.com
    username: reports
    passwordSecretRef: {name: ftp, key: password}
";

fn schedule_yaml(at: &str) -> String {
    format!(
        "\
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata:
  name: orders
  labels:
    team: bi
spec:
  schedule:
    daily:
      at: \"{at}\"
  timeZone: Asia/Tokyo
  source:
    sql:
      url: sqlite:/srv/shop.db
      query: SELECT id, total FROM orders
  format:
    csv: {{}}
  fileName: orders_{{yyyyMMdd}}.csv
  deliverTo:
    - target: drop
"
    )
}

/// Server-populated metadata, as `kubectl get -o json` shows it after `kubectl apply` and a
/// reconcile by the controller.
fn server_meta(name: &str, ns: &str, extra: Value) -> Value {
    let mut meta = json!({
        "name": name,
        "namespace": ns,
        "uid": format!("uid-{name}"),
        "resourceVersion": "812",
        "generation": 3,
        "creationTimestamp": "2026-07-01T00:00:00Z",
        "finalizers": ["ferry.dev/cleanup"],
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "ferry.dev/v1alpha1"}],
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"ferry.dev/v1alpha1\",\"kind\":\"X\"}\n"
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        meta[k] = v.clone();
    }
    meta
}

fn live_target() -> Value {
    // As the API server stores it: defaults (tls, directory) not filled in.
    json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "DeliveryTarget",
        "metadata": server_meta("drop", "default", json!({})),
        "spec": {"ftp": {"host": "ftp.example.com", "username": "reports", "passwordSecretRef": {"name": "ftp", "key": "password"}}},
        "status": {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "message": "validated and applied", "lastTransitionTime": "2026-07-01T00:00:01Z"}]},
    })
}

fn live_schedule(name: &str, at: &str, time_zone: &str) -> Value {
    json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "ReportSchedule",
        // `kubectl annotate ... ferry.dev/run-now=...` was used: apply leaves it, so it is no change.
        "metadata": server_meta(
            name,
            "default",
            json!({
                "labels": {"team": "bi"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "ferry.dev/run-now": "2026-07-28T10:00:00Z",
                },
            }),
        ),
        "spec": {
            "schedule": {"daily": {"at": at}},
            "timeZone": time_zone,
            "source": {"sql": {"url": "sqlite:/srv/shop.db", "query": "SELECT id, total FROM orders"}},
            "format": {"csv": {}},
            "fileName": format!("{name}_{{yyyyMMdd}}.csv"),
            "deliverTo": [{"target": "drop"}],
        },
        "status": {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "message": "validated and applied", "lastTransitionTime": "2026-07-01T00:00:01Z"}]},
    })
}

fn object<'a>(cp: &'a ClusterPlan, kind: &str, name: &str) -> &'a cluster::ObjectChange {
    cp.objects
        .iter()
        .find(|o| o.kind.as_str() == kind && o.name == name)
        .unwrap_or_else(|| panic!("no object {kind}/{name} in {:#?}", cp.objects))
}

#[tokio::test]
async fn a_new_object_shows_create_and_an_object_only_in_the_cluster_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(&dir, "target.yaml", TARGET_YAML),
        write(&dir, "orders.yaml", &schedule_yaml("00:30")),
    ];
    let cp = plan_against(
        &files,
        "default",
        namespace(
            "default",
            vec![live_target()],
            vec![live_schedule("legacy", "06:00", "UTC")],
        ),
    )
    .await
    .unwrap();

    let actions: Vec<(&str, &str, ObjectAction)> = cp
        .objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str(), o.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            // Server fields, the last-applied annotation, status and defaults make no diff.
            ("DeliveryTarget", "drop", ObjectAction::Unchanged),
            ("ReportSchedule", "orders", ObjectAction::Create),
            ("ReportSchedule", "legacy", ObjectAction::NotInFiles),
        ]
    );
    assert_eq!(object(&cp, "DeliveryTarget", "drop").diff, "");
    let create = &object(&cp, "ReportSchedule", "orders").diff;
    let orders_src = format!("{}:1", files[1].display());
    assert!(
        create.starts_with(&format!(
            "--- live: (none)\n+++ file: {orders_src}\n@@ -0,0 +1,"
        )),
        "{create}"
    );
    for line in [
        "+apiVersion: ferry.dev/v1alpha1\n",
        "+kind: ReportSchedule\n",
        "+  name: orders\n",
        "+  fileName: orders_{yyyyMMdd}.csv\n",
        "+  timeZone: Asia/Tokyo\n",
    ] {
        assert!(create.contains(line), "{line:?} not in\n{create}");
    }

    // The domain plan: the file objects only; the live-only schedule is not deleted.
    let plan = &cp.plan;
    let changes: Vec<(&str, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.name.as_str(), c.action))
        .collect();
    assert_eq!(
        changes,
        vec![("drop", Action::NoOp), ("orders", Action::Create)]
    );
    assert_eq!(
        (
            plan.summary.create,
            plan.summary.update,
            plan.summary.delete,
            plan.summary.unchanged
        ),
        (1, 0, 0, 1)
    );
    // Secrets are not read: no "missing secret" warning, no value.
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let orders = plan.changes.iter().find(|c| c.name == "orders").unwrap();
    assert_eq!(orders.source.as_deref(), Some(orders_src.as_str()));
    assert_eq!(orders.next_runs[0].at, "2026-07-30T00:30:00+09:00");
    assert_eq!(orders.next_runs[0].file_name, "orders_20260730.csv");
    assert!(cp.has_changes());

    let text = cluster::text(&cp, false);
    assert!(
        text.contains(&format!(
            "  + ReportSchedule/orders will be created  ({orders_src})\n      --- live: (none)\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "  Not in the files (kubectl apply leaves them; `--prune` would delete):\n    ReportSchedule/legacy\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Objects: 1 to create, 0 to update, 1 unchanged, 1 not in the files."),
        "{text}"
    );
    assert!(
        text.contains(&format!("  + ReportSchedule/orders  ({orders_src})\n")),
        "{text}"
    );
    assert!(
        text.contains("        2026-07-30T00:30:00+09:00  orders_20260730.csv\n"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 1 to create, 0 to update, 0 to delete, 1 unchanged."),
        "{text}"
    );
    assert!(!text.contains("legacy will be deleted"), "{text}");
    assert!(!text.contains("password"), "no secret in {text}");
}

#[tokio::test]
async fn a_changed_schedule_shows_the_yaml_diff_and_the_domain_plan_with_its_next_runs() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(&dir, "target.yaml", TARGET_YAML),
        write(&dir, "orders.yaml", &schedule_yaml("01:30")),
    ];
    let cp = plan_against(
        &files,
        "default",
        namespace(
            "default",
            vec![live_target()],
            vec![live_schedule("orders", "00:30", "Asia/Tokyo")],
        ),
    )
    .await
    .unwrap();

    let orders = object(&cp, "ReportSchedule", "orders");
    assert_eq!(orders.action, ObjectAction::Update);
    let src = format!("{}:1", files[1].display());
    let changed: Vec<&str> = orders
        .diff
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed,
        vec!["-      at: 00:30", "+      at: 01:30"],
        "{}",
        orders.diff
    );
    assert!(
        orders.diff.starts_with(&format!(
            "--- live: cluster:default/reportschedules/orders\n+++ file: {src}\n@@ "
        )),
        "{}",
        orders.diff
    );
    // Only the spec differs: metadata noise is gone from both sides.
    for noise in [
        "uid",
        "resourceVersion",
        "managedFields",
        "finalizers",
        "last-applied",
        "run-now",
        "annotations",
        "status",
        "observedGeneration",
    ] {
        assert!(!orders.diff.contains(noise), "{noise} in {}", orders.diff);
    }
    assert_eq!(
        object(&cp, "DeliveryTarget", "drop").action,
        ObjectAction::Unchanged
    );

    let change = cp.plan.changes.iter().find(|c| c.name == "orders").unwrap();
    assert_eq!(change.action, Action::Update);
    let fields: Vec<(&str, Option<&Value>, Option<&Value>)> = change
        .fields
        .iter()
        .map(|f| (f.path.as_str(), f.before.as_ref(), f.after.as_ref()))
        .collect();
    assert_eq!(
        fields,
        vec![(
            "spec.schedule.daily.at",
            Some(&json!("00:30")),
            Some(&json!("01:30"))
        )]
    );
    assert_eq!(change.next_runs[0].at, "2026-07-30T01:30:00+09:00");
    assert_eq!(change.next_runs[0].file_name, "orders_20260730.csv");

    let text = cluster::text(&cp, false);
    assert!(
        text.contains(&format!(
            "  ~ ReportSchedule/orders will be updated  ({src})\n      --- live: cluster:default/reportschedules/orders\n      +++ file: {src}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("      -      at: 00:30\n      +      at: 01:30\n"),
        "{text}"
    );
    assert!(
        text.contains("      ~ spec.schedule.daily.at = \"00:30\" -> \"01:30\"\n"),
        "{text}"
    );
    assert!(
        text.contains("      next runs:\n        2026-07-30T01:30:00+09:00  orders_20260730.csv\n"),
        "{text}"
    );
    assert!(
        text.contains("Objects: 0 to create, 1 to update, 1 unchanged, 0 not in the files."),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to create, 1 to update, 0 to delete, 1 unchanged."),
        "{text}"
    );
}

#[tokio::test]
async fn json_output_holds_the_objects_and_the_plan_of_ferry_plan() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(&dir, "target.yaml", TARGET_YAML),
        write(&dir, "orders.yaml", &schedule_yaml("01:30")),
    ];
    let cp = plan_against(
        &files,
        "default",
        namespace(
            "default",
            vec![live_target()],
            vec![
                live_schedule("orders", "00:30", "Asia/Tokyo"),
                live_schedule("legacy", "06:00", "UTC"),
            ],
        ),
    )
    .await
    .unwrap();
    let doc: Value = serde_json::from_str(&cluster::json(&cp)).unwrap();
    let objects: Vec<(&str, &str, &str, &str)> = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["namespace"].as_str().unwrap(),
                o["name"].as_str().unwrap(),
                o["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        objects,
        vec![
            ("DeliveryTarget", "default", "drop", "unchanged"),
            ("ReportSchedule", "default", "orders", "update"),
            ("ReportSchedule", "default", "legacy", "not-in-files"),
        ]
    );
    assert!(
        doc["objects"][1]["diff"]
            .as_str()
            .unwrap()
            .contains("+      at: 01:30\n")
    );
    assert_eq!(doc["objects"][2]["diff"], "");
    let plan = &doc["plan"];
    assert_eq!(plan["format_version"], "1");
    assert_eq!(plan["lineage"], "cluster");
    assert_eq!(
        plan["summary"],
        json!({"create": 0, "update": 1, "delete": 0, "unchanged": 1})
    );
    assert_eq!(plan["changes"][1]["action"], "update");
    assert_eq!(
        plan["changes"][1]["next_runs"][0],
        json!({"at": "2026-07-30T01:30:00+09:00", "fileName": "orders_20260730.csv"})
    );
}

#[tokio::test]
async fn documents_without_a_namespace_go_to_the_context_namespace_like_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(
        &dir,
        "two.yaml",
        &format!(
            "{TARGET_YAML}---\n{}",
            TARGET_YAML.replace("name: drop", "name: ops-drop\n  namespace: ops")
        ),
    )];
    // Namespaces are listed in name order: `ops` (named in the file), then `team` (the
    // context's, for the document without one).
    let mut expected = namespace("ops", Vec::new(), Vec::new());
    expected.extend(namespace("team", Vec::new(), Vec::new()));
    let cp = plan_against(&files, "team", expected).await.unwrap();
    let objects: Vec<(&str, &str, ObjectAction)> = cp
        .objects
        .iter()
        .map(|o| (o.namespace.as_str(), o.name.as_str(), o.action))
        .collect();
    assert_eq!(
        objects,
        vec![
            ("ops", "ops-drop", ObjectAction::Create),
            ("team", "drop", ObjectAction::Create),
        ]
    );
    let text = cluster::text(&cp, false);
    assert!(
        text.contains("+ DeliveryTarget/drop (namespace team) will be created"),
        "{text}"
    );
    assert!(text.contains("+  namespace: team\n"), "{text}");
}

#[tokio::test]
async fn a_file_may_refer_to_a_target_only_the_cluster_holds() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(&dir, "orders.yaml", &schedule_yaml("00:30"))];
    let cp = plan_against(
        &files,
        "default",
        namespace("default", vec![live_target()], Vec::new()),
    )
    .await
    .unwrap();
    assert_eq!(
        object(&cp, "ReportSchedule", "orders").action,
        ObjectAction::Create
    );
    assert_eq!(
        object(&cp, "DeliveryTarget", "drop").action,
        ObjectAction::NotInFiles
    );
    assert_eq!(cp.plan.changes.len(), 1, "{:#?}", cp.plan.changes);
    assert_eq!(cp.plan.summary.delete, 0);
}

#[tokio::test]
async fn an_invalid_live_object_counts_as_absent_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(&dir, "target.yaml", TARGET_YAML),
        write(&dir, "orders.yaml", &schedule_yaml("00:30")),
    ];
    let cp = plan_against(
        &files,
        "default",
        namespace(
            "default",
            vec![live_target()],
            vec![live_schedule("orders", "00:30", "Asia/Tokio")],
        ),
    )
    .await
    .unwrap();
    let orders = object(&cp, "ReportSchedule", "orders");
    assert_eq!(orders.action, ObjectAction::Update);
    assert!(
        orders
            .diff
            .contains("-  timeZone: Asia/Tokio\n+  timeZone: Asia/Tokyo\n"),
        "{}",
        orders.diff
    );
    // The controller never applied the invalid object: the domain plan creates it.
    let change = cp.plan.changes.iter().find(|c| c.name == "orders").unwrap();
    assert_eq!(change.action, Action::Create);
    assert_eq!(cp.plan.warnings.len(), 1, "{:?}", cp.plan.warnings);
    let warning = &cp.plan.warnings[0];
    assert!(
        warning.starts_with("cluster:default/reportschedules/orders:"),
        "{warning}"
    );
    assert!(warning.contains("Asia/Tokio"), "{warning}");
    assert!(
        warning.ends_with(
            "(invalid in the cluster: the controller has not applied it, so it counts as absent)"
        ),
        "{warning}"
    );
}

#[tokio::test]
async fn missing_crds_say_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(&dir, "target.yaml", TARGET_YAML)];
    // What the API server answers for a resource it does not serve: a plain-text 404.
    let err = plan_against(
        &files,
        "default",
        vec![Expect {
            path: "/apis/ferry.dev/v1alpha1/namespaces/default/deliverytargets".into(),
            status: 404,
            body: b"404 page not found\n".to_vec(),
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Ferry CRDs are not installed in this cluster (list deliverytargets.ferry.dev in \
         namespace default: 404 Not Found); install them with `ferry crds | kubectl apply -f -`"
    );
}

#[tokio::test]
async fn forbidden_names_the_verb_and_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(&dir, "target.yaml", TARGET_YAML)];
    let message = "reportschedules.ferry.dev is forbidden: User \"ci\" cannot list resource \"reportschedules\" in API group \"ferry.dev\" in the namespace \"default\"";
    let err = plan_against(
        &files,
        "default",
        vec![
            list("default", "deliverytargets", "DeliveryTarget", Vec::new()),
            Expect {
                path: "/apis/ferry.dev/v1alpha1/namespaces/default/reportschedules".into(),
                status: 403,
                body: serde_json::to_vec(&json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": "Forbidden",
                    "details": {"group": "ferry.dev", "kind": "reportschedules"}, "code": 403,
                }))
                .unwrap(),
            },
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "forbidden: cannot list reportschedules.ferry.dev in namespace default ({message}); \
             the credentials of the current kubeconfig context need the verb `list` on resource \
             `reportschedules` in API group `ferry.dev`"
        )
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(&dir, "target.yaml", TARGET_YAML)];
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    drop(handle);
    let client = Client::new(service, "default");
    let err = cluster::plan(&client, &files, &options())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the Kubernetes API: "),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_files_are_reported_before_the_cluster_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let files = [write(&dir, "orders.yaml", &schedule_yaml("25:00"))];
    let err = plan_against(
        &files,
        "default",
        namespace("default", vec![live_target()], Vec::new()),
    )
    .await
    .unwrap_err();
    let ferry::Error::Invalid(diags) = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].field, "spec.schedule.daily.at");
}

#[test]
fn the_cli_runs_plan_cluster_against_the_kubeconfig_cluster() {
    let sandbox = common::Sandbox::new();
    let file = sandbox.write("target.yaml", TARGET_YAML);
    // A kubeconfig whose API server does not answer.
    let kubeconfig = sandbox.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: team\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    );
    let mut sandbox = sandbox;
    sandbox.set_env("KUBECONFIG", kubeconfig.to_str().unwrap());
    let run = sandbox
        .ferry(["plan", "--cluster", "-f", file.to_str().unwrap()])
        .failure();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("Error: cannot reach the Kubernetes API: ")),
        "{run:#?}"
    );
    // The state is not opened in cluster mode.
    assert!(!sandbox.state.exists());
    // `-n` belongs to --cluster; a saved plan needs a state.
    sandbox
        .ferry(["plan", "-n", "team", "-f", file.to_str().unwrap()])
        .failure();
    sandbox
        .ferry([
            "plan",
            "--cluster",
            "--out",
            "p.json",
            "-f",
            file.to_str().unwrap(),
        ])
        .failure();
}
