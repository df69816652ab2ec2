"""The :class:`~stackback.ports.DatabaseCloud` port over Trove's v1.0 API.

openstacksdk's ``database`` proxy knows instances but not backups, so every call
goes as raw REST through the connection's ``database`` adapter (its endpoint
already names the project), with HTTP errors mapped like the other adapters'.
Trove backups carry no metadata: their markers are read from the description
(``stackback.databases.read_markers``); a backup's ``dependents`` are the backups
whose ``parent_id`` names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from openstack.connection import Connection

from stackback.cloud.openstack.errors import cloud_errors, error_for_status
from stackback.cloud.states import TROVE_BACKUP_STATES
from stackback.databases import check_selector, read_markers, selects
from stackback.errors import CloudBusy, CloudNotFound, CloudRejected
from stackback.policy import ArtifactKind, ArtifactStatus, Selector
from stackback.ports import ArtifactInfo, ArtifactRef, DatabaseInfo, DatabaseRestore, DatabaseSpec

UNPROCESSABLE = 422
"""Trove's answer when a resource's state forbids the action now (an instance taking a
backup, a backup still running): transient, so :class:`CloudBusy` (retried)."""
PAGE = 100
"""Backups asked for per page (Trove caps it at its ``backups_page_size``; pages are followed)."""


class _Response(Protocol):
    status_code: int

    def json(self) -> Any: ...

    @property
    def text(self) -> str: ...


class OpenStackTroveOperations:
    """The Trove calls, mixed into :class:`~stackback.cloud.openstack.OpenStackCloud`."""

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        raise NotImplementedError

    # -- the DatabaseCloud port -----------------------------------------------------------

    def get_database(self, instance: str) -> DatabaseInfo:
        """One instance by id, else by (unique) name."""
        what = f"looking up database instance {instance!r} on {self._where}"
        response = self._request("GET", f"/instances/{instance}", what, missing_ok=True)
        if response is not None:
            return _instance(response.json()["instance"])
        named = [i for i in self._instances(what) if i.name == instance]
        if len(named) == 1:
            return named[0]
        if named:
            raise CloudRejected(f"{what}: more than one instance is named {instance!r}")
        raise CloudNotFound(f"{what}: no such database instance")

    def find_databases(self, selector: Selector) -> list[DatabaseInfo]:
        """Every instance the database selector takes (one listing)."""
        check_selector(selector)
        return [
            db
            for db in self._instances(f"listing database instances on {self._where}")
            if selects(
                selector,
                name=db.name,
                datastore=db.spec.datastore,
                version=db.spec.datastore_version,
            )
        ]

    def start_database_backup(
        self, instance_id: str, *, name: str, description: str, parent_id: str | None
    ) -> ArtifactRef:
        """``POST /backups``; stackback names the parent itself (never ``incremental`` alone)."""
        body: dict[str, Any] = {"name": name, "instance": instance_id}
        if description:  # Trove refuses an empty one (400)
            body["description"] = description
        if parent_id is not None:
            body["parent_id"] = parent_id
            body["incremental"] = 1
        what = f"backup of database instance {instance_id} on {self._where}"
        response = self._request("POST", "/backups", what, json={"backup": body})
        assert response is not None
        return ArtifactRef(ArtifactKind.DATABASE_BACKUP, str(response.json()["backup"]["id"]))

    def database_backups(self, instance_id: str | None = None) -> list[ArtifactInfo]:
        """The project's backups (of one instance), with their markers and dependents."""
        rows = self._backup_rows()
        infos = _backup_infos(rows)
        if instance_id is None:
            return infos
        mine = {str(row["id"]) for row in rows if row.get("instance_id") == instance_id}
        return [info for info in infos if info.ref.id in mine]

    def restore_database(self, request: DatabaseRestore) -> str:
        """``POST /instances`` with ``restorePoint``; the new instance's id."""
        body = {
            "name": request.name,
            "flavorRef": request.spec.flavor,
            "volume": {"size": request.spec.volume_size},
            "datastore": {
                "type": request.spec.datastore,
                "version": request.spec.datastore_version,
            },
            "restorePoint": {"backupRef": request.backup_id},
        }
        what = f"restoring backup {request.backup_id} on {self._where}"
        response = self._request("POST", "/instances", what, json={"instance": body})
        assert response is not None
        return str(response.json()["instance"]["id"])

    def delete_database(self, instance_id: str) -> None:
        """Delete an instance; already gone is fine."""
        what = f"deleting database instance {instance_id} on {self._where}"
        self._request("DELETE", f"/instances/{instance_id}", what, missing_ok=True)

    # -- artifacts of kind database-backup (for find_artifacts, artifact_statuses...) -----

    def _has_trove(self) -> bool:
        with cloud_errors(f"reading the catalog of {self._where}"):
            return bool(self.conn.has_service("database"))

    def _trove_backups(self) -> list[ArtifactInfo]:
        """Every backup of the project, or none where the cloud has no Trove."""
        return _backup_infos(self._backup_rows()) if self._has_trove() else []

    def _delete_trove_backup(self, backup_id: str) -> None:
        what = f"deleting database backup {backup_id} on {self._where}"
        self._request("DELETE", f"/backups/{backup_id}", what, missing_ok=True)

    # -- internals ------------------------------------------------------------------------

    def _instances(self, what: str) -> list[DatabaseInfo]:
        response = self._request("GET", "/instances", what)
        assert response is not None
        return [_instance(row) for row in response.json().get("instances", [])]

    def _backup_rows(self) -> list[Mapping[str, Any]]:
        what = f"listing database backups on {self._where}"
        rows: list[Mapping[str, Any]] = []
        marker: str | None = None
        while True:
            query = f"/backups?limit={PAGE}" + (f"&marker={marker}" if marker else "")
            response = self._request("GET", query, what)
            assert response is not None
            page = response.json().get("backups", [])
            rows.extend(page)
            if len(page) < PAGE or not page:
                return rows
            marker = str(page[-1]["id"])

    def _request(
        self, method: str, url: str, what: str, *, json: Any = None, missing_ok: bool = False
    ) -> _Response | None:
        with cloud_errors(what):
            response: _Response = self.conn.database.request(
                url, method, json=json, raise_exc=False
            )
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code == UNPROCESSABLE:
            raise CloudBusy(f"{what}: HTTP 422: {response.text}")
        if response.status_code >= 400:
            raise error_for_status(
                response.status_code, f"{what}: HTTP {response.status_code}: {response.text}"
            )
        return response


