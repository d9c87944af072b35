"""The processes of the loop, on loopback: two `idn up` networks (live and staging), a Flower
SuperLink, one SuperNode per access node, and a `flwr run` per round."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

FLWR_BIN = Path(sys.executable).parent


class Processes:
    """Started processes, stopped together (in reverse order) on exit."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.started.append((name, process))
        return process

    def check(self) -> None:
        """Fails if a started process has exited."""
        for name, process in self.started:
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.started.clear()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(what: str, ready, processes: Processes, timeout: float = 120) -> None:
    """Polls `ready()` until it is true; fails with `what` on timeout or if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check()
        try:
            if ready():
                return
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def serves(base: str, model: str, sha256: str) -> bool:
    """Whether the node at `base` serves revision `sha256` of `model`, ready."""
    metadata = get_json(f"{base}/v2/models/{model}")
    return metadata.get("parameters", {}).get("sha256") == sha256 and urllib.request.urlopen(
        f"{base}/v2/models/{model}/ready", timeout=5
    ).status == 200


def start_network(
    processes: Processes, name: str, idn: Path, manifests: Path, models: Path, base_port: int
) -> None:
    """`idn up` on `manifests`; it watches them and rolls the nodes whose config changes."""
    processes.start(
        f"idn-up-{name}",
        [str(idn), "up", "-f", str(manifests), "--models", str(models),
         "--base-port", str(base_port)],
    )


class Federation:
    """A Flower SuperLink and one SuperNode per access node, on loopback ports from `port`."""

    def __init__(self, processes: Processes, home: Path, port: int):
        self.processes = processes
        self.home = home
        # One HTTP API serves the Fleet (SuperNodes) and the Control API (`flwr run`).
        self.address = f"127.0.0.1:{port}"
        self.next_port = port + 1
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "idn"\n\n'
            f'[superlink.idn]\naddress = "{self.address}"\ninsecure = true\n'
        )
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # The SuperLink starts its helpers from PATH.
            "PATH": f"{FLWR_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # Five clients share two cores: one BLAS thread each.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }

    def start_superlink(self) -> None:
        self.processes.start(
            "superlink",
            [str(FLWR_BIN / "flower-superlink"), "--insecure",
             "--disable-runtime-dependency-installation",
             "--database", str(self.home / "state.db"),
             "--port", self.address.rsplit(":", 1)[1]],
            env=self.env,
        )

    def start_supernode(self, node: str, data: Path, url: str) -> None:
        config = f'node="{node}" data="{data}" url="{url}"'
        self.processes.start(
            f"supernode-{node}",
            [str(FLWR_BIN / "flower-supernode"), "--insecure", "--superlink", self.address,
             "--port", str(self.next_port), "--node-config", config],
            env=self.env,
        )
        self.next_port += 1

    def run(self, app: Path, plan: Path, timeout: float) -> None:
        """Submits the Flower app for one round and waits for it to end."""
        self.processes.check()
        done = subprocess.run(
            [str(FLWR_BIN / "flwr"), "run", str(app), "idn", "--stream",
             "--run-config", f'plan="{plan}"'],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        (self.processes.logs / f"flwr-run-{plan.stem}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"flwr run failed ({done.returncode}):\n{done.stderr[-2000:]}")


def idn_binary(repo: Path) -> Path:
    """This checkout's idn: the release build, else the debug one."""
    for profile in ("release", "debug"):
        built = repo / "target" / profile / "idn"
        if built.is_file():
            return built
    raise FileNotFoundError("no idn binary: run `cargo build --release -p idn-tools`")
