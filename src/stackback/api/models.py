"""The API's request bodies and the documented shapes of its answers.

Answers are the dicts of ``stackback.views`` (the CLI's ``-f json``); the models here
document them in the OpenAPI document and check them on the way out (``extra="allow"``:
a key added to a view is returned before it is documented here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from stackback.consistency import MAX_PAUSE_LIMIT
from stackback.retention import MAX_KEEP_COUNT

Name = Field(min_length=1, max_length=255)
Text255 = Field(default=None, max_length=255)
Count = Field(default=None, ge=0, le=MAX_KEEP_COUNT)
DurationText = Field(default=None, max_length=64)
LONGEST_TIMEOUT_SECONDS = 7 * 24 * 3600


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- answers ----------------------------------------------------------------------------


class ErrorDetail(Shape):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    error: ErrorDetail


class Schedule(Shape):
    cron: str
    next_run: datetime | None = Field(description="In the policy's time zone.")
    next_run_utc: datetime | None
    last_fired_at: datetime | None
    deferred_occurrence: datetime | None
    retry_at: datetime | None


class VerifySettingsOut(Shape):
    cron: str
    flavor: str | None
    network: str | None
    pick: str
    next_run_utc: datetime | None


class VerificationOut(Shape):
    result: str
    reason: str | None
    verified_at: datetime
    active_seconds: float | None
    restore_id: str | None


class LastVerification(VerificationOut):
    backup_id: str


class PolicyOut(Shape):
    id: str
    name: str
    kind: str
    targets: list[str]
    selector: str | None
    schedules: list[Schedule]
    timezone: str = Field(description="The zone its cron schedules are read in.")
    window_minutes: int
    retention: dict[str, int | str]
    retention_description: str
    enabled: bool
    cloud: str | None
    label: str | None
    consistency: str
    fallback: str
    max_pause_seconds: int
    orphans: str
    full_every: int | None = None
    full_cron: str | None = None
    created_at: datetime | None
    updated_at: datetime | None
    verify: VerifySettingsOut | None
    last_verification: LastVerification | None
    project: str | None


class Artifact(Shape):
    kind: str
    id: str
    status: str
    size: int | None
    error: str | None
    delete_attempts: int


class BackupOut(Shape):
    id: str
    target: str
    target_name: str | None
    policy: str | None
    policy_id: str | None
    label: str | None
    kind: str
    status: str
    protected: bool
    created_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    reasons: list[str]
    run_id: str | None
    error: str | None
    deletion_run_id: str | None
    deletion_guarded: bool
    artifacts: list[Artifact]
    consistency: str | None
    consistency_detail: str | None
    verification: VerificationOut | None
    orphaned: bool
    source_last_seen_at: datetime | None
    source_gone_at: datetime | None
    parent_id: str | None
    project: str | None
    timezone: str | None = Field(
        default=None, description="Its policy's zone (in list and show; times are UTC)."
    )
    chain: list[str] | None = Field(
        default=None,
        description="In show, for an incremental kind (volume-backup, database-backup): the "
        "ids of the backups it depends on, its full backup first, down to its parent.",
    )
    children: list[str] | None = Field(
        default=None,
        description="In show, for an incremental kind: the ids of the live backups that are "
        "increments of it (it is deleted only after them).",
    )


class RunOut(Shape):
    id: str
    policy: str | None
    policy_id: str | None
    target: str
    target_name: str | None
    trigger: str
    label: str | None
    state: str
    scheduled_for: datetime
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    backup_id: str | None
    error: str | None
    error_id: str | None
    next_try_at: datetime | None
    project: str | None
    timezone: str | None = Field(
        default=None, description="Its policy's zone (in list and show; times are UTC)."
    )


class Step(Shape):
    name: str
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str


class RunDetailOut(RunOut):
    lease_owner: str | None
    lease_expires_at: datetime | None
    lease_attempt: int
    steps: list[Step]


class RestoreOut(Shape):
    id: str
    backup_id: str
    project: str | None = None
    mode: str
    state: str
    name: str | None
    server_id: str | None
    flavor: str | None
    image_id: str | None
    networks: list[str]
    created: list[dict[str, Any]]
    error: str | None
    error_id: str | None
    cancel_requested: bool
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime
    notes: list[str]
    checks: dict[str, Any] | None
    verify_result: str | None
    verify_reason: str | None
    active_seconds: float | None
    plan: dict[str, Any]
    steps: list[dict[str, Any]]


class StatusOut(Shape):
    policy: str
    policy_id: str
    target: str
    target_name: str | None
    verdict: Literal["ok", "late", "failing", "never"]
    reason: str
    newest_good_at: datetime | None
    age_seconds: int | None
    due_since: datetime | None
    enabled: bool


class PreviewOut(Shape):
    backup: str
    target: str
    created_at: datetime
    action: Literal["keep", "forget"]
    reasons: list[str]


class CoveringPolicy(PolicyOut):
    covers: str


class ServerOut(Shape):
    server: str
    server_exists: bool | None = Field(description="None: no cloud was asked.")
    server_id: str | None
    policies: list[CoveringPolicy]


class ServerDisabled(Shape):
    policy: PolicyOut
    still_backed_up_by: list[str]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_marker`` is the marker of the next page (None: the last)."""

    items: list[T]
    next_marker: str | None


