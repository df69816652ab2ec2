"""The contract every :class:`~stackback.ports.Cloud` adapter must keep.

Adapter-agnostic: the tests only use the ``Cloud`` port and a
:class:`CloudHarness`, so the same suite runs against the simulator and against
a real OpenStack plane. To run it, subclass :class:`CloudContract` in a test
module and provide a ``harness`` fixture::

    @pytest.fixture
    def harness(tmp_path) -> CloudHarness: ...

    class TestMyCloud(CloudContract):
        pass

Each test uses its own run ids and metadata keys and only asserts about what it
created, so leftovers of other tests in the same project do not disturb it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol

import pytest

from stackback.databases import description
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.policy import ArtifactKind, ArtifactStatus, Selector
from stackback.ports import (
    CREATED_BY_VALUE,
    MARKER_BACKUP,
    MARKER_CREATED_BY,
    MARKER_LABEL,
    MARKER_RESTORE,
    MARKER_RESTORE_ITEM,
    MARKER_RUN,
    MARKER_TARGET,
    RESOURCE_SERVER,
    RESOURCE_VOLUME,
    ArtifactInfo,
    ArtifactRef,
    BlockDevice,
    BootRequest,
    Cloud,
    GroupCloud,
    RestoreCloud,
    ServerInfo,
    VolumeCloud,
)
from stackback.records import NetworkSpec

#: Longest wait for any state change, in the harness's seconds (virtual or real).
TIMEOUT_S = 600.0


class CloudHarness(Protocol):
    """What the contract needs around a cloud: a second project, servers, and time."""

    cloud: Cloud
    """The cloud under test, bound to one project."""
    other_project_cloud: Cloud
    """The same cloud bound to another project (for isolation checks)."""

    def create_server(
        self,
        name: str,
        metadata: Mapping[str, str] | None = None,
        volume_backed: bool = False,
    ) -> ServerInfo:
        """Create an ACTIVE server in ``cloud``'s project (volume-backed: boots from volume)."""
        ...

    def delete_server(self, server_id: str) -> None: ...

    def set_server_metadata(self, server_id: str, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into the server's metadata."""
        ...

    def delete_server_metadata(self, server_id: str, key: str) -> None: ...

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Let time pass until ``predicate()`` holds; fail the test after ``timeout_s``."""
        ...

    def slow_uploads(self) -> AbstractContextManager[None]:
        """While open, image uploads take long enough to observe them pending (and the 409)."""
        ...

    def slow_snapshot_deletes(self) -> AbstractContextManager[None]:
        """While open, a deleted volume snapshot stays ``deleting`` long enough to be seen
        (where the cloud allows it; otherwise it is as fast as the cloud is)."""
        ...


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def markers(run: str, server: ServerInfo) -> dict[str, str]:
    """As the runner stamps them: every marker, an empty one where it does not apply."""
    return {
        MARKER_CREATED_BY: CREATED_BY_VALUE,
        MARKER_RUN: run,
        MARKER_TARGET: server.id,
        MARKER_LABEL: "",
    }


def status(cloud: Cloud, ref: ArtifactRef) -> ArtifactInfo:
    return cloud.artifact_statuses([ref])[ref]


def wait_for(
    harness: CloudHarness, ref: ArtifactRef, wanted: ArtifactStatus, *, timeout_s: float = TIMEOUT_S
) -> ArtifactInfo:
    """Wait until REF is WANTED; an artifact that ends FAILED instead fails at once."""

    def reached() -> bool:
        now = status(harness.cloud, ref).status
        if now is ArtifactStatus.FAILED and wanted is not ArtifactStatus.FAILED:
            raise AssertionError(f"{ref} failed while waiting for {wanted.value}")
        return now is wanted

    harness.wait_until(reached, timeout_s)
    return status(harness.cloud, ref)


def wait_until_settled(harness: CloudHarness, ref: ArtifactRef) -> None:
    """Wait until the artifact is no longer pending (so that it can be deleted)."""
    harness.wait_until(
        lambda: status(harness.cloud, ref).status is not ArtifactStatus.PENDING, TIMEOUT_S
    )


def never_existed(kind: ArtifactKind) -> ArtifactRef:
    return ArtifactRef(kind, str(uuid.uuid4()))


class CloudContract:
    """The contract tests; a subclass supplies the ``harness`` fixture."""

    @pytest.fixture
    def created(self, harness: CloudHarness) -> Iterator[list[ArtifactRef]]:
        """Artifacts a test made; deleted afterwards (once they are done changing)."""
        refs: list[ArtifactRef] = []
        yield refs
        for ref in reversed(refs):
            wait_until_settled(harness, ref)
            harness.cloud.delete_artifact(ref)

    def start_image(
        self,
        harness: CloudHarness,
        created: list[ArtifactRef],
        server: ServerInfo,
        metadata: Mapping[str, str],
    ) -> ArtifactRef:
        ref = harness.cloud.start_server_image(server.id, unique("contract-image"), metadata)
        created.append(ref)
        return ref

    def test_get_server_by_id_and_by_name(self, harness: CloudHarness) -> None:
        server = harness.create_server(unique("contract-get"), {"role": "db"})

        by_id = harness.cloud.get_server(server.id)
        by_name = harness.cloud.get_server(server.name)

        assert by_id.id == by_name.id == server.id
        assert by_id.metadata.get("role") == "db"
        assert not by_id.volume_backed

    def test_image_goes_pending_then_available_carrying_the_markers(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        server = harness.create_server(unique("contract-image"))
        wanted = markers(unique("run"), server)

        with harness.slow_uploads():
            ref = self.start_image(harness, created, server, wanted)
            assert ref.kind is ArtifactKind.IMAGE
            assert status(harness.cloud, ref).status is ArtifactStatus.PENDING
            info = wait_for(harness, ref, ArtifactStatus.AVAILABLE)

        assert wanted.items() <= dict(info.metadata).items()
        assert info.metadata.get("instance_uuid") == server.id
        assert info.size is not None and info.size > 0
        assert info.children == ()

    def test_second_image_while_the_first_uploads_is_refused_and_creates_nothing(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        server = harness.create_server(unique("contract-busy"))
        first_run, refused_run, later_run = unique("run"), unique("run"), unique("run")

        with harness.slow_uploads():
            first = self.start_image(harness, created, server, markers(first_run, server))
            with pytest.raises(CloudBusy):
                harness.cloud.start_server_image(
                    server.id, unique("refused"), markers(refused_run, server)
                )
            assert harness.cloud.find_artifacts({MARKER_RUN: refused_run}) == []
            wait_for(harness, first, ArtifactStatus.AVAILABLE)

        later = self.start_image(harness, created, server, markers(later_run, server))
        wait_for(harness, later, ArtifactStatus.AVAILABLE)

    def test_find_artifacts_by_run_marker(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        one, two = (
            harness.create_server(unique("contract-a")),
            harness.create_server(unique("contract-b")),
        )
        run_one, run_two = unique("run"), unique("run")
        ref_one = self.start_image(harness, created, one, markers(run_one, one))
        ref_two = self.start_image(harness, created, two, markers(run_two, two))

        assert [info.ref for info in harness.cloud.find_artifacts({MARKER_RUN: run_one})] == [
            ref_one
        ]
        found = harness.cloud.find_artifacts({MARKER_RUN: run_two, MARKER_TARGET: two.id})
        assert [info.ref for info in found] == [ref_two]
        assert harness.cloud.find_artifacts({MARKER_RUN: run_one, MARKER_TARGET: two.id}) == []

    def test_batch_statuses_report_deleted_and_missing_artifacts_as_deleted(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        kept_server, gone_server = (
            harness.create_server(unique("contract-kept")),
            harness.create_server(unique("contract-gone")),
        )
        kept = self.start_image(harness, created, kept_server, markers(unique("run"), kept_server))
        gone = self.start_image(harness, created, gone_server, markers(unique("run"), gone_server))
        wait_for(harness, kept, ArtifactStatus.AVAILABLE)
        wait_for(harness, gone, ArtifactStatus.AVAILABLE)
        harness.cloud.delete_artifact(gone)
        missing_image = never_existed(ArtifactKind.IMAGE)
        missing_snapshot = never_existed(ArtifactKind.VOLUME_SNAPSHOT)

        harness.wait_until(
            lambda: status(harness.cloud, gone).status is ArtifactStatus.DELETED, TIMEOUT_S
        )
        statuses = harness.cloud.artifact_statuses([kept, gone, missing_image, missing_snapshot])

        assert set(statuses) == {kept, gone, missing_image, missing_snapshot}
        assert statuses[kept].status is ArtifactStatus.AVAILABLE
        assert statuses[gone].status is ArtifactStatus.DELETED
        assert statuses[missing_image].status is ArtifactStatus.DELETED
        assert statuses[missing_snapshot].status is ArtifactStatus.DELETED

    def test_delete_is_idempotent(self, harness: CloudHarness, created: list[ArtifactRef]) -> None:
        server = harness.create_server(unique("contract-delete"))
        run = unique("run")
        ref = self.start_image(harness, created, server, markers(run, server))
        wait_for(harness, ref, ArtifactStatus.AVAILABLE)

        harness.cloud.delete_artifact(ref)
        harness.cloud.delete_artifact(ref)
        harness.cloud.delete_artifact(never_existed(ArtifactKind.IMAGE))
        harness.cloud.delete_artifact(never_existed(ArtifactKind.VOLUME_SNAPSHOT))

        wait_for(harness, ref, ArtifactStatus.DELETED)
        assert harness.cloud.find_artifacts({MARKER_RUN: run}) == []

    def test_set_metadata_merges_into_the_artifact(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        server = harness.create_server(unique("contract-meta"))
        run = unique("run")
        ref = self.start_image(harness, created, server, markers(run, server))

        harness.cloud.set_artifact_metadata(ref, {MARKER_LABEL: "before-upgrade"})

        (found,) = harness.cloud.find_artifacts({MARKER_LABEL: "before-upgrade", MARKER_RUN: run})
        assert found.ref == ref
        assert found.metadata.get(MARKER_CREATED_BY) == CREATED_BY_VALUE
        with pytest.raises(CloudNotFound):
            harness.cloud.set_artifact_metadata(never_existed(ArtifactKind.IMAGE), {"k": "v"})

    def test_selector_follows_server_metadata(self, harness: CloudHarness) -> None:
        key = unique("contract-backup")
        selector = Selector(key, "daily")
        leaving = harness.create_server(unique("contract-leaving"), {key: "daily"})
        joining = harness.create_server(unique("contract-joining"), {"other": "x"})

        assert [s.id for s in harness.cloud.find_servers(selector)] == [leaving.id]

        harness.set_server_metadata(joining.id, {key: "daily"})
        harness.delete_server_metadata(leaving.id, key)

        assert [s.id for s in harness.cloud.find_servers(selector)] == [joining.id]
        harness.set_server_metadata(joining.id, {key: "weekly"})
        assert harness.cloud.find_servers(selector) == []

    def test_volume_backed_server_gives_an_empty_image_and_volume_snapshots(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        server = harness.create_server(unique("contract-bfv"), volume_backed=True)
        run = unique("run")
        assert harness.cloud.get_server(server.id).volume_backed

        image = self.start_image(harness, created, server, markers(run, server))
        info = wait_for(harness, image, ArtifactStatus.AVAILABLE)

        assert info.size == 0
        assert "instance_uuid" not in info.metadata
        assert info.metadata.get(MARKER_TARGET) == server.id
        assert info.children
        assert {child.kind for child in info.children} == {ArtifactKind.VOLUME_SNAPSHOT}
        mapping = json.loads(info.metadata["block_device_mapping"])
        assert {entry["snapshot_id"] for entry in mapping} == {c.id for c in info.children}
        created.extend(info.children)
        for child in info.children:
            wait_for(harness, child, ArtifactStatus.AVAILABLE)
            harness.cloud.set_artifact_metadata(child, markers(run, server))

        harness.cloud.delete_artifact(image)
        wait_for(harness, image, ArtifactStatus.DELETED)

        snapshots = harness.cloud.artifact_statuses(info.children)
        assert {s.status for s in snapshots.values()} == {ArtifactStatus.AVAILABLE}
        assert set(info.children) <= {
            i.ref for i in harness.cloud.find_artifacts({MARKER_RUN: run})
        }
        for child in info.children:
            harness.cloud.delete_artifact(child)
        for child in info.children:
            wait_for(harness, child, ArtifactStatus.DELETED)

    def test_a_snapshot_being_deleted_refuses_another_delete_as_busy(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        """Cinder answers 400 "status must be available or error" while a snapshot is
        ``deleting``: a retryable CloudBusy. Once it is gone, a delete is a no-op."""
        server = harness.create_server(unique("contract-bfv-delete"), volume_backed=True)
        image = self.start_image(harness, created, server, markers(unique("run"), server))
        info = wait_for(harness, image, ArtifactStatus.AVAILABLE)
        created.extend(info.children)
        snapshot = info.children[0]
        wait_for(harness, snapshot, ArtifactStatus.AVAILABLE)

        with harness.slow_snapshot_deletes():
            harness.cloud.delete_artifact(snapshot)
            try:
                harness.cloud.delete_artifact(snapshot)
            except CloudBusy:
                pass
            else:  # accepted only because the first delete had already finished
                assert status(harness.cloud, snapshot).status is ArtifactStatus.DELETED
            wait_for(harness, snapshot, ArtifactStatus.DELETED)
        harness.cloud.delete_artifact(snapshot)

    def test_unknown_server_is_not_found(self, harness: CloudHarness) -> None:
        unknown = str(uuid.uuid4())

        with pytest.raises(CloudNotFound):
            harness.cloud.get_server(unknown)
        with pytest.raises(CloudNotFound):
            harness.cloud.start_server_image(unknown, unique("nothing"), {MARKER_RUN: "x"})

    def test_an_image_name_or_property_over_255_characters_is_refused(
        self, harness: CloudHarness
    ) -> None:
        server = harness.create_server(unique("contract-long"))
        run = unique("run")

        with pytest.raises(CloudRejected):
            harness.cloud.start_server_image(server.id, "n" * 256, markers(run, server))
        with pytest.raises(CloudRejected):
            harness.cloud.start_server_image(
                server.id, unique("long-value"), {**markers(run, server), "note": "v" * 256}
            )
        assert harness.cloud.find_artifacts({MARKER_RUN: run}) == []

    def test_another_project_sees_nothing(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        key = unique("contract-isolated")
        server = harness.create_server(unique("contract-private"), {key: "yes"})
        run = unique("run")
        ref = self.start_image(harness, created, server, markers(run, server))
        wait_for(harness, ref, ArtifactStatus.AVAILABLE)
        other = harness.other_project_cloud

        with pytest.raises(CloudNotFound):
            other.get_server(server.id)
        with pytest.raises(CloudNotFound):
            other.start_server_image(server.id, unique("stolen"), {MARKER_RUN: run})
        with pytest.raises(CloudNotFound):
            other.set_artifact_metadata(ref, {MARKER_LABEL: "stolen"})
        assert other.find_servers(Selector(key, "yes")) == []
        assert other.find_artifacts({MARKER_RUN: run}) == []
        assert ref not in {info.ref for info in other.list_marked_artifacts()}
        assert other.artifact_statuses([ref])[ref].status is ArtifactStatus.DELETED
        other.delete_artifact(ref)

        assert status(harness.cloud, ref).status is ArtifactStatus.AVAILABLE
        assert status(harness.cloud, ref).metadata[MARKER_LABEL] == ""  # not "stolen"

    def test_list_marked_artifacts_excludes_unmarked_ones(
        self, harness: CloudHarness, created: list[ArtifactRef]
    ) -> None:
        marked_server = harness.create_server(unique("contract-marked"))
        unmarked_server = harness.create_server(unique("contract-unmarked"))
        marked = self.start_image(
            harness, created, marked_server, markers(unique("run"), marked_server)
        )
        unmarked = self.start_image(
            harness, created, unmarked_server, {MARKER_RUN: unique("run"), "note": "manual"}
        )

        listed = {info.ref: info for info in harness.cloud.list_marked_artifacts()}

        assert marked in listed
        assert unmarked not in listed
        assert all(i.metadata.get(MARKER_CREATED_BY) == CREATED_BY_VALUE for i in listed.values())


class RestoreHarness(CloudHarness, Protocol):
    """A harness whose cloud can also restore, with a flavor and network it has."""

    restore_cloud: RestoreCloud
    flavor: str
    network: str | None
    """A network servers can boot on (None: the cloud has none, boot with no network)."""

    def create_server_with_data_volume(self, name: str) -> ServerInfo:
        """An ACTIVE volume-backed server with one more (data) volume attached."""
        ...

    def image_of(self, server_id: str) -> str | None:
        """The image the server runs (as Nova reports it; None: it boots from a volume)."""
        ...


def _networks(harness: RestoreHarness) -> tuple[NetworkSpec, ...]:
    return (NetworkSpec(harness.network),) if harness.network else ()


class RestoreContract:
    """What restores need of a cloud (:class:`~stackback.ports.RestoreCloud`).

    Mixed into a :class:`CloudContract` subclass (it uses its ``created`` fixture)
    whose ``harness`` fixture gives a :class:`RestoreHarness`.
    Every test removes what it made, found by its restore marker.
    """

    @pytest.fixture
    def restore_id(self, harness: RestoreHarness) -> Iterator[str]:
        """A fresh restore id; whatever carries it is deleted afterwards."""
        restore_id = unique("restore")
        yield restore_id
        cloud = harness.restore_cloud
        for item in cloud.find_restored(restore_id):
            if item.kind == RESOURCE_SERVER:
                cloud.delete_server(item.id)

        def servers_gone() -> bool:
            return all(r.kind != RESOURCE_SERVER for r in cloud.find_restored(restore_id))

        harness.wait_until(servers_gone, TIMEOUT_S)
        for item in cloud.find_restored(restore_id):
            harness.wait_until(
                lambda item=item: (
                    cloud.resource_status(RESOURCE_VOLUME, item.id).status
                    in ("available", "error", "deleted")
                ),
                TIMEOUT_S,
            )
            cloud.delete_volume(item.id)

    def _image(
        self,
        harness: RestoreHarness,
        created: list[ArtifactRef],
        *,
        server: ServerInfo | None = None,
        **kw: bool,
    ) -> ArtifactInfo:
        server = server or harness.create_server(unique("contract-src"), **kw)
        ref = harness.cloud.start_server_image(
            server.id, unique("contract-image"), markers(unique("run"), server)
        )
        created.append(ref)
        info = wait_for(harness, ref, ArtifactStatus.AVAILABLE)
        created.extend(info.children)
        for child in info.children:
            wait_for(harness, child, ArtifactStatus.AVAILABLE)
        return info

    @staticmethod
    def _marks(restore_id: str, item: str) -> dict[str, str]:
        return {
            MARKER_CREATED_BY: CREATED_BY_VALUE,
            MARKER_RESTORE: restore_id,
            MARKER_RESTORE_ITEM: item,
        }

    def _wait_active(self, harness: RestoreHarness, server_id: str) -> None:
        cloud = harness.restore_cloud
        harness.wait_until(
            lambda: cloud.resource_status(RESOURCE_SERVER, server_id).status in ("ACTIVE", "ERROR"),
            TIMEOUT_S,
        )
        assert cloud.resource_status(RESOURCE_SERVER, server_id).status == "ACTIVE"

    def test_a_server_spec_names_flavor_network_and_volumes(self, harness: RestoreHarness) -> None:
        server = harness.create_server(unique("contract-spec"), volume_backed=True)
        spec = harness.cloud.get_server(server.id).spec
        assert spec is not None
        assert spec.flavor
        assert [v.boot_index for v in spec.volumes][:1] == [0]
        assert all(v.size_gb >= 1 and v.device_name for v in spec.volumes)

    def test_boot_from_the_backup_image_is_found_by_its_marker_and_answers_console(
        self, harness: RestoreHarness, created: list[ArtifactRef], restore_id: str
    ) -> None:
        image = self._image(harness, created)
        cloud = harness.restore_cloud
        request = BootRequest(
            unique("contract-restored"),
            harness.flavor,
            networks=_networks(harness),
            metadata=self._marks(restore_id, "server"),
            image_id=image.ref.id,
        )
        cloud.validate_boot(request)
        server_id = cloud.boot_server(request)
        self._wait_active(harness, server_id)
        assert [(r.kind, r.id) for r in cloud.find_restored(restore_id)] == [
            (RESOURCE_SERVER, server_id)
        ]
        assert cloud.console_output(server_id)
        cloud.delete_server(server_id)
        cloud.delete_server(server_id)  # idempotent
        harness.wait_until(
            lambda: cloud.resource_status(RESOURCE_SERVER, server_id).status == "deleted",
            TIMEOUT_S,
        )

    def test_volumes_from_snapshots_boot_as_a_block_device_mapping(
        self, harness: RestoreHarness, created: list[ArtifactRef], restore_id: str
    ) -> None:
        image = self._image(harness, created, volume_backed=True)
        cloud = harness.restore_cloud
        mapping = json.loads(image.metadata["block_device_mapping"])
        root = next(entry for entry in mapping if entry["boot_index"] == 0)
        volume_id = cloud.create_volume(
            root["snapshot_id"],
            name=unique("contract-root"),
            size_gb=int(root["volume_size"]),
            volume_type=None,
            availability_zone=None,
            metadata=self._marks(restore_id, "volume:root"),
        )
        harness.wait_until(
            lambda: cloud.resource_status(RESOURCE_VOLUME, volume_id).status == "available",
            TIMEOUT_S,
        )
        server_id = cloud.boot_server(
            BootRequest(
                unique("contract-bfv-restored"),
                harness.flavor,
                networks=_networks(harness),
                metadata=self._marks(restore_id, "server"),
                block_devices=(BlockDevice("volume", volume_id, boot_index=0),),
            )
        )
        self._wait_active(harness, server_id)
        assert cloud.resource_status(RESOURCE_VOLUME, volume_id).status == "in-use"
        assert {r.kind for r in cloud.find_restored(restore_id)} == {
            RESOURCE_SERVER,
            RESOURCE_VOLUME,
        }

    def test_an_unknown_flavor_or_network_is_refused(
        self, harness: RestoreHarness, created: list[ArtifactRef]
    ) -> None:
        image = self._image(harness, created)
        cloud = harness.restore_cloud
        with pytest.raises(CloudNotFound):
            cloud.validate_boot(BootRequest("x", unique("flavor"), image_id=image.ref.id))
        with pytest.raises(CloudNotFound):
            cloud.validate_boot(
                BootRequest(
                    "x",
                    harness.flavor,
                    networks=(NetworkSpec(unique("net")),),
                    image_id=image.ref.id,
                )
            )

    def test_deleting_what_is_gone_is_not_an_error(self, harness: RestoreHarness) -> None:
        cloud = harness.restore_cloud
        cloud.delete_server(str(uuid.uuid4()))
        cloud.delete_volume(str(uuid.uuid4()))
        gone = cloud.resource_status(RESOURCE_VOLUME, str(uuid.uuid4()))
        assert gone.status == "deleted"

    def _wait_volume(self, harness: RestoreHarness, volume_id: str, wanted: str) -> None:
        cloud = harness.restore_cloud
        harness.wait_until(
            lambda: cloud.resource_status(RESOURCE_VOLUME, volume_id).status in (wanted, "error"),
            TIMEOUT_S,
        )
        assert cloud.resource_status(RESOURCE_VOLUME, volume_id).status == wanted

    def test_root_and_data_volumes_from_their_snapshots_boot_and_another_attaches(
        self, harness: RestoreHarness, created: list[ArtifactRef], restore_id: str
    ) -> None:
        """As the restore engine does it: a volume from each snapshot of the backup (root and
        data), then one boot naming them all; later (in place ``--volumes``) one more volume
        from the data snapshot attached to the running server, busy while attached."""
        source = harness.create_server_with_data_volume(unique("contract-data"))
        spec = harness.cloud.get_server(source.id).spec
        assert spec is not None
        assert [v.boot_index for v in spec.volumes] == [0, None]
        image = self._image(harness, created, server=source)
        cloud = harness.restore_cloud
        mapping = sorted(
            json.loads(image.metadata["block_device_mapping"]),
            key=lambda entry: entry["boot_index"] != 0,
        )
        assert [entry["boot_index"] == 0 for entry in mapping] == [True, False]
        snapshot_boot = BootRequest(
            unique("contract-bfv-data"),
            harness.flavor,
            networks=_networks(harness),
            block_devices=tuple(
                BlockDevice(
                    "snapshot",
                    entry["snapshot_id"],
                    boot_index=0 if entry["boot_index"] == 0 else None,
                    device_name=entry.get("device_name"),
                    volume_size=int(entry["volume_size"]),
                )
                for entry in mapping
            ),
        )
        cloud.validate_boot(snapshot_boot)  # what `restore` asks before recording the job
        volumes = [
            cloud.create_volume(
                entry["snapshot_id"],
                name=unique("contract-volume"),
                size_gb=int(entry["volume_size"]),
                volume_type=None,
                availability_zone=None,
                metadata=self._marks(restore_id, f"volume:{entry.get('device_name')}"),
            )
            for entry in mapping
        ]
        for volume_id in volumes:
            self._wait_volume(harness, volume_id, "available")
        server_id = cloud.boot_server(
            BootRequest(
                snapshot_boot.name,
                harness.flavor,
                networks=_networks(harness),
                metadata=self._marks(restore_id, "server"),
                block_devices=tuple(
                    BlockDevice(
                        "volume",
                        volume_id,
                        boot_index=device.boot_index,
                        device_name=device.device_name,
                    )
                    for volume_id, device in zip(volumes, snapshot_boot.block_devices, strict=True)
                ),
            )
        )
        self._wait_active(harness, server_id)
        for volume_id in volumes:
            assert cloud.resource_status(RESOURCE_VOLUME, volume_id).status == "in-use"
        restored = harness.cloud.get_server(server_id)
        assert restored.volume_backed
        assert restored.spec is not None
        assert {v.volume_id for v in restored.spec.volumes} == set(volumes)
        assert [v.boot_index for v in restored.spec.volumes] == [0, None]

        extra = cloud.create_volume(
            mapping[1]["snapshot_id"],
            name=unique("contract-extra"),
            size_gb=int(mapping[1]["volume_size"]),
            volume_type=None,
            availability_zone=None,
            metadata=self._marks(restore_id, "volume:extra"),
        )
        self._wait_volume(harness, extra, "available")
        cloud.attach_volume(server_id, extra, None)
        self._wait_volume(harness, extra, "in-use")
        with pytest.raises(CloudBusy):
            cloud.delete_volume(extra)
        found = {(r.kind, r.id) for r in cloud.find_restored(restore_id)}
        assert found == {(RESOURCE_SERVER, server_id)} | {
            (RESOURCE_VOLUME, v) for v in (*volumes, extra)
        }

    def test_rebuild_puts_the_backup_image_on_the_server(
        self, harness: RestoreHarness, created: list[ArtifactRef]
    ) -> None:
        image = self._image(harness, created)
        server = harness.create_server(unique("contract-rebuilt"))
        assert harness.image_of(server.id) != image.ref.id
        cloud = harness.restore_cloud

        cloud.rebuild_server(server.id, image.ref.id)

        harness.wait_until(lambda: harness.image_of(server.id) == image.ref.id, TIMEOUT_S)
        self._wait_active(harness, server.id)
        assert harness.cloud.get_server(server.id).metadata == server.metadata
        with pytest.raises(CloudNotFound):
            cloud.rebuild_server(str(uuid.uuid4()), image.ref.id)

    def test_a_volume_with_snapshots_outlives_its_server_until_they_are_gone(
        self, harness: RestoreHarness, created: list[ArtifactRef]
    ) -> None:
        """Nova deletes a delete-on-termination volume with its server, but Cinder refuses
        while the volume has snapshots: a backup's snapshots keep the deleted server's
        volume (``available``), which can be deleted once they are gone."""
        server = harness.create_server(unique("contract-outlived"), volume_backed=True)
        spec = harness.cloud.get_server(server.id).spec
        assert spec is not None
        (root,) = [v.volume_id for v in spec.volumes if v.boot_index == 0]
        assert root is not None
        image = self._image(harness, created, server=server)
        cloud = harness.restore_cloud

        harness.delete_server(server.id)
        harness.wait_until(
            lambda: cloud.resource_status(RESOURCE_SERVER, server.id).status == "deleted",
            TIMEOUT_S,
        )
        self._wait_volume(harness, root, "available")
        with pytest.raises(CloudBusy):
            cloud.delete_volume(root)

        harness.cloud.delete_artifact(image.ref)
        for snapshot in image.children:
            harness.cloud.delete_artifact(snapshot)
        for snapshot in image.children:
            wait_for(harness, snapshot, ArtifactStatus.DELETED)
        cloud.delete_volume(root)
        self._wait_volume(harness, root, "deleted")


class ConsistencyHarness(CloudHarness, Protocol):
    """What the whole-server contract needs beyond :class:`CloudHarness`."""

    def attach_new_volume(self, server_id: str) -> str:
        """Create a volume, attach it to the server (it is then ``in-use``); its id."""
        ...


class ConsistencyContract:
    """Whole-server backups: attached volumes, forced snapshots, pause and unpause."""

    def test_a_server_lists_its_attached_data_volumes(self, harness: ConsistencyHarness) -> None:
        server = harness.create_server(unique("contract-data"))
        volume_id = harness.attach_new_volume(server.id)
        found = harness.cloud.get_server(server.id)
        assert volume_id in found.attached_volumes
        assert volume_id in found.data_volumes
        assert isinstance(dict(harness.cloud.boot_properties(server.id)), dict)

    def test_a_forced_snapshot_of_an_in_use_volume_carries_its_metadata(
        self, harness: ConsistencyHarness
    ) -> None:
        server = harness.create_server(unique("contract-data"))
        volume_id = harness.attach_new_volume(server.id)
        run = unique("run")
        ref = harness.cloud.snapshot_volume(
            volume_id,
            unique("contract-vol"),
            {**markers(run, server), "stackback_volume": volume_id},
        )
        try:
            assert ref.kind is ArtifactKind.VOLUME_SNAPSHOT
            first = status(harness.cloud, ref)
            assert first.status in (ArtifactStatus.PENDING, ArtifactStatus.AVAILABLE)
            assert first.raw_status in ("creating", "available")
            done = wait_for(harness, ref, ArtifactStatus.AVAILABLE)
            assert done.raw_status == "available"
            assert done.metadata.get(MARKER_RUN) == run
            (found,) = harness.cloud.find_artifacts({MARKER_RUN: run})
            assert found.ref == ref and found.metadata.get("stackback_volume") == volume_id
        finally:
            wait_until_settled(harness, ref)
            harness.cloud.delete_artifact(ref)

    def test_pause_and_unpause_and_their_refusals(self, harness: ConsistencyHarness) -> None:
        server = harness.create_server(unique("contract-pause"))
        cloud = harness.cloud
        assert cloud.server_status(server.id) == "ACTIVE"
        with pytest.raises(CloudBusy):
            cloud.unpause_server(server.id)  # not paused: 409
        cloud.pause_server(server.id)
        harness.wait_until(lambda: cloud.server_status(server.id) == "PAUSED", TIMEOUT_S)
        with pytest.raises(CloudBusy):
            cloud.pause_server(server.id)  # already paused: 409
        cloud.unpause_server(server.id)
        harness.wait_until(lambda: cloud.server_status(server.id) == "ACTIVE", TIMEOUT_S)

    def test_an_image_of_a_paused_server_is_taken(self, harness: ConsistencyHarness) -> None:
        server = harness.create_server(unique("contract-paused-image"))
        cloud = harness.cloud
        cloud.pause_server(server.id)
        harness.wait_until(lambda: cloud.server_status(server.id) == "PAUSED", TIMEOUT_S)
        ref = cloud.start_server_image(server.id, unique("contract-image"), markers("r", server))
        try:
            assert status(cloud, ref).raw_status in ("queued", "saving", "active")
        finally:
            # Nova refuses to unpause while its snapshot task runs (409): ask until it lets.
            harness.wait_until(lambda: _unpaused(cloud, server.id), TIMEOUT_S)
            wait_until_settled(harness, ref)
            cloud.delete_artifact(ref)


def _unpaused(cloud: Cloud, server_id: str) -> bool:
    """Unpause if Nova lets (it refuses while a snapshot task of the server runs)."""
    try:
        cloud.unpause_server(server_id)
    except CloudBusy:
        return False
    return True


class VolumeHarness(CloudHarness, Protocol):
    """A harness whose cloud also serves volume policies (:class:`VolumeCloud`)."""

    volume_cloud: VolumeCloud
    backups_unavailable: str | None
    """Why this cloud cannot run Cinder backups (their tests skip with it); None: it can."""

    def create_volume(self, name: str, metadata: Mapping[str, str] | None = None) -> str:
        """A standalone 1 GB volume of the project, ``available``; deleted after the test."""
        ...

    def failing_backups(self, volume_id: str) -> AbstractContextManager[None]:
        """Within it, the next backup of the volume fails in the backup service (``error``)."""
        ...

    def attach_new_volume(self, server_id: str) -> str:
        """A new volume attached to the server (``in-use``)."""
        ...

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume the test made (once it is available)."""
        ...


def volume_markers(run: str, volume_id: str) -> dict[str, str]:
    return {
        MARKER_CREATED_BY: CREATED_BY_VALUE,
        MARKER_RUN: run,
        MARKER_TARGET: volume_id,
        MARKER_LABEL: "",
    }


class VolumeContract:
    """Volume policies' cloud calls: volumes by id, name and selector; forced Cinder snapshots
    of in-use volumes; Cinder backups with the parent Cinder picks, its refusal to delete a
    parent with increments, and a new volume from a backup. Mixed into a
    :class:`CloudContract` subclass whose harness is a :class:`VolumeHarness`."""

    def test_a_volume_by_id_by_name_and_by_selector(self, harness: VolumeHarness) -> None:
        name = unique("contract-vol")
        tag = unique("tag")
        volume_id = harness.create_volume(name, {"stackback-contract": tag})
        by_id = harness.volume_cloud.get_volume(volume_id)
        assert (by_id.id, by_id.name, by_id.size_gb) == (volume_id, name, 1)
        assert harness.volume_cloud.get_volume(name).id == volume_id
        found = harness.volume_cloud.find_volumes(Selector("stackback-contract", tag))
        assert [v.id for v in found] == [volume_id]
        with pytest.raises(CloudNotFound):
            harness.volume_cloud.get_volume(str(uuid.uuid4()))

    def test_a_forced_snapshot_of_an_in_use_volume_carries_the_markers(
        self, harness: VolumeHarness, created: list[ArtifactRef]
    ) -> None:
        server = harness.create_server(unique("contract-vol-server"))
        volume_id = harness.attach_new_volume(server.id)
        assert harness.volume_cloud.get_volume(volume_id).status == "in-use"
        run = unique("run")
        ref = harness.cloud.snapshot_volume(
            volume_id, unique("contract-vol-snap"), volume_markers(run, volume_id)
        )
        created.append(ref)
        info = wait_for(harness, ref, ArtifactStatus.AVAILABLE)
        assert info.metadata[MARKER_TARGET] == volume_id
        assert [i.ref for i in harness.cloud.find_artifacts({MARKER_RUN: run})] == [ref]
        harness.cloud.delete_artifact(ref)
        wait_for(harness, ref, ArtifactStatus.DELETED)

    def test_backups_chain_as_cinder_picks_and_a_parent_goes_after_its_children(
        self, harness: VolumeHarness, created: list[ArtifactRef]
    ) -> None:
        if harness.backups_unavailable:
            pytest.skip(harness.backups_unavailable)
        volume_id = harness.create_volume(unique("contract-chain"))
        run = unique("run")
        stamp = volume_markers(run, volume_id)
        backups = harness.volume_cloud
        full = backups.start_volume_backup(volume_id, unique("full"), stamp, incremental=False)
        assert wait_for(harness, full, ArtifactStatus.AVAILABLE).parent is None
        inc = backups.start_volume_backup(volume_id, unique("inc"), stamp, incremental=True)
        created.extend([full, inc])  # deleted newest first
        info = wait_for(harness, inc, ArtifactStatus.AVAILABLE)
        assert info.parent == full, "Cinder builds an increment on the latest backup"
        assert info.metadata[MARKER_RUN] == run
        assert {i.ref for i in harness.cloud.find_artifacts({MARKER_RUN: run})} == {full, inc}
        with pytest.raises(CloudRejected):
            harness.cloud.delete_artifact(full)
        restored = backups.create_volume_from_backup(
            inc.id, name=unique("contract-restored"), metadata={MARKER_RESTORE: run}
        )
        harness.wait_until(
            lambda: harness.volume_cloud.get_volume(restored).status == "available", TIMEOUT_S
        )
        harness.delete_volume(restored)
        harness.cloud.delete_artifact(inc)
        wait_for(harness, inc, ArtifactStatus.DELETED)
        harness.cloud.delete_artifact(full)
        wait_for(harness, full, ArtifactStatus.DELETED)

    def test_a_failed_incremental_keeps_its_parent_and_holds_it(
        self, harness: VolumeHarness, created: list[ArtifactRef]
    ) -> None:
        """Cinder lists every backup naming a parent, failed ones too, when it is asked to
        delete that parent: a failed incremental must go first."""
        if harness.backups_unavailable:
            pytest.skip(harness.backups_unavailable)
        volume_id = harness.create_volume(unique("contract-failed-inc"))
        stamp = volume_markers(unique("run"), volume_id)
        backups = harness.volume_cloud
        full = backups.start_volume_backup(volume_id, unique("full"), stamp, incremental=False)
        created.append(full)
        wait_for(harness, full, ArtifactStatus.AVAILABLE)
        with harness.failing_backups(volume_id):
            inc = backups.start_volume_backup(volume_id, unique("inc"), stamp, incremental=True)
            created.insert(0, inc)
            failed = wait_for(harness, inc, ArtifactStatus.FAILED)
        assert failed.parent == full
        with pytest.raises(CloudRejected, match="ncremental"):
            harness.cloud.delete_artifact(full)
        harness.cloud.delete_artifact(inc)
        wait_for(harness, inc, ArtifactStatus.DELETED)
        harness.cloud.delete_artifact(full)
        wait_for(harness, full, ArtifactStatus.DELETED)

    def test_an_incremental_backup_without_a_full_one_is_refused(
        self, harness: VolumeHarness
    ) -> None:
        if harness.backups_unavailable:
            pytest.skip(harness.backups_unavailable)
        volume_id = harness.create_volume(unique("contract-nofull"))
        with pytest.raises(CloudRejected):
            harness.volume_cloud.start_volume_backup(
                volume_id, unique("inc"), volume_markers(unique("run"), volume_id), incremental=True
            )


class GroupHarness(CloudHarness, Protocol):
    """A harness whose cloud serves Cinder groups (:class:`GroupCloud`)."""

    group_cloud: GroupCloud
    """The groups port, bound to a project where group types' specs can be read."""
    group_artifacts: Cloud
    """The same cloud and project as ``group_cloud``, through the :class:`Cloud` port."""

    def create_volume_group(self, consistent: bool, volumes: int) -> tuple[str, tuple[str, ...]]:
        """A group of ``volumes`` new 1 GB volumes in ``group_cloud``'s project, of a new
        group type that promises consistent group snapshots or not; (group id, volume ids)."""
        ...


class GroupContract:
    """Cinder groups: a volume's group with its members and its type's promise, group
    snapshots (members per volume, markers in the description, deleted together with their
    members, a member not deletable alone), refused for a type that promises nothing."""

    def test_a_volume_group_is_found_with_its_volumes_and_its_promise(
        self, harness: GroupHarness
    ) -> None:
        promising, volumes = harness.create_volume_group(True, 2)
        plain, others = harness.create_volume_group(False, 1)
        found = {g.id: g for g in harness.group_cloud.volume_groups_of([volumes[0], others[0]])}
        assert set(found) == {promising, plain}
        assert set(found[promising].volume_ids) == set(volumes)
        assert found[promising].consistent and not found[plain].consistent
        assert found[plain].why_not
        assert harness.group_cloud.volume_groups_of([]) == []

    def test_a_group_snapshot_has_a_member_per_volume_and_goes_with_them(
        self, harness: GroupHarness
    ) -> None:
        group_id, volumes = harness.create_volume_group(True, 2)
        run, backup = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = {MARKER_RUN: run, MARKER_BACKUP: backup, MARKER_CREATED_BY: CREATED_BY_VALUE}
        made = harness.group_cloud.create_group_snapshot(
            group_id, unique("contract-gs"), description(stamp, full=True)
        )
        cloud = harness.group_artifacts
        assert made.ref.kind is ArtifactKind.GROUP_SNAPSHOT
        assert set(made.members) == set(volumes)
        info = wait_for_in(harness, cloud, made.ref, ArtifactStatus.AVAILABLE)
        assert set(info.children) == set(made.members.values())
        assert info.metadata[MARKER_BACKUP] == backup and info.metadata[MARKER_RUN] == run
        assert made.ref in {i.ref for i in cloud.find_artifacts({MARKER_RUN: run})}
        for member in made.members.values():
            assert cloud.artifact_statuses([member])[member].status is ArtifactStatus.AVAILABLE
        member = next(iter(made.members.values()))
        with pytest.raises(CloudBusy):
            cloud.delete_artifact(member)  # Cinder: "must not be part of a group"
        cloud.delete_artifact(made.ref)
        wait_for_in(harness, cloud, made.ref, ArtifactStatus.DELETED)
        for member in made.members.values():
            wait_for_in(harness, cloud, member, ArtifactStatus.DELETED)

    def test_a_group_snapshot_of_a_group_that_promises_nothing_is_refused(
        self, harness: GroupHarness
    ) -> None:
        group_id, _ = harness.create_volume_group(False, 1)
        with pytest.raises(CloudRejected):
            harness.group_cloud.create_group_snapshot(group_id, unique("contract-gs"), "")


def wait_for_in(
    harness: CloudHarness, cloud: Cloud, ref: ArtifactRef, wanted: ArtifactStatus
) -> ArtifactInfo:
    harness.wait_until(lambda: status(cloud, ref).status is wanted, TIMEOUT_S)
    return status(cloud, ref)
