"""The weight registry: numbered versions, publish, long-poll subscribe, per-replica swap records.

Plain asyncio; :func:`serving.registry_actor.start_registry` runs it as a named Ray actor.
Long-polling replaces Serve's ``reconfigure``: a replica asks "anything newer than v?" and the
call returns the moment a version is published (or after ``timeout`` with None).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from learner.snapshot import Snapshot


@dataclass(frozen=True)
class Version:
    number: int
    snapshot: Snapshot
    published_at: float  # unix time the registry accepted it


@dataclass(frozen=True)
class Swap:
    replica: str
    version: int
    published_at: float
    applied_at: float  # unix time the replica began serving it

    @property
    def staleness_s(self) -> float:
        return self.applied_at - self.published_at


class Registry:
    """Versions in publish order; the newest is the one served.

    >>> from learner.model import ModelSpec, build_model
    >>> reg = Registry()
    >>> snap = Snapshot.from_model(build_model(ModelSpec(), seed=0))
    >>> asyncio.run(reg.publish(snap)), asyncio.run(reg.wait_newer(0, timeout=0.01)).number
    (1, 1)
    >>> asyncio.run(reg.wait_newer(1, timeout=0.01)) is None
    True
    """

    def __init__(self, keep: int = 1000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep
        self._versions: dict[int, Version] = {}
        self._latest = 0
        self._swaps: list[Swap] = []
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created on first use, inside the running loop
            self._changed = asyncio.Condition()
        return self._changed

    async def publish(self, snapshot: Snapshot) -> int:
        """Accept a snapshot as the next version; returns its number."""
        snapshot.verify()
        async with self._cond():
            self._latest += 1
            self._versions[self._latest] = Version(self._latest, snapshot, time.time())
            for old in [v for v in self._versions if v <= self._latest - self.keep]:
                del self._versions[old]
            self._cond().notify_all()
            return self._latest

    async def latest(self) -> int:
        return self._latest

    async def current(self) -> Version | None:
        return self._versions.get(self._latest)

    async def get(self, number: int) -> Version | None:
        return self._versions.get(number)

    async def _published_after(self, after: int, timeout: float) -> bool:
        """Wait (holding the condition) until a version newer than ``after`` exists; False on timeout."""
        try:
            await asyncio.wait_for(self._cond().wait_for(lambda: self._latest > after), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_newer(self, after: int, timeout: float) -> Version | None:
        """The current version once it is newer than ``after``; None after ``timeout`` seconds."""
        async with self._cond():
            if not await self._published_after(after, timeout):
                return None
            return self._versions.get(self._latest)

    async def wait_next(self, after: int, timeout: float) -> Version | None:
        """The oldest retained version newer than ``after`` (for consumers that must see every one)."""
        async with self._cond():
            if not await self._published_after(after, timeout):
                return None
            newer = [v for v in self._versions if v > after]
            return self._versions[min(newer)] if newer else None

    async def ack(self, replica: str, version: int, applied_at: float) -> None:
        """A replica reports that it serves ``version`` since ``applied_at``."""
        v = self._versions.get(version)
        published = v.published_at if v is not None else applied_at
        self._swaps.append(Swap(replica, version, published, applied_at))

    async def swaps(self, since: int = 0) -> list[Swap]:
        return self._swaps[since:]

    async def replica_versions(self) -> dict[str, int]:
        """Newest version each replica has acknowledged."""
        out: dict[str, int] = {}
        for s in self._swaps:
            out[s.replica] = max(out.get(s.replica, 0), s.version)
        return out

    async def history(self) -> list[dict[str, float | int | str | bool]]:
        """Metadata of retained versions, oldest first (no weights)."""
        return [
            {"version": v.number, "published_at": v.published_at, **v.snapshot.meta}
            for v in sorted(self._versions.values(), key=lambda v: v.number)
        ]
