"""``openstack backup list|show|protect|unprotect|delete``: recovery points."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib.command import command

from stackback.osc.common import StackbackCommand, many, one, positive_int
from stackback.views import backup_detail, backup_summary

LIST_COLUMNS = ("id", "target", "target_name", "policy", "status", "created_at", "reasons")


class ListBackup(StackbackCommand, command.Lister):
    """List backups, newest first, with why retention keeps each."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--server", metavar="S", help="Only backups of this server.")
        parser.add_argument("--policy", metavar="P", help="Only backups made by this policy.")
        parser.add_argument(
            "--all", dest="include_deleted", action="store_true", help="Include deleted backups."
        )
        parser.add_argument(
            "--limit", type=positive_int, metavar="N", help="At most N, the newest."
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        backups = self.client.backups.list_backups(
            server=parsed_args.server,
            policy=parsed_args.policy,
            include_deleted=parsed_args.include_deleted,
            limit=parsed_args.limit,
        )
        return many([backup_summary(b) for b in backups], LIST_COLUMNS, parsed_args)


class _OneBackup(StackbackCommand, command.ShowOne):
    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("backup", metavar="BACKUP", help="Backup id (or 6+ characters).")
        return parser


class ShowBackup(_OneBackup):
    """Show one backup, its artifacts and its chain (incremental backups)."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        found = self.client.backups.get(parsed_args.backup)
        return one(backup_detail(found, self.client.backups.chain(found)))


class ProtectBackup(_OneBackup):
    """Protect a backup: retention never counts or deletes it."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        return one(backup_detail(self.client.backups.protect(parsed_args.backup, True)))


class UnprotectBackup(_OneBackup):
    """Return a backup to its policy's retention."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        return one(backup_detail(self.client.backups.protect(parsed_args.backup, False)))


class DeleteBackup(_OneBackup):
    """Delete a backup and its cloud artifacts."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--force",
            action="store_true",
            help="Also delete a protected backup or a target's last good one.",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        deleted = self.client.backups.delete(parsed_args.backup, force=parsed_args.force)
        return one(backup_detail(deleted))
