"""The stream's edge: a raw record either becomes an :class:`~olsim.stream.events.Event` or a dead letter.

Nothing that arrives is trusted: wrong shapes, NaN/inf, missing or extra fields, wrong types and
out-of-range labels are refused with a reason, counted, and kept (never a crash, never a silent drop).

>>> check = Ingest(n_features=2, n_classes=3, n_tasks=1)
>>> check({"id": "a", "offset": 0, "task": 0, "x": [0.5, 1.0], "y": 2, "t": 0.0}).y
2
>>> check({"id": "b", "offset": 1, "task": 0, "x": [0.5], "y": 2, "t": 0.0}).reason
'wrong_shape'
>>> check({"id": "c", "task": 0, "x": [0.5, 1.0], "y": 2}).reason
'missing_field'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from olsim.stream.events import Event

DEAD_LETTER_REASONS = (
    "missing_field",
    "wrong_type",
    "extra_field",
    "wrong_shape",
    "non_finite",
    "out_of_range",
)


class EventRecord(BaseModel):
    """The wire format of one stream event (strict: ``"3"`` is not a label, ``true`` is not a float)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: StrictStr = Field(min_length=1, max_length=256)
    offset: StrictInt = Field(ge=0)
    task: StrictInt = Field(ge=0)
    x: list[StrictFloat | StrictInt]
    y: StrictInt = Field(ge=0)
    t: StrictFloat | StrictInt = Field(ge=0)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # "?" when the record had no usable id
    reason: str  # one of DEAD_LETTER_REASONS
    detail: str


def _reason(err: ValidationError) -> tuple[str, str]:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "record"
    kind = e["type"]
    if kind == "missing":
        reason = "missing_field"
    elif kind == "extra_forbidden":
        reason = "extra_field"
    elif kind.startswith(("greater_than", "less_than")):
        reason = "out_of_range"
    elif kind.startswith(("string_too", "too_short", "too_long")):
        reason = "wrong_shape"
    else:
        reason = "wrong_type"
    return reason, f"{where}: {e['msg']}"


@dataclass(frozen=True)
class Ingest:
    """Validates raw records against the stream's shape: ``n_features`` inputs, labels < ``n_classes``."""

    n_features: int
    n_classes: int
    n_tasks: int

    def __call__(self, raw: Any) -> Event | DeadLetter:
        rid = raw.get("id") if isinstance(raw, dict) else None
        rid = rid if isinstance(rid, str) and rid else "?"
        if not isinstance(raw, dict):
            return DeadLetter(rid, "wrong_type", f"record is a {type(raw).__name__}, not a mapping")
        try:
            rec = EventRecord.model_validate(raw)
        except ValidationError as exc:
            return DeadLetter(rid, *_reason(exc))
        if len(rec.x) != self.n_features:
            return DeadLetter(rid, "wrong_shape", f"x has {len(rec.x)} values, expected {self.n_features}")
        if not all(math.isfinite(v) for v in rec.x):
            return DeadLetter(rid, "non_finite", "x contains NaN or infinity")
        if rec.y >= self.n_classes or rec.task >= self.n_tasks:
            return DeadLetter(rid, "out_of_range", f"label {rec.y} / task {rec.task} out of range")
        return Event(
            id=rec.id,
            offset=rec.offset,
            task=rec.task,
            x=np.asarray(rec.x, dtype=np.float32),
            y=rec.y,
            t=float(rec.t),
        )
