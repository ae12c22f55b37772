"""The admin token file: a new 0600 file every run, never written through a planted symlink; a token
from the environment must be as long as olsim's own."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from olsim.deploy.run.options import TOKEN_ENV, RunError, RunOptions, resolve_token


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def test_a_symlink_at_the_token_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "admin-token").symlink_to(target)
    with pytest.raises(RunError, match="not a regular file"):
        resolve_token(RunOptions(report_dir=tmp_path / "run"))
    assert target.read_text() == "precious\n"


def test_an_earlier_runs_token_file_is_replaced_by_a_new_0600_one(tmp_path: Path) -> None:
    old = tmp_path / "admin-token"
    old.write_text("an earlier run's token\n")
    old.chmod(0o644)
    token, path = resolve_token(RunOptions(report_dir=tmp_path))
    assert path == old and old.read_text() == token + "\n" and len(token) >= 16
    assert stat.S_IMODE(os.lstat(old).st_mode) == 0o600  # a new file: the old one's mode is not reused


def test_a_short_token_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "hunter2")
    with pytest.raises(
        RunError, match=r"\$OLSIM_ADMIN_TOKEN is 7 characters; an admin token needs at least 16"
    ):
        resolve_token(RunOptions(report_dir=tmp_path))
    monkeypatch.setenv(TOKEN_ENV, "x" * 16)
    assert resolve_token(RunOptions(report_dir=tmp_path)) == ("x" * 16, None)
    assert not (tmp_path / "admin-token").exists()
