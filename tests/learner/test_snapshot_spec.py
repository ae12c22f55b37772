"""A snapshot's spec names the code that builds its model: the checksum covers it, and a process
that serves one spec refuses a snapshot naming another before building anything."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot, SnapshotError

SPEC = ModelSpec(in_features=4, hidden=8, n_classes=3)


def test_an_edited_spec_fails_the_checksum() -> None:
    snap = Snapshot.from_model(build_model(SPEC, seed=0))
    other = ModelSpec.model_validate({"import": "os:system", "in_features": 4, "n_classes": 3})
    with pytest.raises(SnapshotError, match="checksum"):
        dataclasses.replace(snap, spec=other).build()


def test_a_snapshot_of_another_model_is_refused_before_it_is_built() -> None:
    snap = Snapshot.from_model(build_model(ModelSpec(in_features=4, hidden=16, n_classes=3), seed=0))
    with pytest.raises(SnapshotError, match="is not the served"):
        snap.build(expected=SPEC)
    assert snap.build(expected=snap.spec)(torch.zeros(1, 4)).shape == (1, 3)
