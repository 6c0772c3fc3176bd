#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests the ferry Helm chart renders.

Used by scripts/chart-check.sh on the output of `helm template`; needs only PyYAML (and, for
--custom-resources, the `jsonschema` package). No cluster is contacted. Checks:

- every document parses, is a mapping with apiVersion, kind and a valid metadata.name, of a
  kind the chart is expected to render with the right apiVersion, in the right namespace (or
  none, when cluster-scoped), with the chart's labels, and no (kind, namespace, name) twice;
- the Deployment: one `controller` container running `ferry controller` with the expected
  --state / --leader-elect / --lease-* / --metrics-listen / --sftp-listen / --log-format
  arguments, the PostgreSQL URL only from a Secret (never in args or plain env), its
  ServiceAccount, PersistentVolumeClaims, volume mounts, ports and probes (/healthz, /readyz
  on the metrics port) referring to what exists, writable /data and /tmp, the Secrets mirror
  in memory, the hardened security context, resources, selector matching its pod labels,
  Recreate strategy with SQLite;
- Services select the controller pods and target container ports that exist; the
  PodDisruptionBudget selects them and lets a node drain;
- RBAC: no wildcard (`*`) verb, resource or API group and no nonResourceURLs; the
  ServiceAccount's effective permissions (through the bindings rendered) are exactly what the
  controller needs: ferry.dev resources get/list/watch/patch/update, their /status
  get/patch/update and /finalizers update, Secrets get/list/watch/create/update/patch, Events
  create/patch (core and events.k8s.io) cluster-wide or in --watch-namespace only, and the
  leader-election Lease get/create/update and pods patch (the leader role label) in the release namespace only; bindings refer to
  rendered roles and to the ServiceAccount;
- the CRD file: three CustomResourceDefinitions (apiextensions.k8s.io/v1) of group ferry.dev,
  named <plural>.ferry.dev, namespaced, with v1alpha1 served and the only storage version, a
  schema and the status subresource; CRDs in the render (helm --include-crds) equal the file's;
- with --custom-resources: every ferry.dev document in those files or directories validates
  against its CRD's openAPIV3Schema as the API server applies it (unknown fields refused).

