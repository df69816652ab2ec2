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

:func:`choose` decides whether the next backup of a chained kind is a full one (and of
which parent an increment is), for Cinder and Trove alike, from a :class:`ChainRule`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from stackback.errors import InvalidInput
from stackback.policy import Backup, BackupStatus, Policy
from stackback.schedule import cron_schedule

__all__ = [
    "FOREIGN_CHILD",
    "FOREIGN_PARENT",
    "FOR_THE_CHAIN",
    "FULL",
    "INCREMENTAL",
    "ChainChoice",
    "ChainRule",
    "ancestors",
    "by_id",
    "choose",
    "deletion_order",
    "foreign_blocked",
    "foreign_rooted",
    "is_full",
    "live_children",
]

FOR_THE_CHAIN = "for the chain"
"""The reason an ancestor of a kept incremental backup is kept."""
FOREIGN_PARENT = "its chain depends on a backup stackback does not know"
FOREIGN_CHILD = "a backup stackback did not make depends on it"
"""Recorded in a backup's ``error`` when the cloud refused its deletion for a child that is
not stackback's: retention holds it (and keeps its ancestors) from then on."""

_GONE = (BackupStatus.DELETED,)
_created_then_id = attrgetter("created_at", "id")
_parent_id = attrgetter("parent_id")


def _by_id(backups: Iterable[Backup] | Mapping[str, Backup]) -> Mapping[str, Backup]:
    if isinstance(backups, Mapping):
        return backups
    return {b.id: b for b in backups}


def by_id(backups: Iterable[Backup]) -> dict[str, Backup]:
    """``backups`` by id: pass it to :func:`ancestors` and :func:`foreign_rooted` when asking
    about many backups of one target (each call is then as long as the chain, not the target)."""
    return {b.id: b for b in backups}


def ancestors(backup: Backup, backups: Iterable[Backup] | Mapping[str, Backup]) -> list[Backup]:
    """The backups ``backup`` depends on, its parent first, as far as ``backups`` know them."""
    if backup.parent_id is None:
        return []
    known = _by_id(backups)
    found: list[Backup] = []
    seen = {backup.id}
    parent_id: str | None = backup.parent_id
    while parent_id is not None and parent_id not in seen and parent_id in known:
        seen.add(parent_id)
        parent = known[parent_id]
        found.append(parent)
        parent_id = parent.parent_id
    return found


def foreign_rooted(backup: Backup, backups: Iterable[Backup] | Mapping[str, Backup]) -> bool:
    """Whether ``backup``'s chain reaches a parent that is not one of ``backups``."""
    if backup.parent_id is None:
        return False
    known = _by_id(backups)
    chain = [backup, *ancestors(backup, known)]
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
    O(n log n); with no chain among them, one sort by (created, id).
    """
    if set(map(_parent_id, backups)) <= {None}:
        return sorted(backups, key=_created_then_id)
    known = by_id(backups)

    def key(b: Backup) -> tuple[datetime, str, float, str]:
        chain = ancestors(b, known)
        top = chain[-1] if chain else b
        return (top.created_at, top.id, -b.created_at.timestamp(), b.id)

    return sorted(backups, key=key)


@dataclass(frozen=True)
class ChainRule:
    """When a chained policy (Cinder volume backups, Trove database backups) takes a full.

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
            cron_schedule(self.full_cron, self.timezone)

    @classmethod
    def of(cls, policy: Policy | None) -> ChainRule:
        """A policy's rule (no policy: every backup full)."""
        if policy is None:
            return cls()
        return cls(policy.full_every, policy.full_cron, policy.timezone)


@dataclass(frozen=True)
class ChainChoice:
    """What the next backup of a target is: a full one, or an increment of ``parent``.

    ``parent`` is the chain's tip (the newest good backup). Trove is given it; Cinder
    picks the parent itself, and stackback reads back the one it picked.
    """

    parent: Backup | None
    why: str

    @property
    def full(self) -> bool:
        return self.parent is None


def choose(rule: ChainRule, history: Sequence[Backup], now: datetime) -> ChainChoice:
    """Full or incremental for the next backup, from the target's backups of the policy.

    ``history`` holds the earlier backups of the same target and policy, any order.
    A full one is chosen when the rule asks for no chain, when no good backup is there
    to build on, when the newest finished one was a full that failed (the chain has no
    new start), when the newest good backup's chain does not start at a good full of
    stackback's, when ``full_cron`` fired since the last good full, or when the chain
    already holds ``full_every`` backups. Otherwise an increment of the chain's tip
    (never a user's backup).
    """
    if rule.full_every is None and rule.full_cron is None:
        return ChainChoice(None, "full: every backup is full (no --full-every or --full-cron)")
    finished = sorted(
        (b for b in history if b.status in (BackupStatus.AVAILABLE, BackupStatus.FAILED)),
        key=lambda b: (b.created_at, b.id),
    )
    good = [b for b in finished if b.status is BackupStatus.AVAILABLE]
    if not good:
        return ChainChoice(None, "full: no good full backup yet")
    if finished[-1].status is BackupStatus.FAILED and is_full(finished[-1]):
        return ChainChoice(None, f"full: the last full ({finished[-1].id}) failed")
    tip = good[-1]
    chain = [tip, *ancestors(tip, history)]
    root = chain[-1]
    if not is_full(root) or root.status is not BackupStatus.AVAILABLE:
        return ChainChoice(None, "full: the newest good backup's chain has no good full")
    why: list[str] = []
    if rule.full_cron is not None:
        fulls = [b for b in good if is_full(b)]
        fire = cron_schedule(rule.full_cron, rule.timezone).next_after(fulls[-1].created_at)
        if fire <= now:
            return ChainChoice(None, f"full: --full-cron fired at {fire:%Y-%m-%d %H:%M} UTC")
        why.append(f"next full at {fire:%Y-%m-%d %H:%M} UTC")
    if rule.full_every is not None:
        if len(chain) >= rule.full_every:
            return ChainChoice(
                None, f"full: every {rule.full_every} backups ({len(chain)} in the chain)"
            )
        why.insert(0, f"{len(chain) + 1} of {rule.full_every}")
    return ChainChoice(tip, f"incremental on {tip.id} ({'; '.join(why)})")


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
