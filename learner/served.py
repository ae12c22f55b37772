"""What replicas and the evaluator run: the network plus whatever serving state a strategy exported.

``ServedModel(x, task)`` returns class scores (B, n_classes). With no extras it is the network's
logits; with a kNN memory (``knn.x``, ``knn.y``) it is the neighbour vote in the network's embedding
space, the memory read at query time ("retrieval over learning").
"""

from __future__ import annotations

import torch
from torch import nn

KNN_X, KNN_Y, KNN_K, KNN_EMBED = "knn.x", "knn.y", "knn.k", "knn.embed"


class ServedModel(nn.Module):
    """Network + exported strategy state, in eval mode.

    >>> from learner.model import ModelSpec, build_model
    >>> net = build_model(ModelSpec(in_features=2, hidden=4, n_classes=3), seed=0)
    >>> mem = {KNN_X: torch.tensor([[0.0, 1.0], [1.0, 0.0]]), KNN_Y: torch.tensor([2, 1]),
    ...        KNN_K: torch.tensor([1])}
    >>> ServedModel(net, mem)(torch.tensor([[0.1, 0.9]])).argmax(1).tolist()
    [2]
    """

    def __init__(self, net: nn.Module, extras: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.net = net.eval()
        extras = extras or {}
        self.knn = KNN_X in extras
        if self.knn:
            self.k = int(extras[KNN_K].reshape(-1)[0])
            self.use_net = bool(int(extras.get(KNN_EMBED, torch.ones(1)).reshape(-1)[0]))
            self.n_classes = int(
                getattr(getattr(net, "spec", None), "n_classes", int(extras[KNN_Y].max()) + 1)
            )
            self.mem_y: torch.Tensor = extras[KNN_Y].long()  # (M,)
            with torch.no_grad():
                self.mem_keys: torch.Tensor = self._embed(extras[KNN_X].float())  # (M, D), unit rows

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        embed = getattr(self.net, "embed", None)
        h = embed(x) if self.use_net and callable(embed) else x
        return nn.functional.normalize(h, dim=1)

    def forward(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        if not self.knn:
            return self.net(x)  # (B, n_classes)
        with torch.no_grad():  # a vote is not differentiable
            return self._vote(x)

    def _vote(self, x: torch.Tensor) -> torch.Tensor:
        q = self._embed(x)  # (B, D)
        sim = q @ self.mem_keys.T  # (B, M) cosine similarity
        k = min(self.k, sim.shape[1])
        top, idx = sim.topk(k, dim=1)  # (B, k)
        votes = torch.zeros(x.shape[0], self.n_classes, dtype=sim.dtype)
        votes.scatter_add_(1, self.mem_y[idx], 1.0 + 1e-3 * top)  # similarity breaks ties
        return votes
