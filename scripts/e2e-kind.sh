#!/usr/bin/env bash
# End-to-end test of the Helm chart on a throw-away kind cluster: builds Ferry's image, creates
# the cluster, loads the image, installs charts/ferry, applies examples/quickstart as custom
# resources, waits until they are Ready, triggers a run with the `ferry.dev/run-now` annotation,
# waits until the controller has handled it (status.lastHandledRunNow) and the report file is in
# the pod, prints the resources, and deletes the cluster.
#
# For people with a real machine: it needs a Docker engine, kind (https://kind.sigs.k8s.io),
# kubectl and helm 3.10+ on PATH, and network access to pull the kindest/node, rust and debian
# images. It CANNOT run in Ferry's CI or development sandbox (no Docker engine there, and no
# network beyond package registries): CI checks the chart offline instead, with
# scripts/chart-check.sh (`cargo test --test it chart::`). k3d users: create the cluster yourself,
# `k3d image import`, and run with FERRY_E2E_EXISTING_CONTEXT set (see below).
#
# Usage: scripts/e2e-kind.sh
# Environment:
#   FERRY_E2E_CLUSTER=ferry-e2e      kind cluster name (created, and deleted at the end)
#   FERRY_E2E_KEEP=1                 keep the cluster (and the release) for a look afterwards
#   FERRY_E2E_EXISTING_CONTEXT=CTX   use this kubeconfig context instead of creating a kind
#                                    cluster (the image must already be loadable there: with
#                                    kind it is loaded, otherwise import it yourself)
#   FERRY_E2E_IMAGE=ferry:e2e        image name:tag to build and load
#   FERRY_E2E_NAMESPACE=ferry-system release namespace
#   FERRY_E2E_RESOURCES_NS=ferry-e2e namespace of the quickstart resources
#   FERRY_E2E_TIMEOUT=180s           each wait
#   KIND, KUBECTL, HELM, DOCKER      the tools (default: from PATH; target/tools/helm and
#                                    target/tools/kubectl from scripts/chart-check.sh work too)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${FERRY_E2E_CLUSTER:-ferry-e2e}
KEEP=${FERRY_E2E_KEEP:-0}
CONTEXT=${FERRY_E2E_EXISTING_CONTEXT:-}
IMAGE=${FERRY_E2E_IMAGE:-ferry:e2e}
NAMESPACE=${FERRY_E2E_NAMESPACE:-ferry-system}
RES_NS=${FERRY_E2E_RESOURCES_NS:-ferry-e2e}
TIMEOUT=${FERRY_E2E_TIMEOUT:-180s}
KIND=${KIND:-kind}
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}
DOCKER=${DOCKER:-docker}
RELEASE=ferry
SCHEDULE=order-items-daily

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'e2e-kind: FAILED: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" "$@"; }

for tool in "$DOCKER" "$KUBECTL" "$HELM"; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -n "$CONTEXT" ] || command -v "$KIND" >/dev/null || die "$KIND is not installed (https://kind.sigs.k8s.io)"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info)"

work=$(mktemp -d)
created=0
installed=0

diagnose() {
  echo "---- diagnostics ----" >&2
  k -n "$NAMESPACE" get deploy,pods,svc,pvc -o wide >&2 || true
  k -n "$NAMESPACE" describe pods -l app.kubernetes.io/instance="$RELEASE" >&2 || true
  k -n "$NAMESPACE" logs deployment/"$RELEASE" --tail=200 >&2 || true
  k -n "$RES_NS" get reportschedules,deliverytargets,customermappings -o yaml >&2 || true
  k get events -A --sort-by=.lastTimestamp >&2 || true
}

