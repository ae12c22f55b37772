"""Hot swaps of a 30 MB language model on real Serve replicas under /generate load: weights travel
by object-store reference, a replica holds at most two copies at a swap's peak and makes none of its
own, an adapter-only publication moves only the adapters, and no request fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import deployed
from olsim.deploy.bench.swap import Publisher, RssSampler, text_traffic
from olsim.deploy.load.generator import LoadGenerator
from olsim.deploy.run.cluster import get, wait_until
from olsim.deploy.run.stack import ServingStack
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot

PREFIX = "/big"
SPEC = ModelSpec(
    kind="transformer", layers=4, width=384, heads=4, context=64, in_features=64, adapters=1, lora_rank=8
)


def _scenario() -> Scenario:
    data = load_scenario("text-domains").dump()
    data["learner"]["model"] = SPEC.model_dump(mode="json")
    data["serving"] = {"replicas": 2}
    return Scenario.model_validate(data)


SCENARIO = _scenario()


@pytest.fixture(scope="module")
def stack(ray_cluster: None) -> Iterator[ServingStack]:
    first = Snapshot.from_model(build_model(SPEC, seed=0), task=0, step=0)
    with deployed(SCENARIO, first, app_name="big", route_prefix=PREFIX, gate=False) as st:
        yield st


def _publish_under_load(stack: ServingStack, publisher: Publisher, n: int) -> tuple[list[Any], list[Any]]:
    """``n`` publications, each waited for on every replica, under 20 /generate requests a second;
    returns the swaps and the requests."""
    load = LoadGenerator.sending(text_traffic(0), f"http://127.0.0.1:8000{PREFIX}", rps=20, seed=0)
    before = len(get(stack.registry.swaps.remote()))
    load.start()
    try:
        for _ in range(n):
            publisher.next()
            assert wait_until(stack.replicas_current, 30, "replicas to serve the new version")
            time.sleep(0.5)  # requests between swaps too
    finally:
        load.stop()
    return get(stack.registry.swaps.remote())[before:], load.samples


def test_full_swaps_under_load_fail_no_request_and_hold_at_most_two_copies(stack: ServingStack) -> None:
    publisher = Publisher(stack.registry, SPEC, seed=1, adapters_only=False)
    size, _ = publisher.sizes()
    assert size > 25e6
    rss = RssSampler(f"ServeReplica:{stack.app_name}")
    assert len(rss.pids) == 2
    rss.start()
    time.sleep(0.5)  # each replica's private memory, serving one version
    try:
        swaps, samples = _publish_under_load(stack, publisher, 4)
    finally:
        rss.stop()
    assert len(samples) >= 20 and [s for s in samples if s.status != 200] == []
    versions = sorted({s.version for s in swaps})
    assert len(versions) == 4 and sorted(s.version for s in swaps) == sorted(versions * 2)  # both replicas
    later = [s for s in swaps if s.version != versions[0]]
    assert all(0.99 * size <= s.moved_bytes <= size for s in later)  # every weight changed and travelled
    # the most a replica held at a swap's peak: the old and the new network, nothing more
    assert max(s.held_bytes for s in swaps) <= 2.02 * size
    # and no private copy of either: a replica serves the object store's arrays in place
    for pid in rss.pids:
        values = [v["RssAnon"] for _, p, v in rss.samples if p == pid and "RssAnon" in v]
        assert len(values) > 10
        rise = max(values) - values[0]
        assert rise < 0.5 * size, f"replica {pid}: private memory rose {rise / size:.2f} model sizes"


def test_an_adapter_publication_moves_only_the_adapters(stack: ServingStack) -> None:
    publisher = Publisher(stack.registry, SPEC, seed=2, adapters_only=True)
    size, _ = publisher.sizes()
    swaps, samples = _publish_under_load(stack, publisher, 3)  # a new base, then two adapter steps
    assert [s for s in samples if s.status != 200] == []
    adapters = sum(a.nbytes for n, a in publisher.last.tensors.items() if ".a." in n or ".b." in n)
    _, *deltas = sorted({s.version for s in swaps})
    assert len(deltas) == 2
    moved = [s.moved_bytes for s in swaps if s.version in deltas]
    assert len(moved) == 2 * 2 and all(0 < m <= adapters for m in moved), (moved, adapters)
    assert max(moved) < 0.05 * size
    assert max(s.held_bytes for s in swaps if s.version in deltas) <= 1.05 * size  # the base is shared
