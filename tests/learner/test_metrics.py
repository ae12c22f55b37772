from __future__ import annotations

import pytest

from olsim.learner.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    forward_transfer,
    summarize,
)

# Hand-computed example, 3 tasks. R[i][j] = accuracy on task j after training task i.
R = [
    [0.90, 0.20, 0.10],
    [0.60, 0.80, 0.30],
    [0.50, 0.70, 0.95],
]
B = [0.10, 0.10, 0.20]


def test_acc_is_mean_of_last_row() -> None:
    assert average_accuracy(R) == pytest.approx((0.50 + 0.70 + 0.95) / 3)


def test_bwt_gem_definition() -> None:
    # ((0.50 - 0.90) + (0.70 - 0.80)) / 2
    assert backward_transfer(R) == pytest.approx(-0.25)


def test_fwt_gem_definition() -> None:
    # ((R[0][1] - b1) + (R[1][2] - b2)) / 2 = ((0.20 - 0.10) + (0.30 - 0.20)) / 2
    assert forward_transfer(R, B) == pytest.approx(0.10)


def test_forgetting_uses_best_earlier_accuracy() -> None:
    # task 0: max(0.90, 0.60) - 0.50 = 0.40; task 1: 0.80 - 0.70 = 0.10
    assert forgetting(R) == pytest.approx(0.25)


def test_forgetting_takes_the_max_over_every_earlier_evaluation() -> None:
    # Chaudhry et al. 2018: max over l < T-1, also rows before the task was trained. Task 1 scored 0.9
    # by chance before it was trained: 0.9 - 0.4, not (best since trained) 0.5 - 0.4.
    r = [[0.9, 0.9, 0.1], [0.6, 0.5, 0.3], [0.5, 0.4, 0.95]]
    assert forgetting_per_task(r) == {0: pytest.approx(0.4), 1: pytest.approx(0.5)}
    assert forgetting(r) == pytest.approx(0.45)


def test_partial_matrix_and_single_row() -> None:
    assert summarize(R[:1], B) == {"acc": pytest.approx(0.90), "bwt": None, "fwt": None, "forgetting": None}
    two = summarize(R[:2], B)
    assert two["acc"] == pytest.approx(0.70) and two["bwt"] == pytest.approx(-0.30)
    assert summarize([], B) == {"acc": None, "bwt": None, "fwt": None, "forgetting": None}


def test_malformed_matrix_rejected() -> None:
    with pytest.raises(ValueError, match="does not fit segments"):
        average_accuracy([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    with pytest.raises(ValueError, match="does not fit segments"):
        average_accuracy([[0.1, 0.2], [0.3, 0.4]], seq=[0, 2])


# A task that comes back: segments train tasks 0, 1, 0, 2. R[s][j] = accuracy on task j after segment s.
RR = [
    [0.90, 0.20, 0.10],
    [0.40, 0.85, 0.15],
    [0.88, 0.60, 0.12],
    [0.70, 0.50, 0.95],
]
SEQ = [0, 1, 0, 2]


def test_recurring_task_definitions_by_hand() -> None:
    m = summarize(RR, B, SEQ)
    assert m["acc"] == pytest.approx((0.70 + 0.50 + 0.95) / 3)
    # BWT against each task's *last* training: task 0 after segment 2, task 1 after segment 1
    assert m["bwt"] == pytest.approx(((0.70 - 0.88) + (0.50 - 0.85)) / 2)
    # FWT at each task's first appearance: task 1 from segment 0, task 2 from segment 2
    assert m["fwt"] == pytest.approx(((0.20 - 0.10) + (0.12 - 0.20)) / 2)
    # forgetting: best in any earlier row (task 0: 0.90, task 1: 0.85) minus now
    assert m["forgetting"] == pytest.approx(((0.90 - 0.70) + (0.85 - 0.50)) / 2)


def test_bwt_leaves_out_the_task_the_last_segment_trained() -> None:
    # segments 0, 1, 0: task 0 is being relearnt at the end; only task 1 transfers backward
    r = [[0.9, 0.1], [0.5, 0.8], [0.8, 0.6]]
    assert backward_transfer(r, seq=[0, 1, 0]) == pytest.approx(0.6 - 0.8)
    assert backward_transfer(r[:1] + r[2:], seq=[0, 0]) is None  # nothing but the task being trained


def test_in_order_segments_are_the_gem_definitions() -> None:
    assert summarize(R, B, seq=[0, 1, 2]) == summarize(R, B)
