"""Parameter isolation: a frozen base network and one set of low-rank adapters per task.

The base trains on the first task only, then is frozen; task ``t`` trains adapters ``t`` alone, so
what earlier tasks learned is never overwritten. At query time a request may name its task; if it
does not, the served model routes each row to the task of its nearest class prototype (the mean input
of every (task, class) seen in the stream, exported with the version). Routing accuracy is reported
beside end accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.adapters import adapter_count, freeze_base, set_training_task
from olsim.learner.model import ModelSpec, objective_of
from olsim.learner.objective import question_only
from olsim.learner.served import ROUTE_PROTOS, ROUTE_TASKS
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import LoraConfig


class Lora(Strategy):
    """Needs a model built with ``adapters >= number of tasks`` (scenarios set it for ``lora``).

    >>> from olsim.learner.adapters import base_frozen, training_task
    >>> from olsim.learner.model import ModelSpec, build_model
    >>> m = build_model(ModelSpec(in_features=2, hidden=4, n_classes=3, adapters=2), seed=0)
    >>> s = Lora(LoraConfig(), n_features=2)
    >>> s.after_step(torch.eye(2), torch.tensor([0, 1]), m); s.on_task_end(0, m)
    >>> training_task(m), base_frozen(m), sorted(s.export())
    (1, True, ['route.protos', 'route.tasks'])
    """

    name = "lora"

    @classmethod
    def fit_model(cls, spec: ModelSpec, n_tasks: int) -> ModelSpec:
        if spec.adapters == 0:
            return spec.model_copy(update={"adapters": n_tasks})
        if spec.adapters < n_tasks:
            raise ValueError(f"lora: model.adapters={spec.adapters} < stream.n_tasks={n_tasks}")
        return spec

    def __init__(self, config: LoraConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: LoraConfig = config
        self.task = 0  # adapter being trained
        self.sums: dict[tuple[int, int], torch.Tensor] = {}  # (task, class) -> sum of inputs
        self.counts: dict[tuple[int, int], int] = {}

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        if objective_of(model).name == "next-token":  # one prototype per task, of what its rows ask
            x, y = question_only(x, y), torch.zeros_like(y)
        for c in torch.unique(y).tolist():
            rows = x[y == c]
            key = (self.task, int(c))
            self.sums[key] = self.sums.get(key, torch.zeros(x.shape[1])) + rows.sum(dim=0)
            self.counts[key] = self.counts.get(key, 0) + len(rows)

    def on_task_end(self, task: int, model: nn.Module) -> None:
        self._next_adapter(model)

    def on_drift(self, model: nn.Module) -> None:
        self._next_adapter(model)

    def _next_adapter(self, model: nn.Module) -> None:
        adapters = adapter_count(model)
        if not adapters:
            raise ValueError("lora needs a model with adapters (model.adapters >= number of tasks)")
        if self.task == 0:  # the base has learned the first task: freeze it for good
            freeze_base(model)
        if self.task + 1 >= adapters:
            return  # out of adapters: the last one keeps learning
        self.task += 1
        set_training_task(model, self.task)

    def export(self) -> dict[str, np.ndarray]:
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        protos = torch.stack([self.sums[k] / self.counts[k] for k in keys])  # (P, n_features)
        return {ROUTE_PROTOS: protos.numpy(), ROUTE_TASKS: np.array([t for t, _ in keys], dtype=np.int64)}

    def state_dict(self) -> dict[str, Any]:
        keys = sorted(self.sums)
        return {
            "task": self.task,
            "keys": torch.tensor(keys, dtype=torch.long).reshape(-1, 2),
            "sums": torch.stack([self.sums[k] for k in keys]) if keys else torch.zeros(0, self.n_features),
            "counts": torch.tensor([self.counts[k] for k in keys], dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task = int(state["task"])
        keys = [tuple(k) for k in state["keys"].tolist()]
        self.sums = {k: s.clone() for k, s in zip(keys, state["sums"], strict=True)}
        self.counts = {k: int(c) for k, c in zip(keys, state["counts"].tolist(), strict=True)}
