"""Users' code in a scenario: a model factory, a task source and a strategy by import path.

Every way a plugin can be wrong ends ``olsim run`` before anything starts (no Ray, no report
directory) with one line on stderr and exit code 2; a good plugin scenario resolves to the task count,
input width and class count its tasks decide.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import olsim
from olsim.deploy.cli import main
from olsim.deploy.scenario.plugins import resolve, runtime_env
from olsim.deploy.scenario.spec import Scenario, ScenarioError, load_scenario

EXAMPLE = Path(__file__).parents[3] / "examples" / "rotated-digits.yaml"

PLUGINS = """
import math
import numpy as np
import torch
from torch import nn
from olsim.stream.tasks import TaskData

def tasks(seed, n=3, width=6, label_shift=0, nan=False):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        x = rng.normal(size=(60, width)).astype(np.float32)
        if nan:
            x[0, 0] = float("nan")
        out.append(TaskData(f"t{t}", x, rng.integers(0, 3, size=60) + label_shift))
    return out

def tuples(seed):
    rng = np.random.default_rng(seed)
    return [(f"t{t}", rng.normal(size=(40, 6)), np.arange(40) % 2) for t in range(2)]

def not_a_list(seed):
    return 42

def boom(seed, **kw):
    raise RuntimeError("disk on fire")

def model(in_features, n_classes):
    return nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, n_classes))

def model_raises(in_features, n_classes):
    raise ValueError("needs a GPU cluster")

def not_a_module(in_features, n_classes):
    return {"weights": 1}

def wrong_shape(in_features, n_classes):
    return nn.Linear(in_features, n_classes + 1)

class NanNet(nn.Module):
    def __init__(self, in_features, n_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)
    def forward(self, x):
        return self.fc(x) * float("nan")

class NotAStrategy:
    pass

def empty(seed):
    return []

def flat_x(seed):
    return [("t0", np.zeros(30), np.arange(30) % 2)]

def two_widths(seed):
    return [("a", np.zeros((30, 4)), np.arange(30) % 2), ("b", np.zeros((30, 5)), np.arange(30) % 2)]

def bad_split(seed):
    return [TaskData("t0", np.zeros((30, 4)), np.arange(30) % 2, split=np.full(30, 7))]

def same_names(seed):
    return [("t", np.zeros((30, 4)), np.arange(30) % 2), ("t", np.zeros((30, 4)), np.arange(30) % 2)]

def no_features(seed):
    return [("t0", np.zeros((30, 0)), np.arange(30) % 2)]

def one_class(seed):
    return [("t0", np.zeros((30, 4)), np.zeros(30, dtype=int))]

class IntNet(nn.Module):
    def __init__(self, in_features, n_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)
    def forward(self, x):
        return self.fc(x).round().long()

class BadEmbed(nn.Module):
    def __init__(self, in_features, n_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)
    def embed(self, x):
        return x[:, None, :]
    def forward(self, x):
        return self.fc(x)

from olsim.learner.strategies.replay import Replay
import olsim

class Nameless(olsim.Strategy):
    pass

class MyReplay(Replay):
    name = "my-replay"
