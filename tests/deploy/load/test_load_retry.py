"""The run's load generator retries what a pooled HTTP client retries, and nothing else: a request
on a *reused* keep-alive connection that the server closed without answering is sent once more, and
the sample says so; a new connection closed unanswered, or a refused one, is a failure."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from olsim.deploy.load.generator import KEEPALIVE_CLOSED, LoadGenerator

OK = b'{"predictions": [1], "model_version": 3}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(OK)}\r\n\r\n".encode()
    + OK
)

Policy = Callable[[int], bool]  # request number on its connection (1, 2, ...) -> answer it?


def _server(answer: Policy) -> Iterator[tuple[str, list[str]]]:
    """HTTP/1.1 on loopback with keep-alive; ``answer(k)`` decides, for the k-th request on a
    connection, whether to answer it or to hang up without a word."""
    log: list[str] = []
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def requests(conn: socket.socket) -> Iterator[bytes]:
        """Each whole request (head and body: a client may send them in separate writes)."""
        buf = b""
        while not stop.is_set():
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = next(
                (
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            yield head
            buf = buf[length:]

    def connection(conn: socket.socket) -> None:
        with conn:
            for k, _request in enumerate(requests(conn), start=1):
                if not answer(k):
                    log.append(f"closed request {k}")
                    return
                log.append(f"answered request {k}")
                conn.sendall(ANSWER)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/predict", log
    stop.set()
    t.join()
    sock.close()


@pytest.fixture
def keepalive_closer() -> Iterator[tuple[str, list[str]]]:
    """Answers the first request on each connection, hangs up on the second (a keep-alive close)."""
    yield from _server(lambda k: k == 1)


@pytest.fixture
def hangs_up_at_once() -> Iterator[tuple[str, list[str]]]:
    """Hangs up on every new connection's first request."""
    yield from _server(lambda k: False)


def _run(url: str, seconds: float) -> dict:
    load = LoadGenerator(url, np.zeros((4, 64), dtype=np.float32), rps=10, workers=1)
    load.start()
    time.sleep(seconds)
    load.stop()
    return load.summary()


def test_a_reused_connection_closed_unanswered_is_retried_once_and_says_so(
    keepalive_closer: tuple[str, list[str]],
) -> None:
    url, log = keepalive_closer
    s = _run(url, 0.55)
    assert s["count"] >= 3 and s["errors"] == 0 and s["by_status"] == {"200": s["count"]}
    # every request after the first went out on the kept-alive connection, was hung up on, and retried
    rows = sorted(s["samples"])
    assert [r[6] for r in rows] == [None] + [KEEPALIVE_CLOSED] * (len(rows) - 1)
    assert s["retried"] == len(rows) - 1 == log.count("closed request 2")
    assert s["retried_by_reason"] == {KEEPALIVE_CLOSED: len(rows) - 1} and s["versions_seen"] == [3]


def test_a_new_connection_closed_unanswered_is_a_failure_not_a_retry(
    hangs_up_at_once: tuple[str, list[str]],
) -> None:
    url, log = hangs_up_at_once
    s = _run(url, 0.35)
    assert s["count"] >= 2 and s["errors"] == s["count"] and s["by_status"] == {"0": s["count"]}
    assert s["retried"] == 0 and len(log) == s["count"]  # one connection, one try per request


def test_a_refused_connection_is_a_failure_not_a_retry() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused
    load = LoadGenerator(f"http://127.0.0.1:{port}/predict", np.zeros((1, 64)), rps=10, workers=1)
    load.start()
    time.sleep(0.35)
    load.stop()
    s = load.summary()
    assert s["count"] >= 2 and s["errors"] == s["count"] and s["by_status"] == {"0": s["count"]}
    assert s["retried"] == 0 and all(r[6] is None for r in s["samples"])


def test_stop_before_start_is_harmless() -> None:
    LoadGenerator("http://127.0.0.1:9/predict", np.zeros((1, 64))).stop()
