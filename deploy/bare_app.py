"""The bare-uvicorn baseline of ``olsim bench serve``: the same model, request and response schema
and per-request work as olsim's ``/predict``, in one FastAPI app under plain uvicorn (no Ray).

Run as ``python -m deploy.bare_app --port P [--seed S]``; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse

import torch
from fastapi import FastAPI, HTTPException, Request

from learner.model import ModelSpec, build_model
from serving.schemas import PredictRequest, PredictResponse, as_tensor, openapi_body, read_body


def make_app(spec: ModelSpec, seed: int = 0) -> FastAPI:
    """A FastAPI app with olsim's ``/predict`` contract (version 1, weights from ``seed``)."""
    torch.set_num_threads(1)  # as a Serve replica runs
    model = build_model(spec, seed=seed).eval()
    app = FastAPI(title="olsim bare baseline")

    @app.post("/predict", openapi_extra=openapi_body(PredictRequest))
    async def predict(request: Request) -> PredictResponse:
        rows = read_body(PredictRequest, await request.body()).inputs  # olsim's parsing, too
        if any(len(r) != spec.in_features for r in rows):
            raise HTTPException(422, f"the model expects {spec.in_features} features")
        with torch.inference_mode():
            pred = model(as_tensor(rows)).argmax(dim=1)
        return PredictResponse(predictions=pred.tolist(), model_version=1)

    return app


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    uvicorn.run(
        make_app(ModelSpec(), args.seed),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
