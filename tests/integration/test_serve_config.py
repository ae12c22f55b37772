"""``serve run deploy/serve.yaml`` serves and learns: Ray Serve's own CLI, its own local Ray, the
config shipped in the repository (ports and state directory made free for the test). Stopped, Ray
included, and run again over the same state directory, it carries on where it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
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


def _serve_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    # Ray's own defaults (no olsim ingress settings: the session's HAProxy ports belong to it), a new
    # local Ray (`--address local`), loopback node address as everywhere in the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
    serve = Path(sys.executable).parent / "serve"
    with log.open("a") as out:
        return subprocess.Popen(
            [str(serve), "run", "--address", "local", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # serve run shuts Serve down, then its Ray (detached actors too)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _version(client: httpx.Client, port: int) -> int | None:
    try:
        r = client.get(f"http://127.0.0.1:{port}/version", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json()["model_version"] if r.status_code == 200 else None


def _versions_until(port: int, done: Any, timeout_s: float = 180) -> list[int]:
    """Served versions polled every 0.5 s until ``done(seen)`` (or the timeout)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while time.monotonic() < deadline and not done(seen):
            v = _version(client, port)
            if v is not None:
                seen.append(v)
            time.sleep(0.5)
    return seen


def _publications(state: Path) -> list[dict[str, Any]]:
    lines = (state / "registry" / "journal.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "publish"]


def test_serve_run_serves_learns_and_resumes_after_a_full_stop(tmp_path: Path) -> None:
    config, port, metrics = _config(tmp_path)
    state, log = tmp_path / "state", tmp_path / "serve-run.log"
    proc = _serve_run(config, log)
    try:
        seen = _versions_until(port, lambda s: len(set(s)) >= 3)  # three versions: it keeps learning
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen
        with httpx.Client() as client:
            r = client.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[0.0] * 64]}, timeout=10)
            assert r.status_code == 200 and r.json()["model_version"] >= seen[-1]
            text = client.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
        assert "olsim_model_version" in text and "olsim_task_accuracy" in text
    finally:
        _stop(proc)  # everything goes: Serve, the detached actors, Ray itself

    before = _publications(state)
    accepted = [r["version"]["number"] for r in before if r["version"] is not None]
    last_step = max(r["decision"]["meta"]["step"] for r in before)
    assert accepted == list(range(1, len(accepted) + 1)) and len(accepted) >= 3, log.read_text()[-3000:]

    proc = _serve_run(config, log)  # the same config, the same state directory
    try:
        newer = _versions_until(port, lambda s: bool(s) and s[-1] > accepted[-1])
        assert newer and newer[0] >= accepted[-1] and newer[-1] > accepted[-1], (newer, accepted)
        scored = 0.0
        with httpx.Client() as client:
            deadline = time.monotonic() + 60
            while scored < accepted[-1] and time.monotonic() < deadline:
                for line in client.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text.splitlines():
                    if line.startswith("olsim_versions_evaluated_total "):
                        scored = float(line.split()[1])
                time.sleep(0.5)
    finally:
        _stop(proc)
    after = _publications(state)
    assert after[: len(before)] == before  # nothing accepted before is lost or rewritten
    resumed = after[len(before) :]
    numbers = [r["version"]["number"] for r in resumed if r["version"] is not None]
    assert numbers and numbers == list(range(accepted[-1] + 1, accepted[-1] + 1 + len(numbers)))
    # the learner carried on from its checkpoint (taken at its last publication), not from step 0
    assert resumed[0]["decision"]["meta"]["step"] > last_step, (resumed[0]["decision"]["meta"], last_step)
    assert scored >= accepted[-1]  # the evaluator found every earlier version in the registry again
