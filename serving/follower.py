"""Keeps one replica's model current: long-polls the registry and swaps in new versions atomically.

The served model is one immutable :class:`Served` record replaced by a single reference assignment,
so a request that read it is served wholly by that version, never by a mix of layers.

A version arrives as a manifest (names -> content digests) and a handle per array. With object
references (the registry's default), the follower fetches only the arrays it does not already
serve (checking the manifest's checksum over their digests, and with ``serving.verify_arrays``
each array's digest too) and points a network's weights at those arrays in the node's object store
(:class:`olsim.learner.networks.NetworkPool`): no private copy, and a tensor two versions share is
one piece of memory. Arrays handed over by value are verified and copied into a fresh network
(:meth:`Snapshot.build`). Everything happens on the follower's thread, never on the replica's
event loop; hashing and copying release the GIL.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olsim.learner.model import ModelSpec
from olsim.learner.networks import NetworkPool
from olsim.learner.priority import lower_thread_priority
from olsim.learner.served import ServedModel
from olsim.learner.snapshot import Snapshot, SnapshotError, digest, resolve, root
from olsim.serving.registry import Current

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    version: int
    generation: int  # the registry change that made this version current
    model: ServedModel
    published_at: float  # when the registry accepted the version
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # digest -> array the model's weights are
    handles: dict[str, Any] = field(default_factory=dict)  # the references behind ``arrays`` (kept alive)


def held_bytes(*objects: Any) -> int:
    """Bytes of distinct memory behind the tensors of served models and arrays (aliases counted once):
    what this process holds for them, private copies and object-store memory alike."""
    regions: dict[int, int] = {}
    for obj in objects:
        if isinstance(obj, dict):
            for a in obj.values():
                regions[a.ctypes.data] = max(regions.get(a.ctypes.data, 0), a.nbytes)
        elif obj is not None:
            for t in (*obj.parameters(), *obj.buffers()):
                s = t.untyped_storage()
                regions[s.data_ptr()] = max(regions.get(s.data_ptr(), 0), s.nbytes())
    return sum(regions.values())


class WeightFollower:
    def __init__(
        self,
        registry: Any,
        replica: str,
        poll_timeout_s: float = 5.0,
        spec: ModelSpec | None = None,
        verify_arrays: bool = False,
    ) -> None:
        import ray

        self._ray = ray
        self.spec = spec  # the model this replica serves: a version naming another is refused
        self.registry = registry
        self.replica = replica
        self.poll_timeout_s = poll_timeout_s
        self.verify_arrays = verify_arrays  # re-hash arrays read by reference (the registry hashed them)
        self.served: Served | None = None
        self.errors = 0
        self.networks = NetworkPool()  # module trees reused across versions
        if spec is not None:
            self.networks.warm(spec)  # before the replica reports ready
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
        """Build the version's model and make it the served one. Arrays that came by value are all
        re-hashed; arrays read by reference only with ``verify_arrays`` (the registry hashed each
        one before storing it, and the store's objects are immutable)."""
        v = c.version
        old = self.served
        by_value = all(isinstance(h, np.ndarray) for h in v.blobs.values())
        have = {} if old is None else old.arrays  # digest -> array this replica serves now
        tree = None
        if by_value:  # all arrays came with the call: verify the whole snapshot, build a copy
            model = Snapshot.assemble(v.manifest, v.blobs).build(self.spec)
            arrays: dict[str, np.ndarray] = {}
            moved = v.manifest.nbytes
            received: dict[str, np.ndarray] = v.blobs
        else:
            if root(v.manifest.spec, v.manifest.digests) != v.manifest.checksum:
                raise SnapshotError("manifest checksum mismatch")
            received = resolve({d: h for d, h in v.blobs.items() if d not in have}, self._ray.get)
            for d, a in received.items() if self.verify_arrays else ():
                if digest(a) != d:
                    raise SnapshotError(f"array {d[:12]} does not match its digest")
            arrays = {d: have[d] if d in have else received[d] for d in v.blobs}
            model, tree = self.networks.serve(v.manifest, arrays, self.spec)
            moved = sum(a.nbytes for a in received.values())
        peak = held_bytes(old.model if old else None, old.arrays if old else None, model, received)
        # arrays carried over keep the references they came with (after a registry restart the new
        # registry's references name copies of them)
        kept = {} if old is None else old.handles
        handles = {} if by_value else {d: kept.get(d, h) for d, h in v.blobs.items()}
        served = Served(v.number, c.generation, model, v.published_at, arrays, handles)
        if tree is not None:  # the tree is free again once nothing holds this version's model
            weakref.finalize(model, self.networks.release, tree)
        self.served = served  # the swap
        applied = time.time()
        self.registry.ack.remote(self.replica, v.number, c.generation, applied, moved, peak)
        log.debug(
            "swapped replica=%s version=%d generation=%d staleness_ms=%.1f moved_bytes=%d",
            self.replica,
            v.number,
            c.generation,
            1e3 * (applied - c.changed_at),
            moved,
        )

    def _loop(self) -> None:
        lower_thread_priority()  # building a version is background work: requests go first
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
