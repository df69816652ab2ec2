"""``openstack backup policy create|list|show|set|delete|enable|disable|run``."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib.command import command

from stackback.consistency import ConsistencyLevel, Fallback
from stackback.errors import InvalidInput
from stackback.osc.common import StackbackCommand, many, one
from stackback.policy import BackupKind, Run, RunState
from stackback.services.policies import PolicySpec
from stackback.services.retention_input import (
    COUNT_RULES,
    WITHIN_RULES,
    build_retention,
    given_retention,
    option_name,
)
from stackback.views import policy_detail, policy_summary, run_summary

LIST_COLUMNS = ("id", "name", "targets", "selector", "timezone", "retention_description", "enabled")
RUN_COLUMNS = ("id", "policy", "target", "target_name", "state", "backup_id", "error")
WAIT_TIMEOUT_SECONDS = 3600.0


def _retention_arguments(parser: argparse.ArgumentParser) -> None:
    for rule in COUNT_RULES:
        parser.add_argument(
            option_name(rule),
            dest=f"keep_{rule}",
            metavar="N",
            help=f"Keep the newest backup of each of the last N {rule} periods.",
        )
    for rule in WITHIN_RULES:
        parser.add_argument(
            option_name(rule),
            dest=f"keep_{rule}",
            metavar="D",
            help=f"Keep {rule.replace('_', '-')} this duration of the newest backup (e.g. 2d12h).",
        )


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``stackback policy create|set``, by the same names."""
    parser.add_argument(
        "--server",
        dest="servers",
        action="append",
        default=[],
        metavar="SERVER",
        help="Server id or name to back up (repeatable).",
    )
    parser.add_argument(
        "--selector",
        metavar="KEY=VALUE",
        help="Back up every server whose metadata has KEY=VALUE (resolved at each run).",
    )
    parser.add_argument(
        "--cron",
        dest="crons",
        action="append",
        default=[],
        metavar="EXPR",
        help="5-field cron expression (repeatable).",
    )
    parser.add_argument("--timezone", metavar="TZ", help="IANA time zone of the schedules.")
    parser.add_argument(
        "--window",
        type=int,
        metavar="MINUTES",
        help="Start window: runs spread deterministically over these minutes.",
    )
    parser.add_argument(
        "--kind",
        choices=[kind.value for kind in BackupKind],
        help="What kind of backup (default server-image).",
    )
    parser.add_argument("--label", metavar="LABEL", help="Backup type label of this policy.")
    parser.add_argument(
        "--consistency",
        choices=[level.value for level in ConsistencyLevel],
        help="Level a server-consistent backup tries for (default crash).",
    )
    parser.add_argument(
        "--fallback",
        choices=[fallback.value for fallback in Fallback],
        help="When that level cannot be had: a crash-consistent backup, or fail.",
    )
    parser.add_argument(
        "--max-pause",
        dest="max_pause",
        type=int,
        metavar="SECONDS",
        help="Longest a paused backup keeps its server paused (default 60).",
    )
    parser.add_argument(
        "--verify-cron", metavar="CRON", help="Verify its backups on this schedule ('' stops)."
    )
    parser.add_argument(
        "--verify-flavor", metavar="F", help="Flavor of the throwaway server (default: recorded)."
    )
    parser.add_argument(
        "--verify-network", metavar="N", help="Network of the throwaway server (default: none)."
    )
    parser.add_argument(
        "--verify-pick",
        metavar="newest|random-of-N",
        help="Which backup of each target (default newest).",
    )
    parser.add_argument(
        "--orphans",
        metavar="RULE",
        help="Backups of a server that no longer exists: keep (default), "
        "'expire-after DURATION' or 'keep-last N'.",
    )
    _retention_arguments(parser)
    parser.add_argument(
        "--keep-all", action="store_true", help="Keep every backup (no --keep-* rule)."
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="Do not ask the cloud whether the servers exist (prepare without the cloud).",
    )


