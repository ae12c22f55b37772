"""``serve run deploy/serve.yaml`` serves and learns: Ray Serve's own CLI, its own local Ray, the
config shipped in the repository (ports and state directory made free for the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> tuple[Path, int, int]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text())
    port, metrics = free_port(), free_port()
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"].update(state_dir=str(tmp_path / "state"), metrics_port=metrics, name="olsim-serve-test")
    app["deployments"][0]["num_replicas"] = 1
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port, metrics


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int]]:
    config, port, metrics = _config(tmp_path)
    # Ray's own defaults (no olsim ingress settings: the session's HAProxy ports belong to it), a new
    # local Ray (`--address local`), loopback node address as everywhere in the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
    serve = Path(sys.executable).parent / "serve"
    log = (tmp_path / "serve-run.log").open("w")
    proc = subprocess.Popen(
        [str(serve), "run", "--address", "local", str(config)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port, metrics
    finally:
        proc.send_signal(signal.SIGINT)  # serve run shuts Serve down, then its Ray
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _version(client: httpx.Client, port: int) -> int | None:
    try:
        r = client.get(f"http://127.0.0.1:{port}/version", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json()["model_version"] if r.status_code == 200 else None


def test_serve_run_serves_and_learns(served: tuple[int, int]) -> None:
    port, metrics = served
    seen: list[int] = []
    deadline = time.monotonic() + 180
    with httpx.Client() as client:
        while time.monotonic() < deadline and len(set(seen)) < 3:  # three versions: it keeps learning
            v = _version(client, port)
            if v is not None:
                seen.append(v)
            time.sleep(0.5)
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen
        r = client.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[0.0] * 64]}, timeout=10)
        assert r.status_code == 200 and r.json()["model_version"] >= seen[-1]
        text = client.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    assert "olsim_model_version" in text and "olsim_task_accuracy" in text
