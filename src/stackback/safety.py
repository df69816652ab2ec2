"""The safety rules: what a rotation may forget, and whether a backup may be deleted.

Pure core, as restic keeps ``ApplyPolicy``: two functions over plain values,
no I/O, no clock. The store runs them with the target's backups locked
(``Store.decide_for_target``) and writes the changes they return; every path that
deletes goes through them: a run's rotation, ``backup delete``, the collector's
last check before a cloud call, and ``retention preview`` (which writes nothing).

- :func:`plan_rotation` applies a retention policy to one target: protected
  backups are outside retention (never counted, never forgotten); the newest good
  backup in scope and the run's own new one are never forgotten; nothing is
  forgotten unless the run's own backup is available; at most ``budget`` backups
  are forgotten per run, counting what it forgot in earlier attempts; a label's
  keep-last counts only manual backups, never a policy's (even a deleted
  policy's); and each backup it forgets must pass :func:`judge_deletion`.
- :func:`judge_deletion` decides one deletion: a protected backup is refused
  without force, and so is the last good (available) backup of its target, when
  the request is made and again at the collector's final check; ``force`` is the
  operator's explicit override.
- :func:`plan_orphans` applies a policy's orphan rule to the backups of a target
  whose server is gone: under ``keep`` nothing is ever forgotten; ``expire-after``
  forgets them once the duration has passed since the server was last seen;
  ``keep-last N`` keeps the newest N. Protected backups are never counted or
  forgotten, and each deletion passes :func:`judge_deletion` (so the last good
  backup stays unless the operator deletes it with ``--force``).
- Chains (``stackback.chains``): a kept incremental backup keeps every ancestor ("for
  the chain"); a chain is forgotten newest first; a backup with live increments is
  never deleted before them (refused at the request, even with ``force``, unless they
  are being deleted; at the final check it waits for them); a chain rooted in a
  backup stackback does not know is held. A failed incremental backup (never a recovery
  point, but the cloud counts it against its parent) is forgotten with its parent, just
  before it, unless it is protected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import Enum
from itertools import compress, repeat
from operator import attrgetter, eq, is_
from typing import overload

from stackback.chains import (
    FOR_THE_CHAIN,
    FOREIGN_CHILD,
    FOREIGN_PARENT,
    ancestors,
    by_id,
    deletion_order,
    foreign_blocked,
    foreign_rooted,
    live_children,
)
from stackback.policy import (
    ArtifactStatus,
    Backup,
    BackupStatus,
    OrphanMode,
    OrphanRule,
    server_label,
)
from stackback.records import UNCHANGED, BackupChange, TargetBackups, Unchanged
from stackback.retention import RetentionPolicy, apply_policy

__all__ = [
    "NEWEST_REASON",
    "OWN_REASON",
    "DeletionRequest",
    "DeletionStage",
    "DeletionVerdict",
    "HeldBackups",
    "OrphanRequest",
    "RotationPlan",
    "RotationRequest",
    "RotationScope",
    "judge_deletion",
    "plan_orphans",
    "plan_rotation",
]

_created_at = attrgetter("created_at")
_status = attrgetter("status")
_policy_id = attrgetter("policy_id")
_backup_id = attrgetter("id")

NEWEST_REASON = "newest good backup"
OWN_REASON = "this run's new backup"
OVER_BUDGET = "over this run's deletion budget"
LAST_GOOD_REASON = "last good backup of its target"


def failed_child_reason(parent: Backup) -> tuple[str, ...]:
    """Why a failed incremental backup is forgotten with its parent."""
    return (f"failed incremental of {parent.id}, forgotten with it (never a recovery point)",)


class DeletionStage(Enum):
    """When a deletion is judged."""

    REQUEST = "request"
    """Asked for (``backup delete``, a rotation): the backup is then marked ``deleting``."""
    FINAL_CHECK = "final check"
    """The collector's check just before its first cloud call; a refusal restores the backup."""


@dataclass(frozen=True)
class DeletionRequest:
    """One deletion to judge."""

    backup_id: str
    stage: DeletionStage = DeletionStage.REQUEST
    force: bool = False
    """The operator's override: unprotects the backup and lets the last good one go."""
    reasons: tuple[str, ...] = ("deleted by the operator",)
    by_run: str | None = None
    """The run whose rotation asks (None: the operator)."""
    taken_by_run: str | None = None
    """An unfinished run still taking this backup (the caller knows the runs)."""


