"""``stackback policy ...``: create, list, show, set, delete, enable, disable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict, TypeVar

import click

from stackback.cli.context import AppContext
from stackback.cli.options import (
    build_retention,
    given_retention,
    offline_option,
    retention_options,
)
from stackback.cli.output import emit_list, emit_object, format_option, minute, short_id, verified
from stackback.cloud import check_cloud_name
from stackback.consistency import ConsistencyLevel, Fallback
from stackback.errors import InvalidInput
from stackback.policy import BackupKind
from stackback.services.policies import PolicySpec, PolicyView
from stackback.views import policy_detail, policy_summary

pass_app = click.make_pass_decorator(AppContext)
F = TypeVar("F", bound=Callable[..., Any])


def show_detail(view: PolicyView, fmt: str, extra: Mapping[str, Any] | None = None) -> None:
    """One policy, its schedules with their next run times (and ``extra`` keys after)."""
    data = {**policy_detail(view), **(extra or {})}
    if fmt == "table":
        data["schedules"] = [
            f"{s['cron']}  next: "
            + (
                f"{s['next_run'].isoformat(timespec='minutes')} "
                f"({s['next_run_utc'].isoformat(timespec='minutes')} UTC)"
                if s["next_run"]
                else "disabled"
            )
            + (
                f"  (the {s['deferred_occurrence'].isoformat(timespec='minutes')} UTC occurrence "
                "waits for its targets, which the cloud could not list: asking again at "
                f"{s['retry_at'].isoformat(timespec='seconds')} UTC)"
                if s["deferred_occurrence"]
                else ""
            )
            for s in data["schedules"]
        ]
        data["retention"] = data.pop("retention_description")
        verify = data["verify"]
        if verify is not None:
            data["verify"] = (
                f"{verify['cron']} pick {verify['pick']}, flavor {verify['flavor'] or 'recorded'}"
                f", network {verify['network'] or 'none'}; next: "
                + (minute(verify["next_run_utc"]) + " UTC" if verify["next_run_utc"] else "off")
            )
        last = data["last_verification"]
        data["last_verification"] = (
            f"backup {short_id(last['backup_id'])}: {verified(last)}" if last else None
        )
    emit_object(data, fmt)


class VerifyOptions(TypedDict):
    verify_cron: str | None
    verify_flavor: str | None
    verify_network: str | None
    verify_pick: str | None


def volume_options(options: dict[str, Any]) -> dict[str, Any]:
    """The volume targets and chain options (taken out of ``options``) as PolicySpec fields."""
    volumes = options.pop("volumes")
    return {
        "volumes": volumes or None,
        "volume_selector": options.pop("volume_selector"),
        "full_every": options.pop("full_every"),
        "full_cron": options.pop("full_cron"),
    }


def verify_options(options: dict[str, Any]) -> VerifyOptions:
    """The ``--verify-*`` options (taken out of ``options``) as PolicySpec fields."""
    return VerifyOptions(
        verify_cron=options.pop("verify_cron"),
        verify_flavor=options.pop("verify_flavor"),
        verify_network=options.pop("verify_network"),
        verify_pick=options.pop("verify_pick"),
    )


def cron_lines(row: dict[str, Any]) -> list[str]:
    """A policy row's schedules as their cron expressions, for a table cell."""
    return [schedule["cron"] for schedule in row["schedules"]]


