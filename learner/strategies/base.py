"""The strategy interface: a handful of hooks with no-op defaults.

The trainer calls, per step: ``prepare_batch`` (e.g. mix in replayed samples), ``penalty``
(a term added to the loss, given the prepared batch and the model's logits on it: EWC's
quadratic anchor, LwF's distillation, DER's logit matching), ``after_step`` (e.g. fill a buffer,
accumulate importances); per task boundary or drift alarm: ``on_task_end`` / ``on_drift``
(e.g. consolidate). ``export`` returns extra serving state (adapters, a kNN memory) that
travels with a weight snapshot. A strategy gets the model as an argument and never reaches
into the trainer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from olsim.learner.model import ModelSpec
from olsim.learner.objective import ObjectiveName


class NoSettings(BaseModel):
    """The settings of a strategy that has none."""

    model_config = ConfigDict(extra="forbid")


class Strategy:
    """Subclass it for a strategy of your own; ``Config`` (a pydantic model) validates the scenario's
    ``args`` and arrives as ``config``. Built-in strategies take their config from
    :mod:`olsim.learner.strategies.config` instead.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[BaseModel]] = NoSettings
    objectives: ClassVar[tuple[ObjectiveName, ...]] = ("classify", "next-token")  # the models it can train

    @classmethod
    def trains(cls, spec: ModelSpec) -> bool:
        """Whether this strategy can train the model ``spec`` describes (by its objective)."""
        return spec.objective in cls.objectives

    @classmethod
    def fit_model(cls, spec: ModelSpec, n_tasks: int) -> ModelSpec:
        """The model spec this strategy needs for ``n_tasks`` tasks (default: as given)."""
        return spec

    def __init__(self, config: BaseModel, *, n_features: int, seed: int = 0) -> None:
        self.config = config
        self.n_features = n_features
        self.seed = seed

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch to train on, given the batch from the stream; it must start with ``x, y``."""
        return x, y

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """Extra loss term for the prepared batch ``x`` with ``logits = model(x)``; None for none."""
        return None

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        """Called after each optimizer step with the stream batch (not the prepared one)."""

    def on_task_end(self, task: int, model: nn.Module) -> None:
        """Called when the stream announces the end of ``task``."""

    def on_drift(self, model: nn.Module) -> None:
        """Called when a drift detector fires on a stream without task boundaries."""

    def export(self) -> dict[str, np.ndarray]:
        """Extra arrays the serving side needs besides the model weights."""
        return {}

    def memory_fill(self) -> tuple[int, int | None]:
        """Samples held in a rehearsal memory and its capacity (None: unbounded); (0, 0) for none."""
        return 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name}: unexpected state keys {sorted(state)}")


def detached_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable parameter, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def quadratic_anchor(
    model: nn.Module, weight: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]
) -> torch.Tensor:
    """sum_i weight_i * (theta_i - anchor_i)^2 over named parameters (EWC, SI), on the model's device
    (weights and anchors restored from a checkpoint arrive on the CPU: ``.to`` is free otherwise)."""
    total: torch.Tensor | None = None
    for n, p in model.named_parameters():
        if n in weight:
            term = (weight[n].to(p.device) * (p - anchor[n].to(p.device)) ** 2).sum()
            total = term if total is None else total + term
    return torch.zeros(()) if total is None else total
