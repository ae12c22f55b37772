"""``olsim bench serve`` end to end at a tiny size (the real figures come from the command itself):
hey against bare uvicorn and olsim's Serve path, with and without a learner training."""

from __future__ import annotations

from pathlib import Path

from olsim.deploy.bench.serve import END, START, bare_uvicorn, bench_serve, overload, render, render_overload


def test_bench_serve_compares_like_with_like_in_every_cell(tmp_path: Path) -> None:
    # each (ingress mode, replica count) starts its own Ray in a subprocess (free ports, beside the
    # session's): the default ingress here; `--ingress proxy` runs the very same code with another mode
    rows = bench_serve(
        [1, 256], requests=64, clients=4, repeats=1, work=tmp_path, modes=["haproxy"], processes=[1, 2]
    )
    assert [(r["processes"], r["learner"], r["rows"]) for r in rows] == [
        (n, learner, size) for n in (1, 2) for learner in ("idle", "training") for size in (1, 256)
    ]
    for r in rows:
        assert r["raw_torch_rows_s"] > 1000 and r["bare"]["rps"] > 0 and r["bare"]["failed"] == 0
        assert set(r["olsim"]) == {"haproxy"}
        for mode, o in r["olsim"].items():
            assert o["rps"] > 0 and o["failed"] == 0 and o["statuses"] == {"200": o["sent"]}
            assert r["ratio"][mode] == o["rps"] / r["bare"]["rps"]
    table = render(rows, "olsim bench serve --requests 64", 4)
    assert table.startswith(START) and table.endswith(END) and table.count("\n| ") == 1 + 8
    # targets apply to the default ingress with the learner idle, for each process count
    assert table.count(": met") + table.count(": missed") == 4
    assert all("| haproxy |" in line for line in table.splitlines() if ": met" in line or ": missed" in line)


def test_the_bare_baseline_runs_as_many_processes_as_it_is_asked_for() -> None:
    import httpx

    with bare_uvicorn(2) as url:  # a new connection per request: the kernel spreads them
        workers = {
            httpx.post(url, json={"inputs": [[0.0] * 64]}, timeout=10).headers["x-olsim-replica"]
            for _ in range(40)
        }
    assert len(workers) == 2, workers


def test_bench_serve_overload_table(tmp_path: Path) -> None:
    rows = overload([4, 64], requests=128, work=tmp_path)
    assert [r["clients"] for r in rows] == [4, 64]
    for r in rows:  # within capacity: everything answered 200, nothing dropped
        assert r["errors"] == 0 and r["statuses"] == {"200": 128}, r
    table = render_overload(rows)
    assert table.count("\n| ") == 1 + 2 and "| 64 |" in table  # header + one row per count
