"""Keystone entities, flavor/image and health checks for the plane (plane venv only).

Called by plane.py as ``bootstrap.py STEP --state RUNDIR/state.json`` with STEP one of
``identity``, ``resources``, ``wait-compute``, ``wait-healthy``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack
from openstack.connection import Connection

SERVICE_USERS = ("nova", "glance", "placement", "cinder")
CATALOG = {  # service type: (name, url path)
    "compute": ("nova", "nova", "/v2.1"),
    "image": ("glance", "glance", ""),
    "placement": ("placement", "placement", ""),
    "volumev3": ("cinderv3", "cinder", "/v3"),
    "block-storage": ("cinder", "cinder", "/v3"),
}
FLAVOR = {"name": "m1.tiny", "ram": 128, "vcpus": 1, "disk": 1}
IMAGE_NAME = "stackback-tiny"
IMAGE_BYTES = b"stackback tiny image\n"


def admin(state: dict[str, Any]) -> Connection:
    return openstack.connect(
        auth_url=state["urls"]["keystone"] + "/v3",
        username="admin",
        password=state["passwords"]["admin"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=state["region"],
        identity_api_version="3",
    )


def wait(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # services are still coming up: retry
            last = exc
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


def ensure_role(conn: Connection, name: str) -> Any:
    return conn.identity.find_role(name) or conn.identity.create_role(name=name)


def ensure_project(conn: Connection, name: str) -> Any:
    return conn.identity.find_project(name, domain_id="default") or conn.identity.create_project(
        name=name, domain_id="default"
    )


def ensure_user(conn: Connection, name: str, password: str, project: Any, roles: list[Any]) -> None:
    user = conn.identity.find_user(name, domain_id="default") or conn.identity.create_user(
        name=name, password=password, domain_id="default", default_project_id=project.id
    )
    for role in roles:
        conn.identity.assign_project_role_to_user(project, user, role)


def identity(state: dict[str, Any]) -> None:
    conn = admin(state)
    wait("keystone", lambda: conn.identity.find_project("admin") is not None)
    roles = {name: ensure_role(conn, name) for name in ("admin", "member", "reader", "service")}
    service_project = ensure_project(conn, "service")
    for user in SERVICE_USERS:
        ensure_user(
            conn,
            user,
            state["service_password"],
            service_project,
            [roles["admin"], roles["service"]],
        )
    for cloud, (user, project_name) in state["users"].items():
        if cloud == "admin":
            continue
        project = ensure_project(conn, project_name)
        wanted = ["reader"] if cloud.endswith("-reader") else ["member", "reader"]
        ensure_user(conn, user, state["passwords"][user], project, [roles[name] for name in wanted])
    for service_type, (name, port_name, path) in CATALOG.items():
        service = conn.identity.find_service(name) or conn.identity.create_service(
            name=name, type=service_type
        )
        url = state["urls"][port_name] + path
        for interface in ("public", "internal", "admin"):
            conn.identity.create_endpoint(
                service_id=service.id, interface=interface, url=url, region_id=state["region"]
            )


def resources(state: dict[str, Any]) -> None:
    conn = admin(state)
    wait("nova-api", lambda: conn.compute.get("/").status_code == 200)
    wait("glance", lambda: list(conn.image.images()) is not None)
    wait("cinder-api", lambda: conn.block_storage.get("/").status_code in (200, 300))
    if conn.compute.find_flavor(FLAVOR["name"]) is None:
        conn.compute.create_flavor(is_public=True, **FLAVOR)
    if conn.image.find_image(IMAGE_NAME) is None:
        conn.image.create_image(
            name=IMAGE_NAME,
            data=IMAGE_BYTES,
            disk_format="raw",
            container_format="bare",
            visibility="public",
            allow_duplicates=True,
            wait=True,
        )


def wait_compute(state: dict[str, Any]) -> None:
    conn = admin(state)
    wait(
        "nova-compute service up",
        lambda: any(
            s.binary == "nova-compute" and s.state == "up" for s in conn.compute.services()
        ),
    )
    wait(
        "a resource provider in placement",
        lambda: any(True for _ in conn.placement.resource_providers()),
    )


def wait_healthy(state: dict[str, Any]) -> None:
    conn = admin(state)
    for binary in ("nova-conductor", "nova-scheduler", "nova-compute"):
        wait(
            f"{binary} up",
            lambda b=binary: any(
                s.binary == b and s.state == "up" for s in conn.compute.services()
            ),
        )
    for binary in ("cinder-scheduler", "cinder-volume", "cinder-backup"):
        wait(
            f"{binary} up",
            lambda b=binary: any(
                s.binary == b and s.state == "up" for s in conn.block_storage.services()
            ),
        )
    # Listed only once discover_hosts has mapped the compute host to its cell.
    wait("a hypervisor", lambda: any(True for _ in conn.compute.hypervisors()))
    wait("image active", lambda: conn.image.find_image(IMAGE_NAME).status == "active")


STEPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "identity": identity,
    "resources": resources,
    "wait-compute": wait_compute,
    "wait-healthy": wait_healthy,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args()
    STEPS[args.step](json.loads(args.state.read_text()))


if __name__ == "__main__":
    main()
