"""Scenarios: YAML files validated by pydantic. Built-in ones ship in deploy/scenario/builtin/."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from olsim.deploy.errors import UserError
from olsim.deploy.scenario.expect import Expectations
from olsim.deploy.scenario.faults import Kill
from olsim.learner.config import LearnerConfig
from olsim.learner.gate import GateConfig
from olsim.learner.strategies import STRATEGIES
from olsim.serving.config import ServeConfig
from olsim.stream.spec import StreamSpec


class ScenarioError(UserError, ValueError):
    """A scenario that cannot be loaded; the message is one line meant for users."""


class Placement(BaseModel):
    """Where the learning-side actors run on a multi-node Ray cluster: custom Ray resources each needs
    (a node offers them with ``ray start --resources``). Empty: anywhere. Replicas: ``serving.resources``.

    >>> Placement(learner={"olsim_learner": 1}).learner
    {'olsim_learner': 1.0}
    """

    model_config = ConfigDict(extra="forbid")

    registry: dict[str, float] = Field(default_factory=dict)
    evaluator: dict[str, float] = Field(default_factory=dict)
    learner: dict[str, float] = Field(default_factory=dict)
    learner_gpus: float = Field(
        0, ge=0, description="GPUs Ray gives the learner (its num_gpus); without one it sees no CUDA device"
    )


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seed: int = Field(0, ge=0)
    stream: StreamSpec = StreamSpec()
    learner: LearnerConfig = LearnerConfig()
    serving: ServeConfig = ServeConfig()
    gate: GateConfig = GateConfig()
    placement: Placement = Placement()
    faults: list[Kill] = Field(default_factory=list, description="processes to kill as the stream passes")
    expect: Expectations = Expectations()
    _resolved: bool = PrivateAttr(False)

    @property
    def resolved(self) -> bool:
        """Whether :func:`olsim.deploy.scenario.plugins.resolve` made this scenario (and checked its code)."""
        return self._resolved

    @resolved.setter
    def resolved(self, value: bool) -> None:
        self._resolved = value

    @model_validator(mode="after")
    def _model_fits_strategy(self) -> Scenario:
        """Let the strategy shape the model (``lora``: one adapter set per task). With users' code in
        the scenario this waits for :func:`olsim.deploy.scenario.plugins.resolve`."""
        if self.learner.strategy.kind == "import" or not self.stream.n_tasks_known:
            return self
        cls = STRATEGIES[self.learner.strategy.kind][1]
        check_visits(cls, self.stream)
        model = cls.fit_model(self.learner.model, self.stream.task_count)
        if model != self.learner.model:
            self.learner = self.learner.model_copy(update={"model": model})
        return self

    @property
    def strategy_name(self) -> str:
        """The strategy's name in reports: its kind, or a plugin class's ``name``."""
        from olsim.learner.strategies.registry import strategy_name

        return strategy_name(self.learner.strategy)

    def dump(self) -> dict[str, Any]:
        """The scenario as plain data, which validates back to it; the model's unset fields stay
        unset (``in_features``/``n_classes`` left out are then still taken from the tasks)."""
        data = self.model_dump()
        data["learner"]["model"] = self.learner.model.model_dump(exclude_unset=True)
        return data

    def with_strategy(self, name: str) -> Scenario:
        """This scenario with strategy ``name``: its own settings if it already uses that kind, else
        those ``learner.strategies`` gives that kind, else the kind's defaults."""
        if name not in STRATEGIES:
            raise ScenarioError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}")
        if self.learner.strategy.kind == name:
            return self
        data = self.dump()
        preset = next((c for c in self.learner.strategies if c.kind == name), None)
        data["learner"]["strategy"] = (preset or STRATEGIES[name][0]()).model_dump()
        return Scenario.model_validate(data)


def check_visits(strategy: type, stream: StreamSpec) -> None:
    """ValueError when ``strategy`` is lora (or derives from it) and a task comes back in the stream."""
    from olsim.learner.strategies.lora import Lora

    segments = stream.segments
    if issubclass(strategy, Lora) and len(set(segments)) < len(segments):
        raise ValueError(
            "lora trains one adapter set per task, once, in order: a task cannot come back "
            f"(stream.sequence {stream.sequence})"
        )


def builtin_names() -> list[str]:
    root = resources.files("olsim.deploy.scenario") / "builtin"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    r"""1-based line of the deepest YAML node on pydantic's error path ``loc``.

    Path parts that name no node (a union's tag, a validator's label) are skipped.

    >>> _line_of(yaml.compose("name: x\nstream:\n  chaos:\n    - {kind: burst, at: -1}\n"),
    ...          ("stream", "chaos", 0, "burst", "at"))
    4
    """
    node, line = root, None if root is None else root.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
        if child is not None:
            node, line = child, child.start_mark.line + 1
    return line


def _one_line(err: ValidationError, root: yaml.Node | None = None) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        line = _line_of(root, e["loc"])
        parts.append(f"{'' if line is None else f'line {line}: '}{loc}: {e['msg']}")
    return "; ".join(parts)


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{source}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a YAML mapping, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_one_line(exc, yaml.compose(text))}") from None


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path.

    >>> load_scenario("split-digits").stream.tasks
    'split-digits'
    """
    if name_or_path in builtin_names():
        text = (resources.files("olsim.deploy.scenario") / "builtin" / f"{name_or_path}.yaml").read_text()
        return parse_scenario(text, name_or_path)
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        from olsim.deploy.scenario.plugins import add_search_path, plugins

        scenario = parse_scenario(path.read_text(), str(path))
        if plugins(scenario):  # like `python script.py`: its folder (and the current one) can import
            add_search_path(path.parent, Path.cwd())
        return scenario
    raise ScenarioError(
        f"unknown scenario {name_or_path!r}; valid: {', '.join(builtin_names())} or a YAML path"
    )
