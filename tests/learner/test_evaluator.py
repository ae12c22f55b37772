from __future__ import annotations

import pytest
import torch

from olsim.learner.evaluator import Evaluator, VersionEval
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot, SnapshotError
from olsim.stream.tasks import build_tasks


def _fit(model: torch.nn.Module, tasks: list, upto: int) -> None:
    """Train only on task ``upto``: a quick way to make a model that knows one task."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(tasks[upto].train.x), torch.from_numpy(tasks[upto].train.y)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_matrix_rows_come_from_task_end_versions_and_forgetting_is_tracked() -> None:
    tasks = build_tasks("split-digits", n_tasks=2, seed=0)
    ev = Evaluator(tasks)
    model = build_model(ModelSpec(), seed=0)
    ev.set_baseline(Snapshot.from_model(model))
    _fit(model, tasks, 0)
    ev.record(1, Snapshot.from_model(model, task=0, task_end=False, step=1), 0.0)
    ev.record(2, Snapshot.from_model(model, task=0, task_end=True, step=2), 0.0)
    _fit(model, tasks, 1)  # naive: forgets task 0 entirely (class-incremental head)
    ev.record(3, Snapshot.from_model(model, task=1, task_end=True, step=3), 0.0)
    r = ev.matrix()
    assert len(r) == 2 and r[0][0] > 0.9 and r[1][1] > 0.9 and r[1][0] < 0.1
    assert ev.forgetting_now(3)[0] == pytest.approx(r[0][0] - r[1][0])
    assert ev.forgetting_now(3)[1] == 0.0
    assert ev.backward_transfer_now(3) == pytest.approx(r[1][0] - r[0][0])
    s = ev.summary()
    assert s["acc"] == pytest.approx((r[1][0] + r[1][1]) / 2)
    assert s["bwt"] == pytest.approx(r[1][0] - r[0][0]) and r[1][0] - r[0][0] < -0.8
    assert s["fwt"] == pytest.approx(r[0][1] - ev.baseline[1])  # type: ignore[index]


def test_snapshot_rejects_tampering_and_wrong_shapes() -> None:
    snap = Snapshot.from_model(build_model(ModelSpec(), seed=0))
    snap.tensors["fc1.bias"][0] += 1.0
    with pytest.raises(SnapshotError, match="checksum"):
        snap.build()
    other = Snapshot.from_model(build_model(ModelSpec(hidden=8), seed=0))
    with pytest.raises(SnapshotError, match="shape"):
        other.load_into(build_model(ModelSpec(), seed=0))


def test_task_incremental_evaluation_masks_to_the_task_classes() -> None:
    tasks = build_tasks("split-digits", n_tasks=2, seed=0)
    ev = Evaluator(tasks)
    assert ev.has_task_il
    model = build_model(ModelSpec(), seed=0)
    c0, _c1 = tasks[0].classes
    other = tasks[1].classes[0]
    with torch.no_grad():  # a head that always says `other`, and prefers c0 over c1 among task 0's pair
        model.get_parameter("fc2.weight").zero_()
        model.get_parameter("fc2.bias").zero_()
        model.get_parameter("fc2.bias")[other] = 100.0
        model.get_parameter("fc2.bias")[c0] = 10.0
    class_il, task_il = ev.evaluate(Snapshot.from_model(model))
    assert task_il is not None
    assert class_il[0] == 0.0
    assert task_il[0] == pytest.approx(float((tasks[0].test.y == c0).mean()))
    assert class_il[1] == task_il[1] == pytest.approx(float((tasks[1].test.y == other).mean()))


def test_domain_incremental_tasks_have_no_task_il_view() -> None:
    ev = Evaluator(build_tasks("permuted-digits", n_tasks=2, seed=0))
    assert not ev.has_task_il
    assert ev.evaluate(Snapshot.from_model(build_model(ModelSpec(), seed=0)))[1] is None


def test_rows_follow_segments_and_bwt_is_one_definition_when_a_task_comes_back() -> None:
    from olsim.learner.metrics import summarize

    ev = Evaluator(build_tasks("split-digits", n_tasks=2, seed=0), segments=[0, 1, 0])
    for v, (seg, task, seen) in enumerate([(0, 0, 1), (1, 1, 2), (2, 0, 2)], start=1):
        snap = Snapshot.from_model(
            build_model(ModelSpec(), seed=v), task=task, task_end=True, segment=seg, seen=seen, step=v
        )
        ev.record(v, snap, published_at=float(v))
    m = ev.matrix()
    assert len(m) == 3 and m[2] == ev.results[3].accuracies
    assert ev.summary() == summarize(m, None, [0, 1, 0])
    assert ev.results[3].seen == ev.results[3].accuracies[:2]  # both tasks met, though on task 0
    assert ev.backward_transfer_now(3) == pytest.approx(m[2][1] - m[1][1])  # task 1, last learnt in seg 1
    # the last segment relearns task 0: both leave it out, the gauge (version 3) and the report
    assert ev.summary()["bwt"] == pytest.approx(ev.backward_transfer_now(3))
    assert ev.backward_transfer_now(1) is None  # nothing to look back on


def _scores(version: int, task: int, accuracies: list[float], task_end: bool = False) -> VersionEval:
    return VersionEval(version, 0.0, task, task_end, version, accuracies, segment=task, seen_tasks=task + 1)


def test_live_forgetting_takes_the_best_of_every_earlier_version() -> None:
    ev = Evaluator(build_tasks("split-digits", n_tasks=3, seed=0))
    # version 1 (on task 0) happens to score 0.9 on task 1; version 2 learns task 1 to only 0.5
    for r in (_scores(1, 0, [0.9, 0.9, 0.1]), _scores(2, 1, [0.6, 0.5, 0.3]), _scores(3, 2, [0.5, 0.4, 0.9])):
        ev.results[r.version] = r
    assert ev.forgetting_now(3) == [pytest.approx(0.4), pytest.approx(0.5), 0.0]


def test_a_segment_that_ends_with_nothing_served_still_gets_its_row() -> None:
    tasks = build_tasks("split-digits", n_tasks=3, seed=0)
    ev = Evaluator(tasks)
    ev.set_baseline(Snapshot.from_model(build_model(ModelSpec(), seed=0)))
    ev.rejected_segment_end(0, served=0)  # the gate refused the first task end: users had nothing
    ev.fill_rows()
    for v, task in ((1, 1), (2, 2)):
        snap = Snapshot.from_model(build_model(ModelSpec(), seed=v), task=task, task_end=True, segment=task)
        ev.record(v, snap, published_at=float(v))
    m = ev.matrix()
    assert len(m) == 3 and m[0] == ev.baseline and ev.unserved_rows == [0]
    assert ev.summary()["acc"] is not None and ev.summary()["bwt"] is not None


def test_a_rejected_segment_end_takes_the_served_versions_row_once_it_is_scored() -> None:
    ev = Evaluator(build_tasks("split-digits", n_tasks=2, seed=0))
    ev.rejected_segment_end(0, served=1)
    ev.fill_rows()
    assert ev.matrix() == [] and ev.pending == [(0, 1)]  # version 1 not scored yet
    ev.record(1, Snapshot.from_model(build_model(ModelSpec(), seed=0), task=0, step=1), published_at=0.0)
    ev.fill_rows()
    assert ev.matrix() == [ev.results[1].accuracies] and ev.pending == []
