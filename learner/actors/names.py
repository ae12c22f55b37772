"""Actors passed to other actors by name, not by handle.

A restartable actor whose constructor receives another actor's handle depends on the caller's
references to be rebuilt (Ray warns about it at creation, ray#53727); given the name instead, the
actor looks the other one up itself, also each time Ray restarts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActorName:
    """A named actor: ``ray.get_actor(name, namespace)``.

    >>> ActorName("olsim-registry-1", "olsim")
    ActorName(name='olsim-registry-1', namespace='olsim')
    """

    name: str
    namespace: str


def resolve(actor: Any) -> Any:
    """The handle of ``actor``: an :class:`ActorName` is looked up, a handle is returned as is."""
    if not isinstance(actor, ActorName):
        return actor
    import ray

    return ray.get_actor(actor.name, namespace=actor.namespace)
