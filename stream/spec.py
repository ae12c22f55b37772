"""The stream part of a scenario, as a validated config."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from olsim.stream.chaos import Burst, Chaos, Stall
from olsim.stream.delivery import Delivery
from olsim.stream.events import TaskStream
from olsim.stream.plugin import ImportRef
from olsim.stream.tasks import N_CLASSES, Task, TaskKind, build_tasks, tasks_from_source

DEFAULT_TASKS = 5  # of a built-in task set, when n_tasks is not given
Source = TaskStream | Delivery  # what a learner consumes: the clean stream, or it delivered under chaos


class Drift(BaseModel):
    """How the stream changes from one task to the next.

    ``abrupt``: the next task's first event follows the last of the one before. ``gradual``: the
    change is blended over ``width`` events around each boundary, the new task's share rising from
    about 0 to about 1 (events, ids and each task's own order are unchanged). For the learner and
    the accuracy matrix a task ends where the next one's first event arrives; the old task's events
    still in the window are trained where they land and do not reopen it.
    """

    model_config = ConfigDict(extra="forbid")

    shape: Literal["abrupt", "gradual"] = "abrupt"
    width: int = Field(0, ge=0, description="events over which a gradual change is blended")

    @model_validator(mode="after")
    def _width_fits_shape(self) -> Drift:
        if self.shape == "gradual" and self.width < 2:
            raise ValueError("a gradual drift blends over width >= 2 events")
        if self.shape == "abrupt" and self.width:
            raise ValueError("an abrupt drift has no width (use shape: gradual)")
        return self


class StreamSpec(BaseModel):
    """Which tasks, in what order, how many passes over each, and how fast events arrive.

    ``sequence`` lists the task of each stretch of the stream (*segment*), by the dataset's task
    numbers; a task may come back (a recurring concept). Tasks are renumbered in the order they
    first appear (``sequence: [2, 0, 2, 1]`` streams dataset task 2 as task 0, then 0 as task 1,
    task 0 again, then 1 as task 2; names keep the dataset's identity), so everything downstream
    sees tasks arrive in index order; tasks the sequence never visits come last, evaluated but
    never trained.

    >>> spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    >>> len(spec.build(seed=0))
    431
    """

    model_config = ConfigDict(extra="forbid")

    tasks: TaskKind | ImportRef = Field(
        "split-digits",
        description="a built-in task set, or a task source {import: 'pkg.mod:factory', args: {...}} "
        "called as factory(seed=..., **args)",
    )
    n_tasks: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="tasks to use; unset: 5 of a built-in set, every task a task source returns (set: its "
        "first n_tasks)",
    )
    epochs: int = Field(10, ge=1, description="shuffled passes over each task's training split")
    rate: float | None = Field(
        400.0, gt=0, description="events per second; null = as fast as the learner goes"
    )
    sequence: list[int] | None = Field(
        None, description="task of each segment, in stream order (default: every task once, in order)"
    )
    drift: Drift = Drift()
    chaos: list[Chaos] = Field(default_factory=list, description="delivery faults on the stream's timeline")

    @model_validator(mode="after")
    def _sequence_names_tasks(self) -> StreamSpec:
        seq = self.sequence
        if seq is None:
            return self
        if not seq:
            raise ValueError("sequence: give at least one task")
        if not self.n_tasks_known:
            return self  # checked once the task source is built
        if bad := [t for t in seq if not 0 <= t < self.task_count]:
            raise ValueError(
                f"sequence: tasks {bad} out of range 0..{self.task_count - 1} (n_tasks={self.task_count})"
            )
        if any(a == b for a, b in pairwise(seq)):
            raise ValueError("sequence: the same task twice in a row is one segment (raise epochs instead)")
        return self

    @property
    def plugin(self) -> ImportRef | None:
        """The task source, when the tasks come from users' code."""
        return self.tasks if isinstance(self.tasks, ImportRef) else None

    @property
    def n_tasks_known(self) -> bool:
        """False for a task source whose task count comes from what it returns (not built yet)."""
        return self.plugin is None or self.n_tasks is not None

    @property
    def task_count(self) -> int:
        """How many tasks the scenario has (a task source's count is known once it has run)."""
        if self.n_tasks is not None:
            return self.n_tasks
        if self.plugin is not None:
            raise ValueError("the task source has not been called yet: its task count is unknown")
        return DEFAULT_TASKS

    def with_source_tasks(self, count: int) -> StreamSpec:
        """This spec with ``n_tasks`` settled for a task source that returned ``count`` tasks."""
        if self.n_tasks is not None and self.n_tasks > count:
            raise ValueError(f"stream.n_tasks={self.n_tasks} but the task source returned {count} tasks")
        return StreamSpec.model_validate({**self.model_dump(), "n_tasks": self.n_tasks or count})

    @property
    def builtin_classes(self) -> int | None:
        """Classes of a built-in task set (None for a task source: they come from its labels)."""
        return None if self.plugin is not None else N_CLASSES

    @property
    def order(self) -> list[int]:
        """Dataset task numbers in the order the stream first visits them, then the unvisited ones."""
        first = list(dict.fromkeys(self.sequence or []))
        return first + [t for t in range(self.task_count) if t not in first]

    @property
    def segments(self) -> list[int]:
        """Each segment's task, renumbered by first appearance."""
        if self.sequence is None:
            return list(range(self.task_count))
        order = self.order
        return [order.index(t) for t in self.sequence]

    @model_validator(mode="after")
    def _timed_chaos_needs_a_rate(self) -> StreamSpec:
        if self.rate is None and any(isinstance(c, Burst | Stall) for c in self.chaos):
            raise ValueError("burst and stall change arrival times: they need a paced stream (stream.rate)")
        return self

    def build_tasks(self, seed: int) -> list[Task]:
        """The scenario's tasks, numbered in the order the stream first visits them."""
        spec = self
        if self.plugin is not None:
            base = tasks_from_source(self.plugin, seed)
            spec = self.with_source_tasks(len(base))
            base = base[: spec.task_count]
        else:
            base = build_tasks(self.tasks, n_tasks=self.task_count, seed=seed)  # type: ignore[arg-type]
        return [replace(base[t], index=i) for i, t in enumerate(spec.order)]

    def build(self, seed: int, tasks: list[Task] | None = None) -> Source:
        clean = TaskStream(
            tasks or self.build_tasks(seed),
            epochs=self.epochs,
            seed=seed,
            rate=self.rate,
            blend=self.drift.width,
            segments=self.segments,
        )
        return Delivery(clean, self.chaos, seed=seed) if self.chaos else clean
