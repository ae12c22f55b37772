"""The learner as a Ray actor: runs :class:`olsim.learner.loop.LearnerLoop` and publishes to the registry.

The loop runs in its own thread so ``progress()``, ``release()`` and ``stop()`` answer while it
trains. The registry and evaluator are passed in as actor handles (deploy wires them), so this
module imports nothing from serving.

Restarts: with a checkpoint path, the learner keeps a small lives file beside it (``learner.json``)
from its first ``start()`` on. Ray restarting the actor (or a new one started over the same state)
finds it, counts one more restart there at once (so every restart is counted, also two between
checkpoints), resumes from the checkpoint if there is one (from the stream's start if not) and
starts by itself.

Holds: a run that kills processes at stream positions gives the learner those positions; the
learner stops at each (after the batch that reaches it) until the fault injector releases it, so
every fault strikes at its position whatever the machine's speed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from olsim.learner import checkpoint
from olsim.learner.actors.names import resolve
from olsim.learner.actors.telemetry import LearnerStats
from olsim.learner.config import LearnerConfig
from olsim.learner.loop import LearnerLoop
from olsim.learner.snapshot import Snapshot
from olsim.stream.spec import StreamSpec

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.5


class LearnerActor:
    """Run with ``ray.remote(LearnerActor)``."""

    def __init__(
        self,
        stream: StreamSpec,
        config: LearnerConfig,
        seed: int,
        registry: Any,
        evaluator: Any,
        checkpoint_path: str | None = None,
        holds: list[int] | None = None,
    ):
        torch.set_num_threads(1)
        self.registry = resolve(registry)  # handles, or ActorNames
        self.evaluator = resolve(evaluator)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.lives_path = None if self.checkpoint_path is None else self.checkpoint_path.with_suffix(".json")
        hook = None if self.checkpoint_path is None else self._checkpoint
        # (index, position) of each hold still ahead, in stream order; indices name them to the injector
        self._holds = list(enumerate(sorted(holds or [])))
        self._released: set[int] = set()
        self.held: int | None = None  # index of the hold the loop waits at now
        self.loop = LearnerLoop(
            stream.build(seed),
            config,
            seed,
            publish=self._publish,
            checkpoint=hook,
            after_batch=self._hold if self._holds else None,
        )
        self.error: str | None = None
        self._published: Snapshot | None = None  # the last accepted candidate (later ones send changes)
        self.done = False
        self.restarts = 0  # times this learner came back (Ray restarted it, or it started over old state)
        self.checkpoints = 0
        self.resumed_from: int | None = None  # stream position restored at the last restart
        restored = self._restore()
        # Counts continue from the checkpoint: the evaluator has seen those.
        self._reported, self._reported_dead = self._totals()
        self._report_lock = threading.Lock()
        self._final_sent = False
        self.node = _node_id()
        self._thread = threading.Thread(target=self._run, name="olsim-learner", daemon=True)
        self._reporter = threading.Thread(target=self._report_forever, name="olsim-stats", daemon=True)
        self.evaluator.set_baseline.remote(self.loop.initial)
        if restored:  # Ray restarted this actor after a crash: carry on by itself
            self.start()

    def _restore(self) -> bool:
        """A learner that had started before (its lives file exists): count this restart, resume from
        the checkpoint if one was written. True: it is to start by itself."""
        if self.lives_path is None or self.checkpoint_path is None or not self.lives_path.exists():
            return False
        self.restarts = int(json.loads(self.lives_path.read_text())["restarts"]) + 1
        self._write_lives()  # counted before anything else can fail
        if self.checkpoint_path.exists():
            state = checkpoint.load(self.checkpoint_path)
            self.loop.load_state_dict(state["loop"])
            self.checkpoints = int(state["checkpoints"])
        self.resumed_from = self.loop.state.offset
        self._holds = [
            (i, at) for i, at in self._holds if at >= self.loop.state.offset
        ]  # the rest were passed
        log.warning(
            "learner restarted offset=%d restarts=%d from_checkpoint=%s",
            self.loop.state.offset,
            self.restarts,
            self.checkpoints > 0,
        )
        return True

    def _write_lives(self) -> None:
        assert self.lives_path is not None
        data = json.dumps({"restarts": self.restarts}).encode()
        checkpoint.write_atomic(self.lives_path, lambda f: f.write(data))

    def _checkpoint(self, loop: LearnerLoop) -> None:
        assert self.checkpoint_path is not None
        self.checkpoints += 1
        checkpoint.save(self.checkpoint_path, {"loop": loop.state_dict(), "checkpoints": self.checkpoints})

    def _hold(self, offset: int) -> None:
        """After each batch: at a hold's position, wait until :meth:`release` names it (or stop)."""
        while self._holds and offset >= self._holds[0][1] and not self.loop.stop_event.is_set():
            index, at = self._holds[0]
            self.held = index
            log.info("holding offset=%d hold=%d at=%d", offset, index, at)
            while index not in self._released and not self.loop.stop_event.wait(0.01):
                pass
            self.held = None
            self._holds.pop(0)

    def release(self, index: int) -> None:
        """Let the loop go on past hold ``index`` (the fault injector calls this)."""
        self._released.add(index)

    def start(self) -> None:
        """Start consuming the stream (once; a restarted learner starts by itself)."""
        if not self._thread.is_alive() and not self.done:
            if self.lives_path is not None and not self.lives_path.exists():
                self._write_lives()  # from now on, a new process over this state is a restart
            self._thread.start()
            self._reporter.start()

    def stop(self) -> None:
        self.loop.stop_event.set()

    def progress(self) -> dict[str, Any]:
        loop = self.loop
        return {
            "offset": loop.state.offset,
            "total": len(loop.stream),
            "task": loop.state.task,
            "n_tasks": len(loop.tasks),
            "tasks_done": list(loop.state.tasks_done),
            "steps": loop.trainer.steps,
            "samples": loop.trainer.samples,
            "versions": list(loop.state.versions),
            "rejected": loop.state.rejected,
            "drifts": list(loop.state.drifts),
            "prequential_accuracy": loop.prequential(),
            "done": self.done,
            "error": self.error,
            "restarts": self.restarts,
            "resumed_from": self.resumed_from,
            "held": self.held,
            "node": self.node,
            "device": str(loop.trainer.device),
        }

    def stream_report(self) -> dict[str, Any]:
        """What became of the stream: the event-id ledger against what was delivered."""
        loop, src = self.loop, self.loop.stream
        expected = src.clean_ids(loop.state.offset)
        trained = set(loop.state.ledger)
        dead = src.dead_letter_counts
        return {
            "records": len(src),
            "consumed": loop.state.offset,
            "events_expected": len(expected),
            "events_trained": len(trained & expected),
            "injected_trained": len(trained - expected),  # well-formed records not from the clean stream
            "events_lost": len(expected - trained),
            "events_trained_twice": sum(1 for n in loop.state.ledger.values() if n > 1),
            "duplicates_skipped": loop.state.duplicates,
            "dead_lettered": sum(dead.values()),
            "dead_letters": dict(dead),
            "dead_letter_examples": [asdict(d) for d in src.dead_letters[:20]],
            "learner_restarts": self.restarts,
            "checkpoints": self.checkpoints,
            "chaos": [{"at": at, "kind": kind, "position": pos} for at, kind, pos in loop.state.chaos_seen],
        }

    def _publish(self, snapshot: Snapshot) -> int | None:
        result = publish(self.registry, snapshot, self._published)
        if result.version is None:
            log.info("candidate rejected reason=%s %s", result.reason, result.detail)
        else:
            self._published = snapshot
        return result.version

    def _run(self) -> None:
        try:
            self.loop.run()
        except Exception as exc:
            self.error = repr(exc)
            log.exception("learner failed offset=%d", self.loop.state.offset)
        finally:
            try:
                self._report(final=True)  # the last samples, and running=0
            except Exception:  # the run is over either way: never leave `done` unset
                log.exception("final stats report failed")
            self.done = True

    def _report_forever(self) -> None:
        """Heartbeat: report every 0.5 s from its own thread, so a stalled stream or a stuck
        training step shows up as flat samples with a growing lag, not as silence."""
        while not self.done:
            time.sleep(REPORT_INTERVAL_S)
            if self.done:
                return
            try:
                self._report(final=False)
            except Exception as exc:
                log.warning("stats report error=%r", exc)

    def _report(self, final: bool) -> None:
        with self._report_lock:  # the final report (running=0) must be the last one sent
            if self._final_sent:
                return
            self._final_sent = final
            self._send(final)

    def _totals(self) -> tuple[Counter[str], Counter[str]]:
        """The loop's cumulative counts and dead letters by reason (the training thread keeps adding)."""
        loop = self.loop
        counts = Counter(
            samples=loop.trainer.samples,
            drifts=len(loop.state.drifts),
            duplicates=loop.state.duplicates,
            chaos=len(loop.state.chaos_seen),
        )
        return counts, Counter(dict(loop.stream.dead_letter_counts))  # dict(): one atomic copy

    def _send(self, final: bool) -> None:
        loop = self.loop
        counts, dead_now = self._totals()
        new, dead = counts - self._reported, dead_now - self._reported_dead  # what is new since the last
        chaos = tuple(k for _, k, _ in loop.state.chaos_seen[self._reported["chaos"] : counts["chaos"]])
        self._reported, self._reported_dead = counts, dead_now
        n = new["samples"]
        stats = LearnerStats(
            samples=n,
            events={"trained": n, "duplicate": new["duplicates"], "dead_letter": dead.total()},
            dead_letters=dict(dead),
            chaos=chaos,
            drifts=new["drifts"],
            prequential_accuracy=loop.prequential(),
            loss=loop.recent_loss(),
            memory=loop.trainer.strategy.memory_fill(),
            lag_s=loop.lag_s(),
            running=not final,
        )
        self.evaluator.record_learner.remote(stats)


def _node_id() -> str | None:
    """The Ray node this actor runs on (None outside Ray, e.g. in doctests)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def publish(registry: Any, snapshot: Snapshot, previous: Snapshot | None = None) -> Any:
    """Publish ``snapshot`` to the registry actor and return its answer. After an accepted
    ``previous``, only the arrays that changed since travel (``publish_delta``); the whole snapshot
    goes when there is no previous one, or when the registry no longer holds what the rest needs."""
    import ray

    if previous is not None:
        sent = set(previous.digests.values())
        changed = {d: a for d, a in snapshot.arrays().items() if d not in sent}
        result = ray.get(registry.publish_delta.remote(snapshot.manifest(), changed))
        if result.reason != "missing":
            return result
    return ray.get(registry.publish.remote(snapshot))
