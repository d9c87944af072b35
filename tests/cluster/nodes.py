"""Real Kubernetes nodes on this machine: a kubelet, kube-proxy and containerd per node.

Each real node lives in a network namespace of its own (so that kube-proxy's iptables chains,
the CNI bridge and the node's ports never clash with another node's) and a mount namespace of
its own (so that its /var/lib/kubelet, /var/lib/containerd, /run/containerd, CNI state and pod
logs are folders of the test's work directory). Every node of every cluster is joined to one
bridge on the host, as machines on one LAN; the host routes each node's pod range and its
cluster's Service range to the node, so tests on the host reach pods and Services.

Address plan (everything inside 10.240.0.0/13, which the host marks unreachable beyond the
routes it adds, so no test packet ever leaves the machine; up to three clusters, k = 0, 1, 2):

    host bridge idn0    10.240.0.1/16       the API servers and CoreDNS listen here
    node i of cluster k 10.240.(1+k).(10+i)
    pods of that node   10.(241+k).i.0/24   (cluster k: 10.(241+k).0.0/16)
    Services            10.(245+k).0.0/16   (.1: kubernetes, .10: kube-dns)

The kubelet runs on cgroup v1 with the cgroupfs driver (systemd is not PID 1 here), each node
under a cgroup root of its own. A kubelet sets a few machine-wide sysctls; the first node
started records them and the last node stopped restores them.

Run as `python3 nodes.py supervise DIR` (by RealNode.start, inside the node's namespaces), it is
the node's supervisor: it bind-mounts the node's folders, starts containerd, then the kubelet and
kube-proxy, and stops them in reverse order on SIGTERM.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import images

BRIDGE = "idn0"
HOST_IP = "10.240.0.1"
BRIDGE_PREFIX = 16
SUPERNET = "10.240.0.0/13"
MAX_CLUSTERS = 3
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
# The cgroup v1 hierarchies a kubelet uses (the machine mounts each on its own).
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
# Machine-wide settings a kubelet changes at start (setupKernelTunables), restored at the end.
KUBELET_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                   "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
STATE = Path("/run/idn-nodes")  # what outlives one node: the sysctls to restore
# The folders of a node that the supervisor bind-mounts from the node's own work directory.
NODE_MOUNTS = ("/var/lib/kubelet", "/var/lib/containerd", "/run/containerd", "/var/lib/cni",
               "/etc/cni/net.d", "/var/log/pods", "/var/log/containers", "/run/netns")
# Host tools the real nodes need, from Debian's packages (tests/cluster/install-node-deps.sh).
HOST_TOOLS = ("runc", "iptables", "nsenter", "unshare", "ip", "conntrack")


class NodeError(RuntimeError):
    pass


def node_ip(cluster: int, index: int) -> str:
    return f"10.240.{1 + cluster}.{10 + index}"


def pod_cidr(cluster: int, index: int) -> str:
    return f"10.{241 + cluster}.{index}.0/24"


def cluster_cidr(cluster: int) -> str:
    return f"10.{241 + cluster}.0.0/16"


def service_cidr(cluster: int) -> str:
    return f"10.{245 + cluster}.0.0/16"


def service_ip(cluster: int, host: int) -> str:
    return f"10.{245 + cluster}.0.{host}"


def run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def why_not_supported() -> str | None:
    """Why real nodes cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "real nodes need root (network namespaces, mounts, cgroups)"
    missing = [t for t in HOST_TOOLS if run("sh", "-c", f"command -v {t}", check=False).returncode != 0]
    if missing:
        return f"missing host tools: {', '.join(missing)} (run tests/cluster/install-node-deps.sh)"
    if not Path(CNI_BIN, "bridge").exists():
        return f"no CNI plugins in {CNI_BIN} (run tests/cluster/install-node-deps.sh)"
    absent = [c for c in CGROUP_CONTROLLERS if not (CGROUP_ROOT / c / "cgroup.procs").exists()]
    if absent:
        return f"cgroup v1 hierarchies not mounted: {', '.join(absent)}"
    taken = [a for a in _machine_addresses() if ipaddress.ip_address(a) in ipaddress.ip_network(SUPERNET)]
    if taken:
        return f"the machine already uses {', '.join(taken)} inside {SUPERNET}, the real nodes' range"
    return None


