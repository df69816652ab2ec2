"""Trove database backups: their markers, which instances a selector takes, full or incremental.

Pure: no cloud, database or clock (``now`` is a parameter). Trove backups carry no
metadata, so stackback's markers travel in the backup's description (and a short
form in its name), written before the create call from what the run has already
recorded; :func:`read_markers` gives them back as the metadata the rest of
stackback reads (``find_artifacts``, the collector's ownership check).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from stackback.errors import InvalidInput
from stackback.policy import Backup, BackupStatus, Selector
from stackback.schedule import CronSchedule

DESCRIPTION_PREFIX = "stackback backup"
"""How a description stackback wrote begins; the markers follow as ``key=value`` words."""
DESCRIPTION_MAX = 512
"""Trove's ``backups.description`` column."""
BACKUP_NAME_MAX = 80
"""Names are kept short: the markers that matter are in the description."""

_MARKER_WORDS = {
    "backup": "stackback_backup",
    "run": "stackback_run",
    "policy": "stackback_policy",
    "target": "stackback_target",
    "label": "stackback_label",
}
_WORD = re.compile(r"(?P<key>[a-z]+)=(?P<value>\S*)")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

SELECTOR_KEYS = ("datastore", "datastore_version", "name")
"""What a database policy's ``--selector KEY=GLOB`` may name."""


def backup_name(instance_name: str, scheduled_for: datetime, backup_id: str) -> str:
    """``stackback-<instance>-<time>-<first 8 of the backup id>``, at most 80 characters."""
    suffix = f"-{scheduled_for:%Y%m%dT%H%MZ}-{backup_id[:8]}"
    room = BACKUP_NAME_MAX - len("stackback-") - len(suffix)
    return f"stackback-{instance_name[:room]}{suffix}"


def description(markers: Mapping[str, str], *, full: bool) -> str:
    """The description that carries a backup's markers (``read_markers`` reads it back)."""
    words = [DESCRIPTION_PREFIX, "full" if full else "incremental"]
    for word, key in _MARKER_WORDS.items():
        value = markers.get(key, "")
        words.append(f"{word}={value.replace(' ', '_')}")
    return " ".join(words)[:DESCRIPTION_MAX]


def read_markers(text: str | None) -> dict[str, str]:
    """The markers a description written by :func:`description` holds; ``{}`` for any other.

    A description that only looks like stackback's (no backup id, or one that is not
    a UUID) yields nothing: such a backup is foreign, never counted, never deleted.
    """
    if not text or not text.startswith(DESCRIPTION_PREFIX + " "):
        return {}
    found = {m["key"]: m["value"] for m in _WORD.finditer(text[len(DESCRIPTION_PREFIX) :])}
    if not _UUID.match(found.get("backup", "")) or not _UUID.match(found.get("run", "")):
        return {}
    markers = {key: found.get(word, "") for word, key in _MARKER_WORDS.items()}
    markers["stackback_created_by"] = "stackback"
    return markers


def check_selector(selector: Selector) -> Selector:
    """A database policy selects instances by ``datastore``, ``datastore_version`` or ``name``."""
    if selector.key not in SELECTOR_KEYS:
        raise InvalidInput(
            f"a database policy selects by {', '.join(SELECTOR_KEYS)} (a glob), "
            f"not {selector.key!r}",
            field="selector",
        )
    return selector


def selects(selector: Selector, *, name: str, datastore: str, version: str) -> bool:
    """Whether a Trove instance is one of a database selector's (the value is a glob)."""
    value = {"datastore": datastore, "datastore_version": version, "name": name}.get(selector.key)
    return value is not None and fnmatch.fnmatchcase(value, selector.value)


@dataclass(frozen=True)
class ChainRule:
    """When a database policy takes a full backup; incrementals between.

    ``full_every``: every Nth good backup of a chain is a full one (1: all full).
    ``full_cron``: a full once its cron has fired since the last good full. Both: a full
    when either asks for one. Neither: every backup is full.
    """

    full_every: int | None = None
    full_cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.full_every is not None and not 1 <= self.full_every <= 10_000:
            raise InvalidInput(
                f"--full-every needs a count from 1 to 10000, got {self.full_every}",
                field="full-every",
            )
        if self.full_cron is not None:
            CronSchedule(self.full_cron, self.timezone)


@dataclass(frozen=True)
class ChainChoice:
    """What the next backup of a target is: a full one, or an increment of ``parent``."""

    parent: Backup | None
    why: str

    @property
    def full(self) -> bool:
        return self.parent is None


def choose(rule: ChainRule, history: Sequence[Backup], now: datetime) -> ChainChoice:
    """Full or incremental for the next backup, from the target's backups of the policy.

    Only good (available) backups count: a failed full leaves the last good full as
    it was, so the next backup is full again. An incremental's parent is the newest
    good backup since the last good full (the chain's tip), never a user's backup:
    stackback names the parent itself.
    """
    good = sorted(
        (b for b in history if b.status is BackupStatus.AVAILABLE),
        key=lambda b: (b.created_at, b.id),
    )
    fulls = [b for b in good if b.parent_id is None]
    if not fulls:
        return ChainChoice(None, "full: no good full backup yet")
    last_full = fulls[-1]
    chain = [b for b in good if b.created_at >= last_full.created_at]
    tip = chain[-1]
    why: list[str] = []
    if rule.full_cron is not None:
        fire = CronSchedule(rule.full_cron, rule.timezone).next_after(last_full.created_at)
        if fire <= now:
            return ChainChoice(None, f"full: --full-cron fired at {fire:%Y-%m-%d %H:%M} UTC")
        why.append(f"next full at {fire:%Y-%m-%d %H:%M} UTC")
    elif rule.full_every is None:
        return ChainChoice(None, "full: every backup is full (no --full-every or --full-cron)")
    if rule.full_every is not None:
        if len(chain) >= rule.full_every:
            return ChainChoice(
                None, f"full: every {rule.full_every} backups ({len(chain)} in the chain)"
            )
        why.insert(0, f"{len(chain) + 1} of {rule.full_every}")
    return ChainChoice(tip, f"incremental on {tip.id} ({'; '.join(why)})")
