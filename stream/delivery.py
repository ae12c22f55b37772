"""A task stream delivered the way a broker would under chaos: records on a wire, validated at ingest.

:class:`Delivery` turns a clean :class:`~olsim.stream.events.TaskStream` and a chaos timeline into a
deterministic sequence of *slots* (one record each: a clean event, a redelivered one, one with a
flipped label, or a malformed record), with a due time per record (bursts compress it, stalls
insert a gap). ``batches()`` serves the same :class:`~olsim.stream.events.Batch` interface as the clean
stream, so the learner is unchanged: records are validated by :class:`~olsim.stream.ingest.Ingest`,
broken ones become dead letters (counted by reason, kept), and the rest are batched per task.
Duplicates are *delivered*; skipping them is the learner's job (its event-id ledger).

>>> from olsim.stream.tasks import build_tasks
>>> from olsim.stream.chaos import Duplicates, Malformed
>>> clean = TaskStream(build_tasks("split-digits", n_tasks=1, seed=0), seed=0, rate=100.0)
>>> d = Delivery(clean, [Duplicates(at=0, events=10, fraction=1.0), Malformed(at=5, count=3)], seed=0)
>>> len(clean), len(d)   # 10 redeliveries, 3 broken records
(218, 231)
>>> sum(len(b) for b in d.batches(32)), dict(d.dead_letter_counts)
(228, {'wrong_shape': 1, 'non_finite': 1, 'missing_field': 1})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olsim.stream.chaos import Burst, Chaos, Duplicates, LabelNoise, Malformed, Poison, Reorder, Stall
from olsim.stream.events import Batch, Event, TaskStream
from olsim.stream.ingest import DeadLetter, Ingest
from olsim.stream.tasks import Task

MAX_DEAD_LETTERS_KEPT = 1000  # the first ones, with their reason; counts cover all


@dataclass
class Slot:
    offset: int  # clean-stream offset of the event; for a malformed record, of the event it precedes
    t: float = 0.0  # due time, seconds since the stream started
    label_shift: int = 0  # 0: the true label; k: label + k (mod classes)
    defect: str | None = None  # a malformed record of this kind (injected, not a clean event)
    poison: tuple[int, int, int] | None = None  # injected poisoned sample: (task, training row, label)
    duplicate: bool = False  # a redelivery of an event already delivered
    starts: tuple[str, ...] = ()  # chaos windows that begin with this record


def plan(
    n: int,
    rate: float | None,
    chaos: Sequence[Chaos],
    seed: int,
    n_classes: int,
    tasks: Sequence[Task] = (),
    task_ends: dict[int, int] | None = None,
) -> list[Slot]:
    """The delivery order, with every record's due time (deterministic in ``seed``).

    ``task_ends``: where each task's first segment ends (a poisoned task must have been learnt).
    """
    rng = np.random.default_rng([seed, 0xC4A05])
    order = list(range(n))
    for r in (c for c in chaos if isinstance(c, Reorder)):
        for lo in range(r.at, min(r.at + r.events, n), r.block):
            hi = min(lo + r.block, r.at + r.events, n)
            order[lo:hi] = [order[lo + int(i)] for i in rng.permutation(hi - lo)]
    shift: dict[int, int] = {}
    for ln in (c for c in chaos if isinstance(c, LabelNoise)):
        for o in range(ln.at, min(ln.at + ln.events, n)):
            if rng.random() < ln.fraction:
                shift[o] = 1 + int(rng.integers(n_classes - 1))
    starts: dict[int, list[str]] = {}
    for c in chaos:
        starts.setdefault(min(c.at, n - 1), []).append(c.kind)
    malformed: dict[int, list[Malformed]] = {}
    for m in (c for c in chaos if isinstance(c, Malformed)):
        malformed.setdefault(min(m.at, n - 1), []).append(m)
    dups = [c for c in chaos if isinstance(c, Duplicates)]
    poisons = [c for c in chaos if isinstance(c, Poison)]
    for p in poisons:
        if (task_ends or {}).get(p.task, n + 1) > p.at:
            raise ValueError(f"poison at offset {p.at} targets task {p.task}, which has not ended by then")
    slots: list[Slot] = []
    pending: dict[int, list[int]] = {}
    marked: set[int] = set()
    for pos, o in enumerate(order):
        first = o in starts and o not in marked
        kinds = tuple(starts[o]) if first else ()
        marked.add(o)
        for bad in malformed.get(o, []):
            for k in range(bad.count):
                slots.append(
                    Slot(o, defect=bad.defects[k % len(bad.defects)], starts=kinds if k == 0 else ())
                )
            kinds = ()
        slots.append(Slot(o, label_shift=shift.get(o, 0), starts=kinds))
        for p in poisons:
            if p.at <= o < p.at + p.events:
                train = tasks[p.task].train
                row = int(rng.integers(len(train)))
                label = p.label if p.label is not None else (int(train.y[row]) + 1) % n_classes
                slots.append(Slot(o, poison=(p.task, row, label)))
        for dup in dups:
            if dup.at <= o < dup.at + dup.events and rng.random() < dup.fraction:
                pending.setdefault(pos + dup.delay, []).append(o)
        for again in pending.pop(pos, []):
            slots.append(Slot(again, label_shift=shift.get(again, 0), duplicate=True))
    for pos in sorted(pending):  # redeliveries due after the stream's end arrive at its end
        slots += [Slot(again, label_shift=shift.get(again, 0), duplicate=True) for again in pending[pos]]
    _schedule(slots, rate, chaos)
    return slots


def _schedule(slots: list[Slot], rate: float | None, chaos: Sequence[Chaos]) -> None:
    if rate is None:
        return  # unpaced: everything is due at once
    bursts = [c for c in chaos if isinstance(c, Burst)]
    stalls = {c.at: c.seconds for c in chaos if isinstance(c, Stall)}
    clock = 0.0
    for s in slots:
        if s.offset in stalls and not s.duplicate:
            clock += stalls.pop(s.offset)
        s.t = round(clock, 6)
        factor = max([b.factor for b in bursts if b.at <= s.offset < b.at + b.events], default=1.0)
        clock += 1.0 / (rate * factor)


@dataclass
class Delivery:
    """``stream`` delivered under ``chaos``; same interface as :class:`TaskStream` for the learner."""

    stream: TaskStream
    chaos: Sequence[Chaos]
    seed: int = 0
    dead_letter_counts: Counter[str] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __post_init__(self) -> None:
        tasks = self.stream.tasks
        self.n_classes = 1 + max(int(c) for t in tasks for c in t.classes)
        self.slots = plan(
            len(self.stream),
            self.stream.rate,
            self.chaos,
            self.seed,
            self.n_classes,
            tasks,
            self.task_ends(),
        )
        self.ingest = Ingest(tasks[0].train.x.shape[1], self.n_classes, len(tasks))
        self._clean: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def tasks(self) -> list[Task]:
        return self.stream.tasks

    @property
    def rate(self) -> float | None:
        return self.stream.rate

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def segments(self) -> list[int]:
        return self.stream.segments

    def segment_bounds(self) -> list[tuple[int, int]]:
        return self.stream.segment_bounds()

    def task_ends(self) -> dict[int, int]:
        """Offset at which each task's first segment ends."""
        ends: dict[int, int] = {}
        for t, (_, end) in zip(self.segments, self.segment_bounds(), strict=True):
            ends.setdefault(t, end)
        return ends

    def clean_ids(self, stop: int | None = None) -> set[str]:
        """Ids of the distinct clean events delivered in slots ``[0, stop)`` (what must be trained)."""
        ids = self._events()[0]
        return {ids[s.offset] for s in self.slots[:stop] if s.defect is None and s.poison is None}

    def _events(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Every clean event (ids, x, y, task), in stream order."""
        if self._clean is None:
            ids: list[str] = []
            xs, ys, ts = [], [], []
            for b in self.stream.batches(4096):
                ids += b.ids
                xs.append(b.x)
                ys.append(b.y)
                ts.append(np.full(len(b), b.task))
            self._clean = (ids, np.concatenate(xs), np.concatenate(ys), np.concatenate(ts))
        return self._clean

    def record(self, i: int) -> dict[str, Any]:
        """The raw record in slot ``i``, as it would arrive on the wire."""
        ids, xs, ys, ts = self._events()
        s = self.slots[i]
        y = (int(ys[s.offset]) + s.label_shift) % self.n_classes
        rec: dict[str, Any] = {
            "id": ids[s.offset],
            "offset": s.offset,
            "task": int(ts[s.offset]),
            "x": xs[s.offset].tolist(),
            "y": y,
            "t": s.t,
        }
        if s.poison is not None:
            task, row, label = s.poison
            train = self.tasks[task].train
            # posing as part of the live stream: the task the clean stream is on, an old task's sample
            rec.update(id=f"s{self.seed}-poison-{i}", x=train.x[row].tolist(), y=label)
            return rec
        if s.defect is None:
            return rec
        rec["id"] = f"s{self.seed}-malformed-{i}"
        if s.defect == "wrong_shape":
            rec["x"] = rec["x"][:-1]
        elif s.defect == "non_finite":
            rec["x"][0] = float("nan")
        elif s.defect == "missing_field":
            del rec["y"]
        elif s.defect == "wrong_type":
            rec["y"] = str(y)
        elif s.defect == "extra_field":
            rec["weight"] = 1.0
        elif s.defect == "out_of_range":
            rec["y"] = self.n_classes + 3
        return rec

    def batches(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Valid events from slot ``start`` on, ``size`` at a time, never spanning two tasks.

        ``Batch.offset`` / ``Batch.end`` are slot positions, ``[offset, end)`` covering every record
        the batch consumed, dead letters among them (counted, kept, not in the batch).
        """
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        end = len(self) if stop is None else min(stop, len(self))
        group: list[Event] = []
        first, kinds, seg = start, list[str](), -1
        for i in range(start, end):
            s = self.slots[i]
            got = self.ingest(self.record(i))
            if isinstance(got, DeadLetter):
                kinds += s.starts
                self.dead_letter_counts[got.reason] += 1
                if len(self.dead_letters) < MAX_DEAD_LETTERS_KEPT:
                    self.dead_letters.append(got)
                continue
            here = int(self.stream.segment_of(np.asarray(s.offset)))  # the segment it poses in
            if group and (got.task != group[0].task or here != seg or len(group) == size):
                yield self._batch(group, first, i, kinds, seg)
                group, first, kinds = [], i, []
            seg = here
            kinds += s.starts
            group.append(got)
        if group:
            yield self._batch(group, first, end, kinds, seg)

    def _batch(self, events: list[Event], first: int, end: int, kinds: list[str], segment: int) -> Batch:
        return Batch(
            offset=first,
            task=events[0].task,
            x=np.stack([e.x for e in events]),
            y=np.array([e.y for e in events], dtype=np.int64),
            t=events[-1].t,
            seed=self.seed,
            epoch=np.zeros(len(events), dtype=np.int64),
            index=np.zeros(len(events), dtype=np.int64),
            t_first=events[0].t,
            end=end,
            event_ids=tuple(e.id for e in events),
            chaos=tuple(kinds),
            segment=segment,
        )
