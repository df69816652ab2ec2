"""The openstacksdk adapter's own logic, without a cloud: mappings, errors, batching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc
from openstack.block_storage.v3.snapshot import Snapshot
from openstack.compute.v2.server import Server
from openstack.image.v2.image import Image

from stackback.cloud.bdm import snapshot_children
from stackback.cloud.openstack import IMAGE_IDS_PER_LISTING, OpenStackCloud
from stackback.cloud.openstack.convert import (
    boots_from_volume,
    cinder_snapshot_status,
    glance_status,
    image_info,
    image_metadata,
    snapshot_info,
    timestamp,
)
from stackback.cloud.openstack.errors import cloud_errors, translate
from stackback.cloud.openstack.images import property_filters
from stackback.errors import (
    CloudBusy,
    CloudNotFound,
    CloudRejected,
    CloudUnavailable,
    CloudUnreachable,
    InvalidInput,
    QuotaExceeded,
)
from stackback.policy import ArtifactKind, ArtifactStatus, Selector
from stackback.ports import CREATED_BY_VALUE, MARKER_CREATED_BY, ArtifactRef

PROJECT = "p-alpha"


def http_error(status: int, details: str = "refused") -> sdk_exc.HttpException:
    response = requests.Response()
    response.status_code = status
    classes: dict[int, type[sdk_exc.HttpException]] = {
        400: sdk_exc.BadRequestException,
        403: sdk_exc.ForbiddenException,
        404: sdk_exc.NotFoundException,
        409: sdk_exc.ConflictException,
    }
    return classes.get(status, sdk_exc.HttpException)(response=response, details=details)


def image(image_id: str, status: str = "active", **properties: Any) -> Image:
    return Image.existing(id=image_id, name=f"name-{image_id}", status=status, **properties)


def snapshot(snapshot_id: str, status: str = "available", **metadata: str) -> Snapshot:
    return Snapshot.existing(
        id=snapshot_id, name=f"snap-{snapshot_id}", status=status, size=1, metadata=metadata
    )


# -- status mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ("queued", ArtifactStatus.PENDING),
        ("saving", ArtifactStatus.PENDING),
        ("importing", ArtifactStatus.PENDING),
        ("uploading", ArtifactStatus.PENDING),
        ("active", ArtifactStatus.AVAILABLE),
        ("killed", ArtifactStatus.FAILED),
        ("deleted", ArtifactStatus.DELETED),
        ("pending_delete", ArtifactStatus.DELETED),
        ("something-new", ArtifactStatus.PENDING),
    ],
)
def test_glance_status_mapping(raw: str, wanted: ArtifactStatus) -> None:
    assert glance_status(raw) is wanted


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ("creating", ArtifactStatus.PENDING),
        ("available", ArtifactStatus.AVAILABLE),
        ("error", ArtifactStatus.FAILED),
        ("error_deleting", ArtifactStatus.FAILED),
        ("deleting", ArtifactStatus.DELETING),
        ("something-new", ArtifactStatus.PENDING),
    ],
)
def test_cinder_snapshot_status_mapping(raw: str, wanted: ArtifactStatus) -> None:
    assert cinder_snapshot_status(raw) is wanted


# -- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "wanted"),
    [
        (http_error(409, "Quota exceeded, or so the text says"), CloudBusy),
        (http_error(404), CloudNotFound),
        (sdk_exc.NotFoundException("No Server found for web"), CloudNotFound),
        (sdk_exc.ConflictException("no response either"), CloudBusy),
        (http_error(403, "Quota exceeded for instances"), QuotaExceeded),
        (http_error(413, "storage limit"), QuotaExceeded),
        (http_error(403, "Policy doesn't allow it"), CloudRejected),
        (http_error(400, "bad name"), CloudRejected),
        (http_error(429, "slow down"), CloudUnavailable),
        (http_error(500), CloudUnavailable),
        (http_error(503), CloudUnavailable),
        (ksa_exc.ConnectFailure("refused"), CloudUnreachable),  # fails a `backup now` at once
        (ksa_exc.SSLError("bad certificate"), CloudUnreachable),
        (ksa_exc.DiscoveryFailure("no versions at the auth URL"), CloudUnreachable),
        (ConnectionRefusedError(111, "refused"), CloudUnreachable),
        (ksa_exc.ConnectTimeout("slow"), CloudUnavailable),  # a timeout is retried
        (ConnectionResetError(104, "reset"), CloudUnavailable),
        (ksa_exc.ServiceUnavailable(), CloudUnavailable),
        (ksa_exc.Unauthorized(), CloudRejected),
        (sdk_exc.ResourceTimeout("waited"), CloudUnavailable),
        (sdk_exc.ConfigException("no cloud named x"), InvalidInput),
        (sdk_exc.DuplicateResource("two servers named web"), CloudRejected),
    ],
)
def test_error_translation(exc: Exception, wanted: type[Exception]) -> None:
    translated = translate(exc, "doing it on cloud 'c1'")
    assert type(translated) is wanted
    assert translated.message.startswith("doing it on cloud 'c1'")


def test_cloud_errors_chains_the_original_and_leaves_other_exceptions_alone() -> None:
    original = http_error(409)
    with pytest.raises(CloudBusy) as caught, cloud_errors("createImage"):
        raise original
    assert caught.value.__cause__ is original
    assert caught.value.retryable
    with pytest.raises(KeyError), cloud_errors("anything"):
        raise KeyError("a bug, not a cloud error")


# -- block device mappings and conversions ----------------------------------------------------


def test_bdm_names_the_snapshot_entries_only() -> None:
    mapping = [
        {"source_type": "snapshot", "snapshot_id": "s1", "boot_index": 0},
        {"source_type": "blank", "snapshot_id": None},
        {"source_type": "snapshot", "snapshot_id": "s2"},
        {"source_type": "snapshot", "snapshot_id": None},
        "garbage",
    ]
    assert snapshot_children({"block_device_mapping": json.dumps(mapping)}) == (
        ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s1"),
        ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s2"),
    )


@pytest.mark.parametrize("raw", [None, "", "not json", "{}", '{"snapshot_id": "s1"}', "[]"])
def test_bdm_malformed_or_absent_gives_no_children(raw: str | None) -> None:
    properties = {} if raw is None else {"block_device_mapping": raw}
    assert snapshot_children(properties) == ()


def test_image_metadata_merges_lifted_attributes_and_drops_glance_core_ones() -> None:
    found = image(
        "i1",
        size=24,
        instance_uuid="server-1",
        os_require_quiesce=True,
        stackback_run="r1",
        image_type="snapshot",
        checksum="abc",
        visibility="private",
    )

    metadata = image_metadata(found)

    assert metadata["instance_uuid"] == "server-1"
    assert metadata["stackback_run"] == "r1"
    assert metadata["image_type"] == "snapshot"
    assert metadata["os_require_quiesce"] == "True"
    assert not {"id", "name", "status", "size", "checksum", "visibility"} & set(metadata)


def test_image_info_of_a_volume_backed_server_image() -> None:
    mapping = [{"source_type": "snapshot", "snapshot_id": "s9", "destination_type": "volume"}]
    info = image_info(
        image(
            "i2",
            size=0,
            created_at="2025-03-30T01:02:03Z",
            block_device_mapping=json.dumps(mapping),
        )
    )

    assert info.ref == ArtifactRef(ArtifactKind.IMAGE, "i2")
    assert info.status is ArtifactStatus.AVAILABLE
    assert info.size == 0
    assert info.children == (ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s9"),)
    assert info.created_at == datetime(2025, 3, 30, 1, 2, 3, tzinfo=UTC)


def test_snapshot_info_and_cinder_naive_timestamps_are_utc() -> None:
    found = Snapshot.existing(
        id="s1",
        status="creating",
        size=1,
        metadata={"k": "v"},
        created_at="2025-03-30T01:02:03.000000",
    )
    info = snapshot_info(found)
    assert info.status is ArtifactStatus.PENDING
    assert info.metadata == {"k": "v"}
    assert info.created_at == datetime(2025, 3, 30, 1, 2, 3, tzinfo=UTC)
    assert timestamp("not a time") is None


@pytest.mark.parametrize(
    ("image_field", "volume_backed"),
    [("", True), (None, True), ({}, True), ({"id": "img-1", "links": []}, False)],
)
def test_volume_backed_means_no_image(image_field: Any, volume_backed: bool) -> None:
    server = Server.existing(id="s", name="n", status="ACTIVE", image=image_field)
    assert boots_from_volume(server) is volume_backed


# -- the adapter over a fake connection -------------------------------------------------------


class FakeImages:
    def __init__(self, images: list[Image]) -> None:
        self.stored = images
        self.listings: list[dict[str, Any]] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def images(self, **query: Any) -> Iterator[Image]:
        """Lists by owner and ``id=in:``; ignores property filters, as openstacksdk does."""
        self.listings.append(query)
        ids = query["id"].removeprefix("in:").split(",") if "id" in query else None
        return iter([i for i in self.stored if ids is None or i.id in ids])

    def update_image(self, image_id: str, **attrs: Any) -> None:
        self.updates.append((image_id, attrs))


class FakeBlockStorage:
    def __init__(self, snapshots: list[Snapshot], delete_error: Exception | None = None) -> None:
        self.stored = snapshots
        self.listings = 0
        self.delete_error = delete_error

    def snapshots(self, **query: Any) -> Iterator[Snapshot]:
        self.listings += 1
        return iter(self.stored)

    def delete_snapshot(self, snapshot_id: str, ignore_missing: bool = True) -> None:
        if self.delete_error is not None:
            raise self.delete_error

    def backups(self, **query: Any) -> Iterator[Any]:
        return iter(self.stored_backups)

    def delete_backup(self, backup_id: str, ignore_missing: bool = True) -> None:
        if self.delete_error is not None:
            raise self.delete_error

    stored_backups: list[Any] = []

    def group_snapshots(self, **query: Any) -> Iterator[Any]:
        return iter(())


class FakeCompute:
    def __init__(self, servers: list[Server]) -> None:
        self.stored = servers
        self.listings = 0

    def servers(self, **query: Any) -> Iterator[Server]:
        self.listings += 1
        return iter(self.stored)

    def find_server(self, name_or_id: str, ignore_missing: bool = True) -> Server | None:
        found = next((s for s in self.stored if name_or_id in (s.id, s.name)), None)
        if found is None and not ignore_missing:
            raise sdk_exc.NotFoundException(f"No Server found for {name_or_id}")
        return found


class FakeConnection:
    current_project_id = PROJECT

    def __init__(
        self,
        images: list[Image] | None = None,
        snapshots: list[Snapshot] | None = None,
        servers: list[Server] | None = None,
        delete_error: Exception | None = None,
    ) -> None:
        self.image = FakeImages(images or [])
        self.block_storage = FakeBlockStorage(snapshots or [], delete_error)
        self.compute = FakeCompute(servers or [])

    def has_service(self, service_key: str) -> bool:
        return service_key != "database"  # no Trove: find_artifacts lists no database backups


@pytest.fixture(autouse=True)
def _listing_through_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """Property-filtered listings go to the fake, which ignores the filters (as sdk does)."""

    def list_images(proxy: FakeImages, owner: str, metadata: dict[str, str]) -> Iterator[Image]:
        return proxy.images(owner=owner, **metadata)

    monkeypatch.setattr("stackback.cloud.openstack.adapter.list_images", list_images)


def adapter(conn: FakeConnection) -> OpenStackCloud:
    return OpenStackCloud(lambda: conn, cloud_name="fake")  # type: ignore[arg-type,return-value]


def test_statuses_are_one_image_listing_and_one_snapshot_listing() -> None:
    conn = FakeConnection(
        images=[image("i1"), image("i2", status="saving")],
        snapshots=[snapshot("s1", status="creating"), snapshot("s-other")],
    )
    refs = [
        ArtifactRef(ArtifactKind.IMAGE, "i1"),
        ArtifactRef(ArtifactKind.IMAGE, "i2"),
        ArtifactRef(ArtifactKind.IMAGE, "i-gone"),
        ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s1"),
        ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s-gone"),
    ]

    statuses = adapter(conn).artifact_statuses(refs)

    assert {ref: info.status for ref, info in statuses.items()} == {
        refs[0]: ArtifactStatus.AVAILABLE,
        refs[1]: ArtifactStatus.PENDING,
        refs[2]: ArtifactStatus.DELETED,
        refs[3]: ArtifactStatus.PENDING,
        refs[4]: ArtifactStatus.DELETED,
    }
    assert conn.image.listings == [{"owner": PROJECT, "id": "in:i-gone,i1,i2"}]
    assert conn.block_storage.listings == 1


def test_many_image_refs_are_listed_in_chunks_and_snapshots_not_at_all() -> None:
    conn = FakeConnection()
    refs = [
        ArtifactRef(ArtifactKind.IMAGE, f"i{n:03}") for n in range(2 * IMAGE_IDS_PER_LISTING + 1)
    ]

    statuses = adapter(conn).artifact_statuses(refs)

    assert len(statuses) == len(refs)
    assert len(conn.image.listings) == 3
    assert conn.block_storage.listings == 0
    assert adapter(conn).artifact_statuses([]) == {}


def test_find_artifacts_matches_every_pair_over_images_and_snapshots() -> None:
    conn = FakeConnection(
        images=[image("i1", run="r1", target="t1"), image("i2", run="r1", target="t2")],
        snapshots=[snapshot("s1", run="r1", target="t1"), snapshot("s2", run="r2")],
    )
    cloud = adapter(conn)

    assert [i.ref.id for i in cloud.find_artifacts({"run": "r1", "target": "t1"})] == ["i1", "s1"]
    assert cloud.find_artifacts({"run": "r3"}) == []
    assert all(listing["owner"] == PROJECT for listing in conn.image.listings)


@pytest.mark.parametrize(
    ("metadata", "sent"),
    [
        (
            {"stackback_run": "r1", "stackback_target": "t"},
            {"stackback_run": "r1", "stackback_target": "t"},
        ),
        (
            {"name": "n", "status": "active", "owner": "x", "stackback_run": "r1"},
            {"stackback_run": "r1"},
        ),
        ({"label": "in:a,b", "note": "", "k": "v"}, {"k": "v"}),
        ({"paginated": "yes", "headers": "h", "k": "v"}, {"k": "v"}),
    ],
)
def test_only_exact_custom_pairs_go_to_glance(
    metadata: dict[str, str], sent: dict[str, str]
) -> None:
    assert property_filters(metadata) == sent


def test_list_marked_artifacts_only_returns_marked_ones() -> None:
    marker = {MARKER_CREATED_BY: CREATED_BY_VALUE}
    conn = FakeConnection(
        images=[image("i1", **marker), image("i2", stackback_created_by="someone-else")],
        snapshots=[snapshot("s1", **marker), snapshot("s2")],
    )
    assert [i.ref.id for i in adapter(conn).list_marked_artifacts()] == ["i1", "s1"]


def test_find_servers_filters_metadata_from_one_listing() -> None:
    servers = [
        Server.existing(id="a", name="web", image={"id": "x"}, metadata={"backup": "daily"}),
        Server.existing(id="b", name="db", image="", metadata={"backup": "weekly"}),
        Server.existing(id="c", name="bfv", image="", metadata={"backup": "daily"}),
    ]
    conn = FakeConnection(servers=servers)

    found = adapter(conn).find_servers(Selector("backup", "daily"))

    assert [(s.id, s.volume_backed) for s in found] == [("a", False), ("c", True)]
    assert conn.compute.listings == 1


def test_unknown_server_is_not_found() -> None:
    with pytest.raises(CloudNotFound, match="fake"):
        adapter(FakeConnection()).get_server("nope")


def test_set_metadata_of_an_image_sends_string_properties() -> None:
    conn = FakeConnection()
    adapter(conn).set_artifact_metadata(ArtifactRef(ArtifactKind.IMAGE, "i1"), {"k": "v"})
    assert conn.image.updates == [("i1", {"k": "v"})]


def test_deleting_a_snapshot_cinder_refuses_with_400_is_busy() -> None:
    conn = FakeConnection(delete_error=http_error(400, "status must be available or error"))
    with pytest.raises(CloudBusy):
        adapter(conn).delete_artifact(ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s1"))


def test_deleting_a_snapshot_other_failures_keep_their_mapping() -> None:
    conn = FakeConnection(delete_error=http_error(503))
    with pytest.raises(CloudUnavailable):
        adapter(conn).delete_artifact(ArtifactRef(ArtifactKind.VOLUME_SNAPSHOT, "s1"))


def test_cinders_refusal_to_delete_a_parent_backup_stays_a_rejection() -> None:
    refusal = http_error(400, "Invalid backup: Incremental backups exist for this backup.")
    with pytest.raises(CloudRejected, match="Incremental backups exist"):
        adapter(FakeConnection(delete_error=refusal)).delete_artifact(
            ArtifactRef(ArtifactKind.VOLUME_BACKUP, "b1")
        )


def test_a_cinder_backup_reads_back_the_parent_cinder_chose() -> None:
    from openstack.block_storage.v3.backup import Backup as CinderBackup

    from stackback.cloud.openstack.convert import backup_info

    def made(backup_id: str, at: str, *, incremental: bool) -> CinderBackup:
        return CinderBackup(
            id=backup_id,
            volume_id="v1",
            status="available",
            created_at=at,
            is_incremental=incremental,
            metadata={"stackback_created_by": "stackback"},
            size=1,
        )

    full = made("b-full", "2026-01-01T01:00:00", incremental=False)
    inc1 = made("b-inc1", "2026-01-02T01:00:00", incremental=True)
    inc2 = made("b-inc2", "2026-01-03T01:00:00", incremental=True)
    siblings = [inc2, full, inc1]
    assert backup_info(full, siblings).parent is None
    # Cinder's rule: the newest before
    assert backup_info(inc1, siblings).parent == ArtifactRef(ArtifactKind.VOLUME_BACKUP, "b-full")
    assert backup_info(inc2, siblings).parent == ArtifactRef(ArtifactKind.VOLUME_BACKUP, "b-inc1")


def test_the_parent_read_back_replays_cinders_choice_not_the_listing_order() -> None:
    from openstack.block_storage.v3.backup import Backup as CinderBackup

    from stackback.cloud.openstack.convert import backup_info

    def made(backup_id: str, at: str, **fields: Any) -> CinderBackup:
        return CinderBackup(
            **{"status": "available", **fields}, id=backup_id, volume_id="v1", created_at=at
        )

    full = made("b-full", "2026-01-01T01:00:00", has_dependent_backups=True)
    # Asked for before the incremental but still being made then: Cinder passed it over.
    late = made("b-late", "2026-01-01T23:59:00", has_dependent_backups=False)
    failed = made("b-failed", "2026-01-02T00:30:00", status="error")
    inc = made("b-inc", "2026-01-02T01:00:00", is_incremental=True)
    found = backup_info(inc, [late, inc, failed, full]).parent
    assert found == ArtifactRef(ArtifactKind.VOLUME_BACKUP, "b-full")
    # Without Cinder's dependents flag: the latest available one by its data's time.
    bare = [made(b.id, b.created_at, status=b.status) for b in (full, late, failed)]
    assert backup_info(inc, bare).parent == ArtifactRef(ArtifactKind.VOLUME_BACKUP, "b-late")
    # A backup of an older snapshot: ordered by data_timestamp, not by when it was made.
    older_data = made("b-snap", "2026-01-01T12:00:00", data_timestamp="2025-12-31T00:00:00")
    assert backup_info(inc, [full, older_data]).parent == ArtifactRef(
        ArtifactKind.VOLUME_BACKUP, "b-full"
    )


def test_start_server_image_maps_409_to_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise http_error(409, "Cannot 'createImage' instance while it is in task_state x")

    monkeypatch.setattr(Server, "create_image", refuse)
    with pytest.raises(CloudBusy):
        adapter(FakeConnection()).start_server_image("s1", "img", {"k": "v"})


def test_start_server_image_returns_the_new_image(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []

    def create(server: Server, session: Any, name: str, metadata: dict[str, str]) -> str:
        calls.append((server.id, name, metadata))
        return "new-image"

    monkeypatch.setattr(Server, "create_image", create)
    ref = adapter(FakeConnection()).start_server_image("s1", "img", {"k": "v"})
    assert ref == ArtifactRef(ArtifactKind.IMAGE, "new-image")
    assert calls == [("s1", "img", {"k": "v"})]


# -- configuration ----------------------------------------------------------------------------


def write_clouds(tmp_path: Path, auth_url: str) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  unreachable:\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: u\n      password: p\n      project_name: p\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
    )
    return path


def test_from_config_is_lazy_and_names_the_missing_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path, "http://127.0.0.1:9")))
    cloud = OpenStackCloud.from_config("no-such-cloud")

    with pytest.raises(InvalidInput, match="no-such-cloud"):
        cloud.get_server("x")


def test_unreachable_keystone_is_unavailable_and_names_the_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path, "http://127.0.0.1:9")))
    cloud = OpenStackCloud.from_config("unreachable")

    with pytest.raises(CloudUnavailable, match="unreachable"):
        cloud.get_server("x")
