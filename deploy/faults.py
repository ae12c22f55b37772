"""Process faults a scenario injects while it runs (``faults:`` in its YAML), and what became of them.

Delivery faults (bursts, duplicates, malformed records, ...) belong to the stream (``stream.chaos``);
these kill a running part of the system. Positions are stream positions, so a timeline means the
same at any rate: the runner kills the target once the learner has consumed that far.

- ``learner``: the learner actor's process dies; Ray restarts it and it resumes from its checkpoint.
  Recovered when the restarted learner trains past the position it resumed from.
- ``replica``: one Serve replica's process dies; Serve's controller starts a replacement, which loads
  the served version before it takes traffic. Recovered when a new replica has acknowledged the
  current version.
- ``registry``: the registry actor's process dies; Ray restarts it and it replays its journal
  (``DIR/registry``). Replicas' long polls, acknowledgements and the learner's publication in flight
  are retried by Ray against the new process. Recovered when the new process answers with every
  version it had, every live replica serves its current generation, and a candidate has been judged
  since (or the stream ended).
- ``evaluator``: the evaluator actor's process dies; Ray restarts it and it rebuilds its scores and
  metrics from the registry before it reopens the scrape endpoint (same port). Recovered when the new
  process has scored every version that existed at the kill.

Faults fire one at a time: the next waits (past its position if need be) until the last recovered.

>>> Kill.model_validate({"target": "learner", "at": 800}).kind
'kill'
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class Kill(BaseModel):
    """Kill ``target`` once the stream reaches position ``at``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kill"] = "kill"
    target: Literal["learner", "replica", "registry", "evaluator"]
    at: int = Field(ge=0, description="stream position (records consumed) at which to kill")


@dataclass
class Injector:
    """Fires due faults as the learner's progress passes them; times each recovery.

    ``learner``/``evaluator`` are those actors and ``stack`` the run's ServingStack (set by the
    runner once they exist).
    """

    faults: list[Kill]
    learner: Any = None
    evaluator: Any = None
    stack: Any = None
    done: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = sorted(self.faults, key=lambda f: f.at)

    def step(self, progress: dict[str, Any]) -> None:
        """Call with each progress poll: notes recoveries, then kills what is due (one per call)."""
        for row in self.done:
            if row["recovered_after_s"] is None and self._recovered(row, progress):
                row["recovered_after_s"] = time.time() - row["killed_at"]
                log.warning("%s recovered after %.2fs", row["target"], row["recovered_after_s"])
        settled = all(r["recovered_after_s"] is not None for r in self.done)  # one fault at a time
        if settled and self.faults and progress["offset"] >= self.faults[0].at and not progress["done"]:
            f = self.faults.pop(0)
            row = {"kind": f.kind, "target": f.target, "at": f.at, "offset": progress["offset"]}
            row |= self._kill(f, progress)  # sets killed_at: when the kill was sent
            row |= {"recovered_after_s": None}
            self.done.append(row)
            log.warning("fault: killed the %s at offset %d", f.target, progress["offset"])

    def wait_recovered(self, progress: Any, timeout_s: float) -> bool:
        """After the stream: keep checking until every fault has recovered (or ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while any(r["recovered_after_s"] is None for r in self.done):
            if time.monotonic() > deadline:
                log.warning(
                    "faults not recovered after %.0fs: %s", timeout_s, [r["target"] for r in self.done]
                )
                return False
            self.step(progress())
            time.sleep(0.25)
        return True

    def _kill(self, f: Kill, progress: dict[str, Any]) -> dict[str, Any]:
        import ray

        if f.target == "learner":
            ray.kill(self.learner, no_restart=False)
            return {"restarts_before": progress["restarts"], "killed_at": time.time()}
        if f.target == "registry":
            registry = self.stack.registry
            state = ray.get(registry.state.remote())
            decisions = len(ray.get(registry.decisions.remote()))
            ray.kill(registry, no_restart=False)
            return {
                "killed_at": time.time(),
                "boot_before": state["boot"],
                "latest_before": state["latest"],
                "decisions_before": decisions,
            }
        if f.target == "evaluator":
            status = ray.get(self.evaluator.status.remote())
            latest = ray.get(self.stack.registry.state.remote())["latest"]
            ray.kill(self.evaluator, no_restart=False)
            return {"killed_at": time.time(), "boot_before": status["boot"], "latest_before": latest}
        live = self.stack.live_replicas()
        if not live:
            raise RuntimeError(f"no replica of application {self.stack.app_name!r} to kill")
        before = sorted(live)
        replica = ray.get_actor(live[before[0]], namespace="serve")
        where: Any = ray.get(replica.__ray_call__.remote(_whereabouts))
        pid, host = int(where[0]), str(where[1])
        ray.kill(replica, no_restart=True)
        killed_at = time.time()
        gone = _process_gone_at(pid) if host == socket.gethostname() else _confirmed_dead(replica)
        return {
            "killed_at": killed_at,
            "replica": before[0],
            "replicas_before": before,
            "dead_after_s": gone - killed_at,
        }

    def _recovered(self, row: dict[str, Any], p: dict[str, Any]) -> bool:
        import ray

        if row["target"] == "learner":  # restarted since the kill, and past where it resumed
            moved = p["resumed_from"] is not None and p["offset"] > p["resumed_from"]
            return bool(p["restarts"] > row["restarts_before"] and (p["done"] or moved))
        registry = self.stack.registry
        if row["target"] == "evaluator":  # a new process that has scored everything there was
            status = ray.get(self.evaluator.status.remote())
            return bool(status["boot"] != row["boot_before"] and status["evaluated"] >= row["latest_before"])
        if row["target"] == "registry":
            state = ray.get(registry.state.remote())
            judged = len(ray.get(registry.decisions.remote())) > row["decisions_before"] or p["done"]
            back = state["boot"] != row["boot_before"] and state["latest"] >= row["latest_before"]
            return bool(back and judged and self.stack.replicas_current())
        generation = ray.get(registry.state.remote())["generation"]
        acked = ray.get(registry.replica_generations.remote())
        new = [r for r, g in acked.items() if r not in row["replicas_before"] and g >= generation]
        if not new:
            return False
        row["replacement"] = new[0]
        return True


def _whereabouts(actor: Any) -> tuple[int, str]:
    """Run inside an actor (``__ray_call__``): its process id and host."""
    return os.getpid(), socket.gethostname()


def _process_gone_at(pid: int, timeout_s: float = 10.0) -> float:
    """Unix time at which process ``pid`` on this machine has exited (or is a zombie). ``ray.kill``
    only sends the order: the process, and the HTTP server in it, goes tens of ms later, and
    requests can still reach it until then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.002)
    return time.time()


