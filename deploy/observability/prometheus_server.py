"""A real Prometheus server for one run: config from prometheus/ beside it, data in the run directory.

Prometheus itself comes from the system (Debian/Ubuntu: ``apt-get install prometheus``, which also
brings ``promtool``); ``make system`` installs it where it can. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from olsim.deploy.errors import UserError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it with `apt-get install prometheus` (Debian/Ubuntu; `make system` does this when run as root) "
    "or put the `prometheus` and `promtool` binaries from prometheus.io on PATH"
)


class PrometheusError(UserError, RuntimeError):
    """Prometheus is missing, would not start, or answered a query with an error (one line)."""


def binary(name: str = "prometheus") -> str:
    """Path of ``prometheus`` or ``promtool``, or a :class:`PrometheusError` saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusError(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return path


def shipped(*parts: str) -> Path:
    """A file under deploy/observability/prometheus/ (the shipped config, rules and rule tests)."""
    return Path(str(resources.files("olsim.deploy.observability").joinpath("prometheus", *parts)))


def write_config(out: Path, targets: dict[str, str], scrape_interval_s: float = 5.0) -> Path:
    """The shipped config with ``targets`` (job -> host:port) and the rules copied beside it.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> cfg = yaml.safe_load(write_config(d, {"olsim": "127.0.0.1:1234"}, 1.0).read_text())
    >>> [(j["job_name"], j["static_configs"][0]["targets"]) for j in cfg["scrape_configs"]]
    [('olsim', ['127.0.0.1:1234']), ('ray', ['127.0.0.1:8090'])]
    >>> cfg["global"]["scrape_interval"], (d / cfg["rule_files"][0]).is_file()
    ('1s', True)
    """
    config = yaml.safe_load(shipped("prometheus.yml").read_text())
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(
            f"no scrape job named {sorted(unknown)} in deploy/observability/prometheus/prometheus.yml"
        )
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    interval = f"{scrape_interval_s:g}s"
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    out.mkdir(parents=True, exist_ok=True)
    for rel in config["rule_files"]:
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped(rel), dest)
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(frozen=True)
class PrometheusAPI:
    """The parts of Prometheus's HTTP API olsim uses (queries, targets, alerts)."""

    url: str

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10.0) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus's error message
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result vector (or a one-element list for a scalar)."""
        data = self._get("/api/v1/query", query=expr, **({} if at is None else {"time": f"{at:.3f}"}))
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        data = self._get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}s"
        )
        return list(data["result"])

    def targets_up(self) -> dict[str, bool]:
        """Scrape health per job, from Prometheus's own view."""
        active = self._get("/api/v1/targets")["activeTargets"]
        return {t["labels"]["job"]: t["health"] == "up" for t in active}

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return list(self._get("/api/v1/alerts")["alerts"])


@dataclass
class PrometheusServer:
    """``prometheus`` as a child process bound to ``host:port``, its TSDB under ``out/data``.

    Stopping it keeps the data: ``prometheus --storage.tsdb.path DIR/prometheus/data ...`` reopens
    a finished run's series.
    """

    out: Path
    targets: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 9090
    scrape_interval_s: float = 5.0
    retention: str = "15d"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api(self) -> PrometheusAPI:
        return PrometheusAPI(self.url)

    def start(self, timeout_s: float = 30.0) -> None:
        exe = binary()
        config = write_config(self.out, self.targets, self.scrape_interval_s)
        log_file = (self.out / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.out / 'data'}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address={self.host}:{self.port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.out / "prometheus.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise PrometheusError(
                    f"prometheus exited with code {self.proc.returncode} on {self.host}:{self.port}"
                    + (f": {tail[0]}" if tail else "")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as r:
                    if r.status == 200:
                        log.info("prometheus ready url=%s data=%s", self.url, self.out / "data")
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus did not become ready on {self.url} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM: Prometheus flushes its head block and exits
        try:
            self.proc.wait(timeout=15.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
