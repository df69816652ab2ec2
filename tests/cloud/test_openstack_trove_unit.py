"""The Trove part of the openstacksdk adapter, against a recorded fake of Trove's v1.0 API:
requests as Trove expects them, markers read from descriptions, pages followed, errors mapped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stackback.cloud.openstack import OpenStackCloud
from stackback.databases import description
from stackback.errors import CloudBusy, CloudNotFound, CloudUnavailable
from stackback.policy import ArtifactKind, ArtifactStatus, Selector
from stackback.ports import MARKER_BACKUP, ArtifactRef, DatabaseRestore, DatabaseSpec

BACKUP_ID = "0b1f7f7e-7d7f-4a53-9b1c-2f6f1b0b9a11"
RUN_ID = "5a0f2d8c-3c9e-4e0c-8a3f-6d7b2f1c4e22"
INSTANCE = {
    "id": "i-1",
    "name": "orders",
    "status": "ACTIVE",
    "flavor": {"id": "m1.small"},
    "volume": {"size": 2},
    "datastore": {"type": "mysql", "version": "5.7"},
}


@dataclass
class Reply:
    status_code: int
    body: Any = None

    def json(self) -> Any:
        return self.body

    @property
    def text(self) -> str:
        return str(self.body)


@dataclass
class FakeTrove:
    backups: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)

    def request(self, url: str, method: str, *, json: Any = None, raise_exc: bool = True) -> Reply:
        assert raise_exc is False
        self.calls.append((method, url, json))
        path = url.split("?")[0]
        if (method, path) in self.fail:
            return Reply(self.fail[(method, path)], {"error": "injected"})
        if method == "GET" and path == "/instances":
            return Reply(200, {"instances": [INSTANCE]})
        if method == "GET" and path.startswith("/instances/"):
            if path.endswith("/i-1"):
                return Reply(200, {"instance": INSTANCE})
            return Reply(404, {"itemNotFound": {}})
        if method == "GET" and path == "/backups":
            query = dict(p.split("=") for p in url.split("?")[1].split("&"))
            limit, marker = int(query["limit"]), query.get("marker")
            ids = [b["id"] for b in self.backups]
            start = ids.index(marker) + 1 if marker else 0
            return Reply(200, {"backups": self.backups[start : start + limit]})
        if method == "POST" and path == "/backups":
            return Reply(202, {"backup": {"id": "tb-new", **json["backup"]}})
        if method == "POST" and path == "/instances":
            return Reply(200, {"instance": {"id": "i-new"}})
        if method == "DELETE":
            return Reply(202 if "gone" not in path else 404)
        raise AssertionError((method, url))


class FakeConn:
    def __init__(self, trove: FakeTrove) -> None:
        self.database = trove

    def has_service(self, name: str) -> bool:
        return name == "database"


@pytest.fixture
def trove() -> FakeTrove:
    return FakeTrove()


@pytest.fixture
def cloud(trove: FakeTrove) -> OpenStackCloud:
    return OpenStackCloud(lambda: FakeConn(trove), cloud_name="prod")  # type: ignore[arg-type,return-value]


def test_an_instance_is_found_by_id_or_name_with_what_a_restore_needs(
    cloud: OpenStackCloud,
) -> None:
    by_name = cloud.get_database("orders")
    assert by_name.id == "i-1" and by_name == cloud.get_database("i-1")
    assert by_name.spec == DatabaseSpec("m1.small", 2, "mysql", "5.7")
    with pytest.raises(CloudNotFound):
        cloud.get_database("nope")
    assert [d.id for d in cloud.find_databases(Selector("datastore", "my*"))] == ["i-1"]
    assert cloud.find_databases(Selector("name", "events")) == []


def test_an_incremental_names_its_parent_and_a_full_none(
    cloud: OpenStackCloud, trove: FakeTrove
) -> None:
    cloud.start_database_backup("i-1", name="n", description="d", parent_id="tb-0")
    cloud.start_database_backup("i-1", name="n", description="d", parent_id=None)
    (_, _, incremental), (_, _, full) = [c for c in trove.calls if c[0] == "POST"]
    assert incremental["backup"]["parent_id"] == "tb-0"
    assert incremental["backup"]["incremental"] == 1
    assert "parent_id" not in full["backup"] and "incremental" not in full["backup"]


def test_backups_are_read_over_pages_with_markers_and_dependents(
    cloud: OpenStackCloud, trove: FakeTrove
) -> None:
    ours = description(
        {"stackback_backup": BACKUP_ID, "stackback_run": RUN_ID, "stackback_policy": "p"},
        full=True,
    )
    trove.backups = [
        {"id": f"tb-{n}", "status": "COMPLETED", "size": 0.5, "instance_id": "i-1"}
        for n in range(150)
    ]
    trove.backups[0]["description"] = ours
    trove.backups[1]["parent_id"] = "tb-0"
    trove.backups[2].update(status="BUILDING", parent_id="tb-1")
    found = {i.ref.id: i for i in cloud.database_backups()}
    assert len(found) == 150
    assert found["tb-0"].metadata[MARKER_BACKUP] == BACKUP_ID
    assert found["tb-1"].metadata == {}  # no markers: foreign
    assert [d.id for d in found["tb-0"].dependents] == ["tb-1"]
    assert found["tb-2"].status is ArtifactStatus.PENDING and found["tb-2"].size is None
    assert found["tb-0"].size == 2**29


def test_deleting_and_restoring_speak_trove(cloud: OpenStackCloud, trove: FakeTrove) -> None:
    cloud.delete_artifact(ArtifactRef(ArtifactKind.DATABASE_BACKUP, "tb-gone"))  # 404: fine
    spec = DatabaseSpec("m1.small", 3, "mysql", "8.0")
    assert cloud.restore_database(DatabaseRestore("copy", "tb-0", spec, "r-1")) == "i-new"
    (body,) = [c[2] for c in trove.calls if c[:2] == ("POST", "/instances")]
    assert body["instance"]["restorePoint"] == {"backupRef": "tb-0"}
    assert body["instance"]["volume"] == {"size": 3}
    assert body["instance"]["datastore"] == {"type": "mysql", "version": "8.0"}


def test_trove_errors_are_mapped_like_the_other_services(
    cloud: OpenStackCloud, trove: FakeTrove
) -> None:
    trove.fail[("POST", "/backups")] = 422  # "not currently available": taking a backup
    with pytest.raises(CloudBusy):
        cloud.start_database_backup("i-1", name="n", description="d", parent_id=None)
    trove.fail[("GET", "/backups")] = 503
    with pytest.raises(CloudUnavailable):
        cloud.artifact_statuses([ArtifactRef(ArtifactKind.DATABASE_BACKUP, "tb-0")])
