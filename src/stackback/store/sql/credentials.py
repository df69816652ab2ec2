"""The credentials policies act through: stored as given, secrets already sealed.

A credential lives while something needs it: ``active`` while a policy names it,
``retired`` while only backups (not yet deleted), unfinished runs or restores in progress
name it, then ``revoked`` (or ``revoke-failed``). Deciding that nothing needs it and
recording the revocation is one transaction with the credential's row locked, the lock a
new policy or run naming it takes too (``base.require_active_credential``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stackback.errors import NotFound
from stackback.policy import TERMINAL_RUN_STATES, BackupStatus
from stackback.records import (
    BEING_REVOKED,
    Credential,
    CredentialKind,
    CredentialState,
    CredentialUsage,
    credential_ref,
)
from stackback.restoreplan import ACTIVE_RESTORE_STATES
from stackback.store.models import (
    BackupRow,
    CredentialRow,
    PolicyRow,
    RestoreRow,
    RunRow,
)
from stackback.store.sql.base import SqlBase

_TERMINAL_RUNS = tuple(state.value for state in TERMINAL_RUN_STATES)
_ACTIVE_RESTORES = tuple(state.value for state in ACTIVE_RESTORE_STATES)
_REVOCABLE = (
    CredentialState.ACTIVE.value,
    CredentialState.RETIRED.value,
    CredentialState.REVOKE_FAILED.value,
)


class CredentialStore(SqlBase):
    """Trusts and application credentials; a given-up one keeps its record, not its secret."""

    def add_credential(self, credential: Credential) -> Credential:
        with self._session() as session:
            session.add(
                CredentialRow(
                    id=credential.id,
                    kind=credential.kind.value,
                    project_id=credential.project_id,
                    user_id=credential.user_id,
                    keystone_id=credential.keystone_id,
                    sealed_secret=credential.sealed_secret,
                    state=credential.state.value,
                    created_at=credential.created_at,
                    revoked_at=credential.revoked_at,
                    detail=credential.detail,
                    retired_at=credential.retired_at,
                )
            )
        return credential

    def get_credential(self, credential_id: str) -> Credential:
        with self._session() as session:
            return _credential(self._credential_row(session, credential_id))

    def list_credentials(self) -> list[tuple[Credential, CredentialUsage]]:
        """Every stored credential (oldest first) with what still acts through it."""
        with self._session() as session:
            rows = session.scalars(
                select(CredentialRow).order_by(CredentialRow.created_at, CredentialRow.id)
            ).all()
            return [(_credential(row), _usage(session, row.id)) for row in rows]

    def credential_usage(self, credential_id: str) -> CredentialUsage:
        with self._session() as session:
            self._credential_row(session, credential_id)
            return _usage(session, credential_id)

    def retire_credential(
        self, credential_id: str, *, now: datetime, detail: str
    ) -> tuple[Credential, CredentialUsage]:
        """Retire an active credential no policy names any more (no new run may use it;
        what already needs it still acts through it). Unchanged while a policy names it."""
        with self._session() as session:
            row = self._credential_row(session, credential_id, lock=True)
            usage = _usage(session, credential_id)
            if row.state == CredentialState.ACTIVE.value and not usage.policies:
                row.state = CredentialState.RETIRED.value
                row.retired_at = now
                row.detail = detail
            return _credential(row), usage

    def begin_revocation(
        self, credential_id: str, *, now: datetime, force: bool = False
    ) -> tuple[Credential, CredentialUsage, bool]:
        """Record a credential revoked if nothing needs it (or ``force``, unless a policy
        names it), before Keystone is told (``end_credential`` then records how that went).

        Returns the credential, what needed it, and whether it is now being revoked (False:
        left as it was, because it is still needed or already revoked).
        """
        with self._session() as session:
            row = self._credential_row(session, credential_id, lock=True)
            usage = _usage(session, credential_id)
            interrupted = row.state == CredentialState.REVOKED.value and row.detail == BEING_REVOKED
            allowed = (row.state in _REVOCABLE or interrupted) and not usage.policies
            if not allowed or (usage.needed and not force):
                return _credential(row), usage, False
            row.state = CredentialState.REVOKED.value
            row.revoked_at = now
            row.detail = BEING_REVOKED
            return _credential(row), usage, True

    def end_credential(
        self, credential_id: str, *, state: CredentialState, now: datetime, detail: str
    ) -> Credential:
        with self._session() as session:
            row = self._credential_row(session, credential_id, lock=True)
            row.state = state.value
            row.revoked_at = now
            row.detail = detail
            row.sealed_secret = None
            return _credential(row)

    @staticmethod
    def _credential_row(
        session: Session, credential_id: str, *, lock: bool = False
    ) -> CredentialRow:
        row = session.get(CredentialRow, credential_id, with_for_update=lock)
        if row is None:
            raise NotFound(f"no credential {credential_id}")
        return row


def _usage(session: Session, credential_id: str) -> CredentialUsage:
    cloud = credential_ref(credential_id)
    policies = session.scalars(
        select(PolicyRow.name).where(PolicyRow.cloud == cloud).order_by(PolicyRow.name)
    ).all()
    backups = session.scalar(
        select(func.count())
        .select_from(BackupRow)
        .where(BackupRow.cloud == cloud, BackupRow.status != BackupStatus.DELETED.value)
    )
    runs = session.scalar(
        select(func.count())
        .select_from(RunRow)
        .where(RunRow.cloud == cloud, RunRow.state.not_in(_TERMINAL_RUNS))
    )
    restores = session.scalar(
        select(func.count())
        .select_from(RestoreRow)
        .where(RestoreRow.cloud == cloud, RestoreRow.state.in_(_ACTIVE_RESTORES))
    )
    return CredentialUsage(
        policies=tuple(policies), backups=backups or 0, runs=runs or 0, restores=restores or 0
    )


def _credential(row: CredentialRow) -> Credential:
    return Credential(
        id=row.id,
        kind=CredentialKind(row.kind),
        project_id=row.project_id,
        user_id=row.user_id,
        keystone_id=row.keystone_id,
        created_at=row.created_at,
        sealed_secret=row.sealed_secret,
        state=CredentialState(row.state),
        revoked_at=row.revoked_at,
        detail=row.detail,
        retired_at=row.retired_at,
    )
