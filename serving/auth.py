"""The admin routes' bearer token, checked from the request's headers before anything reads its body
(plain ASGI middleware, outside the body limit).

``app.state.admin_token`` (set by each replica) enables the routes under ``/admin/``; without one
they answer 403. A missing or wrong token is answered 401 with ``WWW-Authenticate`` at once: an
unauthenticated client cannot make a replica buffer a body, however it sends it.

>>> import asyncio
>>> from types import SimpleNamespace
>>> sent = []
>>> async def receive(): raise AssertionError("the body was read")
>>> async def send(message): sent.append(message)
>>> app = SimpleNamespace(state=SimpleNamespace(admin_token="s" * 16))
>>> scope = {"type": "http", "path": "/admin/pause", "headers": [], "app": app}
>>> asyncio.run(AdminAuth(None)(scope, receive, send)); sent[0]["status"]
401
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from olsim.serving.limits import refuse

PREFIX = "/admin/"
MIN_TOKEN_LENGTH = 16


def check_token(token: str, source: str = "the admin token") -> str:
    """``token`` if it is long enough to be a bearer secret, else ValueError naming ``source``.

    >>> check_token("short", "$OLSIM_ADMIN_TOKEN")
    Traceback (most recent call last):
    ...
    ValueError: $OLSIM_ADMIN_TOKEN is 5 characters; an admin token needs at least 16
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{source} is {len(token)} characters; an admin token needs at least {MIN_TOKEN_LENGTH}"
        )
    return token


def route_path(scope: Scope) -> str:
    """The request's path within the application: without the route prefix it is mounted at
    (``root_path``: a Serve application at ``/gated`` sees ``/gated/admin/pause``).

    >>> route_path({"path": "/gated/admin/pause", "root_path": "/gated"}), route_path({"path": "/x"})
    ('/admin/pause', '/x')
    """
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class AdminAuth:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_path(scope).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        expected: Any = getattr(getattr(scope.get("app"), "state", None), "admin_token", None)
        if not expected:
            await refuse(send, 403, "admin routes are disabled: no admin token is configured")
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), str(expected).encode()):
            challenge = [(b"www-authenticate", b'Bearer realm="olsim"')]
            await refuse(send, 401, "missing or wrong bearer token", challenge)
            return
        await self.app(scope, receive, send)
