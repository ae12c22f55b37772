"""Human-readable renderings of a report.json: report.txt, and report.html with SVG plots."""

from __future__ import annotations

import html
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from olsim.deploy.report.plots import Marker, Series, bar_chart, heatmap, line_chart
from olsim.learner.metrics import forgetting_per_task


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _counts(counts: dict[str, int]) -> str:
    """``{"b": 2, "a": 1}`` -> ``"a 1, b 2"`` (``"none"`` when empty)."""
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


def row_labels(report: dict[str, Any]) -> list[str]:
    """What each accuracy-matrix row is the end of: a task, or a segment when a task comes back.

    >>> row_labels({"tasks": [{"name": "a"}, {"name": "b"}], "accuracy_matrix": [[1, 0]] * 3,
    ...             "segments": [0, 1, 0]})
    ['segment 0: task 0 (a)', 'segment 1: task 1 (b)', 'segment 2: task 0 (a)']
    """
    names = [t["name"] for t in report["tasks"]]
    n = len(report["accuracy_matrix"])
    segments = report.get("segments") or list(range(len(names)))
    if segments == list(range(len(names))):
        return [f"task {i} ({names[i]})" for i in range(n)]
    return [f"segment {s}: task {t} ({names[t]})" for s, t in enumerate(segments[:n])]


def accuracy_table(report: dict[str, Any], rows: list[list[float]] | None = None) -> str:
    """The accuracy matrix R[i][j] (rows: after training task/segment i; columns: test accuracy on task j),
    or another matrix with the same rows and columns (``rows``: bits per byte).

    >>> print(accuracy_table({"tasks": [{"name": "a"}, {"name": "b"}], "accuracy_matrix": [[1.0, 0.0]]}))
    after \\ on      a      b
    task 0 (a)  1.000  0.000
    """
    names = [t["name"] for t in report["tasks"]]
    rows = report["accuracy_matrix"] if rows is None else rows
    labels = row_labels(report)
    label_w = max([len(x) for x in labels] + [len("after \\ on")])
    col_w = max([len(n) for n in names] + [5])
    lines = ["after \\ on".ljust(label_w) + "".join(f"  {n:>{col_w}}" for n in names)]
    for label, row in zip(labels, rows, strict=True):
        lines.append(label.ljust(label_w) + "".join(f"  {a:>{col_w}.3f}" for a in row))
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
    bits = report.get("bits_per_byte")
    if bits and bits["matrix"]:
        rise = ", ".join(
            f"{n} {r:+.2f}" for n, r in zip(bits["tasks"], bits["rise"], strict=True) if r is not None
        )
        lines += [
            "",
            "bits per byte (held-out, lower is better)",
            accuracy_table(report, bits["matrix"]),
            f"rise since last trained: {rise or 'none yet'}   mean {_fmt(bits['mean_rise'], True)}",
            "",
        ]
    gate = report.get("gate")
    if gate:
        counts = _counts(gate["counts"])
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
    st = report.get("stream")
    if st:
        dead = _counts(st["dead_letters"])
        lines.append(
            f"stream {st['consumed']}/{st['records']} records   events trained {st['events_trained']}"
            f"/{st['events_expected']}   lost {st['events_lost']}   "
            f"trained twice {st['events_trained_twice']}   duplicates skipped {st['duplicates_skipped']}   "
            f"dead letters {st['dead_lettered']} ({dead})"
        )
    if report.get("chaos"):
        lines.append("chaos " + ", ".join(f"{c['kind']}@{c['position']}" for c in report["chaos"]))
    for e in report.get("expectations", []):
        why = f" ({e['detail']})" if e.get("detail") else ""
        verdict = {True: "ok", False: "FAILED", None: "not checked"}[e["ok"]]
        lines.append(f"expect {e['name']} {e['expected']}: {e['value']} {verdict}{why}")
    req = report.get("requests")
    if req:
        lat = req["latency_ms"]
        lines.append(
            f"requests {req['count']}   errors {req['errors']}   retried {req.get('retried', 0)}   "
            f"latency ms p50 {_fmt(lat['p50'])} "
            f"p99 {_fmt(lat['p99'])}   versions seen {len(req['versions_seen'])}"
        )
        per = req.get("ms_per_token")
        if per:
            lines[-1] += f"   ms per generated byte p50 {_fmt(per['p50'])} p99 {_fmt(per['p99'])}"
    return "\n".join(lines) + "\n"


# -- report.html --------------------------------------------------------------------------------
def time_origin(report: dict[str, Any]) -> float:
    """Where the report's time axes start: when Serve first answered (older reports: the run's start)."""
    return float(report.get("serving_started_at") or report["started_at"])


