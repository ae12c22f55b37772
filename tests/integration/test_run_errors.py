"""Runs that cannot start fail with one clear error and leave nothing deployed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunError, RunOptions
from olsim.deploy.scenario.spec import load_scenario


def test_metrics_port_in_use_is_a_clear_error(ray_cluster: None, tmp_path: Path) -> None:
    from ray import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        opts = RunOptions(report_dir=tmp_path, metrics_port=port, load_rps=0)
        with pytest.raises(RunError, match=f"could not start on 127.0.0.1:{port}"):
            run(load_scenario("synthetic"), opts)
    assert "olsim" not in serve.status().applications
    assert not (tmp_path / "report.json").exists()
