"""Verifications: a backup restored as a throwaway server, checked, recorded, removed.

A verification is a restore job in mode ``verify`` (see ``engine.restore``): the
same recorded, leased, resumable machinery, whose last step is always cleanup.
:class:`VerifyService` starts one on demand (``stackback verify``);
:class:`VerifyScheduler` starts them from each policy's verify cron.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Protocol

from stackback.errors import InvalidInput, StackbackError
from stackback.policy import Backup, BackupStatus, Policy, check_given
from stackback.ports import Clock, CloudResolver, VerificationStore
from stackback.records import BackupFilter
from stackback.restoreplan import RestoreJob, RestoreMode, RestoreOverrides, for_verification
from stackback.services.restores import RestoreService, RestoreStoreLike
from stackback.verification import (
    Verification,
    VerifyChecks,
    VerifyResult,
    parse_pick,
    pick_backup,
    verify_name,
)

log = logging.getLogger(__name__)

DEFAULT_VERIFY_TIMEOUT = timedelta(minutes=30)


class VerifyStoreLike(RestoreStoreLike, VerificationStore, Protocol):
    """The store verifications need (``SqlStore``)."""


class VerifyService:
    """Starts verifications; the engine's ``RestoreRunner`` carries them out."""

    def __init__(self, store: VerifyStoreLike, clouds: CloudResolver, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.restores = RestoreService(store, clouds, clock)

    def start(
        self,
        backup_ref: str,
        *,
        flavor: str | None = None,
        network: str | None = None,
        checks: VerifyChecks | None = None,
        timeout: timedelta = DEFAULT_VERIFY_TIMEOUT,
    ) -> RestoreJob:
        """Record a verification of the backup; refuses (``InvalidInput``) before anything
        is created: an unknown, failed or deleting backup, a flavor or network the cloud
        does not have, a port check without a network."""
        check_given(network, "--network")
        checks = checks or VerifyChecks()
        backup = self.store.get_backup(backup_ref)
        name = verify_name(backup.id, self.clock.now())
        return self.restores.start(
            backup.id,
            mode=RestoreMode.AS_NEW,
            overrides=RestoreOverrides(name=name, flavor=flavor),
            timeout=timeout,
            reshape=lambda plan: for_verification(plan, network=network, checks=checks),
        )

    def get(self, ref: str) -> RestoreJob:
        job = self.store.get_restore(ref)
        if job.mode is not RestoreMode.VERIFY:
            raise InvalidInput(f"restore {job.id} is not a verification")
        return job


class VerifyScheduler:
    """Fires each policy's verify cron: one verification per target of the policy, of its
    newest good backup or of one of its newest N (the same one for the same occurrence)."""

    def __init__(self, store: VerifyStoreLike, clouds: CloudResolver, clock: Clock) -> None:
        self.store = store
        self.service = VerifyService(store, clouds, clock)

    def tick(self, now: datetime) -> int:
        """Start the verifications of every due occurrence; how many were started."""
        started = 0
        for policy, occurrence in self.store.claim_due_verifications(now):
            for backup in self.choose(policy, occurrence):
                started += self._start(policy, backup, now)
        return started

    def next_time(self) -> datetime | None:
        return self.store.next_verify_time()

    def choose(self, policy: Policy, occurrence: datetime) -> list[Backup]:
        """The backup each target of the policy verifies at ``occurrence``."""
        settings = policy.verify
        if settings is None:
            return []
        per_target = parse_pick(settings.pick)
        by_target: dict[str, list[Backup]] = defaultdict(list)
        for good in self.store.list_backups(
            BackupFilter(policy_id=policy.id, statuses=(BackupStatus.AVAILABLE,), limit=None)
        ):
            if len(by_target[good.target]) < per_target:
                by_target[good.target].append(good)
        chosen = []
        for target in sorted(by_target):
            key = f"{policy.id}/{target}/{occurrence.isoformat()}"
            backup = pick_backup(by_target[target], settings.pick, key)
            if backup is not None:
                chosen.append(backup)
        return chosen

    def _start(self, policy: Policy, backup: Backup, now: datetime) -> int:
        settings = policy.verify
        assert settings is not None
        try:
            self.service.start(backup.id, flavor=settings.flavor, network=settings.network)
        except InvalidInput as refused:
            reason = f"could not start: {refused.message}"
            log.warning("verification of backup %s: %s", backup.id, reason)
            self.store.record_verification(
                backup.id, Verification(VerifyResult.FAILED, now, reason)
            )
            return 0
        except StackbackError as error:  # the cloud or the database: the next occurrence tries
            log.warning("verification of backup %s not started: %s", backup.id, error)
            return 0
        return 1
