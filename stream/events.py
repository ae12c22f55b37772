"""Events and the replayable task stream."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from olsim.stream.tasks import Task

if TYPE_CHECKING:
    from olsim.stream.ingest import DeadLetter


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
    segment: int = 0  # which stretch of the stream (a task that comes back is a new segment)

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
    """A seeded, replayable stream of *segments*: each a task's training split, ``epochs`` shuffled
    passes. ``segments`` lists each segment's task (default: every task once, in order); a task
    can come back, and its events then continue its epoch count, so event ids stay unique.

    With ``blend`` > 0 each change of task is gradual: the last ``blend // 2`` events of a task and
    the first ``blend - blend // 2`` of the next are interleaved, the new task's share rising from
    about 0 to about 1 across the window (seeded; each side clipped to half its task). The events,
    their ids and each task's own order are the same as with an abrupt change.

    Any offset can be replayed without generating what came before it, so a learner that
    restarts from a checkpointed offset sees exactly the events it had not consumed.

    >>> from olsim.stream.tasks import build_tasks
    >>> s = TaskStream(build_tasks("split-digits", n_tasks=2, seed=0), epochs=2, seed=0, rate=100.0)
    >>> len(s), s.segment_bounds()
    (862, [(0, 436), (436, 862)])
    >>> e = next(s.events(start=437)); (e.offset, e.task, e.id, e.t)
    (437, 1, 's0-t1-e0-n19', 4.37)
    >>> e.y == next(s.events(start=437)).y  # replayable
    True
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        epochs: int = 1,
        seed: int = 0,
        rate: float | None = None,
        blend: int = 0,
        segments: Sequence[int] | None = None,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if blend < 0:
            raise ValueError(f"blend must be >= 0 events, got {blend}")
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of events per second, got {rate}")
        self.tasks = list(tasks)
        self.epochs = epochs
        self.seed = seed
        self.rate = rate
        self.segments = list(range(len(self.tasks))) if segments is None else [int(t) for t in segments]
        if not self.segments or not all(0 <= t < len(self.tasks) for t in self.segments):
            raise ValueError(f"segments must name tasks 0..{len(self.tasks) - 1}, got {self.segments}")
        sizes = [len(self.tasks[t].train) * epochs for t in self.segments]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # a task's later segments continue its epoch count (event ids stay unique)
        self._epoch0 = [self.segments[:k].count(t) * epochs for k, t in enumerate(self.segments)]
        self.blend = blend
        self._windows = self._blend_windows(sizes, blend)  # (lo, positions' source offsets)
        self._orders: dict[tuple[int, int], np.ndarray] = {}
        # The same dead-letter store a Delivery has; a clean stream never refuses a record.
        self.dead_letter_counts: Counter[str] = Counter()
        self.dead_letters: list[DeadLetter] = []

    def __len__(self) -> int:
        return int(self._starts[-1])

    def segment_of(self, offsets: np.ndarray) -> np.ndarray:
        """The segment each (abrupt-stream) offset lies in."""
        return np.searchsorted(self._starts, offsets, side="right") - 1

    def segment_bounds(self) -> list[tuple[int, int]]:
        """``[start, end)`` offsets of each segment (its task: ``segments[k]``)."""
        return [(int(a), int(b)) for a, b in zip(self._starts[:-1], self._starts[1:], strict=True)]

    def _order(self, task: int, epoch: int) -> np.ndarray:
        # One independent permutation per (seed, task, epoch): replay needs no history.
        order = self._orders.get((task, epoch))  # a small cache (batches come a few per epoch)
        if order is None:
            if len(self._orders) > 64:
                self._orders = {}
            order = np.random.default_rng([self.seed, task, epoch]).permutation(len(self.tasks[task].train))
            self._orders[(task, epoch)] = order
        return order

    def _blend_windows(self, sizes: list[int], blend: int) -> list[tuple[int, np.ndarray]]:
        """For each task change: the window's first position and the source offset at each position."""
        out = []
        for k in range(1, len(sizes) if blend else 0):
            start = int(self._starts[k])
            before, after = min(blend // 2, sizes[k - 1] // 2), min(blend - blend // 2, sizes[k] // 2)
            n = before + after
            if before == 0 or after == 0:
                continue
            rng = np.random.default_rng([self.seed, 0xB1E4D, k])
            new_first = rng.random(n) < (np.arange(n) + 0.5) / n  # the new task's share ramps up
            old_src, new_src = iter(range(start - before, start)), iter(range(start, start + after))
            left_old, left_new, src = before, after, []
            for take_new in new_first:
                if left_new and (take_new or not left_old):
                    src.append(next(new_src))
                    left_new -= 1
                else:
                    src.append(next(old_src))
                    left_old -= 1
            out.append((start - before, np.array(src, dtype=np.int64)))
        return out

    def _source(self, lo: int, hi: int) -> np.ndarray:
        """Source offset (position in the abrupt stream) of the events delivered at ``[lo, hi)``."""
        src = np.arange(lo, hi, dtype=np.int64)
        for w_lo, w_src in self._windows:
            a, b = max(lo, w_lo), min(hi, w_lo + len(w_src))
            if a < b:
                src[a - lo : b - lo] = w_src[a - w_lo : b - w_lo]
        return src

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
        """Events ``start <= offset < stop`` grouped ``size`` at a time, never spanning two segments.

        Same events, ids and order as :meth:`events`; a task's last batch may be shorter.
        """
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        if start < 0:
            raise ValueError(f"start offset must be >= 0, got {start}")
        end = len(self) if stop is None else min(stop, len(self))
        offset = start
        while offset < end:
            hi = min(offset + size, end)
            src = self._source(offset, hi)
            segs = self.segment_of(src)
            change = np.flatnonzero(segs != segs[0])
            if len(change):  # a batch holds one segment's events: cut at the first change
                hi = offset + int(change[0])
                src = src[: hi - offset]
            seg = int(segs[0])
            task = self.segments[seg]
            split = self.tasks[task].train
            n = len(split)
            rel = src - self._starts[seg]
            epoch, pos = self._epoch0[seg] + rel // n, rel % n
            idx = np.empty(len(src), dtype=np.int64)
            for e in np.unique(epoch):
                sel = epoch == e
                idx[sel] = self._order(task, int(e))[pos[sel]]
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
                segment=seg,
            )
            offset = hi
