"""The one error style of olsim's commands: a failure whose message is one line meant for users.

Every command-line failure is such an error (or becomes one) and ends the command with that line on
stderr and exit code 2; each part of deploy raises its own subclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """A failure the user can act on; ``str(error)`` is one line saying what and, where known, what
    to do about it."""


def first_line(exc: BaseException) -> str:
    r"""The first line of ``exc``'s message (its repr when it has none): one line for a user.

    >>> first_line(RuntimeError("port taken\nTraceback ...")), first_line(KeyError())
    ('port taken', 'KeyError()')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def validation_line(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """The first error of a pydantic validation as ``where: message``; ``names`` renames field paths
    (``{"duration_s": "--duration"}``), other paths are written dotted.

    >>> from pydantic import BaseModel, Field, ValidationError
    >>> class M(BaseModel):
    ...     port: int = Field(ge=1)
    >>> try:
    ...     M(port=0)
    ... except ValidationError as exc:
    ...     print(validation_line(exc), "|", validation_line(exc, {"port": "--port"}))
    port: Input should be greater than or equal to 1 | --port: Input should be greater than or equal to 1
    """
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    where = (names or {}).get(path, path)
    return f"{where}: {err['msg']}" if where else str(err["msg"])
