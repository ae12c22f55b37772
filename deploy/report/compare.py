"""Several runs of one scenario side by side (``olsim run SCENARIO --strategy naive replay``).

Each run keeps its own report directory (``DIR/<strategy>/``); ``DIR/compare.html`` shows one table
of their outcomes, then for each run its accuracy matrix next to its served accuracy over time (the
plots each run's report already wrote), so forgetting and its fix read at a glance.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from olsim.deploy.report.render import PLOTS, _fmt

COLUMNS = ("strategy", "ACC", "BWT", "forgetting", "versions accepted / candidates", "requests (failed)")


def rows(runs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, ...]]:
    """One row of :data:`COLUMNS` per run.

    >>> r = {"acc": 0.2, "bwt": -0.99, "forgetting": 0.99, "gate": {"candidates": 22},
    ...      "versions_published": 22, "requests": {"count": 500, "errors": 0}}
    >>> rows([("naive", r)])
    [('naive', '0.200', '-0.990', '0.990', '22 / 22', '500 (0)')]
    """
    out: list[tuple[str, ...]] = []
    for label, r in runs:
        gate = r.get("gate") or {}
        req = r.get("requests")
        out.append(
            (
                label,
                _fmt(r["acc"]),
                _fmt(r["bwt"], True),
                _fmt(r["forgetting"]),
                f"{r['versions_published']} / {gate.get('candidates', '-')}",
                "-" if not req else f"{req['count']} ({req['errors']})",
            )
        )
    return out


def render_text(runs: list[tuple[str, dict[str, Any]]]) -> str:
    table = [COLUMNS, *rows(runs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table) + "\n"


def render_html(runs: list[tuple[str, dict[str, Any]]], scenario: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows(runs))
    figures = "".join(
        f'<h2>{esc(label)} <a href="{esc(label)}/report.html">full report</a></h2><div class="pair">'
        + "".join(f'<img src="{esc(label)}/plots/{name}" alt="{esc(label)}: {name}">' for name in PLOTS[:2])
        + "</div>"
        for label, _ in runs
    )
    title = f"olsim: {scenario}, strategies compared"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title><style>'
        "body{font-family:sans-serif;max-width:1400px;margin:24px auto;color:#222;padding:0 12px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}"
        ".pair{display:grid;grid-template-columns:1fr 1fr;gap:12px}img{width:100%;border:1px solid #eee}"
        f"</style></head><body><h1>{esc(title)}</h1>"
        "<p>Same stream, same seed; each row a strategy. Left: accuracy matrix (rows: after each task; "
        "columns: tasks tested). Right: each task's accuracy under the version being served.</p>"
        f"<table><tr>{head}</tr>{body}</table>{figures}</body></html>\n"
    )


def write_compare(runs: list[tuple[str, dict[str, Any]]], out: Path, scenario: str) -> Path:
    """``out/compare.html`` over runs whose reports are in ``out/<label>/``."""
    path = out / "compare.html"
    path.write_text(render_html(runs, scenario))
    return path
