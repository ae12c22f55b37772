"""Events and the replayable task stream."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stream.tasks import Task

if TYPE_CHECKING:
    from stream.ingest import DeadLetter


@dataclass(frozen=True)
class Batch:
    """Consecutive events of one task, as arrays (what a learner trains on in one step)."""

    offset: int  # offset of the first event
    task: int
    x: np.ndarray  # (B, n_features) float32
    y: np.ndarray  # (B,) int64
    t: float  # stream time at which the last event is due
    seed: int
    epoch: np.ndarray  # (B,) pass over the task's training split
    index: np.ndarray  # (B,) row in the task's training split
    t_first: float = 0.0  # stream time at which the first event is due
    end: int | None = None  # position after the batch (default offset + len); a Delivery skips dead letters
    event_ids: tuple[str, ...] | None = None  # explicit ids (a Delivery's records); else from epoch/index
    chaos: tuple[str, ...] = ()  # chaos windows that begin within this batch

    def __len__(self) -> int:
        return len(self.y)

    @property
    def next_offset(self) -> int:
        return self.offset + len(self) if self.end is None else self.end

    @property
    def ids(self) -> list[str]:
        """Event ids, as :meth:`TaskStream.events` gives them (built on demand)."""
        if self.event_ids is not None:
            return list(self.event_ids)
        return [
            f"s{self.seed}-t{self.task}-e{int(e)}-n{int(i)}"
            for e, i in zip(self.epoch, self.index, strict=True)
        ]


@dataclass(frozen=True)
class Event:
    """One labelled sample on the stream.

    ``id`` is stable across redelivery (same sample, same epoch -> same id); ``offset`` is the
    event's position in the stream; ``t`` is the stream time in seconds at which it is due.
    """

    id: str
    offset: int
    task: int
    x: np.ndarray  # (n_features,) float32
    y: int
    t: float


class TaskStream:
    """A seeded, replayable stream: each task's training split, ``epochs`` shuffled passes, tasks in order.

    Any offset can be replayed without generating what came before it, so a learner that
    restarts from a checkpointed offset sees exactly the events it had not consumed.

    >>> from stream.tasks import build_tasks
    >>> s = TaskStream(build_tasks("split-digits", n_tasks=2, seed=0), epochs=2, seed=0, rate=100.0)
    >>> len(s), s.task_bounds()
    (862, [(0, 436), (436, 862)])
    >>> e = next(s.events(start=437)); (e.offset, e.task, e.id, e.t)
    (437, 1, 's0-t1-e0-n19', 4.37)
    >>> e.y == next(s.events(start=437)).y  # replayable
    True
    """

    def __init__(
        self, tasks: Sequence[Task], epochs: int = 1, seed: int = 0, rate: float | None = None
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of events per second, got {rate}")
        self.tasks = list(tasks)
        self.epochs = epochs
        self.seed = seed
        self.rate = rate
        sizes = [len(t.train) * epochs for t in self.tasks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # The same dead-letter store a Delivery has; a clean stream never refuses a record.
        self.dead_letter_counts: Counter[str] = Counter()
        self.dead_letters: list[DeadLetter] = []

    def __len__(self) -> int:
        return int(self._starts[-1])

    def task_bounds(self) -> list[tuple[int, int]]:
        """``[start, end)`` offsets of each task."""
        return [(int(a), int(b)) for a, b in zip(self._starts[:-1], self._starts[1:], strict=True)]

    def _order(self, task: int, epoch: int) -> np.ndarray:
        # One independent permutation per (seed, task, epoch): replay needs no history.
        rng = np.random.default_rng([self.seed, task, epoch])
        return rng.permutation(len(self.tasks[task].train))

    def _due(self, offset: int) -> float:
        """Stream time (s) at which the event at ``offset`` arrives; 0 for an unpaced stream."""
        return 0.0 if self.rate is None else round(offset / self.rate, 6)

    def clean_ids(self, stop: int | None = None) -> set[str]:
        """Ids of the events at offsets ``[0, stop)`` (what a learner that got that far must have trained)."""
        return {i for b in self.batches(4096, stop=stop) for i in b.ids}

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Yield events with ``start <= offset < stop``, one at a time (the batches, unbatched)."""
        for b in self.batches(256, start=start, stop=stop):
            for k, (event_id, x, y) in enumerate(zip(b.ids, b.x, b.y, strict=True)):
                yield Event(
                    id=event_id, offset=b.offset + k, task=b.task, x=x, y=int(y), t=self._due(b.offset + k)
                )

    def batches(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Events ``start <= offset < stop`` grouped ``size`` at a time, never spanning two tasks.

        Same events, ids and order as :meth:`events`; a task's last batch may be shorter.
        """
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        if start < 0:
            raise ValueError(f"start offset must be >= 0, got {start}")
        end = len(self) if stop is None else min(stop, len(self))
        offset = start
        while offset < end:
            task = int(np.searchsorted(self._starts, offset, side="right") - 1)
            task_start, task_end = int(self._starts[task]), min(int(self._starts[task + 1]), end)
            split = self.tasks[task].train
            n = len(split)
            epochs = range((offset - task_start) // n, (task_end - 1 - task_start) // n + 1)
            order = np.concatenate([self._order(task, e) for e in epochs])  # (len(epochs) * n,)
            base = task_start + epochs[0] * n
            while offset < task_end:
                hi = min(offset + size, task_end)
                pos = np.arange(offset - base, hi - base)
                idx = order[pos]
                epoch = (offset - task_start + np.arange(hi - offset)) // n
                yield Batch(
                    offset=offset,
                    task=task,
                    x=split.x[idx],
                    y=split.y[idx],
                    t=self._due(hi - 1),
                    seed=self.seed,
                    epoch=epoch,
                    index=idx,
                    t_first=self._due(offset),
                )
                offset = hi
