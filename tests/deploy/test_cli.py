"""CLI errors: one line, exit code 2, nothing started. Most cases call the CLI's ``main`` in this
process (each argument is checked before anything starts or imports Ray); the rest run the real
console script in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from olsim.deploy.cli import main
from olsim.deploy.scenario.spec import builtin_names
from olsim.learner.strategies import STRATEGIES


def _olsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "olsim.deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


GE = "Input should be greater than or equal to"  # pydantic's words: the models validate the flags


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["run", "no-such-scenario"],
            "valid: " + ", ".join(builtin_names()),
        ),
        (["run", "split-digits", "--strategy", "nope"], "valid: " + ", ".join(sorted(STRATEGIES))),
        (["run", "split-digits", "--duration", "-1"], "--duration: Input should be greater than 0"),
        (["run", "split-digits", "--seed", "x"], "Invalid value for '--seed': 'x' is not a valid integer"),
        (["run", "split-digits", "--seed", "-1"], f"--seed: {GE} 0"),
        (["run", "split-digits", "--publish-every", "0"], f"--publish-every: {GE} 1"),
        (["bench", "forgetting", "--strategies", "nope"], "unknown strategy 'nope'"),
        (["run", "split-digits", "--gate", "maybe"], "'maybe' is not one of 'on', 'off'"),
        (
            ["run", "split-digits", "--forgetting-budget", "1.5"],
            "--forgetting-budget: Input should be less than or equal to 1",
        ),
        (["run", "split-digits", "--rollback-floor", "-0.1"], f"--rollback-floor: {GE} 0"),
        (["bench", "swap", "--rounds", "0"], "'--rounds': 0 is not in the range x>=1"),
        (["bench", "swap", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["run", "split-digits", "--prometheus-port", "0"], f"--prometheus-port: {GE} 1"),
        (["run", "split-digits", "--ray-metrics-port", "-5"], f"--ray-metrics-port: {GE} 0"),
        (["load", "--url", "http://10.1.2.3:8000"], "loopback only, not '10.1.2.3'"),
        (["load", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["load", "--users", "0"], f"--users: {GE} 1"),
        (["load", "--batch-share", "2"], "--batch-share: Input should be less than or equal to 1"),
        (["load", "--mode", "sideways"], "'sideways' is not one of 'closed', 'open'"),
        (["bench", "serve", "--clients", "0"], "'--clients': 0 is not in the range x>=1"),
        (["bench", "serve", "--sizes", "1", "0"], "'--sizes': 0 is not in the range x>=1"),
        (
            ["load", "--url", "http://127.0.0.1:8000", "--scenario", "x"],
            "--url and --scenario exclude each other",
        ),
        (["run", "split-digits", "--scrape-interval", "0.1"], f"--scrape-interval: {GE} 0.5"),
        (
            ["run", "split-digits", "--prometheus-port", "70000"],
            "--prometheus-port: Input should be less than",
        ),
        (["run", "split-digits", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["bench", "learner", "--batches", "0"], "'--batches': 0 is not in the range x>=1"),
        (["bench", "scale", "--replicas", "0"], "'--replicas': 0 is not in the range x>=1"),
        (["report"], "Missing argument 'DIR'"),
        (["run"], "Missing argument 'SCENARIO'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["run", "split-digits", "--nope"], "No such option '--nope'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--report-dir", str(tmp_path / "out")] if args[:1] == ["run"] and len(args) > 1 else []
    assert main([*args, *out]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_the_console_script_reports_a_bad_argument_the_same_way(tmp_path: Path) -> None:
    r = _olsim("run", "split-digits", "--seed", "-1", "--report-dir", str(tmp_path / "out"))
    assert (
        r.returncode == 2 and r.stderr == "olsim: error: --seed: Input should be greater than or equal to 0\n"
    )
    assert not (tmp_path / "out").exists()


def test_invalid_yaml_file_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nstream: {rate: -3}\n")
    r = _olsim("run", str(p))
    assert r.returncode == 2
    assert "stream.rate" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_prometheus_flag_without_the_binary_exits_2_before_starting(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "olsim.deploy.cli",
            "run",
            "split-digits",
            "--prometheus",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path)},  # nothing on PATH: no prometheus
    )
    assert r.returncode == 2
    assert r.stderr.startswith("olsim: error: --prometheus: `prometheus` not found on PATH")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "report.json").exists()


def test_ray_metrics_port_in_use_is_named_before_ray_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = _olsim("run", "split-digits", "--ray-metrics-port", str(port), "--report-dir", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"Ray's metrics export port {port} is in use" in r.stderr and "--ray-metrics-port" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA device")
def test_device_cuda_without_a_gpu_exits_2_before_starting(tmp_path: Path) -> None:
    r = _olsim("run", "split-digits", "--device", "cuda", "--report-dir", str(tmp_path / "out"))
    assert r.returncode == 2 and "no CUDA device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_help_answers_without_loading_torch_or_ray() -> None:
    code = (
        "import sys\n"
        "from olsim.deploy.cli import main\n"
        "assert main(['--help']) == 0\n"
        "print(sorted(m for m in ('torch', 'ray', 'numpy') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "Commands:" in r.stdout and r.stdout.strip().endswith("[]")


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["load"],
        ["report"],
        ["bench"],
        *(
            ["bench", b]
            for b in ("forgetting", "knn-index", "learner", "reliability", "scale", "serve", "swap")
        ),
    ],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: olsim {' '.join(command)}")


def test_olsim_alone_prints_its_help_and_exits_2() -> None:
    r = _olsim()
    assert r.returncode == 2 and "Commands:" in r.stdout
