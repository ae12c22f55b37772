"""The one error style of olsim's commands: a failure whose message is one line meant for users.

Every command-line failure is such an error (or becomes one) and ends the command with that line on
stderr and exit code 2; each part of deploy raises its own subclass.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; ``str(error)`` is one line saying what and, where known, what
    to do about it."""
