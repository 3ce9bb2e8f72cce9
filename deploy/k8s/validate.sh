#!/usr/bin/env bash
# Renders deploy/k8s/base with `kubectl kustomize`, validates every object against the
# Kubernetes schemas (PyPI kubernetes-validate, --strict: unknown fields are errors), checks that
# the StatefulSet, its Services and the broker.conf agree (ports, replicas, the peer Service),
# and renders each pod's broker.conf with the real entrypoint, which `mqbroker -p` must accept
# with that pod's dLegerSelfId and the three peers. `.ci/run` runs it.
#
# Environment: RAFTMQ_BIN (mqbroker; default target/release), K8S_WORK (default target/k8s),
# K8S_VERSION (schemas; default 1.32.0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
WORK=${K8S_WORK:-$ROOT/target/k8s}
VERSION=${K8S_VERSION:-1.32.0}
mkdir -p "$WORK"

command -v kubectl >/dev/null || { echo "k8s: kubectl is missing" >&2; exit 1; }
if [ ! -x "$WORK/venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q kubernetes-validate==1.34.1
fi

echo "== kubectl kustomize deploy/k8s/base"
kubectl kustomize deploy/k8s/base >"$WORK/base.yaml"
echo "== kubernetes-validate --strict -k $VERSION"
"$WORK/venv/bin/kubernetes-validate" --strict --quiet -k "$VERSION" "$WORK/base.yaml"

echo "== the objects agree, and each pod's broker.conf"
"$WORK/venv/bin/python" - "$WORK" "$BIN/mqbroker" <<'PY'
import os, subprocess, sys, yaml
work, mqbroker = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(f"{work}/base.yaml")) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
def fail(msg):
    print(f"k8s: {msg}", file=sys.stderr); sys.exit(1)
sts = by[("StatefulSet", "raftmq-broker")]
spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
conf = by[("ConfigMap", "raftmq-broker-conf")]["data"]["broker.conf"]
keys = dict(l.split("=", 1) for l in (x.replace(" ", "") for x in conf.splitlines()) if "=" in l and not l.startswith("#"))
peers = by[("Service", "raftmq-broker-peers")]["spec"]
checks = {
    "serviceName is the peer Service": spec["serviceName"] == env["PEER_SERVICE"] == "raftmq-broker-peers",
    "the peer Service is headless and publishes not-ready pods": peers.get("clusterIP") == "None" and peers.get("publishNotReadyAddresses") is True,
    "REPLICAS is the set's replicas": int(env["REPLICAS"]) == spec["replicas"],
    "pods start in parallel": spec.get("podManagementPolicy") == "Parallel",
    "listenPort is the client port": int(keys["listenPort"]) == ports["client"],
    "metricsPromExporterPort is the http port": keys.get("metricsExporterType") == "PROM" and int(keys["metricsPromExporterPort"]) == ports["http"],
    "RAFT_PORT is the raft port": int(env["RAFT_PORT"]) == ports["raft"] and peers["ports"][0]["targetPort"] in ("raft", ports["raft"]),
    "probes: ready and live on http": c["readinessProbe"]["httpGet"]["path"] == "/health/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health/live",
    "the data volume holds storePathRootDir": keys["storePathRootDir"].startswith(next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")),
    "a PodDisruptionBudget of one": by[("PodDisruptionBudget", "raftmq-broker")]["spec"]["maxUnavailable"] == 1,
}
for name, ok in checks.items():
    print(f"  {'ok ' if ok else 'BAD'} {name}")
if not all(checks.values()):
    fail("the objects disagree")
base = f"{work}/broker.conf"
open(base, "w").write(conf)
for i in range(spec["replicas"]):
    out = f"{work}/broker-{i}.conf"
    e = dict(os.environ, POD_NAME=f"raftmq-broker-{i}", POD_NAMESPACE="mq", POD_IP=f"10.1.0.{i + 10}",
             PEER_SERVICE=env["PEER_SERVICE"], REPLICAS=env["REPLICAS"], RAFT_PORT=env["RAFT_PORT"],
             BASE_CONF=base, CONF_OUT=out, RENDER_ONLY="1")
    subprocess.run(["deploy/docker/broker-entrypoint.sh"], env=e, check=True, stdout=subprocess.DEVNULL)
    p = subprocess.run([mqbroker, "-c", out, "-p"], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"mqbroker -p refused the conf of pod {i}:\n{p.stderr}")
    if "unknown key" in p.stderr:
        fail(f"mqbroker does not know a key of pod {i}'s conf:\n{p.stderr}")
    printed = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    want_peers = ";".join(f"n{k}-raftmq-broker-{k}.raftmq-broker-peers.mq.svc.cluster.local:{env['RAFT_PORT']}" for k in range(spec["replicas"]))
    got = (printed.get("dLegerSelfId"), printed.get("dLegerPeers"), printed.get("brokerIP1"), printed.get("listenPort"), printed.get("metricsExporterType"))
    want = (f"n{i}", want_peers, f"10.1.0.{i + 10}", keys["listenPort"], "PROM")
    if got != want:
        fail(f"pod {i}: mqbroker -p prints {got}, expected {want}")
    print(f"  ok  pod raftmq-broker-{i}: dLegerSelfId={got[0]}, brokerIP1={got[2]}, 3 peers")
bad = subprocess.run(["deploy/docker/broker-entrypoint.sh"], env=dict(os.environ, POD_NAME="raftmq-broker", POD_NAMESPACE="mq",
                     PEER_SERVICE="p", REPLICAS="3", BASE_CONF=base, RENDER_ONLY="1"), capture_output=True, text=True)
if bad.returncode == 0 or "ordinal" not in bad.stderr:
    fail(f"a pod name without an ordinal was not refused: {bad.stderr}")
print("  ok  a pod name without an ordinal is refused, naming it")
PY
echo "k8s: deploy/k8s/base renders, validates and agrees"
