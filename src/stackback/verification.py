"""Verification of backups: pure values and rules (no I/O, no clock).

A verification restores a backup as a throwaway server, waits for it to be
ACTIVE, runs :class:`VerifyChecks` on it, records a :class:`Verification` on the
backup and removes everything it made. A policy may verify on its own cron
(:class:`VerifySettings`); :func:`pick_backup` says which backup of a target an
occurrence verifies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from stackback.errors import InvalidInput

VERIFY_PREFIX = "verify-"
PICK_NEWEST = "newest"
PICK_RANDOM_MAX = 1000
_RANDOM_RE = re.compile(r"^random-of-(?P<n>[0-9]{1,4})$")

T = TypeVar("T")


class VerifyResult(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class VerifyChecks:
    """What must hold of the restored server, beyond being ACTIVE."""

    console_contains: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise InvalidInput("--port must be between 1 and 65535", field="port")
        if self.console_contains is not None and not self.console_contains.strip():
            raise InvalidInput("--console-contains needs a text, not an empty one")

    def to_dict(self) -> dict[str, Any]:
        return {"console_contains": self.console_contains, "port": self.port}

    @classmethod
    def from_dict(cls, data: Any) -> VerifyChecks:
        return cls(console_contains=data.get("console_contains"), port=data.get("port"))


@dataclass(frozen=True)
class Verification:
    """The outcome of a backup's last verification, as recorded on the backup."""

    result: VerifyResult
    at: datetime
    reason: str | None = None
    active_seconds: float | None = None
    """How long the restore took to ACTIVE (the measured restore time); None if never."""
    restore_id: str | None = None


@dataclass(frozen=True)
class TargetVerification:
    """The newest verification of one target's backups of one policy."""

    backup_id: str
    target: str
    target_name: str | None
    policy_id: str
    verification: Verification


@dataclass(frozen=True)
class VerifySettings:
    """A policy's verification schedule: its cron and what the throwaway server gets."""

    cron: str
    flavor: str | None = None
    network: str | None = None
    """The network the throwaway server joins; None: no network at all."""
    pick: str = PICK_NEWEST

    def __post_init__(self) -> None:
        parse_pick(self.pick)


def parse_pick(text: str) -> int:
    """How many of a target's newest good backups an occurrence picks among
    (``newest``: 1; ``random-of-N``: N)."""
    if text == PICK_NEWEST:
        return 1
    match = _RANDOM_RE.match(text)
    if match is None or not 1 <= int(match["n"]) <= PICK_RANDOM_MAX:
        raise InvalidInput(
            f"--verify-pick must be 'newest' or 'random-of-N' (N from 1 to {PICK_RANDOM_MAX}),"
            f" not {text!r}",
            field="verify-pick",
        )
    return int(match["n"])


def pick_backup(newest_first: Sequence[T], pick: str, key: str) -> T | None:
    """The backup an occurrence verifies: the newest, or one of the newest N chosen by
    ``key`` (the policy, target and occurrence), the same every time it is asked."""
    candidates = newest_first[: parse_pick(pick)]
    if not candidates:
        return None
    digest = hashlib.sha256(key.encode()).digest()
    return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]


def verify_name(backup_id: str, now: datetime) -> str:
    """The throwaway server's name: recognisable, and whose backup and when."""
    return f"{VERIFY_PREFIX}{backup_id[:8]}-{now:%Y%m%d%H%M%S}"
