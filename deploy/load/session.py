"""``olsim load``: load-test olsim's ``/predict`` while the learner keeps publishing, and report what
users saw.

Two modes:

- ``closed`` (default): Locust (``deploy/load/locustfile.py``) headless, in its own process (Locust
  patches the standard library with gevent, which must not reach Ray), ``users`` users each
  sending the next request as soon as the last is answered: single-row and batched requests drawn
  from held-out data, every response checked against the schema.
- ``open``: requests at a fixed arrival rate (``rps``) from a thread pool
  (:class:`olsim.deploy.load.generator.LoadGenerator`), latency counted from each request's
  *scheduled* send time.

Retries: the open loop sends a request a second time only when its reused keep-alive connection was
closed without an answer (as the run's own load does), and reports each such request (``retried``,
with the reason); Locust's users never retry, so there the same race is a failed request.

A closed loop slows down with the server: during a stall (a swap, a replica restart) its users
wait instead of sending, so the requests that would have queued are never sent and the tail
latency looks better than users would see (coordinated omission). Measure swap latency open-loop.

Against ``--url`` the swaps marked are those users saw (the first response from each new version);
when ``olsim load`` starts olsim itself (``--scenario``) it also has the registry's own swap times.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from olsim.deploy.errors import UserError, first_line
from olsim.deploy.load.generator import LoadGenerator, summarize_rows
from olsim.deploy.load.traffic import Traffic, held_out_traffic

log = logging.getLogger(__name__)


class LoadError(UserError, RuntimeError):
    """The load test could not run; the message is one line meant for users."""


class LoadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="a running olsim (default: start --scenario)")
    scenario: str = Field("split-digits", description="scenario to start (and whose held-out rows to send)")
    mode: Literal["closed", "open"] = Field("closed", description="closed: Locust users; open: fixed rate")
    users: int = Field(16, ge=1, le=1000, description="closed loop: concurrent users")
    spawn_rate: float | None = Field(
        None, gt=0, description="users started per second (default: all at once)"
    )
    rps: float = Field(200.0, gt=0, description="open loop: requests per second")
    duration_s: float = Field(30.0, gt=0, le=3600, description="seconds of load")
    batch_rows: int = Field(32, ge=1, le=4096, description="rows per batched request")
    batch_share: float = Field(0.2, ge=0, le=1, description="share of requests that are batched")
    out: Path = Field(Path("out/load"), description="report directory")
    seed: int = Field(0, ge=0)
    serve_port: int | None = Field(
        None, ge=1, le=65535, description="HTTP port of the olsim it starts (default: the scenario's, 8000)"
    )
    ray_metrics_port: int = Field(
        8090, ge=0, le=65535, description="Ray's metrics export port of the olsim it starts (0: any)"
    )

    @model_validator(mode="after")
    def _loopback_only(self) -> LoadOptions:
        if self.url is not None:
            host = httpx.URL(self.url).host
            if host not in {"127.0.0.1", "localhost", "::1"}:
                raise ValueError(f"load tests target this machine's loopback only, not {host!r}")
        return self


def wait_serving(url: str, timeout_s: float, alive: Any = None) -> int:
    """Wait until ``url`` serves a model version; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise LoadError("olsim stopped before it served a version")
        try:
            body = httpx.get(f"{url}/healthz", timeout=2).json()
            if body.get("model_version") is not None:
                return int(body["model_version"])
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    raise LoadError(f"{url} served no model version within {timeout_s:.0f}s")


def held_out_requests(scenario: str, seed: int | None = None) -> Traffic:
    """Requests from every task's held-out rows of ``scenario``, for the model it serves (/predict
    rows, or /generate prompts)."""
    from olsim.deploy.scenario.plugins import resolve
    from olsim.deploy.scenario.spec import load_scenario

    s = resolve(load_scenario(scenario))
    tasks = s.stream.build_tasks(s.seed if seed is None else seed)
    return held_out_traffic(tasks, s.learner.model.objective, s.serving)


def run_locust(
    url: str, opts: LoadOptions, rows_path: Path, samples_path: Path, bodies_path: Path | None = None
) -> None:
    locustfile = resources.files("olsim.deploy.load") / "locustfile.py"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--users",
        str(opts.users),
        "--spawn-rate",
        str(opts.spawn_rate or opts.users),
        "--run-time",
        f"{opts.duration_s:g}s",
        "--host",
        url,
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    env = (
        os.environ
        | {
            "OLSIM_LOAD_ROWS": str(rows_path),
            "OLSIM_LOAD_SAMPLES": str(samples_path),
            "OLSIM_LOAD_BATCH_ROWS": str(opts.batch_rows),
            "OLSIM_LOAD_BATCH_SHARE": str(opts.batch_share),
        }
        | ({"OLSIM_LOAD_GENERATE": str(bodies_path)} if bodies_path is not None else {})
    )
    log.info("locust users=%d duration=%gs host=%s", opts.users, opts.duration_s, url)
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=opts.duration_s + 120)
    except subprocess.TimeoutExpired:
        raise LoadError(f"locust did not finish within {opts.duration_s + 120:.0f}s") from None
    if done.returncode != 0 or not samples_path.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LoadError(f"locust failed (exit {done.returncode}): {tail[0]}")


