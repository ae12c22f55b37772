"""Experience replay: each stream batch is trained together with a batch drawn from a bounded memory."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learner.buffer import ClassBalancedBuffer, ReservoirBuffer
from learner.strategies.base import Strategy
from learner.strategies.config import ReplayConfig


class Replay(Strategy):
    """Rehearsal from a reservoir or class-balanced buffer.

    >>> r = Replay(ReplayConfig(buffer_size=4, replay_batch=2), n_features=3, seed=0)
    >>> x, y = torch.ones(2, 3), torch.tensor([0, 1])
    >>> r.prepare_batch(x, y)[0].shape  # empty memory: stream batch only
    torch.Size([2, 3])
    >>> r.after_step(x, y, nn.Identity()); r.prepare_batch(x, y)[0].shape
    torch.Size([4, 3])
    """

    name = "replay"

    def __init__(self, config: ReplayConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: ReplayConfig = config
        kind = ClassBalancedBuffer if config.buffer == "class_balanced" else ReservoirBuffer
        self.buffer = kind(config.buffer_size, n_features, seed=seed)

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.buffer) == 0:
            return x, y
        bx, by = self.buffer.sample(self.config.replay_batch)
        return torch.cat([x, bx]), torch.cat([y, by])

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.buffer.add(x, y)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
