"""A real run scraped by a real Prometheus (`olsim run --prometheus`).

Every Grafana panel's PromQL and every annotation query runs against Prometheus's HTTP API over the
run's time range (as Grafana would); each must succeed and every panel must return series. The
recording rules evaluate on real data, every listening port stays on loopback, and report.html
renders in headless Chromium with all its plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PageCheck, free_port
from olsim.deploy.observability.dashboards import DASHBOARDS
from olsim.deploy.observability.prometheus_server import PrometheusAPI, PrometheusError, shipped
from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.spec import load_scenario

SCRAPE_S = 2.0  # Ray's endpoint is large: a 1 s scrape can time out on a busy 2-core machine
# What Grafana substitutes for $__rate_interval: here the run is short, so one minute covers it.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1s"}


def _expand(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def _query_all(api: PrometheusAPI, start: float) -> dict[str, Any]:
    """Every panel target, annotation and recording rule as a range query over the run."""
    import yaml

    # Range-query steps are aligned to ``start``: reach one step past now, so the last step falls
    # after the newest scrape (a rollback scraped a second ago would otherwise be missed).
    end = time.time() + SCRAPE_S
    out: dict[str, Any] = {"panels": {}, "annotations": {}, "records": {}}

    def attempt(expr: str) -> int | str:
        try:
            return len(api.query_range(_expand(expr), start, end, SCRAPE_S))
        except PrometheusError as exc:
            return str(exc)

    for d in DASHBOARDS:
        for p in d.panels:
            for expr, _ in p.targets:
                out["panels"][f"{d.uid} / {p.title} / {expr}"] = attempt(expr)
        for a in d.annotations:
            out["annotations"][f"{d.uid} / {a.name}"] = attempt(a.expr)
    rules = yaml.safe_load(shipped("rules", "olsim.rules.yml").read_text())["groups"]
    for r in (r for g in rules for r in g["rules"] if "record" in r):
        out["records"][r["record"]] = attempt(r["record"])
    return out


def _wait_for(api: PrometheusAPI, expr: str, timeout_s: float = 60.0) -> bool:
    """Ray exports Serve's metrics every few seconds: wait until Prometheus has scraped ``expr``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.query(expr):
            return True
        time.sleep(1.0)
    return False


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (Linux /proc)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(addr) == 8:  # IPv4, little-endian
                    out.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    out.add("::" if set(addr) == {"0"} else f"ipv6:{addr}")
    return out


def _listeners_here() -> list[tuple[str, str, int]]:
    """(command line, address, port) of every TCP listener owned by this process or a process it
    started (Ray's gcs/raylet/workers, Serve's HAProxy, Prometheus, ...)."""
    import psutil

    me = psutil.Process()
    ours = {me.pid} | {p.pid for p in me.children(recursive=True)}
    out = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status != psutil.CONN_LISTEN or c.pid not in ours:
            continue
        try:
            cmd = " ".join(psutil.Process(c.pid).cmdline())
        except psutil.Error:
            continue
        out.append((cmd, str(c.laddr.ip), int(c.laddr.port)))
    return out


# Ray 2.60's Serve replicas open an inter-deployment gRPC server on [::]:0 whatever the settings
# (serve/_private/replica.py, `add_port_to_grpc_server(self._server, "[::]:0")`); nothing else may.
RAY_HARDCODED = ("ray::ServeReplica",)


