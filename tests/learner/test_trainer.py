from __future__ import annotations

import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.strategies import NaiveConfig, make_strategy
from olsim.learner.trainer import OptimizerConfig, Trainer
from olsim.stream.tasks import build_tasks


def _trainer(seed: int = 0, lr: float = 1e-2) -> Trainer:
    strategy = make_strategy(NaiveConfig(), n_features=64, seed=seed)
    return Trainer(build_model(ModelSpec(), seed=seed), strategy, OptimizerConfig(kind="adam", lr=lr))


def test_steps_reduce_loss_and_count_samples() -> None:
    task = build_tasks("split-digits", n_tasks=1, seed=0)[0]
    x, y = torch.from_numpy(task.train.x[:64]), torch.from_numpy(task.train.y[:64])
    t = _trainer()
    first = t.step(x, y).loss
    for _ in range(20):
        last = t.step(x, y)
    assert last.loss < first * 0.5
    assert t.steps == 21 and t.samples == 21 * 64


def test_prequential_correct_is_measured_before_the_update() -> None:
    task = build_tasks("split-digits", n_tasks=1, seed=0)[0]
    x, y = torch.from_numpy(task.train.x[:32]), torch.from_numpy(task.train.y[:32])
    t = _trainer()
    with torch.no_grad():
        before = int((t.model(x).argmax(1) == y).sum())
    assert t.step(x, y).correct == before


def test_state_dict_round_trip_continues_identically() -> None:
    task = build_tasks("split-digits", n_tasks=1, seed=0)[0]
    x, y = torch.from_numpy(task.train.x[:32]), torch.from_numpy(task.train.y[:32])
    a = _trainer()
    a.step(x, y)
    b = _trainer(seed=9)
    b.load_state_dict(a.state_dict())
    ra, rb = a.step(x, y), b.step(x, y)
    assert ra == rb
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
