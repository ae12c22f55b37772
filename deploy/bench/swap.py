"""``olsim bench swap``: olsim's long-poll hot swap against Ray Serve's ``reconfigure``, same run.

Both mechanisms serve the same model through the same deployment class, behind the same registry
and gate, under the same open-loop load. Per round and mechanism: deploy, then ``cycles`` times
a steady window (``window_s`` seconds of load, no new version: the baseline) followed by a swapping
window (the same load while a new version is published every ``1/publish_hz`` s), then tear down.
Mechanisms alternate within each round; the table reports medians over rounds.

- long-poll (olsim): ``registry.publish`` and nothing else; each replica's follower thread is
  already waiting on the registry and swaps a reference.
- reconfigure (Ray Serve): ``registry.publish`` then a Serve *config* update that changes only the
  deployment's ``user_config`` (what ``serve deploy`` sends; Serve treats it as a lightweight,
  in-place update and calls ``Predictor.reconfigure`` on every replica, which loads the registry's
  current version). ``serve.run`` from Python would not do: it gives every deployment a random code
  version, so each call replaces the replicas (measured: ~10 s per update).

Staleness is registry accept -> replica serving it, from the replicas' own acknowledgements.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from olsim.deploy.load.generator import LoadGenerator, Sample
from olsim.deploy.scenario.spec import Scenario

log = logging.getLogger(__name__)

START = "<!-- olsim bench swap: start -->"
END = "<!-- olsim bench swap: end -->"
MECHANISMS = ("long-poll", "reconfigure")


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _latencies(samples: list[Sample]) -> list[float]:
    return [s.latency_s * 1e3 for s in samples if s.status == 200]


def _phase(
    mechanism: str,
    scenario: Scenario,
    cycles: int,
    window_s: float,
    rps: float,
    publish_hz: float,
    seed: int,
) -> dict[str, Any]:
    from olsim.deploy.run.cluster import get, wait_until
    from olsim.deploy.run.stack import ServingStack
    from olsim.learner.model import build_model
    from olsim.learner.snapshot import Snapshot

    spec = scenario.learner.model
    cfg = scenario.serving.model_copy(update={"updates": mechanism})
    stack = ServingStack(scenario.model_copy(update={"serving": cfg}), app_name=f"bench-swap-{mechanism}")
    registry = stack.start_registry()
    n_versions = int(cycles * (window_s + 1) * publish_hz) + 2
    snaps = [Snapshot.from_model(build_model(spec, seed=seed + i), task=0, step=i) for i in range(n_versions)]
    load: LoadGenerator | None = None

    def deploy_config(generation: int) -> None:
        """Serve's declarative path (as ``serve deploy``), blocking until the app is running."""
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        from olsim.deploy.run.cluster import NAMESPACE

        app = {
            "name": stack.app_name,
            "route_prefix": stack.route_prefix,
            "import_path": "olsim.serving.app:app_builder",
            "args": {
                "registry_name": stack.registry_name,
                "namespace": NAMESPACE,
                "model": spec.model_dump(mode="json"),
                "serving": cfg.model_dump(mode="json"),
            },
            "deployments": [{"name": "Predictor", "user_config": {"generation": generation}}],
        }
        client = _get_global_client()
        if client is None:
            raise RuntimeError("Serve is not running")
        client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}), _blocking=True)

    try:
        get(registry.publish.remote(snaps[0]))
        if mechanism == "reconfigure":
            from ray import serve

            serve.start(http_options={"host": cfg.host, "port": cfg.port})
            deploy_config(1)
        else:
            stack.start_serve()
        wait_until(stack.replicas_current, 60, "replicas to load version 1")
        rows = np.concatenate([t.test.x for t in scenario.stream.build_tasks(scenario.seed)])
        url = f"http://{cfg.host}:{cfg.port}/predict"
        load = LoadGenerator(url, rows, rps=rps, seed=seed)
        load.start()
        time.sleep(1.0)  # warm the connections
        swaps_before = len(get(registry.swaps.remote()))
        update_s: list[float] = []
        steady: list[Sample] = []
        during: list[Sample] = []
        windows: list[tuple[float, float, bool]] = []
        generation, swap_time = 1, 0.0
        pending = iter(snaps[1:])
        for _ in range(cycles):  # steady and swapping windows alternate, so drift hits both alike
            t0 = time.time()
            time.sleep(window_s)
            windows.append((t0, time.time(), False))
            t0 = time.time()
            next_at = time.monotonic()
            while time.time() - t0 < window_s:
                t = time.perf_counter()
                result = get(registry.publish.remote(next(pending)))
                if result.version is None:
                    raise RuntimeError(f"bench candidate rejected: {result.reason} {result.detail}")
                generation += 1
                if mechanism == "reconfigure":
                    deploy_config(generation)  # blocks until the app is running again
                update_s.append(time.perf_counter() - t)
                next_at += 1.0 / publish_hz
                time.sleep(max(0.0, min(next_at - time.monotonic(), t0 + window_s - time.time())))
            windows.append((t0, time.time(), True))
            swap_time += time.time() - t0
        wait_until(stack.replicas_current, 30, "replicas to serve the last version")
        time.sleep(0.5)  # let requests due in the last window finish
        load.stop()
        for start, end, swapping in windows:
            (during if swapping else steady).extend(load.window(start, end))
        swaps = [s for s in get(registry.swaps.remote())[swaps_before:] if s.generation > 1]
        staleness = [max(0.0, s.staleness_s) * 1e3 for s in swaps]
        expected = (generation - 1) * cfg.replicas
        return {
            "mechanism": mechanism,
            "versions": generation - 1,
            "publish_per_s": (generation - 1) / swap_time,
            "swaps_acked": len(swaps),
            "swaps_expected": expected,
            "staleness_ms": {
                "p50": _p(staleness, 50),
                "p99": _p(staleness, 99),
                "max": max(staleness, default=None),
            },
            "update_call_ms": _p([u * 1e3 for u in update_s], 50),
            "steady": _window_stats(steady),
            "swapping": _window_stats(during),
        }
    finally:
        if load is not None:
            load.stop()
        stack.stop()