def _at_end(report: dict[str, Any], live: dict[str, Any]) -> None:
    api = PrometheusAPI(report["prometheus"]["url"])
    base = "http://127.0.0.1:8000"
    for _ in range(5):  # rejected input and a missing token: 4xx answers the serving panels count
        httpx.post(f"{base}/predict", json={"inputs": [[0.1] * 63]}, timeout=10)
    httpx.post(f"{base}/admin/rollback", json={}, timeout=10)
    token = Path(report["admin_token_file"]).read_text().strip()
    live["rollback"] = httpx.post(
        f"{base}/admin/rollback",
        json={"reason": "observability test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    live["scraped_4xx"] = _wait_for(api, 'ray_serve_num_http_requests_total{status_code="422"}')
    live["scraped_rollback"] = _wait_for(api, "olsim_rollbacks_total{trigger='manual'} > 0")
    # Like a dashboard that refreshes: query until every panel and annotation shows data (Ray's
    # series trail olsim's by its export interval, and a rate needs two scrapes), at most a minute.
    deadline = time.monotonic() + 60.0
    while True:
        live["queries"] = _query_all(api, report["started_at"])
        q = live["queries"]
        empty = [k for kind in ("panels", "annotations") for k, v in q[kind].items() if v == 0]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(SCRAPE_S)
    ray_port = int(report["prometheus"]["targets"]["ray"].rsplit(":", 1)[1])
    live["listening"] = {
        "prometheus": _listening(int(report["prometheus"]["url"].rsplit(":", 1)[1])),
        "ray metrics": _listening(ray_port),
        "olsim metrics": _listening(int(report["metrics_endpoint"].rsplit(":", 1)[1].split("/")[0])),
        "serve": _listening(8000),
    }
    live["listeners"] = _listeners_here()


@pytest.fixture(scope="module")
def observed(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    s = load_scenario("split-digits").with_strategy("naive")  # gate on: accepts and rejections
    s = s.model_copy(update={"stream": s.stream.model_copy(update={"rate": 800.0}), "seed": 0})
    opts = RunOptions(
        report_dir=tmp_path_factory.mktemp("observed"),
        metrics_port=0,
        load_rps=30.0,
        prometheus=True,
        prometheus_port=free_port(),
        scrape_interval_s=SCRAPE_S,
    )
    live: dict[str, Any] = {"dir": opts.report_dir}
    report = run(s, opts, on_finished=lambda r: _at_end(r, live))
    return report, live


def test_prometheus_scraped_olsim_and_ray(observed: tuple[dict, dict]) -> None:
    report, live = observed
    prom = report["prometheus"]
    assert prom["targets_up"] == {"olsim": True, "ray": True}
    assert live["scraped_4xx"] and live["scraped_rollback"]
    assert live["rollback"].status_code == 200, live["rollback"].text
    data = Path(prom["data_dir"])
    assert data == live["dir"] / "prometheus" / "data"  # the run's data stays with its report
    assert (data / "wal").is_dir() and any((data / "wal").iterdir())


def test_every_panel_query_returns_series(observed: tuple[dict, dict]) -> None:
    panels = observed[1]["queries"]["panels"]
    assert len(panels) == sum(len(p.targets) for d in DASHBOARDS for p in d.panels)
    bad = {k: v for k, v in panels.items() if not isinstance(v, int) or v == 0}
    assert bad == {}, "\n".join(f"{k}: {'no series' if v == 0 else v}" for k, v in bad.items())


def test_annotation_queries_run_and_mark_swaps_and_rollbacks(observed: tuple[dict, dict]) -> None:
    ann = observed[1]["queries"]["annotations"]
    assert all(isinstance(v, int) for v in ann.values()), ann
    assert ann["olsim-freshness / swaps"] > 0 and ann["olsim-freshness / rollbacks"] > 0


def test_recording_rules_evaluate_on_real_data(observed: tuple[dict, dict]) -> None:
    records = observed[1]["queries"]["records"]
    assert len(records) == 9
    assert {k: v for k, v in records.items() if not isinstance(v, int) or v == 0} == {}


def test_every_port_listens_on_loopback_only(observed: tuple[dict, dict]) -> None:
    listening = observed[1]["listening"]
    assert listening == {name: {"127.0.0.1"} for name in listening}
    listeners = observed[1]["listeners"]
    assert any("haproxy" in cmd for cmd, _, _ in listeners)  # the default ingress really ran
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    elsewhere = [(cmd[:60], ip, port) for cmd, ip, port in listeners if ip not in loopback]
    assert [x for x in elsewhere if not x[0].startswith(RAY_HARDCODED)] == []


def test_report_html_renders_with_every_plot(observed: tuple[dict, dict], page_check: PageCheck) -> None:
    assert page_check(observed[1]["dir"] / "report.html") == {"images": 4, "broken": 0}
