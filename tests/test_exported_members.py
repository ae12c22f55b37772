"""The public API at ``import olsim``: exactly these names, each one real, none loaded eagerly."""

from __future__ import annotations

import subprocess
import sys

import olsim

EXPORTED = [
    "ImportRef",
    "RunOptions",
    "RunReport",
    "Scenario",
    "Strategy",
    "TaskData",
    "__version__",
    "load_report",
    "load_scenario",
    "resolve",
    "run",
]


def test_all_is_the_public_api() -> None:
    assert sorted(olsim.__all__) == EXPORTED


def test_every_exported_name_resolves_and_names_itself() -> None:
    for name in olsim.__all__:
        value = getattr(olsim, name)
        if name != "__version__":
            assert value.__name__ == name, name
            assert value.__module__.startswith("olsim."), (name, value.__module__)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        olsim.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("olsim.nope resolved")


def test_import_olsim_loads_neither_torch_nor_ray() -> None:
    code = "import sys, olsim; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
