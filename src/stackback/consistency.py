"""Consistency levels of a whole-server backup: what to try, and what was obtained.

Pure rules (no cloud, no clock). A policy asks for a level; a run records the
level it *obtained*, from what was done and observed, never the one asked for:

* ``crash``: nothing is paused; the image and the volume snapshots are started one
  right after another (each disk is crash-consistent on its own).
* ``paused``: the server is paused while the image and every volume snapshot are
  started, and unpaused once none of them needs the pause any more (all disks at
  one instant; still not filesystem-consistent: Nova never quiesces a paused guest).
* ``quiesced``: Nova quiesces the guest through its agent during ``createImage``.
  stackback records it only where Nova's quiesce is both attempted and enforced:
  the guest agent is enabled (``hw_qemu_guest_agent=yes``) and quiesce is required
  (``os_require_quiesce=yes``: Nova refuses the snapshot instead of going on
  unquiesced), both from the image the server booted from (Nova copies them into the
  server at boot), on an ACTIVE volume-backed server (Nova snapshots every volume
  under the same freeze). An image-backed server's data volumes are snapshotted by
  stackback through Cinder, outside any freeze: they can never be quiesced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from stackback.errors import InvalidInput


class ConsistencyLevel(StrEnum):
    """How consistent a whole-server backup is, weakest first."""

    CRASH = "crash"
    PAUSED = "paused"
    QUIESCED = "quiesced"


class Fallback(StrEnum):
    """What a run does when the level asked for cannot be had."""

    CRASH = "crash"
    FAIL = "fail"


DEFAULT_MAX_PAUSE_SECONDS = 60
MAX_PAUSE_LIMIT = 3600
GUEST_AGENT_PROPERTY = "hw_qemu_guest_agent"
REQUIRE_QUIESCE_PROPERTY = "os_require_quiesce"


def parse_level(value: str) -> ConsistencyLevel:
    try:
        return ConsistencyLevel(value)
    except ValueError:
        names = ", ".join(level.value for level in ConsistencyLevel)
        raise InvalidInput(
            f"unknown consistency {value!r}: expected one of {names}", field="consistency"
        ) from None


def parse_fallback(value: str) -> Fallback:
    try:
        return Fallback(value)
    except ValueError:
        names = ", ".join(f.value for f in Fallback)
        raise InvalidInput(
            f"unknown fallback {value!r}: expected one of {names}", field="fallback"
        ) from None


def check_max_pause(seconds: int) -> int:
    if not 1 <= seconds <= MAX_PAUSE_LIMIT:
        raise InvalidInput(
            f"--max-pause must be between 1 and {MAX_PAUSE_LIMIT} seconds", field="max-pause"
        )
    return seconds


def _yes(properties: Mapping[str, str], key: str) -> bool:
    return properties.get(key, "").strip().lower() in ("yes", "true", "1")


class Action(StrEnum):
    """What a run does to the server around its snapshots."""

    NONE = "none"
    """Take the snapshots one after another (crash)."""
    PAUSE = "pause"
    """Pause the server first, unpause once the snapshots no longer need it."""
    ALREADY_PAUSED = "already-paused"
    """The server was paused before the run: snapshot it as it is, leave it paused."""
    QUIESCE = "quiesce"
    """Let Nova quiesce the guest in its ``createImage`` (volume-backed only)."""
    FAIL = "fail"
    """The level cannot be had and the fallback is to fail."""


@dataclass(frozen=True)
class Approach:
    """The action a run takes, the level it aims at and why it does not aim higher."""

    action: Action
    level: ConsistencyLevel
    reason: str = ""


def choose_approach(
    asked: ConsistencyLevel,
    fallback: Fallback,
    *,
    server_status: str,
    boot_properties: Mapping[str, str],
    volume_backed: bool,
    data_volumes: int,
) -> Approach:
    """What to do for the level ``asked`` of a server as it is now."""
    status = server_status.upper()
    if asked is ConsistencyLevel.CRASH:
        return Approach(Action.NONE, ConsistencyLevel.CRASH)
    if asked is ConsistencyLevel.PAUSED:
        if status == "PAUSED":
            return Approach(Action.ALREADY_PAUSED, ConsistencyLevel.PAUSED)
        if status == "ACTIVE":
            return Approach(Action.PAUSE, ConsistencyLevel.PAUSED)
        return fall_back(fallback, f"server is {status}: only an ACTIVE server can be paused")
    why = _cannot_quiesce(status, boot_properties, volume_backed, data_volumes)
    if why:
        return fall_back(fallback, why)
    return Approach(Action.QUIESCE, ConsistencyLevel.QUIESCED)


def _cannot_quiesce(
    status: str, properties: Mapping[str, str], volume_backed: bool, data_volumes: int
) -> str:
    if not _yes(properties, GUEST_AGENT_PROPERTY):
        return f"guest agent not enabled ({GUEST_AGENT_PROPERTY} is not yes on its boot image)"
    if not _yes(properties, REQUIRE_QUIESCE_PROPERTY):
        return (
            f"quiesce not required ({REQUIRE_QUIESCE_PROPERTY} is not yes on its boot image): "
            "Nova would go on unquiesced without saying so"
        )
    if status != "ACTIVE":
        return f"server is {status}: Nova quiesces only an ACTIVE server"
    if not volume_backed:
        if data_volumes:
            return "an image-backed server's data volumes are snapshotted outside Nova's quiesce"
        return "Nova's quiesce of an image-backed snapshot is not enforced on every driver"
    return ""


def fall_back(fallback: Fallback, reason: str) -> Approach:
    """The approach of the fallback, saying why."""
    if fallback is Fallback.FAIL:
        return Approach(Action.FAIL, ConsistencyLevel.CRASH, reason)
    return Approach(Action.NONE, ConsistencyLevel.CRASH, reason)


#: Raw cloud states during which a snapshot still needs the server paused: an image
#: ``queued`` has not been taken by the hypervisor yet (``saving`` uploads a taken one);
#: a Cinder snapshot ``creating`` may not have been cut yet (Nova keeps a guest frozen
#: until every snapshot leaves ``creating``, and so does stackback's pause).
NEEDS_PAUSE_STATES = frozenset({"queued", "creating"})


def still_needs_pause(raw_status: str) -> bool:
    """Does a snapshot in this raw Glance/Cinder state still need the pause?"""
    return raw_status in NEEDS_PAUSE_STATES


def spread_detail(seconds: float, count: int) -> str:
    """How far apart the snapshots of a backup were started."""
    if count <= 1:
        return "one snapshot"
    return f"{count} snapshots started within {seconds:.1f}s"


#: The group spec by which a Cinder group type promises consistent group snapshots.
CONSISTENT_GROUP_SPEC = "consistent_group_snapshot_enabled"


def promises_consistent_snapshots(group_specs: Mapping[str, str]) -> bool:
    """Does a group type with these specs promise consistent group snapshots
    (``consistent_group_snapshot_enabled="<is> True"``)?"""
    value = group_specs.get(CONSISTENT_GROUP_SPEC, "")
    return value.replace("<is>", "").strip().lower() == "true"


@dataclass(frozen=True)
class VolumeGroup:
    """A Cinder group (microversion 3.13+) and whether its type promises consistent snapshots."""

    id: str
    name: str
    volume_ids: tuple[str, ...]
    group_type: str
    consistent: bool
    """Its group type's specs promise consistent group snapshots (as far as they can be read)."""
    why_not: str = ""
    """Why it does not, when it does not (the specs say otherwise, or cannot be read)."""


