"""``olsim bench scale``: how olsim's costs grow with replicas and with tasks (the scaling study).

Serving, per replica count (one local Ray, replicas of the same Predictor behind the default
ingress, no learner; the registry without a gate so that only serving is measured):

- req/s: hey, one row per request, ``clients`` concurrent, median of ``repeats`` runs;
- staleness: ``publishes`` new versions at ``publish_hz`` with no other load, from the registry's
  accept to each replica's acknowledgement (p50/p99/max), and how many acknowledgements arrived.

Evaluation, per task count (synthetic tasks: Gaussian blobs, 2 classes each, 64 features; no Ray,
one torch thread as in the evaluator actor), per published version:

- the evaluator scoring it on every task's held-out test split (``Evaluator.record``);
- the registry's gate judging a candidate on every task's validation split (``Gate.check``);
- the evaluator setting its per-task gauges (``Telemetry.show_version``) and one scrape of the
  ``olsim_*`` endpoint rendered (bytes and time; Prometheus pulls this every scrape interval).
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from olsim.deploy.bench import torch_threads
from olsim.deploy.markdown import write_section
from olsim.deploy.scenario.spec import Scenario

log = logging.getLogger(__name__)

START = "<!-- olsim bench scale: start -->"
END = "<!-- olsim bench scale: end -->"
ROUTE = "/bench-scale"


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def serving_row(
    scenario: Scenario,
    replicas: int,
    body: Path,
    requests: int,
    clients: int,
    repeats: int,
    publishes: int,
    publish_hz: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Deploy ``replicas`` replicas, measure req/s and swap staleness, tear down."""
    from olsim.deploy.bench.serve import measure
    from olsim.deploy.run.cluster import get, wait_until
    from olsim.deploy.run.stack import ServingStack
    from olsim.learner.model import build_model
    from olsim.learner.snapshot import Snapshot

    spec = scenario.learner.model
    cfg = scenario.serving.model_copy(update={"replicas": replicas})
    stack = ServingStack(
        scenario.model_copy(update={"serving": cfg}),
        app_name=f"bench-scale-{replicas}",
        route_prefix=ROUTE,
        gate=False,
    )
    registry = stack.start_registry()
    snaps = [
        Snapshot.from_model(build_model(spec, seed=seed + i), task=0, step=i) for i in range(publishes + 1)
    ]
    try:
        get(registry.publish.remote(snaps[0]))
        stack.start_serve()
        if not wait_until(stack.replicas_current, 120, f"{replicas} replicas to load version 1"):
            raise RuntimeError(f"{replicas} replicas did not come up within 120 s")
        served = measure(f"http://{cfg.host}:{cfg.port}{ROUTE}/predict", body, requests, clients, repeats)
        before = len(get(registry.swaps.remote()))
        next_at = time.monotonic()
        for snap in snaps[1:]:
            get(registry.publish.remote(snap))
            next_at += 1.0 / publish_hz
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_until(stack.replicas_current, 30, "replicas to serve the last version")
        swaps = get(registry.swaps.remote())[before:]
        staleness = [max(0.0, s.staleness_s) * 1e3 for s in swaps]
        return {
            "replicas": replicas,
            "rps": served["rps"],
            "rps_runs": served["rps_runs"],
            "rps_per_replica": served["rps"] / replicas,
            "failed": served["failed"],
            "sent": served["sent"],
            "p50_ms": served["p50_ms"],
            "p99_ms": served["p99_ms"],
            "staleness_ms": {
                "p50": _p(staleness, 50),
                "p99": _p(staleness, 99),
                "max": max(staleness, default=None),
            },
            "swaps_acked": len(swaps),
            "swaps_expected": publishes * replicas,
        }
    finally:
        stack.stop()


def serving_scale(
    scenario: Scenario,
    replica_counts: list[int],
    work: Path,
    requests: int = 3000,
    clients: int = 16,
    repeats: int = 3,
    publishes: int = 20,
    publish_hz: float = 2.0,
) -> list[dict[str, Any]]:
    """:func:`serving_row` for each replica count, on one local Ray (or the one already running)."""
    from olsim.deploy.bench.serve import request_bodies
    from olsim.deploy.run.cluster import connect_ray

    body = request_bodies(work, [1])[1]
    started = connect_ray(None)
    try:
        rows = []
        for n in replica_counts:
            row = serving_row(scenario, n, body, requests, clients, repeats, publishes, publish_hz)
            log.warning(
                "%d replicas: %.0f req/s, staleness p99 %.1f ms, %d/%d acks",
                n,
                row["rps"],
                row["staleness_ms"]["p99"] or float("nan"),
                row["swaps_acked"],
                row["swaps_expected"],
            )
            rows.append(row)
        return rows
    finally:
        if started:
            import ray

            ray.shutdown()


