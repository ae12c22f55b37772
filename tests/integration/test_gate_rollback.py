"""The registry's gate, rollback and atomic swaps, against real Serve replicas over HTTP.

Each test deploys the registry (gate inside) and the Serve app with no learner and publishes
snapshots itself, so it controls exactly which candidates arrive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from conftest import deployed
from olsim.deploy.load.generator import LoadGenerator
from olsim.deploy.run.cluster import NAMESPACE, get, wait_until
from olsim.deploy.run.stack import ServingStack
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot

TOKEN = "test-admin-token-0123456789"
PREFIX = "/gated"
URL = f"http://127.0.0.1:8000{PREFIX}"


def _scenario() -> Scenario:
    s = load_scenario("split-digits")
    return s.model_copy(update={"stream": s.stream.model_copy(update={"n_tasks": 3})})


@pytest.fixture(scope="module")
def snaps(gate_snapshots: dict[str, Snapshot]) -> dict[str, Snapshot]:
    """The shared trained snapshots plus a NaN one and a misshapen one."""
    spec = _scenario().learner.model
    nan = build_model(spec, seed=0)
    with torch.no_grad():
        nan.get_parameter("fc2.weight")[0, 0] = float("nan")
    wide = build_model(ModelSpec(hidden=128), seed=0)
    return {
        **gate_snapshots,
        "nan": Snapshot.from_model(nan, task=1),
        "wide": Snapshot.from_model(wide, task=1),
    }


@pytest.fixture
def stack(ray_cluster: None, snaps: dict[str, Snapshot]) -> Iterator[ServingStack]:
    with deployed(
        _scenario(), snaps["task0"], admin_token=TOKEN, app_name="gated", route_prefix=PREFIX
    ) as st:
        yield st


def _load(rps: float = 40.0) -> LoadGenerator:
    s = _scenario()
    rows = np.concatenate([t.test.x for t in s.stream.build_tasks(s.seed)])
    return LoadGenerator(f"{URL}/predict", rows, rps=rps, seed=1)


def test_nan_misshapen_and_forgetting_candidates_are_rejected_while_serving_goes_on(
    stack: ServingStack, snaps: dict[str, Snapshot]
) -> None:
    load = _load()
    load.start()
    try:
        time.sleep(0.5)
        results = {k: get(stack.registry.publish.remote(snaps[k])) for k in ("nan", "wide", "naive1")}
        time.sleep(0.5)
    finally:
        load.stop()
    assert {k: (r.version, r.reason) for k, r in results.items()} == {
        "nan": (None, "non_finite"),
        "wide": (None, "shape_mismatch"),
        "naive1": (None, "forgetting_budget"),
    }
    assert "fc2.weight" in results["nan"].detail and "hidden=128" in results["wide"].detail
    summary = load.summary()
    assert summary["count"] >= 20 and summary["errors"] == 0, summary["by_status"]
    assert summary["versions_seen"] == [1]
    assert get(stack.registry.state.remote())["served"] == 1 and stack.replicas_current()
    # a candidate that keeps the old task goes through
    assert get(stack.registry.publish.remote(snaps["joint1"])).version == 2


def test_rollback_needs_the_bearer_token_and_reaches_every_replica(
    stack: ServingStack, snaps: dict[str, Snapshot]
) -> None:
    assert get(stack.registry.publish.remote(snaps["joint1"])).version == 2
    assert wait_until(stack.replicas_current, 30, "replicas at v2")
    with httpx.Client(base_url=URL, timeout=10) as c:
        missing = c.post("/admin/rollback", json={})
        wrong = c.post("/admin/rollback", json={}, headers={"authorization": "Bearer nope"})
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert get(stack.registry.state.remote())["served"] == 2  # nothing happened

        auth = {"authorization": f"Bearer {TOKEN}"}
        assert c.post("/admin/rollback", json={"version": "x"}, headers=auth).status_code == 422
        gone = c.post("/admin/rollback", json={"version": 99}, headers=auth)
        assert gone.status_code == 404 and "not retained" in gone.json()["detail"]
        ok = c.post("/admin/rollback", json={"reason": "bad deploy"}, headers=auth)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"model_version": 1, "previous": 2, "detail": "bad deploy"}
        assert wait_until(stack.replicas_current, 30, "replicas at the rolled-back version")
        served = _versions_by_replica(c, replicas=2)
        assert set(served) == set(stack.live_replicas()) and all(v == {1} for v in served.values()), served
        assert c.post("/admin/rollback", json={}, headers=auth).status_code == 409  # nothing older

        # pause: candidates are rejected until resume; a named rollback forward works too
        assert c.post("/admin/pause", headers=auth).json() == {"paused": True}
        fresh = replace(snaps["joint1"], meta={**snaps["joint1"].meta, "step": 999})  # a new candidate
        assert get(stack.registry.publish.remote(fresh)).reason == "paused"
        assert c.post("/admin/resume", headers=auth).json() == {"paused": False}
        assert c.post("/admin/rollback", json={"version": 2}, headers=auth).json()["model_version"] == 2
    changes = get(stack.registry.changes.remote())
    assert [(c.kind, c.version, c.trigger) for c in changes[-2:]] == [
        ("rollback", 1, "manual"),
        ("rollback", 2, "manual"),
    ]


def _versions_by_replica(c: httpx.Client, replicas: int, timeout_s: float = 30.0) -> dict[str, set[int]]:
    """Predict until ``replicas`` distinct replicas have answered (HAProxy may add a replica that just
    started to its backend a moment after Serve reports it running); every answer must be a 200, and
    each replica's versions are collected, not just its last one."""
    seen: dict[str, set[int]] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < replicas and time.monotonic() < deadline:
        r = c.post("/predict", json={"inputs": [[0.1] * 64]})
        assert r.status_code == 200, r.text
        seen.setdefault(r.headers["x-olsim-replica"], set()).add(r.json()["model_version"])
    return seen


