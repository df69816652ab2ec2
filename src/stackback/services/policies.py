"""Creating, changing and inspecting backup policies (no cloud is contacted here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stackback.errors import Conflict, InvalidInput, NotFound, PolicyChanged
from stackback.policy import (
    IMPLEMENTED_KINDS,
    LABEL_MAX,
    NAME_MAX,
    BackupKind,
    Policy,
    Selector,
    check_length,
)
from stackback.ports import Clock, Store
from stackback.retention import RetentionPolicy
from stackback.schedule import CronSchedule, parse_timezone, validate_cron

SHORTCUT_PREFIX = "server-"
DEFAULT_SHORTCUT_CRON = "0 1 * * *"
DEFAULT_SHORTCUT_WINDOW = 60
DEFAULT_SHORTCUT_RETENTION = 7


@dataclass(frozen=True)
class PolicySpec:
    """What a user asks for; ``None`` fields mean "not given" (keep current on update)."""

    name: str | None = None
    targets: tuple[str, ...] | None = None
    selector: str | None = None
    kind: str | None = None
    schedules: tuple[str, ...] | None = None
    timezone: str | None = None
    window_minutes: int | None = None
    retention: RetentionPolicy | None = None
    enabled: bool | None = None
    cloud: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class ScheduleView:
    cron: str
    next_local: datetime | None
    next_utc: datetime | None
    last_fired_at: datetime | None
    deferred_occurrence: datetime | None = None
    """An occurrence still waiting for its targets (the cloud could not list them yet)."""
    retry_at: datetime | None = None
    """When the deferred occurrence's targets are asked for again."""


@dataclass(frozen=True)
class PolicyView:
    """A policy with each schedule's next run time (in its zone and in UTC)."""

    policy: Policy
    schedules: tuple[ScheduleView, ...]


def _parse_kind(value: str) -> BackupKind:
    try:
        kind = BackupKind(value)
    except ValueError:
        names = ", ".join(k.value for k in BackupKind)
        raise InvalidInput(
            f"unknown kind {value!r}: expected one of {names}", field="kind"
        ) from None
    if kind not in IMPLEMENTED_KINDS:
        raise InvalidInput(f"kind {kind.value!r} is not available yet", field="kind")
    return kind


def current_policy_names(store: Store) -> dict[str, str]:
    """Each policy's name now, by id: runs and backups record the name it had then."""
    return {policy.id: policy.name for policy in store.list_policies()}


UPDATE_ATTEMPTS = 5
"""Times a policy change is recomputed when another change lands between its read and write."""


def _validate_name(name: str) -> str:
    if not name.strip() or len(name) > NAME_MAX:
        raise InvalidInput("a policy name must have 1 to 255 characters", field="name")
    if name != name.strip():  # stored as given, so that it is found as given
        raise InvalidInput(
            f"a policy name must not start or end with white space: {name!r}", field="name"
        )
    try:
        uuid.UUID(name)
    except ValueError:
        return name
    raise InvalidInput(f"a policy name must not look like a policy id: {name!r}", field="name")


