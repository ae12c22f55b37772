"""BodyLimit: oversized bodies are refused before the app reads them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from olsim.serving.limits import BodyLimit

reads: list[int] = []


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.add_middleware(BodyLimit)
    app.state.max_body_bytes = 1000

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        reads.append(len(body))
        return {"bytes": len(body)}

    reads.clear()
    return TestClient(app)


def test_a_body_within_the_limit_passes(client: TestClient) -> None:
    r = client.post("/echo", content=b"x" * 1000)
    assert r.status_code == 200 and r.json() == {"bytes": 1000}


def test_a_declared_oversize_is_refused_without_reading(client: TestClient) -> None:
    r = client.post("/echo", content=b"x" * 1001)
    assert r.status_code == 413 and "at most 1000" in r.json()["detail"]
    assert reads == []  # the handler never ran


def test_a_chunked_oversize_is_refused_as_it_streams(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    r = client.post("/echo", content=chunks())
    assert r.status_code == 413 and reads == []


def test_a_garbled_content_length_is_a_400(client: TestClient) -> None:
    r = client.post("/echo", content=b"{}", headers={"content-length": "lots"})
    assert r.status_code == 400


def test_no_limit_configured_means_no_limit() -> None:
    app = FastAPI()
    app.add_middleware(BodyLimit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    assert TestClient(app).post("/echo", content=b"x" * 5000).json() == {"bytes": 5000}
