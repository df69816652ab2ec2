"""Backup chains: incremental backups and the backups they depend on.

Pure core. A backup's ``parent_id`` names the stackback backup it is an increment of
(Cinder incremental volume backups, Trove incremental database backups); a full
backup has none. The rules retention and deletion follow over a chain:

- a kept backup keeps every ancestor (:func:`ancestors`, kept "for the chain");
- a backup is deleted only once no live backup depends on it (:func:`live_children`),
  so a chain is forgotten newest first (:func:`deletion_order`);
- a backup whose chain reaches a parent stackback does not know (recorded, but not one
  of the target's backups) is held: something stackback did not make may depend on
  the same chain (:func:`foreign_rooted`);
- a backup the cloud would not delete because a backup stackback did not make depends
  on it is held, and so are its ancestors (:func:`foreign_blocked`).

:func:`wants_full` decides whether the next backup of a chained kind is a full one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from stackback.policy import Backup, BackupStatus

__all__ = [
    "FOREIGN_CHILD",
    "FOREIGN_PARENT",
    "FOR_THE_CHAIN",
    "FULL",
    "INCREMENTAL",
    "ancestors",
    "deletion_order",
    "foreign_blocked",
    "foreign_rooted",
    "is_full",
    "live_children",
    "wants_full",
]

FOR_THE_CHAIN = "for the chain"
"""The reason an ancestor of a kept incremental backup is kept."""
FOREIGN_PARENT = "its chain depends on a backup stackback does not know"
FOREIGN_CHILD = "a backup stackback did not make depends on it"
"""Recorded in a backup's ``error`` when the cloud refused its deletion for a child that is
not stackback's: retention holds it (and keeps its ancestors) from then on."""

_GONE = (BackupStatus.DELETED,)


def _by_id(backups: Iterable[Backup]) -> dict[str, Backup]:
    return {b.id: b for b in backups}


def ancestors(backup: Backup, backups: Iterable[Backup]) -> list[Backup]:
    """The backups ``backup`` depends on, its parent first, as far as ``backups`` know them."""
    known = _by_id(backups)
    found: list[Backup] = []
    seen = {backup.id}
    parent_id = backup.parent_id
    while parent_id is not None and parent_id not in seen and parent_id in known:
        seen.add(parent_id)
        parent = known[parent_id]
        found.append(parent)
        parent_id = parent.parent_id
    return found


def foreign_rooted(backup: Backup, backups: Iterable[Backup]) -> bool:
    """Whether ``backup``'s chain reaches a parent that is not one of ``backups``."""
    known = _by_id(backups)
    chain = [backup, *ancestors(backup, known.values())]
    root_parent = chain[-1].parent_id
    return root_parent is not None and root_parent not in known


def foreign_blocked(backup: Backup) -> bool:
    """Whether the cloud refused to delete ``backup`` for a child stackback did not make."""
    return backup.error is not None and FOREIGN_CHILD in backup.error


def live_children(backup: Backup, backups: Iterable[Backup]) -> list[Backup]:
    """Backups (not deleted) that are increments of ``backup``, oldest first."""
    children = [
        b
        for b in backups
        if b.parent_id == backup.id and b.id != backup.id and b.status not in _GONE
    ]
    return sorted(children, key=lambda b: (b.created_at, b.id))


def deletion_order(backups: Sequence[Backup]) -> list[Backup]:
    """``backups`` in an order that deletes every child before its parent.

    Backups outside any chain keep their oldest-first order; a chain's members come
    newest first (a child is always newer than its parent), at the place of its oldest.
    """
    known = _by_id(backups)

    def root(b: Backup) -> Backup:
        chain = ancestors(b, known.values())
        return chain[-1] if chain else b

    def key(b: Backup) -> tuple[datetime, str, float, str]:
        top = root(b)
        return (top.created_at, top.id, -b.created_at.timestamp(), b.id)

    return sorted(backups, key=key)


def wants_full(
    history: Sequence[Backup], *, full_every: int | None, full_due: bool = False
) -> bool:
    """Whether the next backup of a chained kind must be a full one.

    ``history`` holds the earlier backups of the same target and policy, any order.
    A full one is wanted when no good backup is there to build on, when the newest
    finished one was a full that failed (the chain has no new start), when
    ``full_due`` (the policy's own full-backup schedule fired), or when the chain of
    the newest good backup already holds ``full_every`` backups.
    """
    if full_due:
        return True
    finished = sorted(
        (b for b in history if b.status in (BackupStatus.AVAILABLE, BackupStatus.FAILED)),
        key=lambda b: (b.created_at, b.id),
    )
    if not finished:
        return True
    newest = finished[-1]
    if newest.status is BackupStatus.FAILED and is_full(newest):
        return True
    good = [b for b in finished if b.status is BackupStatus.AVAILABLE]
    if not good:
        return True
    if full_every is None:
        return False
    chain_length = 1 + len(ancestors(good[-1], history))
    return chain_length >= full_every


FULL = "full"
INCREMENTAL = "incremental"


def is_full(backup: Backup) -> bool:
    """Whether a backup of a chained kind was (or was meant as) a full one.

    Recorded in ``consistency_detail`` when it is asked for (``full`` or
    ``incremental``); a backup with a parent is an incremental one whatever it says.
    """
    if backup.parent_id is not None:
        return False
    return backup.consistency_detail != INCREMENTAL
