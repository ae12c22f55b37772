from __future__ import annotations

import asyncio

import pytest

from learner.model import ModelSpec, build_model
from learner.snapshot import Snapshot
from serving.registry import PublishResult, Registry


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
        c = await waiter
        return (None if c is None else c.version.number), loop.time() - t0

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
        return newest.version.number if newest else -1, seen, await reg.wait_newer(3, timeout=0.05)

    newest, seen, none = asyncio.run(scenario())
    assert newest == 3 and seen == [1, 2, 3] and none is None


def test_keeps_a_bounded_history_and_records_swaps() -> None:
    async def scenario() -> tuple[list[int], dict[str, int], float]:
        reg = Registry(keep=2)
        for s in range(4):
            await reg.publish(_snap(s))
        v4 = await reg.get(4)
        assert v4 is not None
        await reg.ack("r1", 3, 3, v4.published_at)
        await reg.ack("r1", 4, 4, v4.published_at + 0.02)
        await reg.ack("r2", 4, 4, v4.published_at + 0.01)
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


def test_publish_rejects_a_corrupted_snapshot_and_keeps_serving() -> None:
    async def scenario() -> tuple[object, int, list[str]]:
        reg = Registry()
        await reg.publish(_snap(0))
        snap = _snap(1)
        snap.tensors["fc2.bias"][:] = 7.0
        result = await reg.publish(snap)
        return result, reg.served, [d.reason for d in await reg.decisions()]

    result, served, reasons = asyncio.run(scenario())
    assert result == PublishResult(None, "checksum", "snapshot checksum mismatch")
    assert served == 1 and reasons == ["gate_off", "checksum"]


def test_rollback_to_previous_or_named_version_bumps_the_generation() -> None:
    async def scenario() -> list[tuple[bool, int, int, int]]:
        reg = Registry()
        for s in range(3):
            await reg.publish(_snap(s))
        out = []
        for to in (None, None, 3, 7, 3):
            r = await reg.rollback(to, reason="test")
            out.append((r.ok, r.version, r.status, reg.generation))
        r = await reg.rollback(1, trigger="auto", expect=2)  # 3 is served, not 2: no-op
        out.append((r.ok, r.version, r.status, reg.generation))
        waited = await reg.wait_newer(4, timeout=0.01)
        assert waited is not None and waited.kind == "rollback"
        return out

    assert asyncio.run(scenario()) == [
        (True, 2, 200, 4),  # 3 -> 2
        (True, 1, 200, 5),  # 2 -> 1
        (True, 3, 200, 6),  # named
        (False, 3, 404, 6),  # never existed
        (False, 3, 409, 6),  # already served
        (False, 3, 409, 6),  # expect mismatch
    ]


def test_paused_registry_rejects_candidates_until_resumed() -> None:
    async def scenario() -> list[int | None]:
        reg = Registry()
        out = [(await reg.publish(_snap(0))).version]
        await reg.set_paused(True)
        out.append((await reg.publish(_snap(1))).version)
        await reg.set_paused(False)
        out.append((await reg.publish(_snap(2))).version)
        return out

    assert asyncio.run(scenario()) == [1, None, 2]


def test_replica_versions_follow_rollbacks() -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int]]:
        reg = Registry()
        for s in range(2):
            await reg.publish(_snap(s))
        await reg.ack("r1", 2, 2, 0.0)
        await reg.rollback()
        await reg.ack("r1", 1, 3, 0.0)
        return await reg.replica_versions(), await reg.replica_generations()

    assert asyncio.run(scenario()) == ({"r1": 1}, {"r1": 3})
