"""report.html: SVG plots written from report.json alone, `olsim report DIR`, and the page
rendered in headless Chromium with every image loaded."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import PageCheck
from olsim.deploy.cli import main
from olsim.deploy.report.model import RunReport
from olsim.deploy.report.render import PLOTS, served_accuracy_series, write_html
from olsim.learner.metrics import forgetting_per_task


def _report() -> dict[str, Any]:
    """A small report.json (a valid RunReport): 3 tasks, 4 versions, a rollback, a chaos event, load
    samples; serving starts when the run does."""
    t0 = 1_000_000.0
    acc = {1: [0.9, 0.0, 0.0], 2: [0.5, 0.95, 0.0], 3: [0.3, 0.6, 0.9], 4: [0.1, 0.2, 0.97]}
    task = {1: 0, 2: 1, 3: 2, 4: 2}
    timeline = [
        {
            "version": v,
            "published_at": t0 + 2 * v,
            "task": task[v],
            "task_end": True,
            "step": 10 * v,
            "accuracies": a,
            "task_il": None,
            "routing": None,
        }
        for v, a in acc.items()
    ]
    swaps = [
        {"generation": v, "version": v, "kind": "publish", "published_at": t0 + 2 * v, "applied": {}}
        for v in acc
    ] + [{"generation": 5, "version": 3, "kind": "rollback", "published_at": t0 + 9.5, "applied": {}}]
    samples = [[t0 + 1 + 0.05 * i, 5.0 + (i % 7), 200 if i % 50 else 503, 1, "r"] for i in range(200)]
    matrix = [acc[1], acc[2], acc[3]]
    return {
        "scenario": "split-digits",
        "strategy": "naive",
        "seed": 0,
        "started_at": t0,
        "duration_s": 12.0,
        "truncated": False,
        "run_id": "abcd1234",
        "serving_started_at": t0,
        "tasks": [{"index": i, "name": n} for i, n in enumerate(("a", "b", "c"))],
        "segments": [0, 1, 2],
        "tasks_completed": 3,
        "baseline_accuracy": [0.1, 0.1, 0.1],
        "unserved_rows": [],
        "replicas_converged": True,
        "gate": {
            "mode": "on",
            "forgetting_budget": 0.2,
            "candidates": 4,
            "counts": {"accepted/passed": 4},
            "rejected": [],
        },
        "boundaries": "announced",
        "drifts_detected": [],
        "learner": {"steps": 40, "samples": 1280, "offset": 1280, "total": 1280, "prequential_accuracy": 0.9},
        "metrics_endpoint": "http://127.0.0.1:9464/metrics",
        "ingress": "haproxy",
        "admin_token_file": None,
        "scenario_config": {"name": "split-digits"},
        "load_rps": 20.0,
        "stream": {
            "records": 1280,
            "consumed": 1280,
            "events_expected": 1280,
            "events_trained": 1280,
            "injected_trained": 0,
            "events_lost": 0,
            "events_trained_twice": 0,
            "duplicates_skipped": 0,
            "dead_lettered": 0,
            "dead_letters": {},
            "dead_letter_examples": [],
            "learner_restarts": 0,
            "checkpoints": 5,
        },
        "faults": [],
        "faults_unfired": [],
        "versions": {"latest": 4, "retained": 4, "lost": 0, "unscored": 0},
        "expectations": [],
        "accuracy_matrix": matrix,
        "acc": 0.6,
        "bwt": -0.4,
        "fwt": 0.0,
        "forgetting": 0.42,
        "versions_published": 4,
        "served_version": 3,
        "replica_versions": {"r": 3},
        "swap_staleness_ms": {"p50": 5.0, "p99": 9.0},
        "swaps": swaps,
        "rollbacks": [
            {
                "generation": 5,
                "version": 3,
                "previous": 4,
                "at": t0 + 9.5,
                "kind": "rollback",
                "trigger": "manual",
                "reason": "test",
            }
        ],
        "timeline": timeline,
        "chaos": [{"at": t0 + 7.0, "kind": "burst", "position": 350}],
        "requests": {
            "count": 200,
            "errors": 4,
            "by_status": {"200": 196, "503": 4},
            "retried": 0,
            "retried_by_reason": {},
            "latency_ms": {"p50": 8.0, "p99": 11.0},
            "versions_seen": [1],
            "samples": samples,
        },
    }


def test_the_fixture_is_a_valid_report() -> None:
    assert RunReport.model_validate(_report()).acc == 0.6


def test_forgetting_per_task_from_the_matrix() -> None:
    assert forgetting_per_task(_report()["accuracy_matrix"]) == pytest.approx({0: 0.6, 1: 0.35})
    assert forgetting_per_task([[1.0]]) == {}
    # task 0 comes back in segment 2: its forgetting counts from its best since first learnt
    rr = [[0.9, 0.1, 0.0], [0.3, 0.8, 0.0], [0.95, 0.5, 0.1], [0.6, 0.4, 0.9]]
    assert forgetting_per_task(rr, [0, 1, 0, 2]) == pytest.approx({0: 0.35, 1: 0.4})


def test_served_accuracy_follows_swaps_including_rollbacks() -> None:
    series = served_accuracy_series(_report())
    assert [s.name for s in series] == ["task 0 (a)", "task 1 (b)", "task 2 (c)"]
    assert list(series[0].y) == [0.9, 0.5, 0.3, 0.1, 0.3]  # the rollback restores v3's accuracy
    assert list(series[2].x) == [6.0, 8.0, 9.5]  # task 2 starts with the first version trained on it


def test_write_html_writes_every_plot_as_valid_svg(tmp_path: Path) -> None:
    html = write_html(_report(), tmp_path).read_text()
    for name in PLOTS:
        svg = ET.parse(tmp_path / "plots" / name).getroot()
        assert svg.tag.endswith("svg") and float(svg.get("width", 0)) > 0
        assert f'src="plots/{name}"' in html
    over_time = (tmp_path / "plots" / "accuracy-over-time.svg").read_text()
    assert "rollback to v3" in over_time and "chaos: burst" in over_time
    assert "failed request" in (tmp_path / "plots" / "latency.svg").read_text()


def test_no_latency_plot_without_load(tmp_path: Path) -> None:
    report = _report()
    write_html(report, tmp_path)
    del report["requests"]
    html = write_html(report, tmp_path).read_text()
    assert "latency.svg" not in html and not (tmp_path / "plots" / "latency.svg").exists()


def test_page_loads_in_chromium_with_every_image(tmp_path: Path, page_check: PageCheck) -> None:
    page = write_html(_report(), tmp_path)
    assert page_check(page) == {"images": 4, "broken": 0}
    (tmp_path / "plots" / "forgetting.svg").unlink()  # the check can fail: a missing plot is seen
    assert page_check(page) == {"images": 4, "broken": 1}


def test_olsim_report_regenerates_from_report_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.txt").read_text().startswith(
        "olsim run"
    )
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOTS)
    shutil.rmtree(tmp_path / "plots")
    assert main(["report", str(tmp_path)]) == 0  # rerunnable: the plots come back
    assert len(list((tmp_path / "plots").iterdir())) == 4


@pytest.mark.parametrize("content", [None, "{not json", '{"scenario": 1}'])
def test_olsim_report_bad_input_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    if content is not None:
        (tmp_path / "report.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olsim: error:") and err.count("\n") == 1
