"""The ``olsim`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from deploy.errors import UserError, first_line
from deploy.ingress import DEFAULT_INGRESS, INGRESS_MODES, IngressError, use_ingress
from deploy.runner import keep_ray_on_loopback
from deploy.scenario import ScenarioError, builtin_names, load_scenario
from learner.strategies import STRATEGIES

log = logging.getLogger("olsim")
EXPECTATION_FAILED = 3  # the run finished but an outcome its scenario promised did not hold


def _at_least(low: float, kind: type[int] | type[float] = int) -> Any:
    """An argparse type: a number >= ``low`` (argparse turns the error into exit code 2)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a float in [0, 1]."""
    value = _at_least(0.0, float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be <= 1, got {text}")
    return float(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"olsim: error: {message}\n")


def _ingress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingress",
        choices=INGRESS_MODES,
        default=DEFAULT_INGRESS,
        help="how HTTP reaches the replicas when olsim starts Ray: haproxy (Ray Serve's HAProxy straight to "
        f"each replica's port) or proxy (Serve's Python proxy); default {DEFAULT_INGRESS}",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="olsim", description="Online learning server simulation.")
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO events")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a scenario end to end and write a report")
    r.add_argument("scenario", help=f"built-in name ({', '.join(builtin_names())}) or a YAML path")
    r.add_argument("--strategy", help=f"override the scenario's strategy ({', '.join(sorted(STRATEGIES))})")
    r.add_argument("--seed", type=_at_least(0), help="override the scenario's seed")
    r.add_argument("--duration", type=float, help="stop the stream after S seconds (default: run it all)")
    r.add_argument(
        "--report-dir", type=Path, default=Path("out"), help="where report.json goes (default out/)"
    )
    r.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    _ingress_option(r)
    r.add_argument("--metrics-host", default="127.0.0.1", help="scrape endpoint host (default 127.0.0.1)")
    r.add_argument("--metrics-port", type=int, default=9464, help="scrape endpoint port (default 9464)")
    r.add_argument("--serve-port", type=int, help="Serve HTTP port (default 8000)")
    r.add_argument(
        "--ray-metrics-port",
        type=_at_least(0),
        default=8090,
        help="Ray's metrics export port when olsim starts Ray (default 8090; 0 = any)",
    )
    r.add_argument(
        "--prometheus",
        action="store_true",
        help="start a Prometheus server (the `prometheus` binary) scraping this run, data in DIR/prometheus",
    )
    r.add_argument("--prometheus-port", type=_at_least(1), default=9090, help="its port on 127.0.0.1 (9090)")
    r.add_argument(
        "--scrape-interval",
        type=_at_least(0.5, float),
        default=5.0,
        metavar="S",
        help="Prometheus scrape interval",
    )
    r.add_argument(
        "--publish-every", type=_at_least(1), metavar="N", help="publish a weight version every N steps"
    )
    r.add_argument(
        "--boundaries",
        choices=["announced", "detected"],
        help="announced: strategies hear task ends; detected: task-free, a drift detector decides",
    )
    r.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where the learner trains (default: the scenario's, auto: CUDA only when a step is big enough "
        "to pay for it, see docs/cluster.md)",
    )
    r.add_argument(
        "--gate",
        choices=["on", "off"],
        help="on: reject candidates that forget beyond the budget; off: serve them (watch forgetting live)",
    )
    r.add_argument(
        "--forgetting-budget",
        type=_fraction,
        metavar="F",
        help="largest drop in mean old-task validation accuracy a new version may bring (default 0.2)",
    )
    r.add_argument(
        "--rollback-floor",
        type=_fraction,
        metavar="F",
        help="roll back automatically when the served version's mean test accuracy falls below F",
    )
    r.add_argument(
        "--load-rps", type=float, default=20.0, help="/predict requests/s during the run (0 = none)"
    )
    r.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep serving and exporting metrics S seconds after the run (for scrapes)",
    )
    ld = sub.add_parser("load", help="load-test /predict (Locust, or open loop) while the learner publishes")
    target = ld.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running olsim on this machine (default: start --scenario)")
    target.add_argument("--scenario", default="split-digits", help="scenario to start (and rows to send)")
    ld.add_argument(
        "--mode", choices=["closed", "open"], default="closed", help="closed: Locust users; open: fixed rate"
    )
    ld.add_argument(
        "--users", type=_at_least(1), default=16, help="closed loop: concurrent users (default 16)"
    )
    ld.add_argument(
        "--spawn-rate", type=_at_least(0.01, float), help="users started per second (default: all)"
    )
    ld.add_argument(
        "--rps", type=_at_least(0.01, float), default=200.0, help="open loop: requests/s (default 200)"
    )
    ld.add_argument(
        "--duration", type=_at_least(1, float), default=30.0, metavar="S", help="seconds (default 30)"
    )
    ld.add_argument(
        "--batch-rows", type=_at_least(1), default=32, help="rows per batched request (default 32)"
    )
    ld.add_argument(
        "--batch-share", type=_fraction, default=0.2, help="share of batched requests (default 0.2)"
    )
    ld.add_argument("--out", type=Path, default=Path("out/load"), help="report directory (default out/load)")
    ld.add_argument(
        "--serve-port", type=_at_least(1), help="without --url: the HTTP port of the olsim it starts (8000)"
    )
    ld.add_argument(
        "--ray-metrics-port",
        type=_at_least(0),
        default=8090,
        help="without --url: Ray's metrics export port of the olsim it starts (default 8090; 0 = any)",
    )
    _ingress_option(ld)
    rp = sub.add_parser("report", help="rewrite report.txt, report.html and plots/ from DIR/report.json")
    rp.add_argument("dir", type=Path, help="a run's report directory (holds report.json)")
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    f = bsub.add_parser("forgetting", help="every strategy on split/permuted digits, several seeds")
    f.add_argument("--strategies", nargs="+", default=sorted(STRATEGIES), metavar="NAME")
    f.add_argument("--seeds", nargs="+", type=_at_least(0), default=[0, 1, 2], metavar="N")
    f.add_argument("--scenarios", nargs="+", default=["split-digits", "permuted-digits"], metavar="NAME")
    f.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    f.add_argument("--json", type=Path, default=Path("out/bench-forgetting.json"), help="raw results")
    k = bsub.add_parser("knn-index", help="kNN memory search: plain torch vs faiss vs scikit-learn")
    k.add_argument("--sizes", nargs="+", type=_at_least(1), default=[1000, 10000, 100000], metavar="N")
    k.add_argument("--queries", nargs="+", type=_at_least(1), default=[1, 64], metavar="B")
    k.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    rl = bsub.add_parser(
        "reliability", help="every chaos scenario run for real: what was lost, redone, refused"
    )
    rl.add_argument("--scenarios", nargs="+", metavar="NAME", help="default: every built-in chaos scenario")
    rl.add_argument(
        "--load-rps", type=_at_least(0, float), default=20.0, help="/predict load during each run"
    )
    rl.add_argument("--out", type=Path, default=Path("docs/reliability.md"), help="markdown file to update")
    rl.add_argument("--report-dir", type=Path, default=Path("out/reliability"), help="each run's report")
    _ingress_option(rl)
    sv = bsub.add_parser("serve", help="req/s: raw torch vs bare uvicorn vs olsim's Serve path, same model")
    sv.add_argument("--sizes", nargs="+", type=_at_least(1), default=[1, 256], metavar="ROWS")
    sv.add_argument(
        "--requests", type=_at_least(1), default=3000, help="per run, 1-row requests (256: a quarter)"
    )
    sv.add_argument("--clients", type=_at_least(1), default=16, help="concurrent hey clients (default 16)")
    sv.add_argument("--repeats", type=_at_least(1), default=3, help="runs per cell; the median is reported")
    sv.add_argument(
        "--ingress",
        nargs="+",
        choices=INGRESS_MODES,
        default=list(INGRESS_MODES),
        help="ingress modes to measure, each with its own Ray (default: all)",
    )
    sv.add_argument(
        "--processes",
        nargs="+",
        type=_at_least(1),
        default=[1, 2],
        metavar="N",
        help="olsim replicas, each against bare uvicorn with as many workers (default 1 2)",
    )
    sv.add_argument(
        "--overload",
        nargs="*",
        type=_at_least(1),
        default=[16, 64, 256, 1024],
        metavar="CLIENTS",
        help="client counts for the at/beyond-capacity table (default ingress; none: skip)",
    )
    sv.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    sv.add_argument("--json", type=Path, default=Path("out/bench-serve.json"), help="raw results")
    w = bsub.add_parser("swap", help="hot swap: olsim's long-poll vs Ray Serve's reconfigure, same run")
    w.add_argument("--scenario", default="split-digits", help="model, replicas and held-out rows from here")
    w.add_argument("--rounds", type=_at_least(1), default=3, metavar="N")
    w.add_argument("--cycles", type=_at_least(1), default=4, metavar="N", help="steady/swapping window pairs")
    w.add_argument("--window", type=_at_least(1, float), default=5.0, metavar="S", help="seconds per window")
    w.add_argument(
        "--rps", type=_at_least(1, float), default=50.0, help="open-loop /predict requests per second"
    )
    w.add_argument("--publish-hz", type=_at_least(0.1, float), default=1.0, metavar="HZ")
    w.add_argument("--replicas", type=_at_least(1), help="override the scenario's replica count")
    w.add_argument("--serve-port", type=int, help="Serve HTTP port (default: the scenario's, 8000)")
    w.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    w.add_argument("--json", type=Path, default=Path("out/bench-swap.json"), help="raw results")
    _ingress_option(w)
    lr = bsub.add_parser(
        "learner", help="training samples/s per strategy, batch size and device (CPU, CUDA if any)"
    )
    lr.add_argument(
        "--strategies", nargs="+", choices=sorted(STRATEGIES), default=sorted(STRATEGIES), metavar="NAME"
    )
    lr.add_argument("--batches", nargs="+", type=_at_least(1), default=[32, 256, 4096], metavar="N")
    lr.add_argument("--seconds", type=_at_least(0.05, float), default=1.0, help="timed per cell and repeat")
    lr.add_argument(
        "--repeats", type=_at_least(1), default=3, help="interleaved runs per cell; median reported"
    )
    lr.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    lr.add_argument("--json", type=Path, default=Path("out/bench-learner.json"), help="raw results")
    sc = bsub.add_parser(
        "scale", help="scaling study: req/s and staleness per replica count, evaluation cost per task count"
    )
    sc.add_argument(
        "--replicas", nargs="*", type=_at_least(1), default=[1, 2, 4], metavar="N", help="none: skip"
    )
    sc.add_argument(
        "--tasks",
        nargs="*",
        type=_at_least(1),
        default=[5, 10, 20, 50],
        metavar="N",
        help="synthetic tasks; none: skip",
    )
    sc.add_argument("--requests", type=_at_least(1), default=3000, help="per hey run (default 3000)")
    sc.add_argument("--clients", type=_at_least(1), default=16, help="concurrent hey clients (default 16)")
    sc.add_argument(
        "--repeats", type=_at_least(1), default=3, help="hey runs per replica count; median reported"
    )
    sc.add_argument("--publishes", type=_at_least(1), default=20, help="versions published per replica count")
    sc.add_argument("--publish-hz", type=_at_least(0.1, float), default=2.0, metavar="HZ")
    sc.add_argument("--versions", type=_at_least(1), default=20, help="versions scored per task count")
    sc.add_argument("--scenario", default="split-digits", help="model and serving settings from here")
    sc.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to update")
    sc.add_argument("--json", type=Path, default=Path("out/bench-scale.json"), help="raw results")
    _ingress_option(sc)
    return p


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


def _run(args: argparse.Namespace) -> int:
    from deploy.report import render_text
    from deploy.runner import RunOptions, learner_gpu, run

    scenario = load_scenario(args.scenario)
    if args.strategy:
        scenario = scenario.with_strategy(args.strategy)
    updates: dict[str, Any] = {}
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.serve_port is not None:
        updates["serving"] = scenario.serving.model_copy(update={"port": args.serve_port})
    learner_updates: dict[str, Any] = {}
    if args.publish_every is not None:
        learner_updates["publish_every"] = args.publish_every
    if args.boundaries is not None:
        learner_updates["boundaries"] = args.boundaries
    if args.device is not None:
        learner_updates["device"] = args.device
    if learner_updates:
        updates["learner"] = scenario.learner.model_copy(update=learner_updates)
    gate_updates = {
        k: v
        for k, v in (
            ("mode", args.gate),
            ("forgetting_budget", args.forgetting_budget),
            ("rollback_floor", args.rollback_floor),
        )
        if v is not None
    }
    if gate_updates:
        updates["gate"] = scenario.gate.model_copy(update=gate_updates)
    scenario = scenario.model_copy(update=updates)
    if args.address is None:  # this machine's devices decide; a cluster's placement is the user's
        from learner.device import DeviceError

        try:
            scenario = learner_gpu(scenario)
        except DeviceError as exc:
            raise ScenarioError(str(exc)) from None
    try:
        opts = RunOptions(
            duration_s=args.duration,
            report_dir=args.report_dir,
            address=args.address,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            ray_metrics_port=args.ray_metrics_port,
            prometheus=args.prometheus,
            prometheus_port=args.prometheus_port,
            scrape_interval_s=args.scrape_interval,
            load_rps=args.load_rps,
        )
    except ValueError as exc:
        raise ScenarioError(str(exc).replace("\n", " ")) from None
    if opts.prometheus:
        from deploy.promserver import PrometheusError, binary

        try:
            binary()  # before anything starts
        except PrometheusError as exc:
            raise ScenarioError(f"--prometheus: {exc}") from None

    def linger(report: dict[str, Any]) -> None:
        if args.linger > 0:
            sys.stderr.write(
                f"\nrun finished; serving and metrics stay up for {args.linger:.0f}s "
                f"({report['metrics_endpoint']}"
                + (f", Prometheus {report['prometheus']['url']}" if "prometheus" in report else "")
                + ")\n"
            )
            time.sleep(args.linger)

    if not args.verbose:
        import ray.serve  # configures its driver logger at INFO on import: quieten it afterwards

        for name in ("ray", ray.serve.__name__):
            logging.getLogger(name).setLevel(logging.WARNING)
    bar = ProgressLine()
    try:
        report = run(scenario, opts, progress=bar, on_finished=linger)
    finally:
        bar.close()
    print(render_text(report), end="")
    print(f"report: {opts.report_dir / 'report.json'}")
    if report.get("admin_token_file"):
        print(f"admin token (for /admin routes): {report['admin_token_file']}")
    return expectations_exit(report)


def expectations_exit(report: dict[str, Any]) -> int:
    """0, or EXPECTATION_FAILED after naming on stderr each promised outcome that did not hold."""
    failed = [e for e in report.get("expectations", []) if e["ok"] is False]
    for e in failed:
        why = f": {e['detail']}" if e.get("detail") else ""
        sys.stderr.write(
            f"olsim: expectation failed: {e['name']} = {e['value']} (expected {e['expected']}){why}\n"
        )
    return EXPECTATION_FAILED if failed else 0


def _report(args: argparse.Namespace) -> int:
    import json

    from deploy.report import render_text, write_html

    path = args.dir / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path} not found (give the directory `olsim run --report-dir` wrote)") from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"cannot read {path}: {exc}") from None
    try:
        text = render_text(report)
        html = write_html(report, args.dir)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ScenarioError(f"{path} is not an olsim report ({type(exc).__name__}: {exc})") from None
    (args.dir / "report.txt").write_text(text)
    print(f"wrote {html}, {args.dir / 'report.txt'} and {args.dir / 'plots'}/")
    return 0


def _bench_forgetting(args: argparse.Namespace) -> int:
    import json

    from deploy.bench import bench_forgetting

    for name in args.strategies:
        if name not in STRATEGIES:
            raise ScenarioError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}")
    for name in args.scenarios:
        load_scenario(name)
    command = "olsim bench forgetting " + " ".join(
        ["--strategies", *args.strategies, "--seeds", *map(str, args.seeds), "--scenarios", *args.scenarios]
    )
    results = bench_forgetting(args.strategies, args.seeds, args.scenarios, args.out, command)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"{len(results)} runs; table written to {args.out}, raw results to {args.json}")
    return 0


def _bench_knn_index(args: argparse.Namespace) -> int:
    from deploy.bench import write_section
    from deploy.bench_index import bench_index, render

    rows = bench_index(args.sizes, args.queries)
    command = "olsim bench knn-index " + " ".join(
        ["--sizes", *map(str, args.sizes), "--queries", *map(str, args.queries)]
    )
    write_section(args.out, render(rows, command), title="kNN memory search (`olsim bench knn-index`)")
    print(f"table written to {args.out}")
    return 0


def _load(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from deploy.loadtest import LoadOptions, load, render_text

    if args.url is None:
        load_scenario(args.scenario)  # unknown names: exit 2 before anything starts
    try:
        opts = LoadOptions(
            url=args.url.rstrip("/") if args.url else None,
            scenario=args.scenario,
            mode=args.mode,
            users=args.users,
            spawn_rate=args.spawn_rate,
            rps=args.rps,
            duration_s=args.duration,
            batch_rows=args.batch_rows,
            batch_share=args.batch_share,
            out=args.out,
            serve_port=args.serve_port,
            ray_metrics_port=args.ray_metrics_port,
        )
    except ValidationError as exc:
        print(f"olsim: error: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    report = load(opts)
    print(render_text(report), end="")
    print(f"report written to {opts.out}/load.json (latency plot: {opts.out}/load-latency.svg)")
    return 0


def _bench_reliability(args: argparse.Namespace) -> int:
    import json

    from deploy.bench_reliability import bench_reliability, chaos_scenarios, write

    names = args.scenarios or chaos_scenarios()
    for name in names:
        load_scenario(name)  # unknown names: exit 2 before anything starts
    command = (
        f"olsim bench reliability --scenarios {' '.join(names)} --load-rps {args.load_rps:g} "
        f"--ingress {args.ingress}"
    )
    rows = bench_reliability(names, args.report_dir, args.load_rps)
    write(rows, args.out, command)
    (args.report_dir / "reliability.json").write_text(json.dumps(rows, indent=2))
    print(f"table written to {args.out}; reports under {args.report_dir}")
    return 0 if all(r["outcomes_ok"] for r in rows) else EXPECTATION_FAILED


def _bench_serve(args: argparse.Namespace) -> int:
    import json

    from deploy.bench_serve import BenchError, bench_serve, overload, write

    command = (
        f"olsim bench serve --sizes {' '.join(map(str, args.sizes))} --requests {args.requests} "
        f"--clients {args.clients} --repeats {args.repeats} --ingress {' '.join(args.ingress)} "
        f"--processes {' '.join(map(str, args.processes))} --overload {' '.join(map(str, args.overload))}"
    )
    try:
        rows = bench_serve(
            args.sizes,
            args.requests,
            args.clients,
            args.repeats,
            args.json.parent / "bench-serve",
            modes=args.ingress,
            processes=args.processes,
        )
        overloaded = overload(args.overload, args.requests, args.json.parent / "bench-serve")
    except BenchError as exc:
        raise UserError(f"bench serve: {exc}") from None
    write(rows, args.out, command, args.clients, overloaded)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "overload": overloaded}, indent=2))
    print(f"table written to {args.out}, raw results to {args.json}")
    return 0


def _bench_swap(args: argparse.Namespace) -> int:
    import json

    from deploy.bench_swap import bench_swap, write

    scenario = load_scenario(args.scenario)
    serving: dict[str, Any] = {}
    if args.replicas is not None:
        serving["replicas"] = args.replicas
    if args.serve_port is not None:
        serving["port"] = args.serve_port
    if serving:
        scenario = scenario.model_copy(update={"serving": scenario.serving.model_copy(update=serving)})
    command = (
        f"olsim bench swap --scenario {args.scenario} --rounds {args.rounds} --cycles {args.cycles} "
        f"--window {args.window:g} --rps {args.rps:g} --publish-hz {args.publish_hz:g} "
        f"--replicas {scenario.serving.replicas} --ingress {args.ingress}"
    )
    results = bench_swap(scenario, args.rounds, args.cycles, args.window, args.rps, args.publish_hz)
    write(results, args.out, command, scenario, args.rps, args.publish_hz)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"table written to {args.out}, raw results to {args.json}")
    return 0


def _bench_learner(args: argparse.Namespace) -> int:
    import json

    from deploy.bench import write_section
    from deploy.bench_learner import bench_learner, render

    command = (
        f"olsim bench learner --strategies {' '.join(args.strategies)} "
        f"--batches {' '.join(map(str, args.batches))} --seconds {args.seconds:g} --repeats {args.repeats}"
    )
    rows = bench_learner(args.strategies, args.batches, args.seconds, args.repeats)
    write_section(args.out, render(rows, command), title="Learner throughput (`olsim bench learner`)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"table written to {args.out}, raw results to {args.json}")
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    import json

    from deploy.bench_scale import evaluation_scale, serving_scale, write
    from deploy.bench_serve import require_hey

    if args.replicas:
        require_hey()  # before the evaluation part runs
    command = (
        f"olsim bench scale --replicas {' '.join(map(str, args.replicas))} "
        f"--tasks {' '.join(map(str, args.tasks))} "
        f"--requests {args.requests} --clients {args.clients} --repeats {args.repeats} "
        f"--publishes {args.publishes} --publish-hz {args.publish_hz:g} --versions {args.versions} "
        f"--scenario {args.scenario} --ingress {args.ingress}"
    )
    scenario = load_scenario(args.scenario)
    evaluation = evaluation_scale(args.tasks, args.versions) if args.tasks else []
    serving = []
    if args.replicas:
        serving = serving_scale(
            scenario,
            args.replicas,
            args.json.parent / "bench-scale",
            args.requests,
            args.clients,
            args.repeats,
            args.publishes,
            args.publish_hz,
        )
    write(serving, evaluation, args.out, command, args.clients)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"serving": serving, "evaluation": evaluation}, indent=2))
    print(f"table written to {args.out}, raw results to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not getattr(args, "address", None):
        keep_ray_on_loopback()  # before anything imports ray
        if isinstance(getattr(args, "ingress", None), str):  # bench serve starts each mode itself
            try:
                use_ingress(args.ingress)  # before olsim starts Ray: Ray's processes inherit it
            except IngressError as exc:
                print(f"olsim: error: {exc}", file=sys.stderr)
                return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _dispatch(args)
    except UserError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # anything else: still one line; -v logs the traceback
        log.info("unexpected error", exc_info=True)
        return _fail(f"{type(exc).__name__}: {first_line(exc)}")


def _fail(message: str, code: int = 2) -> int:
    """Every failure: one line on stderr, exit code 2 (130 when interrupted)."""
    print(f"olsim: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "report":
        return _report(args)
    if args.command == "load":
        return _load(args)
    bench = {
        "forgetting": _bench_forgetting,
        "knn-index": _bench_knn_index,
        "swap": _bench_swap,
        "serve": _bench_serve,
        "reliability": _bench_reliability,
        "scale": _bench_scale,
        "learner": _bench_learner,
    }
    return bench[args.bench](args)


if __name__ == "__main__":
    sys.exit(main())
