"""Rehearsal: each stream batch is trained together with a batch drawn from a memory.

``replay`` uses a bounded buffer (reservoir or class-balanced); ``joint`` (the upper bound) uses
an unbounded memory of everything seen. Both are :class:`Rehearsal` with a different memory.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from pydantic import BaseModel
from torch import nn

from olsim.learner.buffer import ClassBalancedBuffer, ReservoirBuffer
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import ReplayConfig


class Memory(Protocol):
    @property
    def capacity(self) -> int | None: ...  # None: unbounded

    def __len__(self) -> int: ...
    def add(self, x: torch.Tensor, y: torch.Tensor) -> None: ...
    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Rehearsal(Strategy):
    """Appends up to ``replay_batch`` samples from ``memory`` to every stream batch; stores the stream."""

    def __init__(
        self, config: BaseModel, memory: Memory, replay_batch: int, *, n_features: int, seed: int = 0
    ) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.memory = memory
        self.replay_batch = replay_batch

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.memory) == 0:
            return x, y
        mx, my = self.memory.sample(self.replay_batch)
        return torch.cat([x, mx]), torch.cat([y, my])

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.memory.add(x, y)

    def memory_fill(self) -> tuple[int, int | None]:
        return len(self.memory), self.memory.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])


class Replay(Rehearsal):
    """Rehearsal from a reservoir or class-balanced buffer of ``buffer_size`` samples.

    >>> r = Replay(ReplayConfig(buffer_size=4, replay_batch=2), n_features=3, seed=0)
    >>> x, y = torch.ones(2, 3), torch.tensor([0, 1])
    >>> r.prepare_batch(x, y)[0].shape  # empty memory: stream batch only
    torch.Size([2, 3])
    >>> r.after_step(x, y, nn.Identity()); r.prepare_batch(x, y)[0].shape
    torch.Size([4, 3])
    """

    name = "replay"

    def __init__(self, config: ReplayConfig, *, n_features: int, seed: int = 0) -> None:
        kind = ClassBalancedBuffer if config.buffer == "class_balanced" else ReservoirBuffer
        memory = kind(config.buffer_size, n_features, seed=seed)
        super().__init__(config, memory, config.replay_batch, n_features=n_features, seed=seed)
