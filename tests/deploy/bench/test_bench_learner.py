"""``olsim bench learner`` at a tiny size (the real figures come from the command itself)."""

from __future__ import annotations

from typing import Any

import torch

from olsim.deploy.bench.learner import bench_learner, crossover, markers, render


def test_every_cell_trains_and_the_table_has_a_row_per_device_and_batch() -> None:
    rows = bench_learner(["naive", "ewc"], [8, 64], seconds=0.05, repeats=1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert [(r["device"], r["batch"]) for r in rows] == [(d, b) for d in devices for b in (8, 64)]
    for r in rows:
        assert r["raw"] > 0 and set(r["strategies"]) == {"naive", "ewc"}
        assert all(v > 0 for v in r["strategies"].values())
        assert r["auto"] == "cpu"  # batches this small never pay for a GPU launch
    table = render(rows, "olsim bench learner --batches 8 64")
    start, end = markers("mlp")
    assert table.startswith(start) and table.endswith(end)
    assert table.count("\n| ") == 1 + len(rows) and "| naive | ewc |" in table
    if not torch.cuda.is_available():
        assert "No CUDA device on this machine" in table


def test_the_transformer_has_its_own_table_and_only_strategies_that_train_it() -> None:
    rows = bench_learner(["naive", "der", "rag"], [8], seconds=0.05, repeats=1, model="transformer")
    assert all(set(r["strategies"]) == {"naive", "rag"} and r["model"] == "transformer" for r in rows)
    assert all(r["raw"] > 0 and min(r["strategies"].values()) > 0 for r in rows)
    table = render(rows, "olsim bench learner --model transformer", "transformer")
    assert table.startswith(markers("transformer")[0]) and "byte transformer" in table
    assert markers("transformer") != markers("mlp")


def test_crossover_is_the_first_batch_where_the_gpu_wins() -> None:
    rows: list[dict[str, Any]] = [
        {"device": "cpu", "batch": b, "raw": r} for b, r in ((32, 134e3), (256, 788e3), (4096, 1.2e6))
    ] + [{"device": "cuda", "batch": b, "raw": r} for b, r in ((32, 51e3), (256, 369e3), (4096, 6.0e6))]
    assert crossover(rows) == 4096  # the reference H200 figures against this machine's CPU
    assert crossover([r for r in rows if r["batch"] < 4096]) is None
