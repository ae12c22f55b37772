"""EWC (Kirkpatrick et al., PNAS 2017) and online EWC (Schwarz et al., ICML 2018)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from olsim.learner.buffer import ReservoirBuffer
from olsim.learner.model import objective_of
from olsim.learner.strategies.base import Strategy, detached_params, quadratic_anchor
from olsim.learner.strategies.config import EwcConfig


class Ewc(Strategy):
    """Quadratic penalty anchored at each finished task's weights, weighted by its diagonal Fisher.

    The Fisher is the empirical one, mean over up to ``fisher_samples`` samples of the finished task
    (a reservoir of the task's stream, reset at each boundary) of squared per-sample gradients of
    the log-likelihood of the true label. Offline EWC keeps one (Fisher, anchor) pair per task; online
    EWC keeps one running Fisher ``gamma * F + F_new`` anchored at the latest task's weights.

    >>> e = Ewc(EwcConfig(fisher_samples=4), n_features=3, seed=0)
    >>> m = nn.Linear(3, 2); x = torch.randn(4, 3)
    >>> e.after_step(x, torch.tensor([0, 1, 0, 1]), m); e.on_task_end(0, m)
    >>> float(e.penalty(m, x, m(x)).detach())  # at the anchor: no penalty
    0.0
    """

    name = "ewc"

    def __init__(self, config: EwcConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: EwcConfig = config
        self.task_samples = ReservoirBuffer(config.fisher_samples, n_features, seed=seed)
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.task_samples.add(x, y)

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        if not self.fishers:
            return None
        terms = [quadratic_anchor(model, f, a) for f, a in zip(self.fishers, self.anchors, strict=True)]
        return 0.5 * self.config.lam * torch.stack(terms).sum()

    def on_task_end(self, task: int, model: nn.Module) -> None:
        self._consolidate(model)

    def on_drift(self, model: nn.Module) -> None:
        self._consolidate(model)

    def _consolidate(self, model: nn.Module) -> None:
        if len(self.task_samples) == 0:
            return
        fisher = self._fisher(model)
        anchor = detached_params(model)
        if self.config.online and self.fishers:
            fisher = {n: self.config.gamma * self.fishers[0][n].to(f.device) + f for n, f in fisher.items()}
            self.fishers, self.anchors = [fisher], [anchor]
        else:
            self.fishers.append(fisher)
            self.anchors.append(anchor)
        self.task_samples.clear()

    def _fisher(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        held = len(self.task_samples)
        device = next(iter(params.values())).device
        x, y = self.task_samples.x[:held].to(device), self.task_samples.y[:held].to(device)
        was_training = model.training
        model.eval()
        objective = objective_of(model)
        for i in range(len(y)):  # per-sample gradients: the empirical Fisher's diagonal
            xi, yi = x[i : i + 1], y[i : i + 1]
            logp = -objective.row_loss(model(xi), xi, yi)[0]  # the sample's log-likelihood
            grads = torch.autograd.grad(logp, list(params.values()))
            for (n, _), g in zip(params.items(), grads, strict=True):
                fisher[n] += g.detach() ** 2
        model.train(was_training)
        return {n: f / len(y) for n, f in fisher.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "task_samples": self.task_samples.state_dict(),
            "fishers": [{n: t.clone() for n, t in f.items()} for f in self.fishers],
            "anchors": [{n: t.clone() for n, t in a.items()} for a in self.anchors],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task_samples.load_state_dict(state["task_samples"])
        self.fishers = [{n: t.clone() for n, t in f.items()} for f in state["fishers"]]
        self.anchors = [{n: t.clone() for n, t in a.items()} for a in state["anchors"]]
