"""HTTP request/response models (pydantic v2, strict at the edge)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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


class VersionResponse(BaseModel):
    model_version: int | None
    published_at: float | None
    replica: str


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
