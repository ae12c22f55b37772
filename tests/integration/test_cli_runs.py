"""The console script end to end, as a user runs it: two commands back to back on the same ports
(each starting and stopping its own Ray), and what a client still sending sees as a run ends."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from olsim.deploy.net import free_port


class Client(threading.Thread):
    """Sends /predict to ``port`` every 20 ms until stopped; records (unix time, status, Retry-After),
    status 0 for no HTTP answer."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/predict"
        self.seen: list[tuple[float, int, str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(self.url, json={"inputs": [[0.1] * 64]})
                    self.seen.append((time.time(), r.status_code, r.headers.get("retry-after")))
                except httpx.HTTPError:
                    self.seen.append((time.time(), 0, None))
                self.stop.wait(0.02)


EXAMPLE = Path(__file__).parents[2] / "examples" / "rotated-digits.yaml"


def _olsim(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "olsim.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def _plain_bind_refused(port: int) -> bool:
    """Whether binding ``port`` without SO_REUSEADDR fails (a socket in TIME_WAIT there does that)."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def test_run_then_load_back_to_back_and_a_run_ending_under_load(tmp_path: Path) -> None:
    serve, ray_metrics = free_port(), free_port()
    client = Client(serve)
    client.start()
    first = _olsim(
        "run",
        "split-digits",
        "--duration",
        "8",
        "--prometheus",
        "--prometheus-port",
        str(free_port()),
        "--scrape-interval",
        "1",
        "--linger",
        "2",
        "--load-rps",
        "0",
        "--serve-port",
        str(serve),
        "--metrics-port",
        str(free_port()),
        "--ray-metrics-port",
        str(ray_metrics),
        "--report-dir",
        str(tmp_path / "run"),
    )
    time.sleep(0.5)
    client.stop.set()
    client.join()
    assert first.returncode == 0, first.stderr[-3000:]
    # Prometheus scraped Ray's metrics endpoint, which closes each connection first: its port now
    # holds sockets in TIME_WAIT. Binding it without SO_REUSEADDR fails; Ray (and olsim) can.
    time_wait = _plain_bind_refused(ray_metrics)

    second = _olsim(
        "load",
        "--mode",
        "open",
        "--rps",
        "50",
        "--duration",
        "4",
        "--serve-port",
        str(serve),
        "--ray-metrics-port",
        str(ray_metrics),
        "--out",
        str(tmp_path / "load"),
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    load = json.loads((tmp_path / "load" / "load.json").read_text())
    assert load["count"] >= 150 and load["errors"] == 0, load["by_status"]
    assert time_wait, "the first run left no TIME_WAIT socket on Ray's metrics port: nothing was tested"

    # what the client saw of the first run from its first answer on: answers, then 503 + Retry-After
    # while olsim tore down, then the port closed; never a 404 or another error
    statuses = [s for _, s, _ in client.seen]
    start = statuses.index(200)
    tail = statuses[start:]
    assert set(tail) <= {200, 503, 0}, sorted(set(tail))
    first_503 = tail.index(503)
    closed = tail.index(0)
    assert first_503 < closed and set(tail[first_503:closed]) <= {200, 503}
    assert all(s == 0 for s in tail[closed:])  # once closed, it stays closed
    assert all(r == "1" for _, s, r in client.seen if s == 503)


def test_a_failure_in_olsim_load_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """olsim load that cannot start its olsim (Ray's metrics port taken by a listener) says so in one
    line, and its cleanup does not add a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        r = _olsim(
            "load",
            "--mode",
            "open",
            "--duration",
            "1",
            "--ray-metrics-port",
            str(port),
            "--out",
            str(tmp_path),
        )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"Ray's metrics export port {port} is in use" in r.stderr


def test_several_strategies_run_in_turn_and_compare_with_a_quiet_terminal(tmp_path: Path) -> None:
    """`olsim run S --strategy naive replay`: one report per strategy, a comparison page, and on the
    terminal nothing from Ray (its start-up notices, its actors' and Serve's logs) without -v.

    S is the example plugin scenario, run from another folder: its package imports from the YAML's
    folder, and olsim, starting Ray itself, ships it to every worker as the job's ``py_modules``.
    """
    r = _olsim(
        "run",
        str(EXAMPLE),
        "--strategy",
        "naive",
        "replay",
        "--duration",
        "5",
        "--load-rps",
        "0",
        "--serve-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--ray-metrics-port",
        str(free_port()),
        "--report-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    noise = [
        line
        for line in r.stderr.splitlines()
        if not re.match(r"^(== (naive|replay) \([12] of 2\)|\[ *[\d.]+s\] task )", line)
    ]
    assert not noise, noise
    for name in ("naive", "replay"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["strategy"] == name and report["scenario"] == "rotated-digits"
        assert report["tasks"][0]["name"] == "rot0" and report["versions_published"] >= 2
        assert report["serving_started_at"] > report["started_at"]
    page = (tmp_path / "compare.html").read_text()
    assert (
        'src="naive/plots/accuracy-matrix.svg"' in page
        and 'src="replay/plots/accuracy-over-time.svg"' in page
    )
    table = r.stdout[r.stdout.index("strategy  ACC") :].splitlines()
    assert [row.split()[0] for row in table[1:3]] == ["naive", "replay"]
