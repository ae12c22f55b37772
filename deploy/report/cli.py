"""``olsim report DIR``: render a run's report.json again (text, HTML page, plots)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from olsim.deploy.errors import UserError


@click.command("report", help="Rewrite report.txt, report.html and plots/ from DIR/report.json.")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
def report_command(directory: Path) -> int:
    from olsim.deploy.report.render import render_text, write_html

    path = directory / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found (give the directory `olsim run --report-dir` wrote)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    try:
        text = render_text(report)
        html = write_html(report, directory)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise UserError(f"{path} is not an olsim report ({type(exc).__name__}: {exc})") from None
    (directory / "report.txt").write_text(text)
    click.echo(f"wrote {html}, {directory / 'report.txt'} and {directory / 'plots'}/")
    return 0
