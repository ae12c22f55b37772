"""The import graph points one way: stream <- learner <- serving, and deploy wires them.

- ``olsim.stream`` imports no other olsim package;
- ``olsim.learner`` imports ``olsim.stream``; only ``olsim.learner.actors`` runs in Ray (ruff's
  banned-api keeps ``ray`` out of the rest of learner/ and of stream/);
- ``olsim.serving`` imports the pure-torch parts of ``olsim.learner``, never its actors or the stream;
- every import of the project names it ``olsim.…``: the folders install only under that namespace.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "learner", "serving", "deploy")

# importer prefix -> olsim packages it may import (besides its own); checked longest prefix first
ALLOWED: dict[str, tuple[str, ...]] = {
    "olsim.stream": (),
    "olsim.learner": ("olsim.stream",),
    "olsim.learner.actors": ("olsim.stream", "olsim.learner"),
    "olsim.serving": ("olsim.learner",),
    "olsim.deploy": ("olsim.stream", "olsim.learner", "olsim.serving"),
}
FORBIDDEN: dict[str, tuple[str, ...]] = {  # sub-packages closed to importers that may use the parent
    "olsim.learner": ("olsim.learner.actors",),
    "olsim.serving": ("olsim.learner.actors",),
}


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("olsim", *(parts[:-1] if parts[-1] == "__init__" else parts)))
            out.append((name, path))
    return out


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement names (also inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _rule(importer: str) -> str:
    return max((p for p in ALLOWED if _within(importer, p)), key=len)


def violations(importer: str, imported: str) -> str | None:
    top = imported.split(".")[0]
    if top in PACKAGES:
        return f"imports {imported!r}: name it olsim.{imported}"
    if top != "olsim" or imported == "olsim":
        return None
    rule = _rule(importer)
    for closed in FORBIDDEN.get(rule, ()):
        if _within(imported, closed) and not _within(importer, closed):
            return f"imports {imported!r}, which runs in Ray"
    if _within(imported, rule):
        return None
    if not any(_within(imported, a) for a in ALLOWED[rule]):
        may = ", ".join(ALLOWED[rule]) or "nothing else of olsim"
        return f"imports {imported!r} ({rule} may import {may})"
    return None


def test_every_package_folder_is_scanned() -> None:
    names = {name for name, _ in modules()}
    assert {"olsim.stream.tasks", "olsim.learner.actors.learner", "olsim.serving.app"} <= names
    assert {"olsim.deploy.cli", "olsim.deploy.run.driver", "olsim.deploy.bench.serve"} <= names


def test_imports_point_one_way() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for name, path in modules()
        for line, imported in imports(path)
        if (why := violations(name, imported))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("olsim.stream.events", "olsim.learner.model", False),
        ("olsim.learner.loop", "olsim.stream.tasks", True),
        ("olsim.learner.loop", "olsim.learner.actors.telemetry", False),
        ("olsim.learner.loop", "olsim.serving.registry", False),
        ("olsim.learner.actors.learner", "olsim.learner.loop", True),
        ("olsim.serving.registry", "olsim.stream.spec", False),
        ("olsim.serving.app", "olsim.learner.actors.telemetry", False),
        ("olsim.serving.app", "olsim.deploy.run.stack", False),
        ("olsim.deploy.cli", "olsim.serving.app", True),
        ("olsim.deploy.cli", "deploy.run.driver", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, ok: bool) -> None:
    assert (violations(importer, imported) is None) is ok
