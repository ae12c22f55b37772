"""Retrieval over learning for a language model: the learner fills a fact store, replicas read it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.model import ModelSpec
from olsim.learner.objective import IGNORE, NextToken
from olsim.learner.retrieval import FactStore, training_rows
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import RagConfig


class Rag(Strategy):
    """Every stream row goes into a :class:`olsim.learner.retrieval.FactStore` at once (no training
    needed for a fact to be served: the store travels in the next version); the network trains on
    the stream as naive fine-tuning does, plus on rows whose answer only a context sentence before
    them gives, which teaches it to answer from the retrieved sentence. Once it can, a new or changed
    fact needs no weight change.

    >>> s = Rag(RagConfig(), n_features=4)
    >>> s.after_step(torch.tensor([[65.0, 32, 66, 46]]), torch.tensor([2]), nn.Identity())
    >>> sorted(s.export()), s.memory_fill()
    (['rag.keys', 'rag.rows'], (1, None))
    """

    name = "rag"
    objectives = ("next-token",)  # a store of sentences read into prompts

    @classmethod
    def fit_model(cls, spec: ModelSpec, n_tasks: int) -> ModelSpec:
        """Room for a retrieved sentence before each row: the context holds two rows and a separator."""
        need = 2 * spec.in_features + 1
        return spec if spec.context >= need else spec.model_copy(update={"context": need})

    def __init__(self, config: RagConfig, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.config: RagConfig = config
        self.store = FactStore(config.store_size)
        self.objective = NextToken()
        self.steps = 0  # seeds each step's answer swap (replayable from a checkpoint)
        self._answers = torch.zeros(0, dtype=torch.long)

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._answers = y  # where each row's answer starts, for penalty()
        return x, y

    def penalty(self, model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """Answer-only loss on rows whose answer only the context gives (:func:`training_rows`)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.steps)
        swap = torch.randperm(len(x), generator=g)
        rows, at = training_rows(x, self._answers.to(x.device), swap.to(x.device))
        targets = self.objective.targets(rows)
        positions = torch.arange(1, rows.shape[1], device=rows.device)
        targets = targets.masked_fill(positions[None, :] < at[:, None], IGNORE)  # the answer alone
        out = model(rows)[:, :-1]
        loss = nn.functional.cross_entropy(
            out.reshape(-1, out.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
        )
        return self.config.context_weight * loss

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
        self.store.add(x, y)
        self.steps += 1

    def export(self) -> dict[str, np.ndarray]:
        return self.store.export() if len(self.store) else {}

    def memory_fill(self) -> tuple[int, int | None]:
        return len(self.store), self.store.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"store": self.store.state_dict(), "steps": self.steps, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.store.load_state_dict(state["store"])
        self.steps, self.seed = int(state["steps"]), int(state["seed"])  # the swaps continue as they were
