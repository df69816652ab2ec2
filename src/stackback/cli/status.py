"""``stackback status``: which targets are protected as promised (a monitoring check)."""

from __future__ import annotations

from datetime import timedelta

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, format_option
from stackback.cli.policy import pass_app
from stackback.rpo import Verdict
from stackback.views import status_view


def _age(age: timedelta | None) -> str | None:
    if age is None:
        return None
    hours = int(age.total_seconds() // 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h {age.seconds // 60 % 60}m"


@click.command("status")
@click.option("--policy", metavar="P", help="Only the targets of this policy.")
@format_option
@pass_app
def status(app: AppContext, /, policy: str | None, fmt: str) -> None:
    """Every target's newest good backup against its schedule: ok, late, failing or never.

    Exits 1 when any target is not ok, so that it can sit in a monitoring check.
    """
    reports = app.status.report(policy)
    rows = [status_view(r) for r in reports]
    if fmt == "table":
        for row, report in zip(rows, reports, strict=True):
            row["target"] = report.target_name or report.target
            row["age"] = _age(report.age)
    emit_list(rows, ["policy", "target", "verdict", "age", "reason"], fmt, title="Status")
    if any(r.verdict is not Verdict.OK for r in reports):
        click.get_current_context().exit(1)


COMMANDS = [status]
