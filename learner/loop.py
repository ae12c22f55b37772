"""The learner loop without Ray: consume a stream, train, hand snapshots to ``publish``.

:class:`olsim.learner.actors.learner.LearnerActor` runs it in a thread and publishes to the registry; the
in-process benchmark runs the very same loop and publishes to a local evaluator, so the two
produce identical models for the same scenario and seed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from olsim.learner.config import LearnerConfig
from olsim.learner.device import choose_device
from olsim.learner.drift import PageHinkley
from olsim.learner.model import build_model
from olsim.learner.snapshot import Snapshot
from olsim.learner.strategies import make_strategy
from olsim.learner.trainer import Trainer
from olsim.stream.events import Batch
from olsim.stream.ingest import DeadLetter
from olsim.stream.spec import Source
from olsim.stream.tasks import Task

log = logging.getLogger(__name__)

Publish = Callable[[Snapshot], int | None]  # the version number, or None when the gate rejected it


@dataclass
class LoopState:
    """Where the loop is in the stream and what it has done; restored as a whole on resume.

    >>> s = LoopState(offset=64, tasks_done=[0], chaos_seen=[(1.0, "burst", 32)])
    >>> LoopState.from_dict(asdict(s)) == s
    True
    """

    offset: int = 0  # next stream position to consume (a Delivery's slot, a clean stream's offset)
    task: int | None = None
    segment: int | None = None  # stretch of the stream being learnt (a task may come back)
    seen: int = 0  # distinct tasks met so far (they first appear in index order)
    tasks_done: list[int] = field(default_factory=list)  # the task of every segment that ended
    versions: list[int] = field(default_factory=list)  # accepted
    rejected: int = 0  # candidates the gate turned down
    drifts: list[int] = field(default_factory=list)  # offsets at which the drift detector fired
    ledger: dict[str, int] = field(default_factory=dict)  # event id -> times trained (idempotence)
    duplicates: int = 0  # redelivered events skipped because the ledger had them
    chaos_seen: list[tuple[float, str, int]] = field(default_factory=list)  # (unix time, kind, position)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LoopState:
        """From a checkpoint's plain values (which may hold more keys than these)."""
        values = {f.name: state[f.name] for f in fields(cls)}
        values["chaos_seen"] = [tuple(c) for c in values["chaos_seen"]]
        return cls(**values)


