"""The weight registry: numbered versions behind a promotion gate, the served pointer, rollback,
long-poll subscribe and per-replica swap records.

Plain asyncio; deploy runs it as a named Ray actor (:mod:`olsim.deploy.run.actors`). Long-polling replaces
Serve's ``reconfigure``: a replica asks "has the served version changed since generation g?" and
the call returns the moment it does (or after ``timeout`` with None).

With a ``store`` directory the registry is durable (:mod:`olsim.serving.journal`): constructed again
over the same directory, as Ray does when it restarts the actor, it comes back with its versions,
served pointer, generation, gate decisions and acknowledgements, and a publication retried across
the restart (same :attr:`Snapshot.key`) gets its first answer instead of a second version.

Weights are held by content (:class:`olsim.learner.snapshot.Manifest`): each distinct array is stored
once, through ``put``, and a version is its manifest plus a handle per digest. Deploy passes
``ray.put``, so the handles are object references and a replica that follows the registry fetches
only the arrays it does not hold yet, read zero-copy from its node's object store; without ``put``
the arrays themselves are the handles and travel by value. Retention is bounded by count (``keep``)
and by the bytes of distinct arrays held (``keep_bytes``); the served version is never dropped.

Version numbers only grow; the *served* version is normally the newest accepted one, and a
rollback points it at an older one. Every change of the served version bumps ``generation``,
which is what replicas follow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from olsim.learner.gate import Decision, Gate
from olsim.learner.priority import lower_thread_priority
from olsim.learner.snapshot import Manifest, Snapshot, SnapshotError, digest, resolve, root
from olsim.serving.config import KEEP_BYTES
from olsim.serving.journal import Journal

log = logging.getLogger(__name__)
Put = Callable[[np.ndarray], Any]  # array -> handle (ray.put; or None in Registry: the array itself)
Get = Callable[[list[Any]], list[Any]]  # handles -> arrays (ray.get)


@dataclass(frozen=True)
class Version:
    number: int
    manifest: Manifest
    blobs: dict[str, Any]  # digest -> the array's handle: an object reference, or the array itself
    published_at: float  # unix time the registry accepted it
    scores: tuple[float, ...] | None = None  # gate's validation accuracy per task


@dataclass(frozen=True)
class Current:
    """What replicas serve: a version, and the change (generation) that made it current."""

    generation: int
    version: Version
    changed_at: float  # unix time it became the served version (accept or rollback)
    kind: Literal["publish", "rollback"] = "publish"


@dataclass(frozen=True)
class Change:
    generation: int
    version: int
    previous: int
    at: float
    kind: Literal["publish", "rollback"]
    trigger: str = ""  # rollbacks: "manual" | "auto" | "restore" (the served version's file was unreadable)
    reason: str = ""


@dataclass(frozen=True)
class GateRecord:
    """One gate decision on a candidate, as listed in the report."""

    at: float
    accepted: bool
    reason: str
    detail: str
    version: int | None  # the number it got when accepted
    served: int  # the version served after the decision
    meta: dict[str, float | int | str | bool] = field(default_factory=dict)
    old_drop: float | None = None


@dataclass(frozen=True)
class PublishResult:
    version: int | None  # None: rejected
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class RollbackResult:
    ok: bool
    version: int  # served after the call
    previous: int
    detail: str = ""
    refused: Refusal | None = None  # why not, when not ok


Refusal = Literal["not_retained", "nothing_to_do"]


@dataclass(frozen=True)
class Swap:
    replica: str
    version: int
    generation: int
    published_at: float  # when the version became current (accept or rollback)
    applied_at: float  # unix time the replica began serving it
    moved_bytes: int = 0  # array bytes the replica fetched for this swap (the rest it already held)
    held_bytes: int = 0  # weight memory the replica held at the swap's peak (old and new version)

    @property
    def staleness_s(self) -> float:
        return self.applied_at - self.published_at


class Registry:
    """Versions in accept order plus the served pointer.

    >>> from olsim.learner.model import ModelSpec, build_model
    >>> reg = Registry()
    >>> snap = Snapshot.from_model(build_model(ModelSpec(), seed=0))
    >>> asyncio.run(reg.publish(snap)).version, asyncio.run(reg.wait_newer(0, timeout=0.01)).version.number
    (1, 1)
    >>> asyncio.run(reg.wait_newer(1, timeout=0.01)) is None
    True
    """

    def __init__(
        self,
        keep: int = 1000,
        gate: Gate | None = None,
        store: Path | None = None,
        keep_bytes: int = KEEP_BYTES,
        put: Put | None = None,
        get: Get | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep
        self.keep_bytes = keep_bytes
        self._put = put
        self._get: Get = get or _no_handles
        self._blobs: dict[str, Any] = {}  # digest -> handle, for every array a retained version uses
        self._dropped: set[int] = set()  # accepted versions retention let go of
        self.gate = gate
        self.paused = False
        self.boot = uuid.uuid4().hex  # changes with every (re)start of the process holding the registry
        self.restored = False  # came back from a journal
        self.unreadable: dict[int, str] = {}  # accepted versions whose file could not be read back, why
        self._versions: dict[int, Version] = {}
        self._latest = 0  # newest accepted version number
        self._current: Current | None = None
        self._changes: list[Change] = []
        self._decisions: list[GateRecord] = []
        self._swaps: list[Swap] = []
        self._changed: asyncio.Condition | None = None
        self._publishing: asyncio.Lock | None = None
        self._work: ThreadPoolExecutor | None = None  # one background thread, low CPU priority
        self._answers: dict[str, PublishResult] = {}  # candidate key -> the answer it got
        self.journal = None if store is None else Journal(store)
        if self.journal is not None and self.journal.records():
            self._restore(self.journal)

    def _restore(self, journal: Journal) -> None:
        """Replay the journal: versions retained, changes, decisions, acknowledgements, pause."""
        meta: dict[int, tuple[float, tuple[float, ...] | None]] = {}
        for rec in journal.records():
            kind = rec["kind"]
            if kind == "publish":
                if rec["version"] is not None:
                    v = rec["version"]
                    meta[v["number"]] = (
                        v["published_at"],
                        None if v["scores"] is None else tuple(v["scores"]),
                    )
                    self._latest = v["number"]
                for n in rec["dropped"]:
                    meta.pop(n, None)
                    self._dropped.add(n)
                d = GateRecord(**rec["decision"])
                self._decisions.append(d)
                self._answers[rec["key"]] = PublishResult(d.version, d.reason, d.detail)
            if rec.get("change") is not None:
                self._changes.append(Change(**rec["change"]))
            if kind == "paused":
                self.paused = bool(rec["paused"])
            elif kind == "swap":
                self._swaps.append(Swap(**rec["swap"]))
        for n, (at, scores) in meta.items():
            try:
                snapshot = journal.load_version(n)
                snapshot.verify()
            except Exception as exc:  # missing, truncated or altered: come back without it, say so
                self.unreadable[n] = f"{type(exc).__name__}: {exc}"
                log.error("registry restore: version %d is unreadable (%s)", n, self.unreadable[n])
                continue
            self._versions[n] = Version(n, snapshot.manifest(), self._store(snapshot), at, scores)
        journal.keep_only(set(meta))  # unreadable files stay where they are, for a look
        self.restored = True
        if not self._changes:
            return
        last = self._changes[-1]
        served = self._versions.get(last.version)
        if served is not None:
            self._current = Current(last.generation, served, last.at, last.kind)
            return
        if not self._versions:
            log.error("registry restore: no version is readable; nothing is served until the next one")
            return
        fallback = self._versions[max(self._versions)]  # the newest readable version
        reason = f"version {last.version} unreadable on restore"
        change = Change(
            self.generation + 1, fallback.number, last.version, time.time(), "rollback", "restore", reason
        )
        self._changes.append(change)
        self._current = Current(change.generation, fallback, change.at, "rollback")
        journal.append({"kind": "rollback", "change": asdict(change)}, sync=True)
        log.error("registry restore: serving version %d (%s)", fallback.number, reason)

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created on first use, inside the running loop
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def served(self) -> int:
        return 0 if self._current is None else self._current.version.number

    @property
    def generation(self) -> int:
        """Changes of the served version so far (change g is ``self._changes[g - 1]``)."""
        return len(self._changes)

    async def publish(self, snapshot: Snapshot) -> PublishResult:
        """Gate a candidate; when accepted it becomes the next version and the served one."""
        async with self._lock():  # one candidate at a time: each is judged against what is served
            return await self._publish(snapshot, verified=False)

    async def publish_delta(self, manifest: Manifest, arrays: dict[str, np.ndarray]) -> PublishResult:
        """:meth:`publish` for a candidate sent as its manifest and only the arrays the registry does
        not hold (by digest): a LoRA publish over a frozen base sends its adapters. Each array sent is
        hashed; the others were when first stored. Answers reason ``missing`` (nothing decided) when
        the registry no longer holds an array the candidate needs: send the whole snapshot then."""
        async with self._lock():
            need = set(manifest.digests.values()) - set(arrays)
            missing = need - set(self._blobs)
            if missing:
                return PublishResult(None, "missing", f"{len(missing)} arrays are not held: publish them all")
            held = {d: self._blobs[d] for d in need}

            def assemble() -> tuple[Snapshot, bool]:
                snapshot = Snapshot.assemble(manifest, {**resolve(held, self._get), **arrays})
                sent_ok = all(digest(a) == d for d, a in arrays.items())
                return snapshot, sent_ok and root(manifest.spec, manifest.digests) == manifest.checksum

            loop = asyncio.get_running_loop()
            snapshot, verified = await loop.run_in_executor(self._background(), assemble)
            # not verified: judged as a whole snapshot, so a mismatch is a recorded "checksum" rejection
            return await self._publish(snapshot, verified=verified)

    def _lock(self) -> asyncio.Lock:
        if self._publishing is None:
            self._publishing = asyncio.Lock()
        return self._publishing

    async def _publish(self, snapshot: Snapshot, verified: bool) -> PublishResult:
        key = snapshot.key
        if key in self._answers:  # a retry (the registry restarted before it could answer)
            return self._answers[key]
        decision = await self._judge(snapshot, verified)
        number = self._latest + 1 if decision.accepted else None
        loop = asyncio.get_running_loop()
        if number is not None and self.journal is not None:  # the weights are on disk first
            await loop.run_in_executor(self._background(), self.journal.save_version, number, snapshot)
        # new arrays go to the store off the event loop (a large put takes a while)
        blobs = (
            None if number is None else await loop.run_in_executor(self._background(), self._store, snapshot)
        )
        async with self._cond():
            accepted = (
                None if number is None or blobs is None else self._accept(number, snapshot, blobs, decision)
            )
            record = GateRecord(
                time.time(),
                decision.accepted,
                decision.reason,
                decision.detail,
                number,
                self.served,
                dict(snapshot.meta),
                decision.old_drop,
            )
            self._decisions.append(record)
            result = self._answers[key] = PublishResult(number, decision.reason, decision.detail)
            self._journal_publish(key, record, accepted)
            return result

    def _accept(
        self, number: int, snapshot: Snapshot, blobs: dict[str, Any], decision: Decision
    ) -> tuple[Version, Change, list[int]]:
        """``snapshot`` becomes version ``number`` and the served one; versions past ``keep`` (never
        the one served until now) are dropped. Returns the version, the change, the dropped numbers."""
        self._latest = number
        version = Version(number, snapshot.manifest(), blobs, time.time(), decision.scores)
        self._versions[number] = version
        dropped = [v for v in self._versions if v <= number - self.keep and v != self.served]
        for old in dropped:
            del self._versions[old]
        while self.retained_bytes() > self.keep_bytes:  # oldest first; never the served or the new one
            older = [v for v in self._versions if v not in (number, self.served)]
            if not older:
                break
            dropped.append(min(older))
            del self._versions[dropped[-1]]
        self._dropped.update(dropped)
        used = {d for v in self._versions.values() for d in v.manifest.digests.values()}
        self._blobs = {d: h for d, h in self._blobs.items() if d in used}  # the store frees the rest
        return version, self._set_current(version, "publish", version.published_at), sorted(dropped)

    def _store(self, snapshot: Snapshot) -> dict[str, Any]:
        """A handle for each of the snapshot's arrays, putting only those no retained version holds."""
        for d, a in snapshot.arrays().items():
            if d not in self._blobs:
                self._blobs[d] = a if self._put is None else self._put(a)
        return {d: self._blobs[d] for d in snapshot.digests.values()}

    def retained_bytes(self) -> int:
        """Bytes of the distinct arrays the retained versions are made of."""
        sizes = {d: n for v in self._versions.values() for d, n in v.manifest.sizes.items()}
        return sum(sizes.values())

    def _journal_publish(
        self, key: str, record: GateRecord, accepted: tuple[Version, Change, list[int]] | None
    ) -> None:
        """One journal line per decision (with the new version and change when accepted)."""
        if self.journal is None:
            return
        version, change, dropped = accepted if accepted is not None else (None, None, [])
        entry = (
            None
            if version is None
            else {"number": version.number, "published_at": version.published_at, "scores": version.scores}
        )
        self.journal.append(
            {
                "kind": "publish",
                "key": key,
                "version": entry,
                "dropped": dropped,
                "decision": asdict(record),
                "change": None if change is None else asdict(change),
            },
            sync=True,
        )
        self.journal.remove_versions(dropped)

    async def _judge(self, snapshot: Snapshot, verified: bool = False) -> Decision:
        if self.paused:
            return Decision(False, "paused", "publication paused by an operator")
        if self.gate is None:
            if verified:
                return Decision(True, "gate_off")
            try:  # re-hashing every array: off the event loop
                await asyncio.get_running_loop().run_in_executor(self._background(), snapshot.verify)
            except SnapshotError as exc:
                return Decision(False, "checksum", str(exc))
            return Decision(True, "gate_off")
        served = None if self._current is None else self._current.version.scores
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._background(), self.gate.check, snapshot, served, verified)

    def _background(self) -> ThreadPoolExecutor:
        """One thread at low CPU priority for a publication's heavy work (gate, hashing, disk, store),
        so that replicas' requests on the same machine go first."""
        if self._work is None:
            self._work = ThreadPoolExecutor(1, "olsim-registry-work", initializer=lower_thread_priority)
        return self._work

    def _set_current(
        self,
        version: Version,
        kind: Literal["publish", "rollback"],
        at: float,
        trigger: str = "",
        reason: str = "",
    ) -> Change:
        previous = self.served
        change = Change(self.generation + 1, version.number, previous, at, kind, trigger, reason)
        self._changes.append(change)
        self._current = Current(change.generation, version, at, kind)
        self._cond().notify_all()
        return change

    async def rollback(
        self, to: int | None = None, reason: str = "", trigger: str = "manual", expect: int | None = None
    ) -> RollbackResult:
        """Serve version ``to`` (default: the newest retained one older than the served one).

        ``expect``: only roll back if that version is still the served one (the evaluator's
        automatic rollback must not undo a newer, healthy version).
        """
        async with self._cond():
            served = self.served
            if expect is not None and served != expect:
                return RollbackResult(
                    False, served, served, f"version {expect} is no longer served", "nothing_to_do"
                )
            if to is None:
                older = [v for v in self._versions if v < served]
                if not older:
                    return RollbackResult(
                        False, served, served, "no earlier version is retained", "nothing_to_do"
                    )
                to = max(older)
            target = self._versions.get(to)
            if target is None:
                return RollbackResult(False, served, served, f"version {to} is not retained", "not_retained")
            if to == served:
                return RollbackResult(
                    False, served, served, f"version {to} is already served", "nothing_to_do"
                )
            change = self._set_current(target, "rollback", time.time(), trigger, reason)
            if self.journal is not None:
                self.journal.append({"kind": "rollback", "change": asdict(change)}, sync=True)
            return RollbackResult(True, to, served, reason)

    async def set_paused(self, paused: bool) -> bool:
        """Pause (reject every candidate with reason ``paused``) or resume publication."""
        self.paused = paused
        if self.journal is not None:
            self.journal.append({"kind": "paused", "paused": paused}, sync=True)
        return self.paused

    async def latest(self) -> int:
        """Newest accepted version number."""
        return self._latest

    async def current(self) -> Current | None:
        return self._current

    async def get(self, number: int) -> Version | None:
        return self._versions.get(number)

    async def wait_newer(self, after: int, timeout: float) -> Current | None:
        """The served version once its generation is newer than ``after``; None after ``timeout``."""
        async with self._cond():
            try:
                await asyncio.wait_for(self._cond().wait_for(lambda: self.generation > after), timeout)
            except TimeoutError:
                return None
            return self._current

    async def wait_next(self, after: int, timeout: float) -> Version | None:
        """The oldest retained accepted version newer than ``after`` (for consumers that score each)."""
        async with self._cond():
            try:
                await asyncio.wait_for(self._cond().wait_for(lambda: self._latest > after), timeout)
            except TimeoutError:
                return None
            newer = [v for v in self._versions if v > after]
            return self._versions[min(newer)] if newer else None

    async def ack(
        self,
        replica: str,
        version: int,
        generation: int,
        applied_at: float,
        moved_bytes: int = 0,
        held_bytes: int = 0,
    ) -> None:
        """A replica reports that it serves ``version`` (of change ``generation``) since ``applied_at``,
        having fetched ``moved_bytes`` of arrays for it and held ``held_bytes`` of weights at the peak."""
        known = 0 < generation <= len(self._changes)  # change g is self._changes[g - 1]
        changed_at = self._changes[generation - 1].at if known else applied_at
        swap = Swap(replica, version, generation, changed_at, applied_at, moved_bytes, held_bytes)
        self._swaps.append(swap)
        if self.journal is not None:
            self.journal.append({"kind": "swap", "swap": asdict(swap)})

    async def swaps(self, since: int = 0) -> list[Swap]:
        return self._swaps[since:]

    async def changes(self, since: int = 0) -> list[Change]:
        return self._changes[since:]

    async def decisions(self, since: int = 0) -> list[GateRecord]:
        return self._decisions[since:]

    async def replica_versions(self) -> dict[str, int]:
        """Version each replica serves (its newest acknowledged change)."""
        newest: dict[str, Swap] = {}
        for s in self._swaps:
            if s.replica not in newest or s.generation > newest[s.replica].generation:
                newest[s.replica] = s
        return {r: s.version for r, s in newest.items()}

    async def replica_generations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self._swaps:
            out[s.replica] = max(out.get(s.replica, 0), s.generation)
        return out

    async def state(self) -> dict[str, Any]:
        """Served version, generation and pause flag (for /admin and the report)."""
        return {
            "served": self.served,
            "generation": self.generation,
            "latest": self._latest,
            "paused": self.paused,
            "keep": self.keep,
            "keep_bytes": self.keep_bytes,
            "retained_bytes": self.retained_bytes(),
            "dropped": sorted(self._dropped),
            "boot": self.boot,
            "restored": self.restored,
            "unreadable": {str(n): why for n, why in self.unreadable.items()},
        }

    async def history(self) -> list[dict[str, float | int | str | bool]]:
        """Metadata of retained versions, oldest first (no weights)."""
        return [
            {"version": v.number, "published_at": v.published_at, **v.manifest.meta}
            for v in sorted(self._versions.values(), key=lambda v: v.number)
        ]


def _no_handles(handles: list[Any]) -> list[Any]:
    raise RuntimeError("this registry holds arrays, not references: it has nothing to get")
