"""The openstacksdk groups adapter against fakes: a group type's promise read from its specs
(hidden from project members: not trusted), a group snapshot refused before Cinder is asked
when its group is not seen to promise consistency, members found by ``group_snapshot_id``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stackback.cloud.openstack import OpenStackCloud
from stackback.cloud.openstack.groups import SPECS_HIDDEN
from stackback.databases import description
from stackback.errors import CloudRejected
from stackback.policy import ArtifactKind, ArtifactStatus
from stackback.ports import ArtifactRef

RUN, BACKUP = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


class FakeCinder:
    def __init__(self, specs: dict[str, str]) -> None:
        self.specs = specs
        self.made: list[dict[str, Any]] = []
        self.volumes_ = [
            SimpleNamespace(id="v1", group_id="g1"),
            SimpleNamespace(id="v2", group_id="g1"),
            SimpleNamespace(id="v3", group_id=None),
        ]
        self.snapshots_: list[Any] = []

    def get_volume(self, volume_id: str) -> Any:
        return next(v for v in self.volumes_ if v.id == volume_id)

    def volumes(self, **query: Any) -> list[Any]:
        return self.volumes_

    def get_group(self, group_id: str) -> Any:
        return SimpleNamespace(id=group_id, name="grp", group_type="t1")

    def get_group_type(self, type_id: str) -> Any:
        return SimpleNamespace(id=type_id, name="cg", group_specs=self.specs)

    def create_group_snapshot(self, **attrs: Any) -> Any:
        self.made.append(attrs)
        self.snapshots_ = [
            SimpleNamespace(id="s1", volume_id="v1", group_snapshot_id="gs1", status="creating"),
            SimpleNamespace(id="s2", volume_id="v2", group_snapshot_id="gs1", status="creating"),
        ]
        return SimpleNamespace(id="gs1")

    def snapshots(self, **query: Any) -> list[Any]:
        return self.snapshots_

    def group_snapshots(self, **query: Any) -> list[Any]:
        return [
            SimpleNamespace(
                id="gs1",
                name="n",
                status="available",
                group_id="g1",
                created_at=None,
                description=description(
                    {"stackback_run": RUN, "stackback_backup": BACKUP}, full=True
                ),
            )
        ]


def _cloud(cinder: FakeCinder) -> OpenStackCloud:
    connection: Any = SimpleNamespace(block_storage=cinder)
    return OpenStackCloud(lambda: connection, cloud_name="fake")


def test_a_type_whose_specs_promise_it_is_consistent_with_every_member() -> None:
    (group,) = _cloud(
        FakeCinder({"consistent_group_snapshot_enabled": "<is> True"})
    ).volume_groups_of(["v1", "v3"])
    assert (group.id, group.volume_ids, group.consistent) == ("g1", ("v1", "v2"), True)


def test_hidden_specs_are_not_a_promise_and_its_group_snapshot_is_never_asked_for() -> None:
    cinder = FakeCinder({})
    cloud = _cloud(cinder)
    (group,) = cloud.volume_groups_of(["v1"])
    assert not group.consistent and group.why_not == SPECS_HIDDEN
    with pytest.raises(CloudRejected):
        cloud.create_group_snapshot("g1", "n", "")
    assert cinder.made == []


def test_a_group_snapshot_gives_its_members_and_reads_its_markers_back() -> None:
    cloud = _cloud(FakeCinder({"consistent_group_snapshot_enabled": "<is> True"}))
    made = cloud.create_group_snapshot("g1", "n", "d")
    assert made.ref == ArtifactRef(ArtifactKind.GROUP_SNAPSHOT, "gs1")
    assert {v: r.id for v, r in made.members.items()} == {"v1": "s1", "v2": "s2"}
    info = cloud.artifact_statuses([made.ref])[made.ref]
    assert info.status is ArtifactStatus.AVAILABLE
    assert {c.id for c in info.children} == {"s1", "s2"}
    assert info.metadata["stackback_backup"] == BACKUP
