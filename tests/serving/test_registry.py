from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.snapshot import Snapshot
from olsim.serving.journal import JournalError
from olsim.serving.registry import PublishResult, Registry


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
    async def scenario() -> list[tuple[bool, int, str | None, int]]:
        reg = Registry()
        for s in range(3):
            await reg.publish(_snap(s))
        out: list[tuple[bool, int, str | None, int]] = []
        for to in (None, None, 3, 7, 3):
            r = await reg.rollback(to, reason="test")
            out.append((r.ok, r.version, r.refused, reg.generation))
        r = await reg.rollback(1, trigger="auto", expect=2)  # 3 is served, not 2: no-op
        out.append((r.ok, r.version, r.refused, reg.generation))
        waited = await reg.wait_newer(4, timeout=0.01)
        assert waited is not None and waited.kind == "rollback"
        return out

    assert asyncio.run(scenario()) == [
        (True, 2, None, 4),  # 3 -> 2
        (True, 1, None, 5),  # 2 -> 1
        (True, 3, None, 6),  # named
        (False, 3, "not_retained", 6),  # never existed
        (False, 3, "nothing_to_do", 6),  # already served
        (False, 3, "nothing_to_do", 6),  # expect mismatch
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


def test_a_registry_over_its_journal_comes_back_with_its_state(tmp_path: Path) -> None:
    """What a restarted registry actor does: a new Registry over the same store directory."""

    async def before() -> Registry:
        reg = Registry(keep=3, store=tmp_path)
        for s in range(5):  # versions 1..5; retention drops 1 and 2
            await reg.publish(_snap(s))
        await reg.rollback(to=4, reason="bad")
        await reg.ack("r1", 4, reg.generation, 123.0)
        await reg.set_paused(True)
        assert (await reg.publish(_snap(9))).reason == "paused"
        await reg.set_paused(False)
        reg.journal.close()  # type: ignore[union-attr]
        return reg

    old = asyncio.run(before())
    reg = Registry(keep=3, store=tmp_path)

    async def after() -> None:
        assert reg.restored and reg.boot != old.boot
        assert await reg.state() == {**await old.state(), "boot": reg.boot, "restored": True}
        assert [h["version"] for h in await reg.history()] == [3, 4, 5]
        assert sorted(p.stem for p in (tmp_path / "versions").glob("*.npz")) == [
            "00000003",
            "00000004",
            "00000005",
        ]
        cur = await reg.current()
        assert cur is not None and cur.version.number == 4 and cur.kind == "rollback"
        assert cur.version.manifest.checksum == _snap(3).checksum  # the weights, read back and verified
        assert await reg.changes() == await old.changes() and await reg.decisions() == await old.decisions()
        assert await reg.replica_versions() == {"r1": 4}
        # followers carry on where they were: nothing newer than the generation they hold
        assert await reg.wait_newer(reg.generation, timeout=0.01) is None
        # a publication retried across the restart gets its first answer, not a second version
        assert (await reg.publish(_snap(4))).version == 5 and await reg.latest() == 5
        # the paused candidate was answered too: it is not judged again either
        assert (await reg.publish(_snap(9))).reason == "paused"
        assert (await reg.publish(_snap(10))).version == 6

    asyncio.run(after())


def test_a_torn_journal_tail_is_cut_and_a_damaged_line_refused(tmp_path: Path) -> None:
    async def publish_two() -> None:
        reg = Registry(store=tmp_path)
        await reg.publish(_snap(0))
        await reg.publish(_snap(1))
        reg.journal.close()  # type: ignore[union-attr]

    asyncio.run(publish_two())
    journal = tmp_path / "journal.jsonl"
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-20])  # died while writing version 2's line (its file already written)
    reg = Registry(store=tmp_path)
    assert asyncio.run(reg.latest()) == 1 and not (tmp_path / "versions" / "00000002.npz").exists()
    assert asyncio.run(reg.publish(_snap(1))).version == 2  # the retry is judged afresh
    reg.journal.close()  # type: ignore[union-attr]
    lines = journal.read_bytes().splitlines()
    journal.write_bytes(b"\n".join([lines[0], b"{not json", *lines[1:]]) + b"\n")
    with pytest.raises(JournalError, match="line 2 is damaged"):
        Registry(store=tmp_path)


def test_a_missing_or_damaged_version_file_does_not_stop_the_registry(tmp_path: Path) -> None:
    async def publish_three() -> None:
        reg = Registry(store=tmp_path)
        for s in range(3):
            await reg.publish(_snap(s))
        assert reg.journal is not None
        reg.journal.close()

    asyncio.run(publish_three())
    (tmp_path / "versions" / "00000002.npz").unlink()  # lost (say, never reached the disk)
    back = Registry(store=tmp_path)
    assert sorted(back._versions) == [1, 3] and back.served == 3
    state = asyncio.run(back.state())
    assert list(state["unreadable"]) == ["2"] and "FileNotFoundError" in state["unreadable"]["2"]
    assert back.journal is not None
    back.journal.close()

    # the served version's file damaged too: the newest readable one is served, as a journaled change
    (tmp_path / "versions" / "00000003.npz").write_bytes(b"not an npz")
    again = Registry(store=tmp_path)
    assert sorted(again._versions) == [1] and sorted(again.unreadable) == [2, 3]
    assert again.served == 1 and again.generation == 4
    change = asyncio.run(again.changes(3))[0]
    assert (change.kind, change.trigger, change.previous, change.version) == ("rollback", "restore", 3, 1)
    assert again.journal is not None
    again.journal.close()
    assert Registry(store=tmp_path).served == 1  # the fallback survives the next restart


def test_every_file_the_registry_creates_is_durable_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename or a new file is durable only once its directory is fsynced as well: watch the real
    calls (spied on, not replaced) and check that each directory that changed was fsynced after it."""
    import os
    import stat

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            events.append(("fsync-dir", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        events.append(("replace", str(Path(dst).parent)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = tmp_path / "registry"

    async def publish() -> None:
        reg = Registry(store=store)
        await reg.publish(_snap(0))
        assert reg.journal is not None
        reg.journal.close()

    asyncio.run(publish())
    versions = str(store / "versions")
    synced = [d for kind, d in events if kind == "fsync-dir"]
    assert {str(tmp_path), str(store)} <= set(synced)  # the new directories' entries
    renamed = events.index(("replace", versions))
    assert ("fsync-dir", versions) in events[renamed:]  # the version file's rename
    assert (store / "journal.jsonl").exists() and str(store) in synced  # the journal's creation


def test_a_checkpoint_rename_is_followed_by_a_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    from olsim.learner import checkpoint

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src: Path, dst: Path) -> None:
        real_replace(src, dst)
        events.append("replace")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    checkpoint.save(tmp_path / "ck.npz", {"a": 1})
    assert events[-3:] == ["file", "replace", "dir"]
