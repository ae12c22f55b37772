from __future__ import annotations

import numpy as np
import pytest

from olsim.stream.tasks import TaskKind, build_tasks


@pytest.mark.parametrize("kind", ["split-digits", "permuted-digits", "synthetic"])
def test_same_seed_same_tasks_other_seed_differs(kind: TaskKind) -> None:
    a, b, c = (build_tasks(kind, seed=s) for s in (3, 3, 4))
    for ta, tb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ta.train.x, tb.train.x)
        np.testing.assert_array_equal(ta.test.y, tb.test.y)
    assert any(not np.array_equal(ta.train.x, tc.train.x) for ta, tc in zip(a, c, strict=True))


@pytest.mark.parametrize("kind", ["split-digits", "permuted-digits", "synthetic"])
def test_splits_are_disjoint_and_stratified(kind: TaskKind) -> None:
    for t in build_tasks(kind, seed=0):
        tr, va, te = (set(s.source.tolist()) for s in (t.train, t.val, t.test))
        assert not (tr & va) and not (tr & te) and not (va & te)
        for split in (t.train, t.val, t.test):
            assert set(np.unique(split.y).tolist()) == set(t.classes)
        n = len(t.train) + len(t.val) + len(t.test)
        assert abs(len(t.train) / n - 0.6) < 0.02 and abs(len(t.test) / n - 0.2) < 0.02


def test_split_digits_covers_each_class_once() -> None:
    tasks = build_tasks("split-digits", seed=1)
    classes = [c for t in tasks for c in t.classes]
    assert sorted(classes) == list(range(10))
    for t in tasks:
        assert t.train.x.shape[1] == 64 and t.train.x.dtype == np.float32
        assert 0.0 <= t.train.x.min() and t.train.x.max() <= 1.0


def test_permuted_digits_same_samples_permuted_pixels() -> None:
    t0, t1 = build_tasks("permuted-digits", n_tasks=2, seed=0)
    assert t0.classes == t1.classes == tuple(range(10))
    # Same images under a pixel permutation: sorted pixel values of a source row are unchanged.
    common = np.intersect1d(t0.train.source, t1.train.source)
    assert len(common) > 100
    for row in common[:20]:
        a = t0.train.x[np.flatnonzero(t0.train.source == row)[0]]
        b = t1.train.x[np.flatnonzero(t1.train.source == row)[0]]
        np.testing.assert_array_equal(np.sort(a), np.sort(b))
        assert not np.array_equal(a, b) or a.max() == a.min()


@pytest.mark.parametrize(
    ("kind", "n", "match"),
    [("split-digits", 6, "at most 5"), ("split-digits", 0, ">= 1"), ("nope", 2, "unknown task kind")],
)
def test_bad_task_args_raise(kind: str, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_tasks(kind, n_tasks=n)  # type: ignore[arg-type]