def run_open(url: str, opts: LoadOptions, traffic: Traffic) -> list[list[Any]]:
    gen = LoadGenerator.sending(traffic, url, rps=opts.rps, seed=opts.seed, workers=64)
    gen.start()
    time.sleep(opts.duration_s)
    gen.stop()
    samples: list[list[Any]] = gen.summary()["samples"]
    return samples


def observed_swaps(samples: list[list[Any]]) -> list[dict[str, Any]]:
    """The first answer from each version users had not seen yet, in send order.

    >>> observed_swaps([[1.0, 5, 200, 3, "a"], [1.1, 5, 200, 3, "b"], [1.5, 5, 503, None, None],
    ...                 [2.0, 5, 200, 4, "a"], [2.1, 5, 200, 3, "b"]])
    [{'at': 1.0, 'version': 3}, {'at': 2.0, 'version': 4}]
    """
    seen: set[int] = set()
    out = []
    for s in sorted(samples, key=lambda r: r[0]):
        if s[2] == 200 and s[3] is not None and s[3] not in seen:
            seen.add(s[3])
            out.append({"at": s[0], "version": s[3]})
    return out


def summarize(samples: list[list[Any]], opts: LoadOptions, started_at: float) -> dict[str, Any]:
    """What users saw: achieved vs requested rate, latency percentiles, errors by status, versions.

    ``samples`` rows: [unix time sent, latency ms, status (0 = no answer), version, replica, rows,
    retried] (rows: 1 when absent; retried: why the request was sent twice, None if it was not).

    >>> rows = [[100.0 + i / 10, 10.0 + i, 200, 1 + i // 5, "a", 1] for i in range(10)]
    >>> rows += [[101.0, 50.0, 200, 2, "a", 32], [101.1, 5.0, 503, None, None, 1]]
    >>> r = summarize(rows, LoadOptions(), 100.0)
    >>> r["count"], r["errors"], r["by_status"], r["versions_served"], r["latency_ms"]["max"], r["retried"]
    (12, 1, {'200': 11, '503': 1}, {'1': 5, '2': 6}, 50.0, 0)
    >>> r["by_rows"]["32"]["count"], r["by_rows"]["1"]["p50"], round(r["achieved_rps"], 1)
    (1, 14.5, 10.9)
    """

    def size(s: list[Any]) -> int:
        return int(s[5]) if len(s) > 5 else 1

    overall = summarize_rows(samples)
    by_rows: dict[str, dict[str, Any]] = {}
    for n in sorted({size(s) for s in samples}):
        part = summarize_rows([s for s in samples if size(s) == n])
        lat = part["latency_ms"]
        by_rows[str(n)] = {
            "count": part["count"],
            "errors": part["errors"],
            "p50": lat["p50"],
            "p99": lat["p99"],
        }
    per_version: dict[str, int] = {}
    for s in samples:
        if s[2] == 200:
            per_version[str(s[3])] = per_version.get(str(s[3]), 0) + 1
    span = max((s[0] for s in samples), default=started_at) - min((s[0] for s in samples), default=started_at)
    achieved = len(samples) / max(span, 1e-9) if len(samples) > 1 else 0.0
    return {
        "mode": opts.mode,
        "users": opts.users if opts.mode == "closed" else None,
        "requested_rps": opts.rps if opts.mode == "open" else None,
        "achieved_rps": achieved,
        "duration_s": opts.duration_s,
        "count": overall["count"],
        "errors": overall["errors"],
        "error_rate": overall["errors"] / overall["count"] if samples else None,
        "by_status": overall["by_status"],
        "retried": overall["retried"],
        "retried_by_reason": overall["retried_by_reason"],
        "latency_ms": overall["latency_ms"],
        "by_rows": by_rows,
        "versions_served": per_version,
        "swaps_observed": observed_swaps(samples),
        "batch_rows": opts.batch_rows,
        "batch_share": opts.batch_share if opts.mode == "closed" else 0.0,
    }