def _machine_addresses() -> list[str]:
    """Addresses the machine itself needs: its nameservers, default gateways and own addresses
    (other than the real nodes' bridge)."""
    found = re.findall(r"^nameserver\s+([0-9.]+)", Path("/etc/resolv.conf").read_text(), re.M) \
        if Path("/etc/resolv.conf").exists() else []
    found += re.findall(r"\bvia ([0-9.]+)", run("ip", "-4", "route", "show", "default", check=False).stdout)
    addrs = run("ip", "-4", "-o", "addr", "show", check=False).stdout
    found += [a for dev, a in re.findall(r"^\d+: (\S+)\s+inet ([0-9.]+)", addrs, re.M) if dev != BRIDGE]
    return found


# ------------------------------------------------------------------ the host side
def ensure_host_network():
    """The host bridge all real nodes hang off, and the catch-all that keeps packets home."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_IP}/{BRIDGE_PREFIX}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
    run("ip", "route", "replace", "unreachable", SUPERNET)


def remove_host_network_if_unused():
    if _real_nodes():
        return
    run("ip", "link", "del", BRIDGE, check=False)
    run("ip", "route", "del", "unreachable", SUPERNET, check=False)
    _restore_sysctls()


def _netns_names() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]


def _real_nodes() -> list[tuple[str, tuple[int, int]]]:
    """The real nodes' namespaces on this machine, with their (cluster, index)."""
    found = []
    for name in _netns_names():
        m = re.fullmatch(r"idn(\d)n(\d+)", name)
        if m:
            found.append((name, (int(m.group(1)), int(m.group(2)))))
    return found


def _save_sysctls():
    STATE.mkdir(parents=True, exist_ok=True)
    saved = STATE / "sysctls.json"
    if not saved.exists():
        values = {k: run("sysctl", "-n", k, check=False).stdout.strip() for k in KUBELET_SYSCTLS}
        saved.write_text(json.dumps({k: v for k, v in values.items() if v}))


def _restore_sysctls():
    saved = STATE / "sysctls.json"
    if not saved.exists():
        return
    for key, value in json.loads(saved.read_text()).items():
        run("sysctl", "-q", "-w", f"{key}={value}", check=False)
    saved.unlink()


def _cgroup_dirs(root: str) -> list[Path]:
    return [CGROUP_ROOT / c / root.lstrip("/") for c in CGROUP_CONTROLLERS]


def _make_cgroup_root(root: str):
    for d in _cgroup_dirs(root):
        d.mkdir(exist_ok=True)
        if d.parent.name == "cpuset":  # a new cpuset has no CPUs or memory nodes until given some
            for f in ("cpuset.cpus", "cpuset.mems"):
                (d / f).write_text((d.parent / f).read_text())


def _cgroup_pids(root: str) -> set[int]:
    pids = set()
    for d in _cgroup_dirs(root):
        for procs in d.rglob("cgroup.procs") if d.exists() else ():
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroup_root(root: str):
    for d in _cgroup_dirs(root):
        if not d.exists():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def _pids_in_netns(netns: str) -> set[int]:
    try:
        target = os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return set()
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.stat(proc / "ns" / "net").st_ino == target:
                    pids.add(int(proc.name))
            except OSError:
                pass
    return pids


