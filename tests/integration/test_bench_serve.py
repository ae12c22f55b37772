"""``olsim bench serve`` end to end at a tiny size (the real figures come from the command itself):
hey against bare uvicorn and olsim's Serve path, with and without a learner training."""

from __future__ import annotations

from pathlib import Path

from deploy.bench_serve import END, START, bench_serve, render


def test_bench_serve_measures_every_cell_without_failures(ray_cluster: None, tmp_path: Path) -> None:
    rows = bench_serve([1, 256], requests=64, clients=4, repeats=1, work=tmp_path)
    assert [(r["learner"], r["rows"]) for r in rows] == [
        ("idle", 1),
        ("idle", 256),
        ("training", 1),
        ("training", 256),
    ]
    for r in rows:
        assert r["raw_torch_rows_s"] > 1000 and r["bare"]["rps"] > 0 and r["olsim"]["rps"] > 0
        assert r["bare"]["failed"] == 0 and r["olsim"]["failed"] == 0
        assert r["olsim"]["statuses"] == {"200": r["olsim"]["sent"]}
        assert r["ratio"] == r["olsim"]["rps"] / r["bare"]["rps"]
    table = render(rows, "olsim bench serve --requests 64", 4)
    assert table.startswith(START) and table.endswith(END) and table.count("\n| ") == 5
    assert table.count(": met") + table.count(": missed") == 2  # targets apply to the idle rows
