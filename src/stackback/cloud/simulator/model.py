"""Rows of the simulated cloud and how their raw Glance/Cinder states are computed.

States are never stored: they follow from the stored instants and the time of
the question, so the simulation advances with whatever clock reads it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stackback.cloud.bdm import snapshot_children
from stackback.cloud.states import CINDER_SNAPSHOT_STATES, GLANCE_STATES
from stackback.policy import ArtifactKind
from stackback.ports import ArtifactInfo, ArtifactRef


@dataclass(frozen=True)
class SimImage:
    """A Glance image as the simulator holds it, with its raw status now."""

    id: str
    project: str
    name: str
    status: str
    server_id: str | None
    host: str | None
    size: int | None
    properties: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    upload_at: datetime | None = None
    ready_at: datetime | None = None


@dataclass(frozen=True)
class SimSnapshot:
    """A Cinder volume snapshot as the simulator holds it, with its raw status now."""

    id: str
    project: str
    name: str
    status: str
    volume_id: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    ready_at: datetime | None = None


def instant(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def image_state(row: sqlite3.Row, now: float) -> str:
    """Glance's status of a server's snapshot at ``now``.

    A snapshot that fails is gone at once: Glance puts a failed upload back to
    ``queued`` and Nova's ``delete_image_on_error`` deletes the image (Nova 34,
    ``compute/manager.py``; Glance 33, ``api/v2/image_data.py`` ``_restore``).
    """
    if now < row["upload_at"]:
        return "queued"
    if now < row["ready_at"]:
        return "saving"
    return "deleted" if row["doomed"] else "active"


def snapshot_state(row: sqlite3.Row, now: float) -> str:
    if row["gone_at"] is not None:
        return "deleting" if now < row["gone_at"] else "deleted"
    return "creating" if now < row["ready_at"] else "available"


def to_sim_image(row: sqlite3.Row, now: float) -> SimImage:
    status = image_state(row, now)
    return SimImage(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        status=status,
        server_id=row["server_id"],
        host=row["host"],
        size=row["size"] if status == "active" else None,
        properties=json.loads(row["properties"]),
        created_at=instant(row["created_at"]),
        upload_at=instant(row["upload_at"]),
        ready_at=instant(row["ready_at"]),
    )


def to_sim_snapshot(row: sqlite3.Row, now: float) -> SimSnapshot:
    return SimSnapshot(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        status=snapshot_state(row, now),
        volume_id=row["volume_id"],
        size=row["size"],
        metadata=json.loads(row["metadata"]),
        created_at=instant(row["created_at"]),
        ready_at=instant(row["ready_at"]),
    )


def artifact_of_image(image: SimImage) -> ArtifactInfo:
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.IMAGE, image.id),
        status=GLANCE_STATES[image.status],
        name=image.name,
        size=image.size,
        metadata=dict(image.properties),
        created_at=image.created_at,
        children=snapshot_children(image.properties),
        detail=f"glance status {image.status}",
        raw_status=image.status,
    )


def artifact_of_snapshot(snapshot: SimSnapshot) -> ArtifactInfo:
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, snapshot.id),
        status=CINDER_SNAPSHOT_STATES[snapshot.status],
        name=snapshot.name,
        size=snapshot.size,
        metadata=dict(snapshot.metadata),
        created_at=snapshot.created_at,
        detail=f"cinder status {snapshot.status}",
        raw_status=snapshot.status,
    )


def earliest_slot(
    busy: Sequence[tuple[float, float]], now: float, duration: float, limit: int | None
) -> float:
    """When a job of ``duration`` can start so that at most ``limit`` jobs overlap.

    ``busy`` holds the (start, end) intervals already booked on the host.
    """
    if limit is None:
        return now
    live = [(start, end) for start, end in busy if end > now]
    candidates = sorted({now} | {end for _, end in live})
    for start in candidates:
        probes = [start] + [s for s, _ in live if start < s < start + duration]
        if all(sum(1 for s, e in live if s <= probe < e) < limit for probe in probes):
            return start
    return candidates[-1]
