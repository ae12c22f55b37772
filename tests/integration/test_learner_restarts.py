"""The learner actor on a real Ray: it holds at fault positions until released, and every restart
is counted, also two in a row before any checkpoint was written (it then starts over by itself)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olsim.deploy.run.actors import start_evaluator_actor, start_learner_actor, start_registry_actor
from olsim.deploy.run.cluster import get
from olsim.deploy.scenario.spec import Scenario, load_scenario


def _scenario() -> Scenario:
    s = load_scenario("synthetic")  # unpaced; a version only every 1000 steps: no checkpoint early on
    return s.model_copy(update={"learner": s.learner.model_copy(update={"publish_every": 1000})})


def _until(learner: Any, cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p: dict[str, Any] = get(learner.progress.remote())
        if cond(p):
            return p
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {p}")


def test_holds_and_restarts_before_the_first_checkpoint(ray_cluster: None, tmp_path: Path) -> None:
    import ray

    s = _scenario()
    registry = start_registry_actor(s, None, gate=False)
    evaluator = start_evaluator_actor(s, registry, "127.0.0.1", 0, tmp_path / "evaluator")
    ckpt = tmp_path / "checkpoints" / "learner.npz"
    learner = start_learner_actor(s, registry, evaluator, ckpt, holds=[64, 96])
    try:
        get(learner.start.remote())
        p = _until(learner, lambda p: p["held"] == 0, "the first hold")
        assert p["offset"] == 64 and p["restarts"] == 0 and not ckpt.exists()
        time.sleep(0.3)
        assert get(learner.progress.remote())["offset"] == 64  # it waits there

        ray.kill(learner, no_restart=False)  # Ray restarts it: no checkpoint yet, so from the start
        p = _until(learner, lambda p: p["restarts"] == 1 and p["held"] == 0, "a restart back at hold 0")
        assert p["resumed_from"] == 0 and p["offset"] == 64
        get(learner.release.remote(0))
        p = _until(learner, lambda p: p["held"] == 1, "the second hold")
        assert p["offset"] == 96 and not ckpt.exists()

        ray.kill(learner, no_restart=False)  # a second kill, still before any checkpoint: counted too
        _until(learner, lambda p: p["restarts"] == 2 and p["held"] == 0, "a second restart")
        get(learner.release.remote(0))
        _until(learner, lambda p: p["held"] == 1, "the second hold again")
        get(learner.release.remote(1))
        p = _until(learner, lambda p: p["done"], "the end of the stream")
        assert p["restarts"] == 2 and p["error"] is None and p["offset"] == p["total"]
        assert get(learner.stream_report.remote())["learner_restarts"] == 2
    finally:
        for actor in (learner, evaluator, registry):
            ray.kill(actor, no_restart=True)
