"""The registry holds weights by content: each distinct array once, within a byte budget, and a
candidate can be sent as the arrays that changed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot, digest
from olsim.serving.registry import Registry

SPEC = ModelSpec(in_features=8, hidden=16, n_classes=3)


class CountingPut:
    """A stand-in for ``ray.put`` that counts what it is asked to store (handles are tagged arrays)."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    def __call__(self, a: np.ndarray) -> tuple[str, np.ndarray]:
        self.stored.append(digest(a))
        return ("ref", a)


def _get(handles: list[Any]) -> list[np.ndarray]:
    return [h[1] for h in handles]


def _versions(n: int) -> list[Snapshot]:
    """``n`` exports of one model where only ``fc2.bias`` changes between them."""
    net = build_model(SPEC, seed=0)
    out = [Snapshot.from_model(net, step=0)]
    for i in range(1, n):
        with torch.no_grad():
            net.get_parameter("fc2.bias").add_(1.0)
        out.append(Snapshot.from_model(net, previous=out[-1], step=i))
    return out


def test_an_unchanged_array_is_stored_once_and_every_version_hands_out_its_handle() -> None:
    put = CountingPut()
    reg = Registry(put=put, get=_get)
    snaps = _versions(3)
    for s in snaps:
        assert asyncio.run(reg.publish(s)).version is not None
    assert len(put.stored) == len(set(put.stored)) == 4 + 2  # fc1 w/b and fc2 w/b, then two new biases
    c = asyncio.run(reg.wait_newer(0, timeout=0.01))
    assert c is not None and c.version.number == 3
    assert set(c.version.blobs) == set(snaps[2].digests.values())
    assert all(h[0] == "ref" for h in c.version.blobs.values())


def test_retention_keeps_the_distinct_bytes_within_keep_bytes_and_never_drops_the_served_version() -> None:
    one = Snapshot.from_model(build_model(SPEC, seed=0)).manifest().nbytes
    reg = Registry(keep_bytes=int(2.5 * one))
    for seed in range(5):  # unrelated versions: nothing shared
        asyncio.run(reg.publish(Snapshot.from_model(build_model(SPEC, seed=seed), step=seed)))
    history = asyncio.run(reg.history())
    assert [h["version"] for h in history] == [4, 5]
    assert reg.retained_bytes() <= 2.5 * one
    asyncio.run(reg.rollback(4))
    asyncio.run(reg.publish(Snapshot.from_model(build_model(SPEC, seed=9), step=9)))
    assert [h["version"] for h in asyncio.run(reg.history())] == [4, 6]  # 5 dropped, not the served 4
    assert asyncio.run(reg.state())["dropped"] == [1, 2, 3, 5]  # what a report's version audit reads


def test_a_restarted_registry_remembers_what_retention_dropped(tmp_path: Path) -> None:
    one = Snapshot.from_model(build_model(SPEC, seed=0)).manifest().nbytes
    reg = Registry(keep_bytes=int(1.5 * one), store=tmp_path)
    for seed in range(3):
        asyncio.run(reg.publish(Snapshot.from_model(build_model(SPEC, seed=seed), step=seed)))
    again = Registry(keep_bytes=int(1.5 * one), store=tmp_path)
    # 2 was the served version when 3 arrived, so it stays: dropping never touches what is served
    assert asyncio.run(again.state())["dropped"] == asyncio.run(reg.state())["dropped"] == [1]
    assert [h["version"] for h in asyncio.run(again.history())] == [2, 3]


def test_a_delta_publication_sends_only_changed_arrays_and_is_checked() -> None:
    put = CountingPut()
    reg = Registry(put=put, get=_get)
    base, nxt, third = _versions(3)
    asyncio.run(reg.publish(base))
    changed = {d: a for d, a in nxt.arrays().items() if d not in set(base.digests.values())}
    assert [a.nbytes for a in changed.values()] == [nxt.tensors["fc2.bias"].nbytes]
    assert asyncio.run(reg.publish_delta(nxt.manifest(), changed)).version == 2
    c = asyncio.run(reg.wait_newer(1, timeout=0.01))
    assert c is not None and c.version.manifest.checksum == nxt.checksum

    # an array whose bytes do not match its digest is refused, and nothing is served from it
    ((d, a),) = {d: a for d, a in third.arrays().items() if d not in set(nxt.digests.values())}.items()
    bad = asyncio.run(reg.publish_delta(third.manifest(), {d: a + 1}))
    assert (bad.version, bad.reason) == (None, "checksum")
    assert reg.served == 2

    # a registry that no longer holds the base asks for everything, and decides nothing
    fresh = Registry(put=put, get=_get)
    missing = asyncio.run(fresh.publish_delta(third.manifest(), {d: a}))
    assert (missing.version, missing.reason) == (None, "missing")
    assert asyncio.run(fresh.decisions()) == []
    assert asyncio.run(fresh.publish(third)).version == 1


def test_a_value_registry_hands_out_the_arrays_themselves() -> None:
    reg = Registry()
    snap = _versions(1)[0]
    asyncio.run(reg.publish(snap))
    c = asyncio.run(reg.wait_newer(0, timeout=0.01))
    assert c is not None
    assert Snapshot.assemble(c.version.manifest, c.version.blobs).build()  # verifies every array
    assert all(isinstance(h, np.ndarray) for h in c.version.blobs.values())
