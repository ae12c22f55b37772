"""The bare-uvicorn baseline of ``olsim bench serve``: the same model, request and response schema
and per-request work as olsim's ``/predict``, in one FastAPI app under plain uvicorn (no Ray).

Run as ``python -m olsim.deploy.bench.bare_app --port P [--workers N]``: N worker processes
(uvicorn's own, one listening socket), each with one torch thread, as olsim runs N replicas.
"""

from __future__ import annotations

import argparse
import os

import torch
from fastapi import FastAPI, HTTPException, Request, Response

from olsim.learner.model import ModelSpec, build_model
from olsim.serving.schemas import PredictRequest, PredictResponse, as_tensor, openapi_body, read_body


def make_app(spec: ModelSpec, seed: int = 0) -> FastAPI:
    """A FastAPI app with olsim's ``/predict`` contract (version 1, weights from ``seed``)."""
    torch.set_num_threads(1)  # as a Serve replica runs
    model = build_model(spec, seed=seed).eval()
    worker = str(os.getpid())
    app = FastAPI(title="olsim bare baseline")

    @app.post("/predict", openapi_extra=openapi_body(PredictRequest))
    async def predict(request: Request, response: Response) -> PredictResponse:
        rows = read_body(PredictRequest, await request.body()).inputs  # olsim's parsing, too
        if any(len(r) != spec.in_features for r in rows):
            raise HTTPException(422, f"the model expects {spec.in_features} features")
        with torch.inference_mode():
            pred = model(as_tensor(rows)).argmax(dim=1)
        response.headers["x-olsim-replica"] = worker  # as olsim's replicas name themselves
        return PredictResponse(predictions=pred.tolist(), model_version=1)

    return app


def default_app() -> FastAPI:
    """The app each worker process builds (uvicorn's factory): the default MLP, weights from seed 0."""
    return make_app(ModelSpec(), seed=0)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1, help="worker processes (olsim: replicas)")
    args = p.parse_args()
    uvicorn.run(
        "olsim.deploy.bench.bare_app:default_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
