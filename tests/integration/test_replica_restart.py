"""A replica that (re)starts loads the registry's current version before it serves anything."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from olsim.deploy.scenario.faults import _process_gone_at, _whereabouts
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot
from olsim.serving.config import ServeConfig
from olsim.serving.registry import Registry

APP = "olsim-restart"
URL = "http://127.0.0.1:8000/restart/predict"


@pytest.fixture
def app_with_three_versions(ray_cluster: None) -> Iterator[Any]:
    import ray
    from ray import serve

    from olsim.deploy.run.cluster import NAMESPACE
    from olsim.serving.app import build_app

    name = f"registry-{uuid.uuid4().hex[:6]}"
    registry: Any = ray.remote(Registry).options(name=name, namespace=NAMESPACE, max_concurrency=100).remote()
    for seed in range(3):
        ray.get(registry.publish.remote(Snapshot.from_model(build_model(ModelSpec(), seed=seed))))
    serve.run(
        build_app(name, NAMESPACE, ModelSpec(), ServeConfig(replicas=2)), name=APP, route_prefix="/restart"
    )
    try:
        yield registry
    finally:
        serve.delete(APP)
        ray.kill(registry)


def test_killed_replica_is_replaced_by_one_serving_the_current_version(app_with_three_versions: Any) -> None:
    import ray

    registry = app_with_three_versions
    replicas = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#")
    ]
    assert len(replicas) == 2
    original = {name.rsplit("#", 1)[1] for name in replicas}
    victim = ray.get_actor(replicas[0], namespace="serve")
    pid = int(ray.get(victim.__ray_call__.remote(_whereabouts))[0])
    ray.kill(victim, no_restart=True)
    assert _process_gone_at(pid) is not None  # gone before the first request below: none in flight

    # Keep requesting until a replacement replica has acknowledged its first version.
    seen: list[tuple[int, int | None]] = []
    newcomers: dict[str, int] = {}
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=10) as client:
        while not newcomers and time.monotonic() < deadline:
            try:
                r = client.post(URL, json={"inputs": [[0.1] * 64]})
            except httpx.TransportError:  # connection closed under the request: see below
                seen.append((-1, None))
                continue
            seen.append((r.status_code, r.json()["model_version"] if r.status_code == 200 else None))
            acked = ray.get(registry.replica_versions.remote())
            newcomers = {rid: v for rid, v in acked.items() if rid not in original}
            time.sleep(0.05)
    assert newcomers, "no replacement replica acknowledged a version within 60 s"
    assert set(newcomers.values()) == {3}  # loaded the current version in its constructor
    # No request was in flight on the killed replica: it was gone before the first one. Serve then
    # reloads HAProxy twice (replica out, replacement in), and each reload closes the client's
    # keep-alive connection: a request racing that close gets no answer, at most one per reload on
    # one connection. HAProxy retries on another replica a request it sent to the dead one (a failed
    # connect, or an idle pooled connection closed without an answer); CI once saw one HTTP 500 for
    # such a request, on a loaded machine, before olsim had HAProxy retry the latter too.
    failures = [(i, status) for i, (status, _) in enumerate(seen) if status != 200]
    transport = [f for f in failures if f[1] == -1]
    http = [f for f in failures if f[1] != -1]
    assert len(transport) <= 2 and len(http) <= 1 and {s for _, s in http} <= {500}, seen
    assert {v for status, v in seen if status == 200} == {3}