class LearnerLoop:
    """Prequential test-then-train over a task stream; publishes every N steps and at each task end.

    >>> from olsim.stream.spec import StreamSpec
    >>> spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    >>> published = []
    >>> loop = LearnerLoop(spec.build(seed=0), LearnerConfig(publish_every=5), seed=0,
    ...                    publish=lambda s: published.append(s.meta) or len(published))
    >>> loop.run(); loop.state.tasks_done, loop.trainer.steps, [m["task"] for m in published if m["task_end"]]
    ([0, 1], 14, [0, 1])
    """

    def __init__(
        self,
        stream: Source,
        config: LearnerConfig,
        seed: int,
        publish: Publish,
        checkpoint: Callable[[LearnerLoop], None] | None = None,
        after_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.stream = stream
        self.config = config
        self.publish = publish
        self.checkpoint = checkpoint  # called after every publication, with the loop at a step boundary
        self.after_batch = after_batch  # called with the new offset after each batch (may block: a hold)
        model = build_model(config.model, seed=seed)
        strategy = make_strategy(config.strategy, n_features=config.model.in_features, seed=seed)
        device = choose_device(config.device, config.model, config.batch_size)
        self.trainer = Trainer(model, strategy, config.optimizer, device)
        self.initial = Snapshot.from_model(model)
        self._exported: Snapshot | None = None  # the last export (the next one reuses its unchanged arrays)
        self.state = LoopState()  # where the loop is and what it has done (checkpointed)
        self.detector = PageHinkley(config.drift) if config.boundaries == "detected" else None
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=20)  # (correct, size, loss) per batch
        self.t0: float | None = None  # monotonic time the stream started (paced streams)
        self.next_due: float | None = None  # stream time of the oldest event not yet trained
        self.stop_event = threading.Event()

    @property
    def tasks(self) -> list[Task]:
        return self.stream.tasks

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly here: model, optimizer, strategy (buffers included),
        the loop's :class:`LoopState`, the drift detector, recent batches and the dead letters."""
        src = self.stream
        return {
            "trainer": self.trainer.state_dict(),
            **asdict(self.state),
            "detector": None if self.detector is None else self.detector.state_dict(),
            "recent": list(self.recent),
            "dead_letters": dict(src.dead_letter_counts),
            "dead_letter_examples": [(d.id, d.reason, d.detail) for d in src.dead_letters],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.state = LoopState.from_dict(state)
        if self.detector is not None and state["detector"] is not None:
            self.detector.load_state_dict(state["detector"])
        self.recent.clear()
        self.recent.extend(tuple(r) for r in state["recent"])
        self.stream.dead_letter_counts = Counter(state["dead_letters"])
        self.stream.dead_letters = [DeadLetter(*d) for d in state["dead_letter_examples"]]

    def prequential(self) -> float | None:
        recent = list(self.recent)  # one atomic copy: a reporter thread may call this mid-training
        n = sum(s for _, s, _ in recent)
        return None if n == 0 else sum(c for c, _, _ in recent) / n

    def recent_loss(self) -> float | None:
        """Mean training loss over the recent batches (sample-weighted)."""
        recent = list(self.recent)
        n = sum(s for _, s, _ in recent)
        return None if n == 0 else sum(loss * s for _, s, loss in recent) / n

    def lag_s(self) -> float | None:
        """How long the oldest event not yet trained on has been waiting; None for unpaced streams."""
        t0, due = self.t0, self.next_due
        if self.stream.rate is None or t0 is None:
            return None
        return 0.0 if due is None else max(0.0, time.monotonic() - (t0 + due))

    def run(self) -> None:
        """Consume the stream from ``offset`` to its end or until ``stop_event`` is set."""
        self.t0 = None  # pacing restarts from ``offset`` on every run
        for batch in self.stream.batches(self.config.batch_size, start=self.state.offset):
            if self.stop_event.is_set():
                return  # offset still points at this batch's first event
            self.next_due = batch.t_first
            if self.stream.rate is not None:  # wait until the batch's last event has arrived
                if self.t0 is None:
                    self.t0 = time.monotonic() - batch.t_first
                delay = self.t0 + batch.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            now = time.time()
            self.state.chaos_seen += [(now, kind, batch.offset) for kind in batch.chaos]
            # A late event of a segment already ended (redelivered, reordered) is trained where it
            # lands; it does not reopen its segment.
            if self.state.segment is None or batch.segment > self.state.segment:
                if self._segment_open():  # (a resumed learner may have checkpointed right after its end)
                    self._end_task()
                self.state.segment, self.state.task = batch.segment, batch.task
                self.state.seen = max(self.state.seen, batch.task + 1)
            self._train(batch)
            if self.after_batch is not None:
                self.after_batch(self.state.offset)
        self.next_due = None
        if not self.stop_event.is_set():
            self.state.offset = len(self.stream)  # trailing dead letters are consumed too
            if self._segment_open():
                self._end_task()

    def _segment_open(self) -> bool:
        """A segment is being learnt and has not ended (segments end in order)."""
        return self.state.segment is not None and len(self.state.tasks_done) <= self.state.segment

    def _fresh(self, batch: Batch) -> Batch | None:
        """The batch without events the ledger has already trained (None if nothing is left).

        A redelivery can land in the same batch as its original: the ledger is updated as it goes.
        """
        ids = batch.ids
        keep = []
        for i, event_id in enumerate(ids):
            if event_id not in self.state.ledger:
                self.state.ledger[event_id] = 1
                keep.append(i)
            else:
                self.state.duplicates += 1
        if len(keep) == len(ids):
            return batch
        if not keep:
            return None
        sel = np.array(keep)
        return replace(batch, x=batch.x[sel], y=batch.y[sel], event_ids=tuple(ids[i] for i in keep))

    def _train(self, batch: Batch) -> None:
        self.state.offset = batch.next_offset
        fresh = self._fresh(batch)
        if fresh is None:
            return
        result = self.trainer.step(torch.from_numpy(fresh.x), torch.from_numpy(fresh.y))
        self.recent.append((result.correct, result.size, result.loss))
        if self.detector is not None and self.detector.update(1.0 - result.correct / result.size):
            self.trainer.strategy.on_drift(self.trainer.model)
            self.state.drifts.append(self.state.offset)
            log.info("drift detected offset=%d task=%d", self.state.offset, batch.task)
        if self.trainer.steps % self.config.publish_every == 0:
            self._publish(task_end=False)

    def _end_task(self) -> None:
        """The segment being learnt ended: publish the version the accuracy matrix row is taken from.

        Strategies hear of it only when boundaries are announced; with detected boundaries the
        evaluation protocol still knows where tasks end, the learner does not.
        """
        task = self.state.task
        assert task is not None
        if self.config.boundaries == "announced":
            self.trainer.end_task(task)
        self.state.tasks_done.append(task)
        self._publish(task_end=True)
        log.info("task end task=%d steps=%d", task, self.trainer.steps)

    def _publish(self, task_end: bool) -> None:
        snap = Snapshot.from_model(
            self.trainer.model,
            extras=self.trainer.strategy.export(),
            previous=self._exported,  # unchanged tensors (a frozen base) are not copied or hashed again
            task=int(self.state.task or 0),
            task_end=task_end,
            segment=int(self.state.segment or 0),
            seen=self.state.seen,
            step=self.trainer.steps,
            samples=self.trainer.samples,
            offset=self.state.offset,
            strategy=self.trainer.strategy.name,
        )
        self._exported = snap
        number = self.publish(snap)
        if number is None:
            self.state.rejected += 1
        else:
            self.state.versions.append(number)
        if self.checkpoint is not None:
            self.checkpoint(self)
