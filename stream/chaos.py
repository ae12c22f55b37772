"""Delivery faults a scenario can put on its stream's timeline (``stream.chaos`` in the YAML).

Each names where it starts as a *stream offset* (``at``: the index of the event in the clean stream,
so a timeline means the same thing at any rate) and how many events it covers. They change how
the stream is delivered, never the clean stream itself: a duplicate carries the same event id, a
reordered event keeps its id, a flipped label keeps its id, malformed records are extra records.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(list[Chaos]).validate_python([{"kind": "burst", "at": 100, "events": 50}])[0].factor
10.0
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# Each defect is named after the dead-letter reason it must produce at ingest.
DefectKind = Literal[
    "wrong_shape", "non_finite", "missing_field", "wrong_type", "extra_field", "out_of_range"
]
DEFECTS: tuple[DefectKind, ...] = get_args(DefectKind)


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=0, description="stream offset of the first event affected")
    events: int = Field(1, ge=1, description="how many consecutive events of the clean stream")


class Burst(_Window):
    """Events arrive ``factor`` times faster for a while (a backlog flushed, a traffic spike)."""

    kind: Literal["burst"] = "burst"
    factor: float = Field(10.0, gt=1)


class Stall(_Window):
    """Nothing arrives for ``seconds``, then delivery resumes where it stopped (``events`` unused)."""

    kind: Literal["stall"] = "stall"
    seconds: float = Field(gt=0, le=3600)


class Duplicates(_Window):
    """At-least-once delivery: a ``fraction`` of the window's events arrive again ``delay`` events later."""

    kind: Literal["duplicates"] = "duplicates"
    fraction: float = Field(0.5, gt=0, le=1)
    delay: int = Field(16, ge=0, description="redelivered this many events after the original")


class Reorder(_Window):
    """Events arrive out of order: shuffled within consecutive blocks of ``block`` events."""

    kind: Literal["reorder"] = "reorder"
    block: int = Field(8, ge=2)


class LabelNoise(_Window):
    """A ``fraction`` of the window's events carry a wrong label (another class, chosen at random)."""

    kind: Literal["label_noise"] = "label_noise"
    fraction: float = Field(1.0, gt=0, le=1)


class Poison(_Window):
    """A targeted attack on an old task: while the ``events`` clean events from ``at`` arrive, one
    extra record after each: a training sample of task ``task`` with a wrong label (``label``, or
    the next class when unset). Well-formed, so ingest lets it through; the gate has to catch it."""

    kind: Literal["poison"] = "poison"
    task: int = Field(ge=0, description="the (already learned) task to attack")
    label: int | None = Field(None, ge=0, description="the label every poisoned sample gets")


class Malformed(BaseModel):
    """``count`` broken records injected before the event at ``at``, cycling through ``defects``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["malformed"] = "malformed"
    at: int = Field(ge=0)
    count: int = Field(ge=1, le=100_000)
    defects: list[DefectKind] = Field(default_factory=lambda: list(DEFECTS), min_length=1)


Chaos = Annotated[
    Burst | Stall | Duplicates | Reorder | LabelNoise | Poison | Malformed,
    Field(discriminator="kind"),
]
CHAOS_KINDS = ("burst", "stall", "duplicates", "reorder", "label_noise", "poison", "malformed")
