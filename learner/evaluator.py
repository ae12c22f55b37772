"""Held-out evaluation of published versions: per-task accuracy, the accuracy matrix, transfer metrics;
for a language model also bits per byte per task, and their rise on tasks met earlier.

Pure Python/torch; :mod:`olsim.learner.actors.evaluator` runs it inside Ray next to the Prometheus endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from olsim.learner.facts import FactsLedger
from olsim.learner.metrics import accuracy, backward_transfer, bits_rise, scores, summarize
from olsim.learner.objective import ObjectiveName, question_only
from olsim.learner.served import ServedModel
from olsim.learner.snapshot import Snapshot
from olsim.stream.tasks import Task


@dataclass
class VersionEval:
    version: int
    published_at: float
    task: int  # last task the learner trained on when it exported this version
    task_end: bool
    step: int
    accuracies: list[float]  # test accuracy on every task of the scenario, seen or not
    task_il: list[float] | None = None  # same, predictions restricted to the task's classes
    routing: list[float] | None = None  # fraction of each task's test rows routed to that task
    segment: int = 0  # stretch of the stream the learner was on (a task that comes back: a new one)
    seen_tasks: int = 0  # distinct tasks met by then (0: task + 1, for records without it)
    bits_per_byte: list[float] | None = None  # a next-token model's, on every task's test text

    @property
    def n_seen(self) -> int:
        return self.seen_tasks or self.task + 1

    @property
    def seen(self) -> list[float]:
        return self.accuracies[: self.n_seen]


@dataclass
class Evaluator:
    """Scores snapshots on every task's held-out test split and keeps the accuracy matrix.

    Row ``s`` of the matrix is the evaluation of the version published when segment ``s`` ended
    (``segments[s]`` is its task; by default every task once, in order, so row ``i`` is task ``i``).

    >>> from olsim.learner.model import ModelSpec, build_model
    >>> from olsim.stream.tasks import build_tasks
    >>> ev = Evaluator(build_tasks("split-digits", n_tasks=2, seed=0))
    >>> snap = Snapshot.from_model(build_model(ModelSpec(), seed=0), task=0, task_end=True, step=1)
    >>> r = ev.record(1, snap, published_at=0.0); len(r.accuracies), len(ev.matrix())
    (2, 1)
    """

    tasks: list[Task]
    segments: list[int] | None = None
    objective: ObjectiveName = "classify"  # the model's (a next-token model has no task-IL score)
    facts: FactsLedger | None = None  # a facts scenario's per-fact scores, every version
    results: dict[int, VersionEval] = field(default_factory=dict)
    rows: dict[int, list[float]] = field(default_factory=dict)
    rows_task_il: dict[int, list[float]] = field(default_factory=dict)
    baseline: list[float] | None = None
    baseline_task_il: list[float] | None = None
    rows_bits: dict[int, list[float]] = field(default_factory=dict)  # bits per byte, as ``rows``
    baseline_bits: list[float] | None = None
    pending: list[tuple[int, int]] = field(default_factory=list)  # (segment, served version) awaiting a row
    unserved_rows: list[int] = field(default_factory=list)  # segments that ended with nothing served

    @property
    def has_task_il(self) -> bool:
        """Task-incremental evaluation differs from class-incremental only when tasks own class subsets."""
        if self.objective != "classify":
            return False
        return any(len(t.classes) < len({c for u in self.tasks for c in u.classes}) for t in self.tasks)

    def evaluate(self, snapshot: Snapshot) -> tuple[list[float], list[float] | None]:
        class_il, task_il, _, _ = self._evaluate(snapshot.build())
        return class_il, task_il

    def _evaluate(
        self, model: ServedModel
    ) -> tuple[list[float], list[float] | None, list[float] | None, list[float] | None]:
        both = [scores(model, t.test) for t in self.tasks]
        class_il = [a for a, _ in both]
        bits = [b for _, b in both if b is not None] or None
        task_il = None
        if self.has_task_il:
            task_il = [accuracy(model, t.test, t.classes, task=t.index) for t in self.tasks]
        routing = None
        if model.protos is not None:
            with torch.inference_mode():
                routing = [float((model.route(self._asked(t)) == t.index).float().mean()) for t in self.tasks]
        return class_il, task_il, routing, bits

    def _asked(self, t: Task) -> torch.Tensor:
        """What a task's test rows give a router: the rows, or a next-token model's questions."""
        x = torch.from_numpy(t.test.x)
        return x if self.objective == "classify" else question_only(x, torch.from_numpy(t.test.y))

    def set_baseline(self, snapshot: Snapshot) -> list[float]:
        """Accuracy of the untrained model (``b`` in the FWT definition)."""
        self.baseline, self.baseline_task_il, _, self.baseline_bits = self._evaluate(snapshot.build())
        return self.baseline

    def record(self, version: int, snapshot: Snapshot, published_at: float) -> VersionEval:
        meta = snapshot.meta
        model = snapshot.build()
        class_il, task_il, routing, bits = self._evaluate(model)
        if self.facts is not None:
            self.facts.record(version, model, meta, published_at)
        result = VersionEval(
            version=version,
            published_at=published_at,
            task=int(meta.get("task", 0)),
            task_end=bool(meta.get("task_end", False)),
            step=int(meta.get("step", 0)),
            accuracies=class_il,
            task_il=task_il,
            routing=routing,
            segment=int(meta.get("segment", meta.get("task", 0))),
            seen_tasks=int(meta.get("seen", 0)),
            bits_per_byte=bits,
        )
        self.results[version] = result
        if result.task_end:
            self.set_row(result.segment, version)
        return result

    def set_row(self, segment: int, version: int) -> None:
        """Row ``segment`` comes from ``version``: the one still served when the gate rejected the
        candidate that ended the segment (the matrix describes what users were served)."""
        r = self.results[version]
        self.rows[segment] = r.accuracies
        if r.task_il is not None:
            self.rows_task_il[segment] = r.task_il
        if r.bits_per_byte is not None:
            self.rows_bits[segment] = r.bits_per_byte

    def rejected_segment_end(self, segment: int, served: int) -> None:
        """The gate rejected the candidate that ended ``segment`` while ``served`` (0: nothing yet) was
        served: that segment's row describes what users had instead (see :meth:`fill_rows`)."""
        self.pending.append((segment, served))

    def fill_rows(self) -> None:
        """Give each pending segment its row, in order, once what it needs is known: the served
        version's scores, or with nothing served yet, the untrained model's (``b``: no training had
        reached users). Every ended segment gets a row, so the matrix never stops short."""
        while self.pending:
            segment, served = self.pending[0]
            if served == 0:
                if self.baseline is None:
                    return
                self.rows[segment] = self.baseline
                if self.baseline_task_il is not None:
                    self.rows_task_il[segment] = self.baseline_task_il
                if self.baseline_bits is not None:
                    self.rows_bits[segment] = self.baseline_bits
                self.unserved_rows.append(segment)
            elif served in self.results:
                self.set_row(segment, served)
            else:
                return
            self.pending.pop(0)

    @property
    def segment_tasks(self) -> list[int]:
        return list(range(len(self.tasks))) if self.segments is None else self.segments

    def matrix(self, task_il: bool = False, bits: bool = False) -> list[list[float]]:
        """``R`` over the segments completed so far, in order (stops at the first missing row); with
        ``bits``, the same rows' bits per byte (a next-token model)."""
        rows = self.rows_bits if bits else self.rows_task_il if task_il else self.rows
        out: list[list[float]] = []
        while len(out) in rows:
            out.append(rows[len(out)])
        return out

    def forgetting_now(self, version: int) -> list[float]:
        """Per task ``version`` has met: the best accuracy of any version up to it, minus its own
        (Chaudhry's max over every earlier evaluation, live)."""
        now = self.results[version]
        earlier = [r for r in self.results.values() if r.version <= version]
        best = [max(r.accuracies[j] for r in earlier) for j in range(now.n_seen)]
        return [max(0.0, b - a) for b, a in zip(best, now.seen, strict=True)]

    def backward_transfer_now(self, version: int) -> float | None:
        """BWT of ``version``: :func:`olsim.learner.metrics.backward_transfer` on the rows of the segments
        ended before its own, with its scores as the last row (one definition for the gauge and the
        report). None while undefined (no earlier task, or an earlier row still missing)."""
        now = self.results[version]
        rows = []
        for s in range(now.segment):
            row = self.rows.get(s)
            if row is None:
                return None
            rows.append(row)
        return backward_transfer([*rows, now.accuracies], self.segment_tasks[: now.segment + 1])

    def routing_accuracy(self) -> float | None:
        """Task routing accuracy of the last task-end version, over the tasks seen by then."""
        ends = [r for r in self.results.values() if r.task_end and r.routing is not None]
        if not ends:
            return None
        last = max(ends, key=lambda r: r.version)
        assert last.routing is not None
        return float(np.mean(last.routing[: last.n_seen]))

    def facts_report(self) -> dict[str, Any] | None:
        """The report's ``facts`` block (a facts scenario only), periods ended by the versions that
        ended their segments."""
        if self.facts is None:
            return None
        ends = {r.segment: r.version for r in self.results.values() if r.task_end}
        return self.facts.report(ends)

    def bits_report(self) -> dict[str, Any] | None:
        """The report's ``bits_per_byte`` block (a next-token model): the matrix of held-out bits per
        byte, and how far each task's has risen since its own segment ended (forgetting, in bits)."""
        if self.baseline_bits is None:
            return None
        matrix = self.matrix(bits=True)
        rise, mean_rise = bits_rise(matrix, self.segment_tasks) if matrix else ([], None)
        return {
            "tasks": [t.name for t in self.tasks],
            "baseline": self.baseline_bits,
            "matrix": matrix,
            "rise": rise,
            "mean_rise": mean_rise,
        }

    def summary(self, task_il: bool = False) -> dict[str, float | None]:
        if task_il:
            return summarize(self.matrix(task_il=True), self.baseline_task_il, self.segment_tasks)
        return summarize(self.matrix(), self.baseline, self.segment_tasks)