def _window_stats(samples: list[Sample]) -> dict[str, Any]:
    lat = _latencies(samples)
    return {
        "requests": len(samples),
        "failed": sum(1 for s in samples if s.status != 200),
        "p50_ms": _p(lat, 50),
        "p99_ms": _p(lat, 99),
        "max_ms": max(lat, default=None),
    }


def bench_swap(
    scenario: Scenario,
    rounds: int = 3,
    cycles: int = 4,
    window_s: float = 5.0,
    rps: float = 50.0,
    publish_hz: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Alternate the mechanisms ``rounds`` times on one local Ray cluster; returns every phase."""
    from olsim.deploy.run.cluster import connect_ray

    started = connect_ray(None)
    results: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            order = MECHANISMS if r % 2 == 0 else MECHANISMS[::-1]
            for mechanism in order:
                res = _phase(mechanism, scenario, cycles, window_s, rps, publish_hz, seed + 100 * r)
                res["round"] = r
                log.warning(
                    "[round %d] %s staleness p99 %.1f ms, p99 ms steady %.1f swapping %.1f, failed %d",
                    r,
                    mechanism,
                    res["staleness_ms"]["p99"] or float("nan"),
                    res["steady"]["p99_ms"] or float("nan"),
                    res["swapping"]["p99_ms"] or float("nan"),
                    res["steady"]["failed"] + res["swapping"]["failed"],
                )
                results.append(res)
    finally:
        if started:
            import ray

            ray.shutdown()
    return results


def _med(values: list[float | None], fmt: str = "{:.1f}") -> str:
    vs = [v for v in values if v is not None]
    return fmt.format(statistics.median(vs)) if vs else "n/a"


def render(results: list[dict[str, Any]], command: str, replicas: int, rps: float, publish_hz: float) -> str:
    lines = [
        START,
        f"Command: `{command}`. {replicas} replicas, MLP 64-256-10, one row per request at {rps:g} req/s "
        f"(open loop, latency from the scheduled send time); steady windows (no new version) alternate "
        f"with swapping windows (a new version every {1 / publish_hz:g} s); p99 ratio = swapping p99 / "
        "steady p99 per round. Medians over rounds, mechanisms alternating within each round.",
        "",
        "| mechanism | staleness p50 ms | staleness p99 ms | staleness max ms | update call ms | "
        "versions/s | steady p99 ms | swapping p99 ms | p99 ratio | failed / requests | swaps acked |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MECHANISMS:
        rs = [r for r in results if r["mechanism"] == m]
        if not rs:
            continue
        failed = sum(r["steady"]["failed"] + r["swapping"]["failed"] for r in rs)
        requests = sum(r["steady"]["requests"] + r["swapping"]["requests"] for r in rs)
        ratios = [
            r["swapping"]["p99_ms"] / r["steady"]["p99_ms"]
            for r in rs
            if r["swapping"]["p99_ms"] and r["steady"]["p99_ms"]
        ]
        cells = [
            m,
            _med([r["staleness_ms"]["p50"] for r in rs]),
            _med([r["staleness_ms"]["p99"] for r in rs]),
            _med([r["staleness_ms"]["max"] for r in rs]),
            _med([r["update_call_ms"] for r in rs]),
            _med([r["publish_per_s"] for r in rs], "{:.2f}"),
            _med([r["steady"]["p99_ms"] for r in rs]),
            _med([r["swapping"]["p99_ms"] for r in rs]),
            _med(list(ratios), "{:.2f}"),
            f"{failed} / {requests}",
            f"{sum(r['swaps_acked'] for r in rs)} / {sum(r['swaps_expected'] for r in rs)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def write(
    results: list[dict[str, Any]], out: Path, command: str, scenario: Scenario, rps: float, hz: float
) -> None:
    from olsim.deploy.markdown import write_section

    section = render(results, command, scenario.serving.replicas, rps, hz)
    write_section(out, section, title="Hot swap: long-poll vs Serve reconfigure (`olsim bench swap`)")
