"""The SQL store (SQLAlchemy 2): one implementation for SQLite and PostgreSQL.

Concurrency rules, for several schedulers and workers on one database:
- the tick locks due schedules (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
  SQLite every transaction is ``BEGIN IMMEDIATE``) and inserts runs with
  ``ON CONFLICT DO NOTHING`` on ``(policy, target, scheduled_for)``;
- workers claim runs with a lease and an attempt number; every write by a
  worker names the attempt it holds (fencing) and fails with ``LeaseLost``
  when another worker has taken the run over;
- a partial unique index keeps at most one active run per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackback.records import (
    BackupFilter,
    DuePolicy,
    DueSchedule,
    NewRun,
    RunFilter,
    ScheduleState,
    StepNote,
    TickPlan,
)
from stackback.store.database import create_db_engine
from stackback.store.sql.alerts import AlertStore
from stackback.store.sql.backups import BackupStore
from stackback.store.sql.credentials import CredentialStore
from stackback.store.sql.policies import PolicyStore
from stackback.store.sql.restores import RestoreStore
from stackback.store.sql.runs import RunStore
from stackback.store.sql.stats import StatsStore
from stackback.store.sql.tick import TickStore
from stackback.store.sql.verify import VerifyStore


class SqlStore(
    PolicyStore,
    TickStore,
    RunStore,
    BackupStore,
    RestoreStore,
    VerifyStore,
    AlertStore,
    StatsStore,
    CredentialStore,
):
    """Durable state of stackback: policies, schedules, runs, backups, artifacts.

    Each part lives in its own module (``policies``, ``tick``, ``runs``,
    ``backups``) over ``base.SqlBase``'s engine and sessions.
    """

    @classmethod
    def from_url(cls, url: str, *, check_schema: bool = True) -> SqlStore:
        return cls(create_db_engine(url), check_schema=check_schema)


__all__ = [
    "BackupFilter",
    "DuePolicy",
    "DueSchedule",
    "NewRun",
    "RunFilter",
    "ScheduleState",
    "SqlStore",
    "StepNote",
    "TickPlan",
]


if TYPE_CHECKING:  # the type checker proves the adapter satisfies its port
    from stackback.ports import CredentialStore as CredentialPort
    from stackback.ports import Store

    def _conforms_to_port(store: SqlStore) -> Store:
        return store

    def _keeps_credentials(store: SqlStore) -> CredentialPort:
        return store
