"""Joint training: the upper bound. Every step also trains on a batch drawn from all data seen so far."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learner.buffer import UnboundedMemory
from learner.strategies.base import Strategy
from learner.strategies.config import JointConfig


class Joint(Strategy):
    """Rehearsal from an unbounded memory (not a fix for forgetting: a reference point).

    >>> j = Joint(JointConfig(replay_batch=4), n_features=2)
    >>> j.after_step(torch.zeros(3, 2), torch.tensor([0, 1, 1]), nn.Identity())
    >>> j.prepare_batch(torch.ones(1, 2), torch.tensor([0]))[0].shape
    torch.Size([4, 2])
    """

    name = "joint"

    def __init__(self, config: JointConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: JointConfig = config
        self.memory = UnboundedMemory(n_features, seed=seed)

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.memory) == 0:
            return x, y
        mx, my = self.memory.sample(self.config.replay_batch)
        return torch.cat([x, mx]), torch.cat([y, my])

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.memory.add(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
