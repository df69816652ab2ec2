"""``stackback verify BACKUP``: restore a backup as a throwaway server, check it, remove it."""

from __future__ import annotations

from datetime import timedelta

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_object, format_option
from stackback.cli.policy import pass_app
from stackback.cli.restore import _runner, _table_ready
from stackback.restoreplan import RestoreState
from stackback.services.verify import DEFAULT_VERIFY_TIMEOUT, VerifyService
from stackback.verification import VerifyChecks
from stackback.views import restore_view


@click.command("verify")
@click.argument("backup")
@click.option("--flavor", metavar="F", help="Flavor of the throwaway server (default: recorded).")
@click.option("--network", metavar="N", help="Network it joins (default: none).")
@click.option("--no-network", is_flag=True, help="No network at all (the default).")
@click.option("--console-contains", metavar="TEXT", help="Its console log must contain TEXT.")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="This TCP port must answer (needs --network)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1, max=7 * 24 * 3600),
    default=DEFAULT_VERIFY_TIMEOUT.total_seconds(),
    show_default=True,
    help="Seconds; past this the verification fails (and still removes what it made).",
)
@click.option("--wait", is_flag=True, help="Carry it out in this process; exit 1 if it fails.")
@format_option
@pass_app
def verify(
    app: AppContext,
    /,
    backup: str,
    flavor: str | None,
    network: str | None,
    no_network: bool,
    console_contains: str | None,
    port: int | None,
    timeout: float,
    wait: bool,
    fmt: str,
) -> None:
    """Verify BACKUP: boot it as a throwaway server, check it, record the verdict on the
    backup, and delete everything it created."""
    if network is not None and no_network:
        raise click.UsageError("--network and --no-network exclude each other")
    service = VerifyService(app.store, app.clouds, app.clock)
    job = service.start(
        backup,
        flavor=flavor,
        network=network,
        checks=VerifyChecks(console_contains=console_contains, port=port),
        timeout=timedelta(seconds=timeout),
    )
    if wait:
        job = _runner(app).drive(job.id)
    emit_object(_table_ready(restore_view(job), fmt), fmt)
    if wait and job.state is not RestoreState.SUCCEEDED:
        click.echo(
            f"stackback: error: verification {job.id} {job.verify_result or job.state.value}: "
            f"{job.verify_reason or job.error or 'no detail'}",
            err=True,
        )
        click.get_current_context().exit(1)


COMMANDS = [verify]
