from __future__ import annotations

import pytest

from learner.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer, summarize

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


def test_partial_matrix_and_single_row() -> None:
    assert summarize(R[:1], B) == {"acc": pytest.approx(0.90), "bwt": None, "fwt": None, "forgetting": None}
    two = summarize(R[:2], B)
    assert two["acc"] == pytest.approx(0.70) and two["bwt"] == pytest.approx(-0.30)
    assert summarize([], B) == {"acc": None, "bwt": None, "fwt": None, "forgetting": None}


def test_malformed_matrix_rejected() -> None:
    with pytest.raises(ValueError, match="T x N"):
        average_accuracy([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
