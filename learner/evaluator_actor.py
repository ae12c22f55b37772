"""The evaluator as a Ray actor: follows the registry, scores every version, owns the scrape endpoint."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

import torch

from learner.evaluator import Evaluator
from learner.priority import lower_thread_priority
from learner.snapshot import Snapshot
from learner.telemetry import LearnerStats, Telemetry
from stream.spec import StreamSpec

log = logging.getLogger(__name__)


class EvaluatorActor:
    """Run with ``ray.remote(EvaluatorActor)``; every ``olsim_*`` metric is exported from here."""

    def __init__(
        self,
        stream: StreamSpec,
        seed: int,
        registry: Any,
        host: str = "127.0.0.1",
        port: int = 9464,
        rollback_floor: float | None = None,
    ):
        torch.set_num_threads(1)
        self.registry = registry
        self.evaluator = Evaluator(stream.build_tasks(seed))
        self.rollback_floor = rollback_floor
        self.telemetry = Telemetry()
        self.bound_port = self.telemetry.serve(host, port)
        self._lock = threading.Lock()
        self._last = 0  # newest version scored
        self._served = 0  # version the registry serves, as far as the evaluator has followed
        self._exported = 0
        self._pending_rows: list[tuple[int, int]] = []  # (task, served version) awaiting its score
        self._swap_cursor = 0
        self._decision_cursor = 0
        self._change_cursor = 0
        self._floor_alarmed: set[int] = set()
        self.auto_rollbacks: list[dict[str, Any]] = []
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

    def record_learner(self, stats: LearnerStats) -> None:
        self.telemetry.record_learner(stats)

    def live(self) -> dict[str, Any]:
        """Served version and its mean accuracy over seen tasks (for progress displays)."""
        with self._lock:
            r = self.evaluator.results.get(self._served)
            if r is None:
                return {"version": None, "average_accuracy": None}
            return {"version": r.version, "average_accuracy": sum(r.seen) / len(r.seen)}

    def evaluated(self) -> int:
        """Newest version scored so far."""
        return self._last

    def caught_up(self) -> bool:
        """Every accepted version scored and every registry decision and change followed."""
        import ray

        state = ray.get(self.registry.state.remote())
        decisions = len(ray.get(self.registry.decisions.remote(self._decision_cursor)))
        changes = len(ray.get(self.registry.changes.remote(self._change_cursor)))
        return self._last >= state["latest"] and decisions == 0 and changes == 0 and not self._pending_rows

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
                "auto_rollbacks": list(self.auto_rollbacks),
            }

    def stop(self) -> None:
        """Stop following the registry (before the registry goes away)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    # -- the follower loop ----------------------------------------------------------------
    def _follow(self) -> None:
        lower_thread_priority()  # scoring is background work: replicas' requests go first
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:
                log.warning("evaluator follow error=%r", exc)
                self._stop.wait(0.5)

    def _step(self) -> None:
        import ray

        t = self.telemetry
        v = ray.get(self.registry.wait_next.remote(self._last, 0.25))
        if v is not None:
            with self._lock:
                self.evaluator.record(v.number, v.snapshot, v.published_at)
            self._last = v.number
            t.versions_evaluated.inc()
        for d in ray.get(self.registry.decisions.remote(self._decision_cursor)):
            t.gate.labels(decision="accepted" if d.accepted else "rejected", reason=d.reason).inc()
            if d.old_drop is not None:
                t.gate_old_drop.set(d.old_drop)
            if not d.accepted and d.meta.get("task_end") and d.served:
                self._pending_rows.append((int(d.meta.get("task", 0)), d.served))
            self._decision_cursor += 1
        for c in ray.get(self.registry.changes.remote(self._change_cursor)):
            if c.kind == "rollback":
                t.rollbacks.labels(trigger=c.trigger or "manual").inc()
            self._served = c.version
            self._change_cursor += 1
        with self._lock:
            scored = self.evaluator.results
            while self._pending_rows and self._pending_rows[0][1] in scored:
                self.evaluator.set_row(*self._pending_rows.pop(0))
            if self._served in scored and self._exported != self._served:
                self._export(self._served)
                self._exported = self._served
        for s in ray.get(self.registry.swaps.remote(self._swap_cursor)):
            t.staleness.observe(max(0.0, s.staleness_s))
            self._swap_cursor += 1
        self._check_floor()

    def _check_floor(self) -> None:
        """Roll back once when the served version's mean test accuracy falls below the floor."""
        import ray

        floor, served = self.rollback_floor, self._served
        r = self.evaluator.results.get(served)
        if floor is None or r is None or served in self._floor_alarmed:
            return
        mean = sum(r.seen) / len(r.seen)
        if mean >= floor:
            return
        self._floor_alarmed.add(served)
        good = [
            u.version
            for u in self.evaluator.results.values()
            if u.version < served and sum(u.seen) / len(u.seen) >= floor
        ]
        if not good:
            log.warning("served version %d is below the floor and no earlier version is above it", served)
            return
        reason = f"auto: mean test accuracy {mean:.3f} < floor {floor:.3f}"
        result = ray.get(self.registry.rollback.remote(max(good), reason, "auto", served))
        self.auto_rollbacks.append(
            {"from": served, "to": max(good), "ok": result.ok, "detail": result.detail}
        )
        log.warning("rollback from=%d to=%d ok=%s %s", served, max(good), result.ok, reason)

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
