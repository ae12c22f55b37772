"""The admin routes' bearer token is checked before anything reads the request body (the replica's
real middleware stack, driven at the ASGI level so that every read of the body is seen)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from olsim.serving.app import api

TOKEN = "t" * 24


def _call(path: str, headers: list[tuple[bytes, bytes]], root: str = "") -> tuple[list[dict[str, Any]], int]:
    """POST ``path`` with a chunked body that never ends; returns what was sent and body reads."""
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}  # always more to come

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": root + path,
        "raw_path": (root + path).encode(),
        "query_string": b"",
        "root_path": root,
        "headers": [(b"transfer-encoding", b"chunked"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(api(scope, receive, send), timeout=5))  # type: ignore[arg-type]
    return sent, reads


@pytest.fixture(autouse=True)
def replica_state() -> Iterator[None]:
    """What a replica sets on the app at start (this process has no replica: set, then cleared)."""
    api.state.max_body_bytes, api.state.admin_token = 4 * 2**20, TOKEN
    yield
    api.state.max_body_bytes = api.state.admin_token = None


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Bearer wrong-token-wrong-token")], [(b"authorization", TOKEN.encode())]],
)
def test_a_request_without_the_token_is_refused_before_its_body_is_read(
    headers: list[tuple[bytes, bytes]],
) -> None:
    sent, reads = _call("/admin/rollback", headers)
    assert sent[0]["status"] == 401 and reads == 0
    assert (b"www-authenticate", b'Bearer realm="olsim"') in sent[0]["headers"]


def test_an_app_under_a_route_prefix_checks_its_admin_routes_too() -> None:
    sent, reads = _call("/admin/pause", [], root="/gated")
    assert sent[0]["status"] == 401 and reads == 0


def test_admin_routes_without_a_configured_token_are_403_unread() -> None:
    api.state.admin_token = None
    sent, reads = _call("/admin/pause", [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert sent[0]["status"] == 403 and reads == 0


def test_the_right_token_reaches_the_body_limit() -> None:
    """With the token the request goes on: the body limit reads it (and refuses this endless one)."""
    headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
    sent, reads = _call("/admin/rollback", headers)
    assert sent[0]["status"] == 413 and reads > 1
