"""What every part of the SQL store shares: the engine, sessions, fencing, id lookup."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, Exists, Table, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from stackback.errors import Conflict, InvalidInput, LeaseLost, NotFound
from stackback.policy import ACTIVE_RUN_STATES, RunState
from stackback.records import CredentialState, credential_id_of
from stackback.store.database import ensure_migrated
from stackback.store.models import (
    BackupRow,
    CredentialRow,
    PolicyRow,
    RestoreRow,
    RunRow,
    ScheduleRow,
)

WORKABLE_STATES = (
    RunState.PENDING.value,
    RunState.SNAPSHOTTING.value,
    RunState.WAITING.value,
    RunState.ROTATING.value,
)
_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)
_OtherRun = aliased(RunRow)


def new_id() -> str:
    return str(uuid.uuid4())


class SqlBase:
    """The engine and its sessions; the parts of ``SqlStore`` build on this."""

    def __init__(self, engine: Engine, *, check_schema: bool = True) -> None:
        self.engine = engine
        if check_schema:
            ensure_migrated(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def _fenced_run(self, session: Session, run_id: str, attempt: int) -> RunRow:
        # FOR UPDATE: on PostgreSQL a concurrent claim must not slip between check and write
        row = session.get(RunRow, run_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no run {run_id}")
        if row.attempt != attempt:
            raise LeaseLost(
                f"run {run_id} was taken over (attempt {row.attempt}, this worker holds {attempt})"
            )
        return row


def require_active_credential(session: Session, cloud: str | None) -> None:
    """Refuse a new policy or run acting through a stored credential that was retired or
    revoked (``Conflict``); its row stays locked until the transaction ends, so a
    revocation deciding that nothing needs it waits (a credential not stored is left to the
    cloud provider to refuse)."""
    credential_id = credential_id_of(cloud)
    if credential_id is None:
        return
    row = session.get(CredentialRow, credential_id, with_for_update=True)
    if row is not None and row.state != CredentialState.ACTIVE.value:
        raise Conflict(
            f"credential {credential_id} is {row.state}: no new policy or run may act through it"
        )


SCHEDULES = cast(Table, ScheduleRow.__table__)
POLICIES = cast(Table, PolicyRow.__table__)
BACKUPS = cast(Table, BackupRow.__table__)


MIN_ID_PREFIX = 6
_ID_PREFIX = re.compile(r"[0-9a-f-]+")


_Row = TypeVar("_Row", RunRow, BackupRow, RestoreRow)


def by_id_or_prefix(
    session: Session, model: type[_Row], ref: str, what: str, *, project: str | None = None
) -> _Row:
    """The row whose id is ``ref``, or the only one whose id starts with it (6+ characters).

    With ``project``, only that project's rows count: another project's row is not found,
    and does not make a prefix ambiguous (its existence is not told).
    """
    row = session.get(model, ref)
    if row is not None and (project is None or row.project == project):
        return row
    if len(ref) >= MIN_ID_PREFIX and _ID_PREFIX.fullmatch(ref):
        query = select(model).where(model.id.startswith(ref, autoescape=True))
        if project is not None:
            query = query.where(model.project == project)
        rows = session.scalars(query.limit(2)).all()
        if len(rows) > 1:
            raise InvalidInput(f"{ref!r} is the start of several {what} ids: give more of it")
        if rows:
            return rows[0]
    elif _ID_PREFIX.fullmatch(ref):
        raise NotFound(f"no {what} {ref!r}: an id prefix needs at least {MIN_ID_PREFIX} characters")
    raise NotFound(f"no {what} {ref!r}")


def target_busy() -> Exists:
    """A run's target has another run in an active state (a pending run must wait)."""
    return exists().where(
        _OtherRun.target == RunRow.target,
        _OtherRun.state.in_(_ACTIVE),
        _OtherRun.id != RunRow.id,
    )


def keyset_after(
    key: Any, id_column: Any, marker_key: datetime, marker_id: str
) -> ColumnElement[bool]:
    """Rows after the marker row in a list ordered by (``key`` desc, id): the next page.

    ``key <= marker_key`` comes first, on its own: it is what an index on (``key`` desc,
    id) starts its scan at, so a page deep into the list reads only its own rows (the OR
    alone was a filter over every row before the marker).
    """
    return and_(key <= marker_key, or_(key < marker_key, id_column > marker_id))
