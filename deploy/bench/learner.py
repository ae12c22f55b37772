"""``olsim bench learner``: training samples/s per strategy, batch size and device.

Each cell runs olsim's own :class:`olsim.learner.trainer.Trainer` (the one the learner actor runs) with
the strategy's hooks live: after a warm-up, a task end is announced so that the penalties (EWC, SI,
LwF), memories (replay, DER, kNN) and adapters (LoRA) are all in play, as in every task after the
first. The batches come from the CPU, as the stream delivers them. One torch thread on the CPU, as
in the learner actor. Baseline in the same run: a plain torch loop (MLP, Adam, cross-entropy) on the
same batches and device, with the same per-step device sync (``loss.item()``). Cells run
``repeats`` times interleaved; medians are reported.

On a machine with CUDA the GPU column appears, with the crossover (the smallest batch size at
which the GPU trains the plain loop faster) and what ``device: auto`` picks (learner/device.py).

``model``: ``mlp`` (64-256-10 on random rows) or ``transformer`` (the facts scenario's byte
transformer, 0.12M parameters, on its fact sentences: next-token loss; strategies that cannot train
a next-token model are left out). Each model has its own table.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from functools import cache
from typing import Any, Literal

import numpy as np
import torch

from olsim.deploy.bench import torch_threads
from olsim.learner.device import choose_device
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.strategies import STRATEGIES, make_strategy
from olsim.learner.trainer import Trainer

log = logging.getLogger(__name__)

N_TASKS = 5
POOL = 8  # distinct batches cycled through
Model = Literal["mlp", "transformer"]


def markers(model: Model) -> tuple[str, str]:
    tag = "olsim bench learner" if model == "mlp" else f"olsim bench learner {model}"
    return f"<!-- {tag}: start -->", f"<!-- {tag}: end -->"


@cache
def _facts() -> tuple[torch.Tensor, torch.Tensor]:
    from olsim.stream.facts import fact_tasks
    from olsim.stream.tasks import tasks_from_data

    tasks = tasks_from_data(fact_tasks(seed=0), seed=0)
    x = torch.from_numpy(np.concatenate([t.train.x for t in tasks]))
    return x, torch.from_numpy(np.concatenate([t.train.y for t in tasks]))


def spec_of_model(model: Model) -> ModelSpec:
    if model == "mlp":
        return ModelSpec()
    return ModelSpec(
        kind="transformer", in_features=_facts()[0].shape[1], layers=2, heads=4, width=64, context=48
    )


def _batches(batch: int, seed: int, model: Model = "mlp") -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    if model == "transformer":
        x, y = _facts()
        picks = [torch.randint(len(y), (batch,), generator=g) for _ in range(POOL)]
        return [(x[i], y[i]) for i in picks]
    return [
        (torch.randn(batch, 64, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(POOL)
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_samples_per_s(
    batch: int, device: torch.device, seconds: float, seed: int = 0, model: Model = "mlp"
) -> float:
    """A plain torch loop: the model, Adam, its objective's loss (cross-entropy, or next-byte
    cross-entropy for the transformer), batches copied from the CPU. Like olsim's trainer it reads the
    loss back every step (``loss.item()``), so both wait for the device once per step: the comparison
    is of the work, not of how far ahead the GPU queue runs."""
    spec = spec_of_model(model)
    net = build_model(spec, seed=seed).to(device)
    objective = spec.task_objective
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = _batches(batch, seed, model)

    def step(i: int) -> None:
        x, y = batches[i % POOL]
        x, y = x.to(device), y.to(device)
        loss = objective.loss(net(x), x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # the trainer's sync point, every step

    for i in range(10):
        step(i)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(n)
        n += 1
    _sync(device)
    return n * batch / (time.perf_counter() - t0)


def strategy_samples_per_s(
    name: str, batch: int, device: torch.device, seconds: float, seed: int = 0, model: Model = "mlp"
) -> float:
    """olsim's Trainer with strategy ``name``, after one announced task end (penalties active)."""
    config_cls, cls = STRATEGIES[name]
    spec = cls.fit_model(spec_of_model(model), N_TASKS)
    strategy = make_strategy(config_cls(), n_features=spec.in_features, seed=seed)
    trainer = Trainer(build_model(spec, seed=seed), strategy, device=device)
    batches = _batches(batch, seed, model)
    for i in range(20):
        trainer.step(*batches[i % POOL])
    trainer.end_task(0)
    for i in range(5):
        trainer.step(*batches[i % POOL])
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        trainer.step(*batches[n % POOL])  # its loss.item() waits for the device each step, as in a run
        n += 1
    _sync(device)
    return n * batch / (time.perf_counter() - t0)


def devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, 1 torch thread"


def bench_learner(
    strategies: list[str], batches: list[int], seconds: float = 1.0, repeats: int = 3, model: Model = "mlp"
) -> list[dict[str, Any]]:
    """One row per (device, batch size): raw torch and every strategy, medians over ``repeats``."""
    strategies = [s for s in strategies if STRATEGIES[s][1].trains(spec_of_model(model))]
    spec = spec_of_model(model)
    rows: list[dict[str, Any]] = []
    with torch_threads(1):
        for device in devices():
            for batch in batches:
                runs: dict[str, list[float]] = {"raw": [], **{s: [] for s in strategies}}
                for r in range(repeats):  # interleaved: drift on the machine hits every cell alike
                    runs["raw"].append(raw_samples_per_s(batch, device, seconds, r, model))
                    for s in strategies:
                        runs[s].append(strategy_samples_per_s(s, batch, device, seconds, r, model))
                med = {k: statistics.median(v) for k, v in runs.items()}
                rows.append(
                    {
                        "model": model,
                        "device": device.type,
                        "device_name": device_name(device),
                        "batch": batch,
                        "raw": med["raw"],
                        "strategies": {s: med[s] for s in strategies},
                        "auto": choose_device("auto", spec, batch, cuda=torch.cuda.is_available()).type,
                    }
                )
                log.warning("%s batch %d: raw %.0f samples/s", device.type, batch, med["raw"])
    return rows


def crossover(rows: list[dict[str, Any]]) -> int | None:
    """Smallest measured batch size at which CUDA trains the plain loop faster than the CPU."""
    cpu = {r["batch"]: r["raw"] for r in rows if r["device"] == "cpu"}
    gpu = {r["batch"]: r["raw"] for r in rows if r["device"] == "cuda"}
    wins = sorted(b for b in gpu if b in cpu and gpu[b] > cpu[b])
    return wins[0] if wins else None


def render(rows: list[dict[str, Any]], command: str, model: Model = "mlp") -> str:
    strategies = list(rows[0]["strategies"]) if rows else []
    names = {r["device"]: r["device_name"] for r in rows}
    start, end = markers(model)
    what = (
        "MLP 64-256-10"
        if model == "mlp"
        else "the facts scenario's byte transformer (0.12M parameters) on fact sentences of up to "
        f"{spec_of_model(model).in_features} bytes, next-token loss (a sample is one sentence)"
    )
    lines = [
        start,
        f"Command: `{command}`. Samples/s (thousands) of olsim's Trainer, {what}, one announced task "
        "end before timing; in brackets, the ratio to the plain torch loop on the same device and batches. "
        + "; ".join(f"{d}: {n}" for d, n in names.items())
        + ".",
        "",
        "| device | batch | plain torch | " + " | ".join(strategies) + " | auto picks |",
        "|---" * (len(strategies) + 4) + "|",
    ]
    digits = 0 if model == "mlp" else 1
    for r in rows:
        cells = [
            f"{r['strategies'][s] / 1e3:,.{digits}f} ({r['strategies'][s] / r['raw']:.2f})"
            for s in strategies
        ]
        lines.append(
            f"| {r['device']} | {r['batch']} | {r['raw'] / 1e3:,.{digits}f} | "
            + " | ".join(cells)
            + f" | {r['auto']} |"
        )
    if any(r["device"] == "cuda" for r in rows):
        c = crossover(rows)
        lines += ["", f"Crossover (plain loop, measured batches): {'none' if c is None else f'batch {c}'}."]
    else:
        lines += ["", "No CUDA device on this machine: GPU columns and the crossover need one."]
    lines.append(end)
    return "\n".join(lines)


def default_strategies() -> list[str]:
    return sorted(STRATEGIES)
