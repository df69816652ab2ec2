"""``stackback reconcile``: rebuild or check the catalogue from the cloud's markers."""

from __future__ import annotations

from dataclasses import asdict

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.services.reconcile import Reconciler


@click.command("reconcile")
@click.option("--apply", is_flag=True, help="Write the fixes (default: report only).")
@format_option
@pass_app
def reconcile(app: AppContext, /, apply: bool, fmt: str) -> None:
    """Compare backups recorded here with artifacts carrying stackback's markers.

    Reports (and with --apply imports) marked artifacts with no record, e.g.
    after losing the database, and records whose artifacts are gone from the
    cloud. Nothing in the cloud is deleted.
    """
    cloud = app.clouds(None)
    report = Reconciler(app.store, cloud, app.clock, cloud_name=app.settings.cloud).run(apply=apply)
    emit_object(asdict(report), fmt)


COMMANDS = [reconcile]
