"""One ``olsim run``: start (or join) Ray, wire registry, evaluator, Serve and learner, drive, report."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deploy.scenario import Scenario

log = logging.getLogger(__name__)

NAMESPACE = "olsim"
APP_NAME = "olsim"


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float | None = Field(None, gt=0, description="stop the stream after this many seconds")
    report_dir: Path = Path("out")
    address: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    load_rps: float = Field(
        20.0, ge=0, description="/predict requests per second while the run lasts; 0 = none"
    )
    settle_timeout_s: float = Field(30.0, gt=0)
    stall_timeout_s: float = Field(120.0, gt=0, description="fail if the learner makes no progress this long")


class RunError(RuntimeError):
    """A run could not start or did not finish; the message is one line meant for users."""


Progress = Callable[[dict[str, Any]], None]
Hook = Callable[[dict[str, Any]], None]


def _swap_table(swaps: list[Any]) -> list[dict[str, Any]]:
    by_version: dict[int, dict[str, Any]] = {}
    for s in swaps:
        row = by_version.setdefault(
            s.version, {"version": s.version, "published_at": s.published_at, "applied": {}}
        )
        row["applied"][s.replica] = s.applied_at
    return [by_version[v] for v in sorted(by_version)]


def _staleness_ms(swaps: list[Any]) -> dict[str, float | None]:
    st = np.array([max(0.0, s.staleness_s) for s in swaps]) * 1e3
    if len(st) == 0:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": float(np.percentile(st, 50)), "p99": float(np.percentile(st, 99)), "max": float(st.max())}


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    log.warning("timed out waiting for %s after %.0fs", what, timeout_s)
    return False


def run(
    scenario: Scenario, opts: RunOptions, progress: Progress | None = None, on_finished: Hook | None = None
) -> dict[str, Any]:
    """Run ``scenario`` end to end and return the report (also written to ``opts.report_dir``).

    ``on_finished(report)`` runs after the report is written and before anything is torn down,
    while Serve and the metrics endpoint still answer (tests scrape there; ``--linger`` waits there).
    """
    import ray
    from ray import serve

    from deploy.load import LoadGenerator
    from learner.actor import LearnerActor
    from learner.evaluator_actor import EvaluatorActor
    from serving.app import build_app
    from serving.registry import Registry

    def get(ref: Any) -> Any:  # ray.get, typed loosely: actor handles are untyped here
        return ray.get(ref)

    def actor(cls: type, **options: Any) -> Any:
        return ray.remote(cls).options(**options)

    started_ray = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=opts.address,
                namespace=NAMESPACE,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            hint = (
                " (a cluster started with `ray start` uses token auth in Ray 2.60: run with"
                " RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
                if opts.address
                else ""
            )
            raise RunError(
                f"cannot {'join Ray at ' + opts.address if opts.address else 'start Ray'}: {first}{hint}"
            ) from None
        started_ray = True
    run_id = uuid.uuid4().hex[:8]
    seed = scenario.seed
    cfg = scenario.serving
    actors: list[Any] = []
    load: LoadGenerator | None = None
    t_start = time.time()
    try:
        registry_name = f"olsim-registry-{run_id}"
        registry = actor(
            Registry, name=registry_name, namespace=NAMESPACE, num_cpus=0, max_concurrency=1000
        ).remote()
        actors.append(registry)
        evaluator = actor(EvaluatorActor, num_cpus=0, max_concurrency=8).remote(
            scenario.stream, seed, registry, opts.metrics_host, opts.metrics_port
        )
        actors.append(evaluator)
        try:
            metrics_port = get(evaluator.port.remote())
        except Exception as exc:  # typically: the port is taken
            raise RunError(
                f"metrics endpoint could not start on {opts.metrics_host}:{opts.metrics_port} "
                f"({type(exc).__name__}); pick another with --metrics-port"
            ) from None
        serve.start(
            http_options={"host": cfg.host, "port": cfg.port}, logging_config={"log_level": "WARNING"}
        )
        serve.run(
            build_app(registry_name, NAMESPACE, scenario.learner.model, cfg),
            name=APP_NAME,
            route_prefix="/",
        )
        learner = actor(LearnerActor, num_cpus=0, max_concurrency=4).remote(
            scenario.stream, scenario.learner, seed, registry, evaluator
        )
        actors.append(learner)
        get(learner.start.remote())
        log.info(
            "run started run_id=%s metrics=%s:%d serve=%s:%d",
            run_id,
            opts.metrics_host,
            metrics_port,
            cfg.host,
            cfg.port,
        )

        deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        truncated = False
        last_offset, last_move = -1, time.monotonic()
        while True:
            p = get(learner.progress.remote())
            if p["offset"] != last_offset or p["done"]:
                last_offset, last_move = p["offset"], time.monotonic()
            elif time.monotonic() - last_move > opts.stall_timeout_s:
                raise RunError(
                    f"learner made no progress for {opts.stall_timeout_s:.0f}s at offset {p['offset']}"
                    + (f": {p['error']}" if p["error"] else "")
                )
            if load is None and opts.load_rps > 0 and p["versions"]:
                # start once a version exists: before that, replicas rightly answer 503
                tasks = scenario.stream.build_tasks(seed)
                rows = np.concatenate([t.test.x for t in tasks])
                load = LoadGenerator(
                    f"http://{cfg.host}:{cfg.port}/predict", rows, rps=opts.load_rps, seed=seed
                )
                load.start()
            if progress is not None:
                progress({**p, "elapsed_s": time.time() - t_start, **get(evaluator.live.remote())})
            if p["done"]:
                break
            if deadline is not None and time.monotonic() > deadline:
                truncated = True
                get(learner.stop.remote())
                _wait(
                    lambda: bool(get(learner.progress.remote())["done"]),
                    opts.settle_timeout_s,
                    "learner stop",
                )
                p = get(learner.progress.remote())
                break
            time.sleep(0.25)
        if p["error"]:
            raise RunError(f"learner failed: {p['error']}")

        last = get(registry.latest.remote())
        _wait(lambda: get(evaluator.evaluated.remote()) >= last, opts.settle_timeout_s, "evaluator")

        def replicas_current() -> bool:
            acked = get(registry.replica_versions.remote())
            return len(acked) >= cfg.replicas and all(v >= last for v in acked.values())

        converged = _wait(replicas_current, opts.settle_timeout_s, "replicas to serve the last version")
        if load is not None:
            load.stop()
        swaps = get(registry.swaps.remote())
        ev = get(evaluator.report.remote())
        report: dict[str, Any] = {
            "scenario": scenario.name,
            "strategy": scenario.learner.strategy.kind,
            "seed": seed,
            "run_id": run_id,
            "started_at": t_start,
            "duration_s": time.time() - t_start,
            "truncated": truncated,
            "tasks": ev["tasks"],
            "tasks_completed": len(ev["accuracy_matrix"]),
            "accuracy_matrix": ev["accuracy_matrix"],
            "baseline_accuracy": ev["baseline_accuracy"],
            "acc": ev["acc"],
            "bwt": ev["bwt"],
            "fwt": ev["fwt"],
            "forgetting": ev["forgetting"],
            "task_il": ev["task_il"],
            "routing_accuracy": ev["routing_accuracy"],
            "versions_published": last,
            "replica_versions": get(registry.replica_versions.remote()),
            "replicas_converged": converged,
            "swaps": _swap_table(swaps),
            "swap_staleness_ms": _staleness_ms(swaps),
            "timeline": ev["timeline"],
            "boundaries": scenario.learner.boundaries,
            "drifts_detected": p["drifts"],
            "learner": {k: p[k] for k in ("steps", "samples", "offset", "total", "prequential_accuracy")},
            "metrics_endpoint": f"http://{opts.metrics_host}:{metrics_port}/metrics",
            "scenario_config": scenario.model_dump(mode="json"),
        }
        if load is not None:
            report["requests"] = load.summary()
        _write(report, opts.report_dir)
        if on_finished is not None:
            on_finished(report)
        return report
    finally:
        if load is not None:
            load.stop()
        for a in actors[1:]:  # stop the followers before the registry they follow goes away
            try:
                get(a.stop.remote())
            except Exception as exc:
                log.debug("stop error=%r", exc)
        try:
            serve.delete(APP_NAME)
        except Exception as exc:  # nothing deployed yet
            log.debug("serve.delete error=%r", exc)
        for a in reversed(actors):
            ray.kill(a)
        if started_ray:
            ray.shutdown()  # our own local cluster: Serve goes with it


def _write(report: dict[str, Any], out: Path) -> None:
    import json

    from deploy.report import render_text

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.txt").write_text(render_text(report))
