"""The pure restore plan: what is recorded, what the cloud still knows, and the overrides."""

from __future__ import annotations

import pytest

from stackback.errors import InvalidInput
from stackback.records import NetworkSpec, ServerSpec, VolumeSpec
from stackback.restoreplan import (
    RestoreMode,
    RestoreOverrides,
    RestorePlan,
    build_plan,
    volumes_from_mapping,
)

SPEC = ServerSpec(
    flavor="m1.small",
    networks=(NetworkSpec("private", "10.0.0.5"),),
    security_groups=("default", "web"),
    key_name="ops",
    availability_zone="az1",
    metadata={"role": "db"},
    volumes=(
        VolumeSpec(10, "/dev/vda", 0, "ssd", True, "v-root"),
        VolumeSpec(20, "/dev/vdb", None, "hdd", False, "v-data"),
    ),
)
MAPPING = [
    {"source_type": "snapshot", "snapshot_id": "s-data", "volume_size": 20,
     "boot_index": None, "device_name": "/dev/vdb", "delete_on_termination": False},
    {"source_type": "snapshot", "snapshot_id": "s-root", "volume_size": 10,
     "boot_index": 0, "device_name": "/dev/vda", "delete_on_termination": True},
    {"source_type": "blank", "volume_size": 1},
]  # fmt: skip


def _plan(**changes: object) -> RestorePlan:
    arguments: dict[str, object] = {
        "mode": RestoreMode.AS_NEW,
        "name": "db2",
        "overrides": RestoreOverrides(),
        "recorded": SPEC,
        "live": SPEC,
        "image_id": "img",
        "volume_backed": False,
    }
    arguments.update(changes)
    return build_plan(**arguments)  # type: ignore[arg-type]


def test_a_server_spec_survives_its_json_column() -> None:
    assert ServerSpec.from_dict(SPEC.to_dict()) == SPEC
    assert ServerSpec.from_dict({}) == ServerSpec()


def test_volumes_come_from_the_mapping_root_first_with_recorded_types() -> None:
    root, data = volumes_from_mapping(MAPPING, SPEC)
    assert (root.snapshot_id, root.boot_index, root.volume_type, root.size_gb) == (
        "s-root", 0, "ssd", 10,
    )  # fmt: skip
    assert (data.snapshot_id, data.boot_index, data.volume_type) == ("s-data", None, "hdd")
    assert root.delete_on_termination and not data.delete_on_termination


def test_a_plan_survives_its_json_column() -> None:
    plan = _plan(volume_backed=True, mapping=MAPPING)
    assert RestorePlan.from_dict(plan.to_dict()) == plan
    assert plan.image_id is None


def test_fixed_ips_are_asked_for_only_when_the_source_is_gone() -> None:
    assert _plan().networks == (NetworkSpec("private"),)
    assert _plan(live=None).networks == (NetworkSpec("private", "10.0.0.5"),)


def test_overrides_replace_what_was_recorded_and_are_noted() -> None:
    overrides = RestoreOverrides(
        flavor="m1.tiny", network="isolated", key_name="k2", security_groups=("sg",)
    )
    plan = _plan(overrides=overrides)
    assert (plan.flavor, plan.networks, plan.key_name, plan.security_groups) == (
        "m1.tiny", (NetworkSpec("isolated"),), "k2", ("sg",),
    )  # fmt: skip
    assert any("flavor m1.tiny from the command line" in note for note in plan.notes)


def test_without_a_record_the_source_server_is_asked_and_it_says_so() -> None:
    plan = _plan(recorded=None)
    assert plan.flavor == "m1.small"
    assert any("took it from the source server" in note for note in plan.notes)
    with pytest.raises(InvalidInput, match="--flavor"):
        _plan(recorded=None, live=None)


def test_in_place_is_refused_for_a_volume_backed_server() -> None:
    with pytest.raises(InvalidInput, match="--as-new"):
        _plan(mode=RestoreMode.IN_PLACE, volume_backed=True, mapping=MAPPING)


def test_a_volume_backed_backup_without_a_root_snapshot_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no root volume"):
        _plan(volume_backed=True, mapping=MAPPING[:1])


def test_data_volumes_an_image_backed_backup_lacks_are_noted() -> None:
    assert any("not part of this backup" in note for note in _plan().notes)
