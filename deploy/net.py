"""Loopback networking helpers shared by the CLI, the benches and the tests."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it; another process may still take it).

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    """Whether a server could bind ``port`` on ``host`` now, binding the way servers do (Ray's metrics
    exporter, uvicorn, prometheus_client): with SO_REUSEADDR, so that connections of an earlier run
    still in TIME_WAIT do not count as "in use", while a listener on any address does.

    >>> with socket.create_server(("127.0.0.1", 0)) as held:
    ...     port_free(held.getsockname()[1])
    False
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
