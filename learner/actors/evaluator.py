"""The evaluator as a Ray actor: follows the registry, scores every version, owns the scrape endpoint.

Its state is derived from the registry (every retained version, decision, change and
acknowledgement), so a restarted evaluator rebuilds it by following the registry again from the
start, before it opens the scrape endpoint: gauges and the counters derived from the registry come
back with the values they had (no reset for Prometheus to see). What cannot be derived, the scrape
port and the untrained model's baseline accuracy, is kept in ``state_dir/evaluator.json``. The
learner's counters (samples, dead letters, ...) are deltas the learner pushes; they restart from zero,
which Prometheus' ``rate``/``increase`` read as an ordinary counter reset.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from olsim.learner import checkpoint
from olsim.learner.actors.names import resolve
from olsim.learner.actors.telemetry import LearnerStats, Telemetry
from olsim.learner.evaluator import Evaluator
from olsim.learner.facts import FactProbes, FactsLedger
from olsim.learner.objective import ObjectiveName
from olsim.learner.priority import lower_thread_priority
from olsim.learner.snapshot import Snapshot
from olsim.learner.snapshot import resolve as resolve_arrays
from olsim.stream.spec import StreamSpec

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
        state_dir: str | None = None,
        objective: ObjectiveName = "classify",
    ):
        torch.set_num_threads(1)
        self.registry = resolve(registry)  # a handle, or an ActorName
        tasks = stream.build_tasks(seed)
        probes = FactProbes.for_stream(stream.plugin, seed, stream.build(seed, tasks))
        facts = None if probes is None else FactsLedger(probes)  # a facts scenario: every fact, every version
        self.evaluator = Evaluator(tasks, stream.segments, objective, facts)
        self.rollback_floor = rollback_floor
        self.telemetry = Telemetry()
        self.boot = uuid.uuid4().hex
        self.state_path = None if state_dir is None else Path(state_dir) / "evaluator.json"
        saved = self._load_state()
        self.restored = saved is not None
        self._lock = threading.Lock()
        self._last = 0  # newest version scored
        self._served = 0  # version the registry serves, as far as the evaluator has followed
        self._exported = 0
        self._swap_cursor = 0
        self._decision_cursor = 0
        self._change_cursor = 0
        self._floor_alarmed: set[int] = set()
        self.auto_rollbacks: list[dict[str, Any]] = []
        self._stop = threading.Event()
        if saved is not None:  # Ray restarted this actor: rebuild from the registry, then serve
            port = int(saved["port"])
            self.evaluator.baseline_bits = saved.get("baseline_bits")
            self.evaluator.baseline, self.evaluator.baseline_task_il = (
                saved["baseline"],
                saved["baseline_task_il"],
            )
            self._catch_up()
        self.bound_port = self.telemetry.serve(host, port)
        self._save_state()
        self._thread = threading.Thread(target=self._follow, name="olsim-evaluator", daemon=True)
        self._thread.start()
        log.info("metrics endpoint host=%s port=%d", host, self.bound_port)

    # -- called by other actors -------------------------------------------------------------
    def port(self) -> int:
        return self.bound_port

    def set_baseline(self, snapshot: Snapshot) -> None:
        with self._lock:
            self.evaluator.set_baseline(snapshot)
        self._save_state()

    def status(self) -> dict[str, Any]:
        """Which process this is (``boot`` changes on every restart) and the newest version scored."""
        return {"boot": self.boot, "restored": self.restored, "evaluated": self._last}

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
        followed = decisions == 0 and changes == 0 and not self.evaluator.pending
        return self._last >= state["latest"] and followed

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
                "facts": ev.facts_report(),
                "bits_per_byte": ev.bits_report(),
                "unserved_rows": list(ev.unserved_rows),
                "timeline": [asdict(r) for r in sorted(ev.results.values(), key=lambda r: r.version)],
                "auto_rollbacks": list(self.auto_rollbacks),
            }

    def stop(self) -> None:
        """Stop following the registry (before the registry goes away)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    # -- restarts ---------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any] | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        ev = self.evaluator
        state = {
            "port": self.bound_port,
            "baseline": ev.baseline,
            "baseline_task_il": ev.baseline_task_il,
            "baseline_bits": ev.baseline_bits,
        }
        checkpoint.write_atomic(self.state_path, lambda f: f.write(json.dumps(state).encode()))

    def _catch_up(self, timeout_s: float = 60.0) -> None:
        """Follow the registry from its first record until caught up (or ``timeout_s``)."""
        import ray

        t0 = time.monotonic()
        for c in ray.get(self.registry.changes.remote()):
            if c.kind == "rollback" and c.trigger == "auto":  # the floor already acted on `previous`
                self._floor_alarmed.add(c.previous)
                self.auto_rollbacks.append(
                    {"from": c.previous, "to": c.version, "ok": True, "detail": c.reason}
                )
        while not self.caught_up() and time.monotonic() - t0 < timeout_s:
            self._step()
        log.warning(
            "evaluator restarted: rebuilt %d versions from the registry in %.2fs",
            len(self.evaluator.results),
            time.monotonic() - t0,
        )

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
                snapshot = Snapshot.assemble(v.manifest, resolve_arrays(v.blobs, ray.get))
                self.evaluator.record(v.number, snapshot, v.published_at)
                facts = self.evaluator.facts
                for wait_s in [] if facts is None else facts.newly_fresh(v.number):
                    t.fact_freshness.observe(wait_s)
            self._last = v.number
            t.versions_evaluated.inc()
        for d in ray.get(self.registry.decisions.remote(self._decision_cursor)):
            t.gate.labels(decision="accepted" if d.accepted else "rejected", reason=d.reason).inc()
            if d.old_drop is not None:
                t.gate_old_drop.set(d.old_drop)
            if not d.accepted and d.meta.get("task_end"):
                segment = d.meta.get("segment", d.meta.get("task", 0))
                with self._lock:
                    self.evaluator.rejected_segment_end(int(segment), d.served)
            self._decision_cursor += 1
        for c in ray.get(self.registry.changes.remote(self._change_cursor)):
            if c.kind == "rollback":
                t.rollbacks.labels(trigger=c.trigger or "manual").inc()
            self._served = c.version
            self._change_cursor += 1
        with self._lock:
            self.evaluator.fill_rows()
            if self._served in self.evaluator.results and self._exported != self._served:
                self.telemetry.show_version(self.evaluator, self._served)
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
