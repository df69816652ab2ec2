"""Reading the ``block_device_mapping`` property Nova writes on volume-backed server images.

Neutral ground for every :class:`~stackback.ports.Cloud` adapter: the property is a
JSON string listing one entry per disk; entries with ``source_type == "snapshot"`` name
the Cinder snapshots that belong to the (0-byte) image.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stackback.policy import ArtifactKind
from stackback.ports import ArtifactRef

BDM_PROPERTY = "block_device_mapping"


def snapshot_children(properties: Mapping[str, Any]) -> tuple[ArtifactRef, ...]:
    """The Cinder snapshots named by an image's ``block_device_mapping`` property.

    Malformed or absent mappings give ``()``; entries that are not snapshots are skipped.
    """
    raw = properties.get(BDM_PROPERTY)
    if not raw:
        return ()
    try:
        mapping = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return ()
    if not isinstance(mapping, list):
        return ()
    children: list[ArtifactRef] = []
    for entry in mapping:
        if not isinstance(entry, dict) or entry.get("source_type") != "snapshot":
            continue
        snapshot_id = entry.get("snapshot_id")
        if snapshot_id:
            children.append(ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, str(snapshot_id)))
    return tuple(children)
