"""``olsim bench reliability``: every chaos scenario run for real, one table of what became of it.

Per scenario (a full ``olsim run`` each, one local Ray cluster for all, load on): records delivered,
events trained, events lost, events trained twice (the learner's ledger), duplicates skipped,
dead-lettered records, failed and retried requests out of those sent, the stream position each
fault was set for and struck at, recovery time after each, candidates the gate rejected, and
whether every promised outcome held.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from olsim.deploy.markdown import write_section
from olsim.deploy.run.cluster import connect_ray
from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.expect import gate_rejections
from olsim.deploy.scenario.spec import builtin_names, load_scenario

log = logging.getLogger(__name__)

START = "<!-- olsim bench reliability: start -->"
END = "<!-- olsim bench reliability: end -->"


def chaos_scenarios() -> list[str]:
    """Built-in scenarios with delivery chaos or process faults."""
    scenarios = {n: load_scenario(n) for n in builtin_names()}
    return [n for n, s in scenarios.items() if s.stream.chaos or s.faults]


def row(name: str, report: dict[str, Any]) -> dict[str, Any]:
    st, req = report["stream"], report.get("requests") or {}
    recoveries = [f["recovered_after_s"] for f in report.get("faults", [])]
    return {
        "scenario": name,
        "records": st["records"],
        "trained": st["events_trained"],
        "expected": st["events_expected"],
        "lost": st["events_lost"],
        "trained_twice": st["events_trained_twice"],
        "duplicates_skipped": st["duplicates_skipped"],
        "dead_lettered": st["dead_lettered"],
        "failed_requests": req.get("errors"),
        "retried_requests": req.get("retried"),
        "requests": req.get("count"),
        "struck": [(f["at"], f["offset"]) for f in report.get("faults", [])],
        "recovery_s": recoveries,
        "rejected": gate_rejections(report),
        "candidates": report["gate"]["candidates"],
        "versions": report["versions"]["latest"],
        "versions_lost": report["versions"]["lost"],
        "outcomes_ok": all(e["ok"] for e in report["expectations"]),
        "failed_outcomes": [e["name"] for e in report["expectations"] if not e["ok"]],
    }


def bench_reliability(names: list[str], out_dir: Path, load_rps: float) -> list[dict[str, Any]]:
    started = connect_ray(None)
    rows = []
    try:
        for name in names:
            log.warning("reliability: running %s", name)
            opts = RunOptions(report_dir=out_dir / name, load_rps=load_rps, metrics_port=0)
            rows.append(row(name, run(load_scenario(name), opts)))
    finally:
        if started:
            import ray

            ray.shutdown()
    return rows


def render(rows: list[dict[str, Any]], command: str) -> str:
    def rec(r: dict[str, Any]) -> str:
        s = r["recovery_s"]
        return "-" if not s else ", ".join("n/a" if v is None else f"{v:.1f}" for v in s)

    def struck(r: dict[str, Any]) -> str:
        return ", ".join(f"{at} -> {offset}" for at, offset in r.get("struck", [])) or "-"

    lines = [
        START,
        f"Command: `{command}` (each scenario's own seed, rate and faults; 2-core machine).",
        "",
        "| scenario | records in | events trained / expected | lost | trained twice | duplicates skipped "
        "| dead-lettered | failed / retried / sent requests | faults: set for -> struck at | recovery s "
        "| rejected / candidates | versions lost / published | outcomes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "all hold" if r["outcomes_ok"] else "FAILED: " + ", ".join(r["failed_outcomes"])
        lines.append(
            f"| {r['scenario']} | {r['records']} | {r['trained']} / {r['expected']} | {r['lost']} "
            f"| {r['trained_twice']} | {r['duplicates_skipped']} | {r['dead_lettered']} "
            f"| {r['failed_requests']} / {r.get('retried_requests')} / {r['requests']} "
            f"| {struck(r)} | {rec(r)} "
            f"| {r['rejected']} / {r['candidates']} | {r['versions_lost']} / {r['versions']} | {ok} |"
        )
    lines.append(END)
    return "\n".join(lines)


def write(rows: list[dict[str, Any]], path: Path, command: str) -> None:
    write_section(path, render(rows, command), title="Measured (`olsim bench reliability`)")
