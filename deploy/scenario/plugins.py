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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from olsim.deploy.errors import first_line, validation_line
from olsim.deploy.scenario.spec import Scenario, ScenarioError, check_visits
from olsim.stream.plugin import ImportRef, PluginError, source_path
from olsim.stream.tasks import Task

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
    the model shaped by its strategy, every plugin checked. A resolved scenario is returned as is.

    >>> s = resolve(Scenario(name="x", stream={"tasks": "synthetic", "n_tasks": 2}))
    >>> s.stream.n_tasks, s.learner.model.in_features, s.learner.model.n_classes
    (2, 64, 10)
    """
    if scenario.resolved:
        return scenario
    try:
        out = _resolve(scenario)
    except ValidationError as exc:
        raise ScenarioError(validation_line(exc)) from None
    except (PluginError, ValueError, TypeError) as exc:
        raise ScenarioError(first_line(exc)) from None
    out.resolved = True
    return out


def _resolve(scenario: Scenario) -> Scenario:
    import torch

    from olsim.learner.model import ModelSpec, build_model
    from olsim.learner.strategies.registry import make_strategy, strategy_class

    s = scenario
    tasks = s.stream.build_tasks(s.seed)  # a task source is called and its output checked here
    stream = s.stream.with_source_tasks(len(tasks))  # n_tasks set: a task source's count is now known
    width = int(tasks[0].train.x.shape[1])
    model = s.learner.model
    given = model.model_fields_set  # what the scenario wrote; the rest follows from the tasks
    if "in_features" in given and model.in_features != width:
        raise PluginError(
            f"learner.model.in_features={model.in_features} but the tasks have {width} features"
        )
    if model.objective == "next-token":
        _check_token_rows(tasks, model.n_classes)
        classes = model.n_classes
    else:
        classes = _classes(tasks, stream.builtin_classes, model.n_classes if "n_classes" in given else None)
    model = ModelSpec.model_validate({**model.model_dump(), "in_features": width, "n_classes": classes})
    strategy = s.learner.strategy
    cls = strategy_class(strategy)
    if not cls.trains(model):
        raise PluginError(
            f"strategy {cls.name} cannot train a {model.objective} model "
            f"(it trains: {', '.join(cls.objectives)})"
        )
    check_visits(cls, stream)
    model = cls.fit_model(model, stream.task_count)
    net = build_model(model, seed=s.seed).eval()
    sample = torch.from_numpy(tasks[0].train.x[:8].copy())
    out = _forward(net, sample, "forward", 0 if model.adapters else None)
    shape = model.task_objective.output_shape(len(sample), width, classes)
    if tuple(out.shape) != shape:
        what = "(batch, n_classes)" if len(shape) == 2 else "(batch, tokens, vocabulary)"
        raise PluginError(
            f"learner.model: logits of shape {tuple(out.shape)} for a batch of shape {tuple(sample.shape)}; "
            f"the model must return {shape}: {what}"
        )
    built = make_strategy(strategy, n_features=width, seed=s.seed)  # its Config validates args
    if cls.name == "knn" and model.objective == "next-token":
        if not all(callable(getattr(net, m, None)) for m in ("hidden", "head")):
            raise PluginError(
                "knn on a next-token model needs hidden(tokens) -> states and head(states) -> logits "
                "methods (its kNN-LM keys are the hidden states)"
            )
    if getattr(built.config, "embedding", None) == "network" and model.objective == "classify":
        if not callable(getattr(net, "embed", None)):
            raise PluginError(
                "knn embedding 'network' needs a model with an embed(x) method (or use 'input')"
            )
        keys = _forward(net.embed, sample, "embed", None)  # type: ignore[arg-type]
        if keys.ndim != 2 or len(keys) != len(sample):
            raise PluginError(
                f"learner.model: embed(x) returned shape {tuple(keys.shape)}; it must be (batch, D)"
            )
    learner = s.learner.model_copy(update={"model": model})
    return s.model_copy(update={"stream": stream, "learner": learner})


def _classes(tasks: list[Task], builtin: int | None, given: int | None) -> int:
    """A classifier's ``n_classes``: a built-in set's, the one the scenario gives (checked), else
    1 + the largest label."""
    labels = 1 + max(max(t.classes) for t in tasks)
    if len({c for t in tasks for c in t.classes}) < 2:
        raise PluginError("the tasks have a single class label between them: a classifier needs two")
    if given is not None:
        if given < labels:
            raise PluginError(
                f"labels outside n_classes: the tasks have labels up to {labels - 1} "
                f"but learner.model.n_classes={given}"
            )
        return given
    return builtin or labels


def _check_token_rows(tasks: list[Task], vocab: int) -> None:
    """A next-token model's rows hold token ids below ``vocab`` and answer starts inside the row."""
    for t in tasks:
        for part, split in zip(("train", "val", "test"), t.splits, strict=True):
            x = split.x
            if (x != x.round()).any() or x.min() < 0 or x.max() >= vocab:
                raise PluginError(
                    f"task {t.index} ({t.name!r}) {part}: token rows must hold integer ids 0..{vocab - 1}"
                )
            length = (x > 0).sum(axis=1)  # a row is its text, then only padding
            if (x[:, 0] == 0).any() or ((x > 0) != (np.arange(x.shape[1])[None, :] < length[:, None])).any():
                raise PluginError(
                    f"task {t.index} ({t.name!r}) {part}: a token row is its text then 0s "
                    "(0 pads, and only after the text)"
                )
            if (split.y >= length).any():
                i = int(np.flatnonzero(split.y >= length)[0])
                raise PluginError(
                    f"task {t.index} ({t.name!r}) {part}: row {i}'s answer starts at {int(split.y[i])}, "
                    f"not inside its {int(length[i])} bytes of text"
                )


def _forward(fn: Callable[[Any], Any], x: Any, what: str, task: int | None) -> Any:
    """``fn(x)`` on a sample batch: a finite floating-point tensor, or a PluginError saying why not."""
    import torch

    from olsim.learner.adapters import adapter_task

    try:
        with torch.no_grad(), adapter_task(task):
            out = fn(x)
    except Exception as exc:
        raise PluginError(
            f"learner.model: {what} on a sample batch raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        kind = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise PluginError(f"learner.model: {what} returned {kind}; it must return a float tensor")
    if not torch.isfinite(out).all():
        raise PluginError(f"learner.model: {what} gave non-finite values on a sample batch of the first task")
    return out
