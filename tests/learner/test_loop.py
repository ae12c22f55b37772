from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from olsim.learner import checkpoint
from olsim.learner.config import LearnerConfig
from olsim.learner.loop import LearnerLoop
from olsim.learner.snapshot import Snapshot
from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.registry import STRATEGIES
from olsim.stream.spec import StreamSpec


class Recorder(Strategy):
    """Counts the boundary hooks it receives (registered under an existing kind for the test)."""

    name = "naive"
    calls: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = []

    def on_task_end(self, task: int, model: nn.Module) -> None:
        self.calls.append(f"end{task}")

    def on_drift(self, model: nn.Module) -> None:
        self.calls.append("drift")


def _loop(boundaries: str, monkeypatch: Any) -> tuple[LearnerLoop, list[Snapshot]]:
    monkeypatch.setitem(STRATEGIES, "naive", (STRATEGIES["naive"][0], Recorder))
    spec = StreamSpec(tasks="split-digits", n_tasks=3, epochs=10, rate=None)
    published: list[Snapshot] = []

    def publish(snap: Snapshot) -> int:
        published.append(snap)
        return len(published)

    config = LearnerConfig.model_validate({"boundaries": boundaries})
    loop = LearnerLoop(spec.build(seed=0), config, seed=0, publish=publish)
    loop.run()
    return loop, published


def test_announced_boundaries_reach_the_strategy(monkeypatch: Any) -> None:
    loop, published = _loop("announced", monkeypatch)
    assert loop.trainer.strategy.calls == ["end0", "end1", "end2"]  # type: ignore[attr-defined]
    assert [s.meta["task"] for s in published if s.meta["task_end"]] == [0, 1, 2]
    assert loop.state.drifts == []


def test_detected_boundaries_fire_on_drift_near_each_switch(monkeypatch: Any) -> None:
    loop, published = _loop("detected", monkeypatch)
    calls = loop.trainer.strategy.calls  # type: ignore[attr-defined]
    assert "end0" not in calls and calls.count("drift") == len(loop.state.drifts) == 2
    truth = [b for _, b in loop.stream.segment_bounds()][:-1]
    for alarm, boundary in zip(loop.state.drifts, truth, strict=True):
        assert 0 <= alarm - boundary <= 5 * 32  # within a few batches of the switch
    # evaluation still gets one task-end version per task: the accuracy-matrix protocol knows the tasks
    assert [s.meta["task"] for s in published if s.meta["task_end"]] == [0, 1, 2]


def test_detected_mode_trains_the_same_stream(monkeypatch: Any) -> None:
    a, _ = _loop("announced", monkeypatch)
    b, _ = _loop("detected", monkeypatch)
    assert a.trainer.samples == b.trainer.samples == len(a.stream)
    for pa, pb in zip(a.trainer.model.parameters(), b.trainer.model.parameters(), strict=True):
        assert torch.equal(pa, pb)  # naive ignores both hooks: identical models


def test_lag_and_loss_for_the_heartbeat() -> None:
    spec = StreamSpec(tasks="split-digits", n_tasks=1, epochs=1, rate=None)
    unpaced = LearnerLoop(spec.build(seed=0), LearnerConfig(), seed=0, publish=lambda s: 1)
    assert unpaced.recent_loss() is None and unpaced.lag_s() is None
    unpaced.run()
    loss = unpaced.recent_loss()
    assert unpaced.lag_s() is None and loss is not None and 0 < loss < 5  # unpaced: no arrival times

    paced_spec = spec.model_copy(update={"rate": 4000.0})  # ~0.1 s of stream
    paced = LearnerLoop(paced_spec.build(seed=0), LearnerConfig(), seed=0, publish=lambda s: 1)
    paced.run()
    assert paced.lag_s() == 0.0  # everything trained
    paced.next_due = 0.0  # as if the stream's first event were still waiting
    lag = paced.lag_s()
    assert lag is not None and lag > 0.05


def _chaotic(chaos: list[dict[str, Any]]) -> LearnerLoop:
    spec = StreamSpec(tasks="split-digits", n_tasks=3, epochs=2, rate=None, chaos=chaos)
    loop = LearnerLoop(spec.build(seed=0), LearnerConfig(publish_every=1000), seed=0, publish=lambda s: 1)
    loop.run()
    return loop


def test_redelivered_events_are_trained_once() -> None:
    loop = _chaotic([{"kind": "duplicates", "at": 100, "events": 600, "fraction": 0.5, "delay": 10}])
    clean = loop.stream.clean_ids()
    assert set(loop.state.ledger) == clean and set(loop.state.ledger.values()) == {1}
    assert loop.state.duplicates == len(loop.stream) - len(clean) > 250
    assert loop.trainer.samples == len(clean)


def test_late_events_do_not_reopen_an_ended_task() -> None:
    bound = (
        StreamSpec(tasks="split-digits", n_tasks=3, epochs=2, rate=None).build(seed=0).segment_bounds()[0][1]
    )
    loop = _chaotic([{"kind": "reorder", "at": bound - 100, "events": 200, "block": 64}])
    assert loop.state.tasks_done == [0, 1, 2]
    assert set(loop.state.ledger) == loop.stream.clean_ids() and set(loop.state.ledger.values()) == {1}


def test_malformed_records_are_dead_lettered_and_training_goes_on() -> None:
    loop = _chaotic(
        [{"kind": "malformed", "at": 50, "count": 12}, {"kind": "malformed", "at": 2500, "count": 6}]
    )
    assert sum(loop.stream.dead_letter_counts.values()) == 18
    assert set(loop.state.ledger) == loop.stream.clean_ids() and loop.state.offset == len(loop.stream)
    assert [k for _, k, _ in loop.state.chaos_seen] == ["malformed", "malformed"]


