"""The byte transformer learns and forgets, at a small size (0.12M parameters, seconds on one thread):
plain fine-tuning on a second period of facts wipes out the first, and on a second text domain
raises the first one's bits per byte; mixing the earlier data into every batch keeps both."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from olsim.deploy.bench import torch_threads
from olsim.learner.lm import answers, bits_per_byte, exact_match, lm_loss, sentence_batch, windows
from olsim.learner.objective import IGNORE
from olsim.learner.transformer import ByteTransformer
from olsim.stream.facts import Fact, fact_world
from olsim.stream.text import text_domains

WORLD = fact_world(seed=0, periods=2, entities_per_period=40, changes_per_period=0, relations=("city",))


def _train(model: ByteTransformer, opt: torch.optim.Optimizer, batches: list[list[str]]) -> None:
    model.train()
    for sentences in batches:
        x, y = sentence_batch(sentences)
        loss = lm_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _batches(
    facts: tuple[Fact, ...], steps: int, g: torch.Generator, old: tuple[Fact, ...] = ()
) -> list[list[str]]:
    out = []
    for _ in range(steps):
        pick = [facts[i].sentence for i in torch.randint(len(facts), (64,), generator=g)]
        if old:  # replay: a quarter of every batch from the earlier period
            pick[:16] = [old[i].sentence for i in torch.randint(len(old), (16,), generator=g)]
        out.append(pick)
    return out


def _em(model: ByteTransformer, facts: tuple[Fact, ...]) -> float:
    return exact_match(model, [f.prompt for f in facts], [f.answer for f in facts])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """As the learner trains (and so that the numbers do not depend on the machine's core count)."""
    with torch_threads(1):
        yield


@dataclass
class FirstPeriod:
    model: ByteTransformer
    weights: dict[str, Any]
    moments: dict[str, Any]


@pytest.fixture(scope="module")
def after_first() -> FirstPeriod:
    torch.manual_seed(0)
    model = ByteTransformer(layers=2, heads=4, width=64, context=48)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    _train(model, opt, _batches(WORLD[0].facts, 200, torch.Generator().manual_seed(0)))
    return FirstPeriod(model, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))


def _continue(first: FirstPeriod, replay: bool) -> tuple[float, float]:
    model = ByteTransformer(layers=2, heads=4, width=64, context=48)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.load_state_dict(first.weights)
    opt.load_state_dict(copy.deepcopy(first.moments))
    g = torch.Generator().manual_seed(1)
    _train(model, opt, _batches(WORLD[1].facts, 100, g, WORLD[0].facts if replay else ()))
    return _em(model, WORLD[0].facts), _em(model, WORLD[1].facts)


def test_the_first_period_is_learned(after_first: FirstPeriod) -> None:
    assert _em(after_first.model, WORLD[0].facts) >= 0.9


def test_fine_tuning_on_the_next_period_forgets_the_first(after_first: FirstPeriod) -> None:
    old, new = _continue(after_first, replay=False)
    assert new >= 0.9 and old <= 0.3, (old, new)


def test_replaying_the_first_period_keeps_it(after_first: FirstPeriod) -> None:
    old, new = _continue(after_first, replay=True)
    assert new >= 0.8 and old >= 0.8, (old, new)


def test_batches_pad_targets_and_answers_stop_at_the_full_stop() -> None:
    x, y = sentence_batch(["Ab.", "C."])
    assert x.shape == y.shape == (2, 2) and y[1, 1] == IGNORE
    torch.manual_seed(0)
    model = ByteTransformer(layers=1, heads=2, width=16, context=8)
    (a,) = answers(model, ["Ab"], max_new_tokens=5)
    assert len(a.encode()) <= 5 and (not a.count(".") or a.endswith("."))
    with pytest.raises(ValueError, match="exceed the context"):
        model(torch.zeros(1, 9, dtype=torch.long))


DOMAINS = {d.name: d for d in text_domains(0, ("python", "csv"), size=20_000)}
LENGTH = 32


def _lm_steps(
    model: ByteTransformer, opt: torch.optim.Optimizer, domain: str, steps: int, old: str | None
) -> None:
    g = torch.Generator().manual_seed(len(domain))
    model.train()
    for _ in range(steps):
        x, y = windows(DOMAINS[domain].train, LENGTH, 32, g)
        if old is not None:  # replay: 16 windows of the earlier domain in every batch
            xo, yo = windows(DOMAINS[old].train, LENGTH, 16, g)
            x, y = torch.cat([x, xo]), torch.cat([y, yo])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def python_learned() -> FirstPeriod:
    torch.manual_seed(0)
    model = ByteTransformer(layers=2, heads=4, width=64, context=LENGTH)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    _lm_steps(model, opt, "python", 200, None)
    return FirstPeriod(model, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))


def _then_csv(first: FirstPeriod, replay: bool) -> float:
    """Test bits per byte on python source after 200 steps on CSV data."""
    model = ByteTransformer(layers=2, heads=4, width=64, context=LENGTH)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.load_state_dict(first.weights)
    opt.load_state_dict(copy.deepcopy(first.moments))
    _lm_steps(model, opt, "csv", 200, "python" if replay else None)
    return bits_per_byte(model, DOMAINS["python"].test, LENGTH)


def test_a_new_text_domain_raises_the_old_ones_bits_per_byte_and_replay_holds_it(
    python_learned: FirstPeriod,
) -> None:
    before = bits_per_byte(python_learned.model, DOMAINS["python"].test, LENGTH)
    assert before < 5.0  # learned something: uniform guessing is 8 bits a byte
    naive, replay = _then_csv(python_learned, False), _then_csv(python_learned, True)
    assert naive - before > 2.0, (before, naive)
    assert replay - before < 0.5, (before, replay)
