"""``olsim bench scale`` at a tiny size (the real figures come from the command itself): replicas of
the Predictor on the session's Ray, measured with hey and real swaps; evaluation cost per task count."""

from __future__ import annotations

from pathlib import Path

from olsim.deploy.bench.scale import END, START, evaluation_scale, render, serving_scale
from olsim.deploy.scenario.spec import load_scenario


def test_serving_rows_measure_throughput_and_every_swap(ray_cluster: None, tmp_path: Path) -> None:
    rows = serving_scale(
        load_scenario("split-digits"), [1, 2], tmp_path, requests=200, clients=4, repeats=1, publishes=3
    )
    assert [r["replicas"] for r in rows] == [1, 2]
    for r in rows:
        assert r["rps"] > 0 and r["failed"] == 0 and r["sent"] == 200
        assert r["swaps_acked"] == r["swaps_expected"] == 3 * r["replicas"]  # every replica, every version
        assert 0 <= r["staleness_ms"]["p50"] <= r["staleness_ms"]["p99"] <= r["staleness_ms"]["max"] < 5000
    table = render(rows, [], "olsim bench scale --requests 200", 4)
    assert table.startswith(START) and table.endswith(END) and table.count("\n| ") == 1 + 2


def test_evaluation_cost_grows_with_the_tasks() -> None:
    rows = evaluation_scale([2, 8], versions=3)
    small, large = rows
    assert (small["tasks"], large["tasks"]) == (2, 8)
    assert large["test_rows"] == 4 * small["test_rows"] and large["held_out_bytes"] > small["held_out_bytes"]
    assert large["scrape_bytes"] > small["scrape_bytes"]  # one accuracy and one forgetting series per task
    assert all(r[k] > 0 for r in rows for k in ("score_ms", "gate_ms", "export_ms", "scrape_ms"))
    table = render([], rows, "olsim bench scale --replicas --tasks 2 8", 16)
    assert table.count("\n| ") == 1 + 2 and "| 8 | " in table