cleanup() {
  local status=$?
  [ "$status" -eq 0 ] || diagnose
  if [ "$KEEP" = 1 ]; then
    echo "keeping the cluster: KUBECONFIG=$work/kubeconfig; delete it with: $KIND delete cluster --name $CLUSTER" >&2
    return
  fi
  if [ "$installed" = 1 ]; then
    k delete namespace "$RES_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    "$HELM" uninstall "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1 || true
  fi
  if [ "$created" = 1 ]; then
    step "deleting kind cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER" --kubeconfig "$work/kubeconfig" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "building image $IMAGE (target e2e: the runtime image plus the quick start's shop.db)"
DOCKER_BUILDKIT=1 "$DOCKER" build -f charts/ferry/image/Dockerfile --target e2e -t "$IMAGE" .

# The cluster's kubeconfig lives in a temporary file: the user's own is never changed.
user_kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
export KUBECONFIG=$work/kubeconfig
if [ -n "$CONTEXT" ]; then
  step "using the existing context $CONTEXT"
  KUBECONFIG=$user_kubeconfig "$KUBECTL" config view --raw --minify --flatten --context "$CONTEXT" >"$KUBECONFIG"
else
  step "creating kind cluster $CLUSTER"
  if "$KIND" get clusters | grep -qx "$CLUSTER"; then
    die "a kind cluster named $CLUSTER already exists: delete it, or set FERRY_E2E_CLUSTER"
  fi
  created=1
  "$KIND" create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s
  step "loading $IMAGE into the cluster"
  "$KIND" load docker-image "$IMAGE" --name "$CLUSTER"
fi
k cluster-info

step "installing charts/ferry as release $RELEASE in $NAMESPACE"
# The e2e image's working directory is /opt/ferry, where the quick start's relative paths point:
# sqlite://examples/quickstart/shop.db (in the image) and out/quickstart (this emptyDir).
cat >"$work/values.yaml" <<EOF
image:
  repository: ${IMAGE%:*}
  tag: "${IMAGE##*:}"
  pullPolicy: Never
controller:
  logFilter: info,ferry=debug
extraVolumes:
  - name: out
    emptyDir: {}
extraVolumeMounts:
  - name: out
    mountPath: /opt/ferry/out
EOF
installed=1
"$HELM" install "$RELEASE" charts/ferry --namespace "$NAMESPACE" --create-namespace \
  -f "$work/values.yaml" --wait --timeout 5m
k -n "$NAMESPACE" rollout status deployment/"$RELEASE" --timeout="$TIMEOUT"
for crd in reportschedules deliverytargets customermappings; do
  k wait --for=condition=Established "crd/$crd.ferry.dev" --timeout="$TIMEOUT"
done

step "applying examples/quickstart in namespace $RES_NS"
k create namespace "$RES_NS" --dry-run=client -o yaml | k apply -f -
# kubectl reads YAML 1.1: an unquoted `on:` key (weekly schedules) becomes `true` and the API
# server refuses the object; the examples must quote it ("on": [mon]).
k -n "$RES_NS" apply -f examples/quickstart/

step "waiting for Ready=True"
k -n "$RES_NS" wait --for=condition=Ready deliverytargets --all --timeout="$TIMEOUT"
k -n "$RES_NS" wait --for=condition=Ready reportschedules --all --timeout="$TIMEOUT"

step "run now: reportschedule/$SCHEDULE"
stamp=$(date +%s)
k -n "$RES_NS" annotate "reportschedule/$SCHEDULE" ferry.dev/run-now="$stamp" --overwrite
k -n "$RES_NS" wait "reportschedule/$SCHEDULE" --for=jsonpath='{.status.lastHandledRunNow}'="$stamp" --timeout="$TIMEOUT"
outcome=$(k -n "$RES_NS" get "reportschedule/$SCHEDULE" -o jsonpath='{.status.lastRun.outcome}')
echo "lastRun: $(k -n "$RES_NS" get "reportschedule/$SCHEDULE" -o jsonpath='{.status.lastRun}')"
[ "$outcome" = succeeded ] || die "the run-now of $SCHEDULE ended $outcome, expected succeeded"
echo "files delivered to the localDir target (out/quickstart in the pod):"
k -n "$NAMESPACE" exec deployment/"$RELEASE" -- ls -l /opt/ferry/out/quickstart

step "resources"
k -n "$RES_NS" get reportschedules,deliverytargets,customermappings -o wide

step "e2e passed"