# -- request bodies ---------------------------------------------------------------------


class RetentionIn(Body):
    last: int | None = Count
    hourly: int | None = Count
    daily: int | None = Count
    weekly: int | None = Count
    monthly: int | None = Count
    yearly: int | None = Count
    within: str | None = DurationText
    within_hourly: str | None = DurationText
    within_daily: str | None = DurationText
    within_weekly: str | None = DurationText
    within_monthly: str | None = DurationText
    within_yearly: str | None = DurationText


class VerifyIn(Body):
    cron: str = Field(min_length=1, max_length=255)
    flavor: str | None = Text255
    network: str | None = Text255
    pick: str | None = Field(default=None, max_length=32)


class PolicyFields(Body):
    targets: list[str] | None = Field(default=None, max_length=1000)
    selector: str | None = Text255
    kind: str | None = Field(default=None, max_length=32)
    schedules: list[str] | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    window_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    retention: RetentionIn | None = None
    keep_all: bool = False
    enabled: bool | None = None
    cloud: str | None = Text255
    label: str | None = Field(default=None, max_length=64)
    consistency: str | None = Field(default=None, max_length=16)
    fallback: str | None = Field(default=None, max_length=16)
    max_pause_seconds: int | None = Field(default=None, ge=1, le=MAX_PAUSE_LIMIT)
    verify: VerifyIn | None = Field(default=None, description="null: no verify schedule.")
    orphans: str | None = Field(default=None, max_length=64)
    volumes: list[str] | None = Field(
        default=None, max_length=1000, description="A volume policy's Cinder volumes."
    )
    volume_selector: str | None = Field(
        default=None, max_length=255, description="A volume policy's KEY=VALUE on metadata."
    )
    full_every: int | None = Field(
        default=None, ge=0, le=10_000, description="A chained kind: a full backup every N."
    )
    full_cron: str | None = Field(
        default=None, max_length=255, description="A chained kind: full backups on this cron."
    )


class ApplicationCredentialIn(Body):
    """An application credential of the caller's project that the policy acts through."""

    id: str = Field(min_length=1, max_length=255)
    secret: SecretStr = Field(min_length=1, max_length=1024, json_schema_extra={"writeOnly": True})


class PolicyCreate(PolicyFields):
    name: str = Name
    schedules: list[str] = Field(min_length=1, max_length=100)
    application_credential: ApplicationCredentialIn | None = Field(
        default=None,
        description="keystone mode: act through this application credential instead of a "
        "trust from the caller (its secret is sealed at rest and never returned).",
    )


class PolicyUpdate(PolicyFields):
    """Only the fields given change; they apply from the next run and rotation on."""

    name: str | None = Field(default=None, min_length=1, max_length=255)


class ServerEnable(Body):
    retention: int | None = Field(default=None, ge=1, le=MAX_KEEP_COUNT)
    cron: str | None = Text255
    timezone: str | None = Field(default=None, max_length=64)
    cloud: str | None = Text255


class RestoreCreate(Body):
    mode: Literal["as-new", "in-place"] = "as-new"
    name: str | None = Text255
    flavor: str | None = Text255
    network: str | None = Text255
    key_name: str | None = Text255
    security_groups: list[str] = Field(default_factory=list, max_length=100)
    availability_zone: str | None = Text255
    with_volumes: bool = False
    timeout_seconds: float = Field(default=3600, gt=0, le=LONGEST_TIMEOUT_SECONDS)


class VerifyCreate(Body):
    flavor: str | None = Text255
    network: str | None = Text255
    console_contains: str | None = Field(default=None, max_length=4096)
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout_seconds: float = Field(default=1800, gt=0, le=LONGEST_TIMEOUT_SECONDS)