def test_a_clean_stream_trains_exactly_as_before() -> None:
    """No chaos: same batches, same model as the plain TaskStream path (bench == run relies on it)."""
    spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=1, rate=None)
    a = LearnerLoop(spec.build(seed=0), LearnerConfig(publish_every=1000), seed=0, publish=lambda s: 1)
    far = StreamSpec(
        tasks="split-digits", n_tasks=2, epochs=1, rate=None, chaos=[{"kind": "reorder", "at": 10**6}]
    )
    b = LearnerLoop(
        far.build(seed=0),
        LearnerConfig(publish_every=1000),
        seed=0,
        publish=lambda s: 1,
    )
    a.run()
    b.run()
    for pa, pb in zip(a.trainer.model.parameters(), b.trainer.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_a_learner_resumed_from_its_checkpoint_ends_exactly_where_an_uninterrupted_one_does(
    tmp_path: Path,
) -> None:
    """Crash mid-stream (after some checkpoints), resume in a new loop from the last checkpoint:
    the ledger holds every event once and the model is bit-identical to a run that never crashed."""
    spec = StreamSpec(
        tasks="split-digits",
        n_tasks=3,
        epochs=2,
        rate=None,
        chaos=[
            {"kind": "duplicates", "at": 500, "events": 400},
            {"kind": "malformed", "at": 900, "count": 5},
        ],
    )
    config = LearnerConfig.model_validate({"publish_every": 3, "strategy": {"kind": "replay"}})
    ref = LearnerLoop(spec.build(seed=0), config, seed=0, publish=lambda s: 1)
    ref.run()

    class Crash(Exception):
        pass

    path = tmp_path / "learner.npz"
    published = 0

    def publish_then_crash(snap: Snapshot) -> int:
        nonlocal published
        published += 1
        if published == 9:  # after 8 checkpoints, before the 9th
            raise Crash
        return published

    def keep(loop: LearnerLoop) -> None:
        checkpoint.save(path, loop.state_dict())

    first = LearnerLoop(spec.build(seed=0), config, seed=0, publish=publish_then_crash, checkpoint=keep)
    with pytest.raises(Crash):
        first.run()
    second = LearnerLoop(spec.build(seed=0), config, seed=0, publish=lambda s: 1, checkpoint=keep)
    second.load_state_dict(checkpoint.load(path))
    assert (
        0 < second.state.offset < first.state.offset < len(second.stream)
    )  # resumes before where it crashed
    second.run()
    assert second.state.ledger == ref.state.ledger and set(second.state.ledger.values()) == {1}
    assert second.state.tasks_done == ref.state.tasks_done == [0, 1, 2]
    assert second.state.duplicates == ref.state.duplicates and second.trainer.steps == ref.trainer.steps
    assert second.stream.dead_letter_counts == ref.stream.dead_letter_counts
    for a, b in zip(second.trainer.model.parameters(), ref.trainer.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_gradual_drift_is_trained_once_per_event_and_ends_tasks_in_order(monkeypatch: Any) -> None:
    monkeypatch.setitem(STRATEGIES, "naive", (STRATEGIES["naive"][0], Recorder))
    spec = StreamSpec.model_validate(
        {
            "tasks": "split-digits",
            "n_tasks": 3,
            "epochs": 2,
            "rate": None,
            "drift": {"shape": "gradual", "width": 200},
        }
    )
    ends: list[int] = []

    def publish(snap: Snapshot) -> int:
        ends.append(int(snap.meta["task_end"]))
        return len(ends)

    loop = LearnerLoop(spec.build(seed=0), LearnerConfig(), seed=0, publish=publish)
    loop.run()
    calls = loop.trainer.strategy.calls  # type: ignore[attr-defined]
    assert loop.state.tasks_done == [0, 1, 2] and calls == ["end0", "end1", "end2"] and sum(ends) == 3
    assert sorted(loop.state.ledger) == sorted(loop.stream.clean_ids()) and set(
        loop.state.ledger.values()
    ) == {1}
    assert loop.trainer.samples == len(loop.stream) and loop.state.duplicates == 0
    # small batches where the tasks interleave: more steps than the abrupt stream takes
    abrupt = LearnerLoop(
        StreamSpec(tasks="split-digits", n_tasks=3, epochs=2, rate=None).build(seed=0),
        LearnerConfig(),
        seed=0,
        publish=lambda s: 1,
    )
    abrupt.run()
    assert loop.trainer.steps > abrupt.trainer.steps


def test_a_recurring_task_ends_every_segment_and_trains_each_event_once(monkeypatch: Any) -> None:
    monkeypatch.setitem(STRATEGIES, "naive", (STRATEGIES["naive"][0], Recorder))
    spec = StreamSpec(tasks="split-digits", n_tasks=3, epochs=1, rate=None, sequence=[0, 1, 0, 2])
    metas: list[dict[str, Any]] = []

    def publish(snap: Snapshot) -> int:
        metas.append(dict(snap.meta))
        return len(metas)

    loop = LearnerLoop(spec.build(seed=0), LearnerConfig(), seed=0, publish=publish)
    loop.run()
    assert loop.state.tasks_done == [0, 1, 0, 2] and loop.state.seen == 3
    assert loop.trainer.strategy.calls == ["end0", "end1", "end0", "end2"]  # type: ignore[attr-defined]
    ends = [(m["segment"], m["task"], m["seen"]) for m in metas if m["task_end"]]
    assert ends == [(0, 0, 1), (1, 1, 2), (2, 0, 2), (3, 2, 3)]
    assert len(loop.state.ledger) == len(loop.stream) and set(loop.state.ledger.values()) == {1}