"""


@pytest.fixture(scope="module")
def plugdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plugins")
    (d / "olsim_test_plugins.py").write_text(PLUGINS)
    return d


def _scenario(d: Path, body: str) -> Path:
    p = d / f"s{abs(hash(body))}.yaml"
    p.write_text("name: p\nstream: {epochs: 1, rate: null}\n" + textwrap.dedent(body))
    return p


P = "olsim_test_plugins"
BAD = {
    "module not found": (
        "stream: {tasks: {import: 'no_such_pkg.tasks:f'}}",
        "stream.tasks: cannot import 'no_such_pkg.tasks' (No module named 'no_such_pkg')",
    ),
    "attribute not found": (
        f"learner: {{model: {{import: '{P}:nope'}}}}",
        f"learner.model: module '{P}' has no attribute 'nope'",
    ),
    "task source raises": (f"stream: {{tasks: {{import: '{P}:boom'}}}}", "raised RuntimeError: disk on fire"),
    "task source returns a number": (
        f"stream: {{tasks: {{import: '{P}:not_a_list'}}}}",
        "a task source returns a sequence of tasks, got int",
    ),
    "task source returns no tasks": (f"stream: {{tasks: {{import: '{P}:empty'}}}}", "returned no tasks"),
    "x not 2-D": (f"stream: {{tasks: {{import: '{P}:flat_x'}}}}", "x must be a 2-D numeric array"),
    "x without features": (
        f"stream: {{tasks: {{import: '{P}:no_features'}}}}",
        "x must be a 2-D numeric array",
    ),
    "tasks of different widths": (
        f"stream: {{tasks: {{import: '{P}:two_widths'}}}}",
        "every task needs the same number of features, got [4, 5]",
    ),
    "a split that is not 0, 1 or 2": (
        f"stream: {{tasks: {{import: '{P}:bad_split'}}}}",
        "split must give each row 0 (train), 1 (val) or 2 (test)",
    ),
    "two tasks of one name": (
        f"stream: {{tasks: {{import: '{P}:same_names'}}}}",
        "task names must be unique",
    ),
    "a single class": (f"stream: {{tasks: {{import: '{P}:one_class'}}}}", "a classifier needs two"),
    "n_classes given as 10 with labels up to 15": (
        f"stream: {{tasks: {{import: '{P}:tasks', args: {{label_shift: 13}}}}}}\n"
        "learner: {model: {kind: mlp, n_classes: 10}}",
        "labels outside n_classes: the tasks have labels up to 15 but learner.model.n_classes=10",
    ),
    "in_features given and not the tasks' width": (
        f"stream: {{tasks: {{import: '{P}:tasks'}}}}\nlearner: {{model: {{kind: mlp, in_features: 64}}}}",
        "learner.model.in_features=64 but the tasks have 6 features",
    ),
    "integer logits": (f"learner: {{model: {{import: '{P}:IntNet'}}}}", "returned a torch.int64 tensor"),
    "embed of the wrong shape": (
        f"learner: {{model: {{import: '{P}:BadEmbed'}}, strategy: {{kind: knn, embedding: network}}}}",
        "embed(x) returned shape (8, 1, 64); it must be (batch, D)",
    ),
    "a strategy without a name": (
        f"learner: {{strategy: {{import: '{P}:Nameless'}}}}",
        "needs a name (class attribute)",
    ),
    "a sequence past the source's tasks": (
        f"stream: {{tasks: {{import: '{P}:tasks'}}, sequence: [0, 5]}}",
        "sequence: tasks [5] out of range 0..2",
    ),
    "task data not finite": (
        f"stream: {{tasks: {{import: '{P}:tasks', args: {{nan: true}}}}}}",
        "x has 1 non-finite values",
    ),
    "negative labels": (
        f"stream: {{tasks: {{import: '{P}:tasks', args: {{label_shift: -1}}}}}}",
        "labels must be >= 0",
    ),
    "labels outside n_classes": (
        f"stream: {{tasks: {{import: '{P}:tasks', args: {{label_shift: 5}}}}}}\n"
        f"learner: {{model: {{import: '{P}:model', n_classes: 4}}}}",
        "labels outside n_classes: the tasks have labels up to 7 but learner.model.n_classes=4",
    ),
    "model factory raises": (
        f"learner: {{model: {{import: '{P}:model_raises'}}}}",
        f"learner.model: {P}:model_raises(in_features=64, n_classes=10) raised ValueError: needs a GPU",
    ),
    "model factory returns a non-module": (
        f"learner: {{model: {{import: '{P}:not_a_module'}}}}",
        "returned a dict, not a torch.nn.Module",
    ),
    "logits of the wrong shape": (
        f"learner: {{model: {{import: '{P}:wrong_shape'}}}}",
        "logits of shape (8, 11) for a batch of shape (8, 64)",
    ),
    "non-finite output": (f"learner: {{model: {{import: '{P}:NanNet'}}}}", "forward gave non-finite values"),
    "a strategy that is not a strategy": (
        f"learner: {{strategy: {{import: '{P}:NotAStrategy'}}}}",
        "not a subclass of olsim.Strategy",
    ),
    "strategy args its Config refuses": (
        "learner: {strategy: {import: 'olsim.learner.strategies.replay:Replay', args: {buffer_size: 0}}}",
        "args: buffer_size: Input should be greater than or equal to 1",
    ),
    "not an import path": ("learner: {model: {import: 'just_a_name'}}", "is not an import path"),
    "knn on network embeddings without embed": (
        f"learner: {{model: {{import: '{P}:model'}}, strategy: {{kind: knn, embedding: network}}}}",
        "needs a model with an embed(x) method",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_plugin_is_one_line_and_exit_2_before_anything_starts(
    case: str, plugdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, needle = BAD[case]
    out = tmp_path / "out"
    assert main(["run", str(_scenario(plugdir, body)), "--report-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # nothing started: the report directory is the run's first write


def test_a_plugin_scenario_resolves_what_its_tasks_decide(plugdir: Path) -> None:
    s = load_scenario(str(_scenario(plugdir, f"stream: {{tasks: {{import: '{P}:tasks', args: {{n: 4}}}}}}")))
    assert s.stream.n_tasks is None  # unknown until the source has run
    r = resolve(s)
    assert (r.stream.n_tasks, r.learner.model.in_features, r.learner.model.n_classes) == (4, 6, 3)
    assert resolve(r) == r  # idempotent
    assert runtime_env(r) == {"py_modules": [str((plugdir / f"{P}.py").resolve())]}


def test_tuples_and_a_task_count_below_the_source(plugdir: Path) -> None:
    r = resolve(
        load_scenario(str(_scenario(plugdir, f"stream: {{tasks: {{import: '{P}:tuples'}}, n_tasks: 1}}")))
    )
    assert [t.name for t in r.stream.build_tasks(r.seed)] == ["t0"]
    assert r.learner.model.n_classes == 2
    with pytest.raises(ScenarioError, match=r"stream\.n_tasks=3 but the task source returned 2 tasks"):
        resolve(
            load_scenario(str(_scenario(plugdir, f"stream: {{tasks: {{import: '{P}:tuples'}}, n_tasks: 3}}")))
        )


def test_objects_given_in_python_become_import_paths() -> None:
    from rotated_digits.model import small_cnn
    from rotated_digits.strategy import RecentReplay
    from rotated_digits.tasks import rotated_digits

    s = Scenario.model_validate(
        {
            "name": "py",
            "stream": {"tasks": {"import": rotated_digits, "args": {"n_tasks": 2, "per_task": 200}}},
            "learner": {"model": {"import": small_cnn}, "strategy": {"import": RecentReplay}},
        }
    )
    assert s.learner.model.factory == "rotated_digits.model:small_cnn"
    assert s.model_dump()["learner"]["strategy"]["import"] == "rotated_digits.strategy:RecentReplay"
    r = resolve(s)
    assert r.strategy_name == "recent-replay" and r.stream.n_tasks == 2


def test_a_subclass_of_a_built_in_strategy_takes_its_config_and_refs_work_in_python(plugdir: Path) -> None:
    s = load_scenario(str(_scenario(plugdir, "")))
    learner = {
        "model": olsim.ImportRef(target="rotated_digits.model:small_cnn", args={"channels": 2}),
        "strategy": olsim.ImportRef(target=f"{P}:MyReplay", args={"buffer_size": 7}),
    }
    r = resolve(Scenario.model_validate({**s.dump(), "learner": learner}))
    assert r.strategy_name == "my-replay" and r.learner.model.kind == "import"
    from olsim.learner.strategies.registry import make_strategy

    assert make_strategy(r.learner.strategy, n_features=64).memory_fill() == (0, 7)


def test_an_object_defined_in_main_or_a_function_is_refused() -> None:
    def local(in_features: int, n_classes: int) -> None: ...

    with pytest.raises(ValueError, match="define it at a module's top level"):
        Scenario.model_validate({"name": "x", "learner": {"model": {"import": local}}})


def test_the_example_scenario_resolves_and_names_its_package() -> None:
    r = resolve(load_scenario(str(EXAMPLE)))
    assert r.stream.n_tasks == 4 and r.learner.model.in_features == 64
    env = runtime_env(r)
    assert env is not None and env["py_modules"] == [str(EXAMPLE.parent.resolve() / "rotated_digits")]