@dataclass(frozen=True)
class DeletionVerdict:
    """Allowed (``refusal`` is None) or refused with the reason, and what to write either way."""

    backup_id: str
    refusal: str | None = None
    changes: tuple[BackupChange, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _another_good(backups: TargetBackups, subject: Backup) -> bool:
    """Whether a backup of the target other than ``subject`` is good (available)."""
    return any(b.id != subject.id and b.status is BackupStatus.AVAILABLE for b in backups.backups)


def judge_deletion(request: DeletionRequest, backups: TargetBackups) -> DeletionVerdict:
    """Whether ``request.backup_id`` may be deleted, seen with ``backups`` (its target's).

    At the request: a backup already deleted, or being deleted, needs nothing
    (``force`` then waives the final check's guard); one an unfinished run is still
    taking is refused, and so is one a restore is reading (even with ``force``);
    without ``force`` a protected backup is refused, and so is
    the last good backup of its target, whose deletion is then *guarded* (checked
    again at the final check). Allowed, the backup is marked ``deleting``,
    unprotected, with the request's reasons.

    At the final check: only a backup being deleted may go; a protected one, or one
    whose guarded deletion would leave its target no other good backup, is refused
    and restored (available if its artifacts are intact, else failed), the reason
    as its error.
    """
    subject = backups.find(request.backup_id)
    if subject is None:
        return DeletionVerdict(
            request.backup_id, f"backup {request.backup_id} is not a backup of {backups.target}"
        )
    if request.stage is DeletionStage.FINAL_CHECK:
        return _final_check(subject, backups)
    if subject.status is BackupStatus.DELETED:
        return DeletionVerdict(subject.id)
    if subject.status is BackupStatus.DELETING:
        if request.force and subject.deletion_guarded:
            return DeletionVerdict(
                subject.id, changes=(BackupChange(subject.id, deletion_guarded=False),)
            )
        return DeletionVerdict(subject.id)
    if request.taken_by_run is not None and subject.status is BackupStatus.CREATING:
        return DeletionVerdict(
            subject.id, f"backup {subject.id} is still being taken by run {request.taken_by_run}"
        )
    if subject.id in backups.being_restored:  # even with force: the restore reads it now
        return DeletionVerdict(
            subject.id,
            f"backup {subject.id} is being restored: `stackback restore cancel` the restore, "
            "or let it finish, first",
        )
    if subject.protected and not request.force:
        return DeletionVerdict(
            subject.id, f"backup {subject.id} is protected: unprotect it or use --force"
        )
    dependents = [
        c for c in _live_children(subject, backups) if c.status is not BackupStatus.DELETING
    ]
    if dependents:  # even with force: the cloud refuses to delete a parent with children
        return DeletionVerdict(
            subject.id,
            f"backup {subject.id} has incremental backups depending on it: "
            f"{', '.join(c.id for c in dependents)} (delete them first)",
        )
    guarded = subject.status is BackupStatus.AVAILABLE and not request.force
    if guarded and not _another_good(backups, subject):
        return DeletionVerdict(
            subject.id,
            f"backup {subject.id} is the last good backup of "
            f"{server_label(subject.target, subject.target_name)}: use --force",
        )
    mark = BackupChange(
        subject.id,
        status=BackupStatus.DELETING,
        protected=False,
        reasons=request.reasons,
        deletion_guarded=guarded,
        deletion_run_id=request.by_run,
    )
    return DeletionVerdict(subject.id, changes=(mark,))


def _final_check(subject: Backup, backups: TargetBackups) -> DeletionVerdict:
    if subject.status is not BackupStatus.DELETING:
        return DeletionVerdict(
            subject.id, f"backup {subject.id} is {subject.status.value}, not being deleted"
        )
    reasons: tuple[str, ...] | Unchanged = UNCHANGED
    children = _live_children(subject, backups)
    if children and all(c.status is BackupStatus.DELETING for c in children):
        return DeletionVerdict(  # not refused: deleted once its children are gone
            subject.id,
            f"waiting for the deletion of its incremental backups: "
            f"{', '.join(c.id for c in children)}",
        )
    if subject.protected:
        why = "deletion refused: the backup is protected"
    elif subject.deletion_guarded and not _another_good(backups, subject):
        why = (
            f"deletion refused: it is the last good backup of "
            f"{server_label(subject.target, subject.target_name)} "
            "(`backup delete --force` deletes it anyway)"
        )
        reasons = (LAST_GOOD_REASON,)
    elif children:
        why = "deletion refused: incremental backups depend on it: " + ", ".join(
            c.id for c in children
        )
    else:
        return DeletionVerdict(subject.id)
    intact = all(a.status is ArtifactStatus.AVAILABLE for a in subject.artifacts)
    restore = BackupChange(
        subject.id,
        status=BackupStatus.AVAILABLE if intact else BackupStatus.FAILED,
        reasons=reasons,
        error=why,
        deletion_guarded=False,
    )
    return DeletionVerdict(subject.id, why, (restore,))


@dataclass(frozen=True)
class RotationScope:
    """Which of a target's backups a rotation counts: a policy's, or a label's manual ones."""

    policy_id: str | None = None
    label: str | None = None

    def covers(self, backup: Backup) -> bool:
        if self.policy_id is not None:
            return backup.policy_id == self.policy_id
        return backup.is_manual and backup.label == self.label

    def good_backups(self, backups: Sequence[Backup]) -> list[Backup]:
        """The available backups this scope covers, in their order."""
        available = list(
            compress(backups, map(is_, map(_status, backups), repeat(BackupStatus.AVAILABLE)))
        )
        if self.policy_id is not None:
            ours = map(eq, map(_policy_id, available), repeat(self.policy_id))
            return list(compress(available, ours))
        return [b for b in available if self.covers(b)]


@dataclass(frozen=True)
class RotationRequest:
    """A rotation to plan: a run's (``run_id``), or a preview's (no run, no budget)."""

    rules: RetentionPolicy
    scope: RotationScope | None
    """None: the run has no retention; nothing is counted or forgotten."""
    now: datetime
    tz: tzinfo = UTC
    run_id: str | None = None
    """The run that rotates; its own backup must be available, and is never forgotten."""
    budget: int | None = None
    """At most this many forgotten by the run in all its attempts (None: no limit)."""


class HeldBackups(Sequence[tuple[Backup, str]]):
    """``RotationPlan.held``: the backups a safety rule refused, then those over the budget.

    Equal to the tuple of its (backup, reason) pairs; the pairs of the backups over the
    budget are made as they are read, so that a rotation over a million backups does
    not build a million pairs its run never reads.
    """

    __slots__ = ("_over_budget", "_refused")

    def __init__(
        self, refused: Sequence[tuple[Backup, str]] = (), over_budget: Sequence[Backup] = ()
    ) -> None:
        self._refused = tuple(refused)
        self._over_budget = tuple(over_budget)

    def __len__(self) -> int:
        return len(self._refused) + len(self._over_budget)

    def after(self, refused: Sequence[tuple[Backup, str]]) -> HeldBackups:
        """These held backups, with ``refused`` (refused by an earlier rule) first."""
        return HeldBackups((*refused, *self._refused), self._over_budget)

    @overload
    def __getitem__(self, index: int) -> tuple[Backup, str]: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[tuple[Backup, str], ...]: ...
    def __getitem__(
        self, index: int | slice
    ) -> tuple[Backup, str] | tuple[tuple[Backup, str], ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError("held backup index out of range")
        if position < len(self._refused):
            return self._refused[position]
        return (self._over_budget[position - len(self._refused)], OVER_BUDGET)

    def __iter__(self) -> Iterator[tuple[Backup, str]]:
        yield from self._refused
        for backup in self._over_budget:
            yield (backup, OVER_BUDGET)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeldBackups | tuple):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


@dataclass(frozen=True)
class RotationPlan:
    """What a rotation keeps and forgets, and why.

    ``keep`` pairs each kept backup with its reasons, newest first; ``forget`` is
    what it forgets now, oldest first; ``held`` are backups the rules would
    forget that a safety rule keeps (with the rule); ``forgotten`` is everything the
    run has forgotten in all its attempts that is being deleted or deleted, oldest
    first (what its collector finishes); ``note`` says why nothing was considered.
    """

    keep: tuple[tuple[Backup, tuple[str, ...]], ...] = ()
    forget: tuple[Backup, ...] = ()
    held: Sequence[tuple[Backup, str]] = ()
    protected: tuple[Backup, ...] = ()
    forgotten: tuple[Backup, ...] = ()
    changes: tuple[BackupChange, ...] = ()
    note: str | None = None


def plan_rotation(request: RotationRequest, backups: TargetBackups) -> RotationPlan:
    """Apply ``request.rules`` to the target's good backups in scope, within the safety rules.

    ``backups.run_id`` must be ``request.run_id``: the store reads the run's own
    backup and what the run forgot in earlier attempts by it.
    """
    own = None
    if request.run_id is not None:
        own = next((b for b in backups.backups if b.run_id == request.run_id), None)
        if own is None or own.status is not BackupStatus.AVAILABLE:
            status = own.status.value if own is not None else "missing"
            return RotationPlan(note=f"its own backup is {status}")
    if request.scope is None:
        return RotationPlan()
    in_scope = request.scope.good_backups(backups.backups)
    candidates = [b for b in in_scope if not b.protected]
    decision = apply_policy(candidates, request.rules, now=request.now, tz=request.tz)
    keep = list(decision.items_with_reasons())
    forget = list(decision.forget)
    newest = max(candidates, key=_created_at, default=None)
    forget_ids = set(map(_backup_id, forget))
    for spared, why in ((newest, NEWEST_REASON), (own, OWN_REASON)):
        if spared is not None and spared.id in forget_ids:
            forget = [b for b in forget if b.id != spared.id]
            forget_ids.discard(spared.id)
            keep.append((spared, (why,)))
    keep, forget, chain_held = _keep_chains(keep, forget, backups)
    changes = [BackupChange(b.id, reasons=reasons) for b, reasons in keep if b.reasons != reasons]
    forget, failed_children = _with_failed_children(forget, backups)
    forget = deletion_order(forget)  # oldest first, each chain newest first
    forgotten_now, held, marks = _forget_within_budget(request, backups, forget, failed_children)
    held = held.after(chain_held)
    gone = (BackupStatus.DELETING, BackupStatus.DELETED)
    forgotten = [b for b in backups.forgotten_by_run if b.status in gone] + forgotten_now
    forgotten = deletion_order(sorted(forgotten, key=lambda b: (b.created_at, b.id)))
    return RotationPlan(
        keep=tuple(keep),
        forget=tuple(forgotten_now),
        held=held,
        protected=tuple(b for b in in_scope if b.protected),
        forgotten=tuple(forgotten),
        changes=(*changes, *marks),
    )


def _live_children(subject: Backup, backups: TargetBackups) -> list[Backup]:
    """``live_children`` of ``subject``, without a scan when no backup names it as parent."""
    if subject.id not in backups.parent_ids:
        return []
    return live_children(subject, backups.backups)


def _keep_chains(
    keep: list[tuple[Backup, tuple[str, ...]]], forget: list[Backup], backups: TargetBackups
) -> tuple[list[tuple[Backup, tuple[str, ...]]], list[Backup], list[tuple[Backup, str]]]:
    """Keep every ancestor of a kept backup ("for the chain"); hold back what a chain
    rooted in a backup stackback does not know may still need, and what a backup
    stackback did not make depends on (with its ancestors)."""
    if not backups.parent_ids:  # no chain: nothing to walk, only foreign children to hold
        blocked_ids = {b.id for b in forget if b.error is not None and foreign_blocked(b)}
        if not blocked_ids:
            return keep, forget, []
        return (
            keep,
            [b for b in forget if b.id not in blocked_ids],
            [(b, FOREIGN_CHILD) for b in forget if b.id in blocked_ids],
        )
    kept_ids = {b.id for b, _ in keep}
    known = by_id(backups.backups)
    forgetting = {b.id: b for b in forget}
    blocked = [b for b in forgetting.values() if foreign_blocked(b)]
    for b in blocked:
        del forgetting[b.id]
    for kept in [*(b for b, _ in keep), *blocked]:
        for parent in ancestors(kept, known):
            if parent.id in forgetting and parent.id not in kept_ids:
                keep.append((forgetting.pop(parent.id), (FOR_THE_CHAIN,)))
                kept_ids.add(parent.id)
    held = [(b, FOREIGN_CHILD) for b in blocked] + [
        (b, FOREIGN_PARENT) for b in forgetting.values() if foreign_rooted(b, known)
    ]
    held_ids = {b.id for b, _ in held}
    return keep, [b for b in forgetting.values() if b.id not in held_ids], held


@dataclass(frozen=True)
class OrphanRequest:
    """An orphan rule to apply to one target's backups of one policy."""

    rule: OrphanRule
    policy_id: str
    now: datetime
    budget: int | None = None
    """At most this many forgotten in one pass (None: no limit)."""


def source_last_seen(backups: Sequence[Backup]) -> datetime | None:
    """When the server of these backups was last known to exist (a backup proves it did)."""
    times = [t for b in backups for t in (b.source_last_seen_at, b.created_at) if t is not None]
    return max(times, default=None)


def plan_orphans(request: OrphanRequest, backups: TargetBackups) -> RotationPlan:
    """What ``request.rule`` forgets of the policy's good backups of an orphaned target.

    Nothing unless every one of them is recorded orphaned (its server found gone);
    under ``keep`` nothing at all. Protected backups are outside the rule.
    """
    scope = RotationScope(policy_id=request.policy_id)
    in_scope = [
        b for b in backups.backups if b.status is BackupStatus.AVAILABLE and scope.covers(b)
    ]
    if not in_scope or not all(b.orphaned for b in in_scope):
        return RotationPlan(note="its server exists, or was not found gone")
    protected = tuple(b for b in in_scope if b.protected)
    candidates = sorted(
        (b for b in in_scope if not b.protected), key=lambda b: b.created_at, reverse=True
    )
    rule = request.rule
    keep, forget = candidates, []  # keep: nothing of an orphaned target is ever forgotten
    if rule.mode is OrphanMode.KEEP_LAST and rule.keep_last is not None:
        keep, forget = candidates[: rule.keep_last], candidates[rule.keep_last :]
    elif rule.mode is OrphanMode.EXPIRE_AFTER and rule.after is not None:
        seen = source_last_seen(in_scope)
        if seen is not None and seen <= rule.after.subtract_from(request.now):
            keep, forget = [], candidates
    why = (f"forgotten: its server is gone (--orphans {rule})",)
    kept, forget, chain_held = _keep_chains(
        [(b, (f"orphaned: {rule}",)) for b in keep], forget, backups
    )
    forget, failed_children = _with_failed_children(forget, backups)
    forget = deletion_order(sorted(forget, key=lambda b: (b.created_at, b.id)))
    forgotten, held, marks = _mark_within_budget(
        forget, backups, request.budget, why, None, failed_children
    )
    held = held.after(chain_held)
    return RotationPlan(
        keep=tuple(kept),
        forget=tuple(forgotten),
        held=held,
        protected=protected,
        forgotten=tuple(forgotten),
        changes=tuple(marks),
    )


def _with_failed_children(
    forget: list[Backup], backups: TargetBackups
) -> tuple[list[Backup], dict[str, tuple[str, ...]]]:
    """``forget`` with the failed, unprotected incremental backups of each of them added (and
    the reasons they are forgotten for, by id).

    A failed incremental is no recovery point, and nothing is built on it (a failed backup
    is never a parent); but the cloud counts it against its parent (Cinder refuses to delete
    a backup with any child, even one in ``error``; Trove deletes children with their parent),
    and so does :func:`judge_deletion`. Left alone, it would hold its parent forever.
    """
    if not backups.parent_ids or not forget:
        return forget, {}
    forgetting = {b.id: b for b in forget}
    reasons: dict[str, tuple[str, ...]] = {}
    children: list[Backup] = []
    for backup in backups.backups:
        parent = forgetting.get(backup.parent_id) if backup.parent_id is not None else None
        if (
            parent is not None
            and backup.status is BackupStatus.FAILED
            and not backup.protected
            and backup.id not in forgetting
        ):
            children.append(backup)
            reasons[backup.id] = failed_child_reason(parent)
    return [*forget, *children], reasons


def _forget_within_budget(
    request: RotationRequest,
    backups: TargetBackups,
    forget: list[Backup],
    special: dict[str, tuple[str, ...]] | None = None,
) -> tuple[list[Backup], HeldBackups, list[BackupChange]]:
    """Mark ``forget`` in order while the budget lasts and each deletion is allowed.

    Returns what is forgotten (as marked), what is held back and why, and the marks.
    The budget counts what the run forgot in earlier attempts.
    """
    left = None if request.budget is None else request.budget - len(backups.forgotten_by_run)
    why_forgotten = (f"forgotten by retention: {request.rules.describe()}",)
    return _mark_within_budget(forget, backups, left, why_forgotten, request.run_id, special)


def _mark_within_budget(
    forget: list[Backup],
    backups: TargetBackups,
    left: int | None,
    reasons: tuple[str, ...],
    by_run: str | None,
    special: dict[str, tuple[str, ...]] | None = None,
) -> tuple[list[Backup], HeldBackups, list[BackupChange]]:
    """Ask ``judge_deletion`` for each of ``forget`` in order while ``left`` lasts (None: no
    budget); what is forgotten (as marked), what is held back and why, and the marks.
    ``special`` gives some backups other reasons than ``reasons`` (by id)."""
    seen = backups
    forgotten: list[Backup] = []
    refused: list[tuple[Backup, str]] = []
    marks: list[BackupChange] = []
    for position, backup in enumerate(forget):
        if left is not None and left <= 0:
            return forgotten, HeldBackups(refused, forget[position:]), marks
        why = special.get(backup.id, reasons) if special else reasons
        verdict = judge_deletion(DeletionRequest(backup.id, reasons=why, by_run=by_run), seen)
        if verdict.refusal is not None:
            refused.append((backup, verdict.refusal))
            continue
        seen = seen.with_changes(verdict.changes)
        marks.extend(verdict.changes)
        forgotten.append(seen.find(backup.id) or backup)
        if left is not None:
            left -= 1
    return forgotten, HeldBackups(refused), marks
