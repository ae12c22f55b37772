"""The Ray a run uses: start a local one on loopback (or join ``--address``), and small Ray helpers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from olsim.deploy.errors import first_line
from olsim.deploy.net import port_free
from olsim.deploy.run.options import RunError

log = logging.getLogger(__name__)

NAMESPACE = "olsim"


def get(ref: Any) -> Any:
    """``ray.get``, typed loosely: actor handles are untyped here."""
    import ray

    return ray.get(ref)


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_ray_on_loopback() -> None:
    """Make a local Ray bind its ports to 127.0.0.1, not the machine's address.

    Ray gives a local node the machine's IP (its ports then listen on it, the metrics export port on
    0.0.0.0) unless this switch, which Ray itself applies on macOS and Windows, says "no cluster".
    It is read when ``ray`` is first imported, so call this before that; joining a cluster
    (``--address``) must not call it.
    """
    os.environ.setdefault(LOOPBACK_ENV, "0")


SHIPPED: set[str] = set()  # local code this process gave Ray at the job level (every worker imports it)


def connect_ray(
    address: str | None,
    metrics_export_port: int = 0,
    ray_logs: bool = True,
    runtime_env: dict[str, Any] | None = None,
) -> bool:
    """Start a local Ray (or join ``address``) unless this process is connected to one already; True
    if this call started it. A local Ray is always a new one (never another Ray found running on this
    machine) and exports its metrics on ``metrics_export_port`` (0: a port Ray picks). Without
    ``ray_logs`` Ray's start-up warnings and its actors' and Serve's logs stay in Ray's log files
    (``/tmp/ray/session_latest/logs``) instead of this terminal; errors still reach the caller.
    ``runtime_env`` (a scenario's plugin code, ``py_modules``) is shipped to every worker of the job,
    on every node.
    """
    if address is None:
        keep_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return False
    local: dict[str, Any] = {}
    if address is None and metrics_export_port:
        if not port_free(metrics_export_port):  # Ray would time out starting, without saying why
            raise RunError(
                f"Ray's metrics export port {metrics_export_port} is in use; "
                "pick another with --ray-metrics-port (0 = any free port)"
            )
        local["_metrics_export_port"] = metrics_export_port
    try:
        ray.init(
            address=address or "local",  # "local": a new Ray of our own, even if another runs here
            namespace=NAMESPACE,
            include_dashboard=False,
            # quiet: not even Ray 2.60's start-up notice that token authentication is on
            logging_level=logging.WARNING if ray_logs else logging.ERROR,
            log_to_driver=ray_logs,
            runtime_env=runtime_env,
            **local,
        )
    except Exception as exc:
        first = first_line(exc)
        hint = (
            " (a cluster started with `ray start` uses token auth in Ray 2.60: run with"
            " RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
            if address
            else ""
        )
        raise RunError(
            f"cannot {'join Ray at ' + address if address else 'start Ray'}: {first}{hint}"
        ) from None
    SHIPPED.update((runtime_env or {}).get("py_modules", []))
    return True


def disconnect_ray() -> None:
    """Shut down the Ray this process started (``connect_ray`` returned True)."""
    import ray

    ray.shutdown()
    SHIPPED.clear()  # a later Ray knows nothing of it


def ray_metrics_target() -> str:
    """``host:port`` of this node's Ray metrics export endpoint (what Prometheus scrapes)."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == me)
    return f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    log.warning("timed out waiting for %s after %.0fs", what, timeout_s)
    return False