Prints one line per check made and exits 1 if any failed.
"""

import argparse
import copy
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("validate_manifests.py needs PyYAML: python3 -m pip install pyyaml")

GROUP = "ferry.dev"
VERSION = "v1alpha1"
KINDS = {  # plural -> kind
    "reportschedules": "ReportSchedule",
    "deliverytargets": "DeliveryTarget",
    "customermappings": "CustomerMapping",
}
RBAC = "rbac.authorization.k8s.io/v1"
# kind -> (apiVersion, namespaced)
KNOWN_KINDS = {
    "Deployment": ("apps/v1", True),
    "ConfigMap": ("v1", True),
    "Service": ("v1", True),
    "ServiceAccount": ("v1", True),
    "PersistentVolumeClaim": ("v1", True),
    "Role": (RBAC, True),
    "RoleBinding": (RBAC, True),
    "ClusterRole": (RBAC, False),
    "ClusterRoleBinding": (RBAC, False),
    "PodDisruptionBudget": ("policy/v1", True),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", False),
}

# What the controller needs: (apiGroup, resource, verb).
MAIN_PERMISSIONS = set()
for plural in KINDS:
    for verb in ("get", "list", "watch", "patch", "update"):
        MAIN_PERMISSIONS.add((GROUP, plural, verb))
    for verb in ("get", "patch", "update"):
        MAIN_PERMISSIONS.add((GROUP, plural + "/status", verb))
    MAIN_PERMISSIONS.add((GROUP, plural + "/finalizers", "update"))
for verb in ("get", "list", "watch", "create", "update", "patch"):
    MAIN_PERMISSIONS.add(("", "secrets", verb))
for group in ("", "events.k8s.io"):
    for verb in ("create", "patch"):
        MAIN_PERMISSIONS.add((group, "events", verb))
LEASE_PERMISSIONS = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
# With leader election the leader labels its own pod (`ferry.dev/role: leader`).
LEASE_PERMISSIONS.add(("", "pods", "patch"))
ROLE_LABEL = "ferry.dev/role"
# With `--executor job` the leader creates each run's Job, reads it by name (it polls: no list
# or watch) and deletes it when a newer run replaced the run (TTL and ownerReferences remove
# finished Jobs).
JOB_PERMISSIONS = {("batch", "jobs", v) for v in ("create", "get", "delete")}

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")


class Checker:
    """Counts checks per section; prints failures (and, with verbose, every check) as they come
    and one summary line per section."""

    def __init__(self, verbose=False):
        self.errors = []
        self.warnings = []
        self.passed = 0
        self.verbose = verbose
        self.warn_only = False  # failures are reported as warnings (and do not fail the run)
        self.sections = {}  # name -> [passed, failed, warned]
        self.current = "general"

    def section(self, name):
        self.current = name
        self.sections.setdefault(name, [0, 0, 0])

    def check(self, ok, what, why=""):
        """Records one check: `what` says what is checked, `why` explains a failure."""
        counts = self.sections.setdefault(self.current, [0, 0, 0])
        if ok:
            self.passed += 1
            counts[0] += 1
            if self.verbose:
                print(f"  ok    {what}")
        else:
            counts[2 if self.warn_only else 1] += 1
            line = f"{what}: {why}" if why else what
            (self.warnings if self.warn_only else self.errors).append(line)
            print(f"  {'WARN' if self.warn_only else 'FAIL'}  {line}")
        return ok

    def summary(self):
        for name, (ok, bad, warned) in self.sections.items():
            if ok or bad or warned:
                status = "FAIL" if bad else "WARN" if warned else "ok  "
                print(f"  {status}  {name}: {plural(ok, 'check')} passed"
                      + (f", {bad} failed" if bad else "") + (f", {plural(warned, 'warning')}" if warned else ""))


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def load_documents(path, c):
    """Every non-empty YAML document of `path`, as (index, document)."""
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
    except (OSError, yaml.YAMLError) as e:
        c.check(False, f"{path} parses as YAML", str(e))
        return []
    c.check(True, f"{path} parses as YAML ({sum(d is not None for d in docs)} documents)")
    return [(i, d) for i, d in enumerate(docs) if d is not None]


def ident(doc):
    md = doc.get("metadata") or {}
    ns = md.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def parse_flags(args):
    """`--flag=value` / `--flag value` / `--flag` -> {flag: value or True}; repeated flags are errors."""
    flags, dups, i = {}, [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("-") and a not in ("--leader-elect",):
                k, v = a, args[i + 1]
                i += 1
            else:
                k, v = a, True
            if k in flags:
                dups.append(k)
            flags[k] = v
        i += 1
    return flags, dups


def subset(small, big):
    return bool(small) and all(big.get(k) == v for k, v in small.items())


# ------------------------------------------------------------------------------------------------
# CRDs


def check_crds(docs, where, c):
    """Checks the CRD documents; returns {kind: openAPIV3Schema}."""
    c.section(f"CRDs ({where}): group {GROUP}, {VERSION} served and stored, schema, status subresource")
    schemas = {}
    crds = [d for _, d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    others = [ident(d) for _, d in docs if not (isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition")]
    c.check(not others, f"{where}: holds only CustomResourceDefinitions", f"also {others}")
    plurals = sorted((d.get("spec") or {}).get("names", {}).get("plural", "?") for d in crds)
    c.check(plurals == sorted(KINDS), f"{where}: defines {', '.join(sorted(KINDS))}", f"found {plurals}")
    for crd in crds:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        plural = names.get("plural")
        name = (crd.get("metadata") or {}).get("name")
        label = f"{where}: CRD {name}"
        c.check(crd.get("apiVersion") == "apiextensions.k8s.io/v1", f"{label} is apiextensions.k8s.io/v1", crd.get("apiVersion"))
        c.check(spec.get("group") == GROUP, f"{label} has group {GROUP}", spec.get("group"))
        c.check(name == f"{plural}.{GROUP}", f"{label} is named <plural>.{GROUP}", f"plural {plural}")
        c.check(names.get("kind") == KINDS.get(plural), f"{label} has kind {KINDS.get(plural)}", names.get("kind"))
        c.check(spec.get("scope") == "Namespaced", f"{label} is Namespaced", spec.get("scope"))
        versions = spec.get("versions") or []
        storage = [v.get("name") for v in versions if v.get("storage")]
        c.check(storage == [VERSION], f"{label} stores {VERSION} (one storage version)", f"storage versions {storage}")
        v1 = next((v for v in versions if v.get("name") == VERSION), None)
        c.check(bool(v1 and v1.get("served")), f"{label} serves {VERSION}")
        if not v1:
            continue
        schema = ((v1.get("schema") or {}).get("openAPIV3Schema")) or {}
        c.check(schema.get("type") == "object" and "spec" in (schema.get("properties") or {}),
                f"{label} has an openAPIV3Schema with spec", "missing")
        c.check("status" in ((v1.get("subresources") or {})), f"{label} has the status subresource",
                "the controller writes /status")
        schemas[names.get("kind")] = schema
    return schemas


def structural_to_jsonschema(s):
    """The API server's reading of a structural schema as JSON Schema: unknown fields are refused
    unless x-kubernetes-preserve-unknown-fields, `nullable` admits null, int-or-string."""
    if isinstance(s, list):
        return [structural_to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: structural_to_jsonschema(v) for k, v in s.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    is_object = s.get("type") == "object" or "properties" in s
    if is_object and "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def non_string_keys(node, path=""):
    """Paths of mapping keys that YAML 1.1 (kubectl, PyYAML) does not read as strings: an
    unquoted `on`, `off`, `yes`, `no`, `y`, `n` becomes a boolean, so `weekly: {on: [mon]}`
    reaches the API server as `{"true": ["mon"]}`."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                out.append(f"{path}.{k!r}" if path else repr(k))
            out += non_string_keys(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += non_string_keys(v, f"{path}[{i}]")
    return out


def check_custom_resources(paths, schemas, c):
    try:
        import jsonschema
    except ImportError:
        c.check(False, "custom resources: the jsonschema package is available", "pip install jsonschema")
        return
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [os.path.join(root, n) for n in sorted(names) if n.endswith((".yaml", ".yml"))]
        else:
            files.append(p)
    c.section("custom resources: ferry.dev objects accepted by the CRD schemas (as kubectl reads YAML)")
    validators = {k: jsonschema.Draft7Validator(structural_to_jsonschema(copy.deepcopy(v))) for k, v in schemas.items()}
    count = 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            c.check(False, f"{path} parses as YAML", str(e))
            continue
        for doc in docs:
            if not (isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(GROUP + "/")):
                continue
            count += 1
            what = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')} is accepted by its CRD"
            name = (doc.get("metadata") or {}).get("name") or ""
            bad_keys = non_string_keys(doc)
            if doc.get("apiVersion") != f"{GROUP}/{VERSION}":
                why = f"apiVersion {doc.get('apiVersion')}, expected {GROUP}/{VERSION}"
            elif doc.get("kind") not in validators:
                why = f"no CRD for kind {doc.get('kind')}"
            elif bad_keys:
                why = ("kubectl (YAML 1.1) reads these keys as booleans or numbers, not strings: "
                       f"{', '.join(bad_keys)}; quote them (`\"on\": [mon]`)")
            else:
                body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
                errs = sorted(validators[doc["kind"]].iter_errors(body), key=lambda e: list(e.absolute_path))
                why = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in errs[:5])
                if not DNS1123_SUBDOMAIN.match(name):
                    why = (why + "; " if why else "") + f"metadata.name {name!r} is not a DNS-1123 subdomain"
            c.check(not why, what, why)
    c.warn_only = False
    c.check(count > 0, f"custom resources: found ferry.dev documents to check ({count})", "none found")


