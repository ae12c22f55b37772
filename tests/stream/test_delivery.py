"""Delivery under chaos: what arrives, in which order, when, and what ingest refuses."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from pydantic import ValidationError

from olsim.stream.chaos import (
    DEFECTS,
    Burst,
    Chaos,
    Duplicates,
    LabelNoise,
    Malformed,
    Poison,
    Reorder,
    Stall,
)
from olsim.stream.delivery import Delivery
from olsim.stream.events import TaskStream
from olsim.stream.ingest import DEAD_LETTER_REASONS, DeadLetter, Ingest
from olsim.stream.spec import StreamSpec
from olsim.stream.tasks import build_tasks

TASKS = build_tasks("split-digits", n_tasks=2, seed=0)
CLEAN = TaskStream(TASKS, epochs=1, seed=0, rate=100.0)
N = len(CLEAN)


def _records(d: Delivery) -> list[dict]:
    return [d.record(i) for i in range(len(d))]


def test_no_chaos_delivers_the_clean_stream_in_order() -> None:
    d = Delivery(CLEAN, [], seed=0)
    recs = _records(d)
    clean = list(CLEAN.events())
    assert [r["id"] for r in recs] == [e.id for e in clean]
    assert [r["t"] for r in recs] == [e.t for e in clean]
    assert [b.ids for b in d.batches(32)] == [b.ids for b in CLEAN.batches(32)]


def test_plan_is_deterministic_in_the_seed() -> None:
    chaos: list[Chaos] = [
        Duplicates(at=10, events=100),
        Reorder(at=50, events=100),
        LabelNoise(at=0, events=40, fraction=0.5),
    ]
    a, b, c = Delivery(CLEAN, chaos, seed=1), Delivery(CLEAN, chaos, seed=1), Delivery(CLEAN, chaos, seed=2)
    assert _records(a) == _records(b) and _records(a) != _records(c)


def test_duplicates_repeat_ids_later_and_nothing_else() -> None:
    d = Delivery(CLEAN, [Duplicates(at=20, events=100, fraction=0.5, delay=16)], seed=0)
    ids = [r["id"] for r in _records(d)]
    counts = Counter(ids)
    assert set(counts.values()) <= {1, 2} and set(ids) == {e.id for e in CLEAN.events()}
    again = [i for i, c in counts.items() if c == 2]
    assert 30 < len(again) < 70 and len(ids) == N + len(again)
    for i in again:  # the second delivery comes after the first
        first, second = (k for k, x in enumerate(ids) if x == i)
        assert second > first


def test_reorder_permutes_within_blocks_only() -> None:
    d = Delivery(CLEAN, [Reorder(at=64, events=64, block=16)], seed=0)
    offsets = [s.offset for s in d.slots]
    assert offsets[:64] == list(range(64)) and offsets[128:] == list(range(128, N))
    for lo in range(64, 128, 16):
        assert sorted(offsets[lo : lo + 16]) == list(range(lo, lo + 16))
    assert offsets[64:128] != list(range(64, 128))


def test_label_noise_keeps_ids_and_changes_labels() -> None:
    d = Delivery(CLEAN, [LabelNoise(at=0, events=50, fraction=1.0)], seed=0)
    recs = _records(d)
    clean = list(CLEAN.events())
    assert [r["id"] for r in recs] == [e.id for e in clean]
    assert all(r["y"] != e.y for r, e in zip(recs[:50], clean[:50], strict=True))
    assert all(r["y"] == e.y for r, e in zip(recs[50:], clean[50:], strict=True))


def test_each_defect_is_refused_with_its_own_reason() -> None:
    d = Delivery(CLEAN, [Malformed(at=5, count=2 * len(DEFECTS))], seed=0)
    assert sum(len(b) for b in d.batches(32)) == N  # every clean event still arrives
    assert dict(d.dead_letter_counts) == {reason: 2 for reason in DEFECTS}
    assert set(DEFECTS) == set(DEAD_LETTER_REASONS)
    assert all(dl.id.startswith("s0-malformed-") and dl.detail for dl in d.dead_letters)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not a mapping", "wrong_type"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0, 0.0], "y": "1", "t": 0.0}, "wrong_type"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0, True], "y": 1, "t": 0.0}, "wrong_type"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0, 0.0], "t": 0.0}, "missing_field"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0, 0.0], "y": 1, "t": 0.0, "z": 1}, "extra_field"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0], "y": 1, "t": 0.0}, "wrong_shape"),
        ({"id": "a", "offset": 0, "task": 0, "x": [float("inf"), 0.0], "y": 1, "t": 0.0}, "non_finite"),
        ({"id": "a", "offset": 0, "task": 0, "x": [0.0, 0.0], "y": 7, "t": 0.0}, "out_of_range"),
        ({"id": "a", "offset": 0, "task": 5, "x": [0.0, 0.0], "y": 1, "t": 0.0}, "out_of_range"),
        ({"id": "a", "offset": -1, "task": 0, "x": [0.0, 0.0], "y": 1, "t": 0.0}, "out_of_range"),
        ({"id": "", "offset": 0, "task": 0, "x": [0.0, 0.0], "y": 1, "t": 0.0}, "wrong_shape"),
    ],
)
def test_ingest_refuses_bad_records_with_a_reason(raw: object, reason: str) -> None:
    got = Ingest(n_features=2, n_classes=3, n_tasks=1)(raw)
    assert isinstance(got, DeadLetter) and got.reason == reason and got.detail


def test_burst_compresses_and_stall_delays_arrival() -> None:
    burst = Delivery(CLEAN, [Burst(at=100, events=100, factor=10)], seed=0)
    stall = Delivery(CLEAN, [Stall(at=100, seconds=5.0)], seed=0)
    t_clean = [e.t for e in CLEAN.events()]
    t_burst = [s.t for s in burst.slots]
    assert t_burst[:101] == t_clean[:101]
    assert t_burst[200] == pytest.approx(t_clean[110])  # 100 events in the time of 10
    assert [s.t for s in stall.slots][100] == pytest.approx(t_clean[100] + 5.0)
    assert [s.t for s in stall.slots][99] == t_clean[99]


def test_batches_cover_every_slot_and_never_span_tasks() -> None:
    d = Delivery(CLEAN, [Reorder(at=N // 2 - 40, events=80, block=16), Malformed(at=N - 1, count=3)], seed=0)
    batches = list(d.batches(32))
    assert batches[0].offset == 0 and batches[-1].next_offset == len(d)
    assert all(a.next_offset == b.offset for a, b in pairwise(batches))
    assert all(0 < len(b) <= 32 and len(b.ids) == len(b) for b in batches)
    assert all(f"-t{b.task}-" in i for b in batches for i in b.ids)  # one task per batch
    assert sum(len(b) for b in batches) == N


def test_a_timed_fault_needs_a_paced_stream() -> None:
    with pytest.raises(ValidationError, match="need a paced stream"):
        StreamSpec(rate=None, chaos=[{"kind": "stall", "at": 3, "seconds": 1.0}])
    with pytest.raises(ValidationError, match="kind"):
        StreamSpec(chaos=[{"kind": "meteor", "at": 3}])


def test_poison_injects_wrongly_labelled_samples_of_an_old_task() -> None:
    bound = CLEAN.segment_bounds()[0][1]
    d = Delivery(CLEAN, [Poison(at=bound + 10, events=30, task=0)], seed=0)
    recs = _records(d)
    bad = [r for r in recs if "-poison-" in r["id"]]
    assert len(bad) == 30 and len(recs) == N + 30
    train = TASKS[0].train
    for r in bad:  # a real task-0 sample, with a label it does not have
        row = int(np.flatnonzero((train.x == np.asarray(r["x"], dtype=np.float32)).all(axis=1))[0])
        assert r["task"] == 1 and r["y"] != int(train.y[row])  # it poses as the live task
    assert d.clean_ids() == {e.id for e in CLEAN.events()}  # poison is not part of the clean stream
    with pytest.raises(ValueError, match="has not ended"):
        Delivery(CLEAN, [Poison(at=5, events=3, task=0)], seed=0)
