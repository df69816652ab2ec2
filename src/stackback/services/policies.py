"""Creating, changing and inspecting backup policies (no cloud is contacted here)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from stackback.chains import ChainRule
from stackback.consistency import (
    DEFAULT_MAX_PAUSE_SECONDS,
    ConsistencyLevel,
    Fallback,
    check_max_pause,
    parse_fallback,
    parse_level,
)
from stackback.databases import check_selector
from stackback.errors import (
    CloudError,
    Conflict,
    InvalidInput,
    NotFound,
    PolicyChanged,
    ServerLookupFailed,
)
from stackback.policy import (
    IMPLEMENTED_KINDS,
    LABEL_MAX,
    NAME_MAX,
    VOLUME_KINDS,
    Backup,
    BackupKind,
    OrphanRule,
    Policy,
    Run,
    Selector,
    check_length,
)
from stackback.ports import Clock, ServerInfo, Store, VerificationStore
from stackback.retention import RetentionPolicy
from stackback.schedule import CronSchedule, parse_timezone, shortest_interval, validate_cron
from stackback.services.servers import Coverage, ServerDirectory, coverage
from stackback.verification import Verification, VerifySettings

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
    id: str | None = None
    """The id a new policy gets (a policy file re-applied after a database loss); else new."""
    keep_all: bool = False
    """Say so to mean a policy without keep rules (it never forgets a backup)."""
    consistency: str | None = None
    fallback: str | None = None
    max_pause_seconds: int | None = None
    verify_cron: str | None = None
    """The verify schedule's cron ('': no verify schedule any more)."""
    verify_flavor: str | None = None
    """The throwaway server's flavor ('': the backup's recorded one)."""
    verify_network: str | None = None
    """Its network ('': none)."""
    verify_pick: str | None = None
    orphans: str | None = None
    """``keep``, ``expire-after DURATION`` or ``keep-last N`` (see ``OrphanRule.parse``)."""
    project: str | None = None
    """The project a new policy belongs to (None: none, as the CLI's); kept on update."""
    volumes: tuple[str, ...] | None = None
    """Cinder volumes (ids or names) of a volume policy: its targets, as ``--volume`` names them."""
    volume_selector: str | None = None
    """A volume policy's ``--volume-selector KEY=VALUE`` (volume metadata)."""
    full_every: int | None = None
    """A volume-backup policy: a full backup every N (0: no longer)."""
    full_cron: str | None = None
    """A volume-backup policy: a full backup on this cron ('': no longer)."""


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
    verify_next: datetime | None = None
    """When its verify cron next fires (UTC)."""
    last_verification: tuple[str, Verification] | None = None
    """(backup id, verdict) of its most recent verification."""


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


Named = TypeVar("Named", Backup, Run)


def with_current_policy_names(store: Store, items: list[Named]) -> list[Named]:
    """Runs or backups, each naming its policy as it is called now (a renamed policy's new
    name shows; a deleted policy's last name stays)."""
    if not any(item.policy_id for item in items):
        return items
    names = current_policy_names(store)
    return [
        replace(item, policy_name=names[item.policy_id])
        if item.policy_id in names and item.policy_name != names[item.policy_id]
        else item
        for item in items
    ]


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


def _check_window_fits(crons: Sequence[str], timezone: str, window: int, now: datetime) -> None:
    """A start window longer than the time between two fires would overlap the next one."""
    gap = shortest_interval([CronSchedule(c, timezone) for c in crons], now)
    if gap is not None and timedelta(minutes=window) > gap:
        raise InvalidInput(
            f"--window {window} is longer than the {int(gap.total_seconds() // 60)} minutes "
            f"between two runs of {' / '.join(crons)} in {timezone}: a run could still be "
            "starting when the next is due; use a window of at most that",
            field="window",
        )


