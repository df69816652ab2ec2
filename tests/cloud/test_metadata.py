"""Finding this server's id: a metadata service on 127.0.0.1 and config drives in a directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stackback.cloud.metadata import (
    CONFIG_DRIVE_LABEL,
    META_DATA_PATH,
    find_config_drive,
    from_config_drive,
    from_metadata_service,
    identify,
)
from stackback.errors import IdentityUnknown, InvalidInput
from tests.support.metadata_service import PATH, SERVER_ID, MetadataService, metadata_service

__all__ = ["metadata_service"]  # the fixture


def config_drive(root: Path, document: dict[str, Any]) -> Path:
    path = root / META_DATA_PATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(document))
    return root


def test_the_metadata_service_names_the_server(metadata_service: MetadataService) -> None:
    found = from_metadata_service(metadata_service.url)
    assert (found.server_id, found.name) == (SERVER_ID, "web1")
    assert metadata_service.url in found.source
    assert metadata_service.requests == [PATH]


def test_the_metadata_service_is_asked_directly_never_through_a_proxy(
    metadata_service: MetadataService, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert from_metadata_service(metadata_service.url).server_id == SERVER_ID


@pytest.mark.parametrize(
    ("document", "status", "words"),
    [
        ({"uuid": SERVER_ID}, 404, "HTTP 404"),
        (b"<html>", 200, "not JSON"),
        ({"name": "web1"}, 200, "no 'uuid'"),
        ({"uuid": ""}, 200, "no 'uuid'"),
        ([SERVER_ID], 200, "no 'uuid'"),
    ],
)
def test_an_answer_without_a_server_id_is_identity_unknown(
    metadata_service: MetadataService, document: Any, status: int, words: str
) -> None:
    metadata_service.document, metadata_service.status = document, status
    with pytest.raises(IdentityUnknown, match=words):
        from_metadata_service(metadata_service.url)


def test_no_metadata_service_is_identity_unknown_and_a_bad_url_is_bad_input(
    tmp_path: Path,
) -> None:
    with pytest.raises(IdentityUnknown, match="cannot be reached"):
        from_metadata_service("http://127.0.0.1:9" + PATH, timeout=2)
    for url in ("ftp://127.0.0.1/x", "127.0.0.1/openstack", "http:///x"):
        with pytest.raises(InvalidInput):
            from_metadata_service(url)
    with pytest.raises(InvalidInput, match="not both"):
        identify(metadata_url="http://127.0.0.1:9" + PATH, config_drive=tmp_path)


def test_a_config_drive_names_the_server(tmp_path: Path) -> None:
    drive = config_drive(tmp_path / "drive", {"uuid": SERVER_ID, "project_id": "p1"})
    found = from_config_drive(drive)
    assert (found.server_id, found.project_id) == (SERVER_ID, "p1")
    assert str(drive) in found.source
    with pytest.raises(IdentityUnknown, match="cannot read"):
        from_config_drive(tmp_path / "nowhere")


def label_and_mounts(tmp_path: Path, mounted_at: Path | None) -> tuple[Path, Path]:
    """A /dev/disk/by-label with config-2 → a fake device, and a mounts table."""
    device = tmp_path / "dev" / "sr0"
    device.parent.mkdir()
    device.touch()
    by_label = tmp_path / "by-label"
    by_label.mkdir()
    (by_label / CONFIG_DRIVE_LABEL).symlink_to(device)
    mounts = tmp_path / "mounts"
    lines = ["proc /proc proc rw 0 0", "/dev/vda1 / ext4 rw 0 0"]
    if mounted_at is not None:
        lines.append(f"{device} {str(mounted_at).replace(' ', chr(92) + '040')} iso9660 ro 0 0")
    mounts.write_text("\n".join(lines) + "\n")
    return by_label, mounts


def test_a_mounted_config_drive_is_found_by_its_label_and_preferred(tmp_path: Path) -> None:
    drive = config_drive(tmp_path / "config drive", {"uuid": SERVER_ID})
    by_label, mounts = label_and_mounts(tmp_path, drive)

    assert find_config_drive(mounts=mounts, by_label=by_label) == drive
    found = identify(mounts=mounts, by_label=by_label)
    assert found.server_id == SERVER_ID
    assert "config drive" in found.source


def test_an_unmounted_config_drive_is_named_when_nothing_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_label, mounts = label_and_mounts(tmp_path, None)
    assert find_config_drive(mounts=mounts, by_label=by_label) is None
    monkeypatch.setattr(
        "stackback.cloud.metadata.DEFAULT_METADATA_URL", "http://127.0.0.1:9" + PATH
    )
    with pytest.raises(IdentityUnknown, match="is not mounted"):
        identify(mounts=mounts, by_label=by_label, timeout=2)
    assert find_config_drive(mounts=mounts, by_label=tmp_path / "no-labels") is None
