"""``olsim bench ...``: each benchmark's options and the call that runs it. A benchmark writes its
table into a markdown file (``--out``) with the command line that made it, raw results to ``--json``.

Options that take several values take them after one flag (``--sizes 1 256``); the bare flag means
none (``--overload``: skip that part).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from olsim.deploy.cli_options import Variadic, ingress_option, many, prepare_local_ray
from olsim.deploy.errors import UserError

POSITIVE = click.IntRange(min=1)
RESULTS = Path("docs/results.md")


def _out(default: Path = RESULTS) -> Any:
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=default,
        show_default=True,
        help="markdown file to update",
    )


def _repeats(help: str) -> Any:
    return click.option("--repeats", type=POSITIVE, default=3, show_default=True, help=help)


def _json(default: str) -> Any:
    return click.option(
        "--json",
        "json_path",
        type=click.Path(path_type=Path),
        default=Path(default),
        show_default=True,
        help="raw results",
    )


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _strategy_names() -> list[str]:
    from olsim.learner.strategies import STRATEGIES

    return sorted(STRATEGIES)


def _check_strategies(names: tuple[str, ...]) -> None:
    valid = _strategy_names()
    for name in names:
        if name not in valid:
            raise UserError(f"unknown strategy {name!r}; valid: {', '.join(valid)}")


def _check_scenarios(names: tuple[str, ...] | list[str]) -> None:
    from olsim.deploy.scenario.spec import load_scenario

    for name in names:
        load_scenario(name)  # unknown names: exit 2 before anything starts


@click.group("bench", help="Benchmarks: each writes its table, with the command that made it, to --out.")
def bench() -> None:
    pass


@bench.command(
    "forgetting",
    cls=Variadic,
    help="Every strategy on split/permuted digits (or scenario files), several seeds.",
)
@many("--strategies", metavar="NAME", help="default: every registered strategy")
@many("--seeds", type=click.IntRange(min=0), default=(0, 1, 2), metavar="N")
@many("--scenarios", default=("split-digits", "permuted-digits"), metavar="NAME")
@_repeats("timed runs of each (strategy, seed) and of the raw loop, interleaved; medians reported")
@_out()
@_json("out/bench-forgetting.json")
def forgetting(
    strategies: tuple[str, ...],
    seeds: tuple[int, ...],
    scenarios: tuple[str, ...],
    repeats: int,
    out: Path,
    json_path: Path,
) -> int:
    from olsim.deploy.bench.forgetting import bench_forgetting

    names = list(strategies) or _strategy_names()
    _check_strategies(tuple(names))
    _check_scenarios(scenarios)
    command = "olsim bench forgetting " + " ".join(
        ["--strategies", *names, "--seeds", *map(str, seeds), "--scenarios", *scenarios]
        + ([] if repeats == 3 else ["--repeats", str(repeats)])
    )
    results = bench_forgetting(names, list(seeds), list(scenarios), out, command, repeats)
    _dump(json_path, results)
    click.echo(f"{len(results)} runs; table written to {out}, raw results to {json_path}")
    return 0


@bench.command("knn-index", cls=Variadic, help="kNN memory search: plain torch vs faiss vs scikit-learn.")
@many("--sizes", type=POSITIVE, default=(1000, 10000, 100000), metavar="N")
@many("--queries", type=POSITIVE, default=(1, 64), metavar="B")
@_out()
def knn_index(sizes: tuple[int, ...], queries: tuple[int, ...], out: Path) -> int:
    from olsim.deploy.bench.knn_index import bench_index, render
    from olsim.deploy.markdown import write_section

    rows = bench_index(list(sizes), list(queries))
    command = "olsim bench knn-index " + " ".join(
        ["--sizes", *map(str, sizes), "--queries", *map(str, queries)]
    )
    write_section(out, render(rows, command), title="kNN memory search (`olsim bench knn-index`)")
    click.echo(f"table written to {out}")
    return 0


@bench.command("generate", cls=Variadic, help="/generate's cost per byte, and what a KV cache could save.")
@click.option("--tokens", type=POSITIVE, default=32, show_default=True, help="new bytes per generation")
@_repeats("timed runs per cell (medians; forward passes: 4x as many)")
@_out()
def generate(tokens: int, repeats: int, out: Path) -> int:
    from olsim.deploy.bench.generate import bench_generate, render
    from olsim.deploy.markdown import write_section

    rows = bench_generate(tokens, repeats)
    command = f"olsim bench generate --tokens {tokens} --repeats {repeats}"
    write_section(out, render(rows, command), title="Generation cost (`olsim bench generate`)")
    click.echo(f"table written to {out}")
    return 0


@bench.command(
    "reliability", cls=Variadic, help="Every chaos scenario run for real: what was lost, redone, refused."
)
@many("--scenarios", metavar="NAME", help="default: every built-in chaos scenario")
@click.option(
    "--load-rps",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="/predict load during each run",
)
@_out(Path("docs/reliability.md"))
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path),
    default=Path("out/reliability"),
    show_default=True,
    help="each run's report",
)
@ingress_option()
def reliability(
    scenarios: tuple[str, ...], load_rps: float, out: Path, report_dir: Path, ingress: str
) -> int:
    from olsim.deploy.bench.reliability import bench_reliability, chaos_scenarios, write
    from olsim.deploy.run.cli import EXPECTATION_FAILED

    names = list(scenarios) or chaos_scenarios()
    _check_scenarios(names)
    prepare_local_ray(ingress)
    command = (
        f"olsim bench reliability --scenarios {' '.join(names)} --load-rps {load_rps:g} --ingress {ingress}"
    )
    rows = bench_reliability(names, report_dir, load_rps)
    write(rows, out, command)
    (report_dir / "reliability.json").write_text(json.dumps(rows, indent=2))
    click.echo(f"table written to {out}; reports under {report_dir}")
    return 0 if all(r["outcomes_ok"] for r in rows) else EXPECTATION_FAILED


@bench.command(
    "serve", cls=Variadic, help="Requests/s: raw torch vs bare uvicorn vs olsim's Serve path, same model."
)
@many("--sizes", type=POSITIVE, default=(1, 256), metavar="ROWS")
@click.option(
    "--requests",
    type=POSITIVE,
    default=3000,
    show_default=True,
    help="per run, 1-row requests (256: a quarter)",
)
@click.option("--clients", type=POSITIVE, default=16, show_default=True, help="concurrent hey clients")
@_repeats("runs per cell; the median is reported")
@many(
    "--ingress",
    type=click.Choice(("haproxy", "proxy")),
    default=("haproxy", "proxy"),
    help="ingress modes to measure, each with its own Ray",
)
@many(
    "--processes",
    type=POSITIVE,
    default=(1, 2),
    metavar="N",
    help="olsim replicas, each against bare uvicorn with as many workers",
)
@many(
    "--overload",
    type=POSITIVE,
    default=(16, 64, 256, 1024),
    metavar="CLIENTS",
    help="client counts for the at/beyond-capacity table (default ingress; bare flag: skip)",
)
@_out()
@_json("out/bench-serve.json")
def serve(
    sizes: tuple[int, ...],
    requests: int,
    clients: int,
    repeats: int,
    ingress: tuple[str, ...],
    processes: tuple[int, ...],
    overload: tuple[int, ...],
    out: Path,
    json_path: Path,
) -> int:
    from olsim.deploy.bench.serve import BenchError, bench_serve, write
    from olsim.deploy.bench.serve import overload as overload_table

    prepare_local_ray(None)
    command = (
        f"olsim bench serve --sizes {' '.join(map(str, sizes))} --requests {requests} "
        f"--clients {clients} --repeats {repeats} --ingress {' '.join(ingress)} "
        f"--processes {' '.join(map(str, processes))} --overload {' '.join(map(str, overload))}"
    )
    work = json_path.parent / "bench-serve"
    try:
        rows = bench_serve(
            list(sizes), requests, clients, repeats, work, modes=list(ingress), processes=list(processes)
        )
        overloaded = overload_table(list(overload), requests, work)
    except BenchError as exc:
        raise UserError(f"bench serve: {exc}") from None
    write(rows, out, command, clients, overloaded)
    _dump(json_path, {"rows": rows, "overload": overloaded})
    click.echo(f"table written to {out}, raw results to {json_path}")
    return 0


@bench.command("swap", help="Hot swap: olsim's long-poll vs Ray Serve's reconfigure, same run.")
@click.option(
    "--scenario",
    default="split-digits",
    show_default=True,
    help="model, replicas and held-out rows from here",
)
@click.option("--rounds", type=POSITIVE, default=3, show_default=True, metavar="N")
@click.option(
    "--cycles", type=POSITIVE, default=4, show_default=True, metavar="N", help="steady/swapping window pairs"
)
@click.option(
    "--window",
    type=click.FloatRange(min=1),
    default=5.0,
    show_default=True,
    metavar="S",
    help="seconds per window",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=1),
    default=50.0,
    show_default=True,
    help="open-loop /predict requests per second",
)
@click.option("--publish-hz", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="HZ")
@click.option("--replicas", type=POSITIVE, help="override the scenario's replica count")
@click.option("--serve-port", type=int, help="Serve HTTP port (default: the scenario's, 8000)")
@_out()
@_json("out/bench-swap.json")
@ingress_option()
def swap(
    scenario: str,
    rounds: int,
    cycles: int,
    window: float,
    rps: float,
    publish_hz: float,
    replicas: int | None,
    serve_port: int | None,
    out: Path,
    json_path: Path,
    ingress: str,
) -> int:
    from olsim.deploy.run.cli import with_overrides
    from olsim.deploy.scenario.spec import load_scenario

    s = with_overrides(load_scenario(scenario), {"serving.replicas": replicas, "serving.port": serve_port})
    prepare_local_ray(ingress)
    from olsim.deploy.bench.swap import bench_swap, write

    command = (
        f"olsim bench swap --scenario {scenario} --rounds {rounds} --cycles {cycles} "
        f"--window {window:g} --rps {rps:g} --publish-hz {publish_hz:g} "
        f"--replicas {s.serving.replicas} --ingress {ingress}"
    )
    results = bench_swap(s, rounds, cycles, window, rps, publish_hz)
    write(results, out, command, s, rps, publish_hz)
    _dump(json_path, results)
    click.echo(f"table written to {out}, raw results to {json_path}")
    return 0


@bench.command(
    "learner", cls=Variadic, help="Training samples/s per strategy, batch size and device (CPU, CUDA if any)."
)
@many("--strategies", metavar="NAME", help="default: every registered strategy")
@many("--batches", type=POSITIVE, default=(32, 256, 4096), metavar="N")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="timed per cell and repeat",
)
@_repeats("interleaved runs per cell; median reported")
@click.option(
    "--model",
    type=click.Choice(["mlp", "transformer"]),
    default="mlp",
    show_default=True,
    help="the MLP on random rows, or the facts scenario's byte transformer on fact sentences",
)
@_out()
@_json("out/bench-learner.json")
def learner(
    strategies: tuple[str, ...],
    batches: tuple[int, ...],
    seconds: float,
    repeats: int,
    model: str,
    out: Path,
    json_path: Path,
) -> int:
    from olsim.deploy.bench.learner import bench_learner, render
    from olsim.deploy.markdown import write_section

    names = list(strategies) or _strategy_names()
    _check_strategies(tuple(names))
    command = (
        f"olsim bench learner --strategies {' '.join(names)} "
        f"--batches {' '.join(map(str, batches))} --seconds {seconds:g} --repeats {repeats}"
        + ("" if model == "mlp" else f" --model {model}")
    )
    kind: Any = model
    rows = bench_learner(names, list(batches), seconds, repeats, kind)
    write_section(out, render(rows, command, kind), title="Learner throughput (`olsim bench learner`)")
    _dump(json_path, rows)
    click.echo(f"table written to {out}, raw results to {json_path}")
    return 0


@bench.command(
    "scale",
    cls=Variadic,
    help="Scaling: req/s and staleness per replica count, evaluation cost per task count.",
)
@many("--replicas", type=POSITIVE, default=(1, 2, 4), metavar="N", help="bare flag: skip")
@many("--tasks", type=POSITIVE, default=(5, 10, 20, 50), metavar="N", help="synthetic tasks; bare flag: skip")
@click.option("--requests", type=POSITIVE, default=3000, show_default=True, help="per hey run")
@click.option("--clients", type=POSITIVE, default=16, show_default=True, help="concurrent hey clients")
@_repeats("hey runs per replica count; median reported")
@click.option(
    "--publishes", type=POSITIVE, default=20, show_default=True, help="versions published per replica count"
)
@click.option("--publish-hz", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="HZ")
@click.option(
    "--versions", type=POSITIVE, default=20, show_default=True, help="versions scored per task count"
)
@click.option(
    "--scenario", default="split-digits", show_default=True, help="model and serving settings from here"
)
@_out()
@_json("out/bench-scale.json")
@ingress_option()
def scale(
    replicas: tuple[int, ...],
    tasks: tuple[int, ...],
    requests: int,
    clients: int,
    repeats: int,
    publishes: int,
    publish_hz: float,
    versions: int,
    scenario: str,
    out: Path,
    json_path: Path,
    ingress: str,
) -> int:
    from olsim.deploy.scenario.spec import load_scenario

    s = load_scenario(scenario)
    prepare_local_ray(ingress)
    from olsim.deploy.bench.scale import evaluation_scale, serving_scale, write
    from olsim.deploy.bench.serve import require_hey

    if replicas:
        require_hey()  # before the evaluation part runs
    command = (
        f"olsim bench scale --replicas {' '.join(map(str, replicas))} --tasks {' '.join(map(str, tasks))} "
        f"--requests {requests} --clients {clients} --repeats {repeats} "
        f"--publishes {publishes} --publish-hz {publish_hz:g} --versions {versions} "
        f"--scenario {scenario} --ingress {ingress}"
    )
    evaluation = evaluation_scale(list(tasks), versions) if tasks else []
    serving: list[dict[str, Any]] = []
    if replicas:
        work = json_path.parent / "bench-scale"
        serving = serving_scale(s, list(replicas), work, requests, clients, repeats, publishes, publish_hz)
    write(serving, evaluation, out, command, clients)
    _dump(json_path, {"serving": serving, "evaluation": evaluation})
    click.echo(f"table written to {out}, raw results to {json_path}")
    return 0
