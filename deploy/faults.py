"""Process faults a scenario injects while it runs (``faults:`` in its YAML), and what became of them.

Delivery faults (bursts, duplicates, malformed records, ...) belong to the stream (``stream.chaos``);
these kill a running part of the system. Positions are stream positions, so a timeline means the
same at any rate: the runner kills the target once the learner has consumed that far.

>>> Kill.model_validate({"target": "learner", "at": 800}).kind
'kill'
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class Kill(BaseModel):
    """Kill ``target`` (its process dies; Ray restarts it) once the stream reaches position ``at``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kill"] = "kill"
    target: Literal["learner"]
    at: int = Field(ge=0, description="stream position (records consumed) at which to kill")


@dataclass
class Injector:
    """Fires due faults as the learner's progress passes them; times each recovery."""

    faults: list[Kill]
    done: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = sorted(self.faults, key=lambda f: f.at)

    def step(self, progress: dict[str, Any], learner: Any) -> None:
        """Call with each progress poll: kills what is due, notes recoveries."""
        import ray

        for row in self.done:
            if row["recovered_after_s"] is None and self._recovered(row, progress):
                row["recovered_after_s"] = time.time() - row["killed_at"]
                log.warning("learner recovered after %.2fs", row["recovered_after_s"])
        while self.faults and progress["offset"] >= self.faults[0].at and not progress["done"]:
            f = self.faults.pop(0)
            ray.kill(learner, no_restart=False)
            self.done.append(
                {
                    "kind": f.kind,
                    "target": f.target,
                    "at": f.at,
                    "offset": progress["offset"],
                    "killed_at": time.time(),
                    "restarts_before": progress["restarts"],
                    "recovered_after_s": None,
                }
            )
            log.warning("fault: killed the %s at offset %d", f.target, progress["offset"])
            return  # one at a time: the next waits for a progress report from the restarted learner

    @staticmethod
    def _recovered(row: dict[str, Any], p: dict[str, Any]) -> bool:
        """Back and training: restarted since the kill, and past the position it resumed from."""
        restarted = p["restarts"] > row["restarts_before"]
        return restarted and (
            p["done"] or (p["resumed_from"] is not None and p["offset"] > p["resumed_from"])
        )
