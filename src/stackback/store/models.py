"""SQLAlchemy table definitions. Alembic migrations must match these (a test checks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stackback.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ACTIVE_STATES_SQL = "state IN ('snapshotting', 'waiting', 'rotating')"
SNAPSHOT_STATES_SQL = "state IN ('snapshotting', 'waiting')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


SELECTOR_POLICIES_SQL = "selector_key IS NOT NULL"
NO_PROJECT_SQL = "project IS NULL"


class PolicyRow(Base):
    __tablename__ = "policies"
    __table_args__ = (
        # The tick asks which selector policies are due before it locks anything: few
        # policies have a selector, and this keeps that question off a scan of all of them.
        Index(
            "ix_policies_with_selector",
            "id",
            sqlite_where=text(SELECTOR_POLICIES_SQL),
            postgresql_where=text(SELECTOR_POLICIES_SQL),
        ),
        # names are unique within a project (and among policies of no project); a
        # project's policies in name order (the API's pages), every policy by (name, id)
        Index("uq_policies_project_name", "project", "name", unique=True),
        Index(
            "uq_policies_name_without_project",
            "name",
            unique=True,
            sqlite_where=text(NO_PROJECT_SQL),
            postgresql_where=text(NO_PROJECT_SQL),
        ),
        Index("ix_policies_name_page", "name", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    cloud: Mapped[str | None] = mapped_column(String(255))
    project: Mapped[str | None] = mapped_column(String(255))
    targets: Mapped[list[str]] = mapped_column(JSON)
    selector_key: Mapped[str | None] = mapped_column(String(255))
    selector_value: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    window_minutes: Mapped[int] = mapped_column(Integer)
    retention: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    consistency: Mapped[str] = mapped_column(String(16), server_default="crash")
    consistency_fallback: Mapped[str] = mapped_column(String(16), server_default="crash")
    max_pause_seconds: Mapped[int] = mapped_column(Integer, server_default="60")
    # the verify schedule: its cron, the throwaway server's flavor and network, the pick
    verify_cron: Mapped[str | None] = mapped_column(String(255))
    verify_flavor: Mapped[str | None] = mapped_column(String(255))
    verify_network: Mapped[str | None] = mapped_column(String(255))
    verify_pick: Mapped[str | None] = mapped_column(String(32))
    verify_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    orphans: Mapped[str] = mapped_column(String(64), server_default="keep")
    # chain kinds (database and volume backups): when a backup is full, incrementals between
    full_every: Mapped[int | None] = mapped_column(Integer)
    full_cron: Mapped[str | None] = mapped_column(String(255))


class ScheduleRow(Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("policies.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    cron: Mapped[str] = mapped_column(String(255))
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deferred_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("policy_id", "target", "scheduled_for", name="uq_runs_occurrence"),
        Index("ix_runs_claimable", "state", "not_before"),
        # keyset pages of the run list: (scheduled_for desc, id), within a project or not
        Index("ix_runs_page", "scheduled_for", "id"),
        Index("ix_runs_project_page", "project", "scheduled_for", "id"),
        Index("ix_runs_policy_page", "policy_id", "scheduled_for", "id"),
        Index(
            "uq_runs_one_active_per_target",
            "target",
            unique=True,
            sqlite_where=text(ACTIVE_STATES_SQL),
            postgresql_where=text(ACTIVE_STATES_SQL),
        ),
        # The same server reached by name in one run and by id in another (set at start).
        Index(
            "uq_runs_one_active_per_server",
            "server_id",
            unique=True,
            sqlite_where=text(ACTIVE_STATES_SQL),
            postgresql_where=text(ACTIVE_STATES_SQL),
        ),
        # The per-host limit counts a host's snapshots in progress.
        Index(
            "ix_runs_snapshotting_host",
            "host",
            sqlite_where=text(SNAPSHOT_STATES_SQL),
            postgresql_where=text(SNAPSHOT_STATES_SQL),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    policy_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("policies.id", ondelete="SET NULL"), index=True
    )
    policy_name: Mapped[str | None] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255), index=True)
    target_name: Mapped[str | None] = mapped_column(String(255))
    server_id: Mapped[str | None] = mapped_column(String(255))
    """The server the target resolved to when the run started."""
    host: Mapped[str | None] = mapped_column(String(255))
    """The server's compute host (``hostId`` or the admin's host name), learnt at its start."""
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    error_id: Mapped[str | None] = mapped_column(String(32))
    backup_id: Mapped[str | None] = mapped_column(String(36))
    trigger: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(64))
    cloud: Mapped[str | None] = mapped_column(String(255))
    retention: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    project: Mapped[str | None] = mapped_column(String(255))


class RunStepRow(Base):
    __tablename__ = "run_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)


class BackupRow(Base):
    __tablename__ = "backups"
    __table_args__ = (
        # keyset pages of the backup list: (created_at desc, id), within a project or not
        Index("ix_backups_page", "created_at", "id"),
        Index("ix_backups_project_page", "project", "created_at", "id"),
        # what still needs a stored credential (``credential:<id>``) before it is revoked
        Index("ix_backups_cloud", "cloud"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    policy_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("policies.id", ondelete="SET NULL"), index=True
    )
    policy_name: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    target_name: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    cloud: Mapped[str | None] = mapped_column(String(255))
    project: Mapped[str | None] = mapped_column(String(255))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the run whose retention asked for this deletion (its deletion budget holds across resumes)
    deletion_run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # the deletion must leave the target another good backup (re-checked by the collector)
    deletion_guarded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # what a restore needs of the source server (flavor, networks, volumes...), at backup time
    restore_source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the consistency level a whole-server backup obtained, and how
    consistency: Mapped[str | None] = mapped_column(String(16))
    consistency_detail: Mapped[str | None] = mapped_column(Text)
    # the last verification: passed/failed, why, when, and the time its restore took to ACTIVE
    verify_result: Mapped[str | None] = mapped_column(String(16))
    verify_reason: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verify_active_seconds: Mapped[float | None] = mapped_column(Float)
    verify_restore_id: Mapped[str | None] = mapped_column(String(36))
    # when the backup's server was last seen to exist, and first found gone (orphaned)
    source_last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source_gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # in a chain of incremental backups: the backup this one is an increment of
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("kind", "cloud_id", name="uq_artifacts_cloud_object"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    backup_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("backups.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    cloud_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    delete_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


ACTIVE_RESTORES_SQL = "state IN ('pending', 'running', 'cleaning')"


class RestoreRow(Base):
    __tablename__ = "restores"
    __table_args__ = (
        Index("ix_restores_claimable", "state", "not_before"),
        Index("ix_restores_page", "created_at", "id"),
        Index("ix_restores_project_page", "project", "created_at", "id"),
        # Retention asks whether a restore in progress reads a backup before forgetting it.
        Index(
            "ix_restores_active_backup",
            "backup_id",
            sqlite_where=text(ACTIVE_RESTORES_SQL),
            postgresql_where=text(ACTIVE_RESTORES_SQL),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    backup_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("backups.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    cloud: Mapped[str | None] = mapped_column(String(255))
    project: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    server_id: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    error_id: Mapped[str | None] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verify_result: Mapped[str | None] = mapped_column(String(16))
    verify_reason: Mapped[str | None] = mapped_column(Text)
    active_seconds: Mapped[float | None] = mapped_column(Float)


class AlertStateRow(Base):
    """What was last told about one subject (policy/target) and condition."""

    __tablename__ = "alert_states"

    subject: Mapped[str] = mapped_column(String(600), primary_key=True)
    condition: Mapped[str] = mapped_column(String(32), primary_key=True)
    target: Mapped[str] = mapped_column(String(255))
    target_name: Mapped[str | None] = mapped_column(String(255))
    policy_id: Mapped[str | None] = mapped_column(String(36))
    policy: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[str] = mapped_column(Text)


class AlertDeliveryRow(Base):
    """One alert sent (or not) to one channel."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(32))
    condition: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(600))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class CredentialRow(Base):
    """A trust or application credential a policy acts through (secrets sealed)."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    keystone_id: Mapped[str] = mapped_column(String(64))
    sealed_secret: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detail: Mapped[str | None] = mapped_column(Text)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
