"""Refuse oversized request bodies before anything reads or parses them (plain ASGI middleware).

A declared ``Content-Length`` over the limit is answered 413 at once, without reading the body;
a body without one (chunked) is buffered as it streams in, up to the limit, and refused the moment
it passes it. The limit is ``app.state.max_body_bytes`` (set by each replica from its ServeConfig).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def refuse(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``status`` with ``{"detail": detail}`` (and any extra ``headers``), reading nothing."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit: Any = getattr(getattr(scope.get("app"), "state", None), "max_body_bytes", None)
        if scope["type"] != "http" or limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await refuse(send, 400, "invalid Content-Length header")
                return
            if size > limit:
                await refuse(send, 413, f"request body of {size} bytes; at most {limit} allowed")
                return
        # No declared length (chunked): take the body in, at most ``limit`` bytes of it, before the
        # app sees any of it; the app then reads it from memory. (An app that raises while reading
        # would have FastAPI answer 400 "error parsing the body", not 413.)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await refuse(send, 413, f"request body over {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
