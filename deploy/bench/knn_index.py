"""``olsim bench knn-index``: is a nearest-neighbour library faster than plain torch for the kNN memory?

Exact cosine top-k over unit-norm keys, the query the ``knn`` strategy's served model runs. Methods:
torch (matmul + topk, what olsim uses), faiss ``IndexFlatIP`` (exact inner product), scikit-learn
``NearestNeighbors`` (brute force, cosine). Each is timed per query batch, median of repeats, all in
one process on one thread; faiss is skipped with a note when it is not installed
(``pip install faiss-cpu``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from olsim.deploy.bench import median_s

START, END = "<!-- olsim bench knn-index: start -->", "<!-- olsim bench knn-index: end -->"


def _faiss() -> Any:
    """The faiss module on one thread, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    return faiss


def _torch_topk(q: Any, keys: Any, k: int) -> Any:
    return (q @ keys.T).topk(k, dim=1)


def bench_index(
    sizes: list[int], batches: list[int], dim: int = 64, k: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """Every method on one thread: torch's own pool, faiss's OpenMP, and the BLAS scikit-learn's
    brute-force search calls (threadpoolctl: numpy's BLAS would otherwise use every core)."""
    from threadpoolctl import threadpool_limits

    from olsim.deploy.bench import torch_threads

    with threadpool_limits(limits=1), torch_threads(1):
        return _measure(sizes, batches, dim, k, seed)


def _measure(sizes: list[int], batches: list[int], dim: int, k: int, seed: int) -> list[dict[str, Any]]:
    import torch

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    faiss = _faiss()
    from sklearn.neighbors import NearestNeighbors

    for m in sizes:
        keys = rng.normal(size=(m, dim)).astype(np.float32)
        keys /= np.linalg.norm(keys, axis=1, keepdims=True)
        tkeys = torch.from_numpy(keys)
        nn_ = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(keys)
        index = None
        if faiss is not None:
            index = faiss.IndexFlatIP(dim)
            index.add(keys)
        for b in batches:
            q = rng.normal(size=(b, dim)).astype(np.float32)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            tq = torch.from_numpy(q)
            repeats = 50 if m * b <= 1_000_000 else 10
            with torch.inference_mode():
                res = {"torch": median_s(partial(_torch_topk, tq, tkeys, k), repeats)}
            res["sklearn"] = median_s(partial(nn_.kneighbors, q, return_distance=True), repeats)
            if index is not None:
                res["faiss"] = median_s(partial(index.search, q, k), repeats)
            rows.append({"memory": m, "queries": b, **{f"{n}_ms": v * 1e3 for n, v in res.items()}})
    return rows


def render(rows: list[dict[str, Any]], command: str) -> str:
    methods = [n for n in ("torch", "faiss", "sklearn") if f"{n}_ms" in rows[0]]
    lines = [
        START,
        f"Command: `{command}` (seed 0, 64-d unit keys, k=5, one thread; median per query batch).",
        "",
        "| memory | queries/batch | " + " | ".join(f"{m} ms" for m in methods) + " | fastest |",
        "|---|---|" + "---|" * len(methods) + "---|",
    ]
    for r in rows:
        best = min(methods, key=lambda m: r[f"{m}_ms"])
        lines.append(
            f"| {r['memory']} | {r['queries']} | "
            + " | ".join(f"{r[f'{m}_ms']:.3f}" for m in methods)
            + f" | {best} |"
        )
    if "faiss" not in methods:
        lines += ["", "faiss was not installed when this ran (`pip install faiss-cpu`)."]
    lines.append(END)
    return "\n".join(lines)
