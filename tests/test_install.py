"""``pip install .`` (not editable) into a fresh venv installs one namespace, ``olsim``, its data files
and the ``olsim`` console script; the folders' short names (``deploy``, ``stream``, ...) do not exist
there.

The wheel is built from a copy of this checkout (``pip install .`` builds the same wheel first). The
fresh venv sees the test venv's packages (torch, Ray, ...) through a path entry, without running that
venv's ``.pth`` hooks, so this checkout's editable install stays invisible to it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", "out", "build", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis")


def _run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_wheel_installs_only_the_olsim_namespace(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(*SKIP))
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp_path / "dist",
        src,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("olsim-*.whl")

    venv = tmp_path / "venv"
    made = _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    site = Path(
        _run(
            py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    before = set(p.name for p in site.iterdir())
    inst = _run(venv / "bin" / "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    assert inst.returncode == 0, inst.stderr[-2000:]
    added = {p.name for p in site.iterdir()} - before
    assert added == {"olsim", wheel.name.split("-py3")[0] + ".dist-info"}, added
    # the dependencies, as a plain path entry after the venv's own site-packages
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    probe = (
        "import importlib.util, olsim\n"
        "from olsim.deploy.scenario.spec import builtin_names, load_scenario\n"
        f"assert olsim.__file__.startswith({str(site)!r}), olsim.__file__\n"
        "assert load_scenario('split-digits').name == 'split-digits' and 'replica-kill' in builtin_names()\n"
        "from olsim.deploy.observability.prometheus_server import shipped\n"
        "assert shipped('prometheus.yml').is_file() and shipped('rules', 'olsim.rules.yml').is_file()\n"
        "print([m for m in ('deploy', 'stream', 'learner', 'serving') if importlib.util.find_spec(m)])\n"
    )
    out = _run(py, "-c", probe, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    for data in ("deploy/load/locustfile.py", "deploy/observability/grafana/dashboards/drift.json"):
        assert (site / "olsim" / data).is_file(), data

    helped = _run(venv / "bin" / "olsim", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "run" in helped.stdout, helped.stderr[-2000:]
