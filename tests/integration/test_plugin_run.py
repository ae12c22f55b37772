"""The example plugin package run for real: its CNN, its rotated-digits task source and its strategy,
on Ray and Serve, with /predict answered over HTTP while versions swap and the per-task gauges scraped.

The session's Ray was started by the test harness without the plugin code, so this also shows the
code reaching every actor and replica when olsim did not start Ray itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import olsim
from olsim.deploy.bench.forgetting import run_one

EXAMPLE = Path(__file__).parents[2] / "examples" / "rotated-digits.yaml"


def _scenario() -> Any:
    s = olsim.resolve(olsim.load_scenario(str(EXAMPLE)))
    return s.model_copy(update={"stream": s.stream.model_copy(update={"rate": 2000.0})})  # ~5 s of stream


@pytest.fixture(scope="module")
def example(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    scenario = _scenario()
    rows = np.concatenate([t.test.x for t in scenario.stream.build_tasks(scenario.seed)])
    live: dict[str, Any] = {}

    def finished(report: dict[str, Any]) -> None:
        text = httpx.get(report["metrics_endpoint"], timeout=10).text
        live["metrics"] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        live["predict"] = httpx.post(
            "http://127.0.0.1:8000/predict", json={"inputs": rows[:16].tolist()}, timeout=10
        )

    opts = olsim.RunOptions(report_dir=tmp_path_factory.mktemp("example"), metrics_port=0, load_rps=40.0)
    report = olsim.run(scenario, opts, on_finished=finished)  # the typed report
    assert isinstance(report, olsim.RunReport)
    return report.model_dump(), live


def test_the_example_trains_and_serves_like_the_offline_learner(example: tuple[dict, dict]) -> None:
    report, _ = example
    assert report["strategy"] == "recent-replay" and not report["truncated"]
    assert [t["name"] for t in report["tasks"]] == ["rot0", "rot90", "rot180", "rot270"]
    offline = run_one(_scenario(), seed=0)["class"]["accuracy_matrix"]
    np.testing.assert_allclose(report["accuracy_matrix"], offline, atol=1e-9)
    assert all(e["ok"] for e in report["expectations"]), report["expectations"]


def test_predictions_flow_over_http_while_versions_swap(example: tuple[dict, dict]) -> None:
    report, live = example
    req = report["requests"]
    assert req["count"] > 50 and req["errors"] == 0, req["by_status"]
    assert len(req["versions_seen"]) >= 3
    assert report["replicas_converged"] and set(report["replica_versions"].values()) == {
        report["versions_published"]
    }
    body = live["predict"].json()
    assert live["predict"].status_code == 200 and body["model_version"] == report["versions_published"]
    assert len(body["predictions"]) == 16 and all(0 <= p < 10 for p in body["predictions"])


def test_per_task_gauges_are_scraped_for_the_served_version(example: tuple[dict, dict]) -> None:
    report, live = example
    m, last = live["metrics"], report["accuracy_matrix"][-1]
    for task in range(4):
        assert m[("olsim_task_accuracy", (("task", str(task)),))] == pytest.approx(last[task])
    assert m[("olsim_model_version", ())] == report["versions_published"]
