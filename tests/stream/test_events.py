from __future__ import annotations

import numpy as np
import pytest

from olsim.stream.events import TaskStream
from olsim.stream.tasks import build_tasks


@pytest.fixture(scope="module")
def stream() -> TaskStream:
    return TaskStream(build_tasks("split-digits", n_tasks=3, seed=0), epochs=2, seed=5, rate=1000.0)


def test_offsets_contiguous_ids_unique(stream: TaskStream) -> None:
    events = list(stream.events())
    assert [e.offset for e in events] == list(range(len(stream)))
    assert len({e.id for e in events}) == len(events)
    assert [e.t for e in events[:3]] == [0.0, 0.001, 0.002]


def test_tasks_arrive_in_order_each_epoch_a_permutation(stream: TaskStream) -> None:
    events = list(stream.events())
    for task, (a, b) in enumerate(stream.segment_bounds()):
        chunk = events[a:b]
        assert {e.task for e in chunk} == {task}
        n = len(stream.tasks[task].train)
        first, second = chunk[:n], chunk[n:]
        assert sorted(e.id.split("-n")[1] for e in first) == sorted(e.id.split("-n")[1] for e in second)
        assert [e.y for e in first] != [e.y for e in second] or n < 3


@pytest.mark.parametrize("start", [0, 1, 217, 436, 437, 900])
def test_replay_from_any_offset_matches_full_stream(stream: TaskStream, start: int) -> None:
    full = list(stream.events())
    replayed = list(stream.events(start=start))
    assert len(replayed) == len(full) - start
    for a, b in zip(full[start:], replayed, strict=True):
        assert (a.id, a.offset, a.task, a.y) == (b.id, b.offset, b.task, b.y)
        np.testing.assert_array_equal(a.x, b.x)


def test_stop_bounds_and_seed_changes_order() -> None:
    tasks = build_tasks("split-digits", n_tasks=1, seed=0)
    a = [e.y for e in TaskStream(tasks, seed=1).events(stop=50)]
    b = [e.y for e in TaskStream(tasks, seed=2).events(stop=50)]
    assert len(a) == 50 and a != b