def _kill(pids: set[int]):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class RealNode:
    """One real node: its namespaces, its configuration files and its supervisor process."""

    def __init__(self, *, cluster: int, index: int, name: str, workdir: Path, bins: dict[str, Path],
                 pki: Path, cluster_domain: str):
        self.cluster, self.index, self.name = cluster, index, name
        self.dir = workdir / "nodes" / name
        self.bins, self.pki, self.cluster_domain = bins, pki, cluster_domain
        self.ip = node_ip(cluster, index)
        self.pod_cidr = pod_cidr(cluster, index)
        self.netns = f"idn{cluster}n{index}"
        self.veth = f"vidn{cluster}n{index}"
        self.cgroup_root = f"/idn{cluster}n{index}"
        self.process = None  # cluster.Process of the supervisor

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def containerd_socket(self) -> Path:
        return self.dir / "run-containerd" / "containerd.sock"

    # ---------------------------------------------------------------- network
    def setup_network(self):
        self.teardown_network()
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        run("ip", "link", "set", self.veth, "master", BRIDGE, "up")
        ns = ("ip", "netns", "exec", self.netns)
        run(*ns, "ip", "addr", "add", f"{self.ip}/{BRIDGE_PREFIX}", "dev", "eth0")
        run(*ns, "ip", "link", "set", "eth0", "up")
        run(*ns, "ip", "link", "set", "lo", "up")
        for key in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
                    "net.ipv4.conf.all.route_localnet=1"):
            run(*ns, "sysctl", "-q", "-w", key)
        # every real node on the machine, of any cluster, reaches every other node's pods: what
        # one flat network between clusters gives (a node answering a NodePort call from another
        # cluster's pod routes its answer back directly)
        for other, (cluster, index) in _real_nodes():
            if other != self.netns:
                run(*ns, "ip", "route", "replace", pod_cidr(cluster, index), "via", node_ip(cluster, index))
                run("ip", "netns", "exec", other, "ip", "route", "replace", self.pod_cidr, "via", self.ip,
                    check=False)
        run("ip", "route", "replace", self.pod_cidr, "via", self.ip)

    def teardown_network(self):
        run("ip", "route", "del", self.pod_cidr, check=False)
        if self.netns in _netns_names():
            _kill(_pids_in_netns(self.netns))
            run("ip", "netns", "del", self.netns, check=False)
        run("ip", "link", "del", self.veth, check=False)

    # ---------------------------------------------------------------- files
    def write_config(self, *, sandbox_image: str, image_tarballs: list[Path], cluster_dns: str,
                     kubelet_kubeconfig: Path, proxy_kubeconfig: Path, serving_cert: Path, serving_key: Path,
                     cluster_cidr_: str):
        d = self.dir
        for sub in ("var-lib-kubelet", "var-lib-containerd", "run-containerd", "var-lib-cni", "cni-net.d",
                    "var-log-pods", "var-log-containers", "run-netns", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "cni-net.d" / "10-idn.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "idn",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))
        (d / "containerd.toml").write_text(f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime"]
  # no CAP_SYS_RESOURCE here: without it every sandbox fails on its oom_score_adj write
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "/etc/cni/net.d"
""")
        (d / "kubelet.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.ip, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "tlsCertFile": str(serving_cert), "tlsPrivateKeyFile": str(serving_key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            # cgroup v1 only here, and systemd is not PID 1: cgroupfs under a root of this node's own
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "cgroupRoot": self.cgroup_root,
            "clusterDNS": [cluster_dns], "clusterDomain": self.cluster_domain,
            "resolvConf": "",
            "failSwapOn": False,
            "maxPods": 30,
            "serializeImagePulls": False,
            # the machine's disk is shared by every node: no evictions for what another node wrote
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "staticPodPath": "",
            "featureGates": {"ImageVolume": True},
        }, indent=2))
        (d / "kube-proxy.yaml").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": cluster_cidr_, "hostnameOverride": self.name,
            "bindAddress": self.ip, "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "clientConnection": {"kubeconfig": str(proxy_kubeconfig)},
            # nf_conntrack_max is machine-wide: leave it alone
            "conntrack": {"maxPerCore": 0, "min": 0},
        }, indent=2))
        mounts = {"/var/lib/kubelet": "var-lib-kubelet", "/var/lib/containerd": "var-lib-containerd",
                  "/run/containerd": "run-containerd", "/var/lib/cni": "var-lib-cni",
                  "/etc/cni/net.d": "cni-net.d", "/var/log/pods": "var-log-pods",
                  "/var/log/containers": "var-log-containers", "/run/netns": "run-netns"}
        assert set(mounts) == set(NODE_MOUNTS)
        k = self.bins["kubelet"]
        (d / "supervise.json").write_text(json.dumps({
            "mounts": [[str(d / src), dst] for dst, src in mounts.items()],
            "cgroup_root": self.cgroup_root,
            "socket": "/run/containerd/containerd.sock",
            "containerd": [str(self.bins["containerd"] / "containerd"), "--config", str(d / "containerd.toml")],
            "path": str(self.bins["containerd"]),
            "kubelet": [str(k / "kubelet"), f"--config={d / 'kubelet.yaml'}", f"--kubeconfig={kubelet_kubeconfig}",
                        f"--hostname-override={self.name}", f"--node-ip={self.ip}",
                        "--node-labels=idn.dev/test-node=real", "--v=1"],
            "kube-proxy": [str(k / "kube-proxy"), f"--config={d / 'kube-proxy.yaml'}", "--v=1"],
            "logs": str(self.logs_dir),
            # imported before the kubelet starts, so that no pod ever waits for a pull
            "images": [[str(t), *images.image_refs(t)] for t in image_tarballs],
            "ctr": self.ctr_argv(),
        }, indent=2))

    # ---------------------------------------------------------------- life
    def argv(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--",
                "unshare", "--mount", "--propagation", "private", "--",
                sys.executable, str(Path(__file__).resolve()), "supervise", str(self.dir)]

    def prepare(self):
        self.cleanup()  # what a run that died without stopping its nodes left behind
        _save_sysctls()
        _make_cgroup_root(self.cgroup_root)
        self.setup_network()

    def cleanup(self):
        """After the supervisor is gone: whatever it left (containers, shims), cgroups, network."""
        for _ in range(3):
            left = _cgroup_pids(self.cgroup_root) | _pids_in_netns(self.netns)
            if not left:
                break
            _kill(left)
            time.sleep(0.2)
        _remove_cgroup_root(self.cgroup_root)
        self.teardown_network()

    def ctr_argv(self) -> list[str]:
        return [str(self.bins["containerd"] / "ctr"), "--address", str(self.containerd_socket()), "-n", "k8s.io"]

    def import_image(self, tarball: Path):
        """Imports an image tarball (images.py) into this node's containerd."""
        import_image(self.ctr_argv(), tarball, *images.image_refs(tarball))


def import_image(ctr: list[str], tarball: Path, ref: str, name: str):
    """`ctr images import`, then the name pods ask for (the tarball carries the loopback
    registry's reference it was built under)."""
    run(*ctr, "images", "import", str(tarball))
    run(*ctr, "images", "tag", "--force", ref, name)
    run(*ctr, "images", "rm", ref, check=False)


# ------------------------------------------------------------------ the supervisor
_libc = None


def _die_with_parent():
    os.setsid()
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def supervise(node_dir: Path) -> int:
    spec = json.loads((node_dir / "supervise.json").read_text())
    for src, dst in spec["mounts"]:
        os.makedirs(dst, exist_ok=True)
        run("mount", "--bind", src, dst)
    # The kubelet wants its root shared (for mount propagation into pods); a root it finds
    # private it bind-mounts onto itself while its sockets are being created there, which
    # then fail to move into place across the two mounts (EXDEV): share it before it starts.
    run("mount", "--make-rshared", "/var/lib/kubelet")
    logs = Path(spec["logs"])
    env = {**os.environ, "PATH": f"{spec['path']}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
    env.pop("KUBECONFIG", None)
    children: dict[str, subprocess.Popen] = {}

    def start(name: str):
        log = open(logs / f"{name}.log", "ab")
        log.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(spec[name])}\n".encode())
        log.flush()
        children[name] = subprocess.Popen(spec[name], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, preexec_fn=_die_with_parent, close_fds=True)

    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    start("containerd")
    deadline = time.monotonic() + 60
    while not Path(spec["socket"]).exists():
        if children["containerd"].poll() is not None or time.monotonic() > deadline:
            print("containerd did not start: see containerd.log", file=sys.stderr)
            return 1
        time.sleep(0.1)
    for tarball, ref, name in spec["images"]:
        import_image(spec["ctr"], Path(tarball), ref, name)
    start("kubelet")
    start("kube-proxy")
    print("node started", flush=True)
    while not stopping:
        for name, p in children.items():
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}: see {logs / (name + '.log')}", file=sys.stderr, flush=True)
                stopping = True
        time.sleep(0.2)
    for name in ("kubelet", "kube-proxy", "containerd"):
        p = children[name]
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if name == "kube-proxy":  # the pods go before containerd, which would otherwise wait on them
            _kill(_cgroup_pids(spec["cgroup_root"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "supervise":
        sys.exit(supervise(Path(sys.argv[2])))
    print("usage: nodes.py supervise NODE_DIR", file=sys.stderr)
    sys.exit(2)
