"""``olsim run``: a scenario end to end (Ray, Serve, learner, evaluator, load), then its report.

Scenario settings given as flags (``--seed``, ``--gate``, ...) override the scenario's and are
validated by the scenario's own models; run settings are :class:`RunOptions` fields.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from olsim.deploy.cli_options import (
    Variadic,
    by_field,
    field_option,
    ingress_option,
    many,
    prepare_local_ray,
    validated,
)
from olsim.deploy.errors import UserError, validation_line
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.plugins import resolve, runtime_env
from olsim.deploy.scenario.spec import Scenario, ScenarioError, builtin_names, load_scenario
from olsim.learner.config import LearnerConfig
from olsim.learner.gate import GateConfig
from olsim.learner.strategies import STRATEGIES
from olsim.serving.config import ServeConfig

EXPECTATION_FAILED = 3  # the run finished but an outcome its scenario promised did not hold

RUN_FLAGS = {  # RunOptions field -> flag
    "duration_s": "--duration",
    "report_dir": "--report-dir",
    "address": "--address",
    "metrics_host": "--metrics-host",
    "metrics_port": "--metrics-port",
    "ray_metrics_port": "--ray-metrics-port",
    "prometheus": "--prometheus",
    "prometheus_port": "--prometheus-port",
    "scrape_interval_s": "--scrape-interval",
    "load_rps": "--load-rps",
}
SCENARIO_FLAGS = {  # scenario field path -> flag; unset flags keep the scenario's value
    "seed": "--seed",
    "serving.port": "--serve-port",
    "learner.publish_every": "--publish-every",
    "learner.boundaries": "--boundaries",
    "learner.device": "--device",
    "gate.mode": "--gate",
    "gate.forgetting_budget": "--forgetting-budget",
    "gate.rollback_floor": "--rollback-floor",
}


def with_overrides(scenario: Scenario, overrides: dict[str, Any]) -> Scenario:
    """``scenario`` with ``{"gate.mode": "off", ...}`` applied (None: keep), validated as a whole.

    >>> s = with_overrides(load_scenario("split-digits"), {"gate.mode": "off", "seed": None})
    >>> s.gate.mode, s.seed
    ('off', 0)
    """
    data = scenario.dump()
    for path, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(validation_line(exc, SCENARIO_FLAGS)) from None


class ProgressLine:
    """One status line on stderr, redrawn in place on a terminal, every 5 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: dict[str, Any]) -> None:
        if not self.tty and p["elapsed_s"] - self.last < 5 and not p["done"]:
            return
        self.last = p["elapsed_s"]
        pct = 100.0 * p["offset"] / max(1, p["total"])
        task = "-" if p["task"] is None else f"{p['task'] + 1}/{p['n_tasks']}"
        preq = "-" if p["prequential_accuracy"] is None else f"{p['prequential_accuracy']:.2f}"
        served = "-" if p["version"] is None else f"v{p['version']} acc {p['average_accuracy']:.2f}"
        line = (
            f"[{p['elapsed_s']:6.1f}s] task {task}  stream {p['offset']}/{p['total']} ({pct:3.0f}%)  "
            f"steps {p['steps']}  published {len(p['versions'])}  prequential {preq}  served {served}"
        )
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def expectations_exit(report: dict[str, Any]) -> int:
    """0, or EXPECTATION_FAILED after naming on stderr each promised outcome that did not hold."""
    failed = [e for e in report.get("expectations", []) if e["ok"] is False]
    for e in failed:
        why = f": {e['detail']}" if e.get("detail") else ""
        sys.stderr.write(
            f"olsim: expectation failed: {e['name']} = {e['value']} (expected {e['expected']}){why}\n"
        )
    return EXPECTATION_FAILED if failed else 0


