"""``openstack backup restore`` and ``openstack backup verify``: recorded restore jobs."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from osc_lib.command import command

from stackback.engine.restore import RestoreRunner
from stackback.engine.worker import worker_name
from stackback.errors import InvalidInput
from stackback.osc.client import StackbackClient
from stackback.osc.common import StackbackCommand, one
from stackback.restoreplan import RestoreJob, RestoreMode, RestoreOverrides, RestoreState
from stackback.services.verify import DEFAULT_VERIFY_TIMEOUT
from stackback.verification import VerifyChecks
from stackback.views import plan_view, restore_view

WAIT_POLL = timedelta(seconds=5)
"""How often ``--wait`` looks at the cloud (tests make it faster)."""
LONGEST_TIMEOUT = 7 * 24 * 3600.0


def _runner(client: StackbackClient) -> RestoreRunner:
    return RestoreRunner(
        client.store, client.clouds, client.clock, owner=worker_name(), poll=WAIT_POLL
    )


def _timeout(seconds: float) -> timedelta:
    if not 1 <= seconds <= LONGEST_TIMEOUT:
        raise InvalidInput(
            f"--timeout must be between 1 and {LONGEST_TIMEOUT:.0f} seconds", field="timeout"
        )
    return timedelta(seconds=seconds)


class _JobCommand(StackbackCommand, command.ShowOne):
    """A command that starts a restore job and, with --wait, carries it out."""

    failure: str | None = None

    def run(self, parsed_args: argparse.Namespace) -> int:
        self.failure = None
        code = super().run(parsed_args)
        if self.failure is not None:
            self.log.error(self.failure)
            return 1
        return code

    def finish(self, job: RestoreJob, wait: bool) -> tuple[Any, Any]:
        if wait:
            job = _runner(self.client).drive(job.id)
            self.failure = self.failed(job)
        return one(restore_view(job))

    def failed(self, job: RestoreJob) -> str | None:
        if job.state is RestoreState.SUCCEEDED:
            return None
        return f"restore {job.id} {job.state.value}: {job.error or 'no detail'}"


class Restore(_JobCommand):
    """Restore a backup: a new server from it (default), or the server rebuilt in place."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("backup", metavar="BACKUP", help="Backup id (or 6+ characters).")
        parser.add_argument(
            "--as-new", dest="name", metavar="NAME", help="Name of the new server (the default)."
        )
        parser.add_argument(
            "--in-place", action="store_true", help="Rebuild the (image-backed) server itself."
        )
        parser.add_argument(
            "--volumes",
            dest="with_volumes",
            action="store_true",
            help="In place: also replace each data volume by one from the backup's snapshot.",
        )
        parser.add_argument("--flavor", metavar="F", help="Flavor instead of the recorded one.")
        parser.add_argument("--network", metavar="N", help="Network instead of the recorded ones.")
        parser.add_argument("--key-name", metavar="K", help="Key pair instead of the recorded one.")
        parser.add_argument(
            "--security-group",
            dest="security_groups",
            action="append",
            default=[],
            metavar="G",
            help="Security group instead of the recorded ones (repeatable).",
        )
        parser.add_argument(
            "--availability-zone", metavar="Z", help="Zone instead of the recorded one."
        )
        parser.add_argument("--dry-run", action="store_true", help="Show the plan; create nothing.")
        parser.add_argument(
            "--wait", action="store_true", help="Carry the restore out in this process and wait."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            metavar="S",
            help="Seconds; past this the restore fails and removes what it made (default 3600).",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        if parsed_args.in_place and parsed_args.name is not None:
            raise InvalidInput("--in-place and --as-new exclude each other")
        mode = RestoreMode.IN_PLACE if parsed_args.in_place else RestoreMode.AS_NEW
        overrides = RestoreOverrides(
            name=parsed_args.name,
            flavor=parsed_args.flavor,
            network=parsed_args.network,
            key_name=parsed_args.key_name,
            security_groups=tuple(parsed_args.security_groups),
            availability_zone=parsed_args.availability_zone,
        )
        service = self.client.restores
        if parsed_args.dry_run:
            planned = service.plan(
                parsed_args.backup,
                mode=mode,
                overrides=overrides,
                with_volumes=parsed_args.with_volumes,
            )
            return one({"dry_run": True, **plan_view(planned.plan, planned.backup.id)})
        job = service.start(
            parsed_args.backup,
            mode=mode,
            overrides=overrides,
            timeout=_timeout(parsed_args.timeout),
            with_volumes=parsed_args.with_volumes,
        )
        return self.finish(job, parsed_args.wait)


class Verify(_JobCommand):
    """Verify a backup: boot it as a throwaway server and check it.

    The verdict is recorded on the backup, and everything it created is deleted.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("backup", metavar="BACKUP", help="Backup id (or 6+ characters).")
        parser.add_argument("--flavor", metavar="F", help="Flavor (default: the recorded one).")
        parser.add_argument("--network", metavar="N", help="Network it joins (default: none).")
        parser.add_argument(
            "--no-network", action="store_true", help="No network at all (the default)."
        )
        parser.add_argument(
            "--console-contains", metavar="TEXT", help="Its console log must contain TEXT."
        )
        parser.add_argument(
            "--port", type=int, metavar="N", help="This TCP port must answer (needs --network)."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_VERIFY_TIMEOUT.total_seconds(),
            metavar="S",
            help="Seconds; past this the verification fails (and still removes what it made).",
        )
        parser.add_argument(
            "--wait", action="store_true", help="Carry it out in this process; exit 1 if it fails."
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        if parsed_args.network is not None and parsed_args.no_network:
            raise InvalidInput("--network and --no-network exclude each other")
        if parsed_args.port is not None and not 1 <= parsed_args.port <= 65535:
            raise InvalidInput("--port must be between 1 and 65535", field="port")
        job = self.client.verifications.start(
            parsed_args.backup,
            flavor=parsed_args.flavor,
            network=parsed_args.network,
            checks=VerifyChecks(
                console_contains=parsed_args.console_contains, port=parsed_args.port
            ),
            timeout=_timeout(parsed_args.timeout),
        )
        return self.finish(job, parsed_args.wait)

    def failed(self, job: RestoreJob) -> str | None:
        if job.state is RestoreState.SUCCEEDED:
            return None
        return (
            f"verification {job.id} {job.verify_result or job.state.value}: "
            f"{job.verify_reason or job.error or 'no detail'}"
        )
