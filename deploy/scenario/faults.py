"""Process faults a scenario injects while it runs (``faults:`` in its YAML), and what became of them.

Delivery faults (bursts, duplicates, malformed records, ...) belong to the stream (``stream.chaos``);
these kill a running part of the system. Positions are stream positions, so a timeline means the
same at any rate and on any machine: the learner is given every fault's position and holds there
(after the batch that reaches it) until the injector has struck and releases it.

- ``learner``: the learner actor's process dies; Ray restarts it and it resumes from its checkpoint.
  Recovered when the restarted learner trains past the position it resumed from (or holds at a
  fault's position, which it can only reach by training).
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

Faults fire one at a time: the learner holds at the next position until the last fault recovered.
A learner restarted from a checkpoint before a fault's position holds there again; the injector
releases it at once (that fault has struck).

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
    """Strikes each fault when the learner holds at its position; times each recovery.

    ``learner``/``evaluator`` are those actors and ``stack`` the run's ServingStack (set by the
    runner once they exist). The learner must be started with :attr:`holds`.
    """

    faults: list[Kill]
    learner: Any = None
    evaluator: Any = None
    stack: Any = None
    done: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = sorted(self.faults, key=lambda f: f.at)
        self.pending = list(enumerate(self.faults))  # (hold index, fault) not struck yet

    @property
    def holds(self) -> list[int]:
        """The stream positions the learner holds at, in order (hold i is fault i)."""
        return [f.at for f in self.faults]

    def step(self, progress: dict[str, Any]) -> None:
        """Call with each progress poll: notes recoveries, then strikes the fault the learner holds
        at (once the last one recovered) or releases it from a hold already struck."""
        for row in self.done:
            if row["recovered_after_s"] is None and self._recovered(row, progress):
                row["recovered_after_s"] = time.time() - row["killed_at"]
                log.warning("%s recovered after %.2fs", row["target"], row["recovered_after_s"])
        held = progress.get("held")
        if held is None:
            return
        if any(row["index"] == held for row in self.done):  # a restarted learner, back at a struck hold
            self._release(held)
            return
        settled = all(r["recovered_after_s"] is not None for r in self.done)  # one fault at a time
        if settled and self.pending and self.pending[0][0] == held:
            index, f = self.pending.pop(0)
            row = {
                "index": index,
                "kind": f.kind,
                "target": f.target,
                "at": f.at,
                "offset": progress["offset"],
            }
            row |= self._kill(f, progress)  # sets killed_at: when the kill was sent
            row |= {"recovered_after_s": None}
            self.done.append(row)
            log.warning("fault: killed the %s at offset %d", f.target, progress["offset"])
            if f.target != "learner":  # (a killed learner comes back and is released then)
                self._release(index)

    def _release(self, index: int) -> None:
        import ray

        try:
            ray.get(self.learner.release.remote(index))
        except Exception as exc:  # the learner is restarting: it will hold there again
            log.info("release hold=%d error=%r", index, exc)

    def unfired(self) -> list[Kill]:
        """Faults that have not struck (the stream ended first, or the run was cut short)."""
        return [f for _, f in self.pending]

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
        if gone is None:
            log.warning("fault: the killed replica %s was not seen to die within 10 s", before[0])
        return {
            "killed_at": killed_at,
            "replica": before[0],
            "replicas_before": before,
            "dead_after_s": None if gone is None else gone - killed_at,  # None: never seen to die
        }

    def _recovered(self, row: dict[str, Any], p: dict[str, Any]) -> bool:
        import ray

        if row["target"] == "learner":  # restarted since the kill, and training again (or holding)
            moved = p["resumed_from"] is not None and p["offset"] > p["resumed_from"]
            running = p["done"] or moved or p.get("held") is not None
            return bool(p["restarts"] > row["restarts_before"] and running)
        registry = self.stack.registry
        if row["target"] == "evaluator":  # a new process that has scored everything there was
            status = ray.get(self.evaluator.status.remote())
            return bool(status["boot"] != row["boot_before"] and status["evaluated"] >= row["latest_before"])
        if row["target"] == "registry":
            state = ray.get(registry.state.remote())
            judged = len(ray.get(registry.decisions.remote())) > row["decisions_before"]
            judged = judged or p["done"] or p.get("held") is not None  # a held learner sends nothing
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


def _process_gone_at(pid: int, timeout_s: float = 10.0) -> float | None:
    """Unix time at which process ``pid`` on this machine has exited (or is a zombie), None if it
    is still there after ``timeout_s``. ``ray.kill`` only sends the order: the process, and the HTTP
    server in it, goes tens of ms later, and requests can still reach it until then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return time.time()
        except FileNotFoundError:
            return time.time()
        time.sleep(0.002)
    return None


def _confirmed_dead(actor: Any, timeout_s: float = 10.0) -> float | None:
    """Unix time at which Ray reports ``actor`` dead (None: not within ``timeout_s``): for a replica
    on another machine, where its process cannot be watched (Ray may report it a little before the
    process is gone)."""
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
    return None


def requests_around(fault: dict[str, Any], samples: list[list[Any]]) -> dict[str, Any]:
    """What the requests of the run's load saw from ``fault``'s kill order until it recovered.

    - ``failed``: failed requests whose span reaches into that window (until the end of the load
      if it never recovered);
    - ``in_flight_failed``: those of them whose own span overlaps [kill order, process gone]
      (``dead_after_s`` after the order; replicas only, an instant otherwise): they could have reached
      the dying process, and no client-side care saves them. None when the replica was never seen
      to die: then nothing can be excused;
    - ``failed_beyond_in_flight``: ``failed - in_flight_failed`` (None with it), what olsim promises 0 of;
    - ``retried``: requests in the window that were sent a second time.

    ``samples`` rows are the load generator's [sent unix time, latency ms, status, version, replica,
    rows, retried]. A request in flight that succeeded excuses nothing.

    >>> fault = {"killed_at": 10.0, "dead_after_s": 0.05, "recovered_after_s": 2.0}
    >>> rows = [[9.9, 200.0, 0], [9.95, 200.0, 200], [10.02, 5.0, 500], [11.0, 5.0, 500],
    ...         [11.5, 5.0, 200, 3, "a", 1, "keepalive_closed"], [13.0, 5.0, 500]]
    >>> requests_around(fault, rows)
    {'failed': 3, 'in_flight_failed': 2, 'failed_beyond_in_flight': 1, 'retried': 1}
    >>> requests_around(fault | {"dead_after_s": None}, rows)["failed_beyond_in_flight"] is None
    True
    """
    t = fault["killed_at"]
    recovered = fault.get("recovered_after_s")
    until = float("inf") if recovered is None else t + recovered
    replica = fault.get("target") == "replica" or "dead_after_s" in fault
    dead_after = fault.get("dead_after_s") if replica else 0.0

    def end(s: list[Any]) -> float:
        return float(s[0]) + float(s[1]) / 1e3

    window = [s for s in samples if end(s) >= t and s[0] <= until]
    failed = [s for s in window if s[2] != 200]
    retried = sum(1 for s in window if len(s) > 6 and s[6])
    if dead_after is None:
        return {
            "failed": len(failed),
            "in_flight_failed": None,
            "failed_beyond_in_flight": None,
            "retried": retried,
        }
    in_flight = sum(1 for s in failed if s[0] <= t + dead_after)
    return {
        "failed": len(failed),
        "in_flight_failed": in_flight,
        "failed_beyond_in_flight": len(failed) - in_flight,
        "retried": retried,
    }
