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

from collections.abc import Mapping
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
