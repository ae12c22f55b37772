"""Human-readable rendering of a report.json."""

from __future__ import annotations

from typing import Any


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def accuracy_table(report: dict[str, Any]) -> str:
    """The accuracy matrix R[i][j] (rows: after training task i; columns: test accuracy on task j).

    >>> print(accuracy_table({"tasks": [{"name": "a"}, {"name": "b"}], "accuracy_matrix": [[1.0, 0.0]]}))
    after \\ on      a      b
    task 0 (a)  1.000  0.000
    """
    names = [t["name"] for t in report["tasks"]]
    rows = report["accuracy_matrix"]
    label_w = max([len(f"task {i} ({n})") for i, n in enumerate(names)] + [len("after \\ on")])
    col_w = max([len(n) for n in names] + [5])
    lines = ["after \\ on".ljust(label_w) + "".join(f"  {n:>{col_w}}" for n in names)]
    for i, row in enumerate(rows):
        lines.append(f"task {i} ({names[i]})".ljust(label_w) + "".join(f"  {a:>{col_w}.3f}" for a in row))
    return "\n".join(lines)


def render_text(report: dict[str, Any]) -> str:
    lines = [
        f"olsim run: scenario={report['scenario']} strategy={report['strategy']} seed={report['seed']}"
        + (" (TRUNCATED by --duration)" if report.get("truncated") else ""),
        "",
        accuracy_table(report),
        "",
        f"ACC {_fmt(report['acc'])}   BWT {_fmt(report['bwt'], True)}   FWT {_fmt(report['fwt'], True)}   "
        f"forgetting {_fmt(report['forgetting'])}",
        f"versions published {report['versions_published']}   replicas {report['replica_versions']}   "
        f"swap staleness ms p50 {_fmt(report['swap_staleness_ms']['p50'])} "
        f"p99 {_fmt(report['swap_staleness_ms']['p99'])}",
    ]
    gate = report.get("gate")
    if gate:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(gate["counts"].items())) or "none"
        lines.append(
            f"gate {gate['mode']} (forgetting budget {gate['forgetting_budget']:.2f})   "
            f"candidates {gate['candidates']}: {counts}   served version {report.get('served_version')}"
        )
    rollbacks = report.get("rollbacks") or []
    if rollbacks:
        lines.append(
            "rollbacks "
            + "; ".join(f"{r['previous']}->{r['version']} ({r['trigger']}: {r['reason']})" for r in rollbacks)
        )
    req = report.get("requests")
    if req:
        lat = req["latency_ms"]
        lines.append(
            f"requests {req['count']}   errors {req['errors']}   latency ms p50 {_fmt(lat['p50'])} "
            f"p99 {_fmt(lat['p99'])}   versions seen {len(req['versions_seen'])}"
        )
    return "\n".join(lines) + "\n"
