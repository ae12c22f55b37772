"""Typed strategy configs: a discriminated union on ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class NaiveConfig(BaseModel):
    """Plain fine-tuning on the stream: the lower bound, forgets freely."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["naive"] = "naive"


class ReplayConfig(BaseModel):
    """Experience replay from a bounded memory, mixed into every training batch."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["replay"] = "replay"
    buffer_size: int = Field(200, ge=1, le=1_000_000)
    buffer: Literal["reservoir", "class_balanced"] = "reservoir"
    replay_batch: int = Field(32, ge=1)


StrategyConfig = Annotated[NaiveConfig | ReplayConfig, Field(discriminator="kind")]
