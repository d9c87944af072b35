#!/usr/bin/env python3
"""Checks that the harness gives a working cluster (run by hand; not collected by pytest).

    python3 tests/cluster/smoke.py [--workdir DIR] [--services]

Starts the cluster, then: nodes Ready; a 2-replica Deployment becomes Available
with Ready pods; deleting it lets the garbage collector remove its ReplicaSet
and pods; a ServiceAccount token is issued and authenticates; RBAC denies a
user without bindings; the API server restarts with etcd kept and the
controllers go on. With --services: helm, promtool/prometheus and jaeger too.
"""

import argparse
import json
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Cluster, bin_dir, ensure_built  # noqa: E402

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(name)s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      containers: [{name: main, image: "example.invalid/never-pulled:1"}]
"""


def step(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def until(cond, timeout=60, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def deployment_cycle(c: Cluster, name: str):
    t = time.monotonic()
    c.kubectl("apply", "-f", "-", input=DEPLOYMENT % {"name": name})
    c.kubectl("wait", f"deployment/{name}", "--for=condition=Available", "--timeout=60s")
    pods = json.loads(c.kubectl("get", "pods", "-l", f"app={name}", "-o", "json").stdout)["items"]
    ready = [p["metadata"]["name"] for p in pods
             if any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions", []))]
    assert len(ready) == 2, pods
    nodes = sorted(p["spec"]["nodeName"] for p in pods)
    step(f"deployment {name} Available in {time.monotonic() - t:.1f}s, Ready pods {ready} on {nodes}")
    rs = c.kubectl("get", "rs", "-l", f"app={name}", "-o", "name").stdout.split()
    assert len(rs) == 1, rs
    t = time.monotonic()
    c.kubectl("delete", "deployment", name, "--wait=true")
    until(lambda: not c.kubectl("get", "rs,pods", "-l", f"app={name}", "-o", "name").stdout.strip(),
          60, "garbage collection")
    step(f"deleted {name}: garbage collector removed {rs[0]} and its pods in {time.monotonic() - t:.1f}s")


def check_cluster(workdir: Path):
    with Cluster(workdir) as c:
        step(f"cluster up in {c.started_in:.1f}s at {c.server}")
        step(c.kubectl("get", "nodes").stdout.rstrip())
        deployment_cycle(c, "web")

        token = c.kubectl("create", "token", "default", "--duration=10m").stdout.strip()
        ctx = ssl.create_default_context(cafile=str(c.ca_file))  # no client certificate: the token only
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        req = urllib.request.Request(c.server + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                     data=json.dumps(review).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            user = json.loads(r.read())["status"]["userInfo"]["username"]
        assert user == "system:serviceaccount:default:default", user
        step(f"ServiceAccount token issued and accepted: {user}")

        alice = c.user_kubeconfig("alice", ["testers"])
        r = subprocess.run([c.kubectl_bin, "--kubeconfig", str(alice), "get", "pods"], capture_output=True, text=True)
        assert r.returncode != 0 and "forbidden" in r.stderr, r
        step("RBAC: user alice without bindings is forbidden to list pods")

        c.kubectl("create", "configmap", "kept", "--from-literal=a=b")
        t = time.monotonic()
        c.restart_apiserver()
        step(f"kube-apiserver restarted (SIGTERM) in {time.monotonic() - t:.1f}s")
        t = time.monotonic()
        c.restart_apiserver(graceful=False)
        step(f"kube-apiserver restarted (SIGKILL) in {time.monotonic() - t:.1f}s")
        assert c.kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.a}").stdout == "b"
        step("etcd kept the data: configmap/kept is still there")
        c.wait_nodes_ready()
        deployment_cycle(c, "after-restart")
        helm = bin_dir("helm") / "helm"
        if helm.exists():
            chart = workdir / "chart"
            subprocess.run([str(helm), "create", str(chart)], check=True, capture_output=True)
            r = subprocess.run([str(helm), "install", "demo", str(chart), "--kubeconfig", str(c.kubeconfig),
                                "--wait", "--timeout", "60s", "--set", "replicaCount=2"],
                               capture_output=True, text=True, env={**c.env(), "HOME": str(workdir)})
            assert r.returncode == 0, r.stderr
            step("helm install of a scratch chart: " + c.kubectl("get", "deploy", "demo-chart", "--no-headers").stdout.strip())
            subprocess.run([str(helm), "uninstall", "demo", "--kubeconfig", str(c.kubeconfig), "--wait"],
                           check=True, capture_output=True, env={**c.env(), "HOME": str(workdir)})
        c.check()
        step(f"all components still running; logs in {c.logs_dir}")


def check_services(workdir: Path):
    from services import Jaeger, Prometheus

    bins = ensure_built(["helm", "prometheus", "jaeger"])
    out = subprocess.run([str(bins["helm"] / "helm"), "version"], capture_output=True, text=True, check=True)
    step(f"helm version: {out.stdout.strip()}")
    out = subprocess.run([str(bins["prometheus"] / "promtool"), "--version"], capture_output=True, text=True, check=True)
    step(f"promtool --version: {out.stdout.splitlines()[0]}")

    p = Prometheus(workdir / "prometheus")
    p.scrape_targets = [f"127.0.0.1:{p.port}"]  # itself: a target on loopback
    with p:
        info = p.api("/api/v1/status/buildinfo")["data"]
        step(f"prometheus buildinfo: version {info['version']} revision {info['revision']} go {info['goVersion']}")
        until(lambda: p.query("up")["result"], 30, "first scrape")
        step(f"prometheus scraped itself: up = {p.query('up')['result'][0]['value'][1]}")

    with Jaeger(workdir / "jaeger") as j:
        now = time.time_ns()
        span = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "idn-smoke"}}]},
            "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                       "name": "smoke", "kind": 1, "startTimeUnixNano": str(now - 1_000_000),
                                       "endTimeUnixNano": str(now)}]}]}]}
        req = urllib.request.Request(j.otlp_http + "/v1/traces", data=json.dumps(span).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        until(lambda: "idn-smoke" in (j.api("/api/services").get("data") or []), 30, "span in jaeger")
        traces = j.api("/api/traces", service="idn-smoke")["data"]
        step(f"jaeger: OTLP/HTTP span stored; query API lists services {j.api('/api/services')['data']}, "
             f"{len(traces)} trace(s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir")
    ap.add_argument("--services", action="store_true", help="also check helm, prometheus, jaeger")
    ap.add_argument("--only-services", action="store_true")
    a = ap.parse_args()
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="idn-smoke-"))
    if not a.only_services:
        check_cluster(workdir / "cluster")
    if a.services or a.only_services:
        check_services(workdir / "services")
    print("smoke: all checks passed")


if __name__ == "__main__":
    main()
