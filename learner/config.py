"""Learner settings, as a validated config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from olsim.learner.device import Device
from olsim.learner.drift import DriftConfig
from olsim.learner.model import ModelSpec
from olsim.learner.strategies.config import NaiveConfig, StrategyConfig
from olsim.learner.trainer import OptimizerConfig
from olsim.stream.plugin import import_kind


class LearnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _import_means_kind_import(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strategy" in data:
            return {**data, "strategy": import_kind(data["strategy"])}
        return data

    model: ModelSpec = ModelSpec()
    optimizer: OptimizerConfig = OptimizerConfig()
    strategy: StrategyConfig = Field(default_factory=NaiveConfig)
    strategies: list[StrategyConfig] = Field(
        default_factory=list,
        description="settings for strategies swapped in by name (olsim run --strategy, olsim bench "
        "forgetting): a scenario's tuning for its workload; a kind not listed takes its defaults",
    )
    batch_size: int = Field(32, ge=1, le=65536)
    publish_every: int = Field(20, ge=1, description="publish a new weight version every N training steps")
    boundaries: Literal["announced", "detected"] = Field(
        "announced",
        description="announced: the stream tells strategies when a task ends; detected: it does not, and a "
        "drift detector on the prequential error calls the strategies' on_drift instead",
    )

    @model_validator(mode="after")
    def _one_setting_per_kind(self) -> LearnerConfig:
        kinds = [s.kind for s in self.strategies]
        if "import" in kinds:
            raise ValueError(
                "learner.strategies sets built-in strategies; a strategy of your own is learner.strategy"
            )
        if twice := sorted({k for k in kinds if kinds.count(k) > 1}):
            raise ValueError(f"learner.strategies lists {', '.join(twice)} more than once")
        return self

    drift: DriftConfig = DriftConfig()
    device: Device = Field(
        "auto",
        description="where the learner trains: cpu, cuda, or auto (cuda only when a CUDA device exists and "
        "a step is big enough to beat its launch overhead: learner/device.py)",
    )
