#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/ offline, in one pass:
#   - renders every kustomization (base, overlays; components through the overlays that use
#     them) with `kubectl kustomize`, and reads the plain example manifests;
#   - validates every object against the Kubernetes API schemas (strict: unknown fields are
#     errors) of every version in K8S_VERSIONS (the supported floor and the newest), with
#     PyPI's kubernetes-validate, whose schemas ship inside the
#     package (no network once installed); VolumeSnapshotClass and ServiceMonitor against the
#     schemas in deploy/schemas/; VirtualMachine (KubeVirt) is skipped by kind, printed, and
#     cross-checked by hand instead (its claims exist and are RWX Block);
#   - checks what schemas cannot: every image has an explicit tag; every `rds-csi` container
#     arg --flag and RDS_CSI_* env var exists in `rds-csi <role> --help` of the built binary;
#     host key checking is never disabled; StorageClass parameter keys are the driver's;
#     ConfigMap/Secret/ServiceAccount/Role/Service references resolve; $(VAR) references are
#     defined; every RBAC rule carries a justifying comment; the base image tag is the crate
#     version.
#
# Usage: scripts/validate-manifests.sh [path/to/rds-csi]
#   binary: first argument, else $RDS_CSI_BIN, else target/debug/rds-csi
#   RDS_CSI_DEPLOY_DIR     the deploy/ tree to check (default: this repository's)
#   K8S_VERSIONS           Kubernetes versions whose API schemas every object must match
#                          (default "1.35 1.37": the floor deploy/README.md states, and the
#                          newest kubernetes-validate ships)
#   RDS_CSI_VALIDATE_VENV  Python venv holding kubernetes-validate, created on first use and
#                          reused (default ${CARGO_TARGET_DIR:-target}/validate-venv)
# Needs: kubectl with kustomize v5 (installs Debian's kubernetes-client when kubectl is
# missing, and says so when that one is too old), python3 with venv, and PyPI on first run.
# Exits non-zero, naming every problem, when anything is wrong or cannot be checked.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${RDS_CSI_BIN:-$ROOT/target/debug/rds-csi}}
DEPLOY=${RDS_CSI_DEPLOY_DIR:-$ROOT/deploy}
K8S_VERSIONS=${K8S_VERSIONS:-1.35 1.37}
# kubernetes-validate 1.37.0 ships the JSON schemas of Kubernetes 1.25 to 1.37 in the wheel.
KV_VERSION=1.37.0
VENV=${RDS_CSI_VALIDATE_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/validate-venv}

die() {
  echo "validate-manifests: FAILED: $*" >&2
  exit 1
}

[ -x "$BIN" ] || die "driver binary '$BIN' is missing or not executable; build it (cargo build) or pass its path as the first argument or RDS_CSI_BIN"
[ -d "$DEPLOY/kubernetes" ] || die "no kubernetes/ directory under '$DEPLOY'"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- kubectl with a kustomize that understands components and labels (v5) ---------------
if ! command -v kubectl >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "kubectl is not installed and installing Debian's kubernetes-client needs root"
  echo "kubectl not found: installing Debian's kubernetes-client package"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client; } >"$WORK/apt.log" 2>&1; then
    cat "$WORK/apt.log" >&2
    die "apt-get could not install kubernetes-client"
  fi
fi
kver=$(kubectl version --client -o json 2>/dev/null || true)
kustomize=$(printf '%s' "$kver" | sed -n 's/.*"kustomizeVersion": *"\([^"]*\)".*/\1/p' | head -n1)
kubectl_v=$(printf '%s' "$kver" | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1)
kmajor=$(printf '%s' "$kustomize" | sed -n 's/^v\([0-9]*\)\..*/\1/p')
if [ -z "$kmajor" ] || [ "$kmajor" -lt 5 ]; then
  die "kubectl ${kubectl_v:-?} at $(command -v kubectl) embeds kustomize '${kustomize:-none}'; rendering these manifests needs kustomize v5 or later (kubectl 1.27+). Debian's kubernetes-client is too old: install a current kubectl"
fi

