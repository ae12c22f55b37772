"""Drift detection on the prequential error, for streams that do not announce task boundaries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DriftConfig(BaseModel):
    """Page-Hinkley test for an increase in the mean of the per-batch prequential error."""

    model_config = ConfigDict(extra="forbid")

    delta: float = Field(0.01, ge=0, description="tolerated drift in the mean error per observation")
    threshold: float = Field(1.0, gt=0, description="alarm when the cumulative deviation exceeds this")
    min_batches: int = Field(10, ge=1, description="observations after a reset before an alarm may fire")


class PageHinkley:
    """Page (1954) / Hinkley (1971) test for an upward change in a stream's mean.

    ``update(x)`` returns True when the cumulative sum of ``x - mean - delta`` has risen more than
    ``threshold`` above its running minimum; the detector then starts afresh.

    >>> ph = PageHinkley(DriftConfig(min_batches=5))
    >>> [ph.update(0.05) for _ in range(20)].count(True)
    0
    >>> fired = [ph.update(0.9) for _ in range(5)]; fired.index(True)
    1
    """

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.cum = 0.0
        self.min_cum = 0.0

    def update(self, x: float) -> bool:
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.cum += x - self.mean - self.config.delta
        self.min_cum = min(self.min_cum, self.cum)
        if self.n >= self.config.min_batches and self.cum - self.min_cum > self.config.threshold:
            self.reset()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "cum": self.cum, "min_cum": self.min_cum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.mean = int(state["n"]), float(state["mean"])
        self.cum, self.min_cum = float(state["cum"]), float(state["min_cum"])
