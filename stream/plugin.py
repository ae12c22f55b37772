"""Users' code named by import path: ``{import: "pkg.mod:attr", args: {...}}``.

A scenario names a model factory, a task source or a strategy class this way; every process that
needs the code (the learner, the gate, the evaluator, Serve's replicas) imports it from the path, and
the arguments travel as JSON values, so nothing is ever pickled.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import site
import sysconfig
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(ValueError):
    """Plugin code that cannot be found, built or used; the message is one line meant for users."""


def import_path(obj: Any) -> str:
    """The ``module:qualname`` path another process can import ``obj`` from.

    >>> import_path(PluginError)
    'olsim.stream.plugin:PluginError'
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise PluginError(f"{obj!r} has no import path: give a function or class defined in a module")
    if module == "__main__":
        raise PluginError(
            f"{qualname} is defined in __main__, which Ray's workers cannot import: move it into a module"
        )
    if "<" in qualname:  # <locals>, <lambda>
        raise PluginError(f"{module}:{qualname} is not importable: define it at a module's top level")
    return f"{module}:{qualname}"


def check_path(value: object) -> str:
    if not isinstance(value, str):
        value = import_path(value)
    if not _PATH.match(value):
        raise ValueError(f"{value!r} is not an import path of the form 'package.module:attribute'")
    return value


ImportPath = Annotated[str, BeforeValidator(check_path)]
"""A pydantic field type: ``'package.module:attribute'``, or the function or class itself (its path)."""


class ImportRef(BaseModel):
    """Code by import path, called with ``args`` (JSON values) as keyword arguments.

    ``import`` also takes the function or class itself, when it is defined in an importable module.

    >>> ImportRef.model_validate({"import": "olsim.stream.plugin:import_path"}).target
    'olsim.stream.plugin:import_path'
    >>> ImportRef.model_validate({"import": import_path, "args": {"k": 1}}).model_dump()
    {'import': 'olsim.stream.plugin:import_path', 'args': {'k': 1}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    target: ImportPath = Field(alias="import", description="'package.module:attribute'")
    args: dict[str, JsonValue] = Field(default_factory=dict, description="keyword arguments")

    def load(self, what: str) -> Any:
        """The object at :attr:`target`; ``what`` names it in errors (e.g. ``learner.model``)."""
        return load(self.target, what)


def load(target: str, what: str) -> Any:
    """Import ``module:attr``; a :class:`PluginError` naming ``what`` if that fails.

    >>> load("olsim.stream.plugin:ImportRef", "x") is ImportRef
    True
    >>> load("olsim.stream.plugin:nope", "learner.model")
    Traceback (most recent call last):
    ...
    olsim.stream.plugin.PluginError: learner.model: module 'olsim.stream.plugin' has no attribute 'nope'
    """
    module_name, _, attr = check_path(target).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PluginError(f"{what}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:
        raise PluginError(f"{what}: importing {module_name!r} raised {_brief(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def import_kind(data: Any) -> Any:
    """A ``{import: ..., args: ...}`` mapping (or an :class:`ImportRef`) without ``kind`` as ``kind:
    import``: the before-validator of configs that are either built-in (by ``kind``) or users' code."""
    if isinstance(data, ImportRef):
        return {"kind": "import", "import": data.target, "args": data.args}
    if isinstance(data, dict) and data.get("import") is not None and "kind" not in data:
        return {**data, "kind": "import"}
    return data


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def call(ref: ImportRef, what: str, **kwargs: Any) -> Any:
    """Load ``ref`` and call it with ``kwargs`` and its ``args``; whatever it raises becomes a
    :class:`PluginError` that says what was called."""
    fn = ref.load(what)
    if not callable(fn):
        raise PluginError(f"{what}: {ref.target} is a {type(fn).__name__}, not a function or class")
    try:
        return fn(**kwargs, **ref.args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in {**kwargs, **ref.args}.items())
        raise PluginError(f"{what}: {ref.target}({shown}) raised {_brief(exc)}") from None


def _installed_roots() -> list[Path]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots.update(site.getsitepackages())
    return [Path(r).resolve() for r in roots]


def source_path(target: str) -> Path | None:
    """The local source of ``target``'s top-level package (a directory, or a single ``.py`` file), or
    None when it is installed (in site-packages or the standard library) or is olsim itself: installed
    code must be installed on every node; local source can travel with the run.

    >>> source_path("olsim.stream.plugin:load") is None
    True
    """
    top = target.partition(":")[0].split(".")[0]
    if top == "olsim":
        return None
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise PluginError(f"cannot import {top!r}")
    if spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin and spec.origin.endswith(".py"):
        path = Path(spec.origin)
    else:
        return None  # built-in or compiled: nothing to ship
    path = path.resolve()
    if any(path.is_relative_to(root) for root in _installed_roots()):
        return None
    return path
