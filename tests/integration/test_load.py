"""``olsim load`` for real: Locust (closed loop) and the open-loop generator against an olsim it
starts itself (shared Ray cluster), while the learner keeps publishing."""

from __future__ import annotations

from pathlib import Path

import pytest

from olsim.deploy.load.session import LoadOptions, load


def _check_common(report: dict, out: Path) -> None:
    assert report["count"] > 50 and report["errors"] == 0 and report["by_status"] == {"200": report["count"]}
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    # the learner published during the load: users were answered by several versions, and the
    # registry's own swap times (olsim load started olsim) are there to mark the plot
    assert len(report["versions_served"]) >= 2 and len(report["swaps_observed"]) >= 2
    assert report["registry_swaps"] and all(
        s["kind"] in {"publish", "rollback"} for s in report["registry_swaps"]
    )
    assert (out / "load.json").exists() and (out / "load.txt").read_text().startswith("olsim load:")
    svg = (out / "load-latency.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<line") > len(report["registry_swaps"])
    assert (out / "run" / "report.json").exists()  # the olsim it started wrote its own report


def test_locust_users_send_single_and_batched_requests(ray_cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "closed"
    opts = LoadOptions(
        scenario="split-digits", users=8, duration_s=8, batch_rows=16, batch_share=0.3, out=out
    )
    report = load(opts)
    _check_common(report, out)
    assert report["mode"] == "closed" and report["users"] == 8
    assert set(report["by_rows"]) == {"1", "16"} and report["by_rows"]["16"]["count"] > 10
    assert report["achieved_rps"] > 10


def test_open_loop_holds_its_arrival_rate(ray_cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "open"
    report = load(LoadOptions(scenario="split-digits", mode="open", rps=40, duration_s=8, out=out))
    _check_common(report, out)
    assert report["requested_rps"] == 40 and report["achieved_rps"] == pytest.approx(40, rel=0.1)
    assert set(report["by_rows"]) == {"1"}
