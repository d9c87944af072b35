"""kubectl on one kubeconfig and namespace, and polling with a deadline: what every module of
the end-to-end suite uses to act on the cluster and wait for the operator."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any, Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from cluster import _child_setup, free_port  # noqa: E402,F401  (free_port: for the modules)
TIMEOUT = float(os.environ.get("IDN_E2E_TIMEOUT") or 90)

NETWORK = "inferencedeliverynetworks.idn.dev"
STRATEGY = "deliverystrategies.idn.dev"
PLACEMENT = "modelplacements.idn.dev"
DEPLOYMENT = "deployments.apps"
REPLICASET = "replicasets.apps"
# The pod template annotation the operator sets to the hash of a node's rendered config: it
# changes exactly when the node must roll.
HASH = "idn.dev/config-hash"


class Kube:
    """kubectl on one kubeconfig and namespace; `process` and `log` are the operator under test,
    whose exit ends every wait and whose log tail is appended to every failure."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str):
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.log: pathlib.Path | None = None
        self.process: subprocess.Popen | None = None

    def run(self, *args: str, input: str | None = None, check: bool = True, namespaced: bool = True) -> str:
        done = self.call(*args, input=input, namespaced=namespaced)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def call(self, *args: str, input: str | None = None, namespaced: bool = True) -> subprocess.CompletedProcess:
        command = ["kubectl", f"--kubeconfig={self.kubeconfig}", *(["-n", self.namespace] if namespaced else []), *args]
        return subprocess.run(command, input=input, capture_output=True, text=True, timeout=60)

    def get(self, kind: str, name: str) -> dict | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, *args: str) -> list[dict]:
        return json.loads(self.run("get", kind, "-o", "json", *args))["items"]

    def apply(self, *objects: dict) -> None:
        self.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def patch(self, kind: str, name: str, patch: Any, type_: str = "merge", subresource: str | None = None) -> None:
        extra = [f"--subresource={subresource}"] if subresource else []
        self.run("patch", kind, name, f"--type={type_}", "-p", json.dumps(patch), *extra)

    def create_namespace(self) -> None:
        self.apply_cluster({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})

    def apply_cluster(self, obj: dict) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj), namespaced=False)

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))  # colours
        return "\n--- operator log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


def wait_for(what: str, probe: Callable[[], Any], kube: Kube, timeout: float = TIMEOUT, interval: float = 0.3) -> Any:
    """Polls `probe` until it returns something truthy; fails with the last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except AssertionError as error:  # a kubectl failure: keep trying until the deadline
            last = error
        if kube.process is not None and kube.process.poll() is not None:
            raise AssertionError(f"the operator exited ({kube.process.returncode}) while waiting for {what}"
                                 f"{kube.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}{kube.log_tail()}")
        time.sleep(interval)


def condition(network: dict | None, type_: str) -> dict:
    for c in ((network or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def still_running(kube: Kube) -> None:
    assert kube.process.poll() is None, f"the operator exited with {kube.process.returncode}{kube.log_tail()}"


def install_crds(kube: Kube) -> None:
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"), namespaced=False)
    kube.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"), namespaced=False)


def token_kubeconfig(admin: Kube, account: str, namespace: str, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig that authenticates as ServiceAccount `account` with a fresh token, so that
    a process using it gets exactly the RBAC that account is granted."""
    token = admin.run("create", "token", account, "-n", namespace, "--duration=4h", namespaced=False).strip()
    admin_config = json.loads(admin.run("config", "view", "--raw", "-o", "json", namespaced=False))
    cluster = admin_config["clusters"][0]["cluster"]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": account}}],
        "current-context": "e2e",
    }))
    return path


def start_operator(binary: pathlib.Path, kubeconfig: pathlib.Path, log: pathlib.Path, *args: str) -> subprocess.Popen:
    """The operator binary as a local process on `kubeconfig`, its output in `log`."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), NO_COLOR="1")
    with open(log, "a") as out:
        # In a process group of its own that dies with the test run, like the cluster's.
        return subprocess.Popen([str(binary), "--metrics-addr", "127.0.0.1:0", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                preexec_fn=_child_setup)


def stop(process: subprocess.Popen, timeout: float = 15) -> int | None:
    if process.poll() is None:
        process.send_signal(15)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