# --- kubernetes-validate in a cached venv ------------------------------------------------
venv_ok() {
  "$VENV/bin/python" - "$KV_VERSION" $K8S_VERSIONS 2>/dev/null <<'PY'
import sys
import importlib.resources as r
from kubernetes_validate.version import __version__
want, versions = sys.argv[1], sys.argv[2:]
root = r.files("kubernetes_validate").joinpath("kubernetes-json-schema")
ok = all(root.joinpath(f"v{k}.0-local-strict").is_dir() for k in versions)
sys.exit(0 if __version__ == want and versions and ok else 1)
PY
}
if ! venv_ok; then
  command -v python3 >/dev/null 2>&1 || die "python3 is needed for kubernetes-validate"
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if ! venv_ok; then
    echo "creating $VENV with kubernetes-validate==$KV_VERSION (first run)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1 || { cat "$WORK/venv.log" >&2; die "python3 -m venv failed"; }
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "kubernetes-validate==$KV_VERSION" >"$WORK/pip.log" 2>&1; then
      cat "$WORK/pip.log" >&2
      rm -rf "$VENV"
      die "pip install kubernetes-validate==$KV_VERSION failed (is PyPI reachable?); the manifests cannot be validated without it"
    fi
    venv_ok || die "kubernetes-validate==$KV_VERSION installed but ships no schemas for one of Kubernetes $K8S_VERSIONS"
  fi
  exec 9>&-
fi

# --- render -------------------------------------------------------------------------------
mkdir -p "$WORK/rendered"
sources=()
components=()
while IFS= read -r k; do
  dir=$(dirname "$k")
  rel=${dir#"$DEPLOY"/}
  if grep -Eq '^kind:[[:space:]]*Component[[:space:]]*$' "$k"; then
    components+=("$rel")
    continue
  fi
  out="$WORK/rendered/$(printf '%s' "$rel" | tr '/' '_').yaml"
  if ! kubectl kustomize "$dir" >"$out" 2>"$WORK/kustomize.err"; then
    cat "$WORK/kustomize.err" >&2
    die "kubectl kustomize $rel failed"
  fi
  echo "rendered $rel ($(grep -c '^kind:' "$out") objects)"
  case "$rel" in
    */base | base) sources+=("base=$rel=$out") ;;
    *) sources+=("overlay=$rel=$out") ;;
  esac
done < <(find "$DEPLOY/kubernetes" \( -name kustomization.yaml -o -name kustomization.yml -o -name Kustomization \) | sort)
# Plain manifests (the examples): every YAML file in a directory without a kustomization.
while IFS= read -r f; do
  d=$(dirname "$f")
  [ -e "$d/kustomization.yaml" ] || [ -e "$d/kustomization.yml" ] || [ -e "$d/Kustomization" ] && continue
  sources+=("plain=${f#"$DEPLOY"/}=$f")
done < <(find "$DEPLOY/kubernetes" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)

# --- the binary's flags --------------------------------------------------------------------
for role in controller node; do
  "$BIN" "$role" --help >"$WORK/help-$role.txt" 2>&1 || die "'$BIN $role --help' failed: $(cat "$WORK/help-$role.txt")"
done

# --- validate ------------------------------------------------------------------------------
cat >"$WORK/validate.py" <<'PY'
import json
import os
import re
import sys
import tomllib
from pathlib import Path

import importlib.resources as resources
import jsonschema
import yaml
from referencing import Registry, Resource
from kubernetes_validate import utils as kv
from kubernetes_validate.version import __version__ as kv_version

cfg = json.load(open(sys.argv[1]))
deploy = Path(cfg["deploy"])
versions = cfg["k8s_versions"]
# The floor: the local CRD schemas resolve their Kubernetes references against it.
k8s = versions[0]
errors = {}
infos = []


def err(where, msg):
    # The same mistake in the base shows up in every overlay: report it once, naming them all.
    if msg not in errors:
        errors[msg] = []
    if where not in errors[msg]:
        errors[msg].append(where)


DRIVER_IMAGE = "rds-csi"
NAMESPACE = "rds-csi"
SC_KEYS = {"volumePath", "nvmeAddress", "nvmePort", "ctrlLossTmo", "reconnectDelay",
           "keepAliveTmo", "migrationTimeoutSeconds", "fsType"}