@click.command(
    "run",
    cls=Variadic,
    help="Run SCENARIO end to end and write a report. SCENARIO is a built-in name "
    f"({', '.join(builtin_names())}) or a YAML path. With several strategies (--strategy naive replay) "
    "each runs in turn on the same Ray, its report in DIR/STRATEGY/, and DIR/compare.html shows them "
    "side by side. Exit 0: done; 2: bad input or a run failed; 3: done, but an outcome the "
    "scenario's `expect:` promised did not hold.",
)
@click.argument("scenario")
@many(
    "--strategy",
    "strategies",
    metavar="NAME",
    help=f"override the scenario's strategy; several: one run each ({', '.join(sorted(STRATEGIES))})",
)
@field_option(Scenario, "seed", "--seed", default=None, help="override the scenario's seed")
@field_option(RunOptions, "duration_s", "--duration", metavar="S")
@field_option(RunOptions, "report_dir", "--report-dir", metavar="DIR")
@field_option(
    RunOptions, "address", "--address", help="join this Ray cluster instead of starting a local one"
)
@ingress_option()
@field_option(RunOptions, "metrics_host", "--metrics-host")
@field_option(RunOptions, "metrics_port", "--metrics-port")
@field_option(
    ServeConfig, "port", "--serve-port", default=None, help="Serve HTTP port (default: the scenario's, 8000)"
)
@field_option(RunOptions, "ray_metrics_port", "--ray-metrics-port")
@field_option(RunOptions, "prometheus", "--prometheus")
@field_option(RunOptions, "prometheus_port", "--prometheus-port")
@field_option(RunOptions, "scrape_interval_s", "--scrape-interval", metavar="S")
@field_option(LearnerConfig, "publish_every", "--publish-every", default=None, metavar="N")
@field_option(
    LearnerConfig,
    "boundaries",
    "--boundaries",
    default=None,
    help="announced: strategies hear task ends; detected: task-free, a drift detector decides",
)
@field_option(
    LearnerConfig,
    "device",
    "--device",
    default=None,
    help=(
        "where the learner trains (default: the scenario's; auto: CUDA only when a step is big "
        "enough to pay for it, see docs/cluster.md)"
    ),
)
@field_option(
    GateConfig,
    "mode",
    "--gate",
    default=None,
    help="on: reject candidates that forget beyond the budget; off: serve them (watch forgetting live)",
)
@field_option(GateConfig, "forgetting_budget", "--forgetting-budget", default=None, metavar="F")
@field_option(GateConfig, "rollback_floor", "--rollback-floor", default=None, metavar="F")
@field_option(RunOptions, "load_rps", "--load-rps")
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="S",
    help="keep serving and exporting metrics S seconds after the run (for scrapes)",
)
@click.pass_context
def run_command(
    ctx: click.Context, scenario: str, strategies: tuple[str, ...], ingress: str, linger: float, **flags: Any
) -> int:
    base = load_scenario(scenario)
    overrides = by_field(flags, SCENARIO_FLAGS)
    names: list[str | None] = list(dict.fromkeys(strategies)) or [None]  # None: the scenario's own
    scenarios = [with_overrides(base if n is None else base.with_strategy(n), overrides) for n in names]
    scenarios = [resolve(s) for s in scenarios]  # users' code is checked before anything starts
    values = by_field(flags, RUN_FLAGS)
    verbose = bool(ctx.find_root().params.get("verbose"))
    opts = validated(RunOptions, {**values, "ray_logs": verbose}, RUN_FLAGS)
    if flags["address"] is None:  # this machine's devices decide; a cluster's placement is the user's
        from olsim.deploy.run.actors import learner_gpu
        from olsim.learner.device import DeviceError

        try:
            scenarios = [learner_gpu(s) for s in scenarios]
        except DeviceError as exc:
            raise ScenarioError(str(exc)) from None
    if opts.prometheus:
        from olsim.deploy.observability.prometheus_server import PrometheusError, binary

        try:
            binary()  # before anything starts
        except PrometheusError as exc:
            raise UserError(f"--prometheus: {exc}") from None
    prepare_local_ray(ingress, flags["address"])  # everything is checked: now Ray may be imported
    if not verbose:
        import ray.serve  # configures its driver logger at INFO on import: quieten it afterwards

        for name in ("ray", ray.serve.__name__):
            logging.getLogger(name).setLevel(logging.WARNING)
    if len(scenarios) == 1:
        return _run_one(scenarios[0], opts, linger)[0]
    return _run_several(scenarios, opts, linger)


def _run_one(scenario: Scenario, opts: RunOptions, linger: float) -> tuple[int, dict[str, Any]]:
    """Run ``scenario``, print its report; (exit code, report)."""
    from olsim.deploy.report.render import render_text
    from olsim.deploy.run.driver import run

    def on_finished(report: dict[str, Any]) -> None:
        if linger > 0:
            sys.stderr.write(
                f"\nrun finished; serving and metrics stay up for {linger:.0f}s "
                f"({report['metrics_endpoint']}"
                + (f", Prometheus {report['prometheus']['url']}" if "prometheus" in report else "")
                + ")\n"
            )
            time.sleep(linger)

    bar = ProgressLine()
    try:
        report = run(scenario, opts, progress=bar, on_finished=on_finished)
    finally:
        bar.close()
    click.echo(render_text(report), nl=False)
    click.echo(f"report: {Path(opts.report_dir) / 'report.json'}")
    if report.get("admin_token_file"):
        click.echo(f"admin token (for /admin routes): {report['admin_token_file']}")
    return expectations_exit(report), report


def _run_several(scenarios: list[Scenario], opts: RunOptions, linger: float) -> int:
    """One run per strategy on one Ray (started here unless joined), then the comparison page."""

    from olsim.deploy.report.compare import render_text, write_compare
    from olsim.deploy.run.cluster import connect_ray, disconnect_ray

    started = connect_ray(  # the strategies differ, the plugin code (if any) does not
        opts.address, opts.ray_metrics_port, ray_logs=opts.ray_logs, runtime_env=runtime_env(scenarios[0])
    )
    code, runs = 0, list[tuple[str, dict[str, Any]]]()
    try:
        for i, s in enumerate(scenarios):
            label = s.strategy_name
            click.echo(f"== {label} ({i + 1} of {len(scenarios)})", err=True)
            last = i == len(scenarios) - 1
            one = opts.model_copy(update={"report_dir": opts.report_dir / label})
            status, report = _run_one(s, one, linger if last else 0.0)
            code = max(code, status)
            runs.append((label, report))
    finally:
        if started:
            disconnect_ray()
    page = write_compare(runs, opts.report_dir, scenarios[0].name)
    click.echo("\n" + render_text(runs), nl=False)
    click.echo(f"comparison: {page}")
    return code
