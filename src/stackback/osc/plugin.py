"""The ``openstack.cli.extension`` entry point: ``openstack backup ...`` is stackback.

The openstack client finds this module by its entry point, adds the commands of the
``openstack.backup.v1`` group, and gives each command ``client_manager.backup``,
made by :func:`make_client` on first use.
"""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib import utils

from stackback.osc.client import StackbackClient

API_NAME = "backup"
API_VERSION_OPTION = "os_backup_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = {"1": "stackback.osc.client.StackbackClient"}


def make_client(instance: Any) -> StackbackClient:
    """The ``backup`` client of a ``ClientManager``: stackback acting as its cloud."""
    return StackbackClient.for_client_manager(instance)


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The global option that selects the command group's version (there is one)."""
    parser.add_argument(
        "--os-backup-api-version",
        metavar="<backup-api-version>",
        default=utils.env("OS_BACKUP_API_VERSION", default=DEFAULT_API_VERSION),
        help=f"stackback command version, default={DEFAULT_API_VERSION} "
        "(Env: OS_BACKUP_API_VERSION)",
    )
    return parser
