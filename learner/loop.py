"""The learner loop without Ray: consume a stream, train, hand snapshots to ``publish``.

:class:`learner.actor.LearnerActor` runs it in a thread and publishes to the registry; the
in-process benchmark runs the very same loop and publishes to a local evaluator, so the two
produce identical models for the same scenario and seed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import torch

from learner.config import LearnerConfig
from learner.drift import PageHinkley
from learner.model import build_model
from learner.snapshot import Snapshot
from learner.strategies import make_strategy
from learner.trainer import Trainer
from stream.events import Batch, TaskStream
from stream.tasks import Task

log = logging.getLogger(__name__)

Publish = Callable[[Snapshot], int | None]  # the version number, or None when the gate rejected it


class LearnerLoop:
    """Prequential test-then-train over a task stream; publishes every N steps and at each task end.

    >>> from stream.spec import StreamSpec
    >>> spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    >>> published = []
    >>> loop = LearnerLoop(spec.build(seed=0), LearnerConfig(publish_every=5), seed=0,
    ...                    publish=lambda s: published.append(s.meta) or len(published))
    >>> loop.run(); loop.tasks_done, loop.trainer.steps, [m["task"] for m in published if m["task_end"]]
    ([0, 1], 14, [0, 1])
    """

    def __init__(self, stream: TaskStream, config: LearnerConfig, seed: int, publish: Publish) -> None:
        self.stream = stream
        self.config = config
        self.publish = publish
        model = build_model(config.model, seed=seed)
        strategy = make_strategy(config.strategy, n_features=config.model.in_features, seed=seed)
        self.trainer = Trainer(model, strategy, config.optimizer)
        self.initial = Snapshot.from_model(model)
        self.offset = 0  # next stream offset to consume
        self.task: int | None = None
        self.tasks_done: list[int] = []
        self.versions: list[int] = []  # accepted
        self.rejected = 0  # candidates the gate turned down
        self.detector = PageHinkley(config.drift) if config.boundaries == "detected" else None
        self.drifts: list[int] = []  # offsets at which the detector fired
        self.recent: deque[tuple[int, int]] = deque(maxlen=20)  # (correct, size) of recent batches
        self.unreported = 0  # samples trained since the last take_unreported()
        self.stop_event = threading.Event()

    @property
    def tasks(self) -> list[Task]:
        return self.stream.tasks

    def prequential(self) -> float | None:
        n = sum(s for _, s in self.recent)
        return None if n == 0 else sum(c for c, _ in self.recent) / n

    def take_unreported(self) -> int:
        n, self.unreported = self.unreported, 0
        return n

    def run(self, on_batch: Callable[[], None] | None = None) -> None:
        """Consume the stream from ``offset`` to its end or until ``stop_event`` is set."""
        t0: float | None = None
        for batch in self.stream.batches(self.config.batch_size, start=self.offset):
            if self.stop_event.is_set():
                return  # offset still points at this batch's first event
            if self.stream.rate is not None:  # wait until the batch's last event has arrived
                if t0 is None:
                    t0 = time.monotonic() - batch.offset / self.stream.rate
                delay = t0 + batch.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if self.task is not None and batch.task != self.task:
                self._end_task(self.task)
            self.task = batch.task
            self._train(batch)
            if on_batch is not None:
                on_batch()
        if not self.stop_event.is_set() and self.task is not None and self.offset >= len(self.stream):
            self._end_task(self.task)

    def _train(self, batch: Batch) -> None:
        result = self.trainer.step(torch.from_numpy(batch.x), torch.from_numpy(batch.y))
        self.recent.append((result.correct, result.size))
        self.unreported += result.size
        self.offset = batch.offset + len(batch)
        if self.detector is not None and self.detector.update(1.0 - result.correct / result.size):
            self.trainer.strategy.on_drift(self.trainer.model)
            self.drifts.append(self.offset)
            log.info("drift detected offset=%d task=%d", self.offset, batch.task)
        if self.trainer.steps % self.config.publish_every == 0:
            self._publish(task_end=False)

    def _end_task(self, task: int) -> None:
        """A task's stream segment ended: publish the version the accuracy matrix row is taken from.

        Strategies hear of it only when boundaries are announced; with detected boundaries the
        evaluation protocol still knows where tasks end, the learner does not.
        """
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
