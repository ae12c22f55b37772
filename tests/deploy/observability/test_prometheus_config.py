"""The shipped Prometheus config and rules, checked by the real promtool (unit tests included)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from olsim.deploy.observability.dashboards import DASHBOARDS
from olsim.deploy.observability.prometheus_server import PrometheusError, binary, shipped, write_config
from olsim.learner.actors.telemetry import Telemetry

RULES = shipped("rules", "olsim.rules.yml")
RULE_TESTS = shipped("tests", "olsim.test.yml")


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    try:
        exe = binary("promtool")
    except PrometheusError as exc:  # a failure, not a skip: CI installs it (make system)
        pytest.fail(str(exc))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_shipped_config_and_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in _ok(_promtool("check", "config", shipped("prometheus.yml")))
    assert "SUCCESS: 16 rules found" in _ok(_promtool("check", "rules", RULES))


def test_a_runs_written_config_passes_promtool_check(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"olsim": "127.0.0.1:19464", "ray": "127.0.0.1:18090"}, 1.0)
    _ok(_promtool("check", "config", path))
    jobs = {
        j["job_name"]: j["static_configs"][0]["targets"]
        for j in yaml.safe_load(path.read_text())["scrape_configs"]
    }
    assert jobs == {"olsim": ["127.0.0.1:19464"], "ray": ["127.0.0.1:18090"]}


def test_write_config_refuses_an_unknown_job(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no scrape job named"):
        write_config(tmp_path, {"nope": "127.0.0.1:1"})


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in _ok(_promtool("test", "rules", RULE_TESTS))


def test_rule_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests can fail: loosen one alert's threshold and promtool must say so."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert "max by (task) (olsim_task_forgetting) > 0.3" in text
    (tmp_path / "rules" / "olsim.rules.yml").write_text(
        text.replace("(olsim_task_forgetting) > 0.3", "(olsim_task_forgetting) > 0.6")
    )
    shutil.copyfile(RULE_TESTS, tmp_path / "tests" / "olsim.test.yml")
    proc = _promtool("test", "rules", tmp_path / "tests" / "olsim.test.yml")
    assert proc.returncode != 0 and "OlsimTaskForgetting" in proc.stdout + proc.stderr


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_waits_and_is_unit_tested() -> None:
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    assert {
        "OlsimTaskForgetting",
        "OlsimServedModelStale",
        "OlsimGateRejectingRepeatedly",
        "OlsimSwapStalenessHigh",
        "OlsimPredictErrors",
        "OlsimLearnerStalled",
    } <= set(alerts)
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested: dict[str, list[list[dict]]] = {}  # alert -> its expected alerts at every eval time
    for t in tests:
        for a in t.get("alert_rule_test", []):
            tested.setdefault(a["alertname"], []).append(a["exp_alerts"])
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name} has no `for:`"
        assert rule["labels"]["severity"] in ("warning", "critical")
        cases = tested.get(name, [])
        assert any(cases), f"{name}: no unit test where it fires"
        assert any(not c for c in cases), f"{name}: no unit test where it stays silent"


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(olsim_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_every_olsim_metric_queried_is_exported() -> None:
    """Rules and dashboards only name metrics the telemetry registry really has (typos fail here)."""
    t = Telemetry()
    exported = {m.name for m in t.registry.collect()} | {f"{m.name}_total" for m in t.registry.collect()}
    exprs = [r["expr"] for r in _rules()]
    exprs += [expr for d in DASHBOARDS for p in d.panels for expr, _ in p.targets]
    exprs += [a.expr for d in DASHBOARDS for a in d.annotations]
    queried = set().union(*map(_metric_names, exprs))
    assert len(queried) > 15
    assert queried <= exported, sorted(queried - exported)
    recorded = {r["record"] for r in _rules() if "record" in r}
    used = {n for e in exprs for n in re.findall(r"\bolsim:[a-z0-9_:]+", e)}
    assert used <= recorded, sorted(used - recorded)


def test_the_prometheus_olsim_starts_has_no_lifecycle_api(tmp_path: Path) -> None:
    """Nothing olsim does needs /-/quit or /-/reload (it stops Prometheus with SIGTERM): without
    --web.enable-lifecycle, anyone who reaches the port cannot shut it down or reload it."""
    import httpx

    from olsim.deploy.net import free_port
    from olsim.deploy.observability.prometheus_server import PrometheusServer

    prom = PrometheusServer(tmp_path, {"olsim": "127.0.0.1:1"}, port=free_port(), scrape_interval_s=1.0)
    prom.start()
    try:
        for path in ("/-/quit", "/-/reload"):
            r = httpx.post(f"{prom.url}{path}", timeout=10)
            assert r.status_code == 403 and "not enabled" in r.text, (path, r.status_code, r.text)
        assert prom.proc is not None and prom.proc.poll() is None  # still running
    finally:
        prom.stop()
