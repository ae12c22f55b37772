from __future__ import annotations

import asyncio

import pytest

from learner.model import ModelSpec, build_model
from learner.snapshot import Snapshot, SnapshotError
from serving.registry import Registry


def _snap(seed: int) -> Snapshot:
    return Snapshot.from_model(build_model(ModelSpec(hidden=4), seed=seed), step=seed)


def test_long_poll_returns_as_soon_as_a_version_is_published() -> None:
    async def scenario() -> tuple[int | None, float]:
        reg = Registry()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        waiter = asyncio.create_task(reg.wait_newer(0, timeout=5.0))
        await asyncio.sleep(0.05)
        await reg.publish(_snap(1))
        v = await waiter
        return (None if v is None else v.number), loop.time() - t0

    number, waited = asyncio.run(scenario())
    assert number == 1 and waited < 1.0


def test_wait_newer_skips_to_latest_wait_next_sees_every_version() -> None:
    async def scenario() -> tuple[int, list[int], object | None]:
        reg = Registry()
        for s in range(3):
            await reg.publish(_snap(s))
        newest = await reg.wait_newer(0, timeout=0.1)
        seen, after = [], 0
        while (v := await reg.wait_next(after, timeout=0.05)) is not None:
            seen.append(v.number)
            after = v.number
        return newest.number if newest else -1, seen, await reg.wait_newer(3, timeout=0.05)

    newest, seen, none = asyncio.run(scenario())
    assert newest == 3 and seen == [1, 2, 3] and none is None


def test_keeps_a_bounded_history_and_records_swaps() -> None:
    async def scenario() -> tuple[list[int], dict[str, int], float]:
        reg = Registry(keep=2)
        for s in range(4):
            await reg.publish(_snap(s))
        v4 = await reg.get(4)
        assert v4 is not None
        await reg.ack("r1", 3, v4.published_at)
        await reg.ack("r1", 4, v4.published_at + 0.02)
        await reg.ack("r2", 4, v4.published_at + 0.01)
        swaps = await reg.swaps(1)
        return (
            [int(h["version"]) for h in await reg.history()],
            await reg.replica_versions(),
            swaps[0].staleness_s,
        )

    history, replicas, staleness = asyncio.run(scenario())
    assert history == [3, 4]
    assert replicas == {"r1": 4, "r2": 4}
    assert staleness == pytest.approx(0.02)


def test_publish_rejects_a_corrupted_snapshot() -> None:
    snap = _snap(0)
    snap.tensors["fc2.bias"][:] = 7.0
    with pytest.raises(SnapshotError):
        asyncio.run(Registry().publish(snap))
