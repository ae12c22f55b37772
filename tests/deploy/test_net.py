"""Port checks bind the way servers do: TIME_WAIT leftovers of an earlier run are not "in use"."""

from __future__ import annotations

import socket
import time

from olsim.deploy.net import port_free


def _time_wait_on_a_server_port() -> int:
    """A port whose server closed a connection first (as an HTTP/1.0 metrics endpoint does after
    each scrape) and then stopped listening: the port now holds a socket in TIME_WAIT."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: it is the side that waits in TIME_WAIT
    time.sleep(0.05)
    client.close()
    server.close()
    time.sleep(0.05)
    return int(port)


def test_a_port_with_only_time_wait_leftovers_is_free() -> None:
    port = _time_wait_on_a_server_port()
    with socket.socket() as plain:  # what a bind without SO_REUSEADDR sees: EADDRINUSE
        try:
            plain.bind(("0.0.0.0", port))
            time_wait_blocks_a_plain_bind = False
        except OSError:
            time_wait_blocks_a_plain_bind = True
    assert time_wait_blocks_a_plain_bind  # the situation is real on this kernel
    assert port_free(port)


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        assert not port_free(held.getsockname()[1])
