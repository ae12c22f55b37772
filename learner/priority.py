"""CPU priority for background work (gate checks, evaluation) so request handling goes first."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 10


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Raise the calling thread's nice value (Linux schedules threads individually).

    Returns False where that is not possible (another OS, or not permitted); work then runs at
    normal priority, which is only slower for requests, never wrong.

    >>> isinstance(lower_thread_priority(0), bool)
    True
    """
    if not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
    except OSError as exc:
        log.debug("cannot lower thread priority error=%r", exc)
        return False
    return True
