"""One local Ray cluster for the whole test session (never run these under pytest-xdist)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


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
