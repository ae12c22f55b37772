"""Typed strategy configs: a discriminated union on ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from olsim.stream.plugin import ImportPath, ImportRef


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NaiveConfig(_Config):
    """Plain fine-tuning on the stream: the lower bound, forgets freely."""

    kind: Literal["naive"] = "naive"


class JointConfig(_Config):
    """Every step also trains on a batch drawn from everything seen so far (unbounded memory)."""

    kind: Literal["joint"] = "joint"
    replay_batch: int = Field(128, ge=1)


class ReplayConfig(_Config):
    """Experience replay from a bounded memory, mixed into every training batch."""

    kind: Literal["replay"] = "replay"
    buffer_size: int = Field(200, ge=1, le=1_000_000)
    buffer: Literal["reservoir", "class_balanced"] = "reservoir"
    replay_batch: int = Field(32, ge=1)


class DerConfig(_Config):
    """Dark Experience Replay++ (Buzzega et al. 2020): replays labels and the logits seen at storage."""

    kind: Literal["der"] = "der"
    buffer_size: int = Field(200, ge=1, le=1_000_000)
    replay_batch: int = Field(32, ge=1)
    alpha: float = Field(0.3, ge=0, description="weight of the logit-matching (MSE) term")


class EwcConfig(_Config):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017); ``online`` keeps one decayed Fisher."""

    kind: Literal["ewc"] = "ewc"
    lam: float = Field(300.0, ge=0, description="penalty strength")
    online: bool = False
    gamma: float = Field(1.0, ge=0, le=1, description="online EWC: decay of the running Fisher")
    fisher_samples: int = Field(200, ge=1, description="samples of each task kept to estimate its Fisher")


class SiConfig(_Config):
    """Synaptic Intelligence (Zenke et al. 2017): importances from each parameter's path integral."""

    kind: Literal["si"] = "si"
    c: float = Field(10.0, ge=0, description="penalty strength")
    xi: float = Field(0.1, gt=0, description="damping in the importance denominator")


class LwfConfig(_Config):
    """Learning without Forgetting (Li & Hoiem 2016): distil the previous task's model on new data."""

    kind: Literal["lwf"] = "lwf"
    alpha: float = Field(1.0, ge=0, description="weight of the distillation term")
    temperature: float = Field(2.0, gt=0)


class KnnConfig(_Config):
    """Retrieval over learning: a bounded memory of stream rows that replicas read at query time. A
    classifier's prediction is the vote of the ``k`` nearest rows' labels; a next-token model's is a
    kNN-LM (Khandelwal et al. 2020): its next-byte distribution mixed with the next bytes that follow
    the ``k`` nearest contexts in the memory, keyed by the network's hidden state."""

    kind: Literal["knn"] = "knn"
    memory_size: int = Field(1000, ge=1, le=1_000_000, description="rows kept (a token row: one key a byte)")
    k: int = Field(5, ge=1)
    embedding: Literal["network", "input"] = Field(
        "input",
        description="a classifier's keys: the raw input, or the network's hidden layer (trained on the "
        "stream); a next-token model's keys are always its last hidden state",
    )
    lam: float = Field(0.25, gt=0, lt=1, description="next-token: weight of the neighbours' distribution")
    temperature: float = Field(0.1, gt=0, description="next-token: softmax temperature on cosine similarity")


class RagConfig(_Config):
    """Retrieval over learning for a language model: a store of the stream's fact sentences, newest per
    question, that the served model reads at query time; the network learns to answer from context."""

    kind: Literal["rag"] = "rag"
    store_size: int | None = Field(
        None, ge=1, le=10_000_000, description="facts kept (the least recently stated go); null: all"
    )
    context_weight: float = Field(1.0, gt=0, description="weight of the answer-from-context loss")


class LoraConfig(_Config):
    """Parameter isolation: frozen base after the first task, per-task low-rank adapters, task routing.

    The adapter count and rank live on the model spec (``olsim.learner.model.adapters``/``lora_rank``);
    choosing ``lora`` sets ``adapters`` to the scenario's task count when it is 0.
    """

    kind: Literal["lora"] = "lora"


class ImportConfig(_Config):
    """A strategy of users' own: a subclass of ``olsim.Strategy`` by import path, configured from ``args``
    (validated by the class's ``Config`` model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    kind: Literal["import"] = "import"
    target: ImportPath = Field(alias="import", description="'package.module:StrategyClass'")
    args: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def plugin(self) -> ImportRef:
        return ImportRef(target=self.target, args=self.args)


StrategyConfig = Annotated[
    NaiveConfig
    | JointConfig
    | ReplayConfig
    | DerConfig
    | EwcConfig
    | SiConfig
    | LwfConfig
    | KnnConfig
    | LoraConfig
    | RagConfig
    | ImportConfig,
    Field(discriminator="kind"),
]
