"""Persistence: SQLAlchemy models, Alembic migrations and the SQL store."""

from stackback.store.database import create_db_engine, ensure_migrated, upgrade
from stackback.store.sql import (
    BackupFilter,
    DueSchedule,
    NewRun,
    RunFilter,
    ScheduleState,
    SqlStore,
    TickPlan,
)

__all__ = [
    "BackupFilter",
    "DueSchedule",
    "NewRun",
    "RunFilter",
    "ScheduleState",
    "SqlStore",
    "TickPlan",
    "create_db_engine",
    "ensure_migrated",
    "upgrade",
]
