"""What replicas and the evaluator run: the network plus whatever serving state a strategy exported.

``ServedModel(x, task)`` returns class scores (B, n_classes). With no extras it is the network's
logits; with a kNN memory (``knn.x``, ``knn.y``) it is the neighbour vote in the network's embedding
space, the memory read at query time ("retrieval over learning"). A next-token network with a kNN
memory of token rows is a kNN-LM: every position's next-byte distribution is mixed with the next bytes
that followed the memory's nearest contexts (log-probabilities (B, T, 256)). A network with per-task adapters
uses the request's task, or, without one, routes each row to the task of its nearest exported class
prototype (``route.protos``, ``route.tasks``). A next-token network's served model also generates:
:meth:`ServedModel.generate` decodes greedily, every step from this one version. With a fact store
(``rag.keys``, ``rag.rows``: :mod:`olsim.learner.retrieval`) it reads the store at query time: the
sentence retrieved for a prompt goes before it, for a generation and for a scored row alike
(``answer_at``: where each row's answer starts, so that only its question is looked up).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from olsim.learner.adapters import adapter_count, adapter_task
from olsim.learner.model import spec_of
from olsim.learner.objective import PAD, question_only, row_bytes
from olsim.learner.retrieval import Retriever, with_context
from olsim.learner.transformer import greedy

KNN_X, KNN_Y, KNN_K, KNN_EMBED = "knn.x", "knn.y", "knn.k", "knn.embed"
KNN_LAM, KNN_TEMPERATURE = "knn.lam", "knn.temperature"
KNN_CHUNK = 1024  # kNN-LM queries scored at once: bounds the similarity matrix to 1024 x keys
ROUTE_PROTOS, ROUTE_TASKS = "route.protos", "route.tasks"


class ServedModel(nn.Module):
    """Network + exported strategy state, in eval mode.

    >>> from olsim.learner.model import ModelSpec, build_model
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
        self.adapters = adapter_count(net)
        self.protos: torch.Tensor | None = None
        if ROUTE_PROTOS in extras:
            self.protos = nn.functional.normalize(extras[ROUTE_PROTOS].float(), dim=1)  # (P, n_features)
            self.proto_tasks: torch.Tensor = extras[ROUTE_TASKS].long()  # (P,)
        spec = spec_of(net)
        self.n_classes = spec.n_classes
        self.objective = spec.task_objective
        self.context = int(getattr(net, "context", spec.context))  # longest window a generation reads
        self.retriever = Retriever.from_extras(extras)
        self.knn = KNN_X in extras
        if self.knn:
            self.k = int(extras[KNN_K].reshape(-1)[0])
            self.use_net = bool(int(extras.get(KNN_EMBED, torch.ones(1)).reshape(-1)[0]))
            self.lam = float(extras.get(KNN_LAM, torch.tensor([0.25])).reshape(-1)[0])
            self.temperature = float(extras.get(KNN_TEMPERATURE, torch.tensor([0.1])).reshape(-1)[0])
            with torch.no_grad():
                if self.objective.name == "next-token":
                    self.mem_keys, self.mem_y = self._contexts(extras[KNN_X])
                else:
                    self.mem_y = extras[KNN_Y].long()  # (M,)
                    self.mem_keys = self._embed(extras[KNN_X].float())  # (M, D), unit rows

    def _contexts(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A kNN-LM datastore from token rows: the network's hidden state at every position that has
        a next byte (unit rows, (N, width)), and that next byte (N,); built ``KNN_CHUNK`` rows at a time.
        A row of T bytes gives T - 1 keys, so the datastore is ``memory_size`` x (T - 1) keys."""
        keys, values = [], []
        for lo in range(0, len(rows), KNN_CHUNK):
            part = rows[lo : lo + KNN_CHUNK]
            h = self._hidden(part)[:, :-1]  # (m, T-1, width)
            nxt = part[:, 1:].long()
            kept = nxt != PAD
            keys.append(nn.functional.normalize(h[kept], dim=1))
            values.append(nxt[kept])
        return torch.cat(keys), torch.cat(values)

    def _knn_lm(self, x: torch.Tensor, task: int | None) -> torch.Tensor:
        """Log-probabilities (B, T, 256): ``(1 - lam) * p_model + lam * p_neighbours`` at each position,
        ``p_neighbours`` a softmax over the ``k`` most similar keys' similarities / ``temperature``."""
        with adapter_task(task if self.adapters else None):
            return self._mix(self._hidden(x))

    def _mix(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`_knn_lm`'s log-probabilities from hidden states ``h`` (B, T, width)."""
        logp = nn.functional.log_softmax(self.net.head(h), dim=-1)  # type: ignore[operator]
        if not len(self.mem_y):
            return logp
        q = nn.functional.normalize(h.reshape(-1, h.shape[-1]), dim=1)
        near = q.new_zeros(len(q), logp.shape[-1])
        k = min(self.k, len(self.mem_y))
        for lo in range(0, len(q), KNN_CHUNK):
            top, idx = (q[lo : lo + KNN_CHUNK] @ self.mem_keys.T).topk(k, dim=1)
            weights = nn.functional.softmax(top / self.temperature, dim=1)
            near[lo : lo + KNN_CHUNK].scatter_add_(1, self.mem_y[idx], weights)
        mixed = torch.logaddexp(
            logp.reshape(len(q), -1) + math.log(1 - self.lam), near.log() + math.log(self.lam)
        )
        return mixed.reshape(logp.shape)

    def _hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net.hidden(tokens)  # type: ignore[operator]
        return out

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        embed = getattr(self.net, "embed", None)
        h = embed(x) if self.use_net and callable(embed) else x
        return nn.functional.normalize(h, dim=1)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Task of each row (B,): nearest class prototype by cosine similarity; task 0 before any exist."""
        if self.protos is None:
            return torch.zeros(len(x), dtype=torch.long)
        width = self.protos.shape[1]
        if x.shape[1] != width:  # a prompt routes as the stream's rows look: cut, or padded with zeros
            x = nn.functional.pad(x[:, :width].float(), (0, max(0, width - x.shape[1])))
        sim = nn.functional.normalize(x.float(), dim=1) @ self.protos.T  # (B, P)
        return self.proto_tasks[sim.argmax(dim=1)]

    def forward(
        self, x: torch.Tensor, task: int | None = None, answer_at: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.knn:
            with torch.no_grad():  # a vote is not differentiable
                return self._knn_lm(x, task) if self.objective.name == "next-token" else self._vote(x)
        if self.retriever is not None and answer_at is not None:
            return self._read_store(x, answer_at, task)
        return self._network(x, task, answer_at)

    def _read_store(self, x: torch.Tensor, answer_at: torch.Tensor, task: int | None) -> torch.Tensor:
        """Logits for rows ``x`` (B, T, V), each read after the sentence retrieved for its question."""
        assert self.retriever is not None
        rows, shift = [], []
        for row, start in zip(x.tolist(), answer_at.tolist(), strict=True):
            text = row_bytes(row)
            full = with_context(text, self.retriever.lookup(text[: int(start)]))
            rows.append(full)
            shift.append(len(full) - len(text))
        width = max(len(r) for r in rows)
        aug = torch.zeros(len(rows), width, dtype=x.dtype)
        for i, r in enumerate(rows):
            aug[i, : len(r)] = torch.tensor(list(r), dtype=x.dtype)
        out = self._network(aug, task)  # (B, width, V)
        idx = (torch.tensor(shift)[:, None] + torch.arange(x.shape[1])[None, :]).clamp(max=width - 1)
        return out.gather(1, idx[..., None].expand(-1, -1, out.shape[-1]))

    def _network(
        self, x: torch.Tensor, task: int | None, answer_at: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.adapters:
            return self.net(x)  # (B, n_classes)
        if task is not None:
            with adapter_task(task):
                return self.net(x)
        tasks = self.route(x if answer_at is None else question_only(x, answer_at))  # as a prompt routes
        out: torch.Tensor | None = None
        for t in torch.unique(tasks).tolist():
            rows = tasks == t
            with adapter_task(t):
                part = self.net(x[rows])
            if out is None:
                out = part.new_empty((len(x), *part.shape[1:]))
            out[rows] = part
        assert out is not None
        return out

    @torch.no_grad()
    def generate(
        self, prompt: list[int], max_new_tokens: int, task: int | None = None, stop: int | None = None
    ) -> list[int]:
        """Greedy next bytes after ``prompt`` (token ids), at most ``max_new_tokens``, up to and including
        ``stop``. A network with adapters uses ``task``, or the task its prompt routes to; the window
        slides once the context is full.

        >>> from olsim.learner.model import ModelSpec, build_model
        >>> spec = ModelSpec(kind="transformer", in_features=8, layers=1, heads=2, width=16, context=8)
        >>> net = build_model(spec, seed=0)
        >>> len(ServedModel(net).generate(list(b"Hi"), max_new_tokens=10))
        10
        """
        if self.objective.name != "next-token":
            raise TypeError("this model classifies; only a next-token model generates")
        if not prompt:
            raise ValueError("generation needs a prompt of at least one token")
        if task is None and self.adapters:
            task = int(self.route(torch.tensor([prompt], dtype=torch.float32))[0])
        ids = list(prompt)
        if self.retriever is not None:
            ids = list(with_context(bytes(prompt), self.retriever.lookup(bytes(prompt))))
        with adapter_task(task if self.adapters else None):
            return greedy(
                self.net, ids, max_new_tokens, self.context, stop, read=self._mix if self.knn else None
            )

    def _vote(self, x: torch.Tensor) -> torch.Tensor:
        q = self._embed(x)  # (B, D)
        sim = q @ self.mem_keys.T  # (B, M) cosine similarity
        k = min(self.k, sim.shape[1])
        top, idx = sim.topk(k, dim=1)  # (B, k)
        votes = torch.zeros(x.shape[0], self.n_classes, dtype=sim.dtype)
        votes.scatter_add_(1, self.mem_y[idx], 1.0 + 1e-3 * top)  # similarity breaks ties
        return votes
