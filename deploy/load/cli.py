"""``olsim load``: load-test ``/predict`` while the learner publishes (:mod:`olsim.deploy.load.session`)."""

from __future__ import annotations

from typing import Any

import click

from olsim.deploy.cli_options import by_field, field_option, ingress_option, prepare_local_ray, validated
from olsim.deploy.load.session import LoadOptions
from olsim.deploy.scenario.spec import load_scenario

FLAGS = {  # LoadOptions field -> flag
    "url": "--url",
    "scenario": "--scenario",
    "mode": "--mode",
    "users": "--users",
    "spawn_rate": "--spawn-rate",
    "rps": "--rps",
    "duration_s": "--duration",
    "batch_rows": "--batch-rows",
    "batch_share": "--batch-share",
    "out": "--out",
    "serve_port": "--serve-port",
    "ray_metrics_port": "--ray-metrics-port",
}


@click.command(
    "load",
    help="Load-test /predict while the learner publishes: Locust users (closed loop) or a fixed "
    "arrival rate (open loop), against a running olsim on this machine (--url) or one it starts.",
)
@field_option(LoadOptions, "url", "--url", help="a running olsim on this machine (default: start --scenario)")
@field_option(
    LoadOptions,
    "scenario",
    "--scenario",
    default=None,
    help=f"scenario to start, whose held-out rows are sent (default {LoadOptions().scenario})",
)
@field_option(LoadOptions, "mode", "--mode")
@field_option(LoadOptions, "users", "--users")
@field_option(LoadOptions, "spawn_rate", "--spawn-rate")
@field_option(LoadOptions, "rps", "--rps")
@field_option(LoadOptions, "duration_s", "--duration", metavar="S")
@field_option(LoadOptions, "batch_rows", "--batch-rows")
@field_option(LoadOptions, "batch_share", "--batch-share")
@field_option(LoadOptions, "out", "--out", metavar="DIR")
@field_option(LoadOptions, "serve_port", "--serve-port")
@field_option(LoadOptions, "ray_metrics_port", "--ray-metrics-port")
@ingress_option()
def load_command(ingress: str, **flags: Any) -> int:
    if flags["url"] is not None and flags["scenario"] is not None:
        raise click.UsageError("--url and --scenario exclude each other (--scenario starts an olsim)")
    values = {k: v for k, v in by_field(flags, FLAGS).items() if v is not None}
    if "url" in values:
        values["url"] = values["url"].rstrip("/")
    opts = validated(LoadOptions, values, FLAGS)
    if opts.url is None:
        load_scenario(opts.scenario)  # unknown names: exit 2 before anything starts
        prepare_local_ray(ingress)
    from olsim.deploy.load.session import load, render_text

    report = load(opts)
    click.echo(render_text(report), nl=False)
    click.echo(f"report written to {opts.out}/load.json (latency plot: {opts.out}/load-latency.svg)")
    return 0
