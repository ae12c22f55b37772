"""Weight snapshots: plain numpy arrays plus a checksum, never pickled model objects.

A snapshot is what crosses process boundaries (learner -> registry -> replicas/evaluator).
Its tensors are raw arrays, so loading one executes no code, and the checksum lets a
receiver verify it got exactly what the learner exported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.model import ModelSpec, build_model, spec_of
from olsim.learner.served import ServedModel


class SnapshotError(ValueError):
    """A snapshot does not fit the model it is loaded into, or fails its checksum."""


def checksum(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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

    @classmethod
    def from_model(
        cls, model: nn.Module, extras: dict[str, np.ndarray] | None = None, **meta: float | int | str | bool
    ) -> Snapshot:
        spec = spec_of(model)
        tensors = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        extras = {k: np.array(v, copy=True) for k, v in (extras or {}).items()}
        return cls(
            spec=spec,
            tensors=tensors,
            checksum=_digest(spec, tensors, extras),
            meta=dict(meta),
            extras=extras,
        )

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
        )
        snap.verify()
        return snap

    def verify(self) -> None:
        """Raise :class:`SnapshotError` if the tensors do not match the checksum."""
        if _digest(self.spec, self.tensors, self.extras) != self.checksum:
            raise SnapshotError("snapshot checksum mismatch")

    def load_into(self, model: nn.Module) -> None:
        """Verify, check names and shapes, then copy the weights into ``model``."""
        self.verify()
        self._copy_into(model)

    def _copy_into(self, model: nn.Module) -> None:
        """Check names and shapes, then copy the (already verified) weights into ``model``."""
        own = model.state_dict()
        if set(own) != set(self.tensors):
            raise SnapshotError(f"parameter names differ: {sorted(set(own) ^ set(self.tensors))}")
        for name, value in own.items():
            if tuple(value.shape) != self.tensors[name].shape:
                raise SnapshotError(f"{name}: shape {self.tensors[name].shape} != {tuple(value.shape)}")
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.tensors.items()})

    def build(self, expected: ModelSpec | None = None) -> ServedModel:
        """What a replica serves: a fresh network with these weights plus the exported extras.

        With ``expected`` (the spec this process serves), a snapshot naming any other model is refused
        before its model is built: a spec can name code to import, and only the configured one runs.
        """
        self.verify()
        if expected is not None and self.spec != expected:
            raise SnapshotError(f"model spec {self.spec!r} is not the served {expected!r}")
        model = build_model(self.spec)
        self._copy_into(model)  # verified above: hashing every weight once per swap is enough
        return ServedModel(model, {k: torch.from_numpy(np.array(v)) for k, v in self.extras.items()}).eval()


def _digest(spec: ModelSpec, tensors: dict[str, np.ndarray], extras: dict[str, np.ndarray]) -> str:
    """The checksum covers the spec too: it says what code builds the model."""
    arrays = {**tensors, **{f"extra/{k}": v for k, v in extras.items()}}
    return hashlib.sha256(f"{spec.model_dump_json()}|{checksum(arrays)}".encode()).hexdigest()
