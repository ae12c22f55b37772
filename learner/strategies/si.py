"""Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from olsim.learner.strategies.base import Strategy, detached_params, quadratic_anchor
from olsim.learner.strategies.config import SiConfig


class Si(Strategy):
    """Importance of each weight = its contribution to the loss decrease along the training path.

    Per step ``omega += -grad * delta_theta``; at a task end
    ``Omega += omega / (theta_end - theta_start)^2 + xi)`` and the anchor moves to ``theta_end``.
    The gradient used is that of the full training loss (including the penalty), as is common.

    >>> s = Si(SiConfig(), n_features=3)
    >>> m = nn.Linear(3, 2); x = torch.randn(4, 3)
    >>> s.penalty(m, x, m(x)) is None  # no task finished yet
    True
    """

    name = "si"
    _STATE = ("omega", "importance", "anchor", "task_start", "prev")  # the per-parameter state

    def __init__(self, config: SiConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: SiConfig = config
        self.omega: dict[str, torch.Tensor] = {}  # running path integral, this task
        self.importance: dict[str, torch.Tensor] = {}  # Omega, all finished tasks
        self.anchor: dict[str, torch.Tensor] = {}  # weights at the last task end
        self.task_start: dict[str, torch.Tensor] = {}
        self.prev: dict[str, torch.Tensor] = {}  # weights before the current step

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        self._follow(x.device)
        if not self.prev:  # first step ever: start the path here
            self.prev = detached_params(model)
            self.task_start = detached_params(model)
            self.omega = {n: torch.zeros_like(p) for n, p in self.prev.items()}
        if not self.importance:
            return None
        return self.config.c * quadratic_anchor(model, self.importance, self.anchor)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.prev and p.grad is not None:
                delta = p.detach() - self.prev[n]
                self.omega[n] += -p.grad.detach() * delta
                self.prev[n] = p.detach().clone()

    def on_task_end(self, task: int, model: nn.Module) -> None:
        self._consolidate(model)

    def on_drift(self, model: nn.Module) -> None:
        self._consolidate(model)

    def _consolidate(self, model: nn.Module) -> None:
        if not self.prev:
            return
        now = detached_params(model)
        for n, w in self.omega.items():
            contrib = w / ((now[n] - self.task_start[n]) ** 2 + self.config.xi)
            self.importance[n] = self.importance.get(n, torch.zeros_like(w)) + contrib.clamp(min=0)
        self.anchor = now
        self.task_start = {n: t.clone() for n, t in now.items()}
        self.omega = {n: torch.zeros_like(t) for n, t in now.items()}

    def _follow(self, device: torch.device) -> None:
        """Keep the path state where the model trains (a checkpoint restores it on the CPU)."""
        for k in self._STATE:
            d = getattr(self, k)
            if any(t.device != device for t in d.values()):
                setattr(self, k, {n: t.to(device) for n, t in d.items()})

    def state_dict(self) -> dict[str, Any]:
        return {k: {n: t.clone() for n, t in getattr(self, k).items()} for k in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, {n: t.clone() for n, t in v.items()})
