"""The next-token objective's exact match is greedy decoding's, without decoding; classification's
hits are the top class; EWC's per-sample log-likelihood comes from the model's objective."""

from __future__ import annotations

import numpy as np
import torch

from olsim.learner.model import ModelSpec, build_model, objective_of
from olsim.learner.objective import Classify, NextToken
from olsim.learner.served import ServedModel
from olsim.learner.snapshot import Snapshot
from olsim.learner.strategies import NaiveConfig, make_strategy
from olsim.learner.strategies.config import LoraConfig
from olsim.learner.strategies.lora import Lora
from olsim.learner.trainer import Trainer
from olsim.stream.facts import STOP, decode, fact_tasks
from olsim.stream.tasks import tasks_from_data

TASKS = tasks_from_data(fact_tasks(seed=0, periods=1, entities_per_period=30), seed=0)


def _half_trained() -> Trainer:
    """A transformer that knows some of the facts and not others."""
    spec = ModelSpec(kind="transformer", in_features=TASKS[0].train.x.shape[1], layers=2, heads=4, width=48)
    t = Trainer(build_model(spec, seed=0), make_strategy(NaiveConfig(), n_features=spec.in_features))
    t.optimizer.param_groups[0]["lr"] = 3e-3
    x, y = torch.from_numpy(TASKS[0].train.x), torch.from_numpy(TASKS[0].train.y)
    g = torch.Generator().manual_seed(0)
    for _ in range(70):
        i = torch.randint(len(y), (32,), generator=g)
        t.step(x[i], y[i])
    return t


def test_exact_match_hits_are_greedy_decoding_from_the_prompt() -> None:
    t = _half_trained()
    served = ServedModel(t.model)
    test = TASKS[0].test
    with torch.no_grad():
        x = torch.from_numpy(test.x)
        hits = NextToken().hits(served(x), x, torch.from_numpy(test.y)).tolist()
    greedy = []
    for row, start in zip(test.x.astype(int), test.y, strict=True):
        text = decode(row[row > 0])
        prompt, answer = text[:start], text[start:]
        got = decode(served.generate(list(prompt.encode()), max_new_tokens=20, stop=STOP))
        greedy.append(got == answer)
    assert hits == greedy
    assert 0 < sum(hits) < len(hits)  # some right, some wrong: the comparison means something


def test_routed_adapters_score_what_a_prompt_would_get() -> None:
    """With per-task adapters and no task id, a scored row routes by its question alone (as a
    /generate prompt does), so exact match is still greedy decoding from the prompt."""
    tasks = tasks_from_data(fact_tasks(seed=0, periods=2, entities_per_period=20), seed=0)
    spec = Lora.fit_model(
        ModelSpec(kind="transformer", in_features=tasks[0].train.x.shape[1], layers=2, heads=4, width=48), 2
    )
    t = Trainer(build_model(spec, seed=0), make_strategy(LoraConfig(), n_features=spec.in_features))
    t.optimizer.param_groups[0]["lr"] = 3e-3
    g = torch.Generator().manual_seed(0)
    for k, task in enumerate(tasks):
        x, y = torch.from_numpy(task.train.x), torch.from_numpy(task.train.y)
        for _ in range(150):
            i = torch.randint(len(y), (32,), generator=g)
            t.step(x[i], y[i])
        if k == 0:
            t.end_task(0)
    served = Snapshot.from_model(t.model, extras=t.strategy.export()).build()
    x = torch.from_numpy(np.concatenate([u.test.x for u in tasks]))
    y = torch.from_numpy(np.concatenate([u.test.y for u in tasks]))
    with torch.no_grad():
        hits = NextToken().hits(served(x, answer_at=y), x, y).tolist()
    greedy = []
    for row, start in zip(x.int().tolist(), y.tolist(), strict=True):
        text = bytes(v for v in row if v > 0)
        got = served.generate(list(text[:start]), max_new_tokens=20, stop=STOP)
        greedy.append(bytes(got) == text[start:])
    assert hits == greedy and 0 < sum(hits)


def test_a_next_token_loss_skips_padding_and_the_first_byte() -> None:
    x = torch.tensor([[72, 105, 0, 0]])
    out = torch.zeros(1, 4, 256)
    out[0, 0, 105] = 50.0  # "i" after "H": certain
    out[0, 1:, 7] = 50.0  # nonsense where only padding follows
    assert float(NextToken().loss(out, x, torch.tensor([0]))) < 1e-6
    assert NextToken().hits(out, x, torch.tensor([0])).tolist() == [True]


def test_classify_hits_are_the_top_class_and_bare_modules_classify() -> None:
    out = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert Classify().hits(out, torch.zeros(2, 1), torch.tensor([1, 1])).tolist() == [True, False]
    assert isinstance(objective_of(torch.nn.Linear(2, 2)), Classify)
    net = build_model(ModelSpec(kind="transformer", in_features=8, layers=1, heads=2, width=16, context=8))
    assert isinstance(objective_of(ServedModel(net)), NextToken)
