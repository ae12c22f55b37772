"""olsim as a library: run a scenario from Python and get the typed report back.

A scenario can be a built-in name, a YAML path, or a :class:`~olsim.Scenario` built in Python, where
the model factory, task source and strategy may be given as the objects themselves (when they are
defined in an importable module) or as import paths:

>>> import olsim
>>> from rotated_digits.model import small_cnn
>>> scenario = olsim.Scenario(
...     name="my-cnn",
...     stream={"tasks": {"import": "rotated_digits.tasks:rotated_digits", "args": {"n_tasks": 2}}},
...     learner={"model": {"import": small_cnn, "args": {"channels": 4}}, "strategy": {"kind": "replay"}},
... )
>>> ready = olsim.resolve(scenario)  # what the tasks decide, settled; the code checked
>>> ready.stream.n_tasks, ready.learner.model.factory, ready.learner.model.n_classes
(2, 'rotated_digits.model:small_cnn', 10)

``olsim.run(scenario, olsim.RunOptions(duration_s=30))`` then runs it on Ray and Serve and returns
an :class:`~olsim.RunReport` (also written to ``report_dir``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from olsim.deploy.report.model import RunReport
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, load_scenario


def run(
    scenario: Scenario | str | os.PathLike[str],
    options: RunOptions | None = None,
    *,
    strategy: str | None = None,
    on_finished: Callable[[dict[str, Any]], None] | None = None,
) -> RunReport:
    """Run ``scenario`` end to end (Ray, Serve, learner, evaluator) and return its report.

    ``scenario``: a :class:`Scenario`, a built-in name or a YAML path; ``strategy`` replaces its
    strategy with a built-in one; ``on_finished(report)`` runs while Serve and the metrics endpoint
    still answer. A scenario whose code is wrong raises :class:`~olsim.deploy.errors.UserError`
    before anything starts.
    """
    from olsim.deploy.run.driver import run as run_driver

    s = scenario if isinstance(scenario, Scenario) else load_scenario(os.fspath(scenario))
    if strategy is not None:
        s = s.with_strategy(strategy)
    report = run_driver(resolve(s), options or RunOptions(), on_finished=on_finished)
    return RunReport.model_validate(report)


__all__ = ["resolve", "run"]
