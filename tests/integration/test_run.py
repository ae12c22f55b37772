"""A real run: Ray, Serve over HTTP, the learner publishing, replicas swapping, Prometheus scraped.

Naive and replay run on the same seed in one shared cluster. During each run a load thread sends
/predict requests over loopback; after each run (before teardown) the test scrapes the metrics
endpoint and sends hostile requests to the live replicas.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from olsim.deploy.bench.forgetting import run_one
from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.spec import load_scenario

SEED = 0


def _scenario(strategy: str, gate: str = "off") -> Any:
    """Gate off by default: these runs watch forgetting happen (and must equal the gate-less bench)."""
    s = load_scenario("split-digits").with_strategy(strategy)
    fast = s.stream.model_copy(update={"rate": 2000.0})  # ~5.4 s of stream instead of ~27 s
    return s.model_copy(
        update={"stream": fast, "seed": SEED, "gate": s.gate.model_copy(update={"mode": gate})}
    )


def _live_checks(report: dict[str, Any], out: dict[str, Any]) -> None:
    text = httpx.get(report["metrics_endpoint"], timeout=10).text
    out["metrics"] = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    base = "http://127.0.0.1:8000"
    bad = {
        "wrong width": {"inputs": [[0.1] * 63]},
        "not numbers": {"inputs": [["a"] * 64]},
        "empty": {"inputs": []},
        "too many rows": {"inputs": [[0.1] * 64] * 1025},
    }
    out["bad"] = {k: httpx.post(f"{base}/predict", json=v, timeout=10) for k, v in bad.items()}
    nan_body = '{"inputs": [[NaN' + ", 0.1" * 63 + "]]}"
    out["bad"]["nan"] = httpx.post(
        f"{base}/predict", content=nan_body, headers={"content-type": "application/json"}, timeout=10
    )
    out["after"] = httpx.post(f"{base}/predict", json={"inputs": [[0.1] * 64]}, timeout=10)
    out["healthz"] = httpx.get(f"{base}/healthz", timeout=10)


class Client(threading.Thread):
    """A client that keeps sending /predict, one request at a time, recording (unix time, status,
    Retry-After) until it has seen the app gone (404 or no answer) for 1 s, or 60 s have passed."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: list[tuple[float, int, str | None]] = []  # status 0: no HTTP answer

    def run(self) -> None:
        gone_since, deadline = None, time.monotonic() + 60
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline and (gone_since is None or time.monotonic() - gone_since < 1):
                try:
                    r = client.post("http://127.0.0.1:8000/predict", json={"inputs": [[0.1] * 64]})
                    status, retry = r.status_code, r.headers.get("retry-after")
                except httpx.HTTPError:
                    status, retry = 0, None
                self.seen.append((time.time(), status, retry))
                if status in (0, 404) and gone_since is None:
                    gone_since = time.monotonic()
                time.sleep(0.01)


