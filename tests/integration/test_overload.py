"""Load at and beyond capacity through the default ingress, against real Serve replicas.

Up to 64 concurrent clients every request succeeds (the replicas queue what they cannot start at
once). Beyond the queue, excess requests are answered at once with 503 and ``Retry-After``:
never a timeout, a dropped connection or another status.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import deployed
from olsim.deploy.bench.serve import hey
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.snapshot import Snapshot


def _scenario(**serving: Any) -> Scenario:
    s = load_scenario("split-digits")
    return s.model_copy(update={"serving": s.serving.model_copy(update=serving)})


def _body(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    path.write_text(json.dumps({"inputs": rng.random((rows, 64)).round(4).tolist()}))
    return path


@pytest.mark.parametrize("rows", [1, 256])
def test_64_concurrent_clients_never_fail(
    ray_cluster: None, gate_snapshots: dict[str, Snapshot], tmp_path: Path, rows: int
) -> None:
    with deployed(_scenario(), gate_snapshots["task0"], app_name="cap", route_prefix="/cap"):
        n = 2048 if rows == 1 else 512
        result = hey("http://127.0.0.1:8000/cap/predict", _body(tmp_path / "b.json", rows), n, 64)
    assert result.errors == 0 and result.statuses == {200: n}, result


async def _burst(url: str, body: bytes, clients: int) -> list[tuple[int, float, str | None]]:
    """``clients`` requests at once, each on its own connection: (status or -1, seconds, Retry-After)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> tuple[int, float, str | None]:
            t0 = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError:
                return -1, time.perf_counter() - t0, None
            return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

        return await asyncio.gather(*(one() for _ in range(clients)))


def test_excess_load_gets_a_fast_503_with_retry_after(
    ray_cluster: None, gate_snapshots: dict[str, Snapshot], tmp_path: Path
) -> None:
    # One replica that works on one request and queues two: most of a burst of 64 is excess.
    tight = _scenario(replicas=1, max_ongoing_requests=1, max_queued_requests=2, retry_after_s=2.0)
    body = _body(tmp_path / "b.json", 256).read_bytes()
    with deployed(tight, gate_snapshots["task0"], app_name="tight", route_prefix="/tight"):
        url = "http://127.0.0.1:8000/tight/predict"
        asyncio.run(_burst(url, body, 2))  # warm
        answers = asyncio.run(_burst(url, body, 64))
    statuses = sorted({s for s, _, _ in answers})
    assert statuses == [200, 503], answers  # no -1 (timeout, reset) and nothing else
    refused = [(t, ra) for s, t, ra in answers if s == 503]
    served = [t for s, t, _ in answers if s == 200]
    assert len(refused) >= 32 and len(served) >= 3
    assert {ra for _, ra in refused} == {"2"}
    # refused at once: faster than the requests that were served (which queued behind each other)
    assert float(np.median([t for t, _ in refused])) < float(np.median(served))
