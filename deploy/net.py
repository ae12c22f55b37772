"""Loopback networking helpers shared by the CLI, the benches and the tests."""

from __future__ import annotations

import random
import socket

# Ports handed out for servers that bind later: below Linux's ephemeral range (32768-60999), above
# Ray's worker ports (10002-19999) and below Serve's replica ports (30000+). A port the kernel picks
# for ``bind(0)`` comes from the ephemeral range, the same pool it takes outgoing connections' local
# ports from: by the time the server binds it (Ray's proxies start seconds later), a connection can
# hold it and the bind fails with "address already in use" (seen in the test suite).
PORTS = range(20000, 30000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, from :data:`PORTS` (another process may still take it).

    >>> free_port() in PORTS
    True
    """
    rng = random.Random()  # seeded from the OS: concurrent callers pick different ports
    for _ in range(500):
        port = rng.randrange(PORTS.start, PORTS.stop)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # the whole band taken (unlikely): whatever the kernel gives
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
