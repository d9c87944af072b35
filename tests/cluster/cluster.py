#!/usr/bin/env python3
"""A real Kubernetes control plane on this machine for the end-to-end tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real
upstream programs (built by build.sh from pinned Go modules). Two kinds of
nodes:

- fake nodes (`nodes=N`): kwok acts as their kubelet, so pods are scheduled by
  the real scheduler, become Ready, and Deployments become Available through
  the real controllers, but nothing runs: images are never pulled. Every
  server then listens on 127.0.0.1 only.
- real nodes (`real_nodes=N`, root only; see nodes.py): a kubelet, kube-proxy
  and containerd per node, each node in network and mount namespaces of its
  own; pods run for real, resolve Services through CoreDNS, and the host
  reaches pod and Service addresses. The API server and CoreDNS then listen on
  the host bridge's address, which the nodes reach.

Free ports; certificates made with the openssl CLI. Standard library only.

As a library (e.g. a pytest session fixture):

    sys.path.insert(0, "tests/cluster")
    from cluster import Cluster
    with Cluster(workdir) as c:          # start() ... stop()
        c.kubeconfig                     # admin kubeconfig (system:masters)
        c.kubectl("get", "nodes")        # kubectl ($KUBECTL, PATH, /usr/bin) with that kubeconfig
        c.api("GET", "/api/v1/nodes")    # decoded JSON, no kubectl needed
        c.restart_apiserver()            # etcd and the rest keep running

As a program:

    python3 tests/cluster/cluster.py [--workdir DIR] [--nodes N] [--real-nodes N]

builds what is missing, starts the cluster, prints how to use it, and stops
everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import images
import nodes as realnodes

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
# Pod IPs that kwok hands out: fake, nothing routes or listens there. Never
# connect to them (no kube-proxy, no container runs).
POD_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
SA_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

COMPONENTS = ("kubernetes", "etcd", "kwok")
CONTROL_PLANE = ("kubernetes", "etcd")
# what real nodes add (build.sh --nodes)
NODE_COMPONENTS = ("kubelet", "containerd", "coredns", "crane", "pause")


class ClusterError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bin_dir(component: str) -> Path:
    """The cache folder of a component's binaries (see build.sh)."""
    out = subprocess.run([str(BUILD_SH), "--path", component], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def ensure_built(components=COMPONENTS) -> dict[str, Path]:
    """Builds (via build.sh) any of the components whose binaries are not cached."""
    missing = [c for c in components if not (bin_dir(c).parent / "build-info").exists()]
    if missing:
        subprocess.run([str(BUILD_SH), *missing], check=True)
    return {c: bin_dir(c) for c in components}


_libc = None


def _child_setup():
    # Own process group (stop() signals the group), and die with the parent
    # (PR_SET_PDEATHSIG) so that a crashed test run leaves nothing behind.
    os.setsid()
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Process:
    """One component: a command line, a log file, a process group."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None):
        self.name, self.argv, self.log, self.env = name, argv, log, env
        self.popen: subprocess.Popen | None = None
        # When each run began (seconds since the epoch), for tests that look at what happened
        # around a restart.
        self.started: list[float] = []

    def start(self):
        if self.running():
            return
        self.started.append(time.time())
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            f.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            f.flush()
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=self.env, preexec_fn=_child_setup, close_fds=True,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self):
        if self.popen is not None and self.popen.poll() is not None:
            raise ClusterError(f"{self.name} exited with {self.popen.returncode}; last log lines:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL to the group: a crash, no graceful shutdown."""
        self.stop(timeout=0, sig=signal.SIGKILL)

    def stop(self, timeout: float = 15, sig: int = signal.SIGTERM):
        p = self.popen
        if p is None:
            return
        if p.poll() is None and sig != signal.SIGKILL:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (children, or a process ignoring TERM)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.popen = None


class Cluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok in `workdir`.

    Layout of the work directory: kubeconfig (admin), pki/, kubeconfigs/ (one
    per component), etcd/ (data), logs/<component>.log, kwok/stages.yaml.
    """

    def __init__(self, workdir: str | os.PathLike | None = None, *, nodes: int = 2,
                 node_cpu: str = "32", node_memory: str = "256Gi", node_pods: str = "110",
                 verbosity: int = 1, build: bool = True, kubectl: str | None = None,
                 real_nodes: int = 0, index: int = 0, images: list[Path] = ()):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="idn-cluster-")).resolve()
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.node_resources = {"cpu": node_cpu, "memory": node_memory, "pods": node_pods}
        self.verbosity = verbosity
        self.build = build
        self.kubectl_bin = kubectl or os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
        self.pki = self.workdir / "pki"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.logs_dir = self.workdir / "logs"
        # The API server's audit log, one JSON event per line.
        self.audit_log = self.logs_dir / "audit.log"
        self.procs: dict[str, Process] = {}
        self.ports: dict[str, int] = {}
        self._ssl: ssl.SSLContext | None = None
        # Real nodes: `index` numbers this cluster among those on the machine (its addresses).
        self.index = index
        self.real_node_names = [f"node-{i}" for i in range(real_nodes)]
        self.real_nodes: list[realnodes.RealNode] = []
        # image tarballs (images.py) imported into every real node before its kubelet starts
        self.images = list(images)
        self.host = realnodes.HOST_IP if real_nodes else "127.0.0.1"
        self.service_cidr = realnodes.service_cidr(index) if real_nodes else SERVICE_CIDR
        self.service_ip = realnodes.service_ip(index, 1) if real_nodes else SERVICE_IP
        self.dns_ip = realnodes.service_ip(index, 10) if real_nodes else None

    # ------------------------------------------------------------ public API
    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def logs(self) -> dict[str, Path]:
        return {name: p.log for name, p in self.procs.items()}

    def env(self) -> dict[str, str]:
        """Environment for a client (e.g. the operator under test) of this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def start(self, timeout: float = 120) -> "Cluster":
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops every component (each process group): the nodes first, then the controllers,
        the API server and etcd; then removes what the real nodes left on the machine."""
        for node in self.real_nodes:
            if node.process is not None:
                node.process.stop(timeout=30)
        for node in self.real_nodes:
            node.cleanup()
        for name in ("kwok", "coredns", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            p = self.procs.get(name)
            if p is not None:
                p.stop()
        if self.real_nodes:
            realnodes.remove_host_network_if_unused()

    def import_image(self, tarball: Path):
        """Imports an image (a tarball, see images.py) into every real node's containerd."""
        for node in self.real_nodes:
            node.import_image(tarball)

    def stop_apiserver(self, graceful: bool = True):
        """SIGTERM (graceful, ~1 s) or SIGKILL (a crash) to kube-apiserver only."""
        p = self.procs["kube-apiserver"]
        p.stop() if graceful else p.kill()

    def start_apiserver(self, timeout: float = 60):
        self.procs["kube-apiserver"].start()
        self.wait_apiserver_ready(timeout)

    def restart_apiserver(self, graceful: bool = True, timeout: float = 60):
        """Stops and starts kube-apiserver on the same port and certificates; etcd,
        the controllers, the scheduler and kwok keep running (they reconnect)."""
        self.stop_apiserver(graceful)
        self.start_apiserver(timeout)

    def check(self):
        """Raises ClusterError if a component has exited."""
        for p in self.procs.values():
            p.check()

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
                              input=input, capture_output=True, text=True, check=check, timeout=timeout)

    def api(self, method: str, path: str, body=None, *, timeout: float = 10,
            content_type: str = "application/json"):
        """One request to the API server as the admin; returns the decoded JSON (or text)."""
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=self._client_ssl(), timeout=timeout) as r:
            raw = r.read().decode()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def user_kubeconfig(self, name: str, groups: list[str] = (), path: Path | None = None) -> Path:
        """A kubeconfig with a client certificate for user `name` in `groups` (for RBAC tests)."""
        stem = "user-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        self._client_cert(stem, name, list(groups))
        path = Path(path or self.workdir / "kubeconfigs" / f"{stem}.kubeconfig")
        self._write_kubeconfig(path, stem, name)
        return path

    # ---------------------------------------------------------- wait helpers
    def wait_apiserver_ready(self, timeout: float = 60):
        def ready():
            self.procs["kube-apiserver"].check()
            try:
                return self.api("GET", "/readyz", timeout=3) == "ok"
            except (urllib.error.URLError, OSError, ssl.SSLError):
                return False
        self._wait(ready, timeout, "kube-apiserver /readyz", "kube-apiserver")

    def wait_nodes_ready(self, timeout: float = 60):
        names = self.node_names + self.real_node_names

        def ready():
            self.check()
            items = self.api("GET", "/api/v1/nodes")["items"]
            ok = {n["metadata"]["name"] for n in items
                  if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))}
            return set(names) <= ok
        component = "kwok" if self.node_names else f"node-{self.real_node_names[0]}" if names else None
        self._wait(ready, timeout, f"nodes {names} Ready", component)

    def wait_default_service_account(self, namespace: str = "default", timeout: float = 60):
        def ready():
            self.procs["kube-controller-manager"].check()
            try:
                self.api("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
                return True
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return False
                raise
        self._wait(ready, timeout, f"ServiceAccount {namespace}/default", "kube-controller-manager")

    # ------------------------------------------------------------- internals
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _wait(self, cond, timeout, what, component=None):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except ClusterError:
                raise
            except Exception as e:  # transient: connection refused, 5xx during startup...
                last = e
            time.sleep(0.25)
        tail = self.procs[component].tail() if component in self.procs else ""
        raise ClusterError(f"timed out after {timeout}s waiting for {what} (last error: {last!r}); "
                           f"log {self.logs_dir}/{component}.log ends with:\n{tail}")

    def _start(self, timeout):
        t0 = time.monotonic()
        components = CONTROL_PLANE + (("kwok",) if self.node_names else ()) + (
            NODE_COMPONENTS if self.real_node_names else ())
        if self.real_node_names and (why := realnodes.why_not_supported()):
            raise ClusterError(f"real nodes cannot run here: {why}")
        if self.real_node_names and not 0 <= self.index < realnodes.MAX_CLUSTERS:
            raise ClusterError(f"index {self.index}: real-node clusters are numbered 0 to {realnodes.MAX_CLUSTERS - 1}")
        bins = ensure_built(components) if self.build else {c: bin_dir(c) for c in components}
        for c in components:
            if not bins[c].is_dir():
                raise ClusterError(f"{c} is not built: run {BUILD_SH} {c}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.real_node_names:
            realnodes.ensure_host_network()
        for name in ("etcd", "etcd-peer", "controller-manager", "scheduler", "kwok"):
            self.ports.setdefault(name, free_port())
        for name in ("apiserver", "coredns"):
            self.ports.setdefault(name, free_port(self.host))
        self._make_pki()
        self._make_kubeconfigs()
        kube, etcd, kwok = bins["kubernetes"], bins["etcd"], bins.get("kwok")
        self.kube_version = bins["kubernetes"].parent.name.removeprefix("kubernetes-")
        self._define_processes(kube, etcd, kwok)

        self.procs["etcd"].start()
        self._wait(self._etcd_healthy, 30, "etcd /health", "etcd")
        self.procs["kube-apiserver"].start()
        self.wait_apiserver_ready(timeout)
        self.procs["kube-controller-manager"].start()
        self.procs["kube-scheduler"].start()
        if self.node_names:
            self._create_nodes()
            self.procs["kwok"].start()
        if self.real_node_names:
            self._start_dns(bins["coredns"])
            self._start_real_nodes(bins)
        self.wait_nodes_ready(timeout)
        self.wait_default_service_account(timeout=timeout)
        self.started_in = time.monotonic() - t0

    # ------------------------------------------------------------- real nodes
    def _start_dns(self, coredns: Path):
        """CoreDNS on the host bridge, behind a selector-less kube-dns Service at the cluster's DNS
        address: the pods' resolver, as in any cluster."""
        port = self.ports["coredns"]
        corefile = self.workdir / "coredns" / "Corefile"
        corefile.parent.mkdir(parents=True, exist_ok=True)
        corefile.write_text(f""".:{port} {{
    bind {self.host}
    errors
    health 127.0.0.1:{free_port()}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.workdir / 'kubeconfigs' / 'coredns.kubeconfig'} idn
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")
        self._add("coredns", [str(coredns / "coredns"), "-conf", str(corefile)], {**os.environ})
        self.procs["coredns"].start()
        ports = [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                 {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port}]
        self._ensure("/api/v1/namespaces/kube-system/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": self.dns_ip, "ports": ports},
        })
        self._ensure("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": "idn-tests"}},
            "endpoints": [{"addresses": [self.host], "conditions": {"ready": True}}],
            "ports": [{"name": p["name"], "port": port, "protocol": p["protocol"]} for p in ports],
        })

    def _start_real_nodes(self, bins: dict[str, Path]):
        pause = images.pause_image(bins["pause"], bins["crane"] / "crane", self.workdir / "images")
        for i, name in enumerate(self.real_node_names):
            node = realnodes.RealNode(cluster=self.index, index=i, name=name, workdir=self.workdir, bins=bins,
                                      pki=self.pki, cluster_domain=CLUSTER_DOMAIN)
            self.real_nodes.append(node)
        for node in self.real_nodes:
            stem = f"node-{node.name}"
            self._cert(f"{stem}-serving", f"system:node:{node.name}", [],
                       server_sans=[f"IP:{node.ip}", f"DNS:{node.name}"])
            self._client_cert(stem, f"system:node:{node.name}", ["system:nodes"])
            kubeconfig = self.workdir / "kubeconfigs" / f"{stem}.kubeconfig"
            self._write_kubeconfig(kubeconfig, stem, f"system:node:{node.name}")
            node.write_config(sandbox_image=images.normalized(images.PAUSE_IMAGE),
                              image_tarballs=[pause, *self.images], cluster_dns=self.dns_ip,
                              kubelet_kubeconfig=kubeconfig,
                              proxy_kubeconfig=self.workdir / "kubeconfigs" / "kube-proxy.kubeconfig",
                              serving_cert=self.pki / f"{stem}-serving.crt",
                              serving_key=self.pki / f"{stem}-serving.key",
                              cluster_cidr_=realnodes.cluster_cidr(self.index))
            node.prepare()
            node.process = Process(f"node-{node.name}", node.argv(), self.logs_dir / f"node-{node.name}.log")
            self.procs[f"node-{node.name}"] = node.process
            node.process.start()
        # the host reaches Services through the first node's kube-proxy
        realnodes.run("ip", "route", "replace", self.service_cidr, "via", self.real_nodes[0].ip)

    def _ensure(self, path: str, obj: dict):
        try:
            self.api("POST", path, obj)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise ClusterError(f"creating {obj['kind']} {obj['metadata']['name']}: {e.code} "
                                   f"{e.read().decode(errors='replace')}")

    def _etcd_healthy(self):
        self.procs["etcd"].check()
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        except (urllib.error.URLError, OSError):
            return False

    def _define_processes(self, kube: Path, etcd: Path, kwok: Path):
        env = {**os.environ}
        env.pop("KUBECONFIG", None)
        self._add("etcd", self._etcd_argv(etcd), env)
        self._add("kube-apiserver", self._apiserver_argv(kube), env)
        self._add("kube-controller-manager", self._controller_manager_argv(kube), env)
        self._add("kube-scheduler", self._scheduler_argv(kube), env)
        # kwok also reads ~/.kwok/kwok.yaml when it exists: give it a HOME of its own
        if kwok is not None:
            self._add("kwok", self._kwok_argv(kwok), {**env, "HOME": str(self.workdir / "kwok")})

    def _etcd_argv(self, etcd: Path) -> list[str]:
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            str(etcd / "etcd"), "--name=idn", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=idn={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # test data only: much faster on slow disks
            "--log-level=warn",
        ]

    def _apiserver_argv(self, kube: Path) -> list[str]:
        pki, v = self.pki, str(self.verbosity)
        return [
            str(kube / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.host}", f"--advertise-address={self.host}",
            f"--secure-port={self.ports['apiserver']}",
            # the reconciler of the `kubernetes` Service endpoints refuses a loopback
            # address (and exits the server): without real nodes that Service keeps no
            # endpoints; with them it points at the host bridge, which pods reach
            *([] if self.real_node_names else ["--endpoint-reconciler-type=none"]),
            # real nodes are reached at their address (kubectl logs, exec): their names resolve nowhere
            "--kubelet-preferred-address-types=InternalIP",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=true",  # what /readyz, /livez and /version allow by RBAC default
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            # front proxy (aggregation layer): fills the requestheader CA of the
            # extension-apiserver-authentication ConfigMap that the controller
            # manager and scheduler read, and lets aggregated API servers work
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--allow-privileged=true",
            # without it a SIGTERM waits the full 60 s HTTP shutdown timeout for
            # the open watches of the controllers and kwok; with it, ~1 s
            "--shutdown-watch-termination-grace-period=5s",
            "--profiling=false",
            # who asked for what, with the answer's status: the suite reads it to check that
            # the operator's RBAC is enough and to list what it grants but never uses
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            f"--v={v}",
        ]

    def _controller_manager_argv(self, kube: Path) -> list[str]:
        pki, kc, v = self.pki, self.workdir / "kubeconfigs", str(self.verbosity)
        return [
            str(kube / "kube-controller-manager"),
            f"--kubeconfig={kc / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={kc / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={kc / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--allocate-node-cidrs=false",
            "--leader-elect=false",
            "--profiling=false",
            f"--v={v}",
        ]

    def _scheduler_argv(self, kube: Path) -> list[str]:
        kc, v = self.workdir / "kubeconfigs", str(self.verbosity)
        return [
            str(kube / "kube-scheduler"),
            f"--kubeconfig={kc / 'kube-scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={kc / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={kc / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}",
            "--leader-elect=false",
            "--profiling=false",
            f"--v={v}",
        ]

    def _kwok_argv(self, kwok: Path) -> list[str]:
        kc = self.workdir / "kubeconfigs"
        stages = self.workdir / "kwok" / "stages.yaml"
        stages.parent.mkdir(parents=True, exist_ok=True)
        stages.write_text(subprocess.run([str(kwok / "kwok-stages")], check=True, capture_output=True, text=True).stdout)
        return [
            str(kwok / "kwok"),
            f"--kubeconfig={kc / 'kwok.kubeconfig'}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-ip=127.0.0.1", f"--node-port={self.ports['kwok']}",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            f"--tls-cert-file={self.pki / 'kwok-serving.crt'}", f"--tls-private-key-file={self.pki / 'kwok-serving.key'}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ]

    def _audit_policy(self) -> Path:
        """Every request at the Metadata level (user, verb, resource, status), once each."""
        path = self.workdir / "audit-policy.yaml"
        path.write_text(json.dumps({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [{"level": "Metadata"}],
        }))
        return path

    def _add(self, name, argv, env):
        self.procs[name] = Process(name, argv, self.logs_dir / f"{name}.log", env)

    def _create_nodes(self):
        for name in self.node_names:
            node = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                        "kubernetes.io/hostname": name, "type": "kwok",
                        "node-role.kubernetes.io/agent": "",
                    },
                },
                "status": {
                    "allocatable": dict(self.node_resources), "capacity": dict(self.node_resources),
                    "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                                 "kubeletVersion": self.kube_version},
                },
            }
            try:
                self.api("POST", "/api/v1/nodes", node)
            except urllib.error.HTTPError as e:
                if e.code != 409:  # already there (a restarted cluster on the same etcd)
                    raise ClusterError(f"creating node {name}: {e.code} {e.read().decode(errors='replace')}")

    # ------------------------------------------------------------ pki, kubeconfigs
    def _openssl(self, *args, input=None):
        r = subprocess.run(["openssl", *args], input=input, capture_output=True, text=True)
        if r.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def _make_pki(self):
        pki = self.pki
        pki.mkdir(parents=True, exist_ok=True)
        for ca, cn in (("ca", "idn-test-ca"), ("front-proxy-ca", "idn-test-front-proxy-ca")):
            if not (pki / f"{ca}.crt").exists():
                self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", str(pki / f"{ca}.key"), "-out", str(pki / f"{ca}.crt"), "-days", "3650",
                              "-subj", f"/CN={cn}",
                              "-addext", "basicConstraints=critical,CA:TRUE",
                              "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        if not (pki / "sa.key").exists():
            self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(pki / "sa.key"))
            self._openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        sans = ["IP:127.0.0.1", f"IP:{self.host}", f"IP:{self.service_ip}", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc", f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"]
        self._cert("apiserver", "kube-apiserver", [], server_sans=sans)
        # kwok's kubelet-like server (logs/exec/port-forward of the fake pods)
        self._cert("kwok-serving", "kwok", [], server_sans=["IP:127.0.0.1", "DNS:localhost"])
        self._cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
        self._cert("front-proxy-client", "front-proxy-client", [], ca="front-proxy-ca")
        self._client_cert("admin", "idn-admin", ["system:masters"])
        self._client_cert("kube-controller-manager", "system:kube-controller-manager", [])
        self._client_cert("kube-scheduler", "system:kube-scheduler", [])
        # kwok plays the kubelet of every fake node (node status, leases, pod status):
        # a cluster admin, as the Node authorizer allows one node per identity only
        self._client_cert("kwok", "system:kwok", ["system:masters"])
        if self.real_node_names:
            # bound to the system:node-proxier role by the API server's default policy
            self._client_cert("kube-proxy", "system:kube-proxy", [])
            self._client_cert("coredns", "idn-coredns", ["system:masters"])

    def _client_cert(self, stem, cn, groups):
        self._cert(stem, cn, groups)

    def _cert(self, stem, cn, groups, server_sans=None, ca="ca"):
        pki = self.pki
        crt, key = pki / f"{stem}.crt", pki / f"{stem}.key"
        if crt.exists() and key.exists():
            return
        subj = "".join(f"/O={g}" for g in groups) + f"/CN={cn}"
        ext = pki / f"{stem}.ext"
        if server_sans:
            ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                           f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(server_sans)}\n")
        else:
            ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=clientAuth\n")
        csr = pki / f"{stem}.csr"
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", str(key), "-out", str(csr), "-subj", subj)
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / f"{ca}.crt"), "-CAkey", str(pki / f"{ca}.key"),
                      "-CAcreateserial", "-out", str(crt), "-days", "3650", "-extfile", str(ext))
        csr.unlink()
        ext.unlink()

    def _write_kubeconfig(self, path: Path, stem: str, user: str):
        b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode()
        cfg = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "idn", "cluster": {"server": self.server,
                                                      "certificate-authority-data": b64(self.ca_file)}}],
            "users": [{"name": user, "user": {"client-certificate-data": b64(self.pki / f"{stem}.crt"),
                                              "client-key-data": b64(self.pki / f"{stem}.key")}}],
            "contexts": [{"name": "idn", "context": {"cluster": "idn", "user": user, "namespace": "default"}}],
            "current-context": "idn",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML
        path.chmod(0o600)

    def _make_kubeconfigs(self):
        self._write_kubeconfig(self.kubeconfig, "admin", "idn-admin")
        kc = self.workdir / "kubeconfigs"
        for stem, user in (("kube-controller-manager", "system:kube-controller-manager"),
                           ("kube-scheduler", "system:kube-scheduler"), ("kwok", "system:kwok")):
            self._write_kubeconfig(kc / f"{stem}.kubeconfig", stem, user)
        if self.real_node_names:
            for stem, user in (("kube-proxy", "system:kube-proxy"), ("coredns", "idn-coredns")):
                self._write_kubeconfig(kc / f"{stem}.kubeconfig", stem, user)

    def _client_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
            self._ssl = ctx
        return self._ssl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", help="work directory (default: a new temporary one)")
    ap.add_argument("--nodes", type=int, default=2, help="fake kwok nodes (default 2)")
    ap.add_argument("--real-nodes", type=int, default=0,
                    help="real nodes: kubelet, kube-proxy and containerd each (root only; default 0)")
    ap.add_argument("--images", action="store_true",
                    help="with real nodes: build idn's images from this checkout's debug binaries (the "
                         "Dockerfile's targets) and import them into every node")
    ap.add_argument("-v", "--verbosity", type=int, default=1, help="--v of the Kubernetes components")
    args = ap.parse_args(argv)
    tarballs = []
    if args.images and args.real_nodes:
        built = images.build_targets(None, profile="debug", out_dir=images.REPO / "target" / "images",
                                     crane=ensure_built(("crane",))["crane"] / "crane",
                                     cache=Path.home() / ".cache" / "idn" / "images")
        tarballs = list(built.values())

    c = Cluster(args.workdir, nodes=args.nodes, verbosity=args.verbosity, real_nodes=args.real_nodes,
                images=tarballs)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        c.start()
        print(f"""
cluster up in {c.started_in:.1f}s, work dir {c.workdir}
  API server  {c.server}  (etcd {c.etcd_url})
  nodes       {', '.join(c.node_names + c.real_node_names)}
  logs        {c.logs_dir}/
  export KUBECONFIG={c.kubeconfig}
  kubectl get nodes
Ctrl-C (or SIGTERM) stops everything.""", flush=True)
        while True:
            time.sleep(1)
            c.check()
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
