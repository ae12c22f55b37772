"""Hostile input at the HTTP edge, against real Serve replicas: requests generated from the app's
own OpenAPI schema (schemathesis, with and without the admin token) never get a 5xx, oversized
bodies are refused before anything parses them, and the replicas stay healthy throughout."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conftest import deployed, fuzz_schema
from olsim.deploy.run.cluster import get
from olsim.deploy.run.stack import ServingStack
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.snapshot import Snapshot

TOKEN = "fuzz-admin-token-0123456789"
PREFIX = "/fuzz"
URL = f"http://127.0.0.1:8000{PREFIX}"
LIMIT = 64 * 1024  # a small body limit for this app, so oversize is cheap to send
EXAMPLES = 30  # generated requests per operation and header set


def _scenario() -> Scenario:
    s = load_scenario("split-digits")
    serving = s.serving.model_copy(update={"max_body_bytes": LIMIT})
    return s.model_copy(update={"stream": s.stream.model_copy(update={"n_tasks": 3}), "serving": serving})


@pytest.fixture(scope="module")
def stack(ray_cluster: None, gate_snapshots: dict[str, Snapshot]) -> Iterator[ServingStack]:
    first = gate_snapshots["task0"]
    with deployed(_scenario(), first, admin_token=TOKEN, app_name="fuzz", route_prefix=PREFIX) as st:
        yield st


def _fuzz(headers: dict[str, str]) -> dict[str, int]:
    """Every operation in the served OpenAPI schema, ``EXAMPLES`` generated requests each."""
    seen = fuzz_schema(URL, EXAMPLES, headers)
    assert {k.split()[1] for k in seen} >= {"/predict", "/healthz", "/version", "/admin/rollback"}
    return seen


def test_generated_requests_never_get_a_5xx(stack: ServingStack) -> None:
    seen = _fuzz({})
    assert sum(n for k, n in seen.items() if k.startswith("POST /predict 4")) >= EXAMPLES // 2
    assert all(k.endswith(" 401") for k in seen if "/admin/" in k)  # no token, nothing done


def test_generated_requests_with_the_admin_token_never_get_a_5xx(stack: ServingStack) -> None:
    seen = _fuzz({"Authorization": f"Bearer {TOKEN}"})
    assert any("/admin/" in k and not k.endswith(" 401") for k in seen)


def test_oversized_bodies_are_refused_before_parsing(stack: ServingStack) -> None:
    row = "[" + ", ".join(["0.5"] * 64) + "]"
    body = ('{"inputs": [' + ", ".join([row] * 300) + "]}").encode()  # ~95 KB > 64 KiB, 300 rows
    assert len(body) > LIMIT
    declared = httpx.post(
        f"{URL}/predict", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert declared.status_code == 413 and str(LIMIT) in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for k in range(0, len(body), 8192):
            yield body[k : k + 8192]

    streamed = httpx.post(
        f"{URL}/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=30
    )
    assert streamed.status_code == 413
    small = ('{"inputs": [' + ", ".join([row] * 10) + "]}").encode()
    ok = httpx.post(f"{URL}/predict", content=small, headers={"content-type": "application/json"}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 10


def test_replicas_stay_healthy_after_the_fuzzing(stack: ServingStack) -> None:
    assert httpx.get(f"{URL}/healthz", timeout=10).json()["status"] == "ok"
    r = httpx.post(f"{URL}/predict", json={"inputs": [[0.1] * 64]}, timeout=10)
    assert r.status_code == 200 and r.json()["model_version"] >= 1
    assert len(get(stack.registry.replica_versions.remote())) == stack.scenario.serving.replicas
