"""``stackback sim ...``: populate the built-in simulated cloud without writing Python.

The commands act on the simulator that ``--os-cloud sim`` / ``sim:PATH`` names (``sim``,
in the state directory, when no cloud is given) and refuse a real cloud.
"""

from __future__ import annotations

from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.cloud import is_simulator
from stackback.cloud.simulator import SimulatedCloud
from stackback.errors import CloudNotFound, InvalidInput, NotFound
from stackback.policy import Selector
from stackback.ports import DatabaseInfo, ServerInfo

MAX_NAME = 255
MAX_VOLUMES = 16


def _simulator(app: AppContext) -> SimulatedCloud:
    spec = app.settings.cloud or "sim"
    if not is_simulator(spec):
        raise InvalidInput(
            f"'stackback sim' acts on the built-in simulator; --os-cloud {spec!r} is a real "
            "cloud (use --os-cloud sim or sim:PATH)",
            field="os-cloud",
        )
    cloud = app.clouds(spec)
    assert isinstance(cloud, SimulatedCloud)
    return cloud


def _server_row(server: ServerInfo) -> dict[str, Any]:
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "volume_backed": server.volume_backed,
        "metadata": dict(server.metadata),
    }


def _metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        try:
            selector = Selector.parse(pair)  # KEY=VALUE with the checks a selector gets
        except InvalidInput:
            raise InvalidInput(
                f"--metadata expects KEY=VALUE (a Nova metadata key), not {pair!r}",
                field="metadata",
            ) from None
        metadata[selector.key] = selector.value
    return metadata


@click.group("sim")
def sim_group() -> None:
    """The built-in simulated cloud: create servers to back up (no Python needed)."""


@sim_group.group("server")
def server_group() -> None:
    """Servers of the simulated cloud."""


@server_group.command("create")
@click.argument("name")
@click.option("--volume-backed", is_flag=True, help="Boot from a Cinder root volume.")
@click.option(
    "--volumes",
    type=click.IntRange(0, MAX_VOLUMES),
    default=0,
    show_default=True,
    help="Data volumes to attach.",
)
@click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE", help="Server metadata.")
@click.option("--host", metavar="HOST", help="Compute host (uploads queue per host).")
@format_option
@pass_app
def create(
    app: AppContext,
    /,
    name: str,
    volume_backed: bool,
    volumes: int,
    metadata: tuple[str, ...],
    host: str | None,
    fmt: str,
) -> None:
    """Create server NAME in the simulated cloud (ACTIVE at once)."""
    if not name.strip() or len(name) > MAX_NAME:
        raise InvalidInput(f"a server name is 1 to {MAX_NAME} characters", field="name")
    given = _metadata(metadata)
    server = _simulator(app).create_server(
        name, metadata=given, volume_backed=volume_backed, volumes=volumes, host=host
    )
    emit_object(_server_row(server), fmt)


@server_group.command("list")
@format_option
@pass_app
def list_servers(app: AppContext, /, fmt: str) -> None:
    """The simulated cloud's servers."""
    rows = [_server_row(server) for server in _simulator(app).servers()]
    columns = ["id", "name", "status", "volume_backed", "metadata"]
    emit_list(rows, columns, fmt, title="Servers", whole=("id", "name", "status"))


@server_group.command("delete")
@click.argument("server")
@format_option
@pass_app
def delete(app: AppContext, /, server: str, fmt: str) -> None:
    """Delete SERVER (name or id) and its volumes; its backups stay."""
    cloud = _simulator(app)
    try:
        found = cloud.get_server(server)
    except CloudNotFound as error:
        raise NotFound(error.message) from None
    cloud.delete_server(found.id)
    emit_object({**_server_row(found), "status": "DELETED"}, fmt)


@sim_group.group("database")
def database_group() -> None:
    """Trove database instances of the simulated cloud."""


def _database_row(db: DatabaseInfo) -> dict[str, Any]:
    return {
        "id": db.id,
        "name": db.name,
        "status": db.status,
        "datastore": db.spec.datastore,
        "datastore_version": db.spec.datastore_version,
        "flavor": db.spec.flavor,
        "volume_size": db.spec.volume_size,
    }


@database_group.command("create")
@click.argument("name")
@click.option("--datastore", default="mysql", show_default=True, help="Datastore type.")
@click.option("--datastore-version", default="5.7", show_default=True, help="Its version.")
@click.option("--flavor", default="m1.small", show_default=True, help="Flavor.")
@click.option(
    "--volume-size", type=click.IntRange(1, 16_384), default=2, show_default=True, help="GB."
)
@format_option
@pass_app
def create_database(
    app: AppContext,
    /,
    name: str,
    datastore: str,
    datastore_version: str,
    flavor: str,
    volume_size: int,
    fmt: str,
) -> None:
    """Create Trove instance NAME in the simulated cloud (ACTIVE at once)."""
    if not name.strip() or len(name) > MAX_NAME:
        raise InvalidInput(f"a database name is 1 to {MAX_NAME} characters", field="name")
    try:
        db = _simulator(app).create_database(
            name,
            datastore=datastore,
            version=datastore_version,
            flavor=flavor,
            volume_size=volume_size,
        )
    except CloudNotFound as error:
        raise InvalidInput(error.message, field="datastore") from None
    emit_object(_database_row(db), fmt)


@database_group.command("list")
@format_option
@pass_app
def list_databases(app: AppContext, /, fmt: str) -> None:
    """The simulated cloud's Trove instances."""
    rows = [_database_row(db) for db in _simulator(app).databases()]
    columns = ["id", "name", "status", "datastore", "datastore_version", "flavor", "volume_size"]
    emit_list(rows, columns, fmt, title="Database instances", whole=("id", "name", "status"))


COMMANDS = [sim_group]
