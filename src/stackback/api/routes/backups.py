"""``/v1/backups``: recovery points; protect, unprotect, delete, restore and verify them."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query

from stackback.api.access import Caller, allowed
from stackback.api.models import BackupOut, Page, RestoreCreate, RestoreOut, VerifyCreate
from stackback.api.routes.common import Limit, Marker, page, policy_zones, utc, zoned
from stackback.policy import Backup
from stackback.restoreplan import RestoreMode, RestoreOverrides
from stackback.services.access import Action, acts_as_its_project
from stackback.verification import VerifyChecks
from stackback.views import backup_detail, backup_summary, restore_view

router = APIRouter(prefix="/backups", tags=["backups"])


def visible_backup(who: Caller, action: Action, backup_id: str) -> Backup:
    backup = who.services.backups.get(backup_id, project=who.scope)
    who.check(action, backup.project, "backup", backup_id)
    return backup


def acted_on_backup(who: Caller, action: Action, backup_id: str) -> Backup:
    """``visible_backup``, for an action through the backup's cloud (delete, restore,
    verify): through a cloud other than the project's own, every-project callers only."""
    backup = visible_backup(who, action, backup_id)
    if not acts_as_its_project(backup.cloud, who.state.default_cloud):
        who.authorize(Action.ALL_PROJECTS, None)
    return backup


@router.get("", response_model=Page[BackupOut], summary="List backups, newest first")
def list_backups(
    policy: str | None = Query(None, max_length=255, description="Policy id or name."),
    server: str | None = Query(None, max_length=255, description="Server id or name."),
    include_deleted: bool = False,
    since: datetime | None = Query(None, description="Created at or after (UTC if no zone)."),
    until: datetime | None = Query(None, description="Created before (UTC if no zone)."),
    limit: Limit = 50,
    marker: Marker = None,
    who: Caller = Depends(allowed(Action.BACKUP_LIST)),
) -> dict[str, Any]:
    backups = who.services.backups.list_backups(
        server=server,
        policy=policy,
        include_deleted=include_deleted,
        limit=limit + 1,
        project=who.scope,
        marker=marker,
        since=utc(since),
        until=utc(until),
    )
    zones = policy_zones(who.services.policies, backups)
    return page(backups, limit, zoned(backup_summary, zones))


@router.get("/{backup_id}", response_model=BackupOut, summary="Show a backup")
def show_backup(
    backup_id: str, who: Caller = Depends(allowed(Action.BACKUP_SHOW))
) -> dict[str, Any]:
    """Its artifacts, consistency, why retention keeps it, its last verification and, for
    an incremental kind (Cinder volume, Trove database backups), its chain."""
    backup = visible_backup(who, Action.BACKUP_SHOW, backup_id)
    chain = who.services.backups.chain(backup, project=who.scope)
    shown = partial(backup_detail, chain=chain)
    return zoned(shown, policy_zones(who.services.policies, [backup]))(backup)


def _protect(who: Caller, backup_id: str, protected: bool) -> dict[str, Any]:
    backup = visible_backup(who, Action.BACKUP_PROTECT, backup_id)
    return backup_detail(who.services.backups.protect(backup.id, protected))


@router.post("/{backup_id}/protect", response_model=BackupOut, summary="Protect a backup")
def protect_backup(
    backup_id: str, who: Caller = Depends(allowed(Action.BACKUP_PROTECT))
) -> dict[str, Any]:
    """Retention never counts nor deletes a protected backup."""
    return _protect(who, backup_id, True)


@router.post("/{backup_id}/unprotect", response_model=BackupOut, summary="Unprotect a backup")
def unprotect_backup(
    backup_id: str, who: Caller = Depends(allowed(Action.BACKUP_PROTECT))
) -> dict[str, Any]:
    return _protect(who, backup_id, False)


@router.delete("/{backup_id}", response_model=BackupOut, status_code=202, summary="Delete a backup")
def delete_backup(
    backup_id: str,
    force: bool = Query(
        False, description="Also a protected backup, or the target's last good one."
    ),
    who: Caller = Depends(allowed(Action.BACKUP_DELETE)),
) -> dict[str, Any]:
    """A recorded deletion request, finished now if the cloud allows (409: refused, e.g. the
    target's last good backup)."""
    backup = acted_on_backup(who, Action.BACKUP_DELETE, backup_id)
    return backup_detail(who.services.backups.delete(backup.id, force=force))


@router.post(
    "/{backup_id}/restore",
    response_model=RestoreOut,
    status_code=202,
    summary="Restore a backup (a new server, or the server rebuilt in place)",
)
def restore_backup(
    backup_id: str,
    body: RestoreCreate | None = None,
    who: Caller = Depends(allowed(Action.BACKUP_RESTORE)),
) -> dict[str, Any]:
    """The restore is planned and checked now (400 before anything is created); the
    workers carry it out. ``GET /v1/restores/{id}`` follows it."""
    body = body or RestoreCreate()
    backup = acted_on_backup(who, Action.BACKUP_RESTORE, backup_id)
    job = who.services.restores.start(
        backup.id,
        mode=RestoreMode(body.mode),
        overrides=RestoreOverrides(
            name=body.name,
            flavor=body.flavor,
            network=body.network,
            key_name=body.key_name,
            security_groups=tuple(body.security_groups),
            availability_zone=body.availability_zone,
        ),
        timeout=timedelta(seconds=body.timeout_seconds),
        with_volumes=body.with_volumes,
    )
    return restore_view(job)


@router.post(
    "/{backup_id}/verify",
    response_model=RestoreOut,
    status_code=202,
    summary="Verify a backup (boot it as a throwaway server and check it)",
)
def verify_backup(
    backup_id: str,
    body: VerifyCreate | None = None,
    who: Caller = Depends(allowed(Action.BACKUP_VERIFY)),
) -> dict[str, Any]:
    """The verdict is recorded on the backup; everything the check made is deleted."""
    body = body or VerifyCreate()
    backup = acted_on_backup(who, Action.BACKUP_VERIFY, backup_id)
    job = who.services.verify.start(
        backup.id,
        flavor=body.flavor,
        network=body.network,
        checks=VerifyChecks(console_contains=body.console_contains, port=body.port),
        timeout=timedelta(seconds=body.timeout_seconds),
    )
    return restore_view(job)
