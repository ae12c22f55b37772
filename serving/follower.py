"""Keeps one replica's model current: long-polls the registry and swaps in new versions atomically.

The served model is one immutable :class:`Served` record replaced by a single reference assignment,
so a request that read it is served wholly by that version, never by a mix of layers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from olsim.learner.model import ModelSpec
from olsim.learner.served import ServedModel
from olsim.serving.registry import Current

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    version: int
    generation: int  # the registry change that made this version current
    model: ServedModel
    published_at: float  # when the registry accepted the version


class WeightFollower:
    def __init__(
        self, registry: Any, replica: str, poll_timeout_s: float = 5.0, spec: ModelSpec | None = None
    ) -> None:
        import ray

        self._ray = ray
        self.spec = spec  # the model this replica serves: a version naming another is refused
        self.registry = registry
        self.replica = replica
        self.poll_timeout_s = poll_timeout_s
        self.served: Served | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="olsim-weight-follower", daemon=True)

    def load_current(self) -> None:
        """Blocking: load whatever the registry serves now (called before the replica reports ready)."""
        current = self._ray.get(self.registry.current.remote())
        if current is not None:
            self.apply(current)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def generation(self) -> int:
        return 0 if self.served is None else self.served.generation

    def apply(self, c: Current) -> None:
        """Build the version's model (checksum verified) and make it the served one."""
        v = c.version
        model = v.snapshot.build(self.spec)  # verifies the checksum, the spec, names and shapes
        self.served = Served(v.number, c.generation, model, v.published_at)  # the atomic swap
        applied = time.time()
        self.registry.ack.remote(self.replica, v.number, c.generation, applied)
        log.debug(
            "swapped replica=%s version=%d generation=%d staleness_ms=%.1f",
            self.replica,
            v.number,
            c.generation,
            1e3 * (applied - c.changed_at),
        )

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                c = self._ray.get(self.registry.wait_newer.remote(self.generation, self.poll_timeout_s))
                if c is not None and c.generation > self.generation:
                    self.apply(c)
                backoff = 0.1
            except Exception as exc:  # registry restarting, bad snapshot: keep serving, retry
                self.errors += 1
                log.warning("weight follower error replica=%s error=%r", self.replica, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
