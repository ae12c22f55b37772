"""One contract for every registered strategy, on three different models (the built-in MLP and the
example package's CNN on digits, the built-in byte transformer on a world of facts, for the strategies
that train a next-token model): seeded determinism, mid-run state round-trip, an exported snapshot that
loads into a serving model and predicts exactly like the learner, and (on a machine with CUDA) the
same training on the GPU as on the CPU, within float tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.served import ServedModel
from olsim.learner.snapshot import Snapshot
from olsim.learner.strategies import STRATEGIES, make_strategy
from olsim.learner.trainer import Trainer
from olsim.stream.events import TaskStream
from olsim.stream.facts import fact_tasks
from olsim.stream.tasks import Task, build_tasks, tasks_from_data

DIGITS = build_tasks("split-digits", n_tasks=2, seed=0)  # 218 training rows in task 0
FACTS = tasks_from_data(fact_tasks(seed=0, periods=2, entities_per_period=40), seed=0)  # 80 in period 0
TASKS: dict[str, list[Task]] = {"mlp": DIGITS, "cnn": DIGITS, "transformer": FACTS}
STREAMS = {  # task 0 ends between events 218 and 240 on each, so the batches below cross it alike
    "mlp": TaskStream(DIGITS, epochs=1, seed=0),
    "cnn": TaskStream(DIGITS, epochs=1, seed=0),
    "transformer": TaskStream(FACTS, epochs=3, seed=0),
}
MODELS = {
    "mlp": ModelSpec(),
    "cnn": ModelSpec.model_validate(
        {"import": "rotated_digits.model:small_cnn", "args": {"channels": 4, "hidden": 32}}
    ),
    "transformer": ModelSpec(
        kind="transformer", in_features=FACTS[0].train.x.shape[1], layers=1, heads=2, width=32, context=32
    ),
}
CASES = [
    (s, m) for m in MODELS for s in sorted(STRATEGIES) if MODELS[m].objective in STRATEGIES[s][1].objectives
]


def _batches(
    case: tuple[str, str], start: int, n: int, size: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    events = list(STREAMS[case[1]].events(start=start, stop=start + n * size))
    out = []
    for i in range(0, len(events), size):
        chunk = events[i : i + size]
        x = torch.stack([torch.from_numpy(e.x) for e in chunk])
        out.append((x, torch.tensor([e.y for e in chunk]), chunk[0].task))
    return out


def _trainer(case: tuple[str, str], seed: int, device: str = "cpu") -> Trainer:
    name, model = case
    config_cls, strategy_cls = STRATEGIES[name]
    # kNN reads the CNN's own embed(); on the MLP it keys on the inputs (the generic path)
    network = (name, model) == ("knn", "cnn")
    config = config_cls(embedding="network") if network else config_cls()
    strategy = make_strategy(config, n_features=MODELS[model].in_features, seed=seed)
    spec = strategy_cls.fit_model(MODELS[model], n_tasks=len(TASKS[model]))
    return Trainer(build_model(spec, seed=seed), strategy, device=device)


def _feed(t: Trainer, batches: list[tuple[torch.Tensor, torch.Tensor, int]]) -> list[float]:
    losses, task = [], batches[0][2]
    for x, y, k in batches:
        if k != task:
            t.end_task(task)
            task = k
        losses.append(t.step(x, y).loss)
    return losses


@pytest.fixture(params=CASES, ids="-".join)
def name(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(strategy, model)"""
    return request.param


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_registry_entries_are_consistent(strategy: str) -> None:
    config_cls, strategy_cls = STRATEGIES[strategy]
    assert config_cls().kind == strategy  # type: ignore[attr-defined]
    assert strategy_cls.name == strategy


