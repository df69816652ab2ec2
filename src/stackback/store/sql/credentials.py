"""The credentials policies act through: stored as given, secrets already sealed."""

from __future__ import annotations

from datetime import datetime

from stackback.errors import NotFound
from stackback.records import Credential, CredentialKind, CredentialState
from stackback.store.models import CredentialRow
from stackback.store.sql.base import SqlBase


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
                )
            )
        return credential

    def get_credential(self, credential_id: str) -> Credential:
        with self._session() as session:
            row = session.get(CredentialRow, credential_id)
            if row is None:
                raise NotFound(f"no credential {credential_id}")
            return _credential(row)

    def end_credential(
        self, credential_id: str, *, state: CredentialState, now: datetime, detail: str
    ) -> Credential:
        with self._session() as session:
            row = session.get(CredentialRow, credential_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no credential {credential_id}")
            row.state = state.value
            row.revoked_at = now
            row.detail = detail
            row.sealed_secret = None
            return _credential(row)


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
    )
