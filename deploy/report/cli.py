"""``olsim report DIR``: render a run's report.json again (text, HTML page, plots)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report", help="Rewrite report.txt, report.html and plots/ from DIR/report.json.")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
def report_command(directory: Path) -> int:
    from olsim.deploy.report.model import load_report
    from olsim.deploy.report.render import render_text, write_html

    report = load_report(directory).model_dump(mode="json", exclude_unset=True)
    text = render_text(report)
    html = write_html(report, directory)
    (directory / "report.txt").write_text(text)
    click.echo(f"wrote {html}, {directory / 'report.txt'} and {directory / 'plots'}/")
    return 0
