"""The one error style of olsim's commands: a failure whose message is one line meant for users.

Every command-line failure is such an error (or becomes one) and ends the command with that line on
stderr and exit code 2; each part of deploy raises its own subclass.
"""

from __future__ import annotations


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
