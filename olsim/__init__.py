"""olsim: an online learning server simulation.

A Ray Serve deployment answers predictions from a PyTorch model while a learner actor keeps training
it from a simulated stream and hot-swaps new weights into the replicas; Prometheus gauges show the
served version's accuracy on every task seen so far. The packages are ``olsim.stream``,
``olsim.learner``, ``olsim.serving`` and ``olsim.deploy``; what most users need is here:

>>> import olsim
>>> scenario = olsim.load_scenario("split-digits")
>>> scenario.name, len(scenario.stream.build_tasks(scenario.seed))
('split-digits', 5)
>>> issubclass(olsim.Scenario, object) and olsim.RunOptions().report_dir.name
'out'

``olsim.run(scenario, olsim.RunOptions(...))`` runs it end to end (Ray, Serve, learner, evaluator)
and returns the typed :class:`RunReport` that ``olsim run`` writes; ``olsim.load_report(DIR)`` reads
one back. A scenario may name users' own model factory, task source (``olsim.TaskData``) and
strategy (a subclass of ``olsim.Strategy``): see :mod:`olsim.deploy.run.api` and docs/plugins.md.
Names are imported on first use, so ``import olsim`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "run": "olsim.deploy.run.api",
    "resolve": "olsim.deploy.scenario.plugins",
    "TaskData": "olsim.stream.tasks",
    "ImportRef": "olsim.stream.plugin",
    "RunOptions": "olsim.deploy.run.options",
    "Scenario": "olsim.deploy.scenario.spec",
    "load_scenario": "olsim.deploy.scenario.spec",
    "Strategy": "olsim.learner.strategies.base",
    "RunReport": "olsim.deploy.report.model",
    "load_report": "olsim.deploy.report.model",
}

__all__ = [
    "ImportRef",
    "RunOptions",
    "RunReport",
    "Scenario",
    "Strategy",
    "TaskData",
    "__version__",
    "load_report",
    "load_scenario",
    "resolve",
    "run",
]

if TYPE_CHECKING:
    from olsim.deploy.report.model import RunReport, load_report
    from olsim.deploy.run.api import run
    from olsim.deploy.run.options import RunOptions
    from olsim.deploy.scenario.plugins import resolve
    from olsim.deploy.scenario.spec import Scenario, load_scenario
    from olsim.learner.strategies.base import Strategy
    from olsim.stream.plugin import ImportRef
    from olsim.stream.tasks import TaskData


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'olsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