def _verify_settings(current: VerifySettings | None, spec: PolicySpec) -> VerifySettings | None:
    """The verify schedule ``spec`` gives over ``current`` (None: none)."""
    verify = current
    if spec.verify_cron is not None:
        if not spec.verify_cron.strip():
            verify = None
        else:
            cron = check_length(validate_cron(spec.verify_cron), NAME_MAX, "--verify-cron")
            verify = replace(verify, cron=cron) if verify else VerifySettings(cron)
    others = (spec.verify_flavor, spec.verify_network, spec.verify_pick)
    if verify is None:
        if any(others):
            raise InvalidInput(
                "--verify-flavor, --verify-network and --verify-pick need a --verify-cron",
                field="verify-cron",
            )
        return None
    for value, option in zip(
        others, ("--verify-flavor", "--verify-network", "--verify-pick"), strict=True
    ):
        if value:
            check_length(value, NAME_MAX, option)
    return VerifySettings(
        cron=verify.cron,
        flavor=verify.flavor if spec.verify_flavor is None else (spec.verify_flavor or None),
        network=verify.network if spec.verify_network is None else (spec.verify_network or None),
        pick=verify.pick if not spec.verify_pick else spec.verify_pick,
    )


def _volume_targets(spec: PolicySpec, kind: BackupKind, base: Policy | None) -> PolicySpec:
    """``spec`` with its ``--volume``/``--volume-selector`` as the policy's targets; servers
    for a volume kind, volumes for a server kind, are refused."""
    volume_kind = kind in VOLUME_KINDS
    named_volumes = spec.volumes is not None or spec.volume_selector is not None
    named_servers = spec.targets is not None or spec.selector is not None
    if volume_kind and named_servers:
        raise InvalidInput(
            f"a {kind.value} policy backs up volumes: give --volume or --volume-selector, "
            "not --server or --selector",
            field="targets",
        )
    if named_volumes and not volume_kind:
        raise InvalidInput(
            f"--volume and --volume-selector need --kind volume-snapshot or volume-backup, "
            f"not {kind.value}",
            field="targets",
        )
    if (
        base is not None
        and (base.kind in VOLUME_KINDS) != volume_kind
        and not (named_volumes or named_servers)
    ):
        raise InvalidInput(
            f"changing the kind from {base.kind.value} to {kind.value} changes what it backs "
            "up: give its new targets too",
            field="targets",
        )
    if spec.volumes is not None and any(not v.strip() for v in spec.volumes):
        raise InvalidInput("--volume needs a volume id or name", field="targets")
    if spec.volumes is not None and spec.volume_selector is not None:
        raise InvalidInput("give either --volume or --volume-selector, not both", field="targets")
    if not named_volumes:
        return spec
    return replace(spec, targets=spec.volumes, selector=spec.volume_selector)


def _full_rule(
    base: Policy | None, spec: PolicySpec, timezone: str
) -> tuple[int | None, str | None]:
    """``--full-every`` / ``--full-cron`` over the base's (0 and '' drop them; with both, a
    backup is full when either asks for it)."""
    full_every = base.full_every if base else None
    full_cron = base.full_cron if base else None
    if spec.full_every is not None:
        full_every = spec.full_every or None
    if spec.full_cron is not None:
        full_cron = (
            check_length(validate_cron(spec.full_cron), NAME_MAX, "--full-cron")
            if spec.full_cron.strip()
            else None
        )
    ChainRule(full_every, full_cron, timezone)
    return full_every, full_cron


def _validate_id(policy_id: str) -> str:
    try:
        return str(uuid.UUID(policy_id))
    except ValueError:
        raise InvalidInput(f"a policy id must be a UUID, not {policy_id!r}", field="id") from None


