"""compare.html: several runs' outcomes in one table and their plots side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olsim.deploy.report.compare import COLUMNS, render_text, write_compare


def _run(acc: float, bwt: float) -> dict[str, Any]:
    return {
        "acc": acc,
        "bwt": bwt,
        "forgetting": -bwt,
        "versions_published": 22,
        "gate": {"candidates": 22},
        "requests": {"count": 500, "errors": 1},
    }


def test_one_row_per_run_and_each_runs_plots(tmp_path: Path) -> None:
    runs = [("naive", _run(0.19, -0.99)), ("replay", _run(0.83, -0.18))]
    text = render_text(runs)
    lines = text.splitlines()
    assert lines[0].split()[0] == COLUMNS[0] and len(lines) == 3
    assert lines[1].split()[:3] == ["naive", "0.190", "-0.990"] and lines[2].startswith("replay")
    page = write_compare(runs, tmp_path, "split-digits").read_text()
    for label in ("naive", "replay"):
        assert f'src="{label}/plots/accuracy-matrix.svg"' in page
        assert f'src="{label}/plots/accuracy-over-time.svg"' in page
        assert f'href="{label}/report.html"' in page
    assert page.count("<tr>") == 3