def _instance(row: Mapping[str, Any]) -> DatabaseInfo:
    datastore = row.get("datastore") or {}
    flavor = row.get("flavor") or {}
    return DatabaseInfo(
        id=str(row["id"]),
        name=str(row.get("name") or ""),
        status=str(row.get("status") or ""),
        spec=DatabaseSpec(
            flavor=str(flavor.get("id") or ""),
            volume_size=int((row.get("volume") or {}).get("size") or 0),
            datastore=str(datastore.get("type") or ""),
            datastore_version=str(datastore.get("version") or ""),
        ),
        project_id=row.get("tenant_id"),
    )


def _backup_infos(rows: Sequence[Mapping[str, Any]]) -> list[ArtifactInfo]:
    children: dict[str, list[str]] = {}
    for row in rows:
        if row.get("parent_id"):
            children.setdefault(str(row["parent_id"]), []).append(str(row["id"]))
    return [_backup_info(row, children.get(str(row["id"]), ())) for row in rows]


def _backup_info(row: Mapping[str, Any], dependents: Iterable[str]) -> ArtifactInfo:
    status = str(row.get("status") or "")
    size = row.get("size")
    state = TROVE_BACKUP_STATES.get(status, ArtifactStatus.PENDING)
    return ArtifactInfo(
        ref=ArtifactRef(ArtifactKind.DATABASE_BACKUP, str(row["id"])),
        status=state,
        name=str(row.get("name") or ""),
        size=int(float(size) * 2**30)
        if size is not None and state is ArtifactStatus.AVAILABLE
        else None,
        metadata=read_markers(row.get("description")),
        detail=f"trove status {status}"
        + (f": {row['fail_reason']}" if row.get("fail_reason") else ""),
        raw_status=status,
        dependents=tuple(ArtifactRef(ArtifactKind.DATABASE_BACKUP, d) for d in dependents),
        parent=ArtifactRef(ArtifactKind.DATABASE_BACKUP, str(row["parent_id"]))
        if row.get("parent_id")
        else None,
    )
