"""DER++ (Buzzega et al., NeurIPS 2020): replay stored labels *and* the logits the model gave then."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from olsim.learner.buffer import ReservoirBuffer
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import DerConfig


class Der(Strategy):
    """Loss = CE(stream + replayed labels) + alpha * MSE(model(x'), z') on a second replayed sample.

    The stored logits ``z'`` are the model's logits on the stream batch in the step the sample
    was seen (before that step's update), as in the paper's reservoir variant.

    >>> d = Der(DerConfig(buffer_size=8, replay_batch=2), n_features=3, seed=0)
    >>> m = nn.Linear(3, 10); x, y = torch.ones(2, 3), torch.tensor([0, 1])
    >>> bx, by = d.prepare_batch(x, y); d.penalty(m, bx, m(bx)) is None
    True
    >>> d.after_step(x, y, m); bx, by = d.prepare_batch(x, y); bool(d.penalty(m, bx, m(bx)) >= 0)
    True
    """

    name = "der"
    objectives = ("classify",)  # its replayed logits are class logits

    def __init__(self, config: DerConfig, *, n_features: int, seed: int = 0, n_classes: int = 10) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: DerConfig = config
        self.buffer = ReservoirBuffer(config.buffer_size, n_features, seed=seed, n_logits=n_classes)
        self._n_stream = 0
        self._stream_logits: torch.Tensor | None = None

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._n_stream = len(y)
        if len(self.buffer) == 0:
            return x, y
        bx, by = self.buffer.sample(self.config.replay_batch)  # the "++" term: replayed labels
        return torch.cat([x, bx]), torch.cat([y, by])

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        self._stream_logits = logits[: self._n_stream].detach().cpu()  # the buffer lives on the CPU
        if len(self.buffer) == 0:
            return None
        idx = self.buffer.sample_index(self.config.replay_batch)
        z = model(self.buffer.x[idx].to(x.device))  # (k, n_classes)
        return self.config.alpha * nn.functional.mse_loss(z, self.buffer.z[idx].to(x.device))

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.buffer.add(x, y, self._stream_logits)

    def memory_fill(self) -> tuple[int, int | None]:
        return len(self.buffer), self.buffer.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