def render_text(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    load = (
        f"{r['users']} users (closed loop)"
        if r["mode"] == "closed"
        else f"{r['requested_rps']:g} req/s requested (open loop)"
    )
    lines = [
        f"olsim load: {load}, {r['duration_s']:g} s",
        f"requests {r['count']}   achieved {r['achieved_rps']:.1f} req/s   errors {r['errors']}"
        + (f" ({100 * r['error_rate']:.2f}%)" if r["error_rate"] is not None else "")
        + f"   by status {r['by_status']}   retried {r['retried']}",
        "latency ms   " + "   ".join(f"{k} {ms(v)}" for k, v in lat.items()),
        *(
            f"  {n} row{'s' if n != '1' else ''}/request: {b['count']} requests, {b['errors']} errors, "
            f"p50 {ms(b['p50'])} p99 {ms(b['p99'])}"
            for n, b in r["by_rows"].items()
        ),
        f"versions served {len(r['versions_served'])}   swaps seen by users {len(r['swaps_observed'])}",
    ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    from olsim.deploy.report.plots import Marker, line_chart
    from olsim.deploy.report.render import latency_series

    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=2))
    (out / "load.txt").write_text(render_text(report))
    t0 = report["started_at"]
    swaps = report.get("registry_swaps") or report["swaps_observed"]
    marks = [Marker(s["at"] - t0, f"v{s['version']}", "#d0d0d0") for s in swaps]
    title = (
        "/predict latency under load ("
        + ("closed loop, Locust" if report["mode"] == "closed" else "open loop")
        + ")"
    )
    svg = line_chart(
        latency_series(report["samples"], t0),
        marks,
        title=title,
        x_label="seconds since the load started (request send time)",
        y_label="latency (ms)",
        marker_legend=[("swap", "#d0d0d0", False)],
    )
    (out / "load-latency.svg").write_text(svg)


def load(opts: LoadOptions) -> dict[str, Any]:
    """Run the load test (starting olsim first unless ``opts.url``) and write its report to ``opts.out``."""
    opts.out.mkdir(parents=True, exist_ok=True)
    traffic = held_out_requests(opts.scenario)
    olsim = None if opts.url is not None else _Olsim(opts)
    url = opts.url or olsim.url  # type: ignore[union-attr]
    try:
        if olsim is not None:
            olsim.start()
        wait_serving(url, 180.0, None if olsim is None else olsim.alive)
        started = time.time()
        if opts.mode == "closed":
            rows_path, samples_path = opts.out / "rows.npy", opts.out / "samples.json"
            bodies_path = None
            if traffic.path == "/generate":
                bodies_path = opts.out / "generate.json"
                bodies_path.write_text(json.dumps(traffic.bodies))
            else:
                np.save(rows_path, traffic.rows, allow_pickle=False)
            samples_path.unlink(missing_ok=True)
            run_locust(url, opts, rows_path, samples_path, bodies_path)
            samples = json.loads(samples_path.read_text())
        else:
            samples = run_open(url, opts, traffic)
    except BaseException:
        if olsim is not None:
            olsim.stop(quiet=True)  # the error that got us here is the one to report
        raise
    run_report = None if olsim is None else olsim.stop()
    report = summarize(samples, opts, started) | {"url": url, "started_at": started, "samples": samples}
    if run_report is not None:
        report["run_dir"] = str(opts.out / "run")
        report["registry_swaps"] = [
            {"at": s["published_at"], "version": s["version"], "kind": s["kind"]}
            for s in run_report["swaps"]
            if started <= s["published_at"] <= started + opts.duration_s
        ]
    write(report, opts.out)
    return report


class _Olsim:
    """An ``olsim run`` of ``opts.scenario`` in a background thread, stopped when the load is done."""

    def __init__(self, opts: LoadOptions) -> None:
        from olsim.deploy.scenario.spec import load_scenario

        self.scenario = load_scenario(opts.scenario)
        if opts.serve_port is not None:
            serving = self.scenario.serving.model_copy(update={"port": opts.serve_port})
            self.scenario = self.scenario.model_copy(update={"serving": serving})
        self.ray_metrics_port = opts.ray_metrics_port
        cfg = self.scenario.serving
        self.url = f"http://{cfg.host}:{cfg.port}"
        self.out = opts.out / "run"
        self.stop_event = threading.Event()
        self.report: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.started_ray = False
        self._thread = threading.Thread(target=self._run, name="olsim-run", daemon=True)

    def _run(self) -> None:
        from olsim.deploy.run.driver import run
        from olsim.deploy.run.options import RunOptions

        try:
            opts = RunOptions(
                report_dir=self.out, load_rps=0, metrics_port=0, ray_metrics_port=self.ray_metrics_port
            )
            self.report = run(
                self.scenario, opts, on_finished=self._serve_until_stopped, stop=self.stop_event
            )
        except BaseException as exc:
            self.error = exc

    def _serve_until_stopped(self, _report: dict[str, Any]) -> None:
        """The stream may end before the load does: keep serving until the load is over."""
        self.stop_event.wait()

    def start(self) -> None:
        from olsim.deploy.run.cluster import connect_ray

        # Ray starts here, in the main thread; the run's thread finds it up (and leaves it up)
        self.started_ray = connect_ray(None, self.ray_metrics_port)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, quiet: bool = False) -> dict[str, Any] | None:
        """Stop the run (if it started) and Ray (if this started it); its report, or LoadError if it
        failed (``quiet``: stop without raising, when another error is already on its way)."""
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=300)
        if self.started_ray:
            from olsim.deploy.run.cluster import disconnect_ray

            disconnect_ray()
            self.started_ray = False
        if self.error is not None and not quiet:
            raise LoadError(f"olsim run failed: {first_line(self.error)}") from self.error
        return self.report
