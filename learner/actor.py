"""The learner as a Ray actor: consumes the stream, trains, publishes weight versions.

The loop runs in its own thread so ``progress()`` and ``stop()`` answer while it trains.
The registry and evaluator are passed in as actor handles (deploy wires them), so this module
imports nothing from serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from learner.config import LearnerConfig
from learner.model import build_model
from learner.snapshot import Snapshot
from learner.strategies import make_strategy
from learner.trainer import Trainer
from stream.events import Event
from stream.spec import StreamSpec

log = logging.getLogger(__name__)


class LearnerActor:
    """Run with ``ray.remote(LearnerActor)``."""

    def __init__(self, stream: StreamSpec, config: LearnerConfig, seed: int, registry: Any, evaluator: Any):
        torch.set_num_threads(1)
        self.config = config
        self.seed = seed
        self.registry = registry
        self.evaluator = evaluator
        self.tasks = stream.build_tasks(seed)
        self.stream = stream.build(seed, self.tasks)
        model = build_model(config.model, seed=seed)
        strategy = make_strategy(config.strategy, n_features=config.model.in_features, seed=seed)
        self.trainer = Trainer(model, strategy, config.optimizer)
        self.offset = 0  # next stream offset to consume
        self.task: int | None = None
        self.tasks_done: list[int] = []
        self.versions: list[int] = []
        self.error: str | None = None
        self.done = False
        self._recent: deque[tuple[int, int]] = deque(maxlen=20)  # (correct, size) of recent batches
        self._unreported = 0
        self._last_report = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="olsim-learner", daemon=True)
        self.evaluator.set_baseline.remote(Snapshot.from_model(model))

    # -- control ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def progress(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "total": len(self.stream),
            "task": self.task,
            "n_tasks": len(self.tasks),
            "tasks_done": list(self.tasks_done),
            "steps": self.trainer.steps,
            "samples": self.trainer.samples,
            "versions": list(self.versions),
            "prequential_accuracy": self._prequential(),
            "done": self.done,
            "error": self.error,
        }

    # -- the loop -------------------------------------------------------------------------
    def _prequential(self) -> float | None:
        n = sum(s for _, s in self._recent)
        return None if n == 0 else sum(c for c, _ in self._recent) / n

    def _run(self) -> None:
        try:
            self._consume()
        except Exception as exc:
            self.error = repr(exc)
            log.exception("learner failed offset=%d", self.offset)
        finally:
            self._report_stats(force=True)
            self.done = True

    def _consume(self) -> None:
        batch: list[Event] = []
        t0: float | None = None
        for ev in self.stream.events(start=self.offset):
            if self._stop.is_set():
                return  # a partial batch is dropped un-acknowledged: offset still points at it
            if self.stream.rate is not None:
                if t0 is None:
                    t0 = time.monotonic() - ev.t
                delay = t0 + ev.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if self.task is not None and ev.task != self.task:
                self._train(batch)
                batch = []
                self._end_task(self.task)
            self.task = ev.task
            batch.append(ev)
            if len(batch) >= self.config.batch_size:
                self._train(batch)
                batch = []
            self._report_stats()
        if not self._stop.is_set() and self.task is not None:
            self._train(batch)
            self._end_task(self.task)

    def _train(self, batch: list[Event]) -> None:
        if not batch:
            return
        x = torch.from_numpy(np.stack([e.x for e in batch]))
        y = torch.tensor([e.y for e in batch], dtype=torch.long)
        result = self.trainer.step(x, y)
        self._recent.append((result.correct, result.size))
        self._unreported += result.size
        self.offset = batch[-1].offset + 1
        if self.trainer.steps % self.config.publish_every == 0:
            self._publish(task_end=False)

    def _end_task(self, task: int) -> None:
        self.trainer.end_task(task)
        self.tasks_done.append(task)
        self._publish(task_end=True)
        log.info("task end task=%d steps=%d", task, self.trainer.steps)

    def _publish(self, task_end: bool) -> None:
        import ray

        snap = Snapshot.from_model(
            self.trainer.model,
            task=int(self.task or 0),
            task_end=task_end,
            step=self.trainer.steps,
            samples=self.trainer.samples,
            offset=self.offset,
            strategy=self.trainer.strategy.name,
        )
        self.versions.append(int(ray.get(self.registry.publish.remote(snap))))

    def _report_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 0.5:
            return
        self._last_report = now
        n, self._unreported = self._unreported, 0
        self.evaluator.record_learner.remote(n, self._prequential(), {"trained": n})
