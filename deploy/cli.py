"""The ``olsim`` command line.

Each command is defined beside the code it drives (``olsim.deploy.run.cli``, ``...load.cli``,
``...report.cli``, ``...bench.cli``) and imported only when it runs, so ``olsim --help`` answers
without loading torch or Ray. Every failure is one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from olsim.deploy.errors import UserError, first_line

log = logging.getLogger("olsim")

COMMANDS = {  # name -> (module, attribute, one-line help for `olsim --help`)
    "run": ("olsim.deploy.run.cli", "run_command", "Run a scenario end to end and write a report."),
    "load": ("olsim.deploy.load.cli", "load_command", "Load-test /predict while the learner publishes."),
    "report": ("olsim.deploy.report.cli", "report_command", "Render a run's report.json again."),
    "bench": ("olsim.deploy.bench.cli", "bench", "Benchmarks (forgetting, serve, swap, learner, ...)."),
}


class _Commands(click.Group):
    """A group that imports a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])


@click.group(
    "olsim",
    cls=_Commands,
    help="Online learning server simulation: Ray Serve serves a model that keeps learning from a "
    "stream, with catastrophic forgetting visible live. `olsim COMMAND --help` for each command.",
)
@click.option("-v", "--verbose", is_flag=True, help="log INFO events, Ray's and Serve's included")
def olsim(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        code: Any = olsim.main(args=argv, prog_name="olsim", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `olsim` alone: its help, and exit 2
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 2
    except click.ClickException as exc:  # bad arguments: click's message, on one line
        return _fail(exc.format_message())
    except click.Abort:
        return _fail("interrupted", 130)
    except UserError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # anything else: still one line; -v logs the traceback
        log.info("unexpected error", exc_info=True)
        return _fail(f"{type(exc).__name__}: {first_line(exc)}")
    return int(code or 0)


def _fail(message: str, code: int = 2) -> int:
    """Every failure: one line on stderr, exit code 2 (130 when interrupted)."""
    print(f"olsim: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
