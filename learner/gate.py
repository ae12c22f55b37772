"""The promotion gate: checks a candidate snapshot before the registry lets replicas serve it.

Integrity checks always run (a replica cannot serve a corrupt, non-finite or misshapen version);
the accuracy check scores the candidate on the held-out *validation* split of every task and
rejects it when, over the old tasks (those met before, other than the one it is learning), its
mean accuracy drop against the version being served exceeds ``forgetting_budget``. Drops are
clipped at zero per task before averaging, so a gain on one old task cannot pay for forgetting
another (measured: without the clip, naive fine-tuning swapped a forgotten task for a newly
learned one at "drop 0.00").
Pure torch, no Ray: the registry actor runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from olsim.learner.metrics import accuracy, old_tasks
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot, SnapshotError
from olsim.stream.tasks import Split, Task

ACCEPT_REASONS = ("passed", "gate_off")
REJECT_REASONS = ("checksum", "shape_mismatch", "non_finite", "forgetting_budget", "paused")


class GateConfig(BaseModel):
    """The ``gate:`` block of a scenario."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["on", "off"] = Field(
        "on", description="off: skip the accuracy check (integrity checks still run)"
    )
    forgetting_budget: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="largest allowed mean drop (clipped at 0 per task) in old-task validation accuracy "
        "against the served version",
    )
    rollback_floor: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="roll back automatically when the served version's mean test accuracy over the "
        "tasks seen falls below this (None: never)",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        """YAML 1.1 reads a bare ``off``/``on`` as a boolean; take it as the word that was written."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str  # one of ACCEPT_REASONS or REJECT_REASONS
    detail: str = ""
    scores: tuple[float, ...] | None = None  # candidate validation accuracy on every task
    old_drop: float | None = None  # mean over old tasks of max(0, served - candidate) accuracy


class Gate:
    """Decides whether a candidate may replace the served version.

    >>> from olsim.stream.tasks import build_tasks
    >>> spec = ModelSpec()
    >>> gate = Gate(build_tasks("split-digits", n_tasks=2, seed=0), spec, GateConfig())
    >>> snap = Snapshot.from_model(build_model(spec, seed=0), task=0)
    >>> gate.check(snap, served=None).reason
    'passed'
    >>> bad = Snapshot.from_model(build_model(ModelSpec(hidden=8), seed=0), task=0)
    >>> gate.check(bad, served=None).reason
    'shape_mismatch'
    """

    def __init__(self, tasks: list[Task], spec: ModelSpec, config: GateConfig) -> None:
        self.tasks = tasks
        self.spec = spec
        self.config = config
        self._shapes = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
        self._val: list[Split] | None = None

    def integrity(self, candidate: Snapshot, verified: bool = False) -> Decision | None:
        """A rejection when the candidate cannot be served at all, else None (``verified``: its
        arrays were hashed already, as a delta publication's are)."""
        try:
            if not verified:
                candidate.verify()
        except SnapshotError as exc:
            return Decision(False, "checksum", str(exc))
        if candidate.spec != self.spec:
            return Decision(False, "shape_mismatch", f"model spec {candidate.spec!r} != served {self.spec!r}")
        names = set(candidate.tensors)
        if names != set(self._shapes):
            return Decision(
                False, "shape_mismatch", f"parameter names differ: {sorted(names ^ set(self._shapes))}"
            )
        for name, shape in self._shapes.items():
            if candidate.tensors[name].shape != shape:
                return Decision(
                    False, "shape_mismatch", f"{name}: shape {candidate.tensors[name].shape} != {shape}"
                )
        for name, a in {**candidate.tensors, **candidate.extras}.items():
            if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
                return Decision(
                    False, "non_finite", f"{name}: {int((~np.isfinite(a)).sum())} non-finite values"
                )
        return None

    def scores(self, snapshot: Snapshot) -> tuple[float, ...]:
        """Validation accuracy on every task of the scenario (seen or not)."""
        if self._val is None:  # writable copies: arrays that arrived through Ray's object store are not
            self._val = [Split(np.array(t.val.x), np.array(t.val.y), t.val.source) for t in self.tasks]
        model = snapshot.build(verify=False)  # check() verified it (or it came verified)
        return tuple(accuracy(model, split) for split in self._val)

    def check(
        self, candidate: Snapshot, served: tuple[float, ...] | None, verified: bool = False
    ) -> Decision:
        """``served``: the served version's :meth:`scores` (None when nothing is served yet)."""
        broken = self.integrity(candidate, verified)
        if broken is not None:
            return broken
        scores = self.scores(candidate)
        task = min(max(int(candidate.meta.get("task", 0)), 0), len(self.tasks) - 1)
        seen = min(int(candidate.meta.get("seen", 0)), len(self.tasks))
        old = old_tasks(task, seen)
        drop = None
        if served is not None and len(old) > 0:
            drop = float(np.mean([max(0.0, served[j] - scores[j]) for j in old]))
        detail = (
            "" if drop is None else f"old-task validation accuracy drop {drop:+.3f} over {len(old)} task(s)"
        )
        if self.config.mode == "off":
            return Decision(True, "gate_off", detail, scores, drop)
        if drop is not None and drop > self.config.forgetting_budget:
            return Decision(
                False,
                "forgetting_budget",
                f"{detail} > budget {self.config.forgetting_budget:.3f}",
                scores,
                drop,
            )
        return Decision(True, "passed", detail, scores, drop)
