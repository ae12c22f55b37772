"""The Ray Serve deployment: FastAPI ingress, pydantic I/O, weights that follow the registry.

No ``from __future__ import annotations`` here: FastAPI must resolve the handler annotations,
and Serve's ingress wrapper rebuilds the methods where string annotations no longer resolve.
"""

import logging

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from learner.model import ModelSpec
from serving.config import ServeConfig
from serving.follower import WeightFollower
from serving.schemas import HealthResponse, PredictRequest, PredictResponse, VersionResponse

log = logging.getLogger(__name__)

api = FastAPI(title="olsim", description="Predictions from a model that keeps learning.")


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
    def __init__(self, registry_name: str, namespace: str, spec: ModelSpec, config: ServeConfig) -> None:
        import ray

        torch.set_num_threads(1)
        self.spec = spec
        self.config = config
        self.replica = serve.get_replica_context().replica_id.unique_id
        registry = ray.get_actor(registry_name, namespace=namespace)
        self.follower = WeightFollower(registry, self.replica, config.poll_timeout_s)
        self.follower.load_current()  # before we report healthy: never serve random weights
        self.follower.start()

    def check_health(self) -> None:
        if not self.follower.alive:
            raise RuntimeError("weight follower thread died")

    @api.post("/predict")
    async def predict(self, request: PredictRequest, response: Response) -> PredictResponse:
        rows = request.inputs
        if len(rows) > self.config.max_rows:
            raise _invalid(("body", "inputs"), f"{len(rows)} rows; at most {self.config.max_rows} allowed")
        for i, row in enumerate(rows):
            if len(row) != self.spec.in_features:
                raise _invalid(
                    ("body", "inputs", i), f"{len(row)} features; the model expects {self.spec.in_features}"
                )
        served = self.follower.served  # read once: this request uses one version throughout
        if served is None:
            raise HTTPException(503, "no model version has been published yet")
        try:
            with torch.inference_mode():
                pred = served.model(torch.tensor(rows, dtype=torch.float32), task=request.task).argmax(dim=1)
        except ValueError as exc:  # e.g. a task id the served model has no adapter for
            raise _invalid(("body", "task"), str(exc)) from None
        response.headers["x-olsim-replica"] = self.replica
        return PredictResponse(predictions=pred.tolist(), model_version=served.version)

    @api.get("/healthz")
    async def healthz(self) -> HealthResponse:
        served = self.follower.served
        return HealthResponse(status="ok", model_version=None if served is None else served.version)

    @api.get("/version")
    async def version(self) -> VersionResponse:
        served = self.follower.served
        if served is None:
            return VersionResponse(model_version=None, published_at=None, replica=self.replica)
        return VersionResponse(
            model_version=served.version, published_at=served.published_at, replica=self.replica
        )


def build_app(registry_name: str, namespace: str, spec: ModelSpec, config: ServeConfig) -> Application:
    return Predictor.options(  # type: ignore[attr-defined]
        num_replicas=config.replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.num_cpus},
    ).bind(registry_name, namespace, spec, config)


__all__ = ["Predictor", "ServeConfig", "build_app"]
