"""The evaluator as a Ray actor: follows the registry, scores every version, owns the scrape endpoint."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

import torch

from learner.evaluator import Evaluator
from learner.snapshot import Snapshot
from learner.telemetry import Telemetry
from stream.spec import StreamSpec

log = logging.getLogger(__name__)


class EvaluatorActor:
    """Run with ``ray.remote(EvaluatorActor)``; every ``olsim_*`` metric is exported from here."""

    def __init__(
        self, stream: StreamSpec, seed: int, registry: Any, host: str = "127.0.0.1", port: int = 9464
    ):
        torch.set_num_threads(1)
        self.registry = registry
        self.evaluator = Evaluator(stream.build_tasks(seed))
        self.telemetry = Telemetry()
        self.bound_port = self.telemetry.serve(host, port)
        self._lock = threading.Lock()
        self._last = 0
        self._swap_cursor = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="olsim-evaluator", daemon=True)
        self._thread.start()
        log.info("metrics endpoint host=%s port=%d", host, self.bound_port)

    # -- called by other actors -------------------------------------------------------------
    def port(self) -> int:
        return self.bound_port

    def set_baseline(self, snapshot: Snapshot) -> None:
        with self._lock:
            self.evaluator.set_baseline(snapshot)

    def record_learner(
        self, samples: int, prequential_accuracy: float | None, events: dict[str, int], drifts: int = 0
    ) -> None:
        t = self.telemetry
        if drifts:
            t.drifts.inc(drifts)
        if samples:
            t.samples.inc(samples)
        if prequential_accuracy is not None:
            t.prequential.set(prequential_accuracy)
        for kind, n in events.items():
            if n:
                t.stream_events.labels(kind=kind).inc(n)

    def live(self) -> dict[str, Any]:
        """Newest scored version and its mean accuracy over seen tasks (for progress displays)."""
        with self._lock:
            r = self.evaluator.results.get(self._last)
            if r is None:
                return {"version": None, "average_accuracy": None}
            return {"version": r.version, "average_accuracy": sum(r.seen) / len(r.seen)}

    def evaluated(self) -> int:
        """Newest version scored so far."""
        return self._last

    def report(self) -> dict[str, Any]:
        with self._lock:
            ev = self.evaluator
            return {
                "tasks": [{"index": t.index, "name": t.name, "classes": list(t.classes)} for t in ev.tasks],
                "accuracy_matrix": ev.matrix(),
                "baseline_accuracy": ev.baseline,
                **ev.summary(),
                "task_il": (
                    {"accuracy_matrix": ev.matrix(task_il=True), **ev.summary(task_il=True)}
                    if ev.has_task_il
                    else None
                ),
                "routing_accuracy": ev.routing_accuracy(),
                "timeline": [asdict(r) for r in sorted(ev.results.values(), key=lambda r: r.version)],
            }

    def stop(self) -> None:
        """Stop following the registry (before the registry goes away)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    # -- the follower loop ----------------------------------------------------------------
    def _follow(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                v = ray.get(self.registry.wait_next.remote(self._last, 0.5))
                if v is not None:
                    with self._lock:
                        result = self.evaluator.record(v.number, v.snapshot, v.published_at)
                        self._export(result.version)
                    self._last = v.number
                for s in ray.get(self.registry.swaps.remote(self._swap_cursor)):
                    self.telemetry.staleness.observe(max(0.0, s.staleness_s))
                    self._swap_cursor += 1
            except Exception as exc:
                log.warning("evaluator follow error=%r", exc)
                self._stop.wait(0.5)

    def _export(self, version: int) -> None:
        t, ev = self.telemetry, self.evaluator
        r = ev.results[version]
        for j, a in enumerate(r.seen):
            t.task_accuracy.labels(task=str(j)).set(a)
        for j, f in enumerate(ev.forgetting_now(version)):
            t.task_forgetting.labels(task=str(j)).set(f)
        t.average_accuracy.set(sum(r.seen) / len(r.seen))
        bwt = ev.backward_transfer_now(version)
        if bwt is not None:
            t.backward_transfer.set(bwt)
        t.model_version.set(version)
        t.published.set(r.published_at)
        t.gate.labels(decision="accepted", reason="gate_off").inc()
        t.versions_evaluated.inc()