FS_TYPES = {"ext4", "xfs"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver", "StorageClass",
                  "VolumeSnapshotClass", "PriorityClass", "CustomResourceDefinition"}
# CRD kinds with a schema we ship (deploy/schemas/<kind>-<group>-<version>.json) ...
LOCAL = {}
for f in sorted((deploy / "schemas").glob("*.json")):
    s = json.load(open(f))
    LOCAL[(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"])] = (f.name, s)
# ... and CRD kinds skipped by kind (too large to hand-write; cross-checked below instead).
SKIP = {("kubevirt.io/v1", "VirtualMachine"): "KubeVirt CRD schema not shipped; its claims are cross-checked instead"}

# The role's flags and env vars, from `rds-csi <role> --help`.
FLAGS, ENVS = {}, {}
for role in ("controller", "node"):
    text = open(cfg["help"][role]).read()
    flags = {}
    for m in re.finditer(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)( <[A-Z_]+>)?", text, re.M):
        flags[m.group(1)] = bool(m.group(2))
    if "rds-insecure-skip-host-key-check" not in flags and role == "controller":
        err(cfg["help"][role], "help output lists no --rds-insecure-skip-host-key-check: not the rds-csi binary?")
    FLAGS[role] = flags
    ENVS[role] = set(re.findall(r"\[env: (RDS_CSI_[A-Z0-9_]+)=", text))
    if not flags or not ENVS[role]:
        err(cfg["help"][role], f"could not read any flag or env var from `rds-csi {role} --help`")

# kubernetes-validate's packaged schemas (read from the installed wheel, never the network).
schema_root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
defs_file = schema_root.joinpath(f"v{k8s}.0-local-strict", "_definitions.json")
definitions = json.loads(defs_file.read_text())
registry = Resource.from_contents(definitions) @ Registry()

crate_version = tomllib.load(open(cfg["cargo_toml"], "rb"))["package"]["version"]

validated, skipped = {}, {}


def load(path):
    docs = []
    with open(path) as fh:
        for d in yaml.safe_load_all(fh):
            if d:
                docs.append(d)
    return docs


def name_of(o):
    md = o.get("metadata") or {}
    ns = md.get("namespace")
    return f"{o.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def pod_spec(o):
    k = o.get("kind")
    spec = o.get("spec") or {}
    if k == "Pod":
        return spec
    if k in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    if k == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def containers(ps):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in ps.get(key) or []:
            yield c


def image_repo_tag(image):
    if "@" in image:
        return image.split("@", 1)[0], "@digest"
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, None


def schema_check(where, o):
    key = (o.get("apiVersion"), o.get("kind"))
    if not all(key):
        err(where, "object without apiVersion/kind")
        return
    if key in SKIP:
        skipped.setdefault(key, 0)
        skipped[key] += 1
        return
    if key in LOCAL:
        fname, schema = LOCAL[key]
        v = jsonschema.Draft202012Validator(schema, registry=registry)
        problems = sorted(v.iter_errors(o), key=lambda e: list(e.path))
        for e in problems:
            err(where, f"{name_of(o)} does not match deploy/schemas/{fname} at "
                       f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
    else:
        failed = False
        for version in versions:
            try:
                kv.validate(o, version, strict=True)
            except kv.ValidationError as e:
                err(where, f"{name_of(o)} does not match the Kubernetes {version} schema at "
                           f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
                failed = True
            except kv.SchemaNotFoundError:
                err(where, f"{name_of(o)}: no schema for {key[1]} ({key[0]}) in Kubernetes {version}; "
                           "ship one in deploy/schemas/ or list the kind as skipped in this script")
                failed = True
        if failed:
            return
    validated.setdefault(key, 0)
    validated[key] += 1


VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_checks(where, o, c, driver_names):
    cname = f"{name_of(o)} container {c.get('name')}"
    image = c.get("image") or ""
    repo, tag = image_repo_tag(image)
    if not image:
        err(where, f"{cname}: no image")
    elif tag is None or tag == "latest":
        err(where, f"{cname}: image {image!r} has no explicit tag")
    env = c.get("env") or []
    defined = []
    for e in env:
        for ref in VAR_REF.findall(str(e.get("value", ""))):
            if ref not in defined:
                err(where, f"{cname}: env {e.get('name')} uses $({ref}), which is not defined before it")
        defined.append(e.get("name"))
    for a in (c.get("command") or []) + (c.get("args") or []):
        for ref in VAR_REF.findall(str(a)):
            if ref not in defined:
                err(where, f"{cname}: argument {a!r} uses $({ref}), which this container does not define")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        hg = (c.get(probe) or {}).get("httpGet")
        if hg and isinstance(hg.get("port"), str) and hg["port"] not in ports:
            err(where, f"{cname}: {probe} targets port {hg['port']!r}, which the container does not declare")

    if repo.rsplit("/", 1)[-1] != DRIVER_IMAGE:
        return
    # The driver itself.
    if c.get("command") not in (None, ["/usr/local/bin/rds-csi"]):
        err(where, f"{cname}: command must be left to the image's entrypoint (/usr/local/bin/rds-csi)")
    args = c.get("args") or []
    role = args[0] if args else None
    if role not in FLAGS:
        err(where, f"{cname}: first argument must be the role (controller or node), got {role!r}")
        return
    flags = FLAGS[role]
    seen = {}
    for a in args[1:]:
        if not a.startswith("--"):
            err(where, f"{cname}: argument {a!r} is not a --flag (pass values as --flag=value)")
            continue
        flag, has_value, value = a[2:].partition("=")
        if flag not in flags:
            err(where, f"{cname}: --{flag} is not a flag of `rds-csi {role}` (see `rds-csi {role} --help`)")
            continue
        if flags[flag] and not has_value:
            err(where, f"{cname}: --{flag} takes a value; write --{flag}=<value>")
        if not flags[flag] and has_value:
            err(where, f"{cname}: --{flag} is a switch and takes no value")
        seen[flag] = value
    for e in env:
        n = e.get("name", "")
        if n.startswith("RDS_CSI_"):
            if n not in ENVS[role]:
                err(where, f"{cname}: env {n} is not read by `rds-csi {role}` (see `rds-csi {role} --help`)")
            seen.setdefault(n[len("RDS_CSI_"):].lower().replace("_", "-"), e.get("value", "<from ref>"))
    for ef in c.get("envFrom") or []:
        err(where, f"{cname}: envFrom hides which RDS_CSI_* variables reach the driver; list env entries")
    if "rds-insecure-skip-host-key-check" in seen:
        err(where, f"{cname}: host key verification must stay on in every manifest (remove --rds-insecure-skip-host-key-check / RDS_CSI_RDS_INSECURE_SKIP_HOST_KEY_CHECK)")
    if role == "controller":
        for need in ("rds-address", "rds-user", "rds-key-file", "rds-host-key", "volume-base-path"):
            if need not in seen:
                err(where, f"{cname}: the controller needs --{need} (or RDS_CSI_{need.upper().replace('-', '_')})")
    if role == "node" and "node-id" not in seen:
        err(where, f"{cname}: the node plugin needs --node-id")
    ps = pod_spec(o) or {}
    if role == "node" and ps.get("hostPID") is not True:
        err(where, f"{name_of(o)}: the node plugin needs hostPID: true (the holder scan must see every process on the host, or unstage could disconnect a device a host process still uses)")
    if role == "controller" and o.get("kind") == "Deployment":
        spec = o.get("spec") or {}
        # More than one controller pod at a time (replicas, or a rolling update) is safe only
        # when the driver follows the external-attacher's Lease and every sidecar elects a
        # leader: then one table answers attachments (deploy/README.md).
        several = spec.get("replicas", 1) != 1 or (spec.get("strategy") or {}).get("type") != "Recreate"
        if several:
            if "leader-election" not in seen or str(seen["leader-election"]).lower() == "false":
                err(where, f"{name_of(o)}: replicas: {spec.get('replicas', 1)} / strategy {(spec.get('strategy') or {}).get('type', 'RollingUpdate')} needs --leader-election on the rds-csi container: two attachment tables would fence at once")
            for sc in (ps.get("containers") or []):
                if sc.get("name", "").startswith("csi-") and "--leader-election" not in (sc.get("args") or []):
                    err(where, f"{name_of(o)}: replicas: {spec.get('replicas', 1)} needs --leader-election on sidecar {sc.get('name')}")
    name = seen.get("driver-name", "rds.csi.mikrotik.com")
    driver_names.add(name)
    maddr = seen.get("metrics-address")
    if maddr:
        port = int(maddr.rsplit(":", 1)[1])
        if port not in ports.values():
            err(where, f"{cname}: --metrics-address={maddr} but no containerPort {port}")
    return repo, tag


def resolve_refs(where, objs, strict):
    """ConfigMap/Secret/ServiceAccount/RBAC/Service references inside one rendered set."""
    by_kind = {}
    for o in objs:
        md = o.get("metadata") or {}
        by_kind.setdefault(o.get("kind"), {})[(md.get("namespace"), md.get("name"))] = o
    missing = []

    def need(kind, ns, name, key=None, optional=False, what=""):
        target = by_kind.get(kind, {}).get((ns, name))
        if target is None:
            if not optional:
                missing.append(f"{what}: {kind} {ns}/{name} is not in this render")
            return
        if key is not None:
            data = dict(target.get("data") or {})
            data.update(target.get("stringData") or {})
            data.update(target.get("binaryData") or {})
            if key not in data and not optional:
                missing.append(f"{what}: {kind} {ns}/{name} has no key {key!r}")

    for o in objs:
        ps = pod_spec(o)
        ns = (o.get("metadata") or {}).get("namespace")
        if ps is not None:
            sa = ps.get("serviceAccountName")
            if sa:
                need("ServiceAccount", ns, sa, what=name_of(o))
            for v in ps.get("volumes") or []:
                if "secret" in v:
                    need("Secret", ns, v["secret"].get("secretName"), optional=v["secret"].get("optional", False), what=f"{name_of(o)} volume {v['name']}")
                if "configMap" in v:
                    need("ConfigMap", ns, v["configMap"].get("name"), optional=v["configMap"].get("optional", False), what=f"{name_of(o)} volume {v['name']}")
            for c in containers(ps):
                for e in c.get("env") or []:
                    vf = e.get("valueFrom") or {}
                    if "configMapKeyRef" in vf:
                        r = vf["configMapKeyRef"]
                        need("ConfigMap", ns, r.get("name"), r.get("key"), r.get("optional", False), f"{name_of(o)} env {e['name']}")
                    if "secretKeyRef" in vf:
                        r = vf["secretKeyRef"]
                        need("Secret", ns, r.get("name"), r.get("key"), r.get("optional", False), f"{name_of(o)} env {e['name']}")
                for ef in c.get("envFrom") or []:
                    for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if field in ef:
                            need(kind, ns, ef[field].get("name"), optional=ef[field].get("optional", False), what=f"{name_of(o)} envFrom")
        if o.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            rr = o.get("roleRef") or {}
            need(rr.get("kind"), ns if rr.get("kind") == "Role" else None, rr.get("name"), what=name_of(o))
            for s in o.get("subjects") or []:
                if s.get("kind") == "ServiceAccount":
                    need("ServiceAccount", s.get("namespace") or ns, s.get("name"), what=name_of(o))
        if o.get("kind") == "Service":
            sel = (o.get("spec") or {}).get("selector") or {}
            pods = [w for w in objs if pod_spec(w) is not None and (w.get("metadata") or {}).get("namespace") == ns
                    and sel.items() <= (((w.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}).items()]
            if sel and not pods:
                missing.append(f"{name_of(o)}: selector {sel} matches no workload in this render")
            for p in (o.get("spec") or {}).get("ports") or []:
                tp = p.get("targetPort")
                if isinstance(tp, str) and pods and not any(
                        tp == cp.get("name") for w in pods for c in containers(pod_spec(w)) for cp in c.get("ports") or []):
                    missing.append(f"{name_of(o)}: targetPort {tp!r} is not a container port of the selected pods")
        if o.get("kind") == "ServiceMonitor":
            sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            svcs = [s for s in by_kind.get("Service", {}).values()
                    if (s["metadata"].get("namespace") == ns and sel.items() <= (s["metadata"].get("labels") or {}).items())]
            if not svcs:
                missing.append(f"{name_of(o)}: selector {sel} matches no Service in this render")
            for ep in (o.get("spec") or {}).get("endpoints") or []:
                if ep.get("port") and svcs and not any(ep["port"] == p.get("name") for s in svcs for p in s["spec"].get("ports") or []):
                    missing.append(f"{name_of(o)}: endpoint port {ep['port']!r} is not a port of the selected Services")
    for m in missing:
        if strict:
            err(where, m)
        else:
            infos.append(f"{where}: needs an overlay: {m}")


def rbac_comment_check():
    for f in sorted((deploy / "kubernetes").rglob("*.yaml")):
        lines = f.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\s*- apiGroups:", line):
                prev = next((l for l in reversed(lines[:i]) if l.strip()), "")
                if not prev.strip().startswith("#"):
                    err(str(f.relative_to(deploy)), f"line {i + 1}: RBAC rule without a comment justifying its verbs")


base_storage_classes = set()
csidriver_names = set()
for kind_of_source, rel, path in cfg["sources"]:
    objs = load(path)
    if not objs:
        err(rel, "renders no object")
        continue
    driver_names = set()
    csidrivers = {o["metadata"]["name"] for o in objs if o.get("kind") == "CSIDriver"}
    csidriver_names |= csidrivers
    for o in objs:
        schema_check(rel, o)
        md = o.get("metadata") or {}
        kind = o.get("kind")
        if kind_of_source == "plain":
            if md.get("namespace"):
                err(rel, f"{name_of(o)}: examples leave the namespace to `kubectl apply -n`")
        elif kind in CLUSTER_SCOPED:
            if md.get("namespace"):
                err(rel, f"{name_of(o)}: {kind} is cluster-scoped and must not carry a namespace")
        elif md.get("namespace") != NAMESPACE:
            err(rel, f"{name_of(o)}: namespaced object outside namespace {NAMESPACE}")
        ps = pod_spec(o)
        if ps is not None:
            for c in containers(ps):
                r = container_checks(rel, o, c, driver_names)
                if r and kind_of_source == "base" and r[1] != crate_version:
                    err(rel, f"{name_of(o)}: driver image tag {r[1]!r} differs from the crate version {crate_version!r} (Cargo.toml)")
        if kind == "StorageClass":
            if kind_of_source == "base":
                base_storage_classes.add(md.get("name"))
            if csidrivers and o.get("provisioner") not in csidrivers:
                err(rel, f"{name_of(o)}: provisioner {o.get('provisioner')!r} is not the CSIDriver {sorted(csidrivers)}")
            params = o.get("parameters") or {}
            for k, v in params.items():
                if k not in SC_KEYS and not k.startswith("csi.storage.k8s.io/"):
                    err(rel, f"{name_of(o)}: parameter {k!r} is not one the driver reads ({', '.join(sorted(SC_KEYS))}, csi.storage.k8s.io/*)")
            fs = [params[k] for k in ("fsType", "csi.storage.k8s.io/fstype") if k in params]
            for v in fs:
                if v not in FS_TYPES:
                    err(rel, f"{name_of(o)}: filesystem {v!r} is not ext4 or xfs")
            if len(set(fs)) > 1:
                err(rel, f"{name_of(o)}: fsType and csi.storage.k8s.io/fstype disagree ({fs})")
            mt = params.get("migrationTimeoutSeconds")
            if mt is not None and not (str(mt).isdigit() and 30 <= int(mt) <= 3600):
                err(rel, f"{name_of(o)}: migrationTimeoutSeconds={mt!r} is outside 30-3600 (the driver refuses it)")
        if kind == "VolumeSnapshotClass" and csidrivers and o.get("driver") not in csidrivers:
            err(rel, f"{name_of(o)}: driver {o.get('driver')!r} is not the CSIDriver {sorted(csidrivers)}")
    if csidrivers and driver_names - csidrivers:
        err(rel, f"the driver runs as {sorted(driver_names)} but the CSIDriver is {sorted(csidrivers)}")
    if kind_of_source != "plain":
        resolve_refs(rel, objs, strict=(kind_of_source == "overlay"))
    else:
        # Examples: claims use the base's classes; RWX only as Block; volumes name claims that
        # exist in the same file; a live-migrating VM's disks are RWX Block.
        pvcs = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "PersistentVolumeClaim"}
        for n, p in pvcs.items():
            spec = p.get("spec") or {}
            if spec.get("storageClassName") not in base_storage_classes:
                err(rel, f"PersistentVolumeClaim/{n}: storageClassName {spec.get('storageClassName')!r} is not a StorageClass of the base ({sorted(base_storage_classes)})")
            if "ReadWriteMany" in (spec.get("accessModes") or []) and spec.get("volumeMode") != "Block":
                err(rel, f"PersistentVolumeClaim/{n}: ReadWriteMany is accepted for volumeMode: Block only")
        for o in objs:
            claims = []
            if o.get("kind") == "VirtualMachine":
                tspec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
                for v in tspec.get("volumes") or []:
                    if "persistentVolumeClaim" in v:
                        claims.append(v["persistentVolumeClaim"].get("claimName"))
                    if "dataVolume" in v:
                        err(rel, f"{name_of(o)}: dataVolume volumes are not cross-checked; use a claim or extend this script")
                if tspec.get("evictionStrategy") == "LiveMigrate":
                    for cl in claims:
                        spec = (pvcs.get(cl) or {}).get("spec") or {}
                        if "ReadWriteMany" not in (spec.get("accessModes") or []) or spec.get("volumeMode") != "Block":
                            err(rel, f"{name_of(o)}: live migration needs claim {cl!r} to be ReadWriteMany with volumeMode: Block")
            elif pod_spec(o) is not None:
                claims = [v["persistentVolumeClaim"].get("claimName") for v in pod_spec(o).get("volumes") or [] if "persistentVolumeClaim" in v]
            for cl in claims:
                if cl not in pvcs:
                    err(rel, f"{name_of(o)}: claim {cl!r} is not defined in {rel}")

for comp in cfg["components"]:
    users = [k for k in (deploy / "kubernetes").rglob("kustomization.yaml")
             if re.search(r"^\s*-\s*\S*" + re.escape(Path(comp).name) + r"/?\s*$", k.read_text(), re.M)
             and k.parent != deploy / comp]
    if not users:
        err(comp, "component is not used by any overlay, so it is never rendered or validated")
rbac_comment_check()

print(f"kubernetes-validate {kv_version}, Kubernetes {', '.join(versions)} schemas (strict), from the installed package")
for (api, kind), n in sorted(validated.items(), key=lambda x: (x[0][1], x[0][0])):
    how = f"deploy/schemas/{LOCAL[(api, kind)][0]}" if (api, kind) in LOCAL else f"Kubernetes {' and '.join(versions)}"
    print(f"  validated {n:3d} x {kind} ({api}) against {how}")
for (api, kind), n in sorted(skipped.items()):
    print(f"  SKIPPED   {n:3d} x {kind} ({api}): {SKIP[(api, kind)]}")
for i in infos:
    print(f"  note: {i}")
if errors:
    print(f"\n{len(errors)} problem(s):")
    for msg, where in errors.items():
        print(f"  ERROR [{', '.join(where)}] {msg}")
    sys.exit(1)
total = sum(validated.values())
print(f"deploy manifests OK: {total} objects validated, {sum(skipped.values())} skipped by kind, "
      f"{len(cfg['sources'])} sources")
PY

"$VENV/bin/python" - "$WORK/config.json" "$DEPLOY" "$K8S_VERSIONS" "$ROOT/Cargo.toml" "$WORK" "${components[@]+"${components[@]}"}" -- "${sources[@]}" <<'PY'
import json, sys
out, deploy, k8s, cargo, work = sys.argv[1:6]
rest = sys.argv[6:]
sep = rest.index("--")
components, sources = rest[:sep], [s.split("=", 2) for s in rest[sep + 1:]]
json.dump({"deploy": deploy, "k8s_versions": k8s.split(), "cargo_toml": cargo, "components": components,
           "sources": sources,
           "help": {r: f"{work}/help-{r}.txt" for r in ("controller", "node")}}, open(out, "w"))
PY
"$VENV/bin/python" "$WORK/validate.py" "$WORK/config.json" || die "see the problems above"
