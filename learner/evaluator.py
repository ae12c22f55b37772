"""Held-out evaluation of published versions: per-task accuracy, the accuracy matrix, transfer metrics.

Pure Python/torch; :mod:`learner.evaluator_actor` runs it inside Ray next to the Prometheus endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from learner.metrics import accuracy, summarize
from learner.snapshot import Snapshot
from stream.tasks import Task


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

    >>> from learner.model import ModelSpec, build_model
    >>> from stream.tasks import build_tasks
    >>> ev = Evaluator(build_tasks("split-digits", n_tasks=2, seed=0))
    >>> snap = Snapshot.from_model(build_model(ModelSpec(), seed=0), task=0, task_end=True, step=1)
    >>> r = ev.record(1, snap, published_at=0.0); len(r.accuracies), len(ev.matrix())
    (2, 1)
    """

    tasks: list[Task]
    segments: list[int] | None = None
    results: dict[int, VersionEval] = field(default_factory=dict)
    rows: dict[int, list[float]] = field(default_factory=dict)
    rows_task_il: dict[int, list[float]] = field(default_factory=dict)
    baseline: list[float] | None = None
    baseline_task_il: list[float] | None = None

    @property
    def has_task_il(self) -> bool:
        """Task-incremental evaluation differs from class-incremental only when tasks own class subsets."""
        return any(len(t.classes) < len({c for u in self.tasks for c in u.classes}) for t in self.tasks)

    def evaluate(self, snapshot: Snapshot) -> tuple[list[float], list[float] | None]:
        class_il, task_il, _ = self._evaluate(snapshot)
        return class_il, task_il

    def _evaluate(self, snapshot: Snapshot) -> tuple[list[float], list[float] | None, list[float] | None]:
        model = snapshot.build()
        class_il = [accuracy(model, t.test) for t in self.tasks]
        task_il = None
        if self.has_task_il:
            task_il = [accuracy(model, t.test, t.classes, task=t.index) for t in self.tasks]
        routing = None
        if model.protos is not None:
            with torch.inference_mode():
                routing = [
                    float((model.route(torch.from_numpy(t.test.x)) == t.index).float().mean())
                    for t in self.tasks
                ]
        return class_il, task_il, routing

    def set_baseline(self, snapshot: Snapshot) -> list[float]:
        """Accuracy of the untrained model (``b`` in the FWT definition)."""
        self.baseline, self.baseline_task_il = self.evaluate(snapshot)
        return self.baseline

    def record(self, version: int, snapshot: Snapshot, published_at: float) -> VersionEval:
        meta = snapshot.meta
        class_il, task_il, routing = self._evaluate(snapshot)
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
        )
        self.results[version] = result
        if result.task_end:
            self.rows[result.segment] = result.accuracies
            if task_il is not None:
                self.rows_task_il[result.segment] = task_il
        return result

    def set_row(self, segment: int, version: int) -> None:
        """Row ``segment`` comes from ``version``: the one still served when the gate rejected the
        candidate that ended the segment (the matrix describes what users were served)."""
        r = self.results[version]
        self.rows[segment] = r.accuracies
        if r.task_il is not None:
            self.rows_task_il[segment] = r.task_il

    @property
    def segment_tasks(self) -> list[int]:
        return list(range(len(self.tasks))) if self.segments is None else self.segments

    def matrix(self, task_il: bool = False) -> list[list[float]]:
        """``R`` over the segments completed so far, in order (stops at the first missing row)."""
        rows = self.rows_task_il if task_il else self.rows
        out: list[list[float]] = []
        while len(out) in rows:
            out.append(rows[len(out)])
        return out

    def forgetting_now(self, version: int) -> list[float]:
        """Per seen task: best accuracy of any version since the task was first trained, minus now."""
        now = self.results[version]
        best = [0.0] * now.n_seen
        for r in self.results.values():
            if r.version > version:
                continue
            for j in range(min(r.n_seen, now.n_seen)):
                best[j] = max(best[j], r.accuracies[j])
        return [max(0.0, b - a) for b, a in zip(best, now.seen, strict=True)]

    def backward_transfer_now(self, version: int) -> float | None:
        """BWT of ``version``: for each task it has finished with (other than the one it is on), its
        accuracy now minus its accuracy when that task's last segment so far ended."""
        now, seq = self.results[version], self.segment_tasks
        last: dict[int, list[float]] = {}  # task -> row of its latest ended segment before now
        for s in sorted(self.rows):
            if s < now.segment:
                last[seq[s]] = self.rows[s]
        diffs = [now.accuracies[j] - row[j] for j, row in last.items() if j != now.task]
        if not diffs:
            return None
        return float(np.mean(diffs))

    def routing_accuracy(self) -> float | None:
        """Task routing accuracy of the last task-end version, over the tasks seen by then."""
        ends = [r for r in self.results.values() if r.task_end and r.routing is not None]
        if not ends:
            return None
        last = max(ends, key=lambda r: r.version)
        assert last.routing is not None
        return float(np.mean(last.routing[: last.n_seen]))

    def summary(self, task_il: bool = False) -> dict[str, float | None]:
        if task_il:
            return summarize(self.matrix(task_il=True), self.baseline_task_il, self.segment_tasks)
        return summarize(self.matrix(), self.baseline, self.segment_tasks)