def span(report: dict[str, Any]) -> float:
    """Seconds from :func:`time_origin` to the end of the run."""
    return max(1.0, report["started_at"] + (report.get("duration_s") or 1.0) - time_origin(report))


def served_accuracy_series(report: dict[str, Any]) -> list[Series]:
    """Each task's test accuracy under whatever version was served, as steps over run time.

    A task's line starts when the first version trained on it is served; rollbacks show as the
    served accuracy jumping back.
    """
    start = time_origin(report)
    scored = {v["version"]: v for v in report["timeline"]}
    served = [s for s in report["swaps"] if s["version"] in scored]
    out = []
    for j, task in enumerate(report["tasks"]):
        xs: list[float] = []
        ys: list[float] = []
        for s in served:
            v = scored[s["version"]]
            if not xs and (v.get("seen_tasks") or v["task"] + 1) <= j:  # task j not met yet
                continue
            xs.append(s["published_at"] - start)
            ys.append(v["accuracies"][j])
        if xs:
            out.append(Series(f"task {j} ({task['name']})", xs, ys, step=True))
    return out


def _markers(report: dict[str, Any]) -> tuple[list[Marker], list[tuple[str, str, bool]]]:
    """Swap (grey), rollback (red, dashed) and chaos-event (purple, dashed) markers, and their legend."""
    start = time_origin(report)
    marks = [
        Marker(s["published_at"] - start, f"v{s['version']} ({s['kind']})", "#d0d0d0")
        for s in report["swaps"]
        if s["kind"] == "publish"
    ]
    marks += [
        Marker(s["published_at"] - start, f"rollback to v{s['version']}", "#d62728", dashed=True)
        for s in report["swaps"]
        if s["kind"] == "rollback"
    ]
    chaos = report.get("chaos") or []  # [{"at": unix time, "kind": ...}] from chaos scenarios
    marks += [Marker(c["at"] - start, f"chaos: {c['kind']}", "#9467bd", dashed=True) for c in chaos]
    legend = [("swap", "#d0d0d0", False)]
    if any(s["kind"] == "rollback" for s in report["swaps"]):
        legend.append(("rollback", "#d62728", True))
    if chaos:
        legend.append(("chaos event", "#9467bd", True))
    return marks, legend


def latency_series(rows: list[list[Any]], t0: float) -> list[Series]:
    """Every request's latency as dots, failures apart, and p50/p99 over 2-second windows.

    ``rows``: [unix time sent, latency ms, status, ...] per request; x is seconds since ``t0``.
    """
    ok = [(r[0] - t0, r[1]) for r in rows if r[2] == 200]
    failed = [(r[0] - t0, r[1]) for r in rows if r[2] != 200]
    out = [Series("request (200)", [x for x, _ in ok], [y for _, y in ok], dots=True)]
    if failed:
        out.append(Series("failed request", [x for x, _ in failed], [y for _, y in failed], dots=True))
    if ok:
        x = np.array([x for x, _ in ok])
        y = np.array([y for _, y in ok])
        edges = np.arange(math.floor(x.min()), x.max() + 2.0, 2.0)
        mids, p50, p99 = [], [], []
        for a, b in itertools.pairwise(edges):
            window = y[(x >= a) & (x < b)]
            if len(window):
                mids.append(float(a + 1.0))
                p50.append(float(np.percentile(window, 50)))
                p99.append(float(np.percentile(window, 99)))
        out += [Series("p50 (2 s)", mids, p50), Series("p99 (2 s)", mids, p99)]
    return out


PLOTS = ("accuracy-matrix.svg", "accuracy-over-time.svg", "forgetting.svg", "latency.svg")


