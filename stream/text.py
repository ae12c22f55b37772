"""Text domains for next-byte language modelling, from text that ships with Python and olsim's
dependencies (nothing is downloaded):

- ``python``: standard-library source code;
- ``docs``: Python's English documentation topics (``pydoc_data.topics``);
- ``csv``: the CSV data files scikit-learn bundles;
- ``rst``: the reStructuredText descriptions of scikit-learn's bundled datasets.

Each domain is cut into blocks; a seeded shuffle sends 60% of the blocks to training, 20% to
validation and 20% to test, so held-out text is never trained on. :func:`text_tasks` makes the
domains a task source (one task per domain) of token rows for a next-token model.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olsim.stream.tasks import TaskData

DOMAINS = ("python", "docs", "csv", "rst")


def _sklearn_files(folder: str, pattern: str) -> list[Path]:
    import sklearn

    return sorted((Path(sklearn.__file__).parent / "datasets" / folder).glob(pattern))


def domain_text(name: str, size: int) -> bytes:
    """The first ``size`` bytes of domain ``name`` (files in a fixed, sorted order).

    >>> domain_text("docs", 40)[:12]
    b'The "assert"'
    """
    if name == "python":
        files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
        parts = (f.read_bytes() for f in files)
    elif name == "docs":
        from pydoc_data.topics import topics

        parts = (topics[k].encode() for k in sorted(topics))
    elif name == "csv":
        parts = (f.read_bytes() for f in _sklearn_files("data", "*.csv"))
    elif name == "rst":
        parts = (f.read_bytes() for f in _sklearn_files("descr", "*.rst"))
    else:
        raise ValueError(f"unknown text domain {name!r}; valid: {', '.join(DOMAINS)}")
    out = bytearray()
    for part in parts:
        out += part
        if len(out) >= size:
            break
    if len(out) < size:
        raise ValueError(f"text domain {name!r} has {len(out)} bytes, fewer than the {size} asked for")
    return bytes(out[:size])


@dataclass(frozen=True)
class TextDomain:
    """One domain's text, split by blocks into train, validation and test."""

    name: str
    train: bytes
    val: bytes
    test: bytes


def text_domains(
    seed: int, names: tuple[str, ...] = DOMAINS, size: int = 40_000, block: int = 512
) -> list[TextDomain]:
    """One :class:`TextDomain` per name, ``size`` bytes each, in ``block``-byte blocks split 60/20/20.

    >>> [(d.name, len(d.train), len(d.val), len(d.test)) for d in text_domains(0, ("csv",), 5120)]
    [('csv', 3072, 1024, 1024)]
    """
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        text = domain_text(name, size)
        blocks = [text[i : i + block] for i in range(0, len(text), block)]
        order = rng.permutation(len(blocks))
        a, b = round(0.6 * len(blocks)), round(0.8 * len(blocks))
        parts = [b"".join(blocks[i] for i in sorted(order[lo:hi])) for lo, hi in ((0, a), (a, b), (b, None))]
        out.append(TextDomain(name, parts[0], parts[1], parts[2]))
    return out


def _windows(text: bytes, width: int, stride: int) -> np.ndarray:
    """Every ``width``-byte window of ``text`` that starts at a multiple of ``stride``, as byte ids."""
    data = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    if len(data) < width:
        raise ValueError(
            f"a split of {len(data)} bytes holds no {width}-byte window: raise size or lower context"
        )
    starts = range(0, len(data) - width + 1, stride)
    return np.stack([data[s : s + width] for s in starts])


def text_tasks(
    seed: int,
    domains: tuple[str, ...] | list[str] = DOMAINS,
    size: int = 20_000,
    context: int = 64,
    stride: int = 32,
) -> list[TaskData]:
    """The domains of :func:`text_domains` as a task source: one task per domain, in order.

    Rows are ``context``-byte windows of the domain's text (token rows with no padding); training
    windows overlap (one every ``stride`` bytes), validation and test windows do not. A row's label is
    its last position: the row is scored on its last byte, so a task's accuracy is next-byte
    accuracy with a full context (:mod:`olsim.learner.objective`), and its held-out bits per byte
    come from every byte of the row.

    >>> tasks = text_tasks(0, ("csv", "rst"), size=5120, context=64)
    >>> [(t.name, t.x.shape, int(t.y[0]), [int((t.split == k).sum()) for k in (0, 1, 2)]) for t in tasks]
    [('csv', (127, 64), 63, [95, 16, 16]), ('rst', (127, 64), 63, [95, 16, 16])]
    """
    if context < 2 or stride < 1:
        raise ValueError(f"context must be >= 2 and stride >= 1, not {context} and {stride}")
    out = []
    for d in text_domains(seed, tuple(domains), size):
        parts = [_windows(d.train, context, stride), _windows(d.val, context, context)]
        parts.append(_windows(d.test, context, context))
        x = np.concatenate(parts)
        if (x == 0).any():
            raise ValueError(f"text domain {d.name!r} holds a NUL byte, which token rows keep for padding")
        split = np.repeat([0, 1, 2], [len(p) for p in parts])
        out.append(TaskData(d.name, x, np.full(len(x), context - 1, dtype=np.int64), split))
    return out
