"""The learner as a Ray actor: runs :class:`learner.loop.LearnerLoop` and publishes to the registry.

The loop runs in its own thread so ``progress()`` and ``stop()`` answer while it trains. The
registry and evaluator are passed in as actor handles (deploy wires them), so this module imports
nothing from serving.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import torch

from learner.config import LearnerConfig
from learner.loop import LearnerLoop
from learner.snapshot import Snapshot
from stream.spec import StreamSpec

log = logging.getLogger(__name__)


class LearnerActor:
    """Run with ``ray.remote(LearnerActor)``."""

    def __init__(self, stream: StreamSpec, config: LearnerConfig, seed: int, registry: Any, evaluator: Any):
        torch.set_num_threads(1)
        self.registry = registry
        self.evaluator = evaluator
        self.loop = LearnerLoop(stream.build(seed), config, seed, publish=self._publish)
        self.error: str | None = None
        self.done = False
        self._last_report = 0.0
        self._drifts_reported = 0
        self._thread = threading.Thread(target=self._run, name="olsim-learner", daemon=True)
        self.evaluator.set_baseline.remote(self.loop.initial)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.loop.stop_event.set()

    def progress(self) -> dict[str, Any]:
        loop = self.loop
        return {
            "offset": loop.offset,
            "total": len(loop.stream),
            "task": loop.task,
            "n_tasks": len(loop.tasks),
            "tasks_done": list(loop.tasks_done),
            "steps": loop.trainer.steps,
            "samples": loop.trainer.samples,
            "versions": list(loop.versions),
            "rejected": loop.rejected,
            "drifts": list(loop.drifts),
            "prequential_accuracy": loop.prequential(),
            "done": self.done,
            "error": self.error,
        }

    def _publish(self, snapshot: Snapshot) -> int | None:
        import ray

        result = ray.get(self.registry.publish.remote(snapshot))
        if result.version is None:
            log.info("candidate rejected reason=%s %s", result.reason, result.detail)
        return result.version

    def _run(self) -> None:
        try:
            self.loop.run(on_batch=self._report_stats)
        except Exception as exc:
            self.error = repr(exc)
            log.exception("learner failed offset=%d", self.loop.offset)
        finally:
            try:
                self._report_stats(force=True)
            except Exception:  # the run is over either way: never leave `done` unset
                log.exception("final stats report failed")
            self.done = True

    def _report_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 0.5:
            return
        self._last_report = now
        n = self.loop.take_unreported()
        drifts = len(self.loop.drifts) - self._drifts_reported
        self._drifts_reported += drifts
        self.evaluator.record_learner.remote(n, self.loop.prequential(), {"trained": n}, drifts)