def write_plots(report: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """Write the SVG charts under ``out/plots``; returns (relative path, caption) for each."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    names = [t["name"] for t in report["tasks"]]
    matrix = report["accuracy_matrix"]
    marks, marks_legend = _markers(report)
    forgot = forgetting_per_task(matrix, report.get("segments")) if matrix else {}
    duration = span(report)
    charts = [
        (
            PLOTS[0],
            heatmap(
                matrix,
                [f"after {label}" for label in row_labels(report)],
                names,
                title="Accuracy matrix R[i][j]: test accuracy on task j after training task i",
            ),
            "Rows: after training each task (the version served at its end); columns: tasks tested.",
        ),
        (
            PLOTS[1],
            line_chart(
                served_accuracy_series(report),
                marks,
                title="Served version's test accuracy per task",
                x_label="seconds since serving started",
                y_label="accuracy",
                y_range=(0.0, 1.0),
                x_range=(0.0, duration),
                marker_legend=marks_legend,
            ),
            "Each line holds the accuracy of whatever version replicas served; grey lines are swaps.",
        ),
        (
            PLOTS[2],
            bar_chart(
                [names[j] for j in forgot],
                list(forgot.values()),
                title="Forgetting per task (best earlier accuracy - final accuracy)",
                y_label="forgetting",
            ),
            "Tasks before the last one completed; the last task cannot have been forgotten yet.",
        ),
    ]
    if report.get("requests"):
        charts.append(
            (
                PLOTS[3],
                line_chart(
                    latency_series(report["requests"]["samples"], time_origin(report)),
                    marks,
                    title="/predict latency while the learner publishes",
                    x_label="seconds since serving started (request send time)",
                    y_label="latency (ms)",
                    x_range=(0.0, duration),
                    marker_legend=marks_legend,
                ),
                "Open-loop load: latency counts from each request's scheduled send time.",
            )
        )
    for stale in set(PLOTS) - {name for name, _, _ in charts}:
        (plots / stale).unlink(missing_ok=True)
    for name, svg, _ in charts:
        (plots / name).write_text(svg)
    return [(f"plots/{name}", caption) for name, _, caption in charts]


_CSS = (
    "body{font-family:sans-serif;max-width:980px;margin:24px auto;color:#222;padding:0 12px}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 10px;"
    "text-align:left}figure{margin:18px 0}figcaption{color:#555;font-size:13px}"
    "img{max-width:100%;border:1px solid #eee}#missing{color:#b00;font-weight:bold}pre{background:#f6f6f6;"
    "padding:8px;overflow-x:auto}"
)
# Marks the page once it has loaded: data-images / data-broken on <body>, and a visible warning
# when a plot is missing (report.html moved without its plots/ folder, say).
_CHECK = (
    "<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
    "const broken=imgs.filter(i=>!(i.complete&&i.naturalWidth>0));"
    "document.body.dataset.images=imgs.length;document.body.dataset.broken=broken.length;"
    "if(broken.length){const p=document.getElementById('missing');p.hidden=false;"
    "p.textContent=broken.length+' plot(s) missing: regenerate them with `olsim report DIR`';}});</script>"
)


def render_html(report: dict[str, Any], images: list[tuple[str, str]]) -> str:
    esc = html.escape
    rows = [
        ("scenario", f"{report['scenario']} (strategy {report['strategy']}, seed {report['seed']})"),
        (
            "ACC / BWT / FWT",
            f"{_fmt(report['acc'])} / {_fmt(report['bwt'], True)} / {_fmt(report['fwt'], True)}",
        ),
        ("forgetting (mean)", _fmt(report["forgetting"])),
        ("versions published / served", f"{report['versions_published']} / {report.get('served_version')}"),
        (
            "swap staleness ms p50 / p99",
            f"{_fmt(report['swap_staleness_ms']['p50'])} / {_fmt(report['swap_staleness_ms']['p99'])}",
        ),
    ]
    gate = report.get("gate")
    if gate:
        counts = _counts(gate["counts"])
        rows.append(("gate", f"{gate['mode']}, budget {gate['forgetting_budget']:.2f}: {counts}"))
    if report.get("rollbacks"):
        rows.append(("rollbacks", str(len(report["rollbacks"]))))
    req = report.get("requests")
    if req:
        lat = req["latency_ms"]
        rows.append(
            (
                "requests",
                f"{req['count']} ({req['errors']} failed, {req.get('retried', 0)} retried), "
                f"latency ms p50 {_fmt(lat['p50'])} "
                f"p99 {_fmt(lat['p99'])}",
            )
        )
    prom = report.get("prometheus")
    if prom:
        alerts = ", ".join(f"{a['name']} ({a['state']})" for a in prom.get("alerts", [])) or "none"
        rows.append(("Prometheus", f"data in {prom['data_dir']}; alerts at the end: {alerts}"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    figures = "".join(
        f'<figure><img src="{esc(src)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'
        for src, caption in images
    )
    title = f"olsim run: {report['scenario']} / {report['strategy']} / seed {report['seed']}"
    truncated = " (truncated by --duration)" if report.get("truncated") else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}{esc(truncated)}</h1>"
        '<p id="missing" hidden></p>'
        f"<table>{table}</table>{figures}"
        f"<h2>Accuracy matrix</h2><pre>{esc(accuracy_table(report))}</pre>"
        '<p>Data: <a href="report.json">report.json</a> (regenerate this page with '
        "<code>olsim report DIR</code>).</p>"
        f"{_CHECK}</body></html>\n"
    )


def write_html(report: dict[str, Any], out: Path) -> Path:
    """``out/report.html`` and its plots, from a report.json's contents."""
    path = out / "report.html"
    path.write_text(render_html(report, write_plots(report, out)))
    return path


def write_renderings(report: dict[str, Any], out: Path) -> Path:
    """``out/report.txt`` and ``out/report.html`` with its plots; returns the page's path."""
    (out / "report.txt").write_text(render_text(report))
    return write_html(report, out)
