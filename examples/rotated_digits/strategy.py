"""A strategy of one's own: replay the most recent samples of every finished task."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

import olsim


class RecentReplay(olsim.Strategy):
    """Keeps the last ``per_task`` stream samples of the current task; when the task ends they join
    the memory, and every step trains on ``replay_batch`` samples drawn from it besides the stream.

    >>> s = RecentReplay(RecentReplay.Config(per_task=2, replay_batch=2), n_features=3)
    >>> s.after_step(torch.eye(3), torch.tensor([0, 1, 2]), torch.nn.Identity())
    >>> s.on_task_end(0, torch.nn.Identity()); s.memory_fill()
    (2, None)
    >>> x, y = s.prepare_batch(torch.zeros(1, 3), torch.tensor([0])); y.tolist()[0], len(y)
    (0, 3)
    """

    name = "recent-replay"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        per_task: int = Field(100, ge=1, description="samples kept from each task")
        replay_batch: int = Field(32, ge=1, description="memory samples added to every step")

    def __init__(self, config: Config, *, n_features: int, seed: int = 0) -> None:
        super().__init__(config, n_features=n_features, seed=seed)
        self.settings = config
        self.recent_x = torch.zeros(0, n_features)
        self.recent_y = torch.zeros(0, dtype=torch.long)
        self.memory_x = torch.zeros(0, n_features)
        self.memory_y = torch.zeros(0, dtype=torch.long)
        self.rng = torch.Generator().manual_seed(seed)

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.memory_y) == 0:
            return x, y
        pick = torch.randint(len(self.memory_y), (self.settings.replay_batch,), generator=self.rng)
        return torch.cat([x, self.memory_x[pick]]), torch.cat([y, self.memory_y[pick]])

    def after_step(self, x: torch.Tensor, y: torch.Tensor, model: torch.nn.Module) -> None:
        keep = self.settings.per_task
        self.recent_x = torch.cat([self.recent_x, x.detach().cpu()])[-keep:]
        self.recent_y = torch.cat([self.recent_y, y.cpu()])[-keep:]

    def on_task_end(self, task: int, model: torch.nn.Module) -> None:
        self.memory_x = torch.cat([self.memory_x, self.recent_x])
        self.memory_y = torch.cat([self.memory_y, self.recent_y])
        self.recent_x, self.recent_y = self.recent_x[:0], self.recent_y[:0]

    def memory_fill(self) -> tuple[int, int | None]:
        return len(self.memory_y), None  # grows by per_task each task

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent_x": self.recent_x,
            "recent_y": self.recent_y,
            "memory_x": self.memory_x,
            "memory_y": self.memory_y,
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("recent_x", "recent_y", "memory_x", "memory_y"):
            setattr(self, key, state[key].clone())
        self.rng.set_state(state["rng"])
