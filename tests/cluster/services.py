"""Prometheus and Jaeger v2 on loopback for the end-to-end tests (standard library only).

    sys.path.insert(0, "tests/cluster")
    from services import Prometheus, Jaeger
    with Prometheus(workdir, scrape_targets=["127.0.0.1:9100"]) as p:
        p.query("up")                       # /api/v1/query, decoded JSON "data"
    with Jaeger(workdir) as j:
        j.otlp_http                         # http://127.0.0.1:<port> (POST /v1/traces)
        j.otlp_grpc                         # 127.0.0.1:<port>
        j.api("/api/services")              # query API

Both use the binaries build.sh puts in the tools cache (built on demand), free
ports on 127.0.0.1, and write their logs to <workdir>/logs/.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cluster import ClusterError, Process, ensure_built, free_port


class _Service:
    name = ""
    component = ""

    def __init__(self, workdir):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin = ensure_built([self.component])[self.component]
        self.proc: Process | None = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def _get(self, url, timeout=5):
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()

    def _wait(self, url, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.check()
            try:
                if self._get(url, 2)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ClusterError(f"{self.name} not ready at {url} after {timeout}s:\n{self.proc.tail()}")


class Prometheus(_Service):
    """prometheus with a generated config (static scrape targets) or one of yours."""

    name, component = "prometheus", "prometheus"

    def __init__(self, workdir, *, config: str | None = None, scrape_targets=(), scrape_interval="1s",
                 extra_args=()):
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.extra_args = list(extra_args)

    def start(self, timeout=60):
        cfg = self.workdir / "prometheus.yml"
        if self.config is None:
            # JSON is YAML
            cfg.write_text(json.dumps({
                "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
                "scrape_configs": [{"job_name": "targets", "static_configs": [{"targets": self.scrape_targets}]}]
                if self.scrape_targets else [],
            }, indent=2))
        else:
            cfg.write_text(self.config)
        self.proc = Process("prometheus", [
            str(self.bin / "prometheus"), f"--config.file={cfg}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
            "--web.enable-lifecycle", "--web.enable-remote-write-receiver",
            *self.extra_args,
        ], self.workdir / "logs" / "prometheus.log")
        self.proc.start()
        self._wait(self.url + "/-/ready", timeout)
        return self

    def api(self, path: str, **params):
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        return json.loads(self._get(self.url + path + q)[1])

    def query(self, expr: str):
        return self.api("/api/v1/query", query=expr)["data"]


class Jaeger(_Service):
    """Jaeger v2 (an OpenTelemetry Collector distribution) with in-memory storage."""

    name, component = "jaeger", "jaeger"

    def __init__(self, workdir, *, max_traces=100000):
        super().__init__(workdir)
        self.ports = {k: free_port() for k in ("otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "metrics")}
        self.otlp_grpc = f"127.0.0.1:{self.ports['otlp_grpc']}"
        self.otlp_http = f"http://127.0.0.1:{self.ports['otlp_http']}"
        self.query_url = f"http://127.0.0.1:{self.ports['query_http']}"
        self.query_grpc = f"127.0.0.1:{self.ports['query_grpc']}"
        self.health_url = f"http://127.0.0.1:{self.ports['health']}/status"
        self.max_traces = max_traces

    def config_yaml(self) -> str:
        p = self.ports
        # Every endpoint explicit: the defaults of jaeger_query (":16686", ":16685")
        # listen on all interfaces.
        return f"""\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {p['metrics']}
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{p['health']}
  jaeger_query:
    # on by default: it would export jaeger's own traces to the OTLP default
    # localhost:4317, which may be another test's receiver
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{p['query_http']}
    grpc:
      endpoint: 127.0.0.1:{p['query_grpc']}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {self.max_traces}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{p['otlp_grpc']}
      http:
        endpoint: 127.0.0.1:{p['otlp_http']}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""

    def start(self, timeout=60):
        cfg = self.workdir / "jaeger.yaml"
        cfg.write_text(self.config_yaml())
        self.proc = Process("jaeger", [str(self.bin / "jaeger"), f"--config={cfg}"],
                            self.workdir / "logs" / "jaeger.log")
        self.proc.start()
        self._wait(self.health_url, timeout)
        self._wait(self.query_url + "/api/services", timeout)
        return self

    def api(self, path: str, **params):
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        return json.loads(self._get(self.query_url + path + q)[1])
