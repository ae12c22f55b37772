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
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from typing import Any

import torch

from olsim.deploy.bench import torch_threads
from olsim.learner.device import choose_device
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.strategies import STRATEGIES, make_strategy
from olsim.learner.trainer import Trainer

log = logging.getLogger(__name__)

START = "<!-- olsim bench learner: start -->"
END = "<!-- olsim bench learner: end -->"
N_TASKS = 5
POOL = 8  # distinct batches cycled through


def _batches(batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 64, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(POOL)
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_samples_per_s(batch: int, device: torch.device, seconds: float, seed: int = 0) -> float:
    """A plain torch loop: MLP 64-256-10, Adam, cross-entropy, batches copied from the CPU. Like
    olsim's trainer it reads the loss back every step (``loss.item()``), so both wait for the device
    once per step: the comparison is of the work, not of how far ahead the GPU queue runs."""
    model = build_model(ModelSpec(), seed=seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _batches(batch, seed)

    def step(i: int) -> None:
        x, y = batches[i % POOL]
        loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
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
    name: str, batch: int, device: torch.device, seconds: float, seed: int = 0
) -> float:
    """olsim's Trainer with strategy ``name``, after one announced task end (penalties active)."""
    config_cls, cls = STRATEGIES[name]
    spec = cls.fit_model(ModelSpec(), N_TASKS)
    trainer = Trainer(
        build_model(spec, seed=seed), make_strategy(config_cls(), n_features=64, seed=seed), device=device
    )
    batches = _batches(batch, seed)
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
    strategies: list[str], batches: list[int], seconds: float = 1.0, repeats: int = 3
) -> list[dict[str, Any]]:
    """One row per (device, batch size): raw torch and every strategy, medians over ``repeats``."""
    rows: list[dict[str, Any]] = []
    with torch_threads(1):
        for device in devices():
            for batch in batches:
                runs: dict[str, list[float]] = {"raw": [], **{s: [] for s in strategies}}
                for r in range(repeats):  # interleaved: drift on the machine hits every cell alike
                    runs["raw"].append(raw_samples_per_s(batch, device, seconds, seed=r))
                    for s in strategies:
                        runs[s].append(strategy_samples_per_s(s, batch, device, seconds, seed=r))
                med = {k: statistics.median(v) for k, v in runs.items()}
                rows.append(
                    {
                        "device": device.type,
                        "device_name": device_name(device),
                        "batch": batch,
                        "raw": med["raw"],
                        "strategies": {s: med[s] for s in strategies},
                        "auto": choose_device(
                            "auto", ModelSpec(), batch, cuda=torch.cuda.is_available()
                        ).type,
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


def render(rows: list[dict[str, Any]], command: str) -> str:
    strategies = list(rows[0]["strategies"]) if rows else []
    names = {r["device"]: r["device_name"] for r in rows}
    lines = [
        START,
        f"Command: `{command}`. Samples/s (thousands) of olsim's Trainer, MLP 64-256-10, one announced task "
        "end before timing; in brackets, the ratio to the plain torch loop on the same device and batches. "
        + "; ".join(f"{d}: {n}" for d, n in names.items())
        + ".",
        "",
        "| device | batch | plain torch | " + " | ".join(strategies) + " | auto picks |",
        "|---" * (len(strategies) + 4) + "|",
    ]
    for r in rows:
        cells = [f"{r['strategies'][s] / 1e3:,.0f} ({r['strategies'][s] / r['raw']:.2f})" for s in strategies]
        lines.append(
            f"| {r['device']} | {r['batch']} | {r['raw'] / 1e3:,.0f} | "
            + " | ".join(cells)
            + f" | {r['auto']} |"
        )
    if any(r["device"] == "cuda" for r in rows):
        c = crossover(rows)
        lines += ["", f"Crossover (plain loop, measured batches): {'none' if c is None else f'batch {c}'}."]
    else:
        lines += ["", "No CUDA device on this machine: GPU columns and the crossover need one."]
    lines.append(END)
    return "\n".join(lines)


def default_strategies() -> list[str]:
    return sorted(STRATEGIES)
