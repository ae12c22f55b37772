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
from dataclasses import replace
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


class LearnerLoop:
    """Prequential test-then-train over a task stream; publishes every N steps and at each task end.

    >>> from olsim.stream.spec import StreamSpec
    >>> spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    >>> published = []
    >>> loop = LearnerLoop(spec.build(seed=0), LearnerConfig(publish_every=5), seed=0,
    ...                    publish=lambda s: published.append(s.meta) or len(published))
    >>> loop.run(); loop.tasks_done, loop.trainer.steps, [m["task"] for m in published if m["task_end"]]
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
        self.offset = 0  # next stream position to consume (a Delivery's slot, a clean stream's offset)
        self.task: int | None = None
        self.segment: int | None = None  # stretch of the stream being learnt (a task may come back)
        self.seen = 0  # distinct tasks met so far (they first appear in index order)
        self.tasks_done: list[int] = []  # the task of every segment that ended, in order
        self.versions: list[int] = []  # accepted
        self.rejected = 0  # candidates the gate turned down
        self.detector = PageHinkley(config.drift) if config.boundaries == "detected" else None
        self.drifts: list[int] = []  # offsets at which the detector fired
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=20)  # (correct, size, loss) per batch
        self.t0: float | None = None  # monotonic time the stream started (paced streams)
        self.next_due: float | None = None  # stream time of the oldest event not yet trained
        self.ledger: dict[str, int] = {}  # event id -> times trained (training is idempotent per id)
        self.duplicates = 0  # redelivered events skipped because the ledger had them
        self.chaos_seen: list[tuple[float, str, int]] = []  # (unix time, chaos kind, position) as reached
        self.stop_event = threading.Event()

    @property
    def tasks(self) -> list[Task]:
        return self.stream.tasks

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly here: model, optimizer, strategy (buffers included),
        stream position, the event-id ledger and the delivery's dead-letter counts."""
        src = self.stream
        return {
            "trainer": self.trainer.state_dict(),
            "offset": self.offset,
            "task": self.task,
            "segment": self.segment,
            "seen": self.seen,
            "tasks_done": list(self.tasks_done),
            "versions": list(self.versions),
            "rejected": self.rejected,
            "drifts": list(self.drifts),
            "detector": None if self.detector is None else self.detector.state_dict(),
            "recent": list(self.recent),
            "ledger": dict(self.ledger),
            "duplicates": self.duplicates,
            "chaos_seen": list(self.chaos_seen),
            "dead_letters": dict(src.dead_letter_counts),
            "dead_letter_examples": [(d.id, d.reason, d.detail) for d in src.dead_letters],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.offset = int(state["offset"])
        self.task = state["task"]
        self.segment = state["segment"]
        self.seen = int(state["seen"])
        self.tasks_done = list(state["tasks_done"])
        self.versions = list(state["versions"])
        self.rejected = int(state["rejected"])
        self.drifts = list(state["drifts"])
        if self.detector is not None and state["detector"] is not None:
            self.detector.load_state_dict(state["detector"])
        self.recent.clear()
        self.recent.extend(tuple(r) for r in state["recent"])
        self.ledger = dict(state["ledger"])
        self.duplicates = int(state["duplicates"])
        self.chaos_seen = [tuple(c) for c in state["chaos_seen"]]
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
        for batch in self.stream.batches(self.config.batch_size, start=self.offset):
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
            self.chaos_seen += [(now, kind, batch.offset) for kind in batch.chaos]
            # A late event of a segment already ended (redelivered, reordered) is trained where it
            # lands; it does not reopen its segment.
            if self.segment is None or batch.segment > self.segment:
                if self._segment_open():  # (a resumed learner may have checkpointed right after its end)
                    self._end_task()
                self.segment, self.task = batch.segment, batch.task
                self.seen = max(self.seen, batch.task + 1)
            self._train(batch)
            if self.after_batch is not None:
                self.after_batch(self.offset)
        self.next_due = None
        if not self.stop_event.is_set():
            self.offset = len(self.stream)  # trailing dead letters are consumed too
            if self._segment_open():
                self._end_task()

    def _segment_open(self) -> bool:
        """A segment is being learnt and has not ended (segments end in order)."""
        return self.segment is not None and len(self.tasks_done) <= self.segment

    def _fresh(self, batch: Batch) -> Batch | None:
        """The batch without events the ledger has already trained (None if nothing is left).

        A redelivery can land in the same batch as its original: the ledger is updated as it goes.
        """
        ids = batch.ids
        keep = []
        for i, event_id in enumerate(ids):
            if event_id not in self.ledger:
                self.ledger[event_id] = 1
                keep.append(i)
            else:
                self.duplicates += 1
        if len(keep) == len(ids):
            return batch
        if not keep:
            return None
        sel = np.array(keep)
        return replace(batch, x=batch.x[sel], y=batch.y[sel], event_ids=tuple(ids[i] for i in keep))

    def _train(self, batch: Batch) -> None:
        self.offset = batch.next_offset
        fresh = self._fresh(batch)
        if fresh is None:
            return
        result = self.trainer.step(torch.from_numpy(fresh.x), torch.from_numpy(fresh.y))
        self.recent.append((result.correct, result.size, result.loss))
        if self.detector is not None and self.detector.update(1.0 - result.correct / result.size):
            self.trainer.strategy.on_drift(self.trainer.model)
            self.drifts.append(self.offset)
            log.info("drift detected offset=%d task=%d", self.offset, batch.task)
        if self.trainer.steps % self.config.publish_every == 0:
            self._publish(task_end=False)

    def _end_task(self) -> None:
        """The segment being learnt ended: publish the version the accuracy matrix row is taken from.

        Strategies hear of it only when boundaries are announced; with detected boundaries the
        evaluation protocol still knows where tasks end, the learner does not.
        """
        task = self.task
        assert task is not None
        if self.config.boundaries == "announced":
            self.trainer.end_task(task)
        self.tasks_done.append(task)
        self._publish(task_end=True)
        log.info("task end task=%d steps=%d", task, self.trainer.steps)

    def _publish(self, task_end: bool) -> None:
        snap = Snapshot.from_model(
            self.trainer.model,
            extras=self.trainer.strategy.export(),
            task=int(self.task or 0),
            task_end=task_end,
            segment=int(self.segment or 0),
            seen=self.seen,
            step=self.trainer.steps,
            samples=self.trainer.samples,
            offset=self.offset,
            strategy=self.trainer.strategy.name,
        )
        number = self.publish(snap)
        if number is None:
            self.rejected += 1
        else:
            self.versions.append(number)
        if self.checkpoint is not None:
            self.checkpoint(self)
