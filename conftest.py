"""Fixtures shared by the test suite: trained split-digits snapshots (no Ray), and one local Ray
cluster for the whole session, used only by tests under tests/integration/ (never run those under
pytest-xdist).

This file sits at the repository root on purpose: a conftest.py inside tests/ would put tests/ on
sys.path, where tests/deploy, tests/learner, ... shadow the real packages of the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from learner.model import ModelSpec, build_model
from learner.snapshot import Snapshot
from stream.tasks import Task, build_tasks

Train = Callable[[torch.nn.Module, list[Task]], torch.nn.Module]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import logging

    import ray
    from ray import serve

    from deploy.runner import NAMESPACE

    ray.init(num_cpus=2, namespace=NAMESPACE, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def _train(model: torch.nn.Module, tasks: list[Task], steps: int = 150) -> torch.nn.Module:
    """Seeded Adam on the tasks' training splits, pooled: quick and good enough to learn 2-6 digits."""
    x = torch.from_numpy(np.concatenate([t.train.x for t in tasks]))
    y = torch.from_numpy(np.concatenate([t.train.y for t in tasks]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(len(x), (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model


@pytest.fixture(scope="session")
def train() -> Train:
    return _train


@pytest.fixture(scope="session")
def digit_tasks() -> list[Task]:
    """split-digits, 3 tasks, seed 0 (the same tasks as the split-digits scenario with n_tasks: 3)."""
    return build_tasks("split-digits", n_tasks=3, seed=0)


@pytest.fixture(scope="session")
def gate_snapshots(digit_tasks: list[Task]) -> dict[str, Snapshot]:
    """task0: trained on task 0 (a task end); naive1: then on task 1 only; joint1: tasks 0 and 1 together."""
    spec = ModelSpec()
    m = _train(build_model(spec, seed=0), digit_tasks[:1])
    out = {"task0": Snapshot.from_model(m, task=0, task_end=True)}
    out["naive1"] = Snapshot.from_model(_train(m, digit_tasks[1:2]), task=1)
    out["joint1"] = Snapshot.from_model(_train(build_model(spec, seed=0), digit_tasks[:2]), task=1)
    return out
