"""The stream part of a scenario, as a validated config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stream.events import TaskStream
from stream.tasks import Task, TaskKind, build_tasks


class StreamSpec(BaseModel):
    """Which tasks, how many passes over each, and how fast events arrive.

    >>> spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    >>> len(spec.build(seed=0))
    431
    """

    model_config = ConfigDict(extra="forbid")

    tasks: TaskKind = "split-digits"
    n_tasks: int = Field(5, ge=1, le=1000)
    epochs: int = Field(10, ge=1, description="shuffled passes over each task's training split")
    rate: float | None = Field(
        400.0, gt=0, description="events per second; null = as fast as the learner goes"
    )

    def build_tasks(self, seed: int) -> list[Task]:
        return build_tasks(self.tasks, n_tasks=self.n_tasks, seed=seed)

    def build(self, seed: int, tasks: list[Task] | None = None) -> TaskStream:
        return TaskStream(tasks or self.build_tasks(seed), epochs=self.epochs, seed=seed, rate=self.rate)