class PolicyService:
    """Policies and the Rackspace-style per-server shortcuts."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        servers: ServerDirectory | None = None,
        *,
        release_credential: Callable[[str | None], object] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.servers = servers
        """Asks the policy's cloud whether the servers it names exist; None: never asked."""
        self.release_credential = release_credential
        """Gives up the stored credential (``credential:<id>``) of a deleted policy that no
        other policy uses (``PolicyCredentials.release``: retired while the policy's backups
        still need it, revoked once nothing does); None: never done."""

    def _check_servers(self, policy: Policy, targets: Sequence[str], offline: bool) -> None:
        """Refuse servers the policy's cloud does not have (only where a cloud is named)."""
        if policy.kind in VOLUME_KINDS:  # its volumes are looked up when it runs
            return
        if offline or self.servers is None or policy.cloud is None:
            return
        if policy.kind is BackupKind.DATABASE_BACKUP:  # Trove instances: checked at each run
            return
        self.servers.require_all(targets, policy.cloud)

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
        default_kind = base.kind if base else BackupKind.SERVER_IMAGE
        kind = _parse_kind(spec.kind) if spec.kind else default_kind
        spec = _volume_targets(spec, kind, base)
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
        kind = (
            _parse_kind(spec.kind)
            if spec.kind
            else (base.kind if base else BackupKind.SERVER_IMAGE)
        )
        if kind is BackupKind.DATABASE_BACKUP and selector is not None:
            check_selector(selector)
        full_every, full_cron = _full_rule(base, spec, timezone)
        window = (
            spec.window_minutes
            if spec.window_minutes is not None
            else (base.window_minutes if base else 0)
        )
        if window < 0 or window > 24 * 60:
            raise InvalidInput("--window must be between 0 and 1440 minutes", field="window")
        if schedules and window and (base is None or spec.window_minutes or spec.schedules):
            _check_window_fits(schedules, timezone, window, self.clock.now())
        if spec.cloud is not None:
            check_length(spec.cloud, NAME_MAX, "--os-cloud")
        if spec.label is not None:
            check_length(spec.label, LABEL_MAX, "--label")
        policy = Policy(
            id=base.id if base else (_validate_id(spec.id) if spec.id else str(uuid.uuid4())),
            name=name,
            kind=kind,
            schedules=schedules,
            timezone=timezone,
            retention=self._retention(base, spec),
            targets=targets,
            selector=selector,
            window_minutes=window,
            enabled=spec.enabled if spec.enabled is not None else (base.enabled if base else True),
            cloud=(spec.cloud or None)
            if spec.cloud is not None
            else (base.cloud if base else None),
            label=(spec.label or None)
            if spec.label is not None
            else (base.label if base else None),
            consistency=parse_level(spec.consistency)
            if spec.consistency is not None
            else (base.consistency if base else ConsistencyLevel.CRASH),
            fallback=parse_fallback(spec.fallback)
            if spec.fallback is not None
            else (base.fallback if base else Fallback.CRASH),
            max_pause_seconds=check_max_pause(spec.max_pause_seconds)
            if spec.max_pause_seconds is not None
            else (base.max_pause_seconds if base else DEFAULT_MAX_PAUSE_SECONDS),
            verify=_verify_settings(base.verify if base else None, spec),
            orphans=OrphanRule.parse(spec.orphans)
            if spec.orphans is not None
            else (base.orphans if base else OrphanRule()),
            project=base.project if base else spec.project,
            full_every=full_every,
            full_cron=full_cron,
        )
        keeps_all_unasked = policy.retention.is_empty() and not spec.keep_all
        if keeps_all_unasked and (base is None or spec.retention is not None):
            raise InvalidInput(
                "a policy without --keep-* rules would keep every backup forever: "
                "give --keep-last/--keep-daily/... rules, or --keep-all to mean it",
                field="retention",
            )
        return policy

    @staticmethod
    def _retention(base: Policy | None, spec: PolicySpec) -> RetentionPolicy:
        if spec.keep_all:
            if spec.retention is not None and not spec.retention.is_empty():
                raise InvalidInput(
                    "--keep-all keeps every backup: it cannot go with --keep-* rules",
                    field="retention",
                )
            return RetentionPolicy()
        if spec.retention is not None:
            return spec.retention
        return base.retention if base is not None else RetentionPolicy()

    def preview(self, spec: PolicySpec, base: Policy | None = None) -> Policy:
        """The policy ``spec`` would give, created or applied over ``base``; nothing is written."""
        return self._build(base, spec)

    def create(self, spec: PolicySpec, *, offline: bool = False) -> Policy:
        """Create a policy; each server it names must exist in its cloud unless ``offline``."""
        policy = self._build(None, spec)
        self._check_servers(policy, policy.targets, offline)
        return self.store.create_policy(policy, self._next_fires(policy), now=self.clock.now())

    def update(
        self, ref: str, spec: PolicySpec, *, offline: bool = False, project: str | None = None
    ) -> Policy:
        """Apply ``spec`` to the policy as it is when written (re-read if changed meanwhile);
        ``ref`` names one of ``project``'s policies, if given."""
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            current = self.store.get_policy(ref, project=project)
            policy = self._build(current, spec)
            if attempt == 1 and spec.targets is not None:
                added = [t for t in policy.targets if t not in current.targets]
                self._check_servers(policy, added, offline)
            timing_changed = (
                policy.schedules != current.schedules
                or policy.timezone != current.timezone
                or policy.enabled != current.enabled
            )
            next_fires = self._next_fires(policy) if timing_changed else None
            try:
                updated = self.store.update_policy(
                    policy, next_fires, now=self.clock.now(), read_at=current.updated_at
                )
            except PolicyChanged:
                if attempt == UPDATE_ATTEMPTS:
                    raise
                continue
            if current.cloud != updated.cloud and self.release_credential is not None:
                self.release_credential(current.cloud)  # the credential it acted through
            return updated
        raise AssertionError("unreachable")

    def set_enabled(self, ref: str, enabled: bool, *, project: str | None = None) -> Policy:
        return self.update(ref, PolicySpec(enabled=enabled), project=project)

    def run_now(self, ref: str, *, project: str | None = None) -> list[Run]:
        """One on-demand run per target of the policy, due now (``policy run``).

        A selector is resolved now, by asking the policy's cloud. The runs carry the
        policy (its kind, label and cloud), so that its retention rotates them as it
        does scheduled ones; the schedules are left as they are.
        """
        policy = self.store.get_policy(ref, project=project)
        targets = list(policy.targets)
        if policy.selector is not None:
            targets = [server.id for server in self._selected(policy, policy.selector)]
        if not targets:
            raise Conflict(f"policy {policy.name!r} has no target to back up now")
        now = self.clock.now()
        return [
            self.store.create_manual_run(
                target=target,
                now=now,
                label=policy.label,
                retention=None,
                cloud=policy.cloud,
                policy=policy,
            )
            for target in targets
        ]

    def _selected(self, policy: Policy, selector: Selector) -> list[ServerInfo]:
        if self.servers is None:
            raise InvalidInput(f"policy {policy.name!r} has a selector: a cloud is needed")
        where = f"cloud {policy.cloud!r}" if policy.cloud else "the cloud"
        try:
            servers = self.servers.clouds(policy.cloud).find_servers(selector)
        except CloudError as error:
            raise ServerLookupFailed(
                f"cannot list the servers of {where} for selector {selector} "
                f"({error.code}: {error.message})"
            ) from error
        return sorted(servers, key=lambda server: server.id)

    def get(self, ref: str, *, project: str | None = None) -> Policy:
        """The policy with id or name ``ref``: only ``project``'s, if given (names are unique
        within a project; without one, a name several projects use asks for the id)."""
        return self.store.get_policy(ref, project=project)

    def list_policies(self) -> list[Policy]:
        return self.store.list_policies()

    def delete(self, refs: Sequence[str], *, project: str | None = None) -> list[Policy]:
        # All or nothing: resolve every name before deleting any, and delete each policy
        # once even when it is named twice (by name and by id, say).
        policies = {p.id: p for p in (self.store.get_policy(ref, project=project) for ref in refs)}
        now = self.clock.now()
        deleted = [self.store.delete_policy(policy_id, now=now) for policy_id in policies]
        if self.release_credential is not None:
            in_use = {policy.cloud for policy in self.store.list_policies()}
            for cloud in {policy.cloud for policy in deleted} - in_use:
                self.release_credential(cloud)
        return deleted

    def view(self, ref: str, *, project: str | None = None) -> PolicyView:
        """A policy (``project``'s, if given) with its schedules' next run times."""
        return self.view_of(self.store.get_policy(ref, project=project))

    def views(
        self, *, project: str | None = None, limit: int | None = None, marker: str | None = None
    ) -> list[PolicyView]:
        """Every policy (of ``project``, if given; a page of ``limit`` after the policy
        ``marker``) with its schedules' next run times."""
        policies = self.store.list_policies(project=project, limit=limit, marker=marker)
        return [self.view_of(policy) for policy in policies]

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
        verify_next, last = None, None
        if isinstance(self.store, VerificationStore):
            verify_next = self.store.verify_next_at(policy.id)
            last = self.store.last_policy_verification(policy.id)
        return PolicyView(policy, tuple(views), verify_next, last)

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
        cloud: str | None = None,
        offline: bool = False,
        project: str | None = None,
    ) -> Policy:
        """A daily policy for one server keeping N backups; enabling again updates it.

        The policy belongs to ``project``, and is looked for among its policies (its name
        is unique there: other projects have their own for servers of the same name).
        The policy records ``cloud`` (the one the server is in), which is asked first
        whether the server exists unless ``offline``.
        """
        if retention is not None and retention < 1:
            raise InvalidInput("--retention must be at least 1", field="retention")
        name = self.shortcut_name(server)
        if len(name) > NAME_MAX:
            raise InvalidInput(
                f"the per-server policy name would be {len(name)} characters long (at most "
                f"{NAME_MAX}): use `stackback policy create` with another name",
                field="server",
            )
        if cloud is not None:
            check_length(cloud, NAME_MAX, "--os-cloud")
        if not offline and self.servers is not None and cloud is not None:
            self.servers.require(server, cloud)
        try:
            current = self._shortcut_policy(server, project)
        except NotFound:
            return self.create(
                PolicySpec(
                    name=name,
                    targets=(server,),
                    schedules=(cron or DEFAULT_SHORTCUT_CRON,),
                    timezone=timezone or "UTC",
                    window_minutes=DEFAULT_SHORTCUT_WINDOW,
                    retention=RetentionPolicy(last=retention or DEFAULT_SHORTCUT_RETENTION),
                    cloud=cloud,
                    project=project,
                ),
                offline=True,
            )
        spec = PolicySpec(
            enabled=True,
            schedules=(cron,) if cron else None,
            timezone=timezone,
            retention=replace(current.retention, last=retention) if retention else None,
            cloud=cloud,
        )
        return self.update(current.id, spec, offline=True, project=project)

    def server_coverage(
        self, server: str, cloud: str | None, *, project: str | None = None
    ) -> Coverage:
        """Which policies back ``server`` up, from what ``cloud`` says of it (if one is named).

        Explicit policies name it by name or id; selector policies count when its real
        metadata matches (when the cloud was not asked, every selector policy may). Only
        ``project``'s policies, if given.
        """
        found: ServerInfo | None = None
        checked = self.servers is not None and cloud is not None
        if self.servers is not None and cloud is not None:
            try:
                found = self.servers.require(server, cloud)
            except NotFound:
                found = None
        return coverage(server, found, checked, self.store.list_policies(project=project))

    def disable_server(self, server: str, *, project: str | None = None) -> Policy:
        """Stop the shortcut policy of a server (``project``'s, if given); its backups stay."""
        try:
            return self.set_enabled(self._shortcut_policy(server, project).id, False)
        except NotFound:
            raise NotFound(f"server {server!r} has no backup schedule to disable") from None

    def _shortcut_policy(self, server: str, project: str | None = None) -> Policy:
        """The server's per-server policy (``project``'s, if given); ``Conflict`` if that name
        backs up something else."""
        policy = self.store.get_policy(self.shortcut_name(server), project=project)
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