def policy_options(*, create: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = retention_options(func)
        options = [
            click.option(
                "--server",
                "servers",
                multiple=True,
                metavar="SERVER",
                help="Server id or name to back up (repeatable).",
            ),
            click.option(
                "--selector",
                metavar="KEY=VALUE",
                help="Back up every server whose metadata has KEY=VALUE (resolved at each run).",
            ),
            click.option(
                "--volume",
                "volumes",
                multiple=True,
                metavar="VOLUME",
                help="Cinder volume id or name to back up (repeatable; volume kinds).",
            ),
            click.option(
                "--volume-selector",
                metavar="KEY=VALUE",
                help="Back up every volume whose metadata has KEY=VALUE (volume kinds).",
            ),
            click.option(
                "--full-every",
                type=click.IntRange(min=0),
                metavar="N",
                help="volume-backup, database-backup: a full backup every N, incremental "
                "ones between (0 drops the rule: every one full).",
            ),
            click.option(
                "--full-cron",
                metavar="CRON",
                help="volume-backup, database-backup: a full backup when this cron has fired "
                "since the last full one ('' drops it).",
            ),
            click.option(
                "--cron",
                "crons",
                multiple=True,
                metavar="EXPR",
                help="5-field cron expression (repeatable).",
            ),
            click.option("--timezone", metavar="TZ", help="IANA time zone of the schedules."),
            click.option(
                "--window",
                type=int,
                metavar="MINUTES",
                help="Start window: runs spread deterministically over these minutes.",
            ),
            click.option(
                "--kind",
                type=click.Choice([k.value for k in BackupKind]),
                help="What kind of backup (default server-image).",
            ),
            click.option("--label", metavar="LABEL", help="Backup type label of this policy."),
            click.option(
                "--consistency",
                type=click.Choice([level.value for level in ConsistencyLevel]),
                help="Level a server-consistent backup tries for (default crash).",
            ),
            click.option(
                "--fallback",
                type=click.Choice([f.value for f in Fallback]),
                help="When that level cannot be had: a crash-consistent backup, or fail.",
            ),
            click.option(
                "--max-pause",
                "max_pause",
                type=int,
                metavar="SECONDS",
                help="Longest a paused backup keeps its server paused (default 60).",
            ),
            click.option(
                "--verify-cron",
                metavar="CRON",
                help="Verify its backups on this schedule ('' stops verifying).",
            ),
            click.option(
                "--verify-flavor",
                metavar="F",
                help="Flavor of the throwaway server (default: the backup's).",
            ),
            click.option(
                "--verify-network",
                metavar="N",
                help="Network of the throwaway server (default and '': none).",
            ),
            click.option(
                "--verify-pick",
                metavar="newest|random-of-N",
                help="Which backup of each target (default newest).",
            ),
            click.option(
                "--orphans",
                metavar="RULE",
                help="Backups of a server that no longer exists: keep (default), "
                "'expire-after DURATION' (e.g. 90d, from when it was last seen) or 'keep-last N'.",
            ),
        ]
        options.append(
            click.option(
                "--keep-all",
                is_flag=True,
                help="Keep every backup (no --keep-* rule); needed to mean it.",
            )
        )
        options.append(offline_option)
        if create:
            options.append(click.option("--disabled", is_flag=True, help="Create it disabled."))
        else:
            options.append(click.option("--name", "new_name", help="Rename the policy."))
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@click.group("policy")
def policy_group() -> None:
    """Backup policies: what to back up, when, and how long to keep it."""


@policy_group.command("create")
@click.argument("name")
@policy_options(create=True)
@format_option
@pass_app
def create(
    app: AppContext,
    /,
    name: str,
    servers: tuple[str, ...],
    selector: str | None,
    crons: tuple[str, ...],
    timezone: str | None,
    window: int | None,
    kind: str | None,
    label: str | None,
    consistency: str | None,
    fallback: str | None,
    max_pause: int | None,
    orphans: str | None,
    disabled: bool,
    fmt: str,
    **keep: Any,
) -> None:
    """Create a policy NAME."""
    if servers and selector:
        raise InvalidInput("give either --server or --selector, not both", field="targets")
    if not crons:
        raise InvalidInput("a policy needs at least one --cron", field="cron")
    if app.settings.cloud:
        check_cloud_name(app.settings.cloud)
    spec = PolicySpec(
        name=name,
        targets=servers or None,
        selector=selector,
        kind=kind,
        schedules=crons,
        timezone=timezone,
        window_minutes=window,
        retention=build_retention(keep),
        enabled=not disabled,
        cloud=app.settings.cloud,
        label=label,
        keep_all=keep.pop("keep_all"),
        consistency=consistency,
        fallback=fallback,
        max_pause_seconds=max_pause,
        **verify_options(keep),
        **volume_options(keep),
        orphans=orphans,
    )
    policy = app.policies.create(spec, offline=keep.pop("offline"))
    show_detail(app.policies.view(policy.id), fmt)


@policy_group.command("list")
@format_option
@pass_app
def list_(app: AppContext, /, fmt: str) -> None:
    """List policies."""
    rows = [policy_summary(v) for v in app.policies.views()]
    if fmt == "table":
        for row in rows:
            row["schedules"] = cron_lines(row)
            row["targets"] = (row["selector"] and f"selector {row['selector']}") or row["targets"]
            row["retention"] = row["retention_description"]
    emit_list(  # the kind is in `policy show` (server-image is the only one so far)
        rows,
        ["name", "targets", "schedules", "timezone", "retention", "enabled"],
        fmt,
        whole=("name", "targets", "schedules", "timezone", "enabled"),
    )


@policy_group.command("show")
@click.argument("policy")
@format_option
@pass_app
def show(app: AppContext, /, policy: str, fmt: str) -> None:
    """Show a policy and the next run time of each schedule."""
    show_detail(app.policies.view(policy), fmt)


@policy_group.command("set")
@click.argument("policy")
@policy_options(create=False)
@format_option
@pass_app
def set_(
    app: AppContext,
    /,
    policy: str,
    servers: tuple[str, ...],
    selector: str | None,
    crons: tuple[str, ...],
    timezone: str | None,
    window: int | None,
    kind: str | None,
    label: str | None,
    consistency: str | None,
    fallback: str | None,
    max_pause: int | None,
    orphans: str | None,
    new_name: str | None,
    fmt: str,
    **keep: Any,
) -> None:
    """Change a policy; options not given keep their values (--keep-X 0 drops rule X)."""
    if servers and selector:
        raise InvalidInput("give either --server or --selector, not both", field="targets")
    current = app.policies.get(policy)
    keep_all = keep.pop("keep_all")
    offline = keep.pop("offline")
    spec = PolicySpec(
        name=new_name,
        targets=servers or None,
        selector=selector,
        kind=kind,
        schedules=crons or None,
        timezone=timezone,
        window_minutes=window,
        retention=build_retention(keep, current.retention) if given_retention(keep) else None,
        label=label,
        keep_all=keep_all,
        consistency=consistency,
        fallback=fallback,
        max_pause_seconds=max_pause,
        **verify_options(keep),
        **volume_options(keep),
        orphans=orphans,
    )
    updated = app.policies.update(current.id, spec, offline=offline)
    show_detail(app.policies.view(updated.id), fmt)


@policy_group.command("delete")
@click.argument("policies", nargs=-1, required=True)
@format_option
@pass_app
def delete(app: AppContext, /, policies: tuple[str, ...], fmt: str) -> None:
    """Delete policies (their backups and run history stay)."""
    deleted = app.policies.delete(policies)
    emit_list([{"id": p.id, "name": p.name, "deleted": True} for p in deleted], ["id", "name"], fmt)


def _toggle(enabled: bool) -> Any:
    @click.argument("policy")
    @format_option
    @pass_app
    def command(app: AppContext, policy: str, fmt: str) -> None:
        updated = app.policies.set_enabled(policy, enabled)
        show_detail(app.policies.view(updated.id), fmt)

    return command


policy_group.command("enable", help="Enable a policy (schedules resume from now).")(_toggle(True))
policy_group.command("disable", help="Disable a policy (nothing is deleted).")(_toggle(False))

COMMANDS = [policy_group]