def _confirmed_dead(actor: Any, timeout_s: float = 10.0) -> float:
    """Unix time at which Ray reports ``actor`` dead: for a replica on another machine, where its
    process cannot be watched (Ray may report it a little before the process is gone)."""
    import ray
    from ray.exceptions import RayActorError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=1.0)
        except RayActorError:
            return time.time()
        except ray.exceptions.GetTimeoutError:
            continue
        time.sleep(0.005)
    return time.time()


def requests_around(fault: dict[str, Any], samples: list[list[Any]]) -> dict[str, int]:
    """Requests in flight while ``fault`` struck, and failed requests from then until it recovered.

    In flight: running at some moment between the kill order (``killed_at``) and the process being
    gone (``dead_after_s`` later, replicas only; 0 otherwise): those could reach the dying process.
    ``samples`` rows are the load generator's [sent unix time, latency ms, status, version, replica].

    >>> fault = {"killed_at": 10.0, "dead_after_s": 0.05, "recovered_after_s": 2.0}
    >>> rows = [[9.9, 200.0, 0], [10.02, 5.0, 500], [10.2, 5.0, 200], [11.0, 5.0, 500]]
    >>> requests_around(fault, rows)
    {'in_flight': 2, 'failed': 3}
    """
    t = fault["killed_at"]
    dead = t + (fault.get("dead_after_s") or 0.0)
    until = t + (fault["recovered_after_s"] or 0.0)
    in_flight = sum(1 for s in samples if s[0] <= dead and t <= s[0] + s[1] / 1e3)
    failed = sum(1 for s in samples if s[2] != 200 and s[0] + s[1] / 1e3 >= t and s[0] <= until)
    return {"in_flight": in_flight, "failed": failed}