class PolicyService:
    """Policies and the Rackspace-style per-server shortcuts."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _next_fires(self, policy: Policy) -> list[datetime | None]:
        if not policy.enabled:
            return [None] * len(policy.schedules)
        now = self.clock.now()
        return [CronSchedule(c, policy.timezone).next_after(now) for c in policy.schedules]

    def _build(self, base: Policy | None, spec: PolicySpec) -> Policy:
        name = _validate_name(spec.name) if spec.name is not None else (base.name if base else "")
        if not name:
            raise InvalidInput("a policy needs a name", field="name")
        timezone = (
            spec.timezone if spec.timezone is not None else (base.timezone if base else "UTC")
        )
        parse_timezone(timezone)
        schedules = (
            tuple(check_length(validate_cron(c), NAME_MAX, "--cron") for c in spec.schedules)
            if spec.schedules is not None
            else (base.schedules if base else ())
        )
        if len(set(schedules)) != len(schedules):
            raise InvalidInput("the same --cron is given twice", field="cron")
        targets = base.targets if base else ()
        selector = base.selector if base else None
        if spec.targets is not None:
            if any(not t.strip() for t in spec.targets):
                raise InvalidInput("--server needs a server id or name", field="targets")
            targets = tuple(
                dict.fromkeys(check_length(t.strip(), NAME_MAX, "--server") for t in spec.targets)
            )
            selector = None if targets else selector
        if spec.selector is not None:
            selector = Selector.parse(spec.selector)
            targets = ()
        window = (
            spec.window_minutes
            if spec.window_minutes is not None
            else (base.window_minutes if base else 0)
        )
        if window < 0 or window > 24 * 60:
            raise InvalidInput("--window must be between 0 and 1440 minutes", field="window")
        if spec.cloud is not None:
            check_length(spec.cloud, NAME_MAX, "--os-cloud")
        if spec.label is not None:
            check_length(spec.label, LABEL_MAX, "--label")
        return Policy(
            id=base.id if base else str(uuid.uuid4()),
            name=name,
            kind=_parse_kind(spec.kind)
            if spec.kind
            else (base.kind if base else BackupKind.SERVER_IMAGE),
            schedules=schedules,
            timezone=timezone,
            retention=spec.retention
            if spec.retention is not None
            else (base.retention if base else RetentionPolicy()),
            targets=targets,
            selector=selector,
            window_minutes=window,
            enabled=spec.enabled if spec.enabled is not None else (base.enabled if base else True),
            cloud=spec.cloud if spec.cloud is not None else (base.cloud if base else None),
            label=spec.label if spec.label is not None else (base.label if base else None),
        )

    def create(self, spec: PolicySpec) -> Policy:
        policy = self._build(None, spec)
        return self.store.create_policy(policy, self._next_fires(policy), now=self.clock.now())

    def update(self, ref: str, spec: PolicySpec) -> Policy:
        """Apply ``spec`` to the policy as it is when written (re-read if changed meanwhile)."""
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            current = self.store.get_policy(ref)
            policy = self._build(current, spec)
            timing_changed = (
                policy.schedules != current.schedules
                or policy.timezone != current.timezone
                or policy.enabled != current.enabled
            )
            next_fires = self._next_fires(policy) if timing_changed else None
            try:
                return self.store.update_policy(
                    policy, next_fires, now=self.clock.now(), read_at=current.updated_at
                )
            except PolicyChanged:
                if attempt == UPDATE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def set_enabled(self, ref: str, enabled: bool) -> Policy:
        return self.update(ref, PolicySpec(enabled=enabled))

    def get(self, ref: str) -> Policy:
        return self.store.get_policy(ref)

    def list_policies(self) -> list[Policy]:
        return self.store.list_policies()

    def delete(self, refs: Sequence[str]) -> list[Policy]:
        # All or nothing: resolve every name before deleting any, and delete each policy
        # once even when it is named twice (by name and by id, say).
        policies = {p.id: p for p in (self.store.get_policy(ref) for ref in refs)}
        now = self.clock.now()
        return [self.store.delete_policy(policy_id, now=now) for policy_id in policies]

    def view(self, ref: str) -> PolicyView:
        """A policy with its schedules' next run times."""
        return self.view_of(self.store.get_policy(ref))

    def views(self) -> list[PolicyView]:
        """Every policy with its schedules' next run times."""
        return [self.view_of(policy) for policy in self.store.list_policies()]

    def view_of(self, policy: Policy) -> PolicyView:
        """``policy`` (as just read or written) with its schedules' next run times."""
        zone = parse_timezone(policy.timezone)
        views = []
        for state in self.store.schedules(policy.id):
            nxt, retry_at = state.next_fire_at, None
            if state.deferred_fire_at is not None and nxt is not None:
                # next_fire_at is when the scheduler asks again; show the next cron time too.
                retry_at = nxt
                nxt = CronSchedule(state.cron, policy.timezone).next_after(state.deferred_fire_at)
            views.append(
                ScheduleView(
                    cron=state.cron,
                    next_local=nxt.astimezone(zone) if nxt else None,
                    next_utc=nxt,
                    last_fired_at=state.last_fired_at,
                    deferred_occurrence=state.deferred_fire_at,
                    retry_at=retry_at,
                )
            )
        return PolicyView(policy, tuple(views))

    # -- per-server shortcuts --------------------------------------------------------

    @staticmethod
    def shortcut_name(server: str) -> str:
        return f"{SHORTCUT_PREFIX}{server}"

    def enable_server(
        self,
        server: str,
        *,
        retention: int | None = None,
        cron: str | None = None,
        timezone: str | None = None,
    ) -> Policy:
        """A daily policy for one server keeping N backups; enabling again updates it."""
        if retention is not None and retention < 1:
            raise InvalidInput("--retention must be at least 1", field="retention")
        name = self.shortcut_name(server)
        if len(name) > NAME_MAX:
            raise InvalidInput(
                f"the per-server policy name would be {len(name)} characters long (at most "
                f"{NAME_MAX}): use `stackback policy create` with another name",
                field="server",
            )
        try:
            current = self._shortcut_policy(server)
        except NotFound:
            return self.create(
                PolicySpec(
                    name=name,
                    targets=(server,),
                    schedules=(cron or DEFAULT_SHORTCUT_CRON,),
                    timezone=timezone or "UTC",
                    window_minutes=DEFAULT_SHORTCUT_WINDOW,
                    retention=RetentionPolicy(last=retention or DEFAULT_SHORTCUT_RETENTION),
                )
            )
        spec = PolicySpec(
            enabled=True,
            schedules=(cron,) if cron else None,
            timezone=timezone,
            retention=replace(current.retention, last=retention) if retention else None,
        )
        return self.update(current.id, spec)

    def disable_server(self, server: str) -> Policy:
        """Stop the shortcut policy of a server; its backups stay."""
        try:
            return self.set_enabled(self._shortcut_policy(server).id, False)
        except NotFound:
            raise NotFound(f"server {server!r} has no backup schedule to disable") from None

    def _shortcut_policy(self, server: str) -> Policy:
        """The server's per-server policy; ``Conflict`` if that name backs up something else."""
        policy = self.store.get_policy(self.shortcut_name(server))
        if policy.name != self.shortcut_name(server) or policy.targets != (server,):
            what = f"servers {', '.join(policy.targets)}" if policy.targets else "a selector"
            raise Conflict(
                f"policy {policy.name!r} backs up {what}, not only {server!r}: "
                "change it with `stackback policy`"
            )
        return policy

    def policies_for_server(self, server: str) -> tuple[list[Policy], list[Policy]]:
        """(policies naming the server explicitly, selector policies that may cover it)."""
        explicit, by_selector = [], []
        for policy in self.store.list_policies():
            if server in policy.targets:
                explicit.append(policy)
            elif policy.selector is not None:
                by_selector.append(policy)
        return explicit, by_selector
