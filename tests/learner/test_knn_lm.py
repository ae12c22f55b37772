"""The kNN-LM a next-token model serves under ``knn``: a proper next-byte distribution, the model's own
as the neighbours' weight goes to 0, the memory's text predicted (and generated) as it grows."""

from __future__ import annotations

import numpy as np
import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.objective import NextToken
from olsim.learner.served import KNN_K, KNN_LAM, KNN_TEMPERATURE, KNN_X, KNN_Y, ServedModel
from olsim.learner.snapshot import Snapshot
from olsim.learner.transformer import greedy
from olsim.stream.text import text_tasks

TEXT = text_tasks(0, ("csv",), size=5120, context=32)[0]
SPEC = ModelSpec(kind="transformer", in_features=32, layers=1, heads=2, width=32, context=32)


def _trained() -> torch.nn.Module:
    """A network that has seen the domain's training rows a little (a few bits a byte)."""
    net = build_model(SPEC, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.from_numpy(TEXT.x[TEXT.split == 0].astype(np.float32))
    for _ in range(30):
        loss = NextToken().loss(net(x), x, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


NET = _trained()


def _served(rows: np.ndarray, lam: float, k: int = 8) -> ServedModel:
    extras = {
        KNN_X: rows.astype(np.float32),
        KNN_Y: np.full(len(rows), rows.shape[1] - 1),
        KNN_K: np.array([k]),
        KNN_LAM: np.array([lam]),
        KNN_TEMPERATURE: np.array([0.1]),
    }
    return Snapshot.from_model(NET, extras=extras, task=0).build()  # as a replica builds it


def _bits(model: ServedModel, rows: np.ndarray) -> float:
    x = torch.from_numpy(rows.astype(np.float32))
    with torch.no_grad():
        out = model(x)
    return NextToken().bits_per_byte(out, x)


def test_the_mixture_is_a_distribution_and_tends_to_the_model_as_lam_falls() -> None:
    test = TEXT.x[TEXT.split == 2]
    with torch.no_grad():
        out = _served(TEXT.x[:40], lam=0.5)(torch.from_numpy(test[:4].astype(np.float32)))
    assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-5)
    plain = _bits(ServedModel(NET), test)
    assert abs(_bits(_served(TEXT.x[:40], lam=1e-6), test) - plain) < 1e-3


def test_a_memory_holding_the_text_predicts_it_far_better_than_the_network() -> None:
    test = TEXT.x[TEXT.split == 2]
    plain = _bits(ServedModel(NET), test)
    remembered = _bits(_served(test, lam=0.5), test)  # every context's next byte is in the memory
    unrelated = _bits(_served(TEXT.x[:40], lam=0.5), test)
    assert plain > 4.0 and remembered < plain - 2.0 and remembered < unrelated


def test_generation_reads_the_memory() -> None:
    row = np.frombuffer(b"0123456789" * 4, dtype=np.uint8)[:32].astype(np.int64)[None, :]
    served = _served(np.repeat(row, 4, axis=0), lam=0.99, k=4)
    assert bytes(served.generate(list(b"0123"), max_new_tokens=6)) == b"456789"


def test_the_kv_cache_changes_no_generated_byte() -> None:
    """Cached decoding equals reading the whole window every step, past the point where it slides."""
    served = _served(TEXT.x[:40], lam=0.25)
    prompt = TEXT.x[TEXT.split == 2][0, :20].tolist()
    for read in (None, served._mix):
        with torch.no_grad():
            fast = greedy(NET, prompt, 30, 32, read=read)
            slow = greedy(NET, prompt, 30, 32, read=read, cached=False)
        assert fast == slow and len(fast) == 30
    assert served.generate(prompt, 30) == greedy(NET, prompt, 30, 32, read=served._mix, cached=False)