def test_prepared_batch_starts_with_the_stream_batch(name: tuple[str, str]) -> None:
    t = _trainer(name, 0)
    _feed(t, _batches(name, 150, 6))  # fills memories, crosses a task boundary
    for x, y, _ in _batches(name, 300, 2):
        bx, by = t.strategy.prepare_batch(x, y)
        assert torch.equal(bx[: len(y)], x) and torch.equal(by[: len(y)], y)


def test_memory_fill_is_bounded_by_capacity(name: tuple[str, str]) -> None:
    t = _trainer(name, 0)
    assert t.strategy.memory_fill()[0] == 0
    batches = _batches(name, 150, 6)
    _feed(t, batches)
    held, capacity = t.strategy.memory_fill()
    seen = 96
    if name[0] == "rag":  # a fact store keeps one sentence per question: the distinct questions seen
        seen = len(
            {bytes(r[: int(a)].int().tolist()) for x, y, _ in batches for r, a in zip(x, y, strict=True)}
        )
    # no memory: nothing held; a memory with room for them: every sample seen; else full
    assert held == (0 if capacity == 0 else min(seen, seen if capacity is None else capacity))


def test_seeded_determinism(name: tuple[str, str]) -> None:
    batches = _batches(name, 200, 10)  # crosses the task 0 -> 1 boundary
    a, b = _trainer(name, 3), _trainer(name, 3)
    assert _feed(a, batches) == _feed(b, batches)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_state_round_trip_mid_run(name: tuple[str, str]) -> None:
    first, rest = _batches(name, 150, 6), _batches(name, 246, 6)
    a = _trainer(name, 1)
    _feed(a, first)
    state = copy.deepcopy(a.state_dict())
    b = _trainer(name, 2)  # different seed: everything must come from the state
    b.load_state_dict(state)
    assert _feed(a, rest) == _feed(b, rest)
    assert a.strategy.state_dict().keys() == b.strategy.state_dict().keys()


def test_export_loads_into_serving_model_and_predicts_identically(name: tuple[str, str]) -> None:
    t = _trainer(name, 0)
    _feed(t, _batches(name, 0, 8))
    extras = t.strategy.export()
    snap = Snapshot.from_model(t.model, extras=extras, task=0, step=t.steps)
    served = snap.build()  # what a replica builds from the arrays alone
    learner_copy = ServedModel(t.model, {k: torch.from_numpy(v) for k, v in extras.items()})
    x = torch.from_numpy(np.concatenate([t.test.x for t in TASKS[name[1]]]))
    with torch.no_grad():
        for task in (None, 0, 1):
            assert torch.equal(served(x, task=task), learner_copy(x, task=task))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")


@CUDA
def test_cuda_trains_like_the_cpu(name: tuple[str, str]) -> None:
    """Same seeds, same batches: the losses and the exported snapshot's predictions agree (GPU
    kernels differ in rounding, so within tolerance), through a task boundary and a checkpoint."""
    batches, rest = _batches(name, 150, 6), _batches(name, 246, 6)
    cpu, gpu = _trainer(name, 0), _trainer(name, 0, "cuda")
    assert next(gpu.model.parameters()).is_cuda
    np.testing.assert_allclose(_feed(gpu, batches), _feed(cpu, batches), rtol=1e-3, atol=1e-4)
    resumed = _trainer(name, 5, "cuda")  # a restarted learner: state from the checkpoint (CPU arrays)
    resumed.load_state_dict(copy.deepcopy(cpu.state_dict()))
    np.testing.assert_allclose(_feed(resumed, rest), _feed(cpu, rest), rtol=1e-3, atol=1e-4)
    x = torch.from_numpy(np.concatenate([t.test.x for t in TASKS[name[1]]]))
    on_cpu = Snapshot.from_model(cpu.model, extras=cpu.strategy.export()).build()
    on_gpu = Snapshot.from_model(resumed.model, extras=resumed.strategy.export()).build()
    with torch.no_grad():
        agree = (on_cpu(x).argmax(-1) == on_gpu(x).argmax(-1)).float().mean().item()
    assert agree >= 0.98
