"""``olsim bench forgetting``: every strategy, every setting, several seeds, one table.

Runs the learner in-process, with the very same :class:`olsim.learner.loop.LearnerLoop` that the Ray
learner actor runs (so the accuracy matrices equal what ``olsim run`` reports for the same scenario
and seed), without Serve and without rate limiting. Each (scenario, strategy, seed) runs in a fresh
process so its peak RSS is its own; in that process a plain torch loop over the same batches is timed
three times, interleaved with three runs of the strategy, and the median samples/s of the strategy
is reported as a ratio to the loop's median.
"""

from __future__ import annotations

import logging
import multiprocessing
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from olsim.deploy.markdown import write_section
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, load_scenario

log = logging.getLogger(__name__)

SETTINGS = (  # (scenario, evaluation, boundaries, label)
    ("split-digits", "class", "announced", "split-digits, class-incremental"),
    ("split-digits", "task", "announced", "split-digits, task-incremental"),
    ("permuted-digits", "class", "announced", "permuted-digits, domain-incremental"),
    ("split-digits", "class", "detected", "split-digits, class-incremental, task-free (boundaries detected)"),
    (
        "permuted-digits",
        "class",
        "detected",
        "permuted-digits, domain-incremental, task-free (boundaries detected)",
    ),
)
# Strategies whose behaviour depends on task boundaries also run task-free (naive as the reference),
# on the built-in scenarios; other scenarios (a YAML path: users' own model and tasks) run with
# announced boundaries, class accuracy, one table each.
TASK_FREE = ("naive", "ewc", "si", "lwf", "lora")
BUILTIN = tuple(dict.fromkeys(name for name, *_ in SETTINGS))


def markers(scenarios: list[str]) -> tuple[str, str]:
    """The lines around the table in the results page: one section for the built-in scenarios, one
    per other set of scenarios (so benching your own model does not replace the built-in table).

    >>> markers(["split-digits"])[0], markers(["examples/a.yaml"])[1]
    ('<!-- olsim bench forgetting: start -->', '<!-- olsim bench forgetting examples/a.yaml: end -->')
    """
    own = [s for s in scenarios if s not in BUILTIN]
    tag = f"olsim bench forgetting {' '.join(own)}" if own else "olsim bench forgetting"
    return f"<!-- {tag}: start -->", f"<!-- {tag}: end -->"


def settings(scenarios: list[str]) -> list[tuple[str, str, str, str]]:
    """(scenario, evaluation, boundaries, label) of each table for ``scenarios``."""
    out = [s for s in SETTINGS if s[0] in scenarios]
    return out + [(s, "class", "announced", f"{s} (class accuracy)") for s in scenarios if s not in BUILTIN]


def _state_bytes(obj: Any) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_state_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_state_bytes(v) for v in obj)
    return 0


