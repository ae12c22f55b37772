"""``olsim report DIR``: render a run's report.json again (text, HTML page, plots)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report", help="Rewrite report.txt, report.html and plots/ from DIR/report.json.")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
def report_command(directory: Path) -> int:
    from olsim.deploy.report.model import load_report
    from olsim.deploy.report.render import write_renderings

    report = load_report(directory).model_dump(mode="json", exclude_unset=True)
    html = write_renderings(report, directory)
    click.echo(f"wrote {html}, {directory / 'report.txt'} and {directory / 'plots'}/")
    return 0
