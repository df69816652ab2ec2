"""What the routes share: paging parameters and pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from stackback.errors import NotFound
from stackback.policy import Backup, Run
from stackback.services.policies import PolicyService

MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many items.")]
Marker = Annotated[
    str | None,
    Query(
        max_length=64,
        description="The id of the last item of the previous page (the next page follows it).",
    ),
]

Item = TypeVar("Item")


def page(
    items: Sequence[Item], limit: int, view: Callable[[Item], dict[str, Any]], key: str = "id"
) -> dict[str, Any]:
    """A page of ``limit`` items read as ``limit + 1`` (the extra one says a next page exists)."""
    shown = [view(item) for item in items[:limit]]
    more = len(items) > limit
    return {"items": shown, "next_marker": shown[-1][key] if more and shown else None}


def utc(moment: datetime | None) -> datetime | None:
    """A time given without a zone is read as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def policy_zones(policies: PolicyService, items: Sequence[Backup | Run]) -> dict[str, str]:
    """The time zone of each policy the runs or backups belong to (by policy id)."""
    zones = {}
    for policy_id in {item.policy_id for item in items if item.policy_id}:
        try:
            zones[policy_id] = policies.get(policy_id).timezone
        except NotFound:  # deleted since: its runs' and backups' times stay in UTC
            continue
    return zones


def zoned(
    view: Callable[[Item], dict[str, Any]], zones: dict[str, str]
) -> Callable[[Item], dict[str, Any]]:
    """``view`` with the zone of the item's policy alongside its UTC times (``timezone``)."""

    def with_zone(item: Item) -> dict[str, Any]:
        shown = view(item)
        shown["timezone"] = zones.get(shown.get("policy_id") or "")
        return shown

    return with_zone