def _spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The PolicySpec fields both ``create`` and ``set`` take from their options."""
    if args.servers and args.selector:
        raise InvalidInput("give either --server or --selector, not both", field="targets")
    return {
        "targets": tuple(args.servers) or None,
        "selector": args.selector,
        "kind": args.kind,
        "timezone": args.timezone,
        "window_minutes": args.window,
        "label": args.label,
        "keep_all": args.keep_all,
        "consistency": args.consistency,
        "fallback": args.fallback,
        "max_pause_seconds": args.max_pause,
        "verify_cron": args.verify_cron,
        "verify_flavor": args.verify_flavor,
        "verify_network": args.verify_network,
        "verify_pick": args.verify_pick,
        "orphans": args.orphans,
    }


class CreatePolicy(StackbackCommand, command.ShowOne):
    """Create a backup policy (what to back up, when, how long to keep it)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="NAME", help="Name of the new policy.")
        _policy_arguments(parser)
        parser.add_argument("--disabled", action="store_true", help="Create it disabled.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        if not parsed_args.crons:
            raise InvalidInput("a policy needs at least one --cron", field="cron")
        spec = PolicySpec(
            name=parsed_args.name,
            schedules=tuple(parsed_args.crons),
            retention=build_retention(vars(parsed_args)),
            enabled=not parsed_args.disabled,
            cloud=self.client.cloud,
            **_spec_fields(parsed_args),
        )
        policies = self.client.policies
        created = policies.create(spec, offline=parsed_args.offline)
        return one(policy_detail(policies.view(created.id)))


class ListPolicy(StackbackCommand, command.Lister):
    """List backup policies."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        rows = [policy_summary(view) for view in self.client.policies.views()]
        return many(rows, LIST_COLUMNS, parsed_args)


class ShowPolicy(StackbackCommand, command.ShowOne):
    """Show a policy and the next run time of each schedule."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("policy", metavar="POLICY", help="Policy name or id.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        return one(policy_detail(self.client.policies.view(parsed_args.policy)))


class SetPolicy(StackbackCommand, command.ShowOne):
    """Change a policy; options not given keep their values (--keep-X 0 drops rule X)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("policy", metavar="POLICY", help="Policy name or id.")
        _policy_arguments(parser)
        parser.add_argument("--name", dest="new_name", help="Rename the policy.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        policies = self.client.policies
        current = policies.get(parsed_args.policy)
        options = vars(parsed_args)
        spec = PolicySpec(
            name=parsed_args.new_name,
            schedules=tuple(parsed_args.crons) or None,
            retention=(
                build_retention(options, current.retention) if given_retention(options) else None
            ),
            **_spec_fields(parsed_args),
        )
        updated = policies.update(current.id, spec, offline=parsed_args.offline)
        return one(policy_detail(policies.view(updated.id)))


class DeletePolicy(StackbackCommand, command.Lister):
    """Delete policies (their backups and run history stay)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("policies", metavar="POLICY", nargs="+", help="Policy name or id.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        deleted = self.client.policies.delete(parsed_args.policies)
        rows = [{"id": p.id, "name": p.name, "deleted": True} for p in deleted]
        return many(rows, ("id", "name"), parsed_args)


class _Toggle(StackbackCommand, command.ShowOne):
    enabled = True

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("policy", metavar="POLICY", help="Policy name or id.")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        policies = self.client.policies
        updated = policies.set_enabled(parsed_args.policy, self.enabled)
        return one(policy_detail(policies.view(updated.id)))


class EnablePolicy(_Toggle):
    """Enable a policy (schedules resume from now)."""

    enabled = True


class DisablePolicy(_Toggle):
    """Disable a policy (nothing is deleted)."""

    enabled = False


class RunPolicy(StackbackCommand, command.Lister):
    """Back up every target of a policy now (its retention rotates them, as a scheduled run).

    Without --wait the runs are left to the workers of `stackback serve`; with
    --wait this process carries them out, one after the other, and exits 1 if one
    did not succeed.
    """

    unfinished: list[Run] = []

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("policy", metavar="POLICY", help="Policy name or id.")
        parser.add_argument(
            "--wait", action="store_true", help="Take the backups in this process and wait."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="S",
            help=f"With --wait: stop waiting for a run after S seconds "
            f"(default {WAIT_TIMEOUT_SECONDS:.0f}); the run goes on.",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Any, Any]:
        if parsed_args.timeout is not None and not parsed_args.wait:
            raise InvalidInput("--timeout applies only with --wait", field="timeout")
        runs = self.client.policies.run_now(parsed_args.policy)
        if parsed_args.wait:
            timeout = parsed_args.timeout or WAIT_TIMEOUT_SECONDS
            runs = [self.client.runs.wait(run.id, timeout=timeout) for run in runs]
        self.unfinished = [run for run in runs if parsed_args.wait and not _succeeded(run)]
        return many([run_summary(run) for run in runs], RUN_COLUMNS, parsed_args)

    def run(self, parsed_args: argparse.Namespace) -> int:
        self.unfinished = []
        code = super().run(parsed_args)
        for run in self.unfinished:
            self.log.error(
                "backup of %s %s: %s (run %s)",
                run.target_name or run.target,
                run.state.value,
                run.error or "no detail",
                run.id,
            )
        return 1 if self.unfinished else code


def _succeeded(run: Run) -> bool:
    return run.state is RunState.SUCCEEDED
