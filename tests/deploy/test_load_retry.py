"""The run's load generator sends a request again, once, when the server closed its connection
without answering (a keep-alive close racing the request); it counts those, and fails the rest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from deploy.load import LoadGenerator

OK = b'{"predictions": [1], "model_version": 3}'


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """HTTP on loopback that hangs up on every other connection without a response."""
    log: list[str] = []
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            n += 1
            with conn:
                conn.recv(65536)
                if n % 2 == 1:
                    log.append("closed")
                    continue  # hang up unanswered
                log.append("answered")
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    + f"content-length: {len(OK)}\r\n\r\n".encode()
                    + OK
                )

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/predict", log
    stop.set()
    t.join()
    sock.close()


def test_a_connection_closed_unanswered_is_retried_once_and_counted(server: tuple[str, list[str]]) -> None:
    url, log = server
    load = LoadGenerator(url, np.zeros((4, 64), dtype=np.float32), rps=10, workers=1)
    load.start()
    time.sleep(0.55)
    load.stop()
    s = load.summary()
    assert s["count"] >= 3 and s["errors"] == 0 and s["by_status"] == {"200": s["count"]}
    assert s["retried"] == s["count"] == log.count("closed")  # every request needed its second try
    assert s["versions_seen"] == [3]


def test_a_request_that_fails_twice_is_a_failure() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused, twice
    load = LoadGenerator(f"http://127.0.0.1:{port}/predict", np.zeros((1, 64)), rps=10, workers=1)
    load.start()
    time.sleep(0.35)
    load.stop()
    s = load.summary()
    assert s["count"] >= 2 and s["errors"] == s["count"] and s["by_status"] == {"0": s["count"]}
    assert s["retried"] == s["count"]
