from __future__ import annotations

import pytest
import torch

from olsim.learner.buffer import ClassBalancedBuffer, ReservoirBuffer


def test_reservoir_is_bounded_and_roughly_uniform() -> None:
    buf = ReservoirBuffer(capacity=100, n_features=1, seed=0)
    for start in range(0, 10_000, 50):
        x = torch.arange(start, start + 50, dtype=torch.float32).unsqueeze(1)
        buf.add(x, torch.zeros(50, dtype=torch.long))
    assert len(buf) == 100 and buf.seen == 10_000
    kept = buf.x[:, 0]
    # uniform over 0..9999: about half the kept samples come from the second half
    assert 30 <= int((kept >= 5000).sum()) <= 70


def test_class_balanced_keeps_old_classes() -> None:
    buf = ClassBalancedBuffer(capacity=20, n_features=1, seed=0)
    for cls in range(5):  # 5 "tasks" of 100 samples of one class each
        buf.add(torch.zeros(100, 1), torch.full((100,), cls))
    counts = torch.bincount(buf.y[: len(buf)], minlength=5)
    assert len(buf) == 20 and counts.tolist() == [4, 4, 4, 4, 4]


def test_sample_and_state_round_trip() -> None:
    a = ReservoirBuffer(capacity=10, n_features=2, seed=1)
    a.add(torch.randn(30, 2), torch.randint(0, 3, (30,)))
    b = ReservoirBuffer(capacity=10, n_features=2, seed=7)
    b.load_state_dict(a.state_dict())
    xa, ya = a.sample(5)
    xb, yb = b.sample(5)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="shape"):
        ReservoirBuffer(capacity=3, n_features=2).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="capacity"):
        ReservoirBuffer(capacity=0, n_features=2)
