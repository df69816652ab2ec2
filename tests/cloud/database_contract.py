"""The contract a :class:`~stackback.ports.DatabaseCloud` (Trove) adapter must keep.

Run against the simulator (virtual clock) and against Trove's own API code in fake
mode (``tests/cloud/plane/trove_fake.py``, real time). Only the database paths:
instances, backups with markers in their description, chains (``parent_id`` kept,
children reported as dependents, a parent's deletion taking its descendants), a
backup refused while the instance takes another, and a restore to a new instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

import pytest

from stackback.databases import description, read_markers
from stackback.errors import CloudBusy, CloudNotFound
from stackback.policy import ArtifactKind, ArtifactStatus
from stackback.ports import (
    MARKER_BACKUP,
    MARKER_RUN,
    ArtifactRef,
    Cloud,
    DatabaseCloud,
    DatabaseInfo,
    DatabaseRestore,
)


class DatabaseHarness(Protocol):
    cloud: Cloud
    """The cloud under test; also a :class:`DatabaseCloud`."""

    def create_instance(self, name: str) -> DatabaseInfo:
        """An ACTIVE instance (created and waited for)."""
        ...

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` (advancing time, virtual or real), else fail naming ``what``."""
        ...


def _markers() -> dict[str, str]:
    return {
        "stackback_backup": str(uuid.uuid4()),
        "stackback_run": str(uuid.uuid4()),
        "stackback_policy": str(uuid.uuid4()),
        "stackback_target": "t",
    }


class DatabaseContract:
    @pytest.fixture
    def trove(self, harness: DatabaseHarness) -> DatabaseCloud:
        assert isinstance(harness.cloud, DatabaseCloud)
        return harness.cloud

    def _status(self, harness: DatabaseHarness, backup_id: str) -> ArtifactStatus:
        ref = ArtifactRef(ArtifactKind.DATABASE_BACKUP, backup_id)
        return harness.cloud.artifact_statuses([ref])[ref].status

    def _backup(
        self, harness: DatabaseHarness, trove: DatabaseCloud, instance: str, parent: str | None
    ) -> tuple[str, dict[str, str]]:
        markers = _markers()
        text = description(markers, full=parent is None)
        ref = trove.start_database_backup(
            instance, name=f"c-{uuid.uuid4().hex[:6]}", description=text, parent_id=parent
        )
        harness.wait_for(
            f"backup {ref.id} to complete",
            lambda: self._status(harness, ref.id) is ArtifactStatus.AVAILABLE,
        )
        return ref.id, markers

    def test_an_instance_is_found_by_id_and_name_with_its_spec(
        self, harness: DatabaseHarness, trove: DatabaseCloud
    ) -> None:
        name = f"c-db-{uuid.uuid4().hex[:6]}"
        made = harness.create_instance(name)
        by_name = trove.get_database(name)
        assert by_name.id == made.id and trove.get_database(made.id).name == name
        assert by_name.spec.volume_size >= 1 and by_name.spec.datastore
        assert by_name.spec.datastore_version and by_name.spec.flavor
        with pytest.raises(CloudNotFound):
            trove.get_database(f"no-such-{uuid.uuid4().hex[:6]}")

    def test_a_chain_keeps_its_parents_and_markers_and_goes_with_its_root(
        self, harness: DatabaseHarness, trove: DatabaseCloud
    ) -> None:
        db = harness.create_instance(f"c-db-{uuid.uuid4().hex[:6]}")
        full, full_markers = self._backup(harness, trove, db.id, None)
        child, _ = self._backup(harness, trove, db.id, full)
        grandchild, _ = self._backup(harness, trove, db.id, child)
        found = {info.ref.id: info for info in trove.database_backups(db.id)}
        assert {full, child, grandchild} <= set(found)
        assert found[full].metadata[MARKER_BACKUP] == full_markers["stackback_backup"]
        assert found[full].metadata[MARKER_RUN] == full_markers["stackback_run"]
        assert read_markers(description(full_markers, full=True)) == dict(found[full].metadata)
        parent_of_child = found[child].parent
        assert parent_of_child is not None and parent_of_child.id == full
        assert [d.id for d in found[full].dependents] == [child]
        assert [d.id for d in found[child].dependents] == [grandchild]
        harness.cloud.delete_artifact(ArtifactRef(ArtifactKind.DATABASE_BACKUP, full))
        harness.wait_for(
            "the chain to go with its root",
            lambda: all(
                self._status(harness, b) is ArtifactStatus.DELETED
                for b in (full, child, grandchild)
            ),
        )

    def test_a_backup_is_refused_while_the_instance_takes_another(
        self, harness: DatabaseHarness, trove: DatabaseCloud
    ) -> None:
        db = harness.create_instance(f"c-db-{uuid.uuid4().hex[:6]}")
        first = trove.start_database_backup(db.id, name="one", description="a", parent_id=None)
        with pytest.raises(CloudBusy):
            trove.start_database_backup(db.id, name="two", description="b", parent_id=None)
        harness.wait_for(
            "the first backup to complete",
            lambda: self._status(harness, first.id) is ArtifactStatus.AVAILABLE,
        )

    def test_a_backup_is_restored_to_a_new_instance(
        self, harness: DatabaseHarness, trove: DatabaseCloud
    ) -> None:
        db = harness.create_instance(f"c-db-{uuid.uuid4().hex[:6]}")
        backup, _ = self._backup(harness, trove, db.id, None)
        name = f"c-restored-{uuid.uuid4().hex[:6]}"
        new_id = trove.restore_database(
            DatabaseRestore(name=name, backup_id=backup, spec=db.spec, restore_id="r")
        )
        harness.wait_for(
            f"instance {new_id} to be ACTIVE",
            lambda: trove.get_database(new_id).status == "ACTIVE",
        )
        restored = trove.get_database(new_id)
        assert restored.name == name and restored.spec.datastore == db.spec.datastore
        trove.delete_database(new_id)