def raw_loop_samples_per_s(scenario: Scenario, seed: int) -> float:
    """A plain torch training loop over the same batches: the ceiling a learner can approach. Like
    olsim's trainer it reads the loss back every step (``loss.item()``, a device sync), and it runs
    in the caller's torch threads (one, as the learner's)."""
    import torch

    from olsim.learner.model import build_model

    stream = scenario.stream.model_copy(update={"rate": None}).build(seed)
    batches = [
        (torch.from_numpy(b.x), torch.from_numpy(b.y)) for b in stream.batches(scenario.learner.batch_size)
    ]
    model = build_model(scenario.learner.model, seed=seed)
    objective = scenario.learner.model.task_objective
    opt = torch.optim.Adam(model.parameters(), lr=scenario.learner.optimizer.lr)
    t0 = time.perf_counter()
    for x, y in batches:
        loss = objective.loss(model(x), x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return sum(len(y) for _, y in batches) / (time.perf_counter() - t0)


def run_one(scenario: Scenario, seed: int) -> dict[str, Any]:
    """Train ``scenario`` in-process; evaluate the version published at each task end."""
    import torch

    from olsim.learner.evaluator import Evaluator
    from olsim.learner.facts import FactProbes, FactsLedger
    from olsim.learner.loop import LearnerLoop
    from olsim.learner.snapshot import Snapshot

    torch.set_num_threads(1)
    stream = scenario.stream.model_copy(update={"rate": None}).build(seed)
    probes = FactProbes.for_stream(scenario.stream.plugin, seed, stream)
    facts = FactsLedger(probes) if probes is not None else None
    evaluator = Evaluator(stream.tasks, stream.segments, scenario.learner.model.objective, facts)
    eval_s = 0.0
    count = 0

    def publish(snap: Snapshot) -> int:
        nonlocal count, eval_s
        count += 1
        if snap.meta.get("task_end") or facts is not None:  # freshness needs every version scored
            t = time.perf_counter()
            evaluator.record(count, snap, published_at=time.time())
            eval_s += time.perf_counter() - t
        return count

    loop = LearnerLoop(stream, scenario.learner, seed, publish)
    evaluator.set_baseline(loop.initial)
    t0 = time.perf_counter()
    loop.run()
    train_s = time.perf_counter() - t0 - eval_s
    return {
        "class": {"accuracy_matrix": evaluator.matrix(), **evaluator.summary()},
        "task": (
            {"accuracy_matrix": evaluator.matrix(task_il=True), **evaluator.summary(task_il=True)}
            if evaluator.has_task_il
            else None
        ),
        "routing_accuracy": evaluator.routing_accuracy(),
        "drifts": list(loop.state.drifts),
        "samples": loop.trainer.samples,
        "samples_per_s": loop.trainer.samples / train_s,
        "state_bytes": _state_bytes(loop.trainer.strategy.state_dict()),
        "facts": evaluator.facts_report(),
        "bits": evaluator.bits_report(),
    }


def _child(job: tuple[str, str, int, str, int]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # before the first timed loop: the baseline runs as the strategy does
    name, strategy, seed, boundaries, repeats = job
    scenario = load_scenario(name).with_strategy(strategy)
    learner = scenario.learner.model_copy(update={"boundaries": boundaries})
    scenario = resolve(scenario.model_copy(update={"learner": learner}))
    # Interleaved repeats, medians of each: the ratio is then robust to a noisy neighbour on 2 cores.
    raws, runs = [], []
    for _ in range(repeats):
        raws.append(raw_loop_samples_per_s(scenario, seed))
        runs.append(run_one(scenario, seed))
    raw = statistics.median(raws)
    out = runs[0]  # every repeat trains the same model (seeded): accuracies are identical
    out["samples_per_s"] = statistics.median(r["samples_per_s"] for r in runs)
    out.update(
        scenario=name,
        strategy=strategy,
        seed=seed,
        boundaries=boundaries,
        true_boundaries=[b for _, b in scenario.stream.build(seed).segment_bounds()][:-1],
        raw_samples_per_s=raw,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return out


def _ms(values: list[float | None], fmt: str = "{:.3f}") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format(sd)}"


def _delay(alarms: list[int], truth: list[int]) -> float | None:
    """Mean samples from each true boundary to the first alarm after it (None if none came)."""
    lags = [min((a - b for a in alarms if a >= b), default=None) for b in truth]
    found = [x for x in lags if x is not None]
    return statistics.mean(found) if found else None


def render(results: list[dict[str, Any]], seeds: list[int], command: str) -> str:
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    start, end = markers(scenarios)
    lines = [
        start,
        f"Command: `{command}` (seeds {', '.join(map(str, seeds))}; {platform.machine()}, "
        f"{multiprocessing.cpu_count()} CPUs, torch single-threaded; "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}).",
        "",
        "Mean ± std over seeds. samples/s excludes held-out evaluation; `vs raw loop` is the ratio to",
        "a plain torch loop (Adam, same batches) timed in the same process; `state` is the strategy's own",
        "tensors (buffers, Fisher, teacher); `peak RSS` is the whole process (Python + torch included).",
        "`routing` (lora) is the share of test rows routed to their own task's adapter without a task id.",
    ]
    if any(r["boundaries"] == "detected" for r in results):
        lines += [
            "Task-free runs: the stream announces no boundaries; a Page-Hinkley test on the prequential",
            "error calls `on_drift`; `drift delay` is the mean lag (in samples) of the alarms behind the",
            "true boundaries, `alarms` their count (4 true boundaries).",
        ]
    strategies = list(dict.fromkeys(r["strategy"] for r in results))
    for name, evaluation, boundaries, label in settings(scenarios):
        rows = [r for r in results if r["scenario"] == name and r["boundaries"] == boundaries]
        if not rows:
            continue
        task_free = boundaries == "detected"
        extra = " alarms | drift delay |" if task_free else " routing |"
        lines += [
            "",
            f"### {label}",
            "",
            "| strategy | ACC | BWT | forgetting | samples/s | vs raw loop | state MB | peak RSS MB |"
            + extra,
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if task_free else ""),
        ]
        if any(r.get("facts") for r in rows):
            lines[-4] = f"### {name} (exact match)"
        elif any(r.get("bits") for r in rows):
            lines[-4] = f"### {name} (next-byte accuracy with a full context)"
        for s in strategies:
            rs = [r for r in rows if r["strategy"] == s and r[evaluation] is not None]
            if not rs:
                continue
            m = [r[evaluation] for r in rs]
            if task_free:
                delays = [_delay(r["drifts"], r["true_boundaries"]) for r in rs]
                tail = f" {_ms([float(len(r['drifts'])) for r in rs], '{:.1f}')} | {_ms(delays, '{:.0f}')} |"
            else:
                tail = f" {_ms([r['routing_accuracy'] for r in rs])} |"
            lines.append(
                f"| {s} | {_ms([x['acc'] for x in m])} | {_ms([x['bwt'] for x in m])} | "
                f"{_ms([x['forgetting'] for x in m])} | {_ms([r['samples_per_s'] for r in rs], '{:.0f}')} | "
                f"{_ms([r['samples_per_s'] / r['raw_samples_per_s'] for r in rs], '{:.2f}')} | "
                f"{statistics.mean(r['state_bytes'] for r in rs) / 2**20:.2f} | "
                f"{statistics.mean(r['peak_rss_mb'] for r in rs):.0f} |" + tail
            )
    lines += _facts_tables(results, strategies)
    lines += _bits_tables(results, strategies)
    lines.append(end)
    return "\n".join(lines)


