"""``openstack backup run list|show|delete``: the recorded executions of policies."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib.command import command

from stackback.osc.common import StackbackCommand, many, one, positive_int
from stackback.policy import RunState
from stackback.views import run_detail, run_summary

LIST_COLUMNS = ("id", "policy", "target", "target_name", "state", "due_at", "error")


class ListRun(StackbackCommand, command.Lister):
    """List runs, newest first."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--policy", metavar="P", help="Only runs of this policy (name or id).")
        parser.add_argument("--target", metavar="T", help="Only runs of this target (id or name).")
        parser.add_argument(
            "--state", choices=[state.value for state in RunState], help="Only runs in this state."
        )
        parser.add_argument(
            "--limit", type=positive_int, default=200, metavar="N", help="At most N."
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        runs = self.client.runs.list_runs(
            policy=parsed_args.policy,
            target=parsed_args.target,
            state=RunState(parsed_args.state) if parsed_args.state else None,
            limit=parsed_args.limit,
        )
        return many([run_summary(run) for run in runs], LIST_COLUMNS, parsed_args)


class ShowRun(StackbackCommand, command.ShowOne):
    """Show a run with its lease (who holds it, until when) and its steps."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("run_id", metavar="RUN", help="Run id (or 6+ characters of it).")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        return one(run_detail(self.client.runs.get(parsed_args.run_id)))


class DeleteRun(StackbackCommand, command.Lister):
    """Delete the records of finished runs (their backups are not touched)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("run_ids", metavar="RUN", nargs="+", help="Run id.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        deleted = self.client.runs.delete(parsed_args.run_ids)
        rows = [{"id": run.id, "deleted": True} for run in deleted]
        return many(rows, ("id", "deleted"), parsed_args)
