"""Settle what a scenario's tasks and code decide, and check users' code before anything starts.

:func:`resolve` builds the scenario's tasks once (calling a task source if it names one), derives the
model's ``in_features`` and ``n_classes`` from them, lets the strategy shape the model, then builds
the model and the strategy and runs the model on a sample batch. Whatever is wrong with a plugin
(not importable, a factory that raises, a wrong return type, logits of the wrong shape, non-finite
output, labels outside ``n_classes``, a strategy that is not a strategy) is a :class:`ScenarioError`
with one line. :func:`runtime_env` is what Ray needs so that every worker can import that code.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from olsim.deploy.scenario.spec import Scenario, ScenarioError
from olsim.stream.plugin import ImportRef, PluginError, source_path

log = logging.getLogger(__name__)


def plugins(scenario: Scenario) -> list[tuple[str, ImportRef]]:
    """Every piece of users' code the scenario names, with where it is named.

    >>> plugins(Scenario(name="x"))
    []
    """
    out = []
    if (ref := scenario.stream.plugin) is not None:
        out.append(("stream.tasks", ref))
    if (ref := scenario.learner.model.plugin) is not None:
        out.append(("learner.model", ref))
    strategy = scenario.learner.strategy
    if strategy.kind == "import":
        out.append(("learner.strategy", strategy.plugin))
    return out


def add_search_path(*dirs: Path) -> None:
    """Let this process import plugin modules from ``dirs`` (after everything installed, so a local
    file never shadows an installed module)."""
    for d in dirs:
        path = str(d.resolve())
        if path not in sys.path:
            sys.path.append(path)


def runtime_env(scenario: Scenario) -> dict[str, Any] | None:
    """Ray's ``runtime_env`` that ships the local source of the scenario's plugins to every worker
    (``py_modules``); None when it names none, or only installed code (which every node must have).

    >>> runtime_env(Scenario(name="x")) is None
    True
    """
    paths: set[str] = set()
    for where, ref in plugins(scenario):
        try:
            path = source_path(ref.target)
        except PluginError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        if path is not None:
            paths.add(str(path))
    return {"py_modules": sorted(paths)} if paths else None


def resolve(scenario: Scenario) -> Scenario:
    """The scenario with its task count, ``in_features`` and ``n_classes`` settled from its tasks and
    the model shaped by its strategy, every plugin checked. Idempotent.

    >>> s = resolve(Scenario(name="x", stream={"tasks": "synthetic", "n_tasks": 2}))
    >>> s.stream.n_tasks, s.learner.model.in_features, s.learner.model.n_classes
    (2, 64, 10)
    """
    try:
        return _resolve(scenario)
    except (PluginError, ValueError, TypeError) as exc:
        raise ScenarioError(str(exc).strip().splitlines()[0]) from None


def _resolve(scenario: Scenario) -> Scenario:
    import torch

    from olsim.learner.adapters import adapter_task
    from olsim.learner.model import ModelSpec, build_model
    from olsim.learner.strategies.lora import Lora
    from olsim.learner.strategies.registry import make_strategy, strategy_class

    defaults = ModelSpec()  # values a scenario that leaves them out gets from its tasks instead

    s = scenario
    tasks = s.stream.build_tasks(s.seed)  # a task source is called and its output checked here
    stream = s.stream.with_source_tasks(len(tasks))  # n_tasks set: a task source's count is now known
    width = int(tasks[0].train.x.shape[1])
    labels = 1 + max(max(t.classes) for t in tasks)
    model = s.learner.model
    if model.in_features not in (width, defaults.in_features):
        raise PluginError(
            f"learner.model.in_features={model.in_features} but the tasks have {width} features"
        )
    classes = stream.builtin_classes or labels
    if model.n_classes != defaults.n_classes:
        if model.n_classes < labels:
            raise PluginError(
                f"labels outside n_classes: the tasks have labels up to {labels - 1} "
                f"but learner.model.n_classes={model.n_classes}"
            )
        classes = model.n_classes
    model = model.model_copy(update={"in_features": width, "n_classes": classes})
    strategy = s.learner.strategy
    cls = strategy_class(strategy)
    segments = stream.segments
    if issubclass(cls, Lora) and len(set(segments)) < len(segments):
        raise PluginError("lora trains one adapter set per task, once, in order: a task cannot come back")
    model = cls.fit_model(model, stream.task_count)
    net = build_model(model, seed=s.seed)
    sample = torch.from_numpy(tasks[0].train.x[:8].copy())
    try:
        with torch.no_grad(), adapter_task(0 if model.adapters else None):
            out = net.eval()(sample)
    except Exception as exc:
        raise PluginError(
            f"learner.model: forward on a sample batch raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(
            f"learner.model: logits of shape {shape} for a batch of shape {tuple(sample.shape)}; "
            f"the model must return ({len(sample)}, {classes}): (batch, n_classes)"
        )
    if not torch.isfinite(out).all():
        raise PluginError("learner.model: non-finite logits on a sample batch of the first task")
    if getattr(strategy, "embedding", None) == "network" and not callable(getattr(net, "embed", None)):
        raise PluginError("knn embedding 'network' needs a model with an embed(x) method (or use 'input')")
    make_strategy(strategy, n_features=width, seed=s.seed)  # its Config validates args; __init__ runs
    learner = s.learner.model_copy(update={"model": model})
    return s.model_copy(update={"stream": stream, "learner": learner})
