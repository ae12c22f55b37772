"""The promotion gate on real split-digits tasks: integrity checks and the forgetting budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
import torch

from olsim.learner.gate import Gate, GateConfig
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot
from olsim.serving.registry import Registry
from olsim.stream.tasks import Task

SPEC = ModelSpec()


@pytest.fixture
def tasks(digit_tasks: list[Task]) -> list[Task]:
    return digit_tasks


@pytest.fixture
def snaps(gate_snapshots: dict[str, Snapshot]) -> dict[str, Snapshot]:
    return gate_snapshots


def test_a_candidate_that_forgets_beyond_the_budget_is_rejected(
    tasks: list[Task], snaps: dict[str, Snapshot]
) -> None:
    gate = Gate(tasks, SPEC, GateConfig(forgetting_budget=0.1))
    served = gate.scores(snaps["task0"])
    assert served[0] > 0.95
    naive = gate.check(snaps["naive1"], served)
    assert (naive.accepted, naive.reason) == (False, "forgetting_budget")
    assert naive.old_drop is not None and naive.old_drop > 0.5 and "budget 0.100" in naive.detail
    joint = gate.check(snaps["joint1"], served)
    assert (joint.accepted, joint.reason) == (True, "passed")
    assert joint.old_drop is not None and joint.old_drop <= 0.1
    off = Gate(tasks, SPEC, GateConfig(mode="off")).check(snaps["naive1"], served)
    assert (off.accepted, off.reason, off.old_drop) == (True, "gate_off", naive.old_drop)


def test_a_gain_on_one_old_task_does_not_pay_for_forgetting_another(
    tasks: list[Task], train: Callable[[torch.nn.Module, list[Task]], torch.nn.Module]
) -> None:
    """Served knows task 0 only; the candidate (learning task 2) knows task 1 only: mean old-task
    accuracy is unchanged, yet task 0 is forgotten."""
    gate = Gate(tasks, SPEC, GateConfig(forgetting_budget=0.1))
    only1 = Snapshot.from_model(train(build_model(SPEC, seed=1), tasks[1:2]), task=2)
    decision = gate.check(only1, served=(1.0, 0.0, 0.0))
    assert (decision.accepted, decision.reason) == (False, "forgetting_budget")
    assert decision.old_drop == pytest.approx(0.5, abs=0.02)


def test_when_a_task_comes_back_the_old_tasks_are_the_others_met(
    tasks: list[Task], train: Callable[[torch.nn.Module, list[Task]], torch.nn.Module]
) -> None:
    """Back on task 0 after task 1: task 1 is the old task (not "tasks before 0", which is none)."""
    gate = Gate(tasks, SPEC, GateConfig(forgetting_budget=0.1))
    only0 = train(build_model(SPEC, seed=1), tasks[:1])
    back = gate.check(Snapshot.from_model(only0, task=0, seen=2), served=(1.0, 1.0, 0.0))
    assert (back.accepted, back.reason) == (False, "forgetting_budget") and "over 1 task(s)" in back.detail
    legacy = gate.check(Snapshot.from_model(only0, task=0), served=(1.0, 1.0, 0.0))  # no `seen`: none old
    assert legacy.accepted and legacy.old_drop is None


def test_broken_candidates_are_rejected_even_with_the_gate_off(tasks: list[Task]) -> None:
    gate = Gate(tasks, SPEC, GateConfig(mode="off"))
    model = build_model(SPEC, seed=0)
    with torch.no_grad():
        model.get_parameter("fc1.weight")[3, 5] = float("nan")
    nan = gate.check(Snapshot.from_model(model), None)
    assert (nan.accepted, nan.reason, nan.detail) == (False, "non_finite", "fc1.weight: 1 non-finite values")
    wide = gate.check(Snapshot.from_model(build_model(ModelSpec(hidden=128), seed=0)), None)
    assert (wide.accepted, wide.reason) == (False, "shape_mismatch")
    tampered = Snapshot.from_model(build_model(SPEC, seed=0))
    tampered.tensors["fc1.bias"][0] += 1.0
    assert gate.check(tampered, None).reason == "checksum"
    inf_extra = Snapshot.from_model(build_model(SPEC, seed=0), extras={"knn.x": np.full((2, 64), np.inf)})
    assert gate.check(inf_extra, None).reason == "non_finite"


def test_registry_behind_the_gate_keeps_serving_the_last_good_version(
    tasks: list[Task], snaps: dict[str, Snapshot]
) -> None:
    async def scenario() -> tuple[list[int | None], int, list[str]]:
        reg = Registry(gate=Gate(tasks, SPEC, GateConfig(forgetting_budget=0.1)))
        out = [(await reg.publish(snaps[k])).version for k in ("task0", "naive1", "joint1")]
        return out, reg.served, [d.reason for d in await reg.decisions()]

    versions, served, reasons = asyncio.run(scenario())
    assert versions == [1, None, 2] and served == 2
    assert reasons == ["passed", "forgetting_budget", "passed"]
