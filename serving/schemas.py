"""HTTP request/response models (pydantic v2, strict at the edge)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import numpy as np
import torch
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """Rows of features; ``task`` is an optional hint (used by task-aware strategies).

    >>> PredictRequest.model_validate_json('{"inputs": [[0.0, 1]]}').inputs
    [[0.0, 1.0]]
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[Annotated[list[Feature], Field(min_length=1)]] = Field(min_length=1)
    task: int | None = Field(None, ge=0)


class PredictResponse(BaseModel):
    predictions: list[int]
    model_version: int


class GenerateRequest(BaseModel):
    """A prompt to continue: greedy decoding of at most ``max_new_tokens`` bytes, ending early after
    ``stop`` (one character) when given; ``task`` picks a task's adapters (else the prompt routes).
    Limits on the prompt's bytes and on ``max_new_tokens`` are the server's (``serving:``).

    >>> GenerateRequest.model_validate_json('{"prompt": "Kovalo lives in ", "stop": "."}').max_new_tokens
    16
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    max_new_tokens: int = Field(16, ge=1)
    task: int | None = Field(None, ge=0)
    stop: str | None = Field(None, min_length=1, max_length=1, description="a character that ends the text")


class GenerateResponse(BaseModel):
    text: str  # the generated continuation (not the prompt); bytes that are not UTF-8 come out as U+FFFD
    tokens: int  # bytes generated
    stopped: bool  # ended at ``stop`` (else at max_new_tokens)
    model_version: int  # the one version (weights and serving state) that produced every token


class VersionResponse(BaseModel):
    model_version: int | None
    published_at: float | None
    replica: str
    node: str | None = None  # the Ray node the replica runs on (which machine answered, on a cluster)


class HealthResponse(BaseModel):
    status: str
    model_version: int | None


class RollbackRequest(BaseModel):
    """Body of ``POST /admin/rollback``; an empty body rolls back to the previous version.

    >>> RollbackRequest.model_validate_json('{}').version is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description="version to serve; default: the one before")
    reason: str = Field("", max_length=200)


class RollbackResponse(BaseModel):
    model_version: int
    previous: int
    detail: str = ""


class PauseResponse(BaseModel):
    paused: bool


M = TypeVar("M", bound=BaseModel)


def read_body(model: type[M], raw: bytes) -> M:
    """Parse and validate a JSON request body in one pass (pydantic-core), as FastAPI would report it.

    FastAPI's own body handling runs ``json.loads`` and then validates the Python objects; for a
    256-row /predict body that is ~3.5 ms of ~4 ms, against ~0.6 ms for this.

    >>> read_body(PredictRequest, b'{"inputs": [[1, 2.5]]}').inputs
    [[1.0, 2.5]]
    >>> try:
    ...     read_body(PredictRequest, b'{"inputs": [[NaN]]}')
    ... except RequestValidationError as e:
    ...     [err["loc"] for err in e.errors()]
    [('body', 'inputs', 0, 0)]
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors: list[Any] = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from None


def as_tensor(rows: list[list[float]]) -> torch.Tensor:
    """Validated rows as a float32 tensor (through numpy: ~3x faster than ``torch.tensor(rows)``).

    >>> as_tensor([[1.0, 2.0]]).shape
    torch.Size([1, 2])
    """
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body with :func:`read_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
