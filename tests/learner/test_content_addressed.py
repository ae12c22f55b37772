"""Snapshots by content: an export reuses what did not change, a replica's network pool points its
trees at the arrays it is given (no copies) and only repoints what changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.networks import NetworkPool
from olsim.learner.snapshot import Snapshot, SnapshotError, digest, root

SPEC = ModelSpec(
    kind="transformer", layers=1, width=16, heads=2, context=8, in_features=8, adapters=1, lora_rank=2
)


def _adapters_step(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".a." in name or ".b." in name:
                p.add_(0.01)


def test_an_export_after_an_adapter_step_shares_every_unchanged_array() -> None:
    net = build_model(SPEC, seed=0)
    first = Snapshot.from_model(net)
    _adapters_step(net)
    second = Snapshot.from_model(net, previous=first)
    changed = {n for n in second.tensors if second.tensors[n] is not first.tensors[n]}
    assert changed and all(".a." in n or ".b." in n for n in changed)
    fresh = Snapshot.from_model(net)  # the same state, exported from scratch
    assert second.digests == fresh.digests and second.checksum == fresh.checksum
    assert second.checksum == root(SPEC, second.digests)
    second.verify()


def test_verify_rehashes_every_array() -> None:
    snap = Snapshot.from_model(build_model(SPEC, seed=0))
    snap.tensors["head.bias" if "head.bias" in snap.tensors else next(iter(snap.tensors))][...] += 1
    with pytest.raises(SnapshotError, match="checksum"):
        snap.verify()
    other = ModelSpec(kind="transformer", layers=1, width=16, heads=2, context=8, in_features=8)
    with pytest.raises(SnapshotError, match="checksum"):
        dataclasses.replace(Snapshot.from_model(build_model(SPEC, seed=0)), spec=other).verify()


def test_the_pool_serves_the_arrays_themselves_and_a_free_tree_holds_no_version() -> None:
    net = build_model(SPEC, seed=0)
    v1 = Snapshot.from_model(net)
    _adapters_step(net)
    v2 = Snapshot.from_model(net, previous=v1)
    _adapters_step(net)
    v3 = Snapshot.from_model(net, previous=v2)
    pool = NetworkPool()
    tokens = torch.randint(1, 255, (2, 8))
    _, tree1 = pool.serve(v1.manifest(), v1.arrays())
    served2, tree2 = pool.serve(v2.manifest(), v2.arrays())  # tree1 still serves: a second tree
    assert pool.built == 2 and tree1 is not tree2
    by_digest = v2.arrays()  # tensors of equal content are one array
    for name, t in tree2.state_dict().items():
        assert t.data_ptr() == by_digest[v2.digests[name]].ctypes.data  # no copy
    pool.release(tree1)
    assert all(t.is_meta for t in tree1.state_dict().values())  # version 1's arrays are let go of
    served3, tree3 = pool.serve(v3.manifest(), v3.arrays())
    assert tree3 is tree1 and pool.built == 2
    by_digest = v3.arrays()
    assert all(t.data_ptr() == by_digest[v3.digests[n]].ctypes.data for n, t in tree3.state_dict().items())
    with torch.inference_mode():
        expect = v3.build()(tokens)
        assert torch.equal(served3(tokens), expect)
        assert torch.equal(served2(tokens), v2.build()(tokens))  # the other tree is not disturbed


def test_the_pool_refuses_arrays_of_another_shape() -> None:
    net = build_model(SPEC, seed=0)
    snap = Snapshot.from_model(net)
    pool = NetworkPool()
    _, tree = pool.serve(snap.manifest(), snap.arrays())
    pool.release(tree)
    name = next(n for n in snap.tensors if n.endswith("a.0"))
    wrong = np.zeros((3, 3), np.float32)
    manifest = snap.manifest()
    manifest = dataclasses.replace(manifest, digests={**manifest.digests, name: digest(wrong)})
    with pytest.raises(SnapshotError, match="shape"):
        pool.serve(manifest, {**snap.arrays(), digest(wrong): wrong})


class Scaled(torch.nn.Module):
    """A model with a buffer computed at construction and kept out of its state dict."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(in_features, n_classes)
        self.register_buffer("scale", torch.full((n_classes,), 2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x) * self.scale
        return out


def scaled(in_features: int, n_classes: int) -> Scaled:
    return Scaled(in_features, n_classes)


def test_a_model_with_state_outside_its_state_dict_is_built_for_real_and_copied_into() -> None:
    spec = ModelSpec.model_validate(
        {"import": "tests.learner.test_content_addressed:scaled", "in_features": 4, "n_classes": 3}
    )
    net = build_model(spec, seed=0)
    v1 = Snapshot.from_model(net)
    with torch.no_grad():
        net.get_parameter("fc.bias").add_(1.0)
    v2 = Snapshot.from_model(net, previous=v1)
    pool = NetworkPool()
    x = torch.randn(5, 4)
    served, tree = pool.serve(v1.manifest(), v1.arrays())
    assert torch.equal(served(x), v1.build()(x))  # the buffer is real: 2.0, not a meta tensor
    pool.release(tree)
    served2, tree2 = pool.serve(v2.manifest(), v2.arrays())
    assert tree2 is tree and torch.equal(served2(x), v2.build()(x))


def test_the_pool_keeps_one_free_tree() -> None:
    snap = Snapshot.from_model(build_model(SPEC, seed=0))
    pool = NetworkPool()
    trees = [pool.serve(snap.manifest(), snap.arrays())[1] for _ in range(3)]  # three held at once
    assert pool.built == 3
    for t in trees:
        pool.release(t)
    _, again = pool.serve(snap.manifest(), snap.arrays())
    _, fresh = pool.serve(snap.manifest(), snap.arrays())
    assert again is trees[0] and fresh not in trees and pool.built == 4
