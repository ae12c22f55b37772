"""Weight snapshots: plain numpy arrays plus a checksum, never pickled model objects.

A snapshot is what crosses process boundaries (learner -> registry -> replicas/evaluator).
Its tensors are raw arrays, so loading one executes no code, and the checksum lets a
receiver verify it got exactly what the learner exported.

Every array is addressed by its content (:func:`digest`: SHA-256 over dtype, shape and bytes), and
the checksum is a hash over the spec and the names' digests. A :class:`Manifest` is a snapshot
without its arrays: what a receiver that already holds some of them needs to know to fetch only the
others (a LoRA publish over a frozen base changes a few adapter tensors, not the base).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from olsim.learner.model import ModelSpec, build_model, spec_of
from olsim.learner.served import ServedModel

EXTRA = "extra/"  # digests of strategy extras are kept under this prefix
T = TypeVar("T")
_COMPARE_CHUNK = 1 << 22  # bytes compared at a time when looking for unchanged tensors


class SnapshotError(ValueError):
    """A snapshot does not fit the model it is loaded into, or fails its checksum."""


def digest(a: np.ndarray) -> str:
    """Content address of one array: SHA-256 over its dtype, shape and bytes.

    >>> digest(np.zeros(3, np.float32)) == digest(np.zeros(3, np.float32)), digest(np.zeros(3)) == digest(
    ...     np.zeros(3, np.float32)), digest(np.array(0)) == digest(np.array([0]))
    (True, False, False)
    """
    shape = np.shape(a)  # before ascontiguousarray, which makes a 0-d array 1-d
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{shape}|".encode())
    h.update(a.reshape(-1).view(np.uint8).data)  # no copy; hashlib releases the GIL
    return h.hexdigest()


def resolve(handles: Mapping[str, Any], get: Callable[[list[Any]], list[Any]]) -> dict[str, np.ndarray]:
    """Arrays by digest from the registry's handles: arrays pass through; the others (Ray object
    references) are read with one ``get`` call (``ray.get``: on the node holding them, read-only
    arrays in shared memory, no copy).

    >>> resolve({"d": np.zeros(2)}, get=lambda refs: [])["d"].tolist()
    [0.0, 0.0]
    """
    out = {d: h for d, h in handles.items() if isinstance(h, np.ndarray)}
    refs = {d: h for d, h in handles.items() if d not in out}
    if refs:
        out.update(zip(refs, get(list(refs.values())), strict=True))
    return out


def split_extras(named: Mapping[str, T]) -> tuple[dict[str, T], dict[str, T]]:
    """``named`` (extras under ``extra/``) as (tensors, extras without the prefix).

    >>> split_extras({"w": 1, "extra/knn.k": 2})
    ({'w': 1}, {'knn.k': 2})
    """
    tensors = {k: v for k, v in named.items() if not k.startswith(EXTRA)}
    extras = {k[len(EXTRA) :]: v for k, v in named.items() if k.startswith(EXTRA)}
    return tensors, extras


def root(spec: ModelSpec, digests: Mapping[str, str]) -> str:
    """The checksum of a snapshot: the spec (it says what code builds the model) and every name's digest."""
    names = "".join(f"{n}={d};" for n, d in sorted(digests.items()))
    return hashlib.sha256(f"{spec.model_dump_json()}|{names}".encode()).hexdigest()


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality, a chunk at a time (stops at the first difference; NaNs compare by bits)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    x = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    y = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
    for lo in range(0, len(x), _COMPARE_CHUNK):
        if not np.array_equal(x[lo : lo + _COMPARE_CHUNK], y[lo : lo + _COMPARE_CHUNK]):
            return False
    return True


@dataclass(frozen=True)
class Manifest:
    """A snapshot without its arrays: spec, checksum, metadata, and each name's content digest
    (strategy extras under ``extra/``); ``sizes`` maps each digest to its bytes."""

    spec: ModelSpec
    checksum: str
    meta: dict[str, float | int | str | bool]
    digests: dict[str, str]
    sizes: dict[str, int]

    @property
    def nbytes(self) -> int:
        """Bytes of the distinct arrays this version is made of."""
        return sum(self.sizes.values())


