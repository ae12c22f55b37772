"""Serving settings, as a validated config (importable without Ray)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KEEP_BYTES = 2 * 1024**3  # the registry's default bound on the weight bytes it retains


class ServeConfig(BaseModel):
    """Serving settings (the ``serving:`` block of a scenario)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(2, ge=1, le=64)
    max_rows: int = Field(1024, ge=1, description="most rows one /predict request may carry")
    max_prompt_bytes: int = Field(512, ge=1, description="longest /generate prompt, in UTF-8 bytes")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="most tokens one /generate may ask for")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger request bodies get 413 before anything parses them"
    )
    num_cpus: float = Field(0.25, gt=0, description="logical CPUs reserved per replica")
    max_ongoing_requests: int = Field(32, ge=1, description="requests one replica works on at once")
    max_queued_requests: int = Field(
        64,
        ge=-1,
        description="requests that may wait for a slot (per replica with the haproxy ingress, per router "
        "with Serve's proxy); beyond that a request is answered 503 with Retry-After at once (-1: no limit)",
    )
    retry_after_s: float = Field(
        1.0, ge=0, description="the Retry-After a 503 carries (excess load, or a server that is going away)"
    )
    drain_s: float = Field(
        1.0,
        ge=0,
        le=300,
        description="at the end of a run on a Ray cluster olsim did not start: how long replicas answer "
        "503 + Retry-After before the application is removed (a Ray olsim started goes down at once)",
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each replica needs: replicas go only to nodes that offer them "
        "(e.g. {olsim_replica: 1} with `ray start --resources '{\"olsim_replica\": 1}'` on serving nodes)",
    )
    max_replicas_per_node: int | None = Field(None, ge=1, description="spread replicas over nodes")
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = Field(
        "EveryNode", description="where Serve runs its HTTP ingress (Ray's default: every node)"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    poll_timeout_s: float = Field(5.0, gt=0)
    transfer: Literal["reference", "value"] = Field(
        "reference",
        description="reference: the registry puts each distinct weight array in Ray's object store once "
        "and replicas fetch only the arrays they do not hold, serving them in place (zero-copy on the "
        "node); value: every version travels whole in each replica's long-poll answer and is copied "
        "into a fresh network",
    )
    verify_arrays: bool = Field(
        False,
        description="with transfer: reference, each replica hashes every array it reads again (the "
        "registry hashed each one before storing it; about 0.5 s per GB per replica on one core)",
    )
    keep_bytes: int = Field(
        KEEP_BYTES,
        ge=0,
        description="the registry drops its oldest retained versions (never the served one) while the "
        "distinct weight bytes it holds exceed this",
    )
    updates: Literal["long-poll", "reconfigure"] = Field(
        "long-poll",
        description="long-poll: each replica follows the registry (olsim's path); reconfigure: weights "
        "change only when Serve calls reconfigure(user_config) (the baseline `olsim bench swap` compares)",
    )
