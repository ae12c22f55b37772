"""The served and trained network: the built-in MLP, or users' own ``nn.Module`` from a factory.

A :class:`ModelSpec` says how to build the network; every process that needs it (the learner, the
gate, the evaluator, each replica) builds it from the spec, and a snapshot's weights only load into
a network built from the same spec. A factory named by ``import`` is called as
``factory(in_features=..., n_classes=..., **args)`` and returns a module whose ``forward(x)`` maps
a float tensor (B, in_features) to logits (B, n_classes); an ``embed(x)`` method, if it has one,
gives strategies that need features (kNN over network embeddings) the network's own. The built-in
``transformer`` is a byte-level language model over token rows (:mod:`olsim.learner.objective`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from torch import nn

from olsim.learner.adapters import add_adapters
from olsim.learner.objective import OBJECTIVES, Objective, ObjectiveName
from olsim.learner.transformer import VOCAB, ByteTransformer
from olsim.stream.plugin import ImportPath, ImportRef, PluginError, call, import_kind

_SPEC = "olsim_spec"  # attribute of a built network: the spec it was built from


class ModelSpec(BaseModel):
    """Architecture of the network; a snapshot only loads into a model built from the same spec.

    ``in_features`` and ``n_classes`` follow from the scenario's tasks (a scenario fills them in).

    >>> ModelSpec.model_validate({"import": "olsim.learner.model:mlp", "args": {"hidden": 8}}).kind
    'import'
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    kind: Literal["mlp", "transformer", "import"] = Field(
        "mlp", description="mlp: the built-in MLP; transformer: the built-in byte-level LM; import: a factory"
    )
    factory: ImportPath | None = Field(
        None, alias="import", description="'package.module:factory' returning an nn.Module (kind: import)"
    )
    args: dict[str, JsonValue] = Field(default_factory=dict, description="the factory's keyword arguments")
    in_features: int = Field(64, ge=1)
    hidden: int = Field(256, ge=1, description="the built-in MLP's hidden width")
    n_classes: int = Field(
        10, ge=2, description="classes; for a next-token model, the vocabulary (256 bytes)"
    )
    objective: ObjectiveName = Field(
        "classify", description="classify: class logits; next-token: a language model over token rows"
    )
    layers: int = Field(2, ge=1, le=96, description="the transformer's blocks")
    heads: int = Field(4, ge=1, le=128, description="the transformer's attention heads")
    width: int = Field(128, ge=8, le=16384, description="the transformer's model width")
    context: int = Field(64, ge=2, le=65536, description="the transformer's longest token window")
    adapters: int = Field(0, ge=0, description="per-task low-rank adapter sets (parameter isolation)")
    lora_rank: int = Field(8, ge=1)
    lora_scale: float = Field(8.0, gt=0, description="adapter output multiplier (LoRA's alpha / r)")

    @model_validator(mode="before")
    @classmethod
    def _import_means_kind_import(cls, data: Any) -> Any:
        return import_kind(data)

    @model_validator(mode="before")
    @classmethod
    def _transformer_predicts_tokens(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "transformer":
            return {"objective": "next-token", "n_classes": VOCAB, **data}
        return data

    @model_validator(mode="after")
    def _kind_matches(self) -> ModelSpec:
        if self.kind == "transformer":
            if self.objective != "next-token" or self.n_classes != VOCAB:
                raise ValueError(f"the transformer is a next-token model over {VOCAB} byte values")
            if self.width % self.heads:
                raise ValueError(f"transformer width {self.width} is not a multiple of heads {self.heads}")
        if self.kind == "import" and self.factory is None:
            raise ValueError("kind import needs import: 'package.module:factory'")
        if self.kind == "mlp" and (self.factory is not None or self.args):
            raise ValueError("import and args name a model factory: leave out kind (or give kind: import)")
        return self

    @property
    def plugin(self) -> ImportRef | None:
        return None if self.factory is None else ImportRef(target=self.factory, args=self.args)

    @property
    def task_objective(self) -> Objective:
        return OBJECTIVES[self.objective]


class MLP(nn.Module):
    """Two-layer perceptron, ``in_features -> hidden -> n_classes``.

    >>> _ = torch.manual_seed(0)
    >>> MLP(4, 8, 3)(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_features: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(x))  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.embed(x))  # (B, n_classes) logits


def mlp(in_features: int, n_classes: int, hidden: int = 256) -> MLP:
    """The built-in MLP as a factory (the contract every model factory follows)."""
    return MLP(in_features, hidden, n_classes)


def _build(spec: ModelSpec) -> nn.Module:
    ref = spec.plugin
    net: nn.Module
    if spec.kind == "mlp":
        net = MLP(spec.in_features, spec.hidden, spec.n_classes)
    elif spec.kind == "transformer":
        if spec.in_features > spec.context:
            raise PluginError(
                f"learner.model: token rows of {spec.in_features} bytes exceed the transformer's context "
                f"of {spec.context}"
            )
        net = ByteTransformer(spec.layers, spec.heads, spec.width, spec.context)
    else:
        assert ref is not None
        net = call(ref, "learner.model", in_features=spec.in_features, n_classes=spec.n_classes)
        if not isinstance(net, nn.Module):
            raise PluginError(
                f"learner.model: {ref.target} returned a {type(net).__name__}, not a torch.nn.Module"
            )
    if spec.adapters:
        try:
            add_adapters(net, spec.adapters, spec.lora_rank, spec.lora_scale)
        except ValueError as exc:
            raise PluginError(f"learner.model: {exc}") from None
    setattr(net, _SPEC, spec)
    return net


def build_model(spec: ModelSpec, seed: int | None = None) -> nn.Module:
    """Build a model; with ``seed`` its initial weights are reproducible.

    >>> net = build_model(ModelSpec(in_features=4, hidden=8, n_classes=3), seed=0)
    >>> spec_of(net).hidden, type(net).__name__
    (8, 'MLP')
    """
    if seed is None:
        return _build(spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _build(spec)


def spec_of(model: nn.Module) -> ModelSpec:
    """The spec ``model`` was built from (by :func:`build_model`)."""
    spec = model.__dict__.get(_SPEC)
    if not isinstance(spec, ModelSpec):
        raise TypeError("model was not built by olsim.learner.model.build_model (it has no ModelSpec)")
    return spec


def objective_of(model: nn.Module) -> Objective:
    """What ``model`` (a built network, or a served model around one) is trained on and scored by; a
    module that :func:`build_model` did not build is taken as a classifier."""
    spec = getattr(model, "net", model).__dict__.get(_SPEC)
    return spec.task_objective if isinstance(spec, ModelSpec) else OBJECTIVES["classify"]
