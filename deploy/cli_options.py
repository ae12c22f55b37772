"""Command-line options made from the pydantic models the code uses: one default, one validation.

:func:`field_option` turns a model field into a click option (its default, its description as the
help, its ``Literal`` values as choices); :func:`validated` builds the model from the options given
and turns a validation error into one line that names the flag.

>>> import click
>>> from pydantic import BaseModel, Field
>>> class Opts(BaseModel):
...     port: int = Field(8000, ge=1, le=65535, description="HTTP port")
>>> @click.command()
... @field_option(Opts, "port", "--port")
... def serve(port: int) -> None:
...     print(validated(Opts, {"port": port}, {"port": "--port"}))
>>> serve.main(["--port", "9000"], standalone_mode=False)
port=9000
>>> try:
...     serve.main(["--port", "0"], standalone_mode=False)
... except UserError as exc:
...     print(exc)
--port: Input should be greater than or equal to 1
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic import BaseModel, ValidationError

from olsim.deploy.errors import UserError, validation_line

M = TypeVar("M", bound=BaseModel)
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is a flag) for a field annotation; ``X | None`` is X."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _click_type(inner[0])
    if get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in args]), False
    if annotation is bool:
        return click.BOOL, True
    if annotation is Path:
        return click.Path(path_type=Path), False
    return {int: click.INT, float: click.FLOAT}.get(annotation, click.STRING), False


def field_option(
    model: type[BaseModel], field: str, *decls: str, default: Any = ..., help: str | None = None, **kw: Any
) -> Decorator:
    """A click option for ``model.field``: the model's default (``default=None`` leaves it to the
    model, e.g. "the scenario's"), its description as help (``help`` overrides), its type."""
    info = model.model_fields[field]
    ctype, flag = _click_type(info.annotation)
    value = info.get_default(call_default_factory=True) if default is ... else default
    text = help if help is not None else (info.description or "")
    opts: dict[str, Any] = {"help": text, "default": value, "show_default": value is not None and not flag}
    if flag:
        opts["is_flag"] = True
        opts["default"] = bool(value)
    else:
        opts["type"] = ctype
    return click.option(*decls, **{**opts, **kw})


def validated(model: type[M], values: Mapping[str, Any], flags: Mapping[str, str]) -> M:
    """``model(**values)``; a validation error becomes a UserError naming the flag of the field."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise UserError(validation_line(exc, flags)) from None


def by_field(flags: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The value of each field's flag: ``names`` maps field -> flag, ``flags`` holds click's values
    (keyed by the flag's parameter name).

    >>> by_field({"duration": 5.0, "report_dir": "out"}, {"duration_s": "--duration", "out": "--report-dir"})
    {'duration_s': 5.0, 'out': 'out'}
    """
    return {field: flags[flag.removeprefix("--").replace("-", "_")] for field, flag in names.items()}


def ingress_option(multiple: bool = False) -> Decorator:
    """``--ingress``: how HTTP reaches the replicas of a Ray olsim starts."""
    from olsim.deploy.run.ingress import DEFAULT_INGRESS, INGRESS_MODES

    if multiple:
        return click.option(
            "--ingress",
            type=click.Choice(INGRESS_MODES),
            multiple=True,
            default=INGRESS_MODES,
            help="ingress modes to measure, each with its own Ray (repeat the flag; default: all)",
        )
    return click.option(
        "--ingress",
        type=click.Choice(INGRESS_MODES),
        default=DEFAULT_INGRESS,
        show_default=True,
        help="how HTTP reaches the replicas when olsim starts Ray: haproxy (Ray Serve's HAProxy straight "
        "to each replica's port) or proxy (Serve's Python proxy)",
    )


def prepare_local_ray(ingress: str | None, address: str | None = None) -> None:
    """Before anything imports ray: a Ray olsim starts binds to loopback and serves HTTP through
    ``ingress`` (Ray's processes inherit both). Joining a cluster (``address``) changes neither."""
    from olsim.deploy.run.cluster import keep_ray_on_loopback
    from olsim.deploy.run.ingress import use_ingress

    if address:
        return
    keep_ray_on_loopback()
    if ingress is not None:
        use_ingress(ingress)


def _is_value(token: str) -> bool:
    """A token that is a value, not a flag (``-1`` and ``-0.5`` are values)."""
    if not token.startswith("-") or token == "-":
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


class Variadic(click.Command):
    """A command whose ``multiple=True`` options also take several values after one flag, as in
    ``--sizes 1 256``; the flag with no value after it gives an empty list (``--overload``: none).

    >>> @click.command(cls=Variadic)
    ... @many("--sizes", type=int, default=[1])
    ... @click.option("--seed", type=int, default=0)
    ... def bench(sizes: tuple[int, ...], seed: int) -> None:
    ...     print(sizes, seed)
    >>> bench.main(["--sizes", "1", "256", "--seed", "-1"], standalone_mode=False)
    (1, 256) -1
    >>> bench.main(["--sizes", "--seed", "2"], standalone_mode=False)
    () 2
    >>> bench.main([], standalone_mode=False)
    (1,) 0
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        many = {o for p in self.params if isinstance(p, click.Option) and p.multiple for o in p.opts}
        out: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            i += 1
            if token == "--":
                out += args[i - 1 :]
                break
            if token not in many:
                out.append(token)
                continue
            values = []
            while i < len(args) and _is_value(args[i]):
                values.append(args[i])
                i += 1
            out += [f"{token}={v}" for v in values] if values else [f"{token}="]
        return super().parse_args(ctx, out)


def drop_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for :class:`Variadic` options: the bare flag (one empty value) means no values."""
    if isinstance(value, tuple):
        return tuple(v for v in value if v != "")
    return value


class Empty(click.ParamType):
    """``inner``, or the empty string as is (what :class:`Variadic` sends for a bare flag)."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if value == "" else self.inner.convert(value, param, ctx)


def many(*decls: str, type: Any = click.STRING, default: Any = (), **kw: Any) -> Decorator:
    """An option taking one or more values after its flag (a bare flag: none); see :class:`Variadic`."""
    return click.option(
        *decls,
        type=Empty(click.types.convert_type(type)),
        multiple=True,
        default=default,
        callback=drop_empty,
        show_default=True,
        **kw,
    )
