"""The Ray Serve deployment: FastAPI ingress, pydantic I/O, weights that follow the registry.

No ``from __future__ import annotations`` here: FastAPI must resolve the handler annotations,
and Serve's ingress wrapper rebuilds the methods where string annotations no longer resolve.
"""

import asyncio
import logging
import os
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from olsim.learner.model import ModelSpec
from olsim.serving.auth import AdminAuth, check_token
from olsim.serving.config import ServeConfig
from olsim.serving.follower import WeightFollower
from olsim.serving.limits import BodyLimit
from olsim.serving.schemas import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    PauseResponse,
    PredictRequest,
    PredictResponse,
    RollbackRequest,
    RollbackResponse,
    VersionResponse,
    as_tensor,
    openapi_body,
    read_body,
)

log = logging.getLogger(__name__)
ROLLBACK_REFUSED = {"not_retained": 404, "nothing_to_do": 409}  # the registry's refusals, as HTTP
GOING_AWAY = "olsim is shutting down: this server is going away"

api = FastAPI(title="olsim", description="Predictions from a model that keeps learning.")
api.add_middleware(BodyLimit)
api.add_middleware(AdminAuth)  # added last: runs first, before the body limit reads anything


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each problem; never echoes the input back (NaN/inf are not valid JSON)."""
    problems = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:5])
    if len(problems) > 5:
        message += f" (and {len(problems) - 5} more)"
    return JSONResponse(status_code=422, content={"detail": message, "errors": problems})


def _invalid(loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


@serve.deployment(name="Predictor", logging_config={"enable_access_log": False})
@serve.ingress(api)
class Predictor:
    def __init__(
        self,
        registry_name: str,
        namespace: str,
        spec: ModelSpec,
        config: ServeConfig,
        admin_token: str | None = None,
    ) -> None:
        import ray

        torch.set_num_threads(1)
        self.spec = spec
        self.config = config
        api.state.max_body_bytes = config.max_body_bytes
        api.state.admin_token = admin_token  # /admin/*: AdminAuth checks it before the body is read
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self.registry = ray.get_actor(registry_name, namespace=namespace)
        self.follower = WeightFollower(
            self.registry, self.replica, config.poll_timeout_s, spec, config.verify_arrays
        )
        self.follower.load_current()  # before we report healthy: never serve random weights
        self.draining = False  # set by drain(): the server is going away
        if config.updates == "long-poll":
            self.follower.start()

    def check_health(self) -> None:
        if self.config.updates == "long-poll" and not self.follower.alive:
            raise RuntimeError("weight follower thread died")

    async def reconfigure(self, user_config: dict[str, int]) -> None:
        """Serve's in-place update path (``updates: reconfigure``): load the registry's current version."""
        current = await self.registry.current.remote()
        if current is not None and current.generation > self.follower.generation:
            await asyncio.to_thread(self.follower.apply, current)  # it fetches: off the event loop

    @api.post("/predict", openapi_extra=openapi_body(PredictRequest))
    async def predict(self, request: Request, response: Response) -> PredictResponse:
        if self.draining:
            raise self._unavailable(GOING_AWAY)
        body = read_body(PredictRequest, await request.body())
        if self.spec.objective != "classify":
            raise _invalid(("body",), "this model generates text: POST /generate {prompt, max_new_tokens}")
        rows = body.inputs
        if len(rows) > self.config.max_rows:
            raise _invalid(("body", "inputs"), f"{len(rows)} rows; at most {self.config.max_rows} allowed")
        for i, row in enumerate(rows):
            if len(row) != self.spec.in_features:
                raise _invalid(
                    ("body", "inputs", i), f"{len(row)} features; the model expects {self.spec.in_features}"
                )
        served = self.follower.served  # read once: this request uses one version throughout
        if served is None:
            raise self._unavailable("no model version has been published yet")
        try:
            with torch.inference_mode():
                pred = served.model(as_tensor(rows), task=body.task).argmax(dim=1)
        except ValueError as exc:  # e.g. a task id the served model has no adapter for
            raise _invalid(("body", "task"), str(exc)) from None
        response.headers["x-olsim-replica"] = self.replica
        return PredictResponse(predictions=pred.tolist(), model_version=served.version)

    @api.post("/generate", openapi_extra=openapi_body(GenerateRequest))
    async def generate(self, request: Request, response: Response) -> GenerateResponse:
        """Greedy continuation of a prompt, every token from the one version read at the start (a swap
        that lands mid-generation serves the next request)."""
        if self.draining:
            raise self._unavailable(GOING_AWAY)
        body = read_body(GenerateRequest, await request.body())
        if self.spec.objective != "next-token":
            raise _invalid(("body",), "this model classifies: POST /predict {inputs}")
        prompt = body.prompt.encode()
        if len(prompt) > self.config.max_prompt_bytes:
            raise _invalid(
                ("body", "prompt"), f"{len(prompt)} bytes; at most {self.config.max_prompt_bytes} allowed"
            )
        if 0 in prompt:
            raise _invalid(("body", "prompt"), "a prompt must not contain NUL bytes (they pad token rows)")
        if body.max_new_tokens > self.config.max_new_tokens:
            raise _invalid(
                ("body", "max_new_tokens"),
                f"{body.max_new_tokens} tokens; at most {self.config.max_new_tokens} allowed",
            )
        stop = None if body.stop is None else body.stop.encode()
        if stop is not None and len(stop) != 1:
            raise _invalid(("body", "stop"), "stop must be a character of one byte in UTF-8")
        served = self.follower.served  # read once: the whole generation uses this one version
        if served is None:
            raise self._unavailable("no model version has been published yet")
        try:  # off the event loop: health checks and other requests go on while it decodes
            ids = await asyncio.to_thread(
                served.model.generate,
                list(prompt),
                body.max_new_tokens,
                body.task,
                None if stop is None else stop[0],
            )
        except ValueError as exc:  # e.g. a task id the served model has no adapter for
            raise _invalid(("body", "task"), str(exc)) from None
        response.headers["x-olsim-replica"] = self.replica
        return GenerateResponse(
            text=bytes(ids).decode(errors="replace"),
            tokens=len(ids),
            stopped=stop is not None and bool(ids) and ids[-1] == stop[0],
            model_version=served.version,
        )

    def drain(self) -> None:
        """The server is going away (olsim's teardown calls this on every replica): from now on
        /predict and /healthz answer 503 with Retry-After, until the port closes."""
        self.draining = True

    def _unavailable(self, detail: str) -> HTTPException:
        """A 503 with Retry-After (``serving.retry_after_s``), as every 503 olsim sends."""
        return HTTPException(503, detail, headers={"Retry-After": f"{self.config.retry_after_s:g}"})

    @api.get("/healthz")
    async def healthz(self) -> HealthResponse:
        if self.draining:
            raise self._unavailable(GOING_AWAY)
        served = self.follower.served
        return HealthResponse(status="ok", model_version=None if served is None else served.version)

    @api.get("/version")
    async def version(self) -> VersionResponse:
        served = self.follower.served
        if served is None:
            return VersionResponse(
                model_version=None, published_at=None, replica=self.replica, node=self.node
            )
        return VersionResponse(
            model_version=served.version,
            published_at=served.published_at,
            replica=self.replica,
            node=self.node,
        )

    # -- admin routes: AdminAuth (serving/auth.py) has checked the bearer token before the body --
    @api.post("/admin/rollback")
    async def rollback(self, request: Request) -> RollbackResponse:
        """Serve a named version (or the one before the served one) on every replica."""
        body = read_body(RollbackRequest, await request.body() or b"{}")
        result = await self.registry.rollback.remote(body.version, body.reason, "manual")
        if not result.ok:
            raise HTTPException(ROLLBACK_REFUSED[result.refused or "nothing_to_do"], result.detail)
        log.warning("rollback version=%d previous=%d reason=%r", result.version, result.previous, body.reason)
        return RollbackResponse(model_version=result.version, previous=result.previous, detail=result.detail)

    @api.post("/admin/pause")
    async def pause(self) -> PauseResponse:
        """Stop accepting new versions (candidates are rejected with reason ``paused``)."""
        return PauseResponse(paused=await self.registry.set_paused.remote(True))

    @api.post("/admin/resume")
    async def resume(self) -> PauseResponse:
        return PauseResponse(paused=await self.registry.set_paused.remote(False))


def build_app(
    registry_name: str,
    namespace: str,
    spec: ModelSpec,
    config: ServeConfig,
    admin_token: str | None = None,
    user_config: dict[str, int] | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> Application:
    """The Serve application; ``admin_token`` (at least 16 characters) enables the ``/admin`` routes
    (bearer auth).

    ``runtime_env``: Ray's, for each replica (a scenario's plugin code travels in it).
    ``user_config`` matters only with ``updates: reconfigure``: changing it makes Serve call
    :meth:`Predictor.reconfigure` on every replica.
    """
    if admin_token is not None:
        check_token(admin_token)
    options: dict[str, object] = {
        "num_replicas": config.replicas,
        "max_ongoing_requests": config.max_ongoing_requests,
        "max_queued_requests": config.max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=config.retry_after_s),
        "ray_actor_options": {
            "num_cpus": config.num_cpus,
            "resources": dict(config.resources),
            **({"runtime_env": runtime_env} if runtime_env else {}),
        },
    }
    if config.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = config.max_replicas_per_node
    if user_config is not None:
        options["user_config"] = user_config
    return Predictor.options(**options).bind(  # type: ignore[attr-defined]
        registry_name, namespace, spec, config, admin_token
    )


class AppArgs(BaseModel):
    """Arguments of :func:`app_builder` (the ``args:`` of a Serve config's application)."""

    model_config = ConfigDict(extra="forbid")

    registry_name: str
    namespace: str = "olsim"
    model: ModelSpec = ModelSpec()
    serving: ServeConfig = ServeConfig()
    admin_token_env: str = "OLSIM_ADMIN_TOKEN"  # the token itself never goes into a config file


def app_builder(args: AppArgs) -> Application:
    """Typed application builder for Serve's config files (``import_path: olsim.serving.app:app_builder``)."""
    token = os.environ.get(args.admin_token_env) or None
    if token is not None:
        check_token(token, f"${args.admin_token_env}")
    return build_app(args.registry_name, args.namespace, args.model, args.serving, token)


__all__ = ["AppArgs", "Predictor", "ServeConfig", "app_builder", "build_app"]
