"""One ``olsim run``: start (or join) Ray, wire registry, evaluator, Serve and learner, drive, report.

:class:`Run` adds the evaluator, the learner and the load generator to a
:class:`~olsim.deploy.run.stack.ServingStack`; :func:`run` is the whole thing with teardown.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from olsim.deploy.run.actors import start_evaluator_actor, start_learner_actor
from olsim.deploy.run.cluster import (
    NAMESPACE,
    connect_ray,
    disconnect_ray,
    get,
    ray_metrics_target,
    wait_until,
)
from olsim.deploy.run.ingress import current_ingress
from olsim.deploy.run.options import RunError, RunOptions, resolve_token
from olsim.deploy.run.stack import ServingStack
from olsim.deploy.scenario.expect import check
from olsim.deploy.scenario.faults import Injector, requests_around
from olsim.deploy.scenario.plugins import resolve, runtime_env
from olsim.deploy.scenario.spec import Scenario
from olsim.learner.actors.names import ActorName

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
Hook = Callable[[dict[str, Any]], None]


def swap_table(swaps: list[Any], changes: list[Any]) -> list[dict[str, Any]]:
    """One row per change of the served version: what, when, and when each replica applied it (with
    the bytes it fetched and the weight memory it held at the swap's peak)."""
    rows = {
        c.generation: {
            "generation": c.generation,
            "version": c.version,
            "kind": c.kind,
            "published_at": c.at,
            "applied": {},
            "moved_bytes": {},
            "held_bytes": {},
        }
        for c in changes
    }
    for s in swaps:
        row = rows.setdefault(
            s.generation,
            {
                "generation": s.generation,
                "version": s.version,
                "kind": "publish",
                "published_at": s.published_at,
                "applied": {},
                "moved_bytes": {},
                "held_bytes": {},
            },
        )
        row["applied"][s.replica] = s.applied_at
        row["moved_bytes"][s.replica] = s.moved_bytes
        row["held_bytes"][s.replica] = s.held_bytes
    return [rows[g] for g in sorted(rows)]


def staleness_ms(swaps: list[Any]) -> dict[str, float | None]:
    st = np.array([max(0.0, s.staleness_s) for s in swaps]) * 1e3
    if len(st) == 0:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": float(np.percentile(st, 50)), "p99": float(np.percentile(st, 99)), "max": float(st.max())}


class Run:
    """Everything one ``olsim run`` starts, in order, and the report it ends with."""

    def __init__(self, scenario: Scenario, opts: RunOptions) -> None:
        self.scenario = scenario
        self.opts = opts
        self.run_id = uuid.uuid4().hex[:8]
        self.t_start = time.time()
        self.serving_started_at: float | None = None  # the report's time axes start here
        token, self.token_file = resolve_token(opts)
        self.stack = ServingStack(scenario, admin_token=token)
        self.evaluator: Any = None
        self.learner: Any = None
        self.metrics_port = 0
        self.load: Any = None
        self.prometheus: Any = None
        self.faults = Injector(list(scenario.faults))

    def start(self) -> None:
        import shutil

        s, opts = self.scenario, self.opts
        self.stack.start_registry(opts.report_dir / "registry")
        registry = ActorName(self.stack.registry_name, NAMESPACE)  # actors look each other up by name
        evaluator_state = opts.report_dir / "evaluator"
        shutil.rmtree(evaluator_state, ignore_errors=True)  # a restarted evaluator reads it; a new run not
        evaluator = ActorName(f"olsim-evaluator-{self.run_id}", NAMESPACE)
        self.evaluator = start_evaluator_actor(
            s,
            registry,
            opts.metrics_host,
            opts.metrics_port,
            evaluator_state,
            name=evaluator.name,
            namespace=evaluator.namespace,
        )
        try:
            self.metrics_port = get(self.evaluator.port.remote())
        except Exception as exc:  # typically: the port is taken
            raise RunError(
                f"metrics endpoint could not start on {opts.metrics_host}:{opts.metrics_port} "
                f"({type(exc).__name__}); pick another with --metrics-port"
            ) from None
        if opts.prometheus:
            self._start_prometheus()
        self.stack.start_serve()
        self.serving_started_at = time.time()
        # a new run starts from scratch; a restarted learner resumes from here
        ckpts = opts.report_dir / "checkpoints"
        shutil.rmtree(ckpts, ignore_errors=True)
        self.learner = start_learner_actor(s, registry, evaluator, ckpts / "learner.npz", self.faults.holds)
        get(self.learner.start.remote())
        self.faults.learner, self.faults.evaluator, self.faults.stack = (
            self.learner,
            self.evaluator,
            self.stack,
        )
        log.info(
            "run started run_id=%s metrics=%s:%d serve=%s:%d gate=%s",
            self.run_id,
            opts.metrics_host,
            self.metrics_port,
            s.serving.host,
            s.serving.port,
            s.gate.mode,
        )

    def _start_prometheus(self) -> None:
        from olsim.deploy.observability.prometheus_server import PrometheusError, PrometheusServer

        opts = self.opts
        self.prometheus = PrometheusServer(
            opts.report_dir / "prometheus",
            targets={"olsim": f"{opts.metrics_host}:{self.metrics_port}", "ray": ray_metrics_target()},
            port=opts.prometheus_port,
            scrape_interval_s=opts.scrape_interval_s,
        )
        try:
            self.prometheus.start()
        except PrometheusError as exc:
            self.prometheus = None
            raise RunError(f"--prometheus: {exc}") from None
        log.info("prometheus url=%s targets=%s", self.prometheus.url, self.prometheus.targets)

    def drive(
        self, progress: Progress | None, stop: threading.Event | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Follow the learner to the end of the stream (or the deadline, or ``stop``); returns its last
        progress and whether the stream was cut short."""
        opts = self.opts
        deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        last_offset, last_move = -1, time.monotonic()
        while True:
            p = get(self.learner.progress.remote())
            self.faults.step(p)
            if p["offset"] != last_offset or p["done"]:
                last_offset, last_move = p["offset"], time.monotonic()
            elif time.monotonic() - last_move > opts.stall_timeout_s:
                raise RunError(
                    f"learner made no progress for {opts.stall_timeout_s:.0f}s at offset {p['offset']}"
                    + (f": {p['error']}" if p["error"] else "")
                )
            if self.load is None and opts.load_rps > 0 and p["versions"] and self._replicas_serving():
                self._start_load()  # once replicas serve a version: before that they rightly answer 503
            if progress is not None:
                progress({**p, "elapsed_s": time.time() - self.t_start, **get(self.evaluator.live.remote())})
            if p["done"]:
                return p, False
            if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop.is_set()):
                get(self.learner.stop.remote())
                wait_until(
                    lambda: bool(get(self.learner.progress.remote())["done"]),
                    opts.settle_timeout_s,
                    "learner stop",
                )
                return get(self.learner.progress.remote()), True
            time.sleep(0.1 if self.faults.pending else 0.25)  # a held learner waits for this loop

    def _replicas_serving(self) -> bool:
        """As many live replicas as the scenario asks for serve a version (building one can take a
        while: a kNN-LM's datastore)."""
        return len(self.stack.replica_versions()) >= self.scenario.serving.replicas

    def _start_load(self) -> None:
        from olsim.deploy.load.generator import LoadGenerator
        from olsim.deploy.load.traffic import held_out_traffic

        s, cfg = self.scenario, self.scenario.serving
        traffic = held_out_traffic(s.stream.build_tasks(s.seed), s.learner.model.objective, cfg)
        self.load = LoadGenerator.sending(
            traffic, f"http://{cfg.host}:{cfg.port}", rps=self.opts.load_rps, seed=s.seed
        )
        self.load.start()

    def settle(self) -> bool:
        """Let the evaluator score and every replica apply the last change; True if replicas converged."""
        timeout = self.opts.settle_timeout_s
        wait_until(lambda: bool(get(self.evaluator.caught_up.remote())), timeout, "evaluator")
        converged = wait_until(self.stack.replicas_current, timeout, "replicas to serve the current version")
        if self.load is not None:
            self.load.stop()
        return converged

    def report(self, p: dict[str, Any], truncated: bool, converged: bool) -> dict[str, Any]:
        s, registry = self.scenario, self.stack.registry
        swaps = get(registry.swaps.remote())
        changes = get(registry.changes.remote())
        decisions = get(registry.decisions.remote())
        state = get(registry.state.remote())
        ev = get(self.evaluator.report.remote())
        report: dict[str, Any] = {
            "scenario": s.name,
            "strategy": s.strategy_name,
            "seed": s.seed,
            "run_id": self.run_id,
            "started_at": self.t_start,
            "serving_started_at": self.serving_started_at,
            "duration_s": time.time() - self.t_start,
            "truncated": truncated,
            "tasks": ev["tasks"],
            "segments": s.stream.segments,
            "tasks_completed": len(ev["accuracy_matrix"]),
            "accuracy_matrix": ev["accuracy_matrix"],
            "baseline_accuracy": ev["baseline_accuracy"],
            "acc": ev["acc"],
            "bwt": ev["bwt"],
            "fwt": ev["fwt"],
            "forgetting": ev["forgetting"],
            "task_il": ev["task_il"],
            "routing_accuracy": ev["routing_accuracy"],
            "facts": ev["facts"],
            "bits_per_byte": ev["bits_per_byte"],
            "unserved_rows": ev["unserved_rows"],  # segments that ended with nothing served: row = baseline
            "versions_published": state["latest"],
            "served_version": state["served"],
            "replica_versions": self.stack.replica_versions(),
            "replicas_converged": converged,
            "swaps": swap_table(swaps, changes),
            "swap_staleness_ms": staleness_ms(swaps),
            "gate": gate_summary(s, decisions),
            "rollbacks": [asdict(c) for c in changes if c.kind == "rollback"],
            "timeline": ev["timeline"],
            "boundaries": s.learner.boundaries,
            "drifts_detected": p["drifts"],
            "learner": {k: p[k] for k in ("steps", "samples", "offset", "total", "prequential_accuracy")},
            "metrics_endpoint": f"http://{self.opts.metrics_host}:{self.metrics_port}/metrics",
            "ingress": None if self.opts.address else current_ingress(),  # a joined cluster's own setting
            "admin_token_file": None if self.token_file is None else str(self.token_file),
            "scenario_config": s.model_dump(mode="json"),
        }
        report["load_rps"] = self.opts.load_rps
        if self.load is not None:
            report["requests"] = self.load.summary()
        if self.prometheus is not None:
            report["prometheus"] = self._prometheus_summary()
        stream = get(self.learner.stream_report.remote())
        report["chaos"] = stream.pop("chaos")
        report["stream"] = stream
        report["faults"] = self.faults.done
        report["faults_unfired"] = [f.model_dump() for f in self.faults.unfired()]
        if self.load is not None:
            for f in report["faults"]:
                f |= requests_around(f, report["requests"]["samples"])
        report["versions"] = version_audit(state, get(registry.history.remote()), p, swaps, ev["timeline"])
        report["expectations"] = check(s.expect, report)
        return report

    def _prometheus_summary(self) -> dict[str, Any]:
        from olsim.deploy.observability.prometheus_server import PrometheusError

        prom = self.prometheus
        summary: dict[str, Any] = {
            "url": prom.url,
            "config": str(prom.out / "prometheus.yml"),
            "data_dir": str(prom.out / "data"),
            "targets": prom.targets,
        }
        try:
            summary["targets_up"] = prom.api.targets_up()
            summary["alerts"] = [
                {
                    "name": a["labels"]["alertname"],
                    "state": a["state"],
                    "labels": a["labels"],
                    "since": a["activeAt"],
                }
                for a in prom.api.alerts()
            ]
        except (PrometheusError, OSError) as exc:
            summary["error"] = str(exc)
        return summary

    def teardown(self, own_ray: bool = False) -> None:
        """Stop everything this run started, in order; a step that fails is logged and the rest
        still runs (the error that ended the run, if any, is the one reported). ``own_ray``: the
        caller shuts down the Ray this run started right after, taking Serve and its port with it."""
        import ray

        def attempt(what: str, step: Callable[[], Any]) -> None:
            try:
                step()
            except Exception as exc:
                log.warning("teardown: %s failed error=%r", what, exc)

        if self.load is not None:
            attempt("stopping the load", self.load.stop)
        actors = [a for a in (self.learner, self.evaluator) if a is not None]
        for a in actors:  # stop the followers before the registry goes away
            attempt("stopping an actor", partial(_stop_actor, a))
        attempt("draining and removing Serve", partial(self.stack.stop, delete_app=not own_ray))
        for a in actors:
            attempt("killing an actor", partial(ray.kill, a))
        if self.prometheus is not None:
            attempt("stopping Prometheus", self.prometheus.stop)


def _stop_actor(actor: Any) -> None:
    get(actor.stop.remote())


def version_audit(
    state: dict[str, Any],
    history: list[dict[str, Any]],
    progress: dict[str, Any],
    swaps: list[Any],
    timeline: list[dict[str, Any]],
) -> dict[str, int]:
    """Versions the registry should hold against what it holds, and what the evaluator scored.

    A version is *lost* when the learner was told it was accepted, a replica served it, or the
    evaluator scored it (or its number is below the newest), retention would still keep it (by count,
    and the registry did not drop it to stay within its bytes), and the registry no longer has it;
    *unscored* when the registry has it and the evaluator has no score for it.

    >>> held = [{"version": 1}, {"version": 3}]
    >>> version_audit({"latest": 3, "keep": 10}, held, {"versions": [1, 2, 3]}, [], [{"version": 1}])
    {'latest': 3, 'retained': 2, 'lost': 1, 'unscored': 1}
    >>> state = {"latest": 3, "keep": 10, "dropped": [2]}
    >>> version_audit(state, held, {"versions": [1, 2, 3]}, [], [])["lost"]
    0
    """
    held = {int(h["version"]) for h in history}
    scored = {int(t["version"]) for t in timeline}
    known = set(progress.get("versions", [])) | {s.version for s in swaps} | scored
    latest = max([state["latest"], *known])
    dropped = set(state.get("dropped", []))
    should = {n for n in range(1, latest + 1) if n > latest - state["keep"] and n not in dropped}
    return {
        "latest": state["latest"],
        "retained": len(held),
        "lost": len(should - held),
        "unscored": len(held - scored),
    }


def gate_summary(scenario: Scenario, decisions: list[Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for d in decisions:
        key = f"{'accepted' if d.accepted else 'rejected'}/{d.reason}"
        counts[key] = counts.get(key, 0) + 1
    return {
        **scenario.gate.model_dump(),
        "candidates": len(decisions),
        "counts": counts,
        "rejected": [
            {
                "at": d.at,
                "reason": d.reason,
                "detail": d.detail,
                "served": d.served,
                "task": d.meta.get("task"),
                "step": d.meta.get("step"),
                "task_end": d.meta.get("task_end"),
            }
            for d in decisions
            if not d.accepted
        ],
    }


def run(
    scenario: Scenario,
    opts: RunOptions,
    progress: Progress | None = None,
    on_finished: Hook | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` end to end and return the report (also written to ``opts.report_dir``).

    ``on_finished(report)`` runs after the report is written and before anything is torn down,
    while Serve and the metrics endpoint still answer (tests scrape there; ``--linger`` waits there).
    Setting ``stop`` ends the stream early, like ``duration_s`` (``olsim load`` uses it).
    """

    scenario = resolve(scenario)  # settles what the tasks decide; checks users' code (cheap if done)
    check_faults(scenario)
    started_ray = connect_ray(
        opts.address, opts.ray_metrics_port, ray_logs=opts.ray_logs, runtime_env=runtime_env(scenario)
    )
    r = Run(scenario, opts)
    try:
        r.start()
        p, truncated = r.drive(progress, stop)
        if p["error"]:
            raise RunError(f"learner failed: {p['error']}")
        r.faults.wait_recovered(lambda: get(r.learner.progress.remote()), opts.settle_timeout_s)
        report = r.report(p, truncated, r.settle())
        report = _write(report, opts.report_dir)
        if on_finished is not None:
            on_finished(report)
        return report
    finally:
        r.teardown(own_ray=started_ray)
        if started_ray:
            disconnect_ray()  # our own local cluster: Serve goes with it


def check_faults(scenario: Scenario) -> None:
    """RunError for a fault whose position the stream never reaches (it could never strike)."""
    if not scenario.faults:
        return
    records = len(scenario.stream.build(scenario.seed))
    late = [f for f in scenario.faults if f.at > records]
    if late:
        where = ", ".join(f"{f.target} at {f.at}" for f in late)
        raise RunError(f"faults past the end of the stream ({records} records): {where}")


def _write(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """Validate ``report`` against the published model and write report.json, .txt and .html."""
    import json

    from olsim.deploy.report.model import checked
    from olsim.deploy.report.render import write_renderings

    report = checked(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_renderings(report, out)
    return report
