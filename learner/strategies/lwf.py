"""Learning without Forgetting (Li & Hoiem, ECCV 2016), single-head variant."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import LwfConfig


class Lwf(Strategy):
    """After each task, the model is frozen as a teacher; new batches are also distilled from it.

    Penalty = alpha * T^2 * KL(softmax(teacher(x)/T) || softmax(model(x)/T)) on the stream batch.

    >>> s = Lwf(LwfConfig(), n_features=3)
    >>> m = nn.Linear(3, 2); x = torch.randn(4, 3)
    >>> s.penalty(m, x, m(x)) is None
    True
    >>> s.on_task_end(0, m); round(float(s.penalty(m, x, m(x)).detach()), 6)  # model == teacher
    0.0
    """

    name = "lwf"
    objectives = ("classify",)  # its distillation is over class logits

    def __init__(self, config: LwfConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: LwfConfig = config
        self.teacher: nn.Module | None = None
        self._pending: dict[str, torch.Tensor] | None = None  # restored teacher weights, built on first use
        self._n_stream = 0

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._n_stream = len(y)
        return x, y

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        if self._pending is not None:
            self._freeze_teacher(model)
            assert self.teacher is not None
            self.teacher.load_state_dict(self._pending)
            self._pending = None
        if self.teacher is None:
            return None
        n = self._n_stream or len(x)
        t = self.config.temperature
        with torch.no_grad():
            target = nn.functional.softmax(self.teacher(x[:n]) / t, dim=1)
        log_student = nn.functional.log_softmax(logits[:n] / t, dim=1)
        kd = nn.functional.kl_div(log_student, target, reduction="batchmean")
        return self.config.alpha * t * t * kd

    def on_task_end(self, task: int, model: nn.Module) -> None:
        self._freeze_teacher(model)

    def on_drift(self, model: nn.Module) -> None:
        self._freeze_teacher(model)

    def _freeze_teacher(self, model: nn.Module) -> None:
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        weights = self.teacher.state_dict() if self.teacher is not None else self._pending
        return {"teacher": None if weights is None else {k: v.clone() for k, v in weights.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher = None
        teacher = state["teacher"]
        self._pending = None if teacher is None else {k: v.clone() for k, v in teacher.items()}
