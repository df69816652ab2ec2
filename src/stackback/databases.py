"""Trove database backups: their markers, and which instances a selector takes.

Pure: no cloud, database or clock (``now`` is a parameter). Trove backups carry no
metadata, so stackback's markers travel in the backup's description (and a short
form in its name), written before the create call from what the run has already
recorded; :func:`read_markers` gives them back as the metadata the rest of
stackback reads (``find_artifacts``, the collector's ownership check).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import datetime

from stackback.errors import InvalidInput
from stackback.policy import Selector

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


# Whether a backup is full or incremental is the rule every chained kind shares:
# ``stackback.chains.choose``.
