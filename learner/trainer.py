"""The trainer: prequential test-then-train on stream batches, pure torch, no Ray."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from olsim.learner.model import objective_of
from olsim.learner.strategies.base import Strategy


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)


@dataclass(frozen=True)
class StepResult:
    loss: float
    correct: int  # stream-batch rows the model got right *before* the update (prequential hits)
    size: int  # stream-batch size


class Trainer:
    """Runs one strategy's hooks around plain SGD/Adam steps.

    >>> from olsim.learner.model import ModelSpec, build_model
    >>> from olsim.learner.strategies import NaiveConfig, make_strategy
    >>> spec = ModelSpec(in_features=4, hidden=8, n_classes=2)
    >>> t = Trainer(build_model(spec, seed=0), make_strategy(NaiveConfig(), n_features=4))
    >>> x, y = torch.eye(4)[:2], torch.tensor([0, 1])
    >>> r = t.step(x, y); (t.steps, t.samples, r.size)
    (1, 2, 2)
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        optimizer: OptimizerConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).train()  # stays in train mode; evaluation uses its own copies
        self.strategy = strategy
        self.objective = objective_of(model)
        cfg = optimizer or OptimizerConfig()
        params = model.parameters()
        self.optimizer: torch.optim.Optimizer = (
            torch.optim.Adam(params, lr=cfg.lr) if cfg.kind == "adam" else torch.optim.SGD(params, lr=cfg.lr)
        )
        self.steps = 0
        self.samples = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        """Test on the batch, then train on it (plus whatever the strategy adds).

        The prepared batch starts with the stream batch (a strategy contract), so the training
        forward's first ``len(y)`` rows are the pre-update predictions: the prequential test costs
        no extra forward pass. Strategies see the stream batch on the CPU (``prepare_batch``,
        ``after_step``: their memories stay there); the prepared batch goes to the trainer's device,
        where ``penalty`` gets it with the model.
        """
        bx, by = self.strategy.prepare_batch(x, y)
        bx, by = bx.to(self.device, non_blocking=True), by.to(self.device, non_blocking=True)
        logits = self.model(bx)  # (B', n_classes), or (B', T, vocab) for a next-token model
        n = len(y)
        correct = int(self.objective.hits(logits[:n].detach(), bx[:n], by[:n]).sum().item())
        loss = self.objective.loss(logits, bx, by)
        extra = self.strategy.penalty(self.model, bx, logits)
        if extra is not None:
            loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.strategy.after_step(x, y, self.model)
        self.steps += 1
        self.samples += len(y)
        return StepResult(loss=loss.item(), correct=correct, size=len(y))

    def end_task(self, task: int) -> None:
        self.strategy.on_task_end(task, self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "steps": self.steps,
            "samples": self.samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's Optimizer.load_state_dict keeps the given tensors when dtype and device already
        # match, so without a copy two trainers would share (and both mutate) Adam's moments.
        state = copy.deepcopy(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        self.steps = int(state["steps"])
        self.samples = int(state["samples"])
