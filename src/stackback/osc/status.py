"""``openstack backup status``: which targets are protected as promised."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib.command import command

from stackback.osc.common import StackbackCommand, many
from stackback.rpo import Verdict
from stackback.views import status_view

COLUMNS = ("policy", "target", "target_name", "verdict", "newest_good_at", "reason")


class Status(StackbackCommand, command.Lister):
    """Every target's newest good backup against its schedule: ok, late, failing or never.

    Exits 1 when any target is not ok, so that it can sit in a monitoring check.
    """

    not_ok = False

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--policy", metavar="P", help="Only the targets of this policy.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        reports = self.client.status.report(parsed_args.policy)
        self.not_ok = any(report.verdict is not Verdict.OK for report in reports)
        return many([status_view(report) for report in reports], COLUMNS, parsed_args)

    def run(self, parsed_args: argparse.Namespace) -> int:
        self.not_ok = False
        code = super().run(parsed_args)
        return 1 if self.not_ok else code