def test_bad_stream_args() -> None:
    tasks = build_tasks("split-digits", n_tasks=1, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        TaskStream(tasks, epochs=0)
    with pytest.raises(ValueError, match="rate"):
        TaskStream(tasks, rate=0)
    with pytest.raises(ValueError, match="start"):
        next(TaskStream(tasks).events(start=-1))


@pytest.mark.parametrize(("start", "size"), [(0, 32), (5, 32), (430, 7), (436, 100), (0, 1)])
def test_batches_match_events(stream: TaskStream, start: int, size: int) -> None:
    events = list(stream.events(start=start))
    batches = list(stream.batches(size, start=start))
    flat = [(i, b.task, int(y)) for b in batches for i, y in zip(b.ids, b.y, strict=True)]
    assert flat == [(e.id, e.task, e.y) for e in events]
    for b in batches:
        assert 1 <= len(b) <= size and len(set(b.ids)) == len(b)
        first = next(e for e in events if e.offset == b.offset)
        np.testing.assert_array_equal(b.x[0], first.x)
    # a batch never spans a task boundary, and only a task's last batch may be short
    bounds = {b for _, b in stream.segment_bounds()}
    for b in batches:
        assert len(b) == size or b.offset + len(b) in bounds


@pytest.fixture(scope="module")
def gradual() -> TaskStream:
    return TaskStream(
        build_tasks("split-digits", n_tasks=3, seed=0), epochs=2, seed=5, rate=1000.0, blend=300
    )


def test_a_gradual_drift_blends_the_same_events_around_each_boundary(
    stream: TaskStream, gradual: TaskStream
) -> None:
    abrupt, blended = list(stream.events()), list(gradual.events())
    assert [e.offset for e in blended] == list(range(len(stream)))
    assert sorted(e.id for e in blended) == sorted(e.id for e in abrupt)  # same events, same ids
    for task in range(3):  # each task's own order is kept
        assert [e.id for e in blended if e.task == task] == [e.id for e in abrupt if e.task == task]
    for k, (start, _) in enumerate(stream.segment_bounds()[1:], start=1):
        window = blended[start - 150 : start + 150]
        assert {e.task for e in window} == {k - 1, k}
        share = [np.mean([e.task == k for e in window[q * 75 : (q + 1) * 75]]) for q in range(4)]
        assert share[0] < 0.3 and share[3] > 0.7 and share == sorted(share), share  # the new task fades in
    starts = [a for a, _ in stream.segment_bounds()[1:]]
    outside = [i for i in range(len(stream)) if all(abs(i - s + 0.5) > 150 for s in starts)]
    assert [blended[i].id for i in outside] == [abrupt[i].id for i in outside]


@pytest.mark.parametrize(("start", "size"), [(0, 32), (290, 32), (300, 5), (720, 64)])
def test_gradual_batches_hold_one_task_and_replay_from_any_offset(
    gradual: TaskStream, start: int, size: int
) -> None:
    full = list(gradual.events())
    batches = list(gradual.batches(size, start=start))
    flat = [(i, b.task, int(y)) for b in batches for i, y in zip(b.ids, b.y, strict=True)]
    assert flat == [(e.id, e.task, e.y) for e in full[start:]]
    assert all(1 <= len(b) <= size for b in batches) and len(batches) > (len(full) - start) / size


def test_drift_shape_is_validated() -> None:
    from pydantic import ValidationError

    from olsim.stream.spec import StreamSpec

    assert StreamSpec.model_validate({"drift": {"shape": "gradual", "width": 200}}).drift.width == 200
    with pytest.raises(ValidationError, match="width >= 2"):
        StreamSpec.model_validate({"drift": {"shape": "gradual"}})
    with pytest.raises(ValidationError, match="no width"):
        StreamSpec.model_validate({"drift": {"width": 10}})
    with pytest.raises(ValueError, match="blend"):
        TaskStream(build_tasks("split-digits", n_tasks=1, seed=0), blend=-1)


def test_a_task_that_comes_back_is_a_new_segment_with_fresh_event_ids() -> None:
    tasks = build_tasks("split-digits", n_tasks=2, seed=0)
    s = TaskStream(tasks, epochs=2, seed=5, segments=[0, 1, 0])
    n0, n1 = len(tasks[0].train), len(tasks[1].train)
    assert s.segment_bounds() == [(0, 2 * n0), (2 * n0, 2 * n0 + 2 * n1), (2 * n0 + 2 * n1, 4 * n0 + 2 * n1)]
    events = list(s.events())
    assert len({e.id for e in events}) == len(events) == len(s)  # ids stay unique
    back = events[2 * n0 + 2 * n1 :]
    assert {e.task for e in back} == {0} and {e.id.split("-")[2] for e in back} == {"e2", "e3"}
    # the same samples again, in fresh shuffles
    first = events[: 2 * n0]
    assert sorted(e.id.split("-n")[1] for e in back) == sorted(e.id.split("-n")[1] for e in first)
    batches = list(s.batches(100))
    assert [b.segment for b in batches if b.offset in {a for a, _ in s.segment_bounds()}] == [0, 1, 2]
    assert all(b.task == s.segments[b.segment] for b in batches)
    for start in (0, 2 * n0 + 2 * n1 - 3, 2 * n0 + 2 * n1 + 7):
        assert [e.id for e in s.events(start=start)] == [e.id for e in events[start:]]
    with pytest.raises(ValueError, match="segments"):
        TaskStream(tasks, segments=[0, 2])


def test_a_sequence_renumbers_tasks_by_first_appearance() -> None:
    from pydantic import ValidationError

    from olsim.stream.spec import StreamSpec

    spec = StreamSpec(tasks="split-digits", n_tasks=4, epochs=1, sequence=[2, 0, 2, 1])
    assert spec.order == [2, 0, 1, 3] and spec.segments == [0, 1, 0, 2]
    base = build_tasks("split-digits", n_tasks=4, seed=0)
    tasks = spec.build_tasks(seed=0)
    assert [t.name for t in tasks] == [base[i].name for i in (2, 0, 1, 3)]
    assert [t.index for t in tasks] == [0, 1, 2, 3]
    assert spec.build(seed=0).segments == [0, 1, 0, 2]
    for bad, msg in (([0, 4], "out of range"), ([1, 1], "twice in a row"), ([], "at least one")):
        with pytest.raises(ValidationError, match=msg):
            StreamSpec(tasks="split-digits", n_tasks=4, sequence=bad)
