"""How Glance image and Cinder snapshot states map onto stackback's artifact states.

Shared by every Cloud adapter (openstacksdk and the simulator), so both speak alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from stackback.policy import ArtifactStatus

GLANCE_STATES: Mapping[str, ArtifactStatus] = {
    "queued": ArtifactStatus.PENDING,
    "saving": ArtifactStatus.PENDING,
    "uploading": ArtifactStatus.PENDING,
    "importing": ArtifactStatus.PENDING,
    "active": ArtifactStatus.AVAILABLE,
    "killed": ArtifactStatus.FAILED,
    "deactivated": ArtifactStatus.FAILED,
    "pending_delete": ArtifactStatus.DELETED,
    "deleted": ArtifactStatus.DELETED,
}

TROVE_BACKUP_STATES: Mapping[str, ArtifactStatus] = {
    "NEW": ArtifactStatus.PENDING,
    "BUILDING": ArtifactStatus.PENDING,
    "SAVING": ArtifactStatus.PENDING,
    "COMPLETED": ArtifactStatus.AVAILABLE,
    "FAILED": ArtifactStatus.FAILED,
    "DELETE_FAILED": ArtifactStatus.FAILED,
    "DELETED": ArtifactStatus.DELETED,
}

CINDER_SNAPSHOT_STATES: Mapping[str, ArtifactStatus] = {
    "creating": ArtifactStatus.PENDING,
    "available": ArtifactStatus.AVAILABLE,
    "backing-up": ArtifactStatus.AVAILABLE,
    "restoring": ArtifactStatus.AVAILABLE,
    "error": ArtifactStatus.FAILED,
    "unmanaging": ArtifactStatus.DELETING,
    "deleting": ArtifactStatus.DELETING,
    "error_deleting": ArtifactStatus.FAILED,
    "deleted": ArtifactStatus.DELETED,
}

CINDER_BACKUP_STATES: Mapping[str, ArtifactStatus] = {
    "creating": ArtifactStatus.PENDING,
    "available": ArtifactStatus.AVAILABLE,
    "backing-up": ArtifactStatus.AVAILABLE,
    "restoring": ArtifactStatus.AVAILABLE,
    "error": ArtifactStatus.FAILED,
    "deleting": ArtifactStatus.DELETING,
    "error_deleting": ArtifactStatus.FAILED,
    "deleted": ArtifactStatus.DELETED,
}
"""Cinder backup statuses (``cinder/objects/fields.py`` ``BackupStatus``)."""
