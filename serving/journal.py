"""The registry's durable state: one ``.npz`` per accepted version and an append-only JSON-lines
journal of everything else (gate decisions, changes of the served version, replica
acknowledgements, pause).

A registry killed at any point, or a machine that loses power, comes back with every version it had
answered for: a version's file is written (atomically, fsynced, its directory fsynced) before the
journal line that accepts it; each journal line is one write of one line, flushed (publications and
rollbacks also fsynced; the journal's creation, like every directory olsim creates here, made durable
by fsyncing the directory that holds it); a torn last line (the process died while writing it) is cut
off when the journal is reopened. Nothing is unpickled.

>>> import tempfile
>>> j = Journal(Path(tempfile.mkdtemp()))
>>> j.append({"kind": "paused", "paused": True})
>>> _ = j.path.open("ab").write(b'{"kind": "pa')  # a write the process did not finish
>>> j.close(); Journal(j.root).records()
[{'kind': 'paused', 'paused': True}]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from olsim.learner import checkpoint
from olsim.learner.snapshot import Snapshot

log = logging.getLogger(__name__)


class JournalError(RuntimeError):
    """The journal cannot be replayed (a damaged line that is not the last one)."""


class Journal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "journal.jsonl"
        checkpoint.make_dirs(root / "versions")
        self._records = self._read()
        self._file: IO[bytes] | None = None

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # torn tail: the process died mid-write; that record never happened
            log.warning("journal %s: dropping a torn last line (%d bytes)", self.path, len(data) - complete)
            with self.path.open("r+b") as f:
                f.truncate(complete)
        out = []
        for n, line in enumerate(data[:complete].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise JournalError(f"{self.path}: line {n} is damaged ({exc.msg})") from None
        return out

    def records(self) -> list[dict[str, Any]]:
        """What the journal held when it was opened, oldest first."""
        return list(self._records)

    def append(self, record: dict[str, Any], sync: bool = False) -> None:
        if self._file is None:
            created = not self.path.exists()
            self._file = self.path.open("ab")
            if created:  # the journal's directory entry must survive a power loss too
                checkpoint.sync_dir(self.root)
        self._file.write(json.dumps(record).encode() + b"\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _version_path(self, number: int) -> Path:
        return self.root / "versions" / f"{number:08d}.npz"

    def save_version(self, number: int, snapshot: Snapshot) -> None:
        checkpoint.save(self._version_path(number), snapshot.to_state())

    def load_version(self, number: int) -> Snapshot:
        return Snapshot.from_state(checkpoint.load(self._version_path(number)))

    def remove_versions(self, numbers: list[int]) -> None:
        """Delete these versions' files (dropped by retention)."""
        for n in numbers:
            self._version_path(n).unlink(missing_ok=True)
        if numbers:
            checkpoint.sync_dir(self.root / "versions")

    def keep_only(self, keep: set[int]) -> None:
        """Delete every version file not in ``keep`` (on restore: files the journal never accepted,
        or whose drop was journaled before the file went)."""
        self.remove_versions(
            [int(p.stem) for p in (self.root / "versions").glob("*.npz") if int(p.stem) not in keep]
        )