def evaluation_row(n_tasks: int, versions: int, seed: int = 0) -> dict[str, Any]:
    """Per-version evaluation cost with ``n_tasks`` synthetic tasks (medians over ``versions``)."""
    from prometheus_client import generate_latest

    from olsim.learner.actors.telemetry import Telemetry
    from olsim.learner.evaluator import Evaluator
    from olsim.learner.gate import Gate, GateConfig
    from olsim.learner.model import ModelSpec, build_model
    from olsim.learner.snapshot import Snapshot
    from olsim.stream.tasks import build_tasks

    tasks = build_tasks("synthetic", n_tasks, seed)
    spec = ModelSpec()
    ev, gate, telemetry = Evaluator(tasks), Gate(tasks, spec, GateConfig()), Telemetry()
    snaps = [
        Snapshot.from_model(build_model(spec, seed=seed + i), task=n_tasks - 1, seen=n_tasks, step=i)
        for i in range(versions + 1)
    ]
    served = gate.scores(snaps[0])
    score_ms, gate_ms, export_ms, scrape_ms, scrape_bytes = [], [], [], [], 0
    with torch_threads(1):
        for version, snap in enumerate(snaps[1:], start=1):
            t = time.perf_counter()
            ev.record(version, snap, published_at=time.time())
            score_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            gate.check(snap, served)
            gate_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            telemetry.show_version(ev, version)
            export_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            scrape_bytes = len(generate_latest(telemetry.registry))
            scrape_ms.append((time.perf_counter() - t) * 1e3)
    return {
        "tasks": n_tasks,
        "test_rows": sum(len(t.test) for t in tasks),
        "held_out_bytes": sum(t.test.x.nbytes + t.val.x.nbytes for t in tasks),
        "score_ms": statistics.median(score_ms),
        "gate_ms": statistics.median(gate_ms),
        "export_ms": statistics.median(export_ms),
        "scrape_ms": statistics.median(scrape_ms),
        "scrape_bytes": scrape_bytes,
    }


def evaluation_scale(task_counts: list[int], versions: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    for n in task_counts:
        rows.append(evaluation_row(n, versions, seed))
        log.warning("%d tasks: score %.2f ms/version", n, rows[-1]["score_ms"])
    return rows


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def render(
    serving: list[dict[str, Any]], evaluation: list[dict[str, Any]], command: str, clients: int
) -> str:
    lines = [START, f"Command: `{command}`.", ""]
    if serving:
        lines += [
            f"Serving (MLP 64-256-10, one row per request, {clients} hey clients, median of runs; staleness: "
            "registry accept -> replica acknowledgement, versions published with no other load):",
            "",
            "| replicas | req/s | req/s per replica | p50 / p99 ms | failed / sent "
            "| staleness p50 / p99 / max ms | acks / expected |",
            "|---|---|---|---|---|---|---|",
        ]
        base = serving[0]["rps"]
        for r in serving:
            st = r["staleness_ms"]
            lines.append(
                f"| {r['replicas']} | {r['rps']:,.0f} ({r['rps'] / base:.2f}x) | {r['rps_per_replica']:,.0f} "
                f"| {_f(r['p50_ms'])} / {_f(r['p99_ms'])} | {r['failed']} / {r['sent']} "
                f"| {_f(st['p50'])} / {_f(st['p99'])} / {_f(st['max'])} "
                f"| {r['swaps_acked']} / {r['swaps_expected']} |"
            )
        lines.append("")
    if evaluation:
        lines += [
            "Evaluation cost per published version (synthetic tasks, one torch thread, medians):",
            "",
            "| tasks | held-out rows scored | held-out data KiB | evaluator scoring ms | gate check ms "
            "| gauges set ms | scrape render ms | scrape bytes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in evaluation:
            lines.append(
                f"| {r['tasks']} | {r['test_rows']:,} | {r['held_out_bytes'] / 1024:,.0f} "
                f"| {r['score_ms']:.2f} | {r['gate_ms']:.2f} | {r['export_ms']:.3f} "
                f"| {r['scrape_ms']:.2f} | {r['scrape_bytes']:,} |"
            )
    lines.append(END)
    return "\n".join(lines)


def write(
    serving: list[dict[str, Any]], evaluation: list[dict[str, Any]], out: Path, command: str, clients: int
) -> None:
    write_section(out, render(serving, evaluation, command, clients), title="Scaling (`olsim bench scale`)")
