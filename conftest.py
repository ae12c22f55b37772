"""Fixtures shared by the test suite: trained split-digits snapshots (no Ray), and one local Ray
cluster for the whole session, used only by tests under tests/integration/ (never run those under
pytest-xdist).

This file sits at the repository root, which pytest then puts on sys.path: ``olsim`` (links to the
four package folders) imports from this checkout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from olsim.deploy.net import free_port
from olsim.deploy.run.cluster import keep_ray_on_loopback
from olsim.deploy.run.ingress import DEFAULT_INGRESS, use_ingress
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot
from olsim.stream.tasks import Task, build_tasks

# Locust patches the standard library with gevent when imported: never inside the test process
# (olsim load runs it as a subprocess); --doctest-modules would otherwise import the locustfile.
collect_ignore = ["olsim/deploy/load/locustfile.py"]

keep_ray_on_loopback()  # the session's Ray binds to loopback like `olsim run`'s (before ray is imported)
use_ingress(DEFAULT_INGRESS)  # and serves HTTP the way `olsim run` does by default

Train = Callable[[torch.nn.Module, list[Task]], torch.nn.Module]
PageCheck = Callable[[Path], dict[str, int]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import logging

    import ray
    from ray import serve

    from olsim.deploy.run.cluster import NAMESPACE

    ray.init(
        num_cpus=2,
        namespace=NAMESPACE,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _metrics_export_port=free_port(),
    )
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def fuzz_schema(
    url: str, examples: int, headers: dict[str, str] | None = None, paths: set[str] | None = None
) -> dict[str, int]:
    """Requests generated from the OpenAPI schema served at ``url`` (schemathesis: valid and invalid
    bodies, odd headers and query strings), ``examples`` per operation (those in ``paths``, or all);
    fails on the first 5xx. Returns counts by ``"METHOD path status"``."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok

    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: dict[str, int] = {}
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result  # the served schema is valid OpenAPI
        operations.append(result.ok())
    for op in operations:
        if paths is not None and op.path not in paths:
            continue

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=op.as_strategy())
        def one(case: Any) -> None:
            response = case.call_and_validate(
                base_url=url, headers=headers or {}, checks=[not_a_server_error], timeout=60
            )
            key = f"{case.method.upper()} {case.operation.path} {response.status_code}"
            seen[key] = seen.get(key, 0) + 1

        one()
    return seen


@contextmanager
def deployed(scenario: Any, first: Snapshot, **stack: Any) -> Iterator[Any]:
    """A ServingStack (registry + Serve app, no learner) serving ``first`` as version 1, torn down after."""
    from olsim.deploy.run.cluster import get, wait_until
    from olsim.deploy.run.stack import ServingStack

    st = ServingStack(scenario, **stack)
    registry = st.start_registry()
    assert get(registry.publish.remote(first)).version == 1
    st.start_serve()
    assert wait_until(st.replicas_current, 60, "replicas")
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="session")
def page_check() -> PageCheck:
    """Load an HTML file in headless Chromium (Debian package `chromium`) and return the data-*
    counters its <body> carries once loaded (report.html sets data-images and data-broken)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # a failure, not a skip: `make system` installs it
        pytest.fail("chromium not found: `apt-get install chromium` (make system does this as root)")

    def check(path: Path) -> dict[str, int]:
        proc = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tempfile.mkdtemp(prefix='olsim-chromium-')}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        body = re.search(r"<body([^>]*)>", proc.stdout)
        assert body is not None, proc.stdout[:2000]
        return {k: int(v) for k, v in re.findall(r'data-([a-z]+)="(\d+)"', body.group(1))}

    return check


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
