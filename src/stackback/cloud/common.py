"""Small helpers every Cloud adapter (openstacksdk and the simulator) shares."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from stackback.policy import ArtifactStatus
from stackback.ports import ArtifactInfo, ArtifactRef


def contains(metadata: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether ``metadata`` holds every key of ``wanted`` with the same value."""
    return all(metadata.get(key) == value for key, value in wanted.items())


def missing_info(ref: ArtifactRef) -> ArtifactInfo:
    """What an adapter reports for an artifact its service no longer knows."""
    return ArtifactInfo(ref=ref, status=ArtifactStatus.DELETED, detail="not found")


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