# ------------------------------------------------------------------------------------------------
# Rendered chart


def check_render(docs, a, c):
    c.section("objects: known kinds and apiVersions, names, namespaces, labels, no duplicates")
    objs = []
    seen = set()
    for i, d in docs:
        where = f"document {i}"
        if not c.check(isinstance(d, dict), f"{where} is a mapping", type(d).__name__):
            continue
        kind, api = d.get("kind"), d.get("apiVersion")
        md = d.get("metadata") or {}
        name = md.get("name")
        where = f"{where} ({ident(d)})"
        c.check(bool(api) and bool(kind) and bool(name), f"{where} has apiVersion, kind and metadata.name")
        if kind not in KNOWN_KINDS:
            c.check(False, f"{where} is a known kind", f"unexpected kind {kind!r} ({api})")
            continue
        want_api, namespaced = KNOWN_KINDS[kind]
        c.check(api == want_api, f"{where} has apiVersion {want_api}", f"found {api}")
        c.check(isinstance(name, str) and len(name) <= 253 and bool(DNS1123_SUBDOMAIN.match(name)),
                f"{where} has a DNS-1123 name", repr(name))
        if kind == "Service":
            c.check(bool(DNS1035_LABEL.match(name or "")) and len(name) <= 63, f"{where} has a DNS-1035 label name (Service)", repr(name))
        ns = md.get("namespace")
        if namespaced:
            allowed = {a.namespace}
            if kind in ("Role", "RoleBinding") and a.watch_namespace:
                allowed.add(a.watch_namespace)
            c.check(ns in allowed, f"{where} is in namespace {' or '.join(sorted(allowed))}", f"namespace {ns!r}")
        else:
            c.check(ns is None, f"{where} is cluster-scoped (no namespace)", f"namespace {ns!r}")
        if kind != "CustomResourceDefinition":  # crds/ is installed as is, not templated
            labels = md.get("labels") or {}
            missing = [l for l in REQUIRED_LABELS if l not in labels]
            c.check(not missing, f"{where} has the chart's labels", f"missing {missing}")
        key = (kind, ns, name)
        c.check(key not in seen, f"{where} is rendered once", "duplicate")
        seen.add(key)
        objs.append(d)

    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    names = lambda kind, ns=None: {o["metadata"]["name"] for o in by_kind.get(kind, []) if ns is None or o["metadata"].get("namespace") == ns}

    crds = [(0, o) for o in by_kind.get("CustomResourceDefinition", [])]
    if crds:
        check_crds(crds, "rendered CRDs", c)

    c.section("Deployment: ferry controller args, state, ServiceAccount, ports, probes, security, resources, volumes")
    deployments = by_kind.get("Deployment", [])
    if not c.check(len(deployments) == 1, "exactly one Deployment", f"found {len(deployments)}"):
        return
    dep = deployments[0]
    dn = f"Deployment/{dep['metadata']['name']}"
    spec = dep.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod_labels = (tmpl.get("metadata") or {}).get("labels") or {}
    pod = tmpl.get("spec") or {}
    replicas = spec.get("replicas", 1)
    c.check(replicas == a.replicas, f"{dn} runs {a.replicas} replica(s)", f"replicas {replicas}")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    c.check(subset(selector, pod_labels), f"{dn} selector matches its pod labels", f"{selector} vs {pod_labels}")

    # ServiceAccount
    sa = pod.get("serviceAccountName")
    c.check(sa in names("ServiceAccount", a.namespace), f"{dn} serviceAccountName {sa!r} is a rendered ServiceAccount",
            f"rendered: {sorted(names('ServiceAccount'))}")
    c.check(pod.get("automountServiceAccountToken", True) is not False, f"{dn} mounts its ServiceAccount token (the controller talks to the API)")

    containers = pod.get("containers") or []
    ctr = next((x for x in containers if x.get("name") == "controller"), None)
    if not c.check(ctr is not None and len(containers) == 1, f"{dn} has one container named controller", f"{[x.get('name') for x in containers]}"):
        return
    image = ctr.get("image") or ""
    c.check(bool(re.match(r"^[^\s:@]+(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?$", image)) and (":" in image.split("/")[-1] or "@" in image),
            f"{dn} image {image!r} has a tag or digest", "invalid image reference")
    c.check(ctr.get("imagePullPolicy") in ("IfNotPresent", "Always", "Never"), f"{dn} has a valid imagePullPolicy", str(ctr.get("imagePullPolicy")))

    # Ports
    ports = ctr.get("ports") or []
    port_by_name = {p.get("name"): p.get("containerPort") for p in ports}
    numbers = [p.get("containerPort") for p in ports]
    c.check(len(port_by_name) == len(ports) and len(set(numbers)) == len(numbers), f"{dn} container ports are unique", str(ports))
    c.check(all(isinstance(n, str) and 0 < len(n) <= 15 for n in port_by_name), f"{dn} port names are IANA service names (<= 15 characters)")
    c.check("metrics" in port_by_name, f"{dn} exposes the metrics port", str(ports))
    c.check(("sftp" in port_by_name) == a.sftp, f"{dn} {'exposes' if a.sftp else 'does not expose'} the hosted SFTP port", str(ports))

    # Arguments
    args = [str(x) for x in (ctr.get("args") or [])]
    cmd = ctr.get("command")
    c.check(not cmd, f"{dn} runs the image's entrypoint (ferry)", f"command {cmd}")
    c.check(args[:1] == ["controller"], f"{dn} runs `ferry controller`", f"args {args}")
    flags, dups = parse_flags(args[1:])
    c.check(not dups, f"{dn} passes each flag once", f"repeated {dups}")
    c.check(flags.get("--metrics-listen") == f"0.0.0.0:{port_by_name.get('metrics')}",
            f"{dn} --metrics-listen=0.0.0.0:<metrics port>", f"{flags.get('--metrics-listen')}")
    if a.sftp:
        c.check(flags.get("--sftp-listen") == f"0.0.0.0:{port_by_name.get('sftp')}",
                f"{dn} --sftp-listen=0.0.0.0:<sftp port>", f"{flags.get('--sftp-listen')}")
    else:
        c.check("--sftp-listen" not in flags, f"{dn} runs no SFTP server")
    c.check(flags.get("--log-format") == a.log_format, f"{dn} --log-format={a.log_format}", f"{flags.get('--log-format')}")
    if a.leader_elect:
        c.check(flags.get("--leader-elect") is True, f"{dn} --leader-elect", f"args {args}")
        c.check(bool(flags.get("--lease-name")), f"{dn} --lease-name set")
        c.check(flags.get("--lease-namespace") == a.namespace, f"{dn} --lease-namespace={a.namespace} (the release namespace)",
                f"{flags.get('--lease-namespace')}")
    else:
        c.check(not any(k in flags for k in ("--leader-elect", "--lease-name", "--lease-namespace")),
                f"{dn} runs without leader election", f"args {args}")
    c.check(replicas <= 1 or flags.get("--leader-elect") is True, f"{dn} elects a leader when replicas > 1")
    if a.watch_namespace:
        c.check(flags.get("--watch-namespace") == a.watch_namespace, f"{dn} --watch-namespace={a.watch_namespace}", f"{flags.get('--watch-namespace')}")
    else:
        c.check("--watch-namespace" not in flags, f"{dn} watches every namespace")

    env = {e.get("name"): e for e in (ctr.get("env") or [])}
    c.check(len(env) == len(ctr.get("env") or []), f"{dn} sets each environment variable once")
    secret_refs = []
    for e in ctr.get("env") or []:
        ref = ((e.get("valueFrom") or {}).get("secretKeyRef"))
        if ref:
            secret_refs.append(ref)
    leaked = [x for x in args + [str(e.get("value", "")) for e in env.values()] if re.search(r"postgres(ql)?://", x)]
    c.check(not leaked, f"{dn} has no database URL in its args or plain env (Secrets only)", f"{leaked}")
    state_env = env.get("FERRY_STATE")
    if a.state == "sqlite":
        st = str(flags.get("--state", ""))
        c.check(st.startswith("/data/") and len(st) > len("/data/"),
                f"{dn} --state=/data/... (SQLite on the /data volume)", f"--state {st!r}")
        c.check(state_env is None, f"{dn} takes the state from --state only", "FERRY_STATE also set")
        strategy = (spec.get("strategy") or {}).get("type")
        c.check(strategy == "Recreate", f"{dn} strategy Recreate (one SQLite writer at a time)", f"strategy {strategy}")
        c.check(replicas == 1, f"{dn} has one replica with SQLite", f"replicas {replicas}")
    else:
        c.check("--state" not in flags, f"{dn} passes no --state argument (the URL holds a password)", f"{flags.get('--state')}")
        ref = ((state_env or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        c.check(bool(ref.get("name")) and bool(ref.get("key")), f"{dn} FERRY_STATE comes from a Secret key",
                f"{state_env}")
        if a.postgres_secret:
            c.check(ref.get("name") == a.postgres_secret, f"{dn} FERRY_STATE from Secret {a.postgres_secret}", f"{ref}")
    for ref in secret_refs:
        c.check(bool(DNS1123_SUBDOMAIN.match(str(ref.get("name", "")))) and bool(ref.get("key")),
                f"{dn} secretKeyRef {ref.get('name')}/{ref.get('key')} names a Secret and a key")

    # Probes
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = ((ctr.get(probe) or {}).get("httpGet")) or {}
        port = http.get("port")
        port_ok = port == "metrics" or port == port_by_name.get("metrics")
        c.check(http.get("path") == path and port_ok, f"{dn} {probe} GET {path} on the metrics port", f"{http}")

    # Security
    psc = pod.get("securityContext") or {}
    csc = ctr.get("securityContext") or {}
    get = lambda k: csc.get(k, psc.get(k))
    c.check(get("runAsNonRoot") is True, f"{dn} runAsNonRoot")
    c.check(get("runAsUser") not in (0, "0"), f"{dn} does not run as uid 0", f"runAsUser {get('runAsUser')}")
    c.check(csc.get("readOnlyRootFilesystem") is True, f"{dn} readOnlyRootFilesystem")
    c.check(csc.get("allowPrivilegeEscalation") is False, f"{dn} allowPrivilegeEscalation false")
    c.check(csc.get("privileged") is not True, f"{dn} is not privileged")
    caps = csc.get("capabilities") or {}
    c.check("ALL" in (caps.get("drop") or []) and not caps.get("add"), f"{dn} drops ALL capabilities and adds none", f"{caps}")
    seccomp = (get("seccompProfile") or {}).get("type")
    c.check(seccomp == "RuntimeDefault", f"{dn} seccompProfile RuntimeDefault", f"{seccomp}")
    c.check(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), f"{dn} uses no host namespaces")

    res = ctr.get("resources") or {}
    c.check(bool((res.get("requests") or {}).get("cpu")) and bool((res.get("requests") or {}).get("memory")),
            f"{dn} requests CPU and memory", f"{res}")
    c.check(bool((res.get("limits") or {}).get("memory")), f"{dn} limits memory", f"{res}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    c.check(isinstance(grace, int) and grace >= 30, f"{dn} gives running exports >= 30s to finish on SIGTERM", f"{grace}")

    # Volumes
    volumes = pod.get("volumes") or []
    vol_by_name = {v.get("name"): v for v in volumes}
    c.check(len(vol_by_name) == len(volumes), f"{dn} volume names are unique")
    mounts = ctr.get("volumeMounts") or []
    for m in mounts:
        c.check(m.get("name") in vol_by_name, f"{dn} mount {m.get('mountPath')} names a volume ({m.get('name')})")
    mount_paths = [m.get("mountPath") for m in mounts]
    c.check(len(set(mount_paths)) == len(mount_paths), f"{dn} mount paths are unique", f"{mount_paths}")
    used = {m.get("name") for m in mounts}
    for v in volumes:
        c.check(v.get("name") in used, f"{dn} volume {v.get('name')} is mounted")
    data = next((m for m in mounts if m.get("mountPath") == "/data"), None)
    c.check(data is not None and not data.get("readOnly"), f"{dn} mounts a writable volume at /data")
    c.check(any(m.get("mountPath") == "/tmp" for m in mounts), f"{dn} mounts a writable /tmp (the root file system is read-only)")
    mirror_path = str((env.get("FERRY_SECRETS_MIRROR") or {}).get("value") or "/run/ferry/secrets")
    mirror = next((m for m in mounts if m.get("mountPath") == mirror_path), None)
    mirror_vol = vol_by_name.get((mirror or {}).get("name"), {})
    c.check(mirror is not None and not mirror.get("readOnly") and (mirror_vol.get("emptyDir") or {}).get("medium") == "Memory",
            f"{dn} mounts an in-memory emptyDir at the Secrets mirror {mirror_path}", f"{mirror} {mirror_vol}")
    data_vol = vol_by_name.get((data or {}).get("name"), {})
    claim = (data_vol.get("persistentVolumeClaim") or {}).get("claimName")
    pvcs = names("PersistentVolumeClaim", a.namespace)
    if a.data == "emptyDir":
        c.check("emptyDir" in data_vol, f"{dn} /data is an emptyDir", f"{data_vol}")
        c.check(not pvcs, "no PersistentVolumeClaim rendered", f"{sorted(pvcs)}")
    elif a.data.startswith("existing:"):
        want = a.data.split(":", 1)[1]
        c.check(claim == want, f"{dn} /data is the existing claim {want}", f"claim {claim}")
        c.check(not pvcs, "no PersistentVolumeClaim rendered (existingClaim)", f"{sorted(pvcs)}")
    else:
        c.check(claim in pvcs, f"{dn} /data claim {claim!r} is a rendered PersistentVolumeClaim", f"rendered: {sorted(pvcs)}")
    for v in volumes:
        cn = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if cn and v is not data_vol:
            c.check(cn in pvcs, f"{dn} volume {v.get('name')} claim {cn} is rendered")
    for pvc in by_kind.get("PersistentVolumeClaim", []):
        pn = pvc["metadata"]["name"]
        ps = pvc.get("spec") or {}
        c.check(bool(ps.get("accessModes")) and bool(((ps.get("resources") or {}).get("requests") or {}).get("storage")),
                f"PersistentVolumeClaim/{pn} has access modes and a size")
        c.check(pn == claim or any((v.get("persistentVolumeClaim") or {}).get("claimName") == pn for v in volumes),
                f"PersistentVolumeClaim/{pn} is mounted by the Deployment")
        if a.replicas > 1 and pn == claim:
            # Every replica mounts /data (the leader's hosted SFTP files and host key).
            c.check("ReadWriteMany" in (ps.get("accessModes") or []),
                    f"PersistentVolumeClaim/{pn} is ReadWriteMany ({a.replicas} replicas mount it)",
                    f"{ps.get('accessModes')}")

    c.section("Services and PodDisruptionBudget: selectors match the pods, target ports exist")
    services = by_kind.get("Service", [])
    types = {}
    for svc in services:
        sn = f"Service/{svc['metadata']['name']}"
        ss = svc.get("spec") or {}
        selector = dict(ss.get("selector") or {})
        role = selector.pop(ROLE_LABEL, None)
        c.check(subset(selector, pod_labels), f"{sn} selects the controller pods", f"{ss.get('selector')}")
        if "sftp" in sn:
            expected = "leader" if a.leader_elect else None
            c.check(role == expected, f"{sn} selects {'the leader pod only' if expected else 'the (single) controller pod'}",
                    f"{ROLE_LABEL}={role}")
        else:
            c.check(role is None, f"{sn} selects every controller pod", f"{ROLE_LABEL}={role}")
        for p in ss.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            ok = tp in port_by_name if isinstance(tp, str) else tp in numbers
            c.check(ok, f"{sn} port {p.get('port')} -> {tp} is a container port", f"container ports {port_by_name}")
            if "nodePort" in p:
                c.check(ss.get("type") in ("NodePort", "LoadBalancer"), f"{sn} sets nodePort only with NodePort/LoadBalancer")
        targets = {p.get("targetPort") for p in ss.get("ports") or []}
        if "sftp" in targets:
            types["sftp"] = ss.get("type", "ClusterIP")
            c.check(any(p.get("port") == a.sftp_port and p.get("targetPort") == "sftp" for p in ss.get("ports") or []),
                    f"{sn} serves SFTP on port {a.sftp_port}", f"{ss.get('ports')}")
        if "metrics" in targets:
            types["metrics"] = ss.get("type", "ClusterIP")
    if a.sftp:
        c.check(types.get("sftp") == a.sftp_service_type, f"SFTP Service of type {a.sftp_service_type}", f"{types.get('sftp')}")
    else:
        c.check("sftp" not in types, "no SFTP Service")
    c.check(("metrics" in types) == a.metrics_service, f"metrics Service {'rendered' if a.metrics_service else 'not rendered'}")

    # PodDisruptionBudget
    pdbs = by_kind.get("PodDisruptionBudget", [])
    c.check(len(pdbs) == (1 if a.pdb else 0), f"{'one' if a.pdb else 'no'} PodDisruptionBudget", f"found {len(pdbs)}")
    for pdb in pdbs:
        ps = pdb.get("spec") or {}
        pn = f"PodDisruptionBudget/{pdb['metadata']['name']}"
        c.check(subset((ps.get("selector") or {}).get("matchLabels") or {}, pod_labels), f"{pn} selects the controller pods")
        mn = ps.get("minAvailable")
        c.check(isinstance(mn, int) and mn < replicas, f"{pn} minAvailable < replicas (a node can be drained)", f"{mn} vs {replicas}")

    check_job_executor(by_kind, a, dn, ctr, pod, flags, env, c)
    check_rbac(by_kind, a, sa, flags.get("--lease-name"), c)


def check_job_executor(by_kind, a, dn, ctr, pod, flags, env, c):
    """--executor job: the controller's flags, its template ConfigMap, and the Job template in it
    (the controller's image and ServiceAccount, the state from its Secret, resources, TTL,
    backoff, deadline, no secret values, read-only root, in-memory Secrets mirror)."""
    c.section("Job executor: controller flags, the Job template ConfigMap, the runs' pods")
    mcr = (env.get("FERRY_MAX_CONCURRENT_RUNS") or {}).get("value")
    c.check(mcr == str(a.max_concurrent_runs), f"{dn} FERRY_MAX_CONCURRENT_RUNS={a.max_concurrent_runs} (--max-concurrent-runs)", f"{mcr!r}")
    configmaps = {m["metadata"]["name"]: m for m in by_kind.get("ConfigMap", [])}
    if not a.executor_job:
        c.check("--executor" not in flags and "--job-template" not in flags, f"{dn} runs exports in its own process (no --executor)", f"{flags}")
        c.check(not configmaps, "no Job template ConfigMap", f"{sorted(configmaps)}")
        return
    c.check(flags.get("--executor") == "job", f"{dn} --executor=job", f"{flags.get('--executor')}")
    c.check(a.state == "postgres", "the Job executor has the PostgreSQL state the Jobs share", a.state)
    path = str(flags.get("--job-template") or "")
    mounts = [m for m in ctr.get("volumeMounts") or [] if path.startswith(str(m.get("mountPath", "")).rstrip("/") + "/")]
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    cm_name = ((vols.get(mounts[0].get("name")) or {}).get("configMap") or {}).get("name") if mounts else None
    if not c.check(cm_name in configmaps, f"{dn} --job-template={path} is in a mounted, rendered ConfigMap", f"mounts {mounts}, ConfigMaps {sorted(configmaps)}"):
        return
    key = path[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
    text = (configmaps[cm_name].get("data") or {}).get(key)
    if not c.check(isinstance(text, str), f"ConfigMap/{cm_name} has key {key}", f"keys {sorted(configmaps[cm_name].get('data') or {})}"):
        return
    job = yaml.safe_load(text)
    jn = f"the Job template (ConfigMap/{cm_name} {key})"
    c.check(job.get("apiVersion") == "batch/v1" and job.get("kind") == "Job", f"{jn} is a batch/v1 Job")
    js = job.get("spec") or {}
    for field, want in (("ttlSecondsAfterFinished", a.job_ttl), ("backoffLimit", a.job_backoff_limit)):
        c.check(js.get(field) == want, f"{jn} {field}: {want}", f"{js.get(field)}")
    c.check(isinstance(js.get("activeDeadlineSeconds"), int) and js["activeDeadlineSeconds"] > 0, f"{jn} has an activeDeadlineSeconds")
    tpod = ((js.get("template") or {}).get("spec")) or {}
    c.check(tpod.get("serviceAccountName") == pod.get("serviceAccountName"), f"{jn} runs as the controller's ServiceAccount", f"{tpod.get('serviceAccountName')}")
    containers = tpod.get("containers") or []
    if not c.check(len(containers) == 1, f"{jn} has one container", f"{len(containers)}"):
        return
    run = containers[0]
    c.check(run.get("image") == ctr.get("image"), f"{jn} runs the controller's image", f"{run.get('image')}")
    c.check(not run.get("command") and not any("exec-run" in str(x) for x in run.get("args") or []),
            f"{jn} leaves the entrypoint and `exec-run --run-id` to the controller", f"{run.get('command')} {run.get('args')}")
    renv = {e.get("name"): e for e in run.get("env") or []}
    ref = ((renv.get("FERRY_STATE") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    c.check(ref.get("name") == a.postgres_secret, f"{jn} reads FERRY_STATE from Secret {a.postgres_secret}", f"{renv.get('FERRY_STATE')}")
    leaked = [str(e.get("value", "")) for e in renv.values() if re.search(r"postgres(ql)?://", str(e.get("value", "")))]
    c.check(not leaked, f"{jn} has no secret value in its env", f"{leaked}")
    req = ((run.get("resources") or {}).get("requests")) or {}
    c.check("cpu" in req and "memory" in req, f"{jn} requests CPU and memory", f"{run.get('resources')}")
    c.check((run.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, f"{jn} has a read-only root file system")
    tvols = {v.get("name"): v for v in tpod.get("volumes") or []}
    mirror = str((renv.get("FERRY_SECRETS_MIRROR") or {}).get("value") or "/run/ferry/secrets")
    mm = [m for m in run.get("volumeMounts") or [] if m.get("mountPath") == mirror]
    medium = ((tvols.get(mm[0].get("name")) or {}).get("emptyDir") or {}).get("medium") if mm else None
    c.check(medium == "Memory", f"{jn} mirrors Secrets into an in-memory emptyDir at {mirror}", f"{mm}")
    work = str((renv.get("FERRY_WORK_DIR") or {}).get("value") or "")
    c.check(any(m.get("mountPath") == work for m in run.get("volumeMounts") or []), f"{jn} stages exports on a volume (FERRY_WORK_DIR={work})")


def rule_grants(rule, where, c):
    """(group, resource, verb, resourceNames or None) for each combination a rule grants."""
    groups, resources, verbs = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("verbs") or []
    wild = [x for x in groups + resources + verbs + (rule.get("resourceNames") or []) if "*" in str(x)]
    c.check(not wild, f"{where} has no wildcard", f"rule {rule}")
    c.check(not rule.get("nonResourceURLs"), f"{where} grants no nonResourceURLs", f"rule {rule}")
    names = tuple(rule.get("resourceNames") or ()) or None
    return {(g, r, v, names) for g in groups for r in resources for v in verbs}


def check_rbac(by_kind, a, sa, lease_name, c):
    c.section("RBAC: bindings resolve, no wildcard, exactly the permissions the controller needs")
    roles = {}
    for kind in ("Role", "ClusterRole"):
        for r in by_kind.get(kind, []):
            where = f"{kind}/{r['metadata'].get('namespace', '') + '/' if kind == 'Role' else ''}{r['metadata']['name']}"
            grants = set()
            for i, rule in enumerate(r.get("rules") or []):
                grants |= rule_grants(rule, f"{where} rule {i}", c)
            c.check(not r.get("aggregationRule"), f"{where} has no aggregationRule")
            roles[(kind, r["metadata"].get("namespace"), r["metadata"]["name"])] = grants
    # Effective grants of the controller's ServiceAccount: (scope, group, resource, verb, names)
    effective = set()
    bound = set()
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for b in by_kind.get(kind, []):
            bns = b["metadata"].get("namespace")
            where = f"{kind}/{bns + '/' if bns else ''}{b['metadata']['name']}"
            ref = b.get("roleRef") or {}
            c.check(ref.get("apiGroup") == "rbac.authorization.k8s.io", f"{where} roleRef apiGroup")
            if kind == "ClusterRoleBinding":
                c.check(ref.get("kind") == "ClusterRole", f"{where} refers to a ClusterRole", f"{ref}")
                key = ("ClusterRole", None, ref.get("name"))
            else:
                key = (ref.get("kind"), bns if ref.get("kind") == "Role" else None, ref.get("name"))
            ok = c.check(key in roles, f"{where} refers to a rendered {ref.get('kind')} {ref.get('name')}", f"rendered: {sorted(map(str, roles))}")
            subjects = b.get("subjects") or []
            ours = [s for s in subjects if s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == a.namespace]
            c.check(len(ours) == 1 and len(subjects) == 1, f"{where} binds only ServiceAccount {a.namespace}/{sa}", f"subjects {subjects}")
            if ok and ours:
                bound.add(key)
                scope = "*" if kind == "ClusterRoleBinding" else bns
                effective |= {(scope,) + g for g in roles[key]}
    for key in roles:
        c.check(key in bound, f"{key[0]}/{key[2]} is bound to the controller's ServiceAccount")

    main_scope = a.watch_namespace or "*"
    where_main = f"in namespace {a.watch_namespace}" if a.watch_namespace else "cluster-wide"
    granted = lambda scope, p: any(e[0] == scope and e[1:4] == p for e in effective)
    missing = sorted(p for p in MAIN_PERMISSIONS if not granted(main_scope, p))
    c.check(not missing, f"RBAC grants what the controller needs {where_main} ({len(MAIN_PERMISSIONS)} permissions: ferry.dev resources, /status, /finalizers, secrets, events)",
            f"missing {missing}")
    if a.watch_namespace:
        c.check(not by_kind.get("ClusterRole") and not by_kind.get("ClusterRoleBinding"),
                "no ClusterRole or ClusterRoleBinding with watchNamespace")
    if a.executor_job:
        missing = sorted(p for p in JOB_PERMISSIONS if not granted(a.namespace, p))
        c.check(not missing, f"RBAC grants Jobs create, get and delete in the release namespace {a.namespace} (the runs' Jobs)", f"missing {missing}")
    if a.leader_elect:
        missing = sorted(p for p in LEASE_PERMISSIONS if not granted(a.namespace, p))
        c.check(not missing, f"RBAC grants the Lease get/create/update and pods patch (role label) in the release namespace {a.namespace}", f"missing {missing}")
        named = [e for e in effective if e[1:3] == ("coordination.k8s.io", "leases") and e[4]]
        c.check(all(lease_name in e[4] for e in named), f"Lease permissions limited by name name the controller's Lease {lease_name}",
                f"{named}")
    extra = sorted(
        e for e in effective
        if not ((e[0] == main_scope and e[1:4] in MAIN_PERMISSIONS)
                or (a.leader_elect and e[0] == a.namespace and e[1:4] in LEASE_PERMISSIONS)
                or (a.executor_job and e[0] == a.namespace and e[1:4] in JOB_PERMISSIONS and e[4] is None))
    )
    c.check(not extra, "RBAC grants nothing more (least privilege: no other resource, verb or scope)", f"extra {extra}")


def check_values_docs(values_path, schema_path, readme_path, c):
    """Every value of values.yaml has a schema entry and a row in the README's values table."""
    import json

    c.section("values: every key of values.yaml in the schema and the README values table")
    with open(values_path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(readme_path, encoding="utf-8") as f:
        readme = f.read()

    def leaves(node, sch, path):
        # A value is a leaf unless it is a non-empty mapping whose schema lists its properties
        # (pass-through Kubernetes objects such as resources or probes are documented whole).
        props = (sch or {}).get("properties")
        if isinstance(node, dict) and node and props:
            for k, v in node.items():
                yield from leaves(v, props.get(k), f"{path}.{k}" if path else k)
        else:
            yield path, sch

    paths = list(leaves(values, schema, ""))
    no_schema = [p for p, sch in paths if sch is None]
    c.check(not no_schema, f"{schema_path} describes all {len(paths)} values of {values_path}", f"missing {no_schema}")
    # The rows of the table under "## Values".
    section = re.search(r"^## Values\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    rows = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", section.group(1) if section else "", re.M))
    # A row for a mapping (`resources`, `livenessProbe`) documents it whole.
    documented = lambda p: any(p == r or p.startswith(r + ".") for r in rows)
    undocumented = [p for p, _ in paths if not documented(p)]
    c.check(not undocumented, f"{readme_path} ## Values has a row (| `key` |) for each of them", f"missing {undocumented}")
    # Every row must be a real value (or a mapping of them).
    known = {p for p, _ in paths}
    stale = sorted(r for r in rows if not any(k == r or k.startswith(r + ".") for k in known))
    c.check(not stale, f"{readme_path} documents no value that does not exist", f"stale rows {stale}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="?", help="output of helm template")
    p.add_argument("--crds", help="the chart's CRD file")
    p.add_argument("--custom-resources", nargs="*", default=[], help="files or directories of ferry.dev resources")
    p.add_argument("--custom-resources-warn-only", action="store_true",
                   help="report custom resources the CRDs would refuse as warnings, not failures")
    p.add_argument("--namespace", default="default", help="the release namespace")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--state", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--postgres-secret", default="")
    p.add_argument("--leader-elect", action="store_true")
    p.add_argument("--watch-namespace", default="")
    p.add_argument("--data", default="pvc", help="pvc | emptyDir | existing:CLAIM")
    p.add_argument("--no-sftp", dest="sftp", action="store_false")
    p.add_argument("--sftp-port", type=int, default=22)
    p.add_argument("--sftp-service-type", default="ClusterIP")
    p.add_argument("--metrics-service", action="store_true")
    p.add_argument("--pdb", action="store_true")
    p.add_argument("--log-format", default="json")
    p.add_argument("--executor-job", action="store_true", help="rendered with executor: job")
    p.add_argument("--max-concurrent-runs", type=int, default=16)
    p.add_argument("--job-ttl", type=int, default=3600)
    p.add_argument("--job-backoff-limit", type=int, default=2)
    p.add_argument("-v", "--verbose", action="store_true", help="print every check, not only failures")
    p.add_argument("--values-docs", nargs=3, metavar=("VALUES", "SCHEMA", "README"),
                   help="check that every value is in the schema and the README's values table")
    a = p.parse_args()
    c = Checker(a.verbose)
    if a.values_docs:
        check_values_docs(*a.values_docs, c)
    schemas = {}
    crd_docs = None
    if a.crds:
        c.section(f"parse: {a.crds}")
        crd_docs = load_documents(a.crds, c)
        schemas = check_crds(crd_docs, a.crds, c)
    if a.manifests:
        c.section(f"parse: {a.manifests}")
        docs = load_documents(a.manifests, c)
        check_render(docs, a, c)
        rendered_crds = [d for _, d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
        if crd_docs is not None and rendered_crds:
            c.section("CRDs: the ones Helm installs (crds/) equal the CRD file")
            key = lambda d: d["metadata"]["name"]
            c.check(sorted(rendered_crds, key=key) == sorted((d for _, d in crd_docs), key=key),
                    "the CRDs Helm installs equal the CRD file")
    if a.custom_resources:
        if c.check(bool(schemas), "custom resources: CRD schemas loaded (--crds)"):
            c.warn_only = a.custom_resources_warn_only
            check_custom_resources(a.custom_resources, schemas, c)
            c.warn_only = False
    c.summary()
    print(f"  {plural(c.passed, 'check')} passed, {len(c.errors)} failed" + (f", {plural(len(c.warnings), 'warning')}" if c.warnings else ""))
    if c.errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
