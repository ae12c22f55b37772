"""Bounded rehearsal memories. Each holds at most ``capacity`` samples, whatever the stream length."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ReservoirBuffer:
    """Uniform sample of everything seen so far (Vitter's algorithm R).

    >>> buf = ReservoirBuffer(capacity=3, n_features=2, seed=0)
    >>> buf.add(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    >>> len(buf), buf.seen
    (3, 5)
    >>> x, y = buf.sample(2); x.shape, y.shape
    (torch.Size([2, 2]), torch.Size([2]))
    """

    def __init__(self, capacity: int, n_features: int, seed: int = 0, n_logits: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.x = torch.zeros(capacity, n_features)
        self.y = torch.zeros(capacity, dtype=torch.long)
        self.z = torch.zeros(capacity, n_logits)  # stored logits (DER); width 0 when unused
        self.size = 0
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def _slot(self, label: int) -> int | None:
        """Where a new sample goes, or None to drop it."""
        if self.size < self.capacity:
            self.size += 1
            return self.size - 1
        j = int(self.rng.integers(self.seen))  # seen already counts this sample
        return j if j < self.capacity else None

    def add(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor | None = None) -> None:
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            self.seen += 1
            slot = self._slot(int(yi))
            if slot is not None:
                self.x[slot] = xi
                self.y[slot] = yi
                if z is not None:
                    self.z[slot] = z[i]

    def clear(self) -> None:
        """Forget every sample (the random stream goes on, so reruns stay identical)."""
        self.size = 0
        self.seen = 0

    def sample_index(self, n: int) -> torch.Tensor:
        """Indices of up to ``n`` distinct stored samples, chosen uniformly."""
        k = min(n, self.size)
        return torch.from_numpy(self.rng.choice(self.size, size=k, replace=False)).long()

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``n`` distinct stored samples, chosen uniformly."""
        idx = self.sample_index(n)
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {
            "x": self.x.clone(),
            "y": self.y.clone(),
            "z": self.z.clone(),
            "size": self.size,
            "seen": self.seen,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["x"].shape) != tuple(self.x.shape):
            raise ValueError(f"buffer shape {tuple(state['x'].shape)} != {tuple(self.x.shape)}")
        self.x = state["x"].clone()
        self.y = state["y"].clone()
        self.z = state["z"].clone()
        self.size = int(state["size"])
        self.seen = int(state["seen"])
        self.rng.bit_generator.state = state["rng"]


class ClassBalancedBuffer(ReservoirBuffer):
    """Keeps classes equally represented: a full buffer evicts a random sample of its largest class.

    >>> buf = ClassBalancedBuffer(capacity=4, n_features=1, seed=0)
    >>> buf.add(torch.zeros(6, 1), torch.tensor([0, 0, 0, 0, 1, 1]))
    >>> sorted(buf.y[: len(buf)].tolist())
    [0, 0, 1, 1]
    """

    _counts: dict[int, int] | None = None  # label -> stored samples; a cache over self.y

    def _slot(self, label: int) -> int | None:
        counts = self._class_counts()
        if self.size < self.capacity:
            self.size += 1
            counts[label] = counts.get(label, 0) + 1
            return self.size - 1
        most = max(counts.values())
        if counts.get(label, 0) == most:
            # Our class is (one of) the largest: reservoir-sample within the class.
            if int(self.rng.integers(self.seen)) >= self.capacity:
                return None
            victim_class = label
        else:
            largest = sorted(c for c, n in counts.items() if n == most)
            victim_class = largest[int(self.rng.integers(len(largest)))]
        victims = torch.nonzero(self.y[: self.size] == victim_class).flatten()
        counts[victim_class] -= 1
        counts[label] = counts.get(label, 0) + 1
        return int(victims[int(self.rng.integers(len(victims)))])

    def clear(self) -> None:
        super().clear()
        self._counts = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._counts = None

    def _class_counts(self) -> dict[int, int]:
        # Derived from the stored labels on first use (not state), then kept in step with every write.
        if self._counts is None:
            labels, n = torch.unique(self.y[: self.size], return_counts=True)
            self._counts = dict(zip(labels.tolist(), n.tolist(), strict=True))
        return self._counts


class UnboundedMemory:
    """Keeps every sample it is given (the ``joint`` upper bound); memory grows with the stream.

    >>> m = UnboundedMemory(n_features=2, seed=0)
    >>> m.add(torch.zeros(3, 2), torch.tensor([0, 1, 2])); len(m), m.sample(5)[1].shape
    (3, torch.Size([3]))
    """

    capacity: int | None = None  # unbounded

    def __init__(self, n_features: int, seed: int = 0, chunk: int = 1024) -> None:
        self.x = torch.zeros(chunk, n_features)
        self.y = torch.zeros(chunk, dtype=torch.long)
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        need = self.size + len(y)
        if need > len(self.y):  # grow geometrically
            cap = max(need, 2 * len(self.y))
            self.x = torch.cat([self.x, torch.zeros(cap - len(self.x), self.x.shape[1])])
            self.y = torch.cat([self.y, torch.zeros(cap - len(self.y), dtype=torch.long)])
        self.x[self.size : need] = x
        self.y[self.size : need] = y
        self.size = need

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.rng.choice(self.size, size=min(n, self.size), replace=False)).long()
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {
            "x": self.x[: self.size].clone(),
            "y": self.y[: self.size].clone(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = state["x"].clone()
        self.y = state["y"].clone()
        self.size = len(self.y)
        self.rng.bit_generator.state = state["rng"]