def _run(
    strategy: str, tmp: Path, gate: str = "off", client: Client | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    live: dict[str, Any] = {}

    def finished(report: dict[str, Any]) -> None:
        _live_checks(report, live)
        if client is not None:  # it keeps sending while the run tears down
            client.start()

    opts = RunOptions(report_dir=tmp / f"{strategy}-{gate}", metrics_port=0, load_rps=40.0)
    report = run(_scenario(strategy, gate), opts, on_finished=finished)
    if client is not None:
        client.join()
        live["client"] = client.seen
    return report, live


@pytest.fixture(scope="module")
def runs(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    tmp = tmp_path_factory.mktemp("runs")
    out = {"naive": _run("naive", tmp), "replay": _run("replay", tmp, client=Client())}
    out["naive-gated"] = _run("naive", tmp, gate="on")
    return out


@pytest.mark.parametrize("strategy", ["naive", "replay"])
def test_report_has_the_contract_fields(
    runs: dict, strategy: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    report, _ = runs[strategy]
    for key in (
        "scenario",
        "strategy",
        "seed",
        "tasks",
        "accuracy_matrix",
        "acc",
        "bwt",
        "fwt",
        "forgetting",
        "versions_published",
        "swaps",
        "requests",
    ):
        assert key in report
    assert report["strategy"] == strategy and report["seed"] == SEED and not report["truncated"]
    assert len(report["accuracy_matrix"]) == 5 and all(len(r) == 5 for r in report["accuracy_matrix"])
    # every task end publishes, plus every publish_every steps
    assert report["versions_published"] >= 5 + report["learner"]["steps"] // 20


@pytest.mark.parametrize("strategy", ["naive", "replay"])
def test_requests_never_fail_and_versions_advance(runs: dict, strategy: str) -> None:
    report, _ = runs[strategy]
    req = report["requests"]
    assert req["count"] > 50 and req["errors"] == 0, req["by_status"]
    seen = req["versions_seen"]
    assert len(seen) >= 3 and seen[-1] == report["versions_published"]
    # per replica, in send order, the version never goes backwards
    by_replica: dict[str, list[int]] = {}
    for _sent, _ms, status, version, replica, *_ in sorted(req["samples"]):
        assert status == 200
        by_replica.setdefault(replica, []).append(version)
    assert len(by_replica) >= 2
    for versions in by_replica.values():
        assert versions == sorted(versions) and versions[-1] > versions[0]


@pytest.mark.parametrize("strategy", ["naive", "replay"])
def test_every_replica_reaches_the_last_version_in_place(runs: dict, strategy: str) -> None:
    report, _ = runs[strategy]
    replicas = report["replica_versions"]
    assert len(replicas) >= 2 and report["replicas_converged"]
    assert set(replicas.values()) == {report["versions_published"]}
    # each replica swapped many times without restarting: one replica id, many versions acknowledged
    for rid in replicas:
        acked = [s["version"] for s in report["swaps"] if rid in s["applied"]]
        assert len(acked) >= 5 and acked == sorted(acked)
    # every acknowledgement says what the swap fetched and held: at most the whole MLP (a training
    # step changes every weight), never more than two versions' worth at the peak
    model = sum(4 * n for n in (64 * 256, 256, 256 * 10, 10))
    for row in report["swaps"]:
        assert set(row["moved_bytes"]) == set(row["held_bytes"]) == set(row["applied"])
        assert all(0 <= b <= model for b in row["moved_bytes"].values())  # 0: a republished state
        assert all(0 < b <= 2 * model for b in row["held_bytes"].values())
    assert sum(b > 0.9 * model for row in report["swaps"] for b in row["moved_bytes"].values()) >= 10


@pytest.mark.parametrize("strategy", ["naive", "replay"])
def test_scrape_endpoint_matches_the_report(runs: dict, strategy: str) -> None:
    report, live = runs[strategy]
    m = live["metrics"]
    last_row = report["accuracy_matrix"][-1]
    served = report["timeline"][-1]  # the last version, served at the end (gate off)
    assert served["version"] == report["served_version"]
    for task in range(5):
        assert m[("olsim_task_accuracy", (("task", str(task)),))] == pytest.approx(last_row[task])
        best = max(v["accuracies"][task] for v in report["timeline"])  # every version scored, up to it
        forgetting = m[("olsim_task_forgetting", (("task", str(task)),))]
        assert forgetting == pytest.approx(best - served["accuracies"][task])
    assert m[("olsim_model_version", ())] == report["versions_published"]
    assert m[("olsim_average_accuracy", ())] == pytest.approx(report["acc"])
    assert m[("olsim_learner_samples_total", ())] == report["learner"]["samples"]
    assert m[("olsim_swap_staleness_seconds_count", ())] >= 2 * 5
    assert report["gate"]["counts"] == {"accepted/gate_off": report["versions_published"]}
    gate_off = (("decision", "accepted"), ("reason", "gate_off"))
    assert m[("olsim_gate_decisions_total", gate_off)] == report["versions_published"]


def test_gate_keeps_forgetting_versions_away_from_replicas(runs: dict) -> None:
    """Naive with the gate on: every candidate that forgets the old tasks is rejected, counted and listed;
    the served versions never lose more old-task accuracy than the budget allows (plus val/test noise)."""
    report, live = runs["naive-gated"]
    gate, m = report["gate"], live["metrics"]
    rejected = gate["counts"].get("rejected/forgetting_budget", 0)
    assert rejected >= 10 and len(gate["rejected"]) == rejected
    assert all(r["task"] >= 1 and "budget" in r["detail"] for r in gate["rejected"])
    assert gate["counts"]["accepted/passed"] == report["versions_published"] == report["served_version"]
    assert (
        m[("olsim_gate_decisions_total", (("decision", "rejected"), ("reason", "forgetting_budget")))]
        == rejected
    )
    assert m[("olsim_model_version", ())] == report["served_version"]
    timeline = report["timeline"]  # every accepted version, scored on the test splits
    for prev, cur in pairwise(timeline):
        old = range(cur["task"])
        if len(old):
            drop = sum(max(0.0, prev["accuracies"][j] - cur["accuracies"][j]) for j in old) / len(old)
            assert drop <= gate["forgetting_budget"] + 0.15, (prev["version"], cur["version"], drop)
    # the matrix describes what was served: the old task stays learned, the rejected ones never arrive
    assert report["accuracy_matrix"][-1][0] > 0.9 and report["bwt"] > -0.1
    assert report["requests"]["errors"] == 0 and report["replicas_converged"]


@pytest.mark.parametrize("strategy", ["naive", "replay"])
def test_in_process_benchmark_matches_the_served_run(runs: dict, strategy: str) -> None:
    report, _ = runs[strategy]
    bench = run_one(_scenario(strategy), SEED)
    assert bench["class"]["accuracy_matrix"] == report["accuracy_matrix"]
    assert bench["task"]["accuracy_matrix"] == report["task_il"]["accuracy_matrix"]


def test_naive_forgets_replay_much_less(runs: dict) -> None:
    naive, replay = runs["naive"][0], runs["replay"][0]
    assert naive["acc"] < 0.3 and naive["bwt"] < -0.8
    assert replay["acc"] > naive["acc"] + 0.3
    assert replay["bwt"] > naive["bwt"] + 0.4
    assert replay["forgetting"] < naive["forgetting"] - 0.4


def test_bad_input_gets_422_with_a_message_and_replicas_keep_serving(runs: dict) -> None:
    _, live = runs["naive"]
    needles = {
        "wrong width": "63 features; the model expects 64",
        "not numbers": "valid number",
        "empty": "at least 1 item",
        "too many rows": "at most 1024",
        "nan": "finite number",
    }
    for name, needle in needles.items():
        r = live["bad"][name]
        assert r.status_code == 422, (name, r.text)
        assert needle in r.json()["detail"], (name, r.text)
    assert live["after"].status_code == 200 and live["after"].json()["model_version"] >= 1
    assert live["healthz"].json()["status"] == "ok"


def test_a_server_going_away_says_so_with_503_and_retry_after(runs: dict) -> None:
    """A client still sending when the run ends sees answers, then 503 + Retry-After for the drain
    window (serving.drain_s), and only then the application gone (here the session's Ray keeps its
    HTTP port, so gone is 404; under `olsim run`, which takes its own Ray down, the port closes)."""
    report, live = runs["replay"]
    seen = live["client"]
    statuses = [s for _, s, _ in seen]
    assert statuses[0] == 200 and 503 in statuses, statuses
    first_503 = statuses.index(503)
    assert all(s == 200 for s in statuses[:first_503])  # nothing else before the drain
    gone = next(i for i, s in enumerate(statuses) if s in (0, 404))
    last_200 = max(i for i, s in enumerate(statuses) if s == 200)
    # replicas drain together (a 200 from the other one may land just after the first 503), and
    # from then on every answer is a 503 until the application is gone
    assert last_200 < gone and seen[last_200][0] - seen[first_503][0] < 0.5
    assert all(s == 503 for s in statuses[last_200 + 1 : gone]), statuses[first_503:gone]
    assert all(r == "1" for _, s, r in seen if s == 503)  # serving.retry_after_s
    drain_s = report["scenario_config"]["serving"]["drain_s"]
    assert seen[gone][0] - seen[first_503][0] >= 0.8 * drain_s  # the 503s last the drain window