@dataclass(frozen=True)
class Snapshot:
    """Exported weights of one model state.

    >>> from olsim.learner.model import ModelSpec, build_model, spec_of
    >>> spec = ModelSpec(in_features=4, hidden=8, n_classes=3)
    >>> snap = Snapshot.from_model(build_model(spec, seed=0), task=0, step=5)
    >>> twin = build_model(spec, seed=1); snap.load_into(twin)
    >>> bool(torch.equal(twin.fc1.weight, build_model(spec, seed=0).fc1.weight)), snap.meta["step"]
    (True, 5)
    """

    spec: ModelSpec
    tensors: dict[str, np.ndarray]
    checksum: str
    meta: dict[str, float | int | str | bool] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # strategy serving state (kNN memory, ...)
    digests: dict[str, str] = field(default_factory=dict)  # name -> digest (extras under "extra/")

    def __post_init__(self) -> None:
        if not self.digests:  # computed from the bytes held, so verify() catches any later edit
            object.__setattr__(self, "digests", {n: digest(a) for n, a in self._named().items()})

    def _named(self) -> dict[str, np.ndarray]:
        return {**self.tensors, **{EXTRA + k: v for k, v in self.extras.items()}}

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        extras: dict[str, np.ndarray] | None = None,
        previous: Snapshot | None = None,
        **meta: float | int | str | bool,
    ) -> Snapshot:
        """Export ``model``'s state dict (and a strategy's ``extras``) as arrays.

        With ``previous`` (the last export), a tensor whose bytes are unchanged is not copied or
        hashed again: the snapshot shares ``previous``'s array and digest (a frozen base is exported once).
        """
        spec = spec_of(model)
        old = {} if previous is None else previous._named()
        named: dict[str, np.ndarray] = {}
        digests: dict[str, str] = {}
        fresh = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        fresh.update({EXTRA + k: np.asarray(v) for k, v in (extras or {}).items()})
        for name, a in fresh.items():
            kept = old.get(name)
            if kept is not None and previous is not None and _same_bytes(a, kept):
                named[name], digests[name] = kept, previous.digests[name]
            else:
                named[name] = np.array(a, copy=True)
                digests[name] = digest(named[name])
        tensors, extra = split_extras(named)
        return cls(spec, tensors, root(spec, digests), dict(meta), extra, digests)

    @classmethod
    def assemble(cls, manifest: Manifest, arrays: Mapping[str, np.ndarray]) -> Snapshot:
        """The snapshot a manifest describes, from its arrays by digest (taken as the manifest says,
        not re-hashed: :meth:`verify` does that)."""
        tensors, extras = split_extras({n: arrays[d] for n, d in manifest.digests.items()})
        return cls(
            manifest.spec, tensors, manifest.checksum, dict(manifest.meta), extras, dict(manifest.digests)
        )

    def manifest(self) -> Manifest:
        named = self._named()
        sizes = {self.digests[n]: int(a.nbytes) for n, a in named.items()}
        return Manifest(self.spec, self.checksum, dict(self.meta), dict(self.digests), sizes)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every distinct array, by digest."""
        return {self.digests[n]: a for n, a in self._named().items()}

    @property
    def key(self) -> str:
        """Identity of this candidate: its weights' checksum and its metadata. A publication retried
        after a registry restart carries the same key, so it is not accepted twice."""
        meta = json.dumps(self.meta, sort_keys=True)
        return hashlib.sha256(f"{self.checksum}|{meta}".encode()).hexdigest()

    def to_state(self) -> dict[str, Any]:
        """Plain arrays, numbers and strings (for :mod:`olsim.learner.checkpoint`; nothing pickled)."""
        return {
            "spec": self.spec.model_dump(),
            "tensors": self.tensors,
            "checksum": self.checksum,
            "meta": self.meta,
            "extras": self.extras,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Snapshot:
        """The snapshot :meth:`to_state` described, checksum verified."""
        snap = cls(
            spec=ModelSpec.model_validate(state["spec"]),
            tensors=dict(state["tensors"]),
            checksum=str(state["checksum"]),
            meta=dict(state["meta"]),
            extras=dict(state["extras"]),
        )  # its digests are computed from the arrays just read: checking the root over them is enough
        if root(snap.spec, snap.digests) != snap.checksum:
            raise SnapshotError("snapshot checksum mismatch")
        return snap

    def verify(self) -> None:
        """Raise :class:`SnapshotError` unless every array hashes to the checksum (all bytes re-hashed)."""
        named = self._named()
        if set(named) != set(self.digests):
            raise SnapshotError("snapshot checksum mismatch")
        actual = {n: digest(a) for n, a in named.items()}
        if actual != self.digests or root(self.spec, actual) != self.checksum:
            raise SnapshotError("snapshot checksum mismatch")

    def load_into(self, model: nn.Module) -> None:
        """Verify, check names and shapes, then copy the weights into ``model``."""
        self.verify()
        self._copy_into(model)

    def _copy_into(self, model: nn.Module) -> None:
        """Check names and shapes, then copy the (already verified) weights into ``model``."""
        check_fits(model, self.tensors)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.tensors.items()})

    def build(self, expected: ModelSpec | None = None, verify: bool = True) -> ServedModel:
        """What a replica serves: a fresh network with copies of these weights plus the exported extras.

        With ``expected`` (the spec this process serves), a snapshot naming any other model is refused
        before its model is built: a spec can name code to import, and only the configured one runs.
        ``verify=False`` skips re-hashing (for a caller that has just verified the snapshot).
        """
        if verify:
            self.verify()
        check_spec(self.spec, expected)
        model = build_model(self.spec)
        self._copy_into(model)  # verified above: hashing every weight once per swap is enough
        return ServedModel(model, {k: torch.from_numpy(np.array(v)) for k, v in self.extras.items()}).eval()


def check_spec(spec: ModelSpec, expected: ModelSpec | None) -> None:
    if expected is not None and spec != expected:
        raise SnapshotError(f"model spec {spec!r} is not the served {expected!r}")


def check_fits(model: nn.Module, tensors: Mapping[str, np.ndarray] | Mapping[str, torch.Tensor]) -> None:
    own = model.state_dict()
    if set(own) != set(tensors):
        raise SnapshotError(f"parameter names differ: {sorted(set(own) ^ set(tensors))}")
    for name, value in own.items():
        if tuple(value.shape) != tensors[name].shape:
            raise SnapshotError(f"{name}: shape {tensors[name].shape} != {tuple(value.shape)}")
