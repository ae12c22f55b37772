"""Retrieval over learning: the learner writes a memory, the served model reads it at query time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.buffer import ClassBalancedBuffer
from olsim.learner.served import KNN_EMBED, KNN_K, KNN_LAM, KNN_TEMPERATURE, KNN_X, KNN_Y
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import KnnConfig


class Knn(Strategy):
    """Class-balanced memory of stream samples; served predictions are a k-nearest-neighbour vote, or
    for a next-token model a kNN-LM (:class:`olsim.learner.served.ServedModel`).

    The network keeps training on the stream (naively); it only provides the embedding, and the
    memory keys are recomputed with the exported network, so keys and queries always agree. The
    exported memory is part of the served version (it travels, checksummed, in the snapshot).

    >>> s = Knn(KnnConfig(memory_size=4, k=1), n_features=2)
    >>> s.after_step(torch.eye(2), torch.tensor([0, 1]), nn.Identity())
    >>> sorted(s.export())
    ['knn.embed', 'knn.k', 'knn.lam', 'knn.temperature', 'knn.x', 'knn.y']
    """

    name = "knn"
    objectives = ("classify", "next-token")  # a vote on labels, or a kNN-LM over next bytes

    def __init__(self, config: KnnConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: KnnConfig = config
        self.memory = ClassBalancedBuffer(config.memory_size, n_features, seed=seed)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.memory.add(x, y)

    def export(self) -> dict[str, np.ndarray]:
        n = len(self.memory)
        if n == 0:
            return {}
        return {
            KNN_X: self.memory.x[:n].numpy().copy(),
            KNN_Y: self.memory.y[:n].numpy().copy(),
            KNN_K: np.array([self.config.k], dtype=np.int64),
            KNN_EMBED: np.array([1 if self.config.embedding == "network" else 0], dtype=np.int64),
            KNN_LAM: np.array([self.config.lam], dtype=np.float64),
            KNN_TEMPERATURE: np.array([self.config.temperature], dtype=np.float64),
        }

    def memory_fill(self) -> tuple[int, int | None]:
        return len(self.memory), self.memory.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