def test_swaps_are_atomic_and_every_replica_converges(stack: ServingStack) -> None:
    """Concurrent batched requests during 12 swaps: each answer equals, row for row, what the version
    it names predicts locally; a mix of two versions' layers would not."""
    spec = _scenario().learner.model
    local: dict[int, Snapshot] = {}  # version -> snapshot, filled as the registry accepts them
    candidates = [Snapshot.from_model(build_model(spec, seed=100 + i), task=0) for i in range(12)]
    rows = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32) * 4
    answers: list[tuple[int, list[int]]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=URL, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/predict", json={"inputs": rows.tolist()})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                answers.append((r.json()["model_version"], r.json()["predictions"]))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for snap in candidates:
            number = get(stack.registry.publish.remote(snap)).version
            assert number is not None
            local[number] = snap
            time.sleep(0.1)
        assert wait_until(stack.replicas_current, 30, "replicas at the last version")
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    versions = {v for v, _ in answers}
    assert len(answers) >= 50 and len(versions - {1}) >= 6
    x = torch.from_numpy(rows)
    expected = {}
    for v, snap in local.items():
        with torch.inference_mode():
            expected[v] = snap.build()(x).argmax(dim=1).tolist()
    distinct = {tuple(p) for p in expected.values()}
    assert len(distinct) == len(expected)  # the versions really disagree, so a mix would show
    for v, preds in answers:
        if v in expected:
            assert preds == expected[v], f"version {v} answered with other weights"
    acked = get(stack.registry.replica_versions.remote())
    assert len(acked) == 2 and set(acked.values()) == {13}


def test_evaluator_rolls_back_when_served_accuracy_falls_below_the_floor(
    ray_cluster: None, snaps: dict[str, Snapshot]
) -> None:
    import ray

    from olsim.deploy.run.actors import RegistryActor
    from olsim.learner.actors.evaluator import EvaluatorActor

    s = _scenario()
    registry: Any = ray.remote(RegistryActor).options(namespace=NAMESPACE, max_concurrency=100).remote()
    evaluator: Any = (
        ray.remote(EvaluatorActor)
        .options(max_concurrency=8)
        .remote(s.stream, s.seed, registry, "127.0.0.1", 0, 0.8)
    )
    try:
        port = get(evaluator.port.remote())
        assert get(registry.publish.remote(snaps["task0"])).version == 1
        assert wait_until(lambda: get(evaluator.evaluated.remote()) >= 1, 30, "evaluator")
        assert get(registry.publish.remote(snaps["naive1"])).version == 2  # no gate: accepted
        assert wait_until(lambda: get(registry.state.remote())["served"] == 1, 30, "automatic rollback")
        last = get(registry.changes.remote())[-1]
        assert (last.kind, last.trigger, last.version, last.previous) == ("rollback", "auto", 1, 2)
        assert "floor 0.800" in last.reason
        assert wait_until(lambda: _scrape(port).get(("olsim_model_version", ())) == 1, 10, "gauges")
        m = _scrape(port)
        assert m[("olsim_rollbacks_total", (("trigger", "auto"),))] == 1
        assert m[("olsim_average_accuracy", ())] > 0.95  # the restored version's
    finally:
        get(evaluator.stop.remote())
        ray.kill(evaluator)
        ray.kill(registry)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
