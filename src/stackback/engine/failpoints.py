"""Failpoints: crash the process at a named step boundary, for crash-recovery tests.

Set ``STACKBACK_FAILPOINTS`` to a comma-separated list of names; the process
kills itself with SIGKILL (like ``kill -9``) when it reaches one of them.
A name may carry ``@N`` to fire only on its Nth hit. Unset, this costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def _armed() -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in os.environ.get("STACKBACK_FAILPOINTS", "").split(","):
        name, _, nth = item.strip().partition("@")
        if name:
            armed[name] = int(nth) if nth.isdigit() else 1
    return armed


def failpoint(name: str) -> None:
    """Die here, as abruptly as ``kill -9``, if this failpoint is armed."""
    if "STACKBACK_FAILPOINTS" not in os.environ:
        return
    armed = _armed()
    if name in armed:
        _hits[name] += 1
        if _hits[name] == armed[name]:
            os.kill(os.getpid(), signal.SIGKILL)