def _facts_tables(results: list[dict[str, Any]], strategies: list[str]) -> list[str]:
    """Per facts scenario: what the last version knows, and how fast facts reach users."""
    lines: list[str] = []
    for name in dict.fromkeys(r["scenario"] for r in results if r.get("facts")):
        lines += [
            "",
            f"### {name}: what the last version knows",
            "",
            "`old kept`: earlier periods' facts still true, answered right; `updated fresh` / `stale`: "
            "changed facts answered with the new / the superseded value; `new`: the last period's new "
            "facts; `fresh after`: versions from a fact's arrival to the first that answers it (1: the "
            "next one), p50 / p90 over every fact and over the last period's; `state`: the strategy's "
            "own arrays (a fact store, a buffer, a Fisher).",
            "",
            "| strategy | old kept | updated fresh | stale | new | fresh after (all) "
            "| fresh after (last period) | samples/s | state MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in strategies:
            rs = [r for r in results if r["scenario"] == name and r["strategy"] == s and r.get("facts")]
            if not rs:
                continue
            last = [r["facts"]["overall"] for r in rs]

            def fresh(key: str, blocks: list[dict[str, Any]]) -> str:
                vals = [b["versions"][key] for b in blocks if b["versions"] is not None]
                return _ms(vals, "{:.1f}")

            every = [r["facts"]["freshness"] for r in rs]
            final = [r["facts"]["periods"][-1]["freshness"] for r in rs]
            lines.append(
                f"| {s} | {_ms([x['old_kept'] for x in last])} | {_ms([x['updated_fresh'] for x in last])} | "
                f"{_ms([x['stale_answers'] for x in last])} | {_ms([x['new_learned'] for x in last])} | "
                f"{fresh('p50', every)} / {fresh('p90', every)} | "
                f"{fresh('p50', final)} / {fresh('p90', final)} | "
                f"{_ms([r['samples_per_s'] for r in rs], '{:.0f}')} | "
                f"{statistics.mean(r['state_bytes'] for r in rs) / 2**20:.2f} |"
            )
    return lines


def _bits_tables(results: list[dict[str, Any]], strategies: list[str]) -> list[str]:
    """Per language-model scenario other than facts: held-out bits per byte per task, after the
    segment that trained it and at the end, and the rise on earlier tasks (forgetting, in bits)."""
    lines: list[str] = []
    for name in dict.fromkeys(r["scenario"] for r in results if r.get("bits") and not r.get("facts")):
        tasks = next(r["bits"]["tasks"] for r in results if r["scenario"] == name and r.get("bits"))
        lines += [
            "",
            f"### {name}: bits per byte (lower is better)",
            "",
            "Per task: held-out bits per byte of the version that ended the segment that last trained it "
            "→ of the last version (8: a uniform guess). `rise`: the mean over earlier tasks of that change "
            "(`olsim.learner.metrics.bits_rise`), what fine-tuning on later tasks cost them.",
            "",
            f"| strategy | {' | '.join(tasks)} | rise | samples/s | state MB |",
            "|---|" + "---|" * (len(tasks) + 3),
        ]
        for s in strategies:
            rs = [r for r in results if r["scenario"] == name and r["strategy"] == s and r.get("bits")]
            if not rs:
                continue
            cells = []
            for j in range(len(tasks)):  # the last row, and before it the row that last trained j
                end = statistics.mean(r["bits"]["matrix"][-1][j] for r in rs)
                rises = [r["bits"]["rise"][j] for r in rs]
                own = None if None in rises else end - statistics.mean(x for x in rises if x is not None)
                cells.append(f"{end:.2f}" if own is None else f"{own:.2f} → {end:.2f}")
            lines.append(
                f"| {s} | {' | '.join(cells)} | {_ms([r['bits']['mean_rise'] for r in rs], '{:.2f}')} | "
                f"{_ms([r['samples_per_s'] for r in rs], '{:.0f}')} | "
                f"{statistics.mean(r['state_bytes'] for r in rs) / 2**20:.2f} |"
            )
    return lines


def trains(scenario: str, strategy: str) -> bool:
    """Whether ``strategy`` can train ``scenario``'s model (a next-token model takes fewer)."""
    from olsim.learner.strategies.registry import STRATEGIES

    return STRATEGIES[strategy][1].trains(load_scenario(scenario).learner.model)


def bench_forgetting(
    strategies: list[str],
    seeds: list[int],
    scenarios: list[str],
    out: Path | None,
    command: str,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    pairs = [(sc, st) for sc in scenarios for st in strategies if trains(sc, st)]
    if skipped := [f"{st} on {sc}" for sc in scenarios for st in strategies if (sc, st) not in pairs]:
        log.warning("not run (the strategy cannot train the scenario's model): %s", ", ".join(skipped))
    jobs = [(sc, st, seed, "announced", repeats) for sc, st in pairs for seed in seeds]
    jobs += [
        (sc, st, seed, "detected", repeats)
        for sc, st in pairs
        if sc in BUILTIN and st in TASK_FREE
        for seed in seeds
    ]
    results: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=1, maxtasksperchild=1) as pool:
        for i, r in enumerate(pool.imap(_child, jobs), 1):
            c = r["class"]
            log.warning(
                "[%d/%d] %s %s seed=%d acc=%.3f bwt=%+.3f samples/s=%.0f (raw %.0f)",
                i,
                len(jobs),
                r["scenario"],
                r["strategy"],
                r["seed"],
                c["acc"],
                c["bwt"] or 0.0,
                r["samples_per_s"],
                r["raw_samples_per_s"],
            )
            results.append(r)
    if out is not None:
        write_section(
            out, render(results, seeds, command), title="Strategies compared (`olsim bench forgetting`)"
        )
    return results