@dataclass(frozen=True)
class GroupPlan:
    """How a backup's volumes are snapshotted: some groups whole, the other volumes one by one."""

    groups: tuple[VolumeGroup, ...]
    """Groups taken as one group snapshot each."""
    alone: tuple[str, ...]
    """Volumes taken one by one, in the order given."""
    why_alone: tuple[str, ...] = ()
    """Why a group some of these volumes are in was not taken as a group snapshot."""


def plan_groups(volumes: Sequence[str], groups: Sequence[VolumeGroup]) -> GroupPlan:
    """A group is snapshotted whole when its type promises consistent group snapshots and every
    volume of it is one of ``volumes`` (a group snapshot takes every member); else per volume."""
    wanted = set(volumes)
    together: list[VolumeGroup] = []
    why: list[str] = []
    for group in groups:
        if not wanted & set(group.volume_ids):
            continue
        others = [v for v in group.volume_ids if v not in wanted]
        if not group.consistent:
            why.append(f"group {group.id}: {group.why_not or 'its type promises no consistency'}")
        elif others:
            why.append(f"group {group.id} also holds {', '.join(others)}, not in this backup")
        elif group not in together:
            together.append(group)
    grouped = {v for group in together for v in group.volume_ids}
    return GroupPlan(tuple(together), tuple(v for v in volumes if v not in grouped), tuple(why))


def groups_detail(taken: Mapping[str, VolumeGroup], plan: GroupPlan) -> str:
    """What the backup says of its volumes: ``taken`` maps each group snapshot made to its group."""
    parts = [
        f"group snapshot {snapshot} of consistency group {group.id} ({', '.join(group.volume_ids)})"
        for snapshot, group in taken.items()
    ]
    if plan.alone:
        alone = f"per volume: {', '.join(plan.alone)}"
        if plan.why_alone:
            alone += f" ({'; '.join(plan.why_alone)})"
        parts.append(alone)
    return "volumes: " + "; ".join(parts) if parts else ""
